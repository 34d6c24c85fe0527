// Package guard keeps the cache within its bound. It is a reverse proxy in front of the CNCF
// distribution registry, in the registry's own container (distribution listens on 127.0.0.1):
// it accounts the storage (a walk of the registry root, plus the bytes of every write since) and
// answers a write that would take the cache past its bound with 507 Insufficient Storage and an
// OCI error body that says how full the cache is — before the kubelet or the disk would refuse it.
// Distribution has no quota of its own. See docs/design.md ("Capacity").
package guard

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Paths the guard serves itself (never proxied).
const (
	MetricsPath = "/metrics"
	UsagePath   = "/-/oras-cache/usage"
)

// CacheFullCode is the OCI error code of a 507 answer; Detail carries the numbers.
const CacheFullCode = "DENIED"

// Detail is the "detail" of the 507 error body.
type Detail struct {
	Reason string `json:"reason"` // "cache full"
	Used   int64  `json:"used"`   // bytes the cache holds (and has promised to uploads in flight)
	Bound  int64  `json:"bound"`  // bytes it may hold
	Need   int64  `json:"need"`   // bytes of the refused write (-1: unknown length, cut when it crossed the bound)
}

// Options configure a Guard.
type Options struct {
	Upstream     string        // host:port of distribution (plain HTTP)
	Root         string        // distribution's filesystem root directory
	ConfigFile   string        // guard.json (re-read every ReloadEvery)
	WalkEvery    time.Duration // how often the root is walked again (default 30s)
	ReloadEvery  time.Duration // default 10s
	GCArgv       []string      // distribution's garbage collection, e.g. registry garbage-collect CONFIG; empty: none
	Log          *slog.Logger
	statfsForTst func(string) (total, avail int64, err error)
}

// Guard is the http.Handler in front of the registry.
type Guard struct {
	opts     Options
	proxy    *httputil.ReverseProxy
	upstream *url.URL
	client   *http.Client
	log      *slog.Logger

	mu       sync.Mutex
	cfgRaw   string
	cfg      Config
	lim      Limits
	cfgErr   error
	walked   int64 // bytes found by the last walk
	since    int64 // bytes written since that walk started (counted conservatively)
	reserved int64 // bytes promised to writes in flight
	counts   Counts
	stats    Stats
	dirty    atomic.Bool // manifests changed since the last walk

	// The read-only window of a collection: writes wait for nothing, they get 503 while closed.
	gate     sync.Mutex
	gateCond *sync.Cond
	closed   bool
	inflight int
	touched  map[repoBlob]time.Time // blobs a push uploaded, mounted or found lately
	collect  sync.Mutex             // one collection at a time
}

// Counts are what the last walk found.
type Counts struct {
	Repositories int `json:"repositories"`
	Tags         int `json:"tags"`
	Manifests    int `json:"manifests"`
	Blobs        int `json:"blobs"`
}

// Stats are the guard's counters since it started.
type Stats struct {
	RejectedWrites int64 `json:"rejectedWrites"`
	WrittenBytes   int64 `json:"writtenBytes"`
	Collections    int64 `json:"collections"`
	ReclaimedBytes int64 `json:"reclaimedBytes"`
	DeletedTags    int64 `json:"deletedTags"`
	ReadOnlyMs     int64 `json:"readOnlyMs"`
}

// Usage is the JSON of UsagePath (and the source of the metrics).
type Usage struct {
	Used           int64  `json:"used"`
	Bound          int64  `json:"bound"`
	Free           int64  `json:"free"`
	Volume         int64  `json:"volume"`
	FilesystemFree int64  `json:"filesystemFree"`
	ConfigError    string `json:"configError,omitempty"`
	Counts
	Stats
}

// New reads the config, walks the root once and returns the guard. A config that does not fit
// the volume is an error here (the registry does not start); later, a bad config is logged and
// the previous one kept.
func New(opts Options) (*Guard, error) {
	if opts.WalkEvery <= 0 {
		opts.WalkEvery = 30 * time.Second
	}
	if opts.ReloadEvery <= 0 {
		opts.ReloadEvery = 10 * time.Second
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	up, err := url.Parse("http://" + opts.Upstream)
	if err != nil {
		return nil, fmt.Errorf("upstream %q: %w", opts.Upstream, err)
	}
	g := &Guard{opts: opts, upstream: up, log: opts.Log, touched: map[repoBlob]time.Time{}}
	g.gateCond = sync.NewCond(&g.gate)
	if err := g.reload(); err != nil {
		return nil, err
	}
	tr := &http.Transport{
		Proxy:               nil, // distribution is next to us, never behind a proxy
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
		MaxIdleConns:        256,
		MaxIdleConnsPerHost: 256,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}
	g.client = &http.Client{Transport: tr, Timeout: time.Minute}
	g.proxy = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(up)
			// Distribution builds Location headers from Host: keep the client's.
			pr.Out.Host = pr.In.Host
		},
		Transport:    tr,
		ErrorHandler: g.proxyError,
	}
	if err := g.walk(); err != nil {
		return nil, fmt.Errorf("reading the registry root %s: %w", opts.Root, err)
	}
	return g, nil
}

// Run keeps the accounting fresh (walks, config reloads) until ctx ends.
func (g *Guard) Run(ctx context.Context) {
	walk := time.NewTicker(g.opts.WalkEvery)
	reload := time.NewTicker(g.opts.ReloadEvery)
	defer walk.Stop()
	defer reload.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-walk.C:
			if err := g.walk(); err != nil {
				g.log.Warn("walking the registry root", "error", err.Error())
			}
		case <-reload.C:
			if err := g.reload(); err != nil {
				g.log.Error("new capacity config refused; the previous one stays in force", "error", err.Error())
			}
		}
	}
}

func (g *Guard) statfs() (total, avail int64, err error) {
	if g.opts.statfsForTst != nil {
		return g.opts.statfsForTst(g.opts.Root)
	}
	var st syscall.Statfs_t
	// The registry creates its root on the first write: measure the volume it will be on.
	dir := g.opts.Root
	err = syscall.Statfs(dir, &st)
	for errors.Is(err, syscall.ENOENT) && filepath.Dir(dir) != dir {
		dir = filepath.Dir(dir)
		err = syscall.Statfs(dir, &st)
	}
	if err != nil {
		return 0, 0, err
	}
	return int64(st.Blocks) * st.Bsize, int64(st.Bavail) * st.Bsize, nil
}

// reload reads the config file when it changed.
func (g *Guard) reload() error {
	b, err := os.ReadFile(g.opts.ConfigFile)
	if err != nil {
		return g.setCfgErr(err)
	}
	raw := string(b)
	g.mu.Lock()
	same := raw == g.cfgRaw && g.lim.Bound > 0
	g.mu.Unlock()
	if same {
		return nil
	}
	cfg, err := ReadConfig(g.opts.ConfigFile)
	if err != nil {
		return g.setCfgErr(err)
	}
	total, _, err := g.statfs()
	if err != nil {
		return g.setCfgErr(err)
	}
	lim, err := cfg.Limits(total)
	if err != nil {
		return g.setCfgErr(err)
	}
	g.mu.Lock()
	old := g.lim
	g.cfgRaw, g.cfg, g.lim, g.cfgErr = raw, cfg, lim, nil
	g.mu.Unlock()
	if old != lim {
		g.log.Info("capacity", "bound", lim.Bound, "boundHuman", Bytes(lim.Bound), "volume", lim.Volume, "volumeHuman", Bytes(lim.Volume))
	}
	return nil
}

func (g *Guard) setCfgErr(err error) error {
	g.mu.Lock()
	g.cfgErr = err
	g.mu.Unlock()
	return err
}

// Walk measures the root again now (after a collection, in tests).
func (g *Guard) Walk() error { return g.walk() }

func (g *Guard) walk() error {
	g.mu.Lock()
	sinceAtStart := g.since
	g.mu.Unlock()
	bytes, counts, err := measure(g.opts.Root)
	if err != nil {
		return err
	}
	g.mu.Lock()
	g.walked, g.counts = bytes, counts
	// Writes that finished while the walk ran stay counted: the walk may have missed them.
	g.since -= sinceAtStart
	g.mu.Unlock()
	return nil
}

// Usage returns the current numbers.
func (g *Guard) Usage() Usage {
	_, avail, _ := g.statfs()
	g.mu.Lock()
	defer g.mu.Unlock()
	u := Usage{Used: g.walked + g.since + g.reserved, Bound: g.lim.Bound, Volume: g.lim.Volume,
		FilesystemFree: avail, Counts: g.counts, Stats: g.stats}
	u.Free = max(u.Bound-u.Used, 0)
	if g.cfgErr != nil {
		u.ConfigError = g.cfgErr.Error()
	}
	return u
}

var (
	// distribution's repository name grammar (no "..", no leading or doubled separators)
	repoNameRe = regexp.MustCompile(`^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$`)
	uuidRe     = regexp.MustCompile(`^[0-9a-fA-F-]{1,64}$`)
	uploadRe   = regexp.MustCompile(`^/v2/(.+)/blobs/uploads/([^/]*)$`)
	manifestRe = regexp.MustCompile(`^/v2/(.+)/manifests/([^/]+)$`)
)

// isWrite tells whether a request stores bytes: blob upload data and manifests.
func isWrite(r *http.Request) bool {
	switch r.Method {
	case http.MethodPost, http.MethodPatch, http.MethodPut:
		return uploadRe.MatchString(r.URL.Path) || (r.Method == http.MethodPut && manifestRe.MatchString(r.URL.Path))
	}
	return false
}

// perWrite is what one stored write costs beyond its body: link files and directories.
const perWrite = 8 << 10

// ServeHTTP proxies to the registry, refusing writes that do not fit.
func (g *Guard) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case MetricsPath, UsagePath:
		// Tags and repositories come from a walk: redo it when manifests changed since.
		if g.dirty.Swap(false) {
			if err := g.walk(); err != nil {
				g.log.Warn("walking the registry root", "error", err.Error())
			}
		}
	}
	switch r.URL.Path {
	case MetricsPath:
		g.serveMetrics(w)
		return
	case UsagePath:
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(g.Usage())
		return
	case CollectPath:
		g.serveCollect(w, r)
		return
	}
	if isMutation(r) {
		// Garbage collection must not run while anything is stored or deleted: hold the door.
		if !g.enter() {
			w.Header().Set("Retry-After", "2")
			writeError(w, http.StatusServiceUnavailable, "UNAVAILABLE", "the cache is collecting garbage for a moment (read-only); retry", nil)
			return
		}
		defer g.leave()
	}
	if manifestRe.MatchString(r.URL.Path) && (r.Method == http.MethodPut || r.Method == http.MethodDelete) {
		defer g.dirty.Store(true)
	}
	rec := &statusRecorder{ResponseWriter: w}
	defer func() { g.touch(r, rec.status) }()
	if !isWrite(r) {
		g.proxy.ServeHTTP(rec, r)
		return
	}
	need := r.ContentLength
	reserve := int64(perWrite)
	if need > 0 {
		reserve += need
	}
	if d, ok := g.reserve(reserve); !ok {
		d.Need = need
		g.reject(w, r, d, r.Body)
		return
	}
	body := &countingBody{rc: r.Body, g: g}
	if r.Method == http.MethodPut && manifestRe.MatchString(r.URL.Path) {
		body.keep = &bytes.Buffer{} // to release the holds of the blobs it names (touch)
	}
	if r.Body != nil && r.Body != http.NoBody {
		r.Body = body
		// An unknown length is promised byte by byte, and cut where it would cross the bound.
		body.grow = need < 0
	}
	g.proxy.ServeHTTP(rec, r.WithContext(context.WithValue(r.Context(), bodyKey{}, body)))
	if body.keep != nil && rec.status == http.StatusCreated {
		g.named(r, body.keep.Bytes())
	}
	g.mu.Lock()
	g.reserved -= reserve + body.grown
	// Whatever reached the registry is on disk until a walk says otherwise (an upload that
	// failed half-way stays until the registry purges it).
	g.since += body.n + perWrite
	g.stats.WrittenBytes += body.n
	g.mu.Unlock()
}

// statusRecorder remembers the status the registry answered.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// isMutation: anything that changes the registry's storage.
func isMutation(r *http.Request) bool {
	switch r.Method {
	case http.MethodPost, http.MethodPatch, http.MethodPut, http.MethodDelete:
		return strings.HasPrefix(r.URL.Path, "/v2/")
	}
	return false
}

// reserve promises n bytes to a write, or says why it cannot.
func (g *Guard) reserve(n int64) (Detail, bool) {
	_, avail, err := g.statfs()
	g.mu.Lock()
	defer g.mu.Unlock()
	used := g.walked + g.since + g.reserved
	d := Detail{Reason: "cache full", Used: used, Bound: g.lim.Bound}
	if used+n > g.lim.Bound {
		return d, false
	}
	// The volume itself may be fuller than our accounting knows (a claim shared or smaller
	// than requested, a node disk running out under an emptyDir).
	if err == nil && avail-n < MinHeadroom {
		d.Used, d.Bound = g.lim.Volume-avail, g.lim.Volume
		return d, false
	}
	g.reserved += n
	return d, true
}

var errCut = errors.New("cache full: the upload was cut where it would cross the bound")

type bodyKey struct{}

type countingBody struct {
	rc    io.ReadCloser
	g     *Guard
	grow  bool
	keep  *bytes.Buffer // a copy of a manifest's bytes (at most maxManifest)
	n     int64         // bytes read
	grown int64         // bytes promised while reading
	cut   *Detail
}

func (b *countingBody) Read(p []byte) (int, error) {
	if b.cut != nil {
		return 0, errCut
	}
	n, err := b.rc.Read(p)
	b.n += int64(n)
	if b.keep != nil && b.keep.Len()+n <= maxManifest {
		b.keep.Write(p[:n])
	}
	if b.grow && n > 0 {
		if d, ok := b.g.reserve(int64(n)); !ok {
			d.Need = -1
			b.cut = &d
			return 0, errCut
		}
		b.grown += int64(n)
	}
	return n, err
}

// Close leaves the client's body open: the transport closes its request body when the registry
// fails or the write is cut, and the refusal still has to drain it (the server closes it).
func (b *countingBody) Close() error { return nil }

// proxyError answers when the registry could not be reached, or a write was cut.
func (g *Guard) proxyError(w http.ResponseWriter, r *http.Request, err error) {
	if cb, ok := r.Context().Value(bodyKey{}).(*countingBody); ok && cb.cut != nil {
		g.cancelUpload(r)
		g.reject(w, r, *cb.cut, cb.rc)
		return
	}
	if errors.Is(err, context.Canceled) {
		return // the client went away
	}
	g.log.Warn("registry unreachable", "method", r.Method, "path", r.URL.Path, "error", err.Error())
	// Retryable: the registry is starting or restarting.
	w.Header().Set("Retry-After", "1")
	writeError(w, http.StatusServiceUnavailable, "UNAVAILABLE", "the registry is not answering yet; retry", nil)
}

// cancelUpload deletes the upload session a refused write belonged to, so its partial data is
// freed now rather than when the registry purges old uploads.
func (g *Guard) cancelUpload(r *http.Request) {
	m := uploadRe.FindStringSubmatch(r.URL.Path)
	if m == nil || m[2] == "" {
		return
	}
	u := *g.upstream
	u.Path, u.RawQuery = r.URL.Path, r.URL.RawQuery
	req, err := http.NewRequest(http.MethodDelete, u.String(), nil)
	if err != nil {
		return
	}
	req.Host = r.Host
	if a := r.Header.Get("Authorization"); a != "" {
		req.Header.Set("Authorization", a)
	}
	resp, err := g.client.Do(req)
	if err != nil {
		g.log.Warn("cancelling the refused upload", "path", r.URL.Path, "error", err.Error())
		return
	}
	resp.Body.Close()
	if resp.StatusCode == http.StatusNoContent {
		return
	}
	// After a cut the session's signed state no longer matches its size and distribution
	// refuses to resume it, even to cancel it (416): remove its directory, which no client
	// will use again, from the disk we share with the registry.
	if !repoNameRe.MatchString(m[1]) || !uuidRe.MatchString(m[2]) {
		return
	}
	dir := filepath.Join(g.opts.Root, "docker", "registry", "v2", "repositories", filepath.FromSlash(m[1]), "_uploads", m[2])
	if err := os.RemoveAll(dir); err != nil {
		g.log.Warn("removing the refused upload", "dir", dir, "error", err.Error())
	}
}

// maxDrain bounds how much of a refused body is read (and dropped) so the client, still
// sending, reads our answer instead of a reset connection.
const maxDrain = 4 << 30

// reject answers 507 with the numbers and what to change.
func (g *Guard) reject(w http.ResponseWriter, r *http.Request, d Detail, body io.Reader) {
	g.mu.Lock()
	g.stats.RejectedWrites++
	kind := g.cfg.Volume
	g.mu.Unlock()
	msg := CacheFullMessage(d, kind)
	g.log.Warn("write refused", "method", r.Method, "path", r.URL.Path, "used", d.Used, "bound", d.Bound, "need", d.Need, "message", msg)
	if body != nil {
		rc := http.NewResponseController(w)
		_ = rc.SetReadDeadline(time.Now().Add(time.Minute))
		_, _ = io.Copy(io.Discard, io.LimitReader(body, maxDrain))
	}
	writeError(w, http.StatusInsufficientStorage, CacheFullCode, msg, d)
}

// CacheFullMessage is the text of a 507: it starts "cache full: <used> of <bound> used" and
// names the values that free or add space.
func CacheFullMessage(d Detail, volume string) string {
	need := "an upload of unknown length crossed it"
	if d.Need >= 0 {
		need = "this write needs " + Bytes(d.Need)
	}
	return fmt.Sprintf("cache full: %s of %s used; %s. Free space with retention (retention.enabled, retention.keepLast, retention.maxAge) "+
		"or raise %s (at most 90%% of %s)", Bytes(d.Used), Bytes(d.Bound), need, boundValue, volumeValue(volume))
}

func writeError(w http.ResponseWriter, status int, code, msg string, detail any) {
	type e struct {
		Code    string `json:"code"`
		Message string `json:"message"`
		Detail  any    `json:"detail,omitempty"`
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string][]e{"errors": {{Code: code, Message: msg, Detail: detail}}})
}
