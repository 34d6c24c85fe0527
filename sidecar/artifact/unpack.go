package artifact

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/converged-computing/oras-cache/sidecar/contract"
	"github.com/converged-computing/oras-cache/sidecar/safefs"
)

// ErrUnsafe is wrapped by every refusal of the safe unpacker.
var ErrUnsafe = errors.New("unsafe archive")

// UnpackStats counts what an unpack wrote.
type UnpackStats struct {
	Files   int
	Entries int   // every entry: files, hard links, directories, symlinks
	Bytes   int64 // hard links count in full: the launcher copies each as a file
}

// Limits bound one unpack.
type Limits struct {
	Bytes   int64 // ORAS_CACHE_MAX_UNPACK_SIZE
	Entries int   // ORAS_CACHE_MAX_UNPACK_ENTRIES
}

// Untar extracts the tar stream r into root (which must exist and be empty of the prefix), refusing
// anything that could write outside root/prefix or point outside it: every entry must be prefix or
// lie under prefix/; absolute names, ".." components, device/fifo entries, symlinks that leave
// prefix once every link of the archive is followed (dangling ones and chains included, see
// safefs), hard links to anything but an earlier regular file, writes through a symlink,
// duplicate entries, more than lim.Bytes of file content (a hard link counts its full size) and
// more than lim.Entries entries are refused. Every write goes through an os.Root at root, so
// nothing outside it can be touched even by a path this function failed to refuse.
// Modes are restored (permission bits only; setuid/setgid are dropped); owners and times are not.
// With readableByAll, files also get a+r and directories a+rx (another uid must read them).
func Untar(r io.Reader, root, prefix string, lim Limits, readableByAll bool) (UnpackStats, error) {
	var st UnpackStats
	if err := checkRelName(prefix); err != nil {
		return st, err
	}
	prefix = path.Clean(prefix)
	fsys, err := os.OpenRoot(root)
	if err != nil {
		return st, err
	}
	defer fsys.Close()
	kinds := map[string]byte{}  // archive path → tar type flag of what we created
	sizes := map[string]int64{} // regular file → size (for hard links)
	var dirModes []struct {
		p    string
		mode os.FileMode
	}
	links := map[string]string{} // symlink (archive path) → target
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
		if st.Entries++; st.Entries > lim.Entries {
			return st, fmt.Errorf("%w: more than %d entries (the bound %s=%d; raise it if the input is trusted)",
				ErrUnsafe, lim.Entries, contract.EnvMaxUnpackEntries, lim.Entries)
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
		if err := ensureParents(fsys, prefix, name, kinds); err != nil {
			return st, err
		}
		mode := os.FileMode(hdr.Mode).Perm()
		if readableByAll {
			mode |= 0o444
			if hdr.Typeflag == tar.TypeDir {
				mode |= 0o555
			}
		}
		overBound := func(size int64) error {
			return fmt.Errorf("%w: content exceeds the unpack bound of %d bytes at %q (the bound %s=%d counts hard links in full; raise it if the input is trusted)",
				ErrUnsafe, lim.Bytes, hdr.Name, contract.EnvMaxUnpackSize, lim.Bytes)
		}
		switch hdr.Typeflag {
		case tar.TypeDir:
			if _, ok := kinds[name]; !ok {
				if err := fsys.Mkdir(name, 0o700); err != nil {
					return st, err
				}
				kinds[name] = tar.TypeDir
			}
			dirModes = append(dirModes, struct {
				p    string
				mode os.FileMode
			}{name, mode})
		case tar.TypeReg: // the reader already maps the legacy TypeRegA here
			if hdr.Size < 0 || st.Bytes+hdr.Size > lim.Bytes {
				return st, overBound(hdr.Size)
			}
			f, err := fsys.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL|noFollow, 0o600)
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
			kinds[name], sizes[name] = tar.TypeReg, n
			st.Files++
			st.Bytes += n
		case tar.TypeSymlink:
			t := hdr.Linkname
			if name == prefix {
				return st, fmt.Errorf("%w: the top entry %q is a symlink", ErrUnsafe, hdr.Name)
			}
			if t == "" || path.IsAbs(t) {
				return st, fmt.Errorf("%w: symlink %q points to %q (absolute or empty)", ErrUnsafe, hdr.Name, t)
			}
			if err := fsys.Symlink(t, name); err != nil {
				return st, err
			}
			kinds[name] = tar.TypeSymlink
			links[name] = t
		case tar.TypeLink:
			target := strings.TrimSuffix(hdr.Linkname, "/")
			if err := checkRelName(target); err != nil {
				return st, fmt.Errorf("%w: hard link %q to %q: %v", ErrUnsafe, hdr.Name, hdr.Linkname, err)
			}
			target = path.Clean(target)
			if kinds[target] != tar.TypeReg {
				return st, fmt.Errorf("%w: hard link %q must point to an earlier regular file of the archive, not %q", ErrUnsafe, hdr.Name, hdr.Linkname)
			}
			// The launcher copies every name of the file as a file of its own.
			if st.Bytes+sizes[target] > lim.Bytes {
				return st, overBound(sizes[target])
			}
			if err := fsys.Link(target, name); err != nil {
				return st, err
			}
			kinds[name], sizes[name] = tar.TypeReg, sizes[target]
			st.Files++
			st.Bytes += sizes[target]
		default:
			return st, fmt.Errorf("%w: entry %q has type %q (devices, fifos and other special files are refused)", ErrUnsafe, hdr.Name, string(hdr.Typeflag))
		}
	}
	// Only now is the set of links final: a link is judged by following every other one, dangling
	// or not, so a chain cannot reach outside the title once placed elsewhere.
	inTitle := func(p string) string { return strings.TrimPrefix(strings.TrimPrefix(p, prefix), "/") }
	readlink := func(rel string) (string, bool, error) {
		t, ok := links[prefix+"/"+rel]
		return t, ok, nil
	}
	for _, l := range slices.Sorted(maps.Keys(links)) {
		if err := safefs.LinkStaysInside(inTitle(l), links[l], readlink); err != nil {
			return st, fmt.Errorf("%w: symlink %q points outside %q: %v", ErrUnsafe, l, prefix, err)
		}
	}
	// Directory modes last (deepest first), so read-only directories could be filled.
	sort.Slice(dirModes, func(i, j int) bool { return len(dirModes[i].p) > len(dirModes[j].p) })
	for _, d := range dirModes {
		if err := fsys.Chmod(d.p, d.mode); err != nil {
			return st, err
		}
	}
	return st, nil
}

// ensureParents creates the missing parent directories of name (under prefix), and refuses a
// parent that is anything but a directory we created (so nothing is written through a symlink).
func ensureParents(fsys *os.Root, prefix, name string, kinds map[string]byte) error {
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
			if err := fsys.Mkdir(p, 0o700); err != nil {
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
			return errors.New(`contains a ".." component`)
		}
	}
	return nil
}
