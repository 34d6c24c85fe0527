package artifact

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/converged-computing/oras-cache/sidecar/transfer"

	"github.com/klauspost/pgzip"
)

func TestPackDirIsReproducible(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	files := map[string]string{"b.txt": "bee", "a/z.txt": "zed", "a/y.bin": string(randomBytes(3 << 20)), "c": ""}
	writeTree(t, dir, files, map[string]os.FileMode{"a/z.txt": 0o600, "c": 0o755})
	if err := os.Symlink("b.txt", filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	pack := func() ([]byte, PackStats) {
		var buf bytes.Buffer
		st, err := PackDir(context.Background(), dir, "data", &buf, 1, nil)
		if err != nil {
			t.Fatal(err)
		}
		return buf.Bytes(), st
	}
	one, st1 := pack()
	// Touch every file and change the parallelism: the bytes must not change.
	future := time.Now().Add(time.Hour)
	for p := range files {
		if err := os.Chtimes(filepath.Join(dir, p), future, future); err != nil {
			t.Fatal(err)
		}
	}
	old := runtime.GOMAXPROCS(1)
	two, st2 := pack()
	runtime.GOMAXPROCS(old)
	if !bytes.Equal(one, two) || st1.TarDigest != st2.TarDigest {
		t.Fatalf("packing is not reproducible: %x vs %x", sha256.Sum256(one), sha256.Sum256(two))
	}
	if st1.Files != 4 {
		t.Fatalf("files = %d", st1.Files)
	}
	// A standard gzip stream of a tar with the title prefix; unpacks to the same tree and modes.
	gz, err := pgzip.NewReader(bytes.NewReader(one))
	if err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	if _, err := Untar(gz, out, "data", Limits{Bytes: 1 << 30, Entries: 1 << 20}, false); err != nil {
		t.Fatal(err)
	}
	compareTrees(t, dir, filepath.Join(out, "data"))
	// gzip header: no name, mtime 0.
	if one[3]&0x08 != 0 || !bytes.Equal(one[4:8], []byte{0, 0, 0, 0}) {
		t.Fatalf("gzip header carries a name or a time: % x", one[:10])
	}
}

func TestPackDirChangesWithContent(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "d")
	writeTree(t, dir, map[string]string{"f": "1"}, nil)
	var a, b bytes.Buffer
	if _, err := PackDir(context.Background(), dir, "d", &a, 1, nil); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(dir, "f"), 0o700); err != nil {
		t.Fatal(err)
	}
	if _, err := PackDir(context.Background(), dir, "d", &b, 1, nil); err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(a.Bytes(), b.Bytes()) {
		t.Fatal("a mode change did not change the archive")
	}
}

func BenchmarkPackDir(b *testing.B) {
	dir := filepath.Join(b.TempDir(), "d")
	for i := 0; i < 16; i++ {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			b.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprint(i)), randomBytes(4<<20), 0o644); err != nil {
			b.Fatal(err)
		}
	}
	b.SetBytes(64 << 20)
	for i := 0; i < b.N; i++ {
		var n countWriter
		n.w = discard{}
		if _, err := PackDir(context.Background(), dir, "d", &n, 1, nil); err != nil {
			b.Fatal(err)
		}
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

func TestPackDirThroughSymlink(t *testing.T) {
	base := t.TempDir()
	dir := filepath.Join(base, "real")
	writeTree(t, dir, map[string]string{"f": "x"}, nil)
	if err := os.Symlink("real", filepath.Join(base, "alias")); err != nil {
		t.Fatal(err)
	}
	var a, b bytes.Buffer
	if _, err := PackDir(context.Background(), dir, "t", &a, 1, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := PackDir(context.Background(), filepath.Join(base, "alias"), "t", &b, 1, nil); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a.Bytes(), b.Bytes()) {
		t.Fatal("packing through a symlink differs from packing the directory")
	}
}

// The second packing pass (while uploading) must produce the bytes the first one hashed; an output
// that changed in between is an error, never a blob that does not match its digest.
func TestRepackDetectsChangedOutput(t *testing.T) {
	c, _ := newTestClient(t, transfer.Default())
	dir := filepath.Join(t.TempDir(), "out")
	writeTree(t, dir, map[string]string{"f": "before"}, nil)
	l, err := c.packLayer(context.Background(), dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer l.close()
	rc, _ := l.open()
	same, err := io.ReadAll(rc)
	if err != nil || int64(len(same)) != l.desc.Size {
		t.Fatalf("unchanged repack: %d bytes, %v", len(same), err)
	}
	writeTree(t, dir, map[string]string{"f": "after!"}, nil)
	rc, _ = l.open()
	_, err = io.ReadAll(rc)
	if err == nil || !strings.Contains(err.Error(), "changed while it was pushed") {
		t.Fatalf("want a changed-output error, got %v", err)
	}
}
