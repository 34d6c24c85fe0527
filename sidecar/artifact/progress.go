package artifact

import (
	"sync"
	"sync/atomic"
	"time"
)

// defaultProgressThreshold: transfers smaller than this log no progress lines.
const defaultProgressThreshold = 64 << 20

// defaultProgressInterval between two progress lines of one transfer.
const defaultProgressInterval = 5 * time.Second

// progress logs "bytes, MB/s, percent" at most every progressInterval for big transfers.
type progress struct {
	log       Logger
	threshold int64
	what      string
	total     int64 // 0 when unknown
	start     time.Time
	n         atomic.Int64
	stop      chan struct{}
	once      sync.Once
}

func (c *Client) startProgress(what string, total int64) *progress {
	p := &progress{log: c.log, threshold: c.progressThreshold, what: what, total: total, start: time.Now(), stop: make(chan struct{})}
	interval := c.progressInterval
	go func() {
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-p.stop:
				return
			case <-t.C:
				n := p.n.Load()
				if n < p.threshold && p.total < p.threshold {
					continue
				}
				p.line("progress", n)
			}
		}
	}()
	return p
}

func (p *progress) set(n int64) { p.n.Store(n) }
func (p *progress) add(n int64) { p.n.Add(n) }

func (p *progress) line(msg string, n int64) {
	secs := time.Since(p.start).Seconds()
	args := []any{"op", p.what, "bytes", n, "MBps", round1(float64(n) / 1e6 / max(secs, 1e-3))}
	if p.total > 0 {
		args = append(args, "total", p.total, "percent", round1(100*float64(n)/float64(p.total)))
	}
	p.log.Info(msg, args...)
}

func (p *progress) done() {
	p.once.Do(func() { close(p.stop) })
}

func round1(f float64) float64 { return float64(int64(f*10+0.5)) / 10 }
