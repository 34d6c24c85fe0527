package launcher

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"syscall"

	"github.com/converged-computing/oras-cache/sidecar/contract"
	"github.com/converged-computing/oras-cache/sidecar/safefs"
)

const noFollow = syscall.O_NOFOLLOW

// copier copies trees from one os.Root to another: nothing outside either root is read through a
// link or written, whatever the trees hold. Paths are slash paths relative to the roots.
type copier struct {
	src, dst *os.Root
	// orMode is ORed into file modes (and its read bits, as exec bits, into directory modes).
	orMode fs.FileMode
	// confine refuses a symlink that leaves the top entry it belongs to (inputs: the unpacked
	// tree is placed elsewhere, where its links must not reach the app's files).
	confine bool
	skipped []string // special files (devices, fifos, sockets), not copied
}

// copyTree copies src (file, directory or symlink) to dst, which must not exist unless both are
// directories (merged). Modes are kept, ORed with orMode (files) / orMode|exec bits (directories).
func (c *copier) copyTree(src, dst, top string) error {
	fi, err := c.src.Lstat(src)
	if err != nil {
		return err
	}
	switch {
	case fi.IsDir():
		dmode := fi.Mode().Perm() | c.orMode
		if c.orMode&0o444 != 0 {
			dmode |= (c.orMode & 0o444) >> 2 // r → x for directories
		}
		created := true
		if err := c.dst.Mkdir(dst, 0o700); errors.Is(err, fs.ErrExist) {
			if st, serr := c.dst.Lstat(dst); serr != nil || !st.IsDir() {
				return err
			}
			created = false // merge into an existing directory, keep its mode
		} else if err != nil {
			return err
		}
		entries, err := fs.ReadDir(c.src.FS(), src)
		if err != nil {
			return err
		}
		for _, e := range entries {
			if err := c.copyTree(path.Join(src, e.Name()), path.Join(dst, e.Name()), top); err != nil {
				return err
			}
		}
		if !created {
			return nil
		}
		return c.dst.Chmod(dst, dmode)
	case fi.Mode().IsRegular():
		if c.sameFile(fi, dst) {
			return nil // placed by an earlier run of this container
		}
		return c.copyFile(src, dst, fi)
	case fi.Mode()&fs.ModeSymlink != 0:
		t, err := c.src.Readlink(src)
		if err != nil {
			return err
		}
		if c.confine {
			if err := c.checkLink(src, t, top); err != nil {
				return fmt.Errorf("refusing the symlink %s: %w", src, err)
			}
		}
		if l, err := c.dst.Readlink(dst); err == nil && l == t {
			return nil
		}
		return c.dst.Symlink(t, dst)
	default:
		c.skipped = append(c.skipped, src)
		return nil
	}
}

// checkLink refuses the symlink src -> target when it leaves top, following every link of top.
func (c *copier) checkLink(src, target, top string) error {
	rel, err := filepath.Rel(top, src)
	if err != nil || rel == "." {
		return fmt.Errorf("symlink %s: %w", src, safefs.ErrEscapes)
	}
	return safefs.LinkStaysInside(filepath.ToSlash(rel), target, func(r string) (string, bool, error) {
		p := path.Join(top, r)
		fi, err := c.src.Lstat(p)
		if err != nil || fi.Mode()&fs.ModeSymlink == 0 {
			return "", false, nil
		}
		t, err := c.src.Readlink(p)
		return t, err == nil, err
	})
}

// sameFile reports whether dst is a regular file with src's size, mode and modification time —
// a copy made by copyFile (which keeps the time), e.g. by an earlier run of a restarted container.
func (c *copier) sameFile(src fs.FileInfo, dst string) bool {
	d, err := c.dst.Lstat(dst)
	return err == nil && d.Mode().IsRegular() && d.Size() == src.Size() && d.Mode().Perm() == (src.Mode().Perm()|c.orMode) && d.ModTime().Equal(src.ModTime())
}

func (c *copier) copyFile(src, dst string, fi fs.FileInfo) error {
	in, err := c.src.OpenFile(src, os.O_RDONLY|noFollow, 0)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := c.dst.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL|noFollow, 0o600)
	if err != nil {
		return err
	}
	// No more than the size that was checked against the bounds, even if the file grew since.
	_, err = io.Copy(out, io.LimitReader(in, fi.Size())) // copy_file_range when the kernel can
	if err == nil {
		err = out.Chmod(fi.Mode().Perm() | c.orMode)
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if mtime := fi.ModTime(); err == nil && !mtime.IsZero() {
		err = c.dst.Chtimes(dst, mtime, mtime)
	}
	return err
}

// source is one input entry: share/inputs/<dir>/<name>.
type source struct{ dir, name string }

func (s source) rel() string { return s.dir + "/" + s.name }

// inputSources lists share/inputs/<i>/<entry> in input order (numeric i, then name), read
// through the inputs root.
func inputSources(inputs *os.Root) ([]source, error) {
	dirs, err := fs.ReadDir(inputs.FS(), ".")
	if err != nil {
		return nil, err
	}
	type idx struct {
		n    int
		name string
	}
	var order []idx
	for _, d := range dirs {
		n, err := strconv.Atoi(d.Name())
		if err != nil || !d.IsDir() {
			continue // staging leftovers and the like
		}
		order = append(order, idx{n, d.Name()})
	}
	sort.Slice(order, func(i, j int) bool { return order[i].n < order[j].n })
	var out []source
	for _, o := range order {
		entries, err := fs.ReadDir(inputs.FS(), o.name)
		if err != nil {
			return nil, err
		}
		for _, e := range entries {
			out = append(out, source{o.name, e.Name()})
		}
	}
	return out, nil
}

// Limits bound what is placed from one input (share/inputs/<i>), as init bounds what it unpacks.
type Limits struct {
	Bytes   int64 // every name of a hard-linked file counts: each is copied as a file
	Entries int
}

// checkPlacement refuses, before anything is written: an input over its bounds, a top-level
// symlink, and any input that would overwrite an existing file at dest (or another input);
// directories merge.
// inputsDir and destDir only name the roots in messages.
func checkPlacement(inputs, dest *os.Root, inputsDir, destDir string, sources []source, lim Limits) error {
	in := func(p string) string { return filepath.Join(inputsDir, p) }
	at := func(rel string) string { return filepath.Join(destDir, rel) }
	planned := map[string]string{} // rel → source that places a non-directory there
	plannedDir := map[string]bool{}
	type usage struct {
		bytes   int64
		entries int
	}
	used := map[string]*usage{}
	for _, src := range sources {
		u := used[src.dir]
		if u == nil {
			u = &usage{}
			used[src.dir] = u
		}
		// fs.WalkDir follows a symlink at its start: look at it first.
		if fi, err := inputs.Lstat(src.rel()); err != nil {
			return err
		} else if fi.Mode()&fs.ModeSymlink != 0 {
			return fmt.Errorf("input %s is a symlink (refusing: only its own tree may be placed)", in(src.rel()))
		}
		err := fs.WalkDir(inputs.FS(), src.rel(), func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			info, err := d.Info()
			if err != nil {
				return err
			}
			u.entries++
			if d.Type().IsRegular() {
				u.bytes += info.Size()
			}
			if u.bytes > lim.Bytes {
				return fmt.Errorf("input %s holds more than %d bytes (the bound %s=%d counts every hard link in full; raise it if the input is trusted)",
					in(src.dir), lim.Bytes, contract.EnvMaxUnpackSize, lim.Bytes)
			}
			if u.entries > lim.Entries {
				return fmt.Errorf("input %s holds more than %d entries (the bound %s=%d; raise it if the input is trusted)",
					in(src.dir), lim.Entries, contract.EnvMaxUnpackEntries, lim.Entries)
			}
			rel, _ := filepath.Rel(src.dir, p)
			isDir := d.IsDir()
			if prev, ok := planned[rel]; ok {
				return fmt.Errorf("input %s conflicts with input %s at %s", in(p), in(prev), at(rel))
			}
			if plannedDir[rel] && !isDir {
				return fmt.Errorf("input %s conflicts with a directory of another input at %s", in(p), at(rel))
			}
			if fi, err := dest.Lstat(rel); err == nil {
				if !isDir && d.Type().IsRegular() {
					if (&copier{dst: dest}).sameFile(info, rel) {
						return nil // this very input, placed by an earlier run of the container
					}
				}
				if d.Type()&fs.ModeSymlink != 0 {
					if t, err := inputs.Readlink(p); err == nil {
						if l, err := dest.Readlink(rel); err == nil && l == t {
							return nil
						}
					}
				}
				if !(isDir && fi.IsDir()) {
					return fmt.Errorf("input %s would overwrite the existing %s (refusing; choose another input-path)", in(p), at(rel))
				}
			} else if !errors.Is(err, fs.ErrNotExist) {
				return err
			}
			if isDir {
				plannedDir[rel] = true
			} else {
				planned[rel] = p
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}
