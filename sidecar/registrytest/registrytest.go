// Package registrytest starts a real CNCF distribution registry process on 127.0.0.1 for tests.
//
// It runs the `registry` binary that `make tools` (ci/install-tools.sh) installs into .work/bin.
// A missing binary fails the test with the fix: tests never skip silently.
package registrytest

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// Registry is one running registry process.
type Registry struct {
	Host     string // 127.0.0.1:port
	Username string // empty without auth
	Password string
	Root     string // storage directory
	cmd      *exec.Cmd
	bin      string
	config   string
	logFile  *os.File
}

// Options select auth.
type Options struct {
	Auth bool
}

// Binary finds a tool installed by `make tools`, on PATH or in the repository's .work/bin.
func Binary(t testing.TB, name string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	_, file, _, _ := runtime.Caller(0)
	p := filepath.Join(filepath.Dir(file), "..", "..", ".work", "bin", name)
	if _, err := os.Stat(p); err == nil {
		return p
	}
	t.Fatalf("%s not found on PATH or in .work/bin: run `make tools` first", name)
	return ""
}

// Start runs a registry on a free loopback port and stops it when the test ends.
func Start(t testing.TB, opts Options) *Registry {
	t.Helper()
	r, err := Launch(Binary(t, "registry"), t.TempDir(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	return r
}

// Launch runs the registry binary bin on a free loopback port with its storage, config and log
// under dir. Tests use Start; the benchmarks (ci/bench) call Launch directly.
func Launch(bin, dir string, opts Options) (*Registry, error) {
	r := &Registry{Root: filepath.Join(dir, "data"), bin: bin}
	auth := ""
	if opts.Auth {
		r.Username, r.Password = "oras", "test-password"
		hash, err := bcrypt.GenerateFromPassword([]byte(r.Password), bcrypt.MinCost)
		if err != nil {
			return nil, err
		}
		htpasswd := filepath.Join(dir, "htpasswd")
		if err := os.WriteFile(htpasswd, []byte(r.Username+":"+string(hash)+"\n"), 0o600); err != nil {
			return nil, err
		}
		auth = fmt.Sprintf("auth:\n  htpasswd:\n    realm: test\n    path: %s\n", htpasswd)
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	r.Host = fmt.Sprintf("127.0.0.1:%d", port)
	r.config = filepath.Join(dir, "config.yml")
	cfg := fmt.Sprintf(`version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: %s
  delete:
    enabled: true
http:
  addr: %s
  secret: test-secret
%s`, r.Root, r.Host, auth)
	if err := os.WriteFile(r.config, []byte(cfg), 0o600); err != nil {
		return nil, err
	}
	if r.logFile, err = os.Create(filepath.Join(dir, "registry.log")); err != nil {
		return nil, err
	}
	if err := r.start(); err != nil {
		r.Close()
		return nil, err
	}
	return r, nil
}

func (r *Registry) start() error {
	r.cmd = exec.Command(r.bin, "serve", r.config)
	r.cmd.Stdout, r.cmd.Stderr = r.logFile, r.logFile
	if err := r.cmd.Start(); err != nil {
		return err
	}
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get("http://" + r.Host + "/v2/")
		if err == nil {
			resp.Body.Close()
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	log, _ := os.ReadFile(r.logFile.Name())
	return fmt.Errorf("registry on %s did not answer within 15s; log:\n%s", r.Host, log)
}

// Stop kills the registry process (its data stays on disk).
func (r *Registry) Stop() {
	if r.cmd != nil && r.cmd.Process != nil {
		_ = r.cmd.Process.Kill()
		_, _ = r.cmd.Process.Wait()
		r.cmd = nil
	}
}

// Restart starts the registry again on the same port with the same data (fault tests).
func (r *Registry) Restart(t testing.TB) {
	t.Helper()
	r.Stop()
	if err := r.start(); err != nil {
		t.Fatal(err)
	}
}

// Close stops the registry and closes its log.
func (r *Registry) Close() {
	r.Stop()
	if r.logFile != nil {
		r.logFile.Close()
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
