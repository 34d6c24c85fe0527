package artifact

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

type entry struct {
	name, link string
	typ        byte
	body       string
	mode       int64
}

func makeTar(t testing.TB, entries []entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		mode := e.mode
		if mode == 0 {
			mode = 0o644
		}
		h := &tar.Header{Name: e.name, Linkname: e.link, Typeflag: e.typ, Mode: mode, Size: int64(len(e.body))}
		if e.typ != tar.TypeReg {
			h.Size = 0
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Size > 0 {
			if _, err := tw.Write([]byte(e.body)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// listTree returns every path under dir (relative), sorted.
func listTree(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.Walk(dir, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		out = append(out, rel)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(out)
	return out
}

func TestUntarRefusesMaliciousArchives(t *testing.T) {
	dir := func(n string) entry { return entry{name: n, typ: tar.TypeDir, mode: 0o755} }
	file := func(n string) entry { return entry{name: n, typ: tar.TypeReg, body: "pwned"} }
	cases := map[string][]entry{
		"absolute path":             {dir("p/"), file("/tmp/p/evil")},
		"dot-dot escape":            {dir("p/"), file("p/../evil")},
		"dot-dot deep":              {dir("p/"), file("p/a/../../evil")},
		"outside the title":         {dir("p/"), file("q/evil")},
		"symlink absolute":          {dir("p/"), {name: "p/l", typ: tar.TypeSymlink, link: "/etc"}},
		"symlink relative escape":   {dir("p/"), {name: "p/l", typ: tar.TypeSymlink, link: "../.."}},
		"symlink to the parent":     {dir("p/"), {name: "p/l", typ: tar.TypeSymlink, link: ".."}},
		"symlink chain escape":      {dir("p/"), {name: "p/a", typ: tar.TypeSymlink, link: "."}, {name: "p/x", typ: tar.TypeSymlink, link: "a/.."}},
		"write through symlink":     {dir("p/"), dir("p/sub/"), {name: "p/l", typ: tar.TypeSymlink, link: "sub"}, file("p/l/evil")},
		"hardlink outside":          {dir("p/"), {name: "p/h", typ: tar.TypeLink, link: "../../etc/passwd"}},
		"hardlink absolute":         {dir("p/"), {name: "p/h", typ: tar.TypeLink, link: "/etc/passwd"}},
		"hardlink to missing":       {dir("p/"), {name: "p/h", typ: tar.TypeLink, link: "p/nothing"}},
		"hardlink to symlink":       {dir("p/"), file("p/f"), {name: "p/s", typ: tar.TypeSymlink, link: "f"}, {name: "p/h", typ: tar.TypeLink, link: "p/s"}},
		"character device":          {dir("p/"), {name: "p/dev", typ: tar.TypeChar}},
		"block device":              {dir("p/"), {name: "p/dev", typ: tar.TypeBlock}},
		"fifo":                      {dir("p/"), {name: "p/fifo", typ: tar.TypeFifo}},
		"duplicate file":            {dir("p/"), file("p/f"), file("p/f")},
		"file replaced by symlink":  {dir("p/"), file("p/f"), {name: "p/f", typ: tar.TypeSymlink, link: "/etc/passwd"}},
		"oversized (limit 10)":      {dir("p/"), {name: "p/big", typ: tar.TypeReg, body: strings.Repeat("x", 11)}},
		"oversized across files":    {dir("p/"), {name: "p/a", typ: tar.TypeReg, body: "123456"}, {name: "p/b", typ: tar.TypeReg, body: "123456"}},
		"empty name":                {dir("p/"), file("")},
		"file at the title through": {file("p"), file("p/x")},
		// Issue 9: a dangling chain that is lexically inside but resolves above the title.
		"dangling symlink chain": {dir("p/"), {name: "p/a/b/c/up", typ: tar.TypeSymlink, link: "../../.."},
			{name: "p/x", typ: tar.TypeSymlink, link: "a/b/c/up/../../var/run/secrets/token"}},
		"chain defined after its use": {dir("p/"), {name: "p/x", typ: tar.TypeSymlink, link: "a/up/../secret"},
			{name: "p/a/up", typ: tar.TypeSymlink, link: ".."}},
		"top entry is a symlink":    {{name: "p", typ: tar.TypeSymlink, link: "p"}},
		"symlink loop":              {dir("p/"), {name: "p/l1", typ: tar.TypeSymlink, link: "l2"}, {name: "p/l2", typ: tar.TypeSymlink, link: "l1"}},
		"hard links over the bound": {dir("p/"), {name: "p/f", typ: tar.TypeReg, body: "123456"}, {name: "p/h", typ: tar.TypeLink, link: "p/f"}},
		"more than 100 entries":     manyEntries(101),
	}
	for name, entries := range cases {
		t.Run(name, func(t *testing.T) {
			parent := t.TempDir()
			root := filepath.Join(parent, "root")
			if err := os.Mkdir(root, 0o755); err != nil {
				t.Fatal(err)
			}
			sentinel := filepath.Join(parent, "sentinel")
			if err := os.WriteFile(sentinel, []byte("intact"), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := Untar(bytes.NewReader(makeTar(t, entries)), root, "p", Limits{Bytes: 10, Entries: 100}, false)
			if err == nil {
				t.Fatalf("archive %q was accepted", name)
			}
			if !errors.Is(err, ErrUnsafe) {
				t.Logf("refused with a non-ErrUnsafe error (ok if it is an fs refusal): %v", err)
			}
			// Nothing outside root; the sentinel untouched.
			if got := listTree(t, parent); strings.Join(got, ",") != strings.Join(filterRoot(got), ",") {
				t.Fatalf("something was written outside the target: %v", got)
			}
			if b, _ := os.ReadFile(sentinel); string(b) != "intact" {
				t.Fatal("sentinel changed")
			}
			for _, p := range []string{"/tmp/p/evil", filepath.Join(parent, "evil")} {
				if _, err := os.Lstat(p); err == nil {
					t.Fatalf("%s was created", p)
				}
			}
		})
	}
}

func manyEntries(n int) []entry {
	out := []entry{{name: "p/", typ: tar.TypeDir, mode: 0o755}}
	for i := 1; i < n; i++ {
		out = append(out, entry{name: fmt.Sprintf("p/e%d", i), typ: tar.TypeReg})
	}
	return out
}

// The bounds are named with their value and their variable, so the user knows what to raise.
func TestUntarBoundsNameTheirVariable(t *testing.T) {
	bomb := []entry{{name: "p/f", typ: tar.TypeReg, body: strings.Repeat("x", 1000)}}
	for i := range 50 {
		bomb = append(bomb, entry{name: fmt.Sprintf("p/h%d", i), typ: tar.TypeLink, link: "p/f"})
	}
	_, err := Untar(bytes.NewReader(makeTar(t, bomb)), t.TempDir(), "p", Limits{Bytes: 20000, Entries: 1000}, false)
	if err == nil || !errors.Is(err, ErrUnsafe) || !strings.Contains(err.Error(), "ORAS_CACHE_MAX_UNPACK_SIZE=20000") || !strings.Contains(err.Error(), "hard links") {
		t.Fatalf("hard-link bomb: %v", err)
	}
	_, err = Untar(bytes.NewReader(makeTar(t, manyEntries(30))), t.TempDir(), "p", Limits{Bytes: 1 << 20, Entries: 20}, false)
	if err == nil || !errors.Is(err, ErrUnsafe) || !strings.Contains(err.Error(), "ORAS_CACHE_MAX_UNPACK_ENTRIES=20") {
		t.Fatalf("entries: %v", err)
	}
}

// filterRoot keeps ".", "sentinel", "root" and anything under root.
func filterRoot(paths []string) []string {
	var out []string
	for _, p := range paths {
		if p == "." || p == "sentinel" || p == "root" || strings.HasPrefix(p, "root/") {
			out = append(out, p)
		}
	}
	return out
}

func TestUntarAcceptsSafeArchive(t *testing.T) {
	root := t.TempDir()
	entries := []entry{
		{name: "p/", typ: tar.TypeDir, mode: 0o750},
		{name: "p/ro/", typ: tar.TypeDir, mode: 0o555},
		{name: "p/ro/f", typ: tar.TypeReg, body: "in a read-only dir", mode: 0o600},
		{name: "p/exe", typ: tar.TypeReg, body: "#!/bin/sh\n", mode: 0o755},
		{name: "p/implicit/deep/file", typ: tar.TypeReg, body: "parents created"},
		{name: "p/link", typ: tar.TypeSymlink, link: "exe"},
		{name: "p/ro/up", typ: tar.TypeSymlink, link: "../exe"},
		{name: "p/dangling", typ: tar.TypeSymlink, link: "nothing/here"},
		{name: "p/hard", typ: tar.TypeLink, link: "p/exe"},
		{name: "p/suid", typ: tar.TypeReg, body: "x", mode: 0o4755},
	}
	st, err := Untar(bytes.NewReader(makeTar(t, entries)), root, "p", Limits{Bytes: 1 << 20, Entries: 1000}, false)
	if err != nil {
		t.Fatal(err)
	}
	if st.Files != 5 {
		t.Fatalf("files = %d, want 5", st.Files)
	}
	check := func(p string, mode os.FileMode) {
		t.Helper()
		fi, err := os.Lstat(filepath.Join(root, p))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != mode {
			t.Errorf("%s mode %v, want %v", p, fi.Mode().Perm(), mode)
		}
	}
	check("p", 0o750)
	check("p/ro", 0o555)
	check("p/ro/f", 0o600)
	check("p/exe", 0o755)
	check("p/suid", 0o755) // setuid dropped
	if b, _ := os.ReadFile(filepath.Join(root, "p/link")); string(b) != "#!/bin/sh\n" {
		t.Errorf("symlink content %q", b)
	}
	if b, _ := os.ReadFile(filepath.Join(root, "p/hard")); string(b) != "#!/bin/sh\n" {
		t.Errorf("hard link content %q", b)
	}
	_ = os.Chmod(filepath.Join(root, "p/ro"), 0o755) // let t.TempDir clean up

	// readableByAll
	root2 := t.TempDir()
	if _, err := Untar(bytes.NewReader(makeTar(t, entries)), root2, "p", Limits{Bytes: 1 << 20, Entries: 1000}, true); err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(filepath.Join(root2, "p/ro/f"))
	if fi.Mode().Perm() != 0o644 {
		t.Errorf("readableByAll: mode %v", fi.Mode().Perm())
	}
	fi, _ = os.Stat(filepath.Join(root2, "p"))
	if fi.Mode().Perm() != 0o755 {
		t.Errorf("readableByAll dir: mode %v", fi.Mode().Perm())
	}
	_ = os.Chmod(filepath.Join(root2, "p/ro"), 0o755)
}
