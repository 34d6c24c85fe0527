package artifact

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/converged-computing/oras-cache/sidecar/contract"
	"github.com/converged-computing/oras-cache/sidecar/registrytest"
	"github.com/converged-computing/oras-cache/sidecar/transfer"
)

// TestMain lets the test binary act as a push process that a test can kill mid-upload.
func TestMain(m *testing.M) {
	if os.Getenv("ARTIFACT_TEST_HELPER") == "push" {
		var cfg transfer.Config
		if err := json.Unmarshal([]byte(os.Getenv("ARTIFACT_TEST_CONFIG")), &cfg); err != nil {
			panic(err)
		}
		c, err := NewClient(cfg, nil)
		if err != nil {
			panic(err)
		}
		_, err = c.Push(context.Background(), os.Getenv("ARTIFACT_TEST_REF"), []string{os.Getenv("ARTIFACT_TEST_PATH")}, PushOptions{})
		if err != nil {
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// faultProxy forwards TCP to a registry, optionally slowly, counting bytes both ways; it can cut
// every connection (a registry crash as clients see it, or a network fault).
type faultProxy struct {
	ln       net.Listener
	target   string
	up, down atomic.Int64 // client→server, server→client
	delay    atomic.Int64 // nanoseconds of sleep per 32 KiB chunk client→server
	cutDown  atomic.Int64 // cut every connection once this many bytes went server→client (0: never)
	mu       sync.Mutex
	conns    []net.Conn
}

func startProxy(t *testing.T, target string) *faultProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &faultProxy{ln: ln, target: target}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go p.serve(c)
		}
	}()
	t.Cleanup(func() { ln.Close(); p.cutAll() })
	return p
}

func (p *faultProxy) addr() string { return p.ln.Addr().String() }

func (p *faultProxy) serve(c net.Conn) {
	s, err := net.Dial("tcp", p.target)
	if err != nil {
		c.Close()
		return
	}
	p.mu.Lock()
	p.conns = append(p.conns, c, s)
	p.mu.Unlock()
	go func() { // client → server
		buf := make([]byte, 32<<10)
		for {
			n, err := c.Read(buf)
			if n > 0 {
				if d := p.delay.Load(); d > 0 {
					time.Sleep(time.Duration(d))
				}
				if _, werr := s.Write(buf[:n]); werr != nil {
					break
				}
				p.up.Add(int64(n))
			}
			if err != nil {
				break
			}
		}
		s.Close()
		c.Close()
	}()
	buf := make([]byte, 32<<10)
	for {
		n, err := s.Read(buf)
		if n > 0 {
			if _, werr := c.Write(buf[:n]); werr != nil {
				break
			}
			if total := p.down.Add(int64(n)); p.cutDown.Load() > 0 && total >= p.cutDown.Load() {
				p.cutDown.Store(0)
				p.cutAll()
				return
			}
		}
		if err != nil {
			break
		}
	}
	s.Close()
	c.Close()
}

func (p *faultProxy) cutAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func randomDir(t *testing.T, name string, files, size int) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), name)
	m := map[string]string{}
	for i := 0; i < files; i++ {
		m[filepath.Join("part", string(rune('a'+i)))] = string(randomBytes(size))
	}
	writeTree(t, dir, m, nil)
	return dir
}

// The registry dies in the middle of an upload and comes back: the push retries and completes,
// and the pulled artifact is intact.
func TestFaultRegistryRestartMidPush(t *testing.T) {
	reg := registrytest.Start(t, registrytest.Options{Auth: true})
	proxy := startProxy(t, reg.Host)
	proxy.delay.Store(int64(2 * time.Millisecond)) // ~16 MB/s
	cfg := testConfig(reg)
	cfg.Registry = proxy.addr()
	c, log := newTestClient(t, cfg)
	dir := randomDir(t, "data", 4, 1<<20)

	type result struct {
		res contract.PushResult
		err error
	}
	done := make(chan result, 1)
	go func() {
		r, err := c.Push(context.Background(), "fault/restart:v1", []string{dir}, PushOptions{})
		done <- result{r, err}
	}()
	waitFor(t, "the upload to start", 20*time.Second, func() bool { return proxy.up.Load() > 1<<20 })
	reg.Stop()
	proxy.cutAll()
	time.Sleep(300 * time.Millisecond)
	reg.Restart(t)
	proxy.delay.Store(0)
	r := <-done
	if r.err != nil {
		t.Fatalf("push did not survive a registry restart: %v\nlog:\n%s", r.err, log.all())
	}
	if !strings.Contains(log.all(), "retrying") {
		t.Fatalf("no retry was logged:\n%s", log.all())
	}
	direct, _ := newTestClient(t, testConfig(reg))
	dest := filepath.Join(t.TempDir(), "in")
	pr, err := direct.Pull(context.Background(), "fault/restart:v1", dest, PullOptions{})
	if err != nil || pr.Digest != r.res.Digest {
		t.Fatalf("pull after restart: %+v %v", pr, err)
	}
	compareTrees(t, dir, filepath.Join(dest, "data"))
}

// A download cut in the middle resumes at its offset and the result is verified.
func TestFaultPullResumesAfterCut(t *testing.T) {
	reg := registrytest.Start(t, registrytest.Options{})
	c, _ := newTestClient(t, testConfig(reg))
	dir := randomDir(t, "data", 3, 1<<20)
	if _, err := c.Push(context.Background(), "fault/resume:v1", []string{dir}, PushOptions{}); err != nil {
		t.Fatal(err)
	}
	proxy := startProxy(t, reg.Host)
	proxy.cutDown.Store(1 << 20)
	cfg := testConfig(reg)
	cfg.Registry = proxy.addr()
	pc, log := newTestClient(t, cfg)
	dest := filepath.Join(t.TempDir(), "in")
	if _, err := pc.Pull(context.Background(), "fault/resume:v1", dest, PullOptions{}); err != nil {
		t.Fatalf("pull: %v\n%s", err, log.all())
	}
	if !strings.Contains(log.all(), "resuming") {
		t.Fatalf("the download was not resumed:\n%s", log.all())
	}
	compareTrees(t, dir, filepath.Join(dest, "data"))
}

// The registry is down when the init container pulls: a clear error naming the reference, within
// the deadline.
func TestFaultRegistryDownAtPull(t *testing.T) {
	reg := registrytest.Start(t, registrytest.Options{})
	reg.Stop()
	cfg := testConfig(reg)
	cfg.Timeout = 2 * time.Second
	c, _ := newTestClient(t, cfg)
	start := time.Now()
	dest := filepath.Join(t.TempDir(), "in")
	_, err := c.Pull(context.Background(), "down/input:v1", dest, PullOptions{})
	took := time.Since(start)
	if err == nil {
		t.Fatal("pull from a stopped registry succeeded")
	}
	if took > 4*time.Second {
		t.Fatalf("the failure took %s with a 2s deadline", took)
	}
	for _, want := range []string{reg.Host + "/down/input:v1", "connection refused", "deadline"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q: %v", want, err)
		}
	}
	if _, err := os.Stat(dest); !errors.Is(err, os.ErrNotExist) {
		t.Error("a failed pull created its destination")
	}
}

// A push process killed in the middle of its upload never leaves the tag on a partial artifact:
// the tag still names the previous complete artifact (or nothing).
func TestFaultPushKilledMidUpload(t *testing.T) {
	reg := registrytest.Start(t, registrytest.Options{})
	direct, _ := newTestClient(t, testConfig(reg))
	ctx := context.Background()
	oldDir := filepath.Join(t.TempDir(), "data")
	writeTree(t, oldDir, map[string]string{"old.txt": "the previous complete result"}, nil)
	old, err := direct.Push(ctx, "fault/killed:v1", []string{oldDir}, PushOptions{})
	if err != nil {
		t.Fatal(err)
	}
	proxy := startProxy(t, reg.Host)
	proxy.delay.Store(int64(5 * time.Millisecond))
	cfg := testConfig(reg)
	cfg.Registry = proxy.addr()
	cfgJSON, _ := json.Marshal(cfg)
	newDir := randomDir(t, "data", 4, 1<<20)

	for _, ref := range []string{"fault/killed:v1", "fault/never:v1"} {
		proxy.up.Store(0)
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), "ARTIFACT_TEST_HELPER=push", "ARTIFACT_TEST_CONFIG="+string(cfgJSON),
			"ARTIFACT_TEST_REF="+ref, "ARTIFACT_TEST_PATH="+newDir, "TMPDIR="+t.TempDir())
		cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the upload to be under way", 30*time.Second, func() bool { return proxy.up.Load() > 1<<20 })
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		proxy.cutAll()

		if ref == "fault/killed:v1" {
			dest := filepath.Join(t.TempDir(), "in")
			pr, err := direct.Pull(ctx, ref, dest, PullOptions{})
			if err != nil || pr.Digest != old.Digest {
				t.Fatalf("after the kill the tag names %+v (%v), want the previous %s", pr, err, old.Digest)
			}
			compareTrees(t, oldDir, filepath.Join(dest, "data"))
		} else {
			_, err := direct.Pull(ctx, ref, filepath.Join(t.TempDir(), "in"), PullOptions{})
			if err == nil || !strings.Contains(err.Error(), "not found") {
				t.Fatalf("a never-completed push left a tag: %v", err)
			}
		}
	}
}
