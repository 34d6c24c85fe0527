package guard

import (
	"errors"
	"io/fs"
	"path/filepath"
	"strings"
	"syscall"
)

// measure walks the registry root: the space its files and directories take on disk (blocks, as
// the kubelet counts an emptyDir) and how many repositories, tags, manifests and blobs it holds.
// A root that does not exist yet is an empty cache.
func measure(root string) (int64, Counts, error) {
	var total int64
	var c Counts
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			// Files come and go under a running registry (uploads, deletes).
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		info, err := d.Info()
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if st, ok := info.Sys().(*syscall.Stat_t); ok {
			total += st.Blocks * 512
		} else {
			total += info.Size()
		}
		if !d.IsDir() {
			return nil
		}
		parent := filepath.Base(filepath.Dir(p))
		grand := filepath.Base(filepath.Dir(filepath.Dir(p)))
		switch {
		case d.Name() == "_manifests":
			c.Repositories++
		case parent == "tags" && grand == "_manifests":
			c.Tags++
		case grand == "revisions" && parent == "sha256" && strings.Contains(p, "/_manifests/"):
			c.Manifests++
		case parent != "sha256" && grand == "sha256" && strings.Contains(p, "/docker/registry/v2/blobs/"):
			c.Blobs++
		}
		return nil
	})
	if errors.Is(err, fs.ErrNotExist) {
		err = nil
	}
	return total, c, err
}
