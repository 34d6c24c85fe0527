package main

// A byte-counting TCP proxy in front of the registry: both tools talk to it, so the bytes they
// upload are counted the same way (client→registry TCP payload: HTTP headers and bodies).

import (
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

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
	net.Listener
	Addr     string
	target   string
	up, down atomic.Int64 // client → registry, registry → client
	active   atomic.Int64 // open connections
}

func startProxy(target string) (*countingProxy, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &countingProxy{Listener: l, Addr: l.Addr().String(), target: target}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			p.active.Add(1)
			go p.handle(c.(*net.TCPConn))
		}
	}()
	return p, nil
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
	pipe := func(dst, src *net.TCPConn, n *atomic.Int64) {
		m, _ := io.Copy(dst, src)
		n.Add(m)
		_ = dst.CloseWrite()
	}
	wg.Go(func() { pipe(sc, c, &p.up) })
	wg.Go(func() { pipe(c, sc, &p.down) })
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
