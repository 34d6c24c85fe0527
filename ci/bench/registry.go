package main

// One CNCF distribution `registry` process on 127.0.0.1 (filesystem storage under the work dir),
// and a byte-counting TCP proxy in front of it: both tools talk to the proxy, so the bytes they
// upload are counted the same way (client→registry TCP payload: HTTP headers and bodies).

import (
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/converged-computing/oras-cache/sidecar/registrytest"
)

// startRegistry runs the registry on loopback with fresh filesystem storage under dir, the same
// way the tests do (sidecar/registrytest).
func startRegistry(bin, dir string) (*registrytest.Registry, error) {
	if err := os.RemoveAll(dir); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	return registrytest.Launch(bin, dir, registrytest.Options{})
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
