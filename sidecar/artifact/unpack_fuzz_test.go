package artifact

import (
	"archive/tar"
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzUntar: whatever the archive, nothing is ever created outside the target directory, and an
// accepted archive has no symlink resolving outside its title. `go test` runs the seeds;
// `go test -fuzz FuzzUntar ./sidecar/artifact` explores further.
func FuzzUntar(f *testing.F) {
	seeds := [][]entry{
		{{name: "p/", typ: tar.TypeDir, mode: 0o755}, {name: "p/f", typ: tar.TypeReg, body: "ok"}},
		{{name: "p/a", typ: tar.TypeSymlink, link: "."}, {name: "p/x", typ: tar.TypeSymlink, link: "a/.."}},
		{{name: "p/l", typ: tar.TypeSymlink, link: "../q"}, {name: "p/l/f", typ: tar.TypeReg, body: "x"}},
		{{name: "p/f", typ: tar.TypeReg, body: "x"}, {name: "p/h", typ: tar.TypeLink, link: "p/f"}},
		{{name: "p/../../e", typ: tar.TypeReg, body: "x"}},
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
		_, err := Untar(bytes.NewReader(data), root, "p", 1<<20, false)
		entries, _ := os.ReadDir(parent)
		if len(entries) != 1 || entries[0].Name() != "root" {
			t.Fatalf("created outside the target: %v", entries)
		}
		if err != nil {
			return
		}
		base := filepath.Join(root, "p")
		_ = filepath.Walk(root, func(p string, fi os.FileInfo, werr error) error {
			if werr != nil || fi.Mode()&os.ModeSymlink == 0 {
				return nil
			}
			real, rerr := filepath.EvalSymlinks(p)
			if rerr == nil && real != base && !strings.HasPrefix(real, base+"/") {
				t.Fatalf("accepted symlink %s resolves to %s", p, real)
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
