package guard_test

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/converged-computing/oras-cache/sidecar/artifact"
	"github.com/converged-computing/oras-cache/sidecar/guard"
	"github.com/converged-computing/oras-cache/sidecar/registrytest"
	"github.com/converged-computing/oras-cache/sidecar/transfer"
)

// setup runs a real registry with a guard in front of it (bound from cfg) and returns the
// guard, its host and a client of the data path that pushes through it.
func setup(t *testing.T, cfg guard.Config) (*guard.Guard, string, *artifact.Client, *registrytest.Registry, string) {
	t.Helper()
	reg := registrytest.Start(t, registrytest.Options{Auth: true})
	cfgFile := writeConfig(t, t.TempDir(), cfg)
	g, err := guard.New(guard.Options{Upstream: reg.Host, Root: reg.Root, ConfigFile: cfgFile, ReloadEvery: 50 * time.Millisecond,
		GCArgv: []string{registrytest.Binary(t, "registry"), "garbage-collect", filepath.Join(filepath.Dir(reg.Root), "config.yml")},
		Log:    slog.New(slog.NewTextHandler(os.Stderr, nil))})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(g)
	t.Cleanup(srv.Close)
	host := strings.TrimPrefix(srv.URL, "http://")
	tc := transfer.Default()
	tc.Registry, tc.Username, tc.Password, tc.Timeout = host, reg.Username, reg.Password, time.Minute
	c, err := artifact.NewClient(tc, nil)
	if err != nil {
		t.Fatal(err)
	}
	c.MinBackoff, c.MaxBackoff = 20*time.Millisecond, 200*time.Millisecond
	return g, host, c, reg, cfgFile
}

func writeConfig(t *testing.T, dir string, cfg guard.Config) string {
	t.Helper()
	b, _ := json.Marshal(cfg)
	p := filepath.Join(dir, "guard.json")
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func randomFile(t *testing.T, name string, size int) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	b := make([]byte, size)
	_, _ = rand.Read(b)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// A push that fits lands; the next one, which does not, is refused with 507 at once (no
// retries), its message says how full the cache is and what to change, and the first artifact
// is still there.
func TestPushPastTheBoundIsRefusedAndNothingIsLost(t *testing.T) {
	g, _, c, _, _ := setup(t, guard.Config{Bound: "20Mi", VolumeSize: "64Mi", Volume: "emptyDir"})
	ctx := context.Background()
	a, err := c.Push(ctx, "capacity/a:v1", []string{randomFile(t, "a.bin", 8<<20)}, artifact.PushOptions{})
	if err != nil {
		t.Fatalf("push A (8 MiB of a 20 MiB bound): %v", err)
	}
	_, err = c.Push(ctx, "capacity/b:v1", []string{randomFile(t, "b.bin", 16<<20)}, artifact.PushOptions{})
	if err == nil {
		t.Fatal("push B (16 MiB more) succeeded past the bound")
	}
	msg, full := artifact.CacheFull(err)
	if !full {
		t.Fatalf("push B failed, but not as cache full: %v", err)
	}
	if !strings.HasPrefix(msg, "cache full: ") || !strings.Contains(msg, " of 20.0MiB used") ||
		!strings.Contains(msg, "registry.capacity.bound") || !strings.Contains(msg, "retention.keepLast") ||
		!strings.Contains(msg, "registry.emptyDirSizeLimit") {
		t.Fatalf("message %q lacks the numbers or the values to change", msg)
	}
	if strings.Contains(err.Error(), "attempt") {
		t.Fatalf("a full cache was retried: %v", err)
	}
	u := g.Usage()
	if u.RejectedWrites != 1 {
		t.Fatalf("rejected writes = %d, want 1 (a retry would count again)", u.RejectedWrites)
	}
	if u.Used > u.Bound {
		t.Fatalf("used %d above bound %d", u.Used, u.Bound)
	}
	dest := filepath.Join(t.TempDir(), "a")
	res, err := c.Pull(ctx, "capacity/a:v1", dest, artifact.PullOptions{})
	if err != nil || res.Digest != a.Digest {
		t.Fatalf("A after the refusal: %v (digest %s, pushed %s)", err, res.Digest, a.Digest)
	}
}

// An upload of unknown length (chunked PATCH) is cut where it would cross the bound, answered
// 507 with the OCI error body, and its upload session is deleted so its partial bytes are freed.
func TestStreamedUploadIsCutAtTheBound(t *testing.T) {
	g, host, _, reg, _ := setup(t, guard.Config{Bound: "12Mi", VolumeSize: "64Mi", Volume: "emptyDir"})
	do := func(method, url string, body io.Reader) *http.Response {
		t.Helper()
		req, _ := http.NewRequest(method, url, body)
		req.SetBasicAuth(reg.Username, reg.Password)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	resp := do(http.MethodPost, "http://"+host+"/v2/capacity/stream/blobs/uploads/", nil)
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("POST upload: %s", resp.Status)
	}
	loc := resp.Header.Get("Location")
	if !strings.HasPrefix(loc, "http") {
		loc = "http://" + host + loc
	}
	// 32 MiB through a pipe: no Content-Length, so the guard cannot refuse it up front.
	pr, pw := io.Pipe()
	go func() {
		buf := make([]byte, 1<<20)
		for i := 0; i < 32; i++ {
			_, _ = rand.Read(buf)
			if _, err := pw.Write(buf); err != nil {
				return
			}
		}
		pw.Close()
	}()
	resp = do(http.MethodPatch, loc, pr)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusInsufficientStorage {
		t.Fatalf("streamed PATCH past the bound: %s %s", resp.Status, body)
	}
	var e struct {
		Errors []struct {
			Code    string       `json:"code"`
			Message string       `json:"message"`
			Detail  guard.Detail `json:"detail"`
		} `json:"errors"`
	}
	if err := json.Unmarshal(body, &e); err != nil || len(e.Errors) != 1 {
		t.Fatalf("507 body is not an OCI error: %v %s", err, body)
	}
	if d := e.Errors[0].Detail; d.Bound != 12<<20 || d.Need != -1 || d.Used > d.Bound || e.Errors[0].Code != guard.CacheFullCode {
		t.Fatalf("507 detail %+v code %s", d, e.Errors[0].Code)
	}
	if !strings.Contains(e.Errors[0].Message, "unknown length") {
		t.Fatalf("message %q", e.Errors[0].Message)
	}
	// The session is gone: the registry freed what was written of it.
	resp = do(http.MethodGet, loc, nil)
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("upload session after the cut: %s, want 404", resp.Status)
	}
	if err := g.Walk(); err != nil {
		t.Fatal(err)
	}
	if u := g.Usage(); u.Used > 1<<20 {
		t.Fatalf("after the cut and a walk the cache still holds %d bytes", u.Used)
	}
}

// Raising the bound in the config file (what `helm upgrade` changes) takes effect without a
// restart; a bound the volume cannot hold is refused and the previous one stays.
func TestBoundChangesWhileRunning(t *testing.T) {
	g, _, c, _, cfgFile := setup(t, guard.Config{Bound: "4Mi", VolumeSize: "64Mi", Volume: "emptyDir"})
	ctx := context.Background()
	file := randomFile(t, "c.bin", 6<<20)
	if _, err := c.Push(ctx, "capacity/c:v1", []string{file}, artifact.PushOptions{}); err == nil {
		t.Fatal("6 MiB fit a 4 MiB bound")
	}
	writeConfig(t, filepath.Dir(cfgFile), guard.Config{Bound: "63Mi", VolumeSize: "64Mi", Volume: "emptyDir"})
	if err := reloadNow(g); err == nil || !strings.Contains(err.Error(), "registry.capacity.bound=63Mi is above 56.0MiB") ||
		!strings.Contains(err.Error(), "raise registry.emptyDirSizeLimit") {
		t.Fatalf("a bound without headroom: %v", err)
	}
	if u := g.Usage(); u.Bound != 4<<20 || u.ConfigError == "" {
		t.Fatalf("after a refused config: bound %d, config error %q", u.Bound, u.ConfigError)
	}
	writeConfig(t, filepath.Dir(cfgFile), guard.Config{Bound: "32Mi", VolumeSize: "64Mi", Volume: "emptyDir"})
	if err := reloadNow(g); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Push(ctx, "capacity/c:v1", []string{file}, artifact.PushOptions{}); err != nil {
		t.Fatalf("after raising the bound: %v", err)
	}
}

// reloadNow runs the guard's loop until it has read the config file again.
func reloadNow(g *guard.Guard) error {
	before := g.Usage()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go g.Run(ctx)
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		u := g.Usage()
		if u.Bound != before.Bound {
			return nil
		}
		if u.ConfigError != "" && u.ConfigError != before.ConfigError {
			return errors.New(u.ConfigError)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("config not re-read")
}

// The metrics say how full the cache is and how many writes were refused.
func TestMetrics(t *testing.T) {
	_, host, c, _, _ := setup(t, guard.Config{Bound: "6Mi", VolumeSize: "64Mi", Volume: "emptyDir"})
	ctx := context.Background()
	if _, err := c.Push(ctx, "capacity/m:v1", []string{randomFile(t, "m.bin", 1<<20)}, artifact.PushOptions{}); err != nil {
		t.Fatal(err)
	}
	_, _ = c.Push(ctx, "capacity/m:v2", []string{randomFile(t, "n.bin", 8<<20)}, artifact.PushOptions{})
	resp, err := http.Get("http://" + host + guard.MetricsPath)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	text := string(b)
	for _, want := range []string{"oras_cache_storage_bound_bytes 6291456\n", "oras_cache_rejected_writes_total 1\n",
		"# TYPE oras_cache_storage_used_bytes gauge\n", "oras_cache_config_error 0\n"} {
		if !strings.Contains(text, want) {
			t.Fatalf("metrics lack %q:\n%s", want, text)
		}
	}
}

// Serve runs the registry as its child (as in the registry container), proxies to it, and
// stops it on shutdown.
func TestServeRunsTheRegistry(t *testing.T) {
	reg := registrytest.Start(t, registrytest.Options{})
	reg.Stop() // the guard starts it again
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	listen := l.Addr().String()
	l.Close()
	cfgFile := writeConfig(t, t.TempDir(), guard.Config{VolumeSize: "64Mi", Volume: "emptyDir"})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- guard.Serve(ctx, guard.ServeOptions{Listen: listen,
			Argv:    []string{registrytest.Binary(t, "registry"), "serve", filepath.Join(filepath.Dir(reg.Root), "config.yml")},
			Options: guard.Options{Upstream: reg.Host, Root: reg.Root, ConfigFile: cfgFile}})
	}()
	tc := transfer.Default()
	tc.Registry, tc.Timeout = listen, 30*time.Second
	c, err := artifact.NewClient(tc, nil)
	if err != nil {
		t.Fatal(err)
	}
	c.MinBackoff, c.MaxBackoff = 20*time.Millisecond, 200*time.Millisecond
	// The first attempts meet a registry that is still starting (503, retried).
	if _, err := c.Push(context.Background(), "capacity/serve:v1", []string{randomFile(t, "s.bin", 1<<20)}, artifact.PushOptions{}); err != nil {
		t.Fatalf("push through Serve: %v", err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Serve after shutdown: %v", err)
	}
	if _, err := http.Get("http://" + reg.Host + "/v2/"); err == nil {
		t.Fatal("the registry still answers after the guard stopped")
	}
}
