package guard

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/converged-computing/oras-cache/sidecar/registrytest"
)

// A collection waits for the write in flight (it completes), refuses new ones with a retryable
// 503 while its read-only window lasts, and reopens afterwards.
func TestCollectionDrainsWritesAndRefusesNewOnes(t *testing.T) {
	reg := registrytest.Start(t, registrytest.Options{Auth: true})
	cfg := filepath.Join(t.TempDir(), "guard.json")
	b, _ := json.Marshal(Config{VolumeSize: "256Mi", Volume: "emptyDir"})
	if err := os.WriteFile(cfg, b, 0o644); err != nil {
		t.Fatal(err)
	}
	g, err := New(Options{Upstream: reg.Host, Root: reg.Root, ConfigFile: cfg,
		GCArgv: []string{registrytest.Binary(t, "registry"), "garbage-collect", filepath.Join(filepath.Dir(reg.Root), "config.yml")}})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(g)
	defer srv.Close()
	auth := "Basic " + base64.StdEncoding.EncodeToString([]byte(reg.Username+":"+reg.Password))
	do := func(method, url string, body io.Reader) *http.Response {
		req, _ := http.NewRequest(method, url, body)
		req.Header.Set("Authorization", auth)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Error(err)
			return nil
		}
		return resp
	}
	start := func() string {
		resp := do(http.MethodPost, srv.URL+"/v2/gate/app/blobs/uploads/", nil)
		resp.Body.Close()
		loc := resp.Header.Get("Location")
		if !strings.HasPrefix(loc, "http") {
			loc = srv.URL + loc
		}
		return loc
	}
	// A blob in the registry, so that its garbage collection has a tree to walk.
	resp := do(http.MethodPut, start()+"&digest=sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a", strings.NewReader("{}"))
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("blob: %s", resp.Status)
	}
	loc := start()
	// A chunk that streams until the test says so: a write in flight.
	pr, pw := io.Pipe()
	patched := make(chan int, 1)
	go func() {
		resp := do(http.MethodPatch, loc, pr)
		if resp == nil {
			patched <- 0
			return
		}
		resp.Body.Close()
		patched <- resp.StatusCode
	}()
	if _, err := pw.Write([]byte("first bytes")); err != nil {
		t.Fatal(err)
	}
	for g.inflightNow() == 0 {
		time.Sleep(5 * time.Millisecond)
	}
	collected := make(chan Report, 1)
	go func() { collected <- g.Collect(context.Background(), auth) }()
	for !g.closedNow() {
		time.Sleep(5 * time.Millisecond)
	}
	resp = do(http.MethodPost, srv.URL+"/v2/gate/other/blobs/uploads/", nil)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("a new write during the read-only window: %s (Retry-After %q)", resp.Status, resp.Header.Get("Retry-After"))
	}
	resp = do(http.MethodGet, srv.URL+"/v2/", nil)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("a read during the window: %s", resp.Status)
	}
	select {
	case rep := <-collected:
		t.Fatalf("the collection did not wait for the write in flight: %+v", rep)
	default:
	}
	_, _ = pw.Write([]byte("last bytes"))
	pw.Close()
	if st := <-patched; st != http.StatusAccepted {
		t.Fatalf("the write in flight: %d", st)
	}
	if rep := <-collected; rep.Error != "" {
		t.Fatal(rep.Error)
	}
	resp = do(http.MethodPost, srv.URL+"/v2/gate/other/blobs/uploads/", nil)
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("a write after the collection: %s", resp.Status)
	}
}

func (g *Guard) inflightNow() int { g.gate.Lock(); defer g.gate.Unlock(); return g.inflight }
func (g *Guard) closedNow() bool  { g.gate.Lock(); defer g.gate.Unlock(); return g.closed }

// A claim fuller than its request says (shared, or smaller than asked) is caught by statfs: the
// write is refused while the filesystem would keep less than MinHeadroom free. The filesystem's
// numbers are the one fake here: a small full filesystem cannot be made without privileges.
func TestFullFilesystemIsRefusedBeforeTheBound(t *testing.T) {
	reg := registrytest.Start(t, registrytest.Options{})
	cfg := filepath.Join(t.TempDir(), "guard.json")
	b, _ := json.Marshal(Config{VolumeSize: "1Gi", Volume: "persistentVolumeClaim"})
	if err := os.WriteFile(cfg, b, 0o644); err != nil {
		t.Fatal(err)
	}
	g, err := New(Options{Upstream: reg.Host, Root: reg.Root, ConfigFile: cfg,
		statfsForTst: func(string) (int64, int64, error) { return 1 << 30, 20 << 20, nil }})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(g)
	defer srv.Close()
	resp, err := http.Post(srv.URL+"/v2/full/app/blobs/uploads/", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc := resp.Header.Get("Location")
	if !strings.HasPrefix(loc, "http") {
		loc = srv.URL + loc
	}
	req, _ := http.NewRequest(http.MethodPut, loc+"&digest=sha256:"+strings.Repeat("0", 64), strings.NewReader(strings.Repeat("x", 16<<20)))
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusInsufficientStorage || !strings.Contains(string(body), "cache full: 1004.0MiB of 1.0GiB used") ||
		!strings.Contains(string(body), "registry.persistence.size") {
		t.Fatalf("16 MiB into a filesystem with 20 MiB free: %s %s", resp.Status, body)
	}
}
