package artifact

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
)

// ErrUnsafe is wrapped by every refusal of the safe unpacker.
var ErrUnsafe = errors.New("unsafe archive")

// UnpackStats counts what an unpack wrote.
type UnpackStats struct {
	Files int
	Bytes int64
}

// Untar extracts the tar stream r into root (which must exist and be empty of the prefix), refusing
// anything that could write outside root/prefix: every entry must be prefix or lie under prefix/;
// absolute names, ".." components, device/fifo entries, symlinks whose target leaves prefix
// (lexically, or once resolved), hard links to anything but an earlier regular file, writes
// through a symlink, duplicate entries and more than limit bytes of file content are refused.
// Modes are restored (permission bits only; setuid/setgid are dropped); owners and times are not.
// With readableByAll, files also get a+r and directories a+rx (another uid must read them).
func Untar(r io.Reader, root, prefix string, limit int64, readableByAll bool) (UnpackStats, error) {
	var st UnpackStats
	if err := checkRelName(prefix); err != nil {
		return st, err
	}
	prefix = path.Clean(prefix)
	kinds := map[string]byte{} // archive path → tar type flag of what we created
	var dirModes []struct {
		p    string
		mode os.FileMode
	}
	var links []string
	tr := tar.NewReader(r)
	buf := make([]byte, 256<<10)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return st, err
		}
		if hdr.Typeflag == tar.TypeXGlobalHeader {
			continue
		}
		name := strings.TrimSuffix(hdr.Name, "/")
		if err := checkRelName(name); err != nil {
			return st, fmt.Errorf("%w: entry %q: %v", ErrUnsafe, hdr.Name, err)
		}
		name = path.Clean(name)
		if name != prefix && !strings.HasPrefix(name, prefix+"/") {
			return st, fmt.Errorf("%w: entry %q is outside %q", ErrUnsafe, hdr.Name, prefix)
		}
		if k, ok := kinds[name]; ok && !(k == tar.TypeDir && hdr.Typeflag == tar.TypeDir) {
			return st, fmt.Errorf("%w: duplicate entry %q", ErrUnsafe, hdr.Name)
		}
		if err := ensureParents(root, prefix, name, kinds); err != nil {
			return st, err
		}
		dst := filepath.Join(root, filepath.FromSlash(name))
		mode := os.FileMode(hdr.Mode).Perm()
		if readableByAll {
			mode |= 0o444
			if hdr.Typeflag == tar.TypeDir {
				mode |= 0o555
			}
		}
		switch hdr.Typeflag {
		case tar.TypeDir:
			if _, ok := kinds[name]; !ok {
				if err := os.Mkdir(dst, 0o700); err != nil {
					return st, err
				}
				kinds[name] = tar.TypeDir
			}
			dirModes = append(dirModes, struct {
				p    string
				mode os.FileMode
			}{dst, mode})
		case tar.TypeReg, tar.TypeRegA:
			if hdr.Size < 0 || st.Bytes+hdr.Size > limit {
				return st, fmt.Errorf("%w: content exceeds the unpack limit of %d bytes (at %q)", ErrUnsafe, limit, hdr.Name)
			}
			f, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL|noFollow, 0o600)
			if err != nil {
				return st, err
			}
			n, err := io.CopyBuffer(f, io.LimitReader(tr, hdr.Size), buf)
			if err == nil && n != hdr.Size {
				err = io.ErrUnexpectedEOF
			}
			if err == nil {
				err = f.Chmod(mode)
			}
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return st, err
			}
			kinds[name] = tar.TypeReg
			st.Files++
			st.Bytes += n
		case tar.TypeSymlink:
			t := hdr.Linkname
			if t == "" || path.IsAbs(t) {
				return st, fmt.Errorf("%w: symlink %q points to %q (absolute or empty)", ErrUnsafe, hdr.Name, t)
			}
			resolved := path.Clean(path.Join(path.Dir(name), t))
			if resolved != prefix && !strings.HasPrefix(resolved, prefix+"/") {
				return st, fmt.Errorf("%w: symlink %q points outside %q (%q)", ErrUnsafe, hdr.Name, prefix, t)
			}
			if err := os.Symlink(t, dst); err != nil {
				return st, err
			}
			kinds[name] = tar.TypeSymlink
			links = append(links, dst)
		case tar.TypeLink:
			target := strings.TrimSuffix(hdr.Linkname, "/")
			if err := checkRelName(target); err != nil {
				return st, fmt.Errorf("%w: hard link %q to %q: %v", ErrUnsafe, hdr.Name, hdr.Linkname, err)
			}
			target = path.Clean(target)
			if kinds[target] != tar.TypeReg {
				return st, fmt.Errorf("%w: hard link %q must point to an earlier regular file of the archive, not %q", ErrUnsafe, hdr.Name, hdr.Linkname)
			}
			if err := os.Link(filepath.Join(root, filepath.FromSlash(target)), dst); err != nil {
				return st, err
			}
			kinds[name] = tar.TypeReg
			st.Files++
		default:
			return st, fmt.Errorf("%w: entry %q has type %q (devices, fifos and other special files are refused)", ErrUnsafe, hdr.Name, string(hdr.Typeflag))
		}
	}
	// A symlink may still escape once the links it goes through are resolved (a/b -> ".", c -> "b/..").
	rootAbs, err := filepath.EvalSymlinks(root)
	if err != nil {
		return st, err
	}
	base := filepath.Join(rootAbs, filepath.FromSlash(prefix))
	for _, l := range links {
		real, err := filepath.EvalSymlinks(l)
		if err != nil {
			continue // dangling: its lexical target was checked above
		}
		if real != base && !strings.HasPrefix(real, base+string(filepath.Separator)) {
			return st, fmt.Errorf("%w: symlink %q resolves outside %q", ErrUnsafe, strings.TrimPrefix(l, root+"/"), prefix)
		}
	}
	// Directory modes last (deepest first), so read-only directories could be filled.
	sort.Slice(dirModes, func(i, j int) bool { return len(dirModes[i].p) > len(dirModes[j].p) })
	for _, d := range dirModes {
		if err := os.Chmod(d.p, d.mode); err != nil {
			return st, err
		}
	}
	return st, nil
}

// ensureParents creates the missing parent directories of name (under prefix), and refuses a
// parent that is anything but a directory we created (so nothing is written through a symlink).
func ensureParents(root, prefix, name string, kinds map[string]byte) error {
	if name == prefix {
		return nil
	}
	parent := path.Dir(name)
	var chain []string
	for p := parent; ; p = path.Dir(p) {
		chain = append(chain, p)
		if p == prefix || p == "." || p == "/" {
			break
		}
	}
	for i := len(chain) - 1; i >= 0; i-- {
		p := chain[i]
		k, ok := kinds[p]
		if ok && k != tar.TypeDir {
			return fmt.Errorf("%w: entry %q goes through %q, which is not a directory", ErrUnsafe, name, p)
		}
		if !ok {
			if err := os.Mkdir(filepath.Join(root, filepath.FromSlash(p)), 0o700); err != nil {
				return err
			}
			kinds[p] = tar.TypeDir
		}
	}
	return nil
}

// checkRelName refuses empty, absolute and ".."-containing names.
func checkRelName(name string) error {
	if name == "" || name == "." {
		return errors.New("empty name")
	}
	if strings.HasPrefix(name, "/") || filepath.IsAbs(name) {
		return errors.New("absolute path")
	}
	if strings.ContainsRune(name, 0) {
		return errors.New("invalid character")
	}
	for _, c := range strings.Split(name, "/") {
		if c == ".." {
			return errors.New("contains ..")
		}
	}
	return nil
}
