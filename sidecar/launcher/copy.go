package launcher

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"time"
)

// copyTree copies src (file, directory or symlink) to dst, which must not exist unless both are
// directories (merged). Modes are kept, ORed with orMode (files) / orMode|exec bits (directories).
// Special files (devices, fifos, sockets) are skipped and returned.
func copyTree(src, dst string, orMode fs.FileMode) (skipped []string, err error) {
	fi, err := os.Lstat(src)
	if err != nil {
		return nil, err
	}
	switch {
	case fi.IsDir():
		dmode := fi.Mode().Perm() | orMode
		if orMode&0o444 != 0 {
			dmode |= (orMode & 0o444) >> 2 // r → x for directories
		}
		created := true
		if err := os.Mkdir(dst, 0o700); errors.Is(err, fs.ErrExist) {
			if st, serr := os.Lstat(dst); serr != nil || !st.IsDir() {
				return nil, err
			}
			created = false // merge into an existing directory, keep its mode
		} else if err != nil {
			return nil, err
		}
		entries, err := os.ReadDir(src)
		if err != nil {
			return nil, err
		}
		for _, e := range entries {
			s, err := copyTree(filepath.Join(src, e.Name()), filepath.Join(dst, e.Name()), orMode)
			skipped = append(skipped, s...)
			if err != nil {
				return skipped, err
			}
		}
		if !created {
			return skipped, nil
		}
		return skipped, os.Chmod(dst, dmode)
	case fi.Mode().IsRegular():
		if sameFile(fi, dst) {
			return nil, nil // placed by an earlier run of this container
		}
		return nil, copyFile(src, dst, fi.Mode().Perm()|orMode, fi.ModTime())
	case fi.Mode()&fs.ModeSymlink != 0:
		t, err := os.Readlink(src)
		if err != nil {
			return nil, err
		}
		if sameLink(t, dst) {
			return nil, nil
		}
		return nil, os.Symlink(t, dst)
	default:
		return []string{src}, nil
	}
}

// sameFile reports whether dst is a regular file with src's size, mode and modification time —
// a copy made by copyFile (which keeps the time), e.g. by an earlier run of a restarted container.
func sameFile(src fs.FileInfo, dst string) bool {
	d, err := os.Lstat(dst)
	return err == nil && d.Mode().IsRegular() && d.Size() == src.Size() && d.Mode().Perm() == src.Mode().Perm() && d.ModTime().Equal(src.ModTime())
}

// sameLink reports whether dst is a symlink to target.
func sameLink(target, dst string) bool {
	t, err := os.Readlink(dst)
	return err == nil && t == target
}

func copyFile(src, dst string, mode fs.FileMode, mtime time.Time) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	_, err = io.Copy(out, in) // copy_file_range when the kernel can
	if err == nil {
		err = out.Chmod(mode)
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err == nil && !mtime.IsZero() {
		err = os.Chtimes(dst, mtime, mtime)
	}
	return err
}

// inputSources lists share/inputs/<i>/<entry> in input order (numeric i, then name).
func inputSources(inputsDir string) ([]string, error) {
	dirs, err := os.ReadDir(inputsDir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
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
	var out []string
	for _, o := range order {
		entries, err := os.ReadDir(filepath.Join(inputsDir, o.name))
		if err != nil {
			return nil, err
		}
		for _, e := range entries {
			out = append(out, filepath.Join(inputsDir, o.name, e.Name()))
		}
	}
	return out, nil
}

// checkPlacement refuses any input that would overwrite an existing file at dest (or another
// input); directories merge. Nothing is written.
func checkPlacement(sources []string, dest string) error {
	planned := map[string]string{} // rel → source that places a non-directory there
	plannedDir := map[string]bool{}
	for _, src := range sources {
		root := filepath.Dir(src)
		err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(root, p)
			isDir := d.IsDir()
			if prev, ok := planned[rel]; ok {
				return fmt.Errorf("input %s conflicts with input %s at %s", p, prev, filepath.Join(dest, rel))
			}
			if plannedDir[rel] && !isDir {
				return fmt.Errorf("input %s conflicts with a directory of another input at %s", p, filepath.Join(dest, rel))
			}
			if fi, err := os.Lstat(filepath.Join(dest, rel)); err == nil {
				if !isDir && d.Type().IsRegular() {
					if sfi, err := d.Info(); err == nil && sameFile(sfi, filepath.Join(dest, rel)) {
						return nil // this very input, placed by an earlier run of the container
					}
				}
				if d.Type()&fs.ModeSymlink != 0 {
					if t, err := os.Readlink(p); err == nil && sameLink(t, filepath.Join(dest, rel)) {
						return nil
					}
				}
				if !(isDir && fi.IsDir()) {
					return fmt.Errorf("input %s would overwrite the existing %s (refusing; choose another input-path)", p, filepath.Join(dest, rel))
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
