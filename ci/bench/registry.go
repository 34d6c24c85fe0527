package main

// One CNCF distribution `registry` process on 127.0.0.1 (filesystem storage under the work dir),
// and a byte-counting TCP proxy in front of it: both tools talk to the proxy, so the bytes they
// upload are counted the same way (client→registry TCP payload: HTTP headers and bodies).

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"
)

type registryProc struct {
	Addr string // the registry itself
	Root string
	cmd  *exec.Cmd
	log  *os.File
}

func startRegistry(bin, dir string) (*registryProc, error) {
	root := filepath.Join(dir, "storage")
	if err := os.RemoveAll(root); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(root, 0o755); err != nil {
		return nil, err
	}
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	cfgPath := filepath.Join(dir, "config.yml")
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
  secret: bench-secret
`, root, addr)
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		return nil, err
	}
	lf, err := os.Create(filepath.Join(dir, "registry.log"))
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "serve", cfgPath)
	cmd.Stdout, cmd.Stderr = lf, lf
	if err := cmd.Start(); err != nil {
		lf.Close()
		return nil, err
	}
	r := &registryProc{Addr: addr, Root: root, cmd: cmd, log: lf}
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get("http://" + addr + "/v2/")
		if err == nil {
			resp.Body.Close()
			return r, nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	r.Stop()
	return nil, fmt.Errorf("registry on %s did not answer within 20s (log: %s)", addr, lf.Name())
}

func (r *registryProc) Stop() {
	if r.cmd != nil && r.cmd.Process != nil {
		_ = r.cmd.Process.Kill()
		_, _ = r.cmd.Process.Wait()
		r.cmd = nil
	}
	r.log.Close()
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// countingProxy forwards every connection to target and counts the bytes in each direction.
// io.Copy between two TCP connections uses splice(2), so the proxy costs little CPU.
type countingProxy struct {
	Addr   string
	target string
	l      net.Listener
	up     atomic.Int64 // client → registry
	down   atomic.Int64 // registry → client
	active atomic.Int64 // open connections
}

func startProxy(target string) (*countingProxy, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &countingProxy{Addr: l.Addr().String(), target: target, l: l}
	go p.serve()
	return p, nil
}

func (p *countingProxy) serve() {
	for {
		c, err := p.l.Accept()
		if err != nil {
			return
		}
		p.active.Add(1)
		go p.handle(c.(*net.TCPConn))
	}
}

func (p *countingProxy) handle(c *net.TCPConn) {
	defer p.active.Add(-1)
	defer c.Close()
	s, err := net.Dial("tcp", p.target)
	if err != nil {
		return
	}
	sc := s.(*net.TCPConn)
	defer sc.Close()
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		n, _ := io.Copy(sc, c)
		p.up.Add(n)
		_ = sc.CloseWrite()
	}()
	go func() {
		defer wg.Done()
		n, _ := io.Copy(c, sc)
		p.down.Add(n)
		_ = c.CloseWrite()
	}()
	wg.Wait()
}

// Reset zeroes the counters (call between runs, when no connection is open).
func (p *countingProxy) Reset() {
	p.up.Store(0)
	p.down.Store(0)
}

// Settle waits (bounded) until every connection of the finished run is closed, then returns the
// counters.
func (p *countingProxy) Settle() (up, down int64) {
	for deadline := time.Now().Add(10 * time.Second); p.active.Load() > 0 && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
	}
	return p.up.Load(), p.down.Load()
}

func (p *countingProxy) Close() { p.l.Close() }
