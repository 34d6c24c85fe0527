package artifact

import (
	"context"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/converged-computing/oras-cache/sidecar/registrytest"
)

// front puts an HTTP(S) reverse proxy before a real registry; fail decides, per request number,
// whether to answer with an error status instead.
func front(t *testing.T, reg *registrytest.Registry, tlsOn bool, fail func(n int64, r *http.Request) int) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	target, _ := url.Parse("http://" + reg.Host)
	rp := httputil.NewSingleHostReverseProxy(target)
	var n atomic.Int64
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if code := fail(n.Add(1), r); code != 0 {
			if code == http.StatusTooManyRequests {
				w.Header().Set("Retry-After", "0")
			}
			http.Error(w, "injected fault", code)
			return
		}
		if tlsOn {
			r.Header.Set("X-Forwarded-Proto", "https") // so the registry's upload Location stays https
		}
		rp.ServeHTTP(w, r)
	})
	var s *httptest.Server
	if tlsOn {
		s = httptest.NewTLSServer(h)
	} else {
		s = httptest.NewServer(h)
	}
	t.Cleanup(s.Close)
	return s, &n
}

func TestTLSWithCustomCA(t *testing.T) {
	reg := registrytest.Start(t, registrytest.Options{Auth: true})
	s, _ := front(t, reg, true, func(int64, *http.Request) int { return 0 })
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.Certificate().Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(reg)
	cfg.Registry = strings.TrimPrefix(s.URL, "https://")
	cfg.PlainHTTP = false
	cfg.CAFile = caFile
	c, _ := newTestClient(t, cfg)
	dir := filepath.Join(t.TempDir(), "tls")
	writeTree(t, dir, map[string]string{"f": "over TLS"}, nil)
	ctx := context.Background()
	if _, err := c.Push(ctx, "tls/test:v1", []string{dir}, PushOptions{}); err != nil {
		t.Fatal(err)
	}
	dest := filepath.Join(t.TempDir(), "in")
	if _, err := c.Pull(ctx, "tls/test:v1", dest, PullOptions{}); err != nil {
		t.Fatal(err)
	}
	compareTrees(t, dir, filepath.Join(dest, "tls"))

	// Without the CA: an immediate, clear certificate error (never retried until the deadline).
	cfg.CAFile = ""
	bad, _ := newTestClient(t, cfg)
	start := time.Now()
	_, err := bad.Pull(ctx, "tls/test:v1", filepath.Join(t.TempDir(), "in"), PullOptions{})
	if err == nil || !strings.Contains(err.Error(), "certificate") || time.Since(start) > 5*time.Second {
		t.Fatalf("want a fast certificate error, got %v after %s", err, time.Since(start))
	}
	// Plain HTTP against the TLS port: also immediate.
	cfg.PlainHTTP = true
	mixed, _ := newTestClient(t, cfg)
	start = time.Now()
	if _, err := mixed.Pull(ctx, "tls/test:v1", filepath.Join(t.TempDir(), "in"), PullOptions{}); err == nil || time.Since(start) > 5*time.Second {
		t.Fatalf("plain HTTP to a TLS port: %v after %s", err, time.Since(start))
	}
}

// 429 and 5xx answers are retried (push and pull succeed through a registry that fails a set of
// early requests, whichever they are); a registry that always fails makes the operation give up
// at the deadline.
func TestRetriesOn429And5xx(t *testing.T) {
	reg := registrytest.Start(t, registrytest.Options{})
	codes := []int{http.StatusServiceUnavailable, http.StatusTooManyRequests, http.StatusBadGateway, http.StatusInternalServerError}
	failing := map[int64]int{2: 0, 3: 1, 5: 2, 8: 3, 13: 0, 21: 1, 22: 2, 34: 3}
	s, n := front(t, reg, false, func(i int64, r *http.Request) int {
		if k, ok := failing[i]; ok {
			return codes[k]
		}
		return 0
	})
	cfg := testConfig(reg)
	cfg.Registry = strings.TrimPrefix(s.URL, "http://")
	c, log := newTestClient(t, cfg)
	dir := filepath.Join(t.TempDir(), "flaky")
	writeTree(t, dir, map[string]string{"a": "1", "b/c": string(randomBytes(100 << 10))}, nil)
	ctx := context.Background()
	res, err := c.Push(ctx, "flaky/x:v1", []string{dir, filepath.Join(dir, "a")}, PushOptions{})
	if err != nil {
		t.Fatalf("push through a flaky registry: %v\n%.3000s", err, log.all())
	}
	dest := filepath.Join(t.TempDir(), "in")
	pr, err := c.Pull(ctx, "flaky/x:v1", dest, PullOptions{})
	if err != nil || pr.Digest != res.Digest {
		t.Fatalf("pull through a flaky registry: %v\n%.3000s", err, log.all())
	}
	compareTrees(t, dir, filepath.Join(dest, "flaky"))
	for _, want := range []string{"503", "429"} {
		if !strings.Contains(log.all(), want) {
			t.Errorf("no retry of a %s was logged (%d requests)", want, n.Load())
		}
	}

	down, _ := front(t, reg, false, func(int64, *http.Request) int { return http.StatusServiceUnavailable })
	cfg.Registry = strings.TrimPrefix(down.URL, "http://")
	cfg.Timeout = 1500 * time.Millisecond
	dc, _ := newTestClient(t, cfg)
	start := time.Now()
	_, err = dc.Push(ctx, "flaky/x:v2", []string{dir}, PushOptions{})
	if err == nil || !strings.Contains(err.Error(), "deadline") || time.Since(start) > 4*time.Second {
		t.Fatalf("want a deadline failure within ~1.5s, got %v after %s", err, time.Since(start))
	}
}

func TestProgressLines(t *testing.T) {
	reg := registrytest.Start(t, registrytest.Options{})
	proxy := startProxy(t, reg.Host)
	proxy.delay.Store(int64(time.Millisecond))
	cfg := testConfig(reg)
	cfg.Registry = proxy.addr()
	c, log := newTestClient(t, cfg)
	c.progressThreshold, c.progressInterval = 1, 20*time.Millisecond
	dir := randomDir(t, "big", 2, 1<<20)
	if _, err := c.Push(context.Background(), "progress/x:v1", []string{dir}, PushOptions{}); err != nil {
		t.Fatal(err)
	}
	if l := log.all(); !strings.Contains(l, "progress") || !strings.Contains(l, "percent") || !strings.Contains(l, "MBps") {
		t.Fatalf("no progress line:\n%s", l)
	}
}
