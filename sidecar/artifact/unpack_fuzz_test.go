package artifact

import (
	"archive/tar"
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzUntar: whatever the archive, nothing is ever created outside the target directory, and an
// accepted archive has no symlink resolving outside its title — judged by the kernel through an
// os.Root at the title, which reports a path escaping it even when the link's target is missing
// (the symlink-chain seeds: a dangling chain lexically inside that resolves above the title). `go test` runs the seeds;
// `go test -fuzz FuzzUntar ./sidecar/artifact` explores further.
func FuzzUntar(f *testing.F) {
	seeds := [][]entry{
		{{name: "p/", typ: tar.TypeDir, mode: 0o755}, {name: "p/f", typ: tar.TypeReg, body: "ok"}},
		{{name: "p/a", typ: tar.TypeSymlink, link: "."}, {name: "p/x", typ: tar.TypeSymlink, link: "a/.."}},
		{{name: "p/l", typ: tar.TypeSymlink, link: "../q"}, {name: "p/l/f", typ: tar.TypeReg, body: "x"}},
		{{name: "p/f", typ: tar.TypeReg, body: "x"}, {name: "p/h", typ: tar.TypeLink, link: "p/f"}},
		{{name: "p/../../e", typ: tar.TypeReg, body: "x"}},
		{{name: "p/a/b/c/up", typ: tar.TypeSymlink, link: "../../.."}, {name: "p/x", typ: tar.TypeSymlink, link: "a/b/c/up/../../t"}},
		{{name: "p/x", typ: tar.TypeSymlink, link: "a/up/../t"}, {name: "p/a/up", typ: tar.TypeSymlink, link: ".."}},
		{{name: "p/d/s", typ: tar.TypeSymlink, link: "."}, {name: "p/x", typ: tar.TypeSymlink, link: "d/s/s/s/../../t"}},
		{{name: "p/l1", typ: tar.TypeSymlink, link: "l2/x"}, {name: "p/l2", typ: tar.TypeSymlink, link: "l1/../.."}},
		{{name: "p/f", typ: tar.TypeReg, body: "xxxx"}, {name: "p/h1", typ: tar.TypeLink, link: "p/f"}, {name: "p/h2", typ: tar.TypeLink, link: "p/f"}},
	}
	for _, s := range seeds {
		f.Add(makeTar(f, s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		parent := t.TempDir()
		root := filepath.Join(parent, "root")
		if err := os.Mkdir(root, 0o755); err != nil {
			t.Fatal(err)
		}
		st, err := Untar(bytes.NewReader(data), root, "p", Limits{Bytes: 1 << 20, Entries: 1000}, false)
		entries, _ := os.ReadDir(parent)
		if len(entries) != 1 || entries[0].Name() != "root" {
			t.Fatalf("created outside the target: %v", entries)
		}
		if err != nil {
			return
		}
		if st.Bytes > 1<<20 || st.Entries > 1000 {
			t.Fatalf("accepted over the bounds: %+v", st)
		}
		base := filepath.Join(root, "p")
		title, err := os.OpenRoot(base)
		if errors.Is(err, os.ErrNotExist) {
			return // an archive without entries
		}
		if err != nil {
			t.Fatal(err)
		}
		defer title.Close()
		_ = filepath.Walk(base, func(p string, fi os.FileInfo, werr error) error {
			if werr != nil || fi.Mode()&os.ModeSymlink == 0 {
				return nil
			}
			rel, _ := filepath.Rel(base, p)
			if _, serr := title.Stat(rel); serr != nil && strings.Contains(serr.Error(), "escapes") {
				t.Fatalf("accepted symlink %s resolves outside the title: %v", rel, serr)
			}
			return nil
		})
		_ = filepath.Walk(root, func(p string, fi os.FileInfo, werr error) error {
			if werr == nil && fi.IsDir() {
				_ = os.Chmod(p, 0o755) // let TempDir clean up read-only directories
			}
			return nil
		})
	})
}
