package artifact

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/converged-computing/oras-cache/sidecar/registrytest"
	"github.com/converged-computing/oras-cache/sidecar/transfer"
)

// memLog collects log lines (to assert on them, e.g. that no password is ever logged).
type memLog struct {
	mu    sync.Mutex
	lines []string
}

func (m *memLog) add(level, msg string, args ...any) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.lines = append(m.lines, fmt.Sprint(append([]any{level, msg}, args...)...))
}
func (m *memLog) Info(msg string, args ...any) { m.add("INFO ", msg, args...) }
func (m *memLog) Warn(msg string, args ...any) { m.add("WARN ", msg, args...) }
func (m *memLog) all() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var b bytes.Buffer
	for _, l := range m.lines {
		b.WriteString(l + "\n")
	}
	return b.String()
}

func testConfig(reg *registrytest.Registry) transfer.Config {
	cfg := transfer.Default()
	cfg.Registry = reg.Host
	cfg.Username, cfg.Password = reg.Username, reg.Password
	cfg.Timeout = 60 * time.Second
	return cfg
}

func newTestClient(t *testing.T, cfg transfer.Config) (*Client, *memLog) {
	t.Helper()
	log := &memLog{}
	c, err := NewClient(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	c.MinBackoff, c.MaxBackoff = 20*time.Millisecond, 500*time.Millisecond
	return c, log
}

// writeTree creates files (path → content) with modes (path → mode) under dir.
func writeTree(t *testing.T, dir string, files map[string]string, modes map[string]os.FileMode) {
	t.Helper()
	for p, content := range files {
		full := filepath.Join(dir, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		mode := os.FileMode(0o644)
		if m, ok := modes[p]; ok {
			mode = m
		}
		if err := os.WriteFile(full, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(full, mode); err != nil {
			t.Fatal(err)
		}
	}
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

// snapshot maps each relative path under dir to "mode|content" (symlinks: "link|target").
func snapshot(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			tgt, _ := os.Readlink(p)
			out[rel] = "link|" + tgt
		case fi.IsDir():
			out[rel] = fmt.Sprintf("dir %v", fi.Mode().Perm())
		default:
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			out[rel] = fmt.Sprintf("%v|%x", fi.Mode().Perm(), b)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func compareTrees(t *testing.T, want, got string) {
	t.Helper()
	a, b := snapshot(t, want), snapshot(t, got)
	var keys []string
	for k := range a {
		keys = append(keys, k)
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		if a[k] != b[k] {
			av, bv := a[k], b[k]
			if len(av) > 80 {
				av = av[:80]
			}
			if len(bv) > 80 {
				bv = bv[:80]
			}
			t.Errorf("%s: want %q, got %q", k, av, bv)
		}
	}
}
