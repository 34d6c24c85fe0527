package guard

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// CollectPath runs retention and garbage collection (POST; the registry's credentials).
const CollectPath = "/-/oras-cache/collect"

// holdFor is how long a blob that a push uploaded, mounted or found stays protected from
// collection: a push writes its manifest only after its blobs, so a blob no manifest names yet
// may be one a manifest is about to name.
const holdFor = 15 * time.Minute

// drainFor bounds the wait for writes in flight when a collection starts.
const drainFor = 10 * time.Minute

// HoldArtifactType marks the guard's own hold manifests (see protectRecentBlobs).
const HoldArtifactType = "application/vnd.converged-computing.oras-cache.hold.v1"

type repoBlob struct {
	repo string
	dgst string
}

var blobRe = regexp.MustCompile(`^/v2/(.+)/blobs/(sha256:[a-f0-9]{64})$`)

// touch records the blobs a request uploaded, mounted or found in a repository.
func (g *Guard) touch(r *http.Request, status int) {
	var rb repoBlob
	switch {
	case r.Method == http.MethodHead && status == http.StatusOK:
		if m := blobRe.FindStringSubmatch(r.URL.Path); m != nil {
			rb = repoBlob{m[1], m[2]}
		}
	case (r.Method == http.MethodPut || r.Method == http.MethodPost) && status == http.StatusCreated:
		if m := uploadRe.FindStringSubmatch(r.URL.Path); m != nil {
			d := r.URL.Query().Get("digest")
			if d == "" {
				d = r.URL.Query().Get("mount")
			}
			rb = repoBlob{m[1], d}
		}
	}
	if rb.repo == "" || digest.Digest(rb.dgst).Validate() != nil {
		return
	}
	now := time.Now()
	g.gate.Lock()
	g.touched[rb] = now
	for k, t := range g.touched {
		if now.Sub(t) > holdFor {
			delete(g.touched, k)
		}
	}
	g.gate.Unlock()
}

// maxManifest is the most of a manifest the guard reads (distribution's own limit is 4 MiB).
const maxManifest = 4 << 20

// named releases the holds on the blobs a stored manifest names: from now on that manifest keeps
// them (or, once deleted, deliberately does not).
func (g *Guard) named(r *http.Request, manifest []byte) {
	m := manifestRe.FindStringSubmatch(r.URL.Path)
	if m == nil {
		return
	}
	var doc struct {
		Config    ocispec.Descriptor   `json:"config"`
		Layers    []ocispec.Descriptor `json:"layers"`
		Blobs     []ocispec.Descriptor `json:"blobs"`
		Manifests []ocispec.Descriptor `json:"manifests"`
	}
	if json.Unmarshal(manifest, &doc) != nil {
		return
	}
	g.gate.Lock()
	defer g.gate.Unlock()
	for _, d := range append(append(append([]ocispec.Descriptor{doc.Config}, doc.Layers...), doc.Blobs...), doc.Manifests...) {
		delete(g.touched, repoBlob{m[1], d.Digest.String()})
	}
}

func (g *Guard) enter() bool {
	g.gate.Lock()
	defer g.gate.Unlock()
	if g.closed {
		return false
	}
	g.inflight++
	return true
}

func (g *Guard) leave() {
	g.gate.Lock()
	g.inflight--
	g.gateCond.Broadcast()
	g.gate.Unlock()
}

// closeGate refuses new mutations and waits (bounded) for those in flight.
func (g *Guard) closeGate(ctx context.Context) error {
	g.gate.Lock()
	g.closed = true
	g.gate.Unlock()
	deadline := time.Now().Add(drainFor)
	stop := context.AfterFunc(ctx, func() { g.gate.Lock(); g.gateCond.Broadcast(); g.gate.Unlock() })
	defer stop()
	timer := time.AfterFunc(drainFor, func() { g.gate.Lock(); g.gateCond.Broadcast(); g.gate.Unlock() })
	defer timer.Stop()
	g.gate.Lock()
	defer g.gate.Unlock()
	for g.inflight > 0 {
		if ctx.Err() != nil || time.Now().After(deadline) {
			return fmt.Errorf("%d writes still running after %s: collection postponed", g.inflight, drainFor)
		}
		g.gateCond.Wait()
	}
	return nil
}

func (g *Guard) openGate() {
	g.gate.Lock()
	g.closed = false
	g.gate.Unlock()
}

// Report is the answer of a collection.
type Report struct {
	DeletedTags      []string `json:"deletedTags"`
	DeletedManifests int      `json:"deletedManifests"`
	KeptTags         int      `json:"keptTags"`
	HeldBlobs        int      `json:"heldBlobs"`
	UsedBefore       int64    `json:"usedBefore"` // used when garbage collection started
	UsedAfter        int64    `json:"usedAfter"`  // and when it ended (both in the read-only window)
	Reclaimed        int64    `json:"reclaimed"`  // bytes of the blobs garbage collection deleted
	ReadOnlyMs       int64    `json:"readOnlyMs"`
	DurationMs       int64    `json:"durationMs"`
	Error            string   `json:"error,omitempty"`
}

func (g *Guard) serveCollect(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		writeError(w, http.StatusMethodNotAllowed, "UNSUPPORTED", "POST to run a collection", nil)
		return
	}
	auth := r.Header.Get("Authorization")
	// Whoever may push may collect: the registry itself checks the credentials.
	if status, err := g.api(r.Context(), http.MethodGet, "/v2/", auth, nil, ""); err != nil || status != http.StatusOK {
		w.Header().Set("WWW-Authenticate", `Basic realm="oras-cache"`)
		writeError(w, http.StatusUnauthorized, "UNAUTHORIZED", "a collection needs the registry's credentials", nil)
		return
	}
	if !g.collect.TryLock() {
		writeError(w, http.StatusConflict, "DENIED", "a collection is already running", nil)
		return
	}
	defer g.collect.Unlock()
	rep := g.Collect(r.Context(), auth)
	w.Header().Set("Content-Type", "application/json")
	if rep.Error != "" {
		w.WriteHeader(http.StatusInternalServerError)
	}
	_ = json.NewEncoder(w).Encode(rep)
}

// Collect applies the retention rules (deleting tags, and manifests no kept tag names, through
// the registry API) and then runs distribution's garbage collection in a read-only window:
// mutations get 503 + Retry-After, those in flight finish first, and blobs that pushes touched
// lately are held by a manifest so a push between its blobs and its manifest loses nothing.
func (g *Guard) Collect(ctx context.Context, auth string) Report {
	start := time.Now()
	var rep Report
	fail := func(err error) Report {
		rep.Error = err.Error()
		rep.DurationMs = time.Since(start).Milliseconds()
		g.log.Error("collection failed", "error", rep.Error)
		return rep
	}
	g.mu.Lock()
	rules := g.cfg.Retention
	g.mu.Unlock()
	if err := g.releaseHolds(ctx, auth); err != nil {
		return fail(err)
	}
	if err := g.applyRetention(ctx, auth, rules, &rep); err != nil {
		return fail(err)
	}
	// distribution's collection fails on a registry that never stored anything
	_, statErr := os.Stat(filepath.Join(g.opts.Root, "docker", "registry", "v2", "repositories"))
	if statErr == nil {
		_, statErr = os.Stat(filepath.Join(g.opts.Root, "docker", "registry", "v2", "blobs"))
	}
	if len(g.opts.GCArgv) > 0 && statErr == nil {
		ro := time.Now()
		err := g.closeGate(ctx)
		if err == nil {
			rep.HeldBlobs, err = g.protectRecentBlobs(ctx, auth)
		}
		// Measured inside the window, where nothing else writes. Reclaimed is the size of the blobs
		// that went (exact; block counts of files just written move with the filesystem's
		// preallocation).
		var blobs map[string]int64
		if err == nil {
			err = g.walk()
			rep.UsedBefore = g.Usage().Used
			blobs = g.blobSizes()
		}
		if err == nil {
			err = g.runGC(ctx)
		}
		if err == nil {
			err = g.walk()
			rep.UsedAfter = g.Usage().Used
			for p, n := range blobs {
				if _, serr := os.Stat(p); errors.Is(serr, os.ErrNotExist) {
					rep.Reclaimed += n
				}
			}
		}
		g.openGate()
		rep.ReadOnlyMs = time.Since(ro).Milliseconds()
		if err != nil {
			return fail(err)
		}
		if err := g.releaseHolds(ctx, auth); err != nil {
			return fail(err)
		}
	}
	if err := g.walk(); err != nil {
		return fail(err)
	}
	rep.DurationMs = time.Since(start).Milliseconds()
	g.mu.Lock()
	g.stats.Collections++
	g.stats.ReclaimedBytes += rep.Reclaimed
	g.stats.DeletedTags += int64(len(rep.DeletedTags))
	g.stats.ReadOnlyMs += rep.ReadOnlyMs
	g.mu.Unlock()
	g.log.Info("collection done", "deletedTags", len(rep.DeletedTags), "deletedManifests", rep.DeletedManifests,
		"reclaimed", rep.Reclaimed, "reclaimedHuman", Bytes(rep.Reclaimed), "readOnlyMs", rep.ReadOnlyMs, "durationMs", rep.DurationMs)
	return rep
}

type tagInfo struct {
	repo, tag, digest string
	pushed            time.Time
}

// listTags reads every tag from the registry's storage: its digest and when it was last pushed.
func (g *Guard) listTags() ([]tagInfo, error) {
	base := filepath.Join(g.opts.Root, "docker", "registry", "v2", "repositories")
	var tags []tagInfo
	err := filepath.WalkDir(base, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return nil
			}
			return err
		}
		if d.IsDir() && (d.Name() == "_layers" || d.Name() == "_uploads" || d.Name() == "revisions") {
			return filepath.SkipDir
		}
		if d.IsDir() || d.Name() != "link" || filepath.Base(filepath.Dir(p)) != "current" {
			return nil
		}
		tagDir := filepath.Dir(filepath.Dir(p))
		if filepath.Base(filepath.Dir(tagDir)) != "tags" || filepath.Base(filepath.Dir(filepath.Dir(tagDir))) != "_manifests" {
			return nil
		}
		repoDir := filepath.Dir(filepath.Dir(filepath.Dir(tagDir)))
		repo, err := filepath.Rel(base, repoDir)
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return nil // deleted meanwhile
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return nil
		}
		tags = append(tags, tagInfo{repo: filepath.ToSlash(repo), tag: filepath.Base(tagDir), digest: strings.TrimSpace(string(b)), pushed: info.ModTime()})
		return nil
	})
	return tags, err
}

// decide returns the tags the rules delete, and how many they keep.
func decide(tags []tagInfo, rules Retention, now time.Time) (del []tagInfo, kept int) {
	maxAge, _ := rules.maxAge()
	if rules.KeepLast == 0 && maxAge == 0 {
		return nil, len(tags)
	}
	byRepo := map[string][]tagInfo{}
	for _, t := range tags {
		byRepo[t.repo] = append(byRepo[t.repo], t)
	}
	for repo, ts := range byRepo {
		excluded := slices.ContainsFunc(rules.Exclude, func(p string) bool { ok, _ := path.Match(p, repo); return ok })
		sort.Slice(ts, func(i, j int) bool {
			if !ts[i].pushed.Equal(ts[j].pushed) {
				return ts[i].pushed.After(ts[j].pushed)
			}
			return ts[i].tag > ts[j].tag
		})
		for i, t := range ts {
			keep := excluded || (rules.KeepLast > 0 && i < rules.KeepLast) || (maxAge > 0 && now.Sub(t.pushed) < maxAge)
			if keep {
				kept++
			} else {
				del = append(del, t)
			}
		}
	}
	sort.Slice(del, func(i, j int) bool { return del[i].repo+":"+del[i].tag < del[j].repo+":"+del[j].tag })
	return del, kept
}

func (g *Guard) applyRetention(ctx context.Context, auth string, rules Retention, rep *Report) error {
	tags, err := g.listTags()
	if err != nil {
		return err
	}
	del, kept := decide(tags, rules, time.Now())
	rep.KeptTags = kept
	if len(del) == 0 {
		return nil
	}
	for _, t := range del {
		status, err := g.api(ctx, http.MethodDelete, "/v2/"+t.repo+"/manifests/"+t.tag, auth, nil, "")
		if err != nil {
			return fmt.Errorf("deleting tag %s:%s: %w", t.repo, t.tag, err)
		}
		if status != http.StatusAccepted && status != http.StatusNotFound {
			return fmt.Errorf("deleting tag %s:%s: registry answered %d", t.repo, t.tag, status)
		}
		rep.DeletedTags = append(rep.DeletedTags, t.repo+":"+t.tag)
	}
	// A manifest goes only when no remaining tag names it (two tags may share one).
	left, err := g.listTags()
	if err != nil {
		return err
	}
	named := map[repoBlob]bool{}
	for _, t := range left {
		named[repoBlob{t.repo, t.digest}] = true
	}
	done := map[repoBlob]bool{}
	for _, t := range del {
		k := repoBlob{t.repo, t.digest}
		if named[k] || done[k] || digest.Digest(t.digest).Validate() != nil {
			continue
		}
		done[k] = true
		status, err := g.api(ctx, http.MethodDelete, "/v2/"+t.repo+"/manifests/"+t.digest, auth, nil, "")
		if err != nil {
			return fmt.Errorf("deleting manifest %s@%s: %w", t.repo, t.digest, err)
		}
		if status == http.StatusAccepted {
			rep.DeletedManifests++
		} else if status != http.StatusNotFound {
			return fmt.Errorf("deleting manifest %s@%s: registry answered %d", t.repo, t.digest, status)
		}
	}
	g.dirty.Store(true)
	return nil
}

// holdsFile lists the hold manifests, so one left by a collection that was killed is removed by
// the next.
func (g *Guard) holdsFile() string {
	return filepath.Join(g.opts.Root, "oras-cache-guard", "holds.json")
}

// protectRecentBlobs pushes, in each repository with blobs touched in the last holdFor, an
// untagged manifest naming them: garbage collection marks every manifest's blobs, so they stay.
func (g *Guard) protectRecentBlobs(ctx context.Context, auth string) (int, error) {
	now := time.Now()
	byRepo := map[string][]string{}
	g.gate.Lock()
	for k, t := range g.touched {
		if now.Sub(t) <= holdFor {
			byRepo[k.repo] = append(byRepo[k.repo], k.dgst)
		}
	}
	g.gate.Unlock()
	var holds []repoBlob
	held := 0
	for repo, dgsts := range byRepo {
		sort.Strings(dgsts)
		var layers []ocispec.Descriptor
		for _, d := range dgsts {
			hex := strings.TrimPrefix(d, "sha256:")
			fi, err := os.Stat(filepath.Join(g.opts.Root, "docker", "registry", "v2", "blobs", "sha256", hex[:2], hex, "data"))
			if err != nil {
				continue // gone already
			}
			layers = append(layers, ocispec.Descriptor{MediaType: "application/octet-stream", Digest: digest.Digest(d), Size: fi.Size()})
		}
		if len(layers) == 0 {
			continue
		}
		empty := ocispec.DescriptorEmptyJSON
		if err := g.uploadBlob(ctx, repo, auth, empty.Digest, empty.Data); err != nil {
			return held, fmt.Errorf("holding recent blobs of %s: config upload: %v", repo, err)
		}
		m := ocispec.Manifest{MediaType: ocispec.MediaTypeImageManifest, ArtifactType: HoldArtifactType, Config: empty, Layers: layers}
		m.SchemaVersion = 2
		b, _ := json.Marshal(m)
		d := digest.FromBytes(b)
		status, err := g.api(ctx, http.MethodPut, "/v2/"+repo+"/manifests/"+d.String(), auth, b, ocispec.MediaTypeImageManifest)
		if err != nil || status != http.StatusCreated {
			return held, fmt.Errorf("holding recent blobs of %s: manifest: %d %v", repo, status, err)
		}
		holds = append(holds, repoBlob{repo, d.String()})
		held += len(layers)
		if err := g.saveHolds(holds); err != nil {
			return held, err
		}
	}
	return held, nil
}

type holdEntry struct {
	Repo   string `json:"repo"`
	Digest string `json:"digest"`
}

func (g *Guard) saveHolds(holds []repoBlob) error {
	var es []holdEntry
	for _, h := range holds {
		es = append(es, holdEntry{h.repo, h.dgst})
	}
	b, _ := json.Marshal(es)
	if err := os.MkdirAll(filepath.Dir(g.holdsFile()), 0o755); err != nil {
		return err
	}
	tmp := g.holdsFile() + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, g.holdsFile())
}

// releaseHolds deletes the hold manifests (their blobs go at a later collection if nothing
// else names them by then).
func (g *Guard) releaseHolds(ctx context.Context, auth string) error {
	b, err := os.ReadFile(g.holdsFile())
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var es []holdEntry
	_ = json.Unmarshal(b, &es)
	for _, e := range es {
		if !repoNameRe.MatchString(e.Repo) || digest.Digest(e.Digest).Validate() != nil {
			continue
		}
		status, err := g.api(ctx, http.MethodDelete, "/v2/"+e.Repo+"/manifests/"+e.Digest, auth, nil, "")
		if err != nil || (status != http.StatusAccepted && status != http.StatusNotFound) {
			return fmt.Errorf("releasing the hold on %s: %d %v", e.Repo, status, err)
		}
	}
	return os.Remove(g.holdsFile())
}

// blobSizes maps each blob's data file to its size.
func (g *Guard) blobSizes() map[string]int64 {
	sizes := map[string]int64{}
	files, _ := filepath.Glob(filepath.Join(g.opts.Root, "docker", "registry", "v2", "blobs", "sha256", "*", "*", "data"))
	for _, f := range files {
		if fi, err := os.Stat(f); err == nil {
			sizes[f] = fi.Size()
		}
	}
	return sizes
}

// runGC runs distribution's garbage collection (the registry binary, next to the data).
func (g *Guard) runGC(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, g.opts.GCArgv[0], g.opts.GCArgv[1:]...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	dieWithParent(cmd)
	start := time.Now()
	err := cmd.Run()
	lines := strings.Count(out.String(), "\n")
	if err != nil {
		tail := out.String()
		if len(tail) > 2000 {
			tail = tail[len(tail)-2000:]
		}
		return fmt.Errorf("garbage-collect: %v: %s", err, tail)
	}
	g.log.Info("garbage collection done", "seconds", time.Since(start).Seconds(), "outputLines", lines)
	return nil
}

// uploadBlob stores a small blob in repo (POST, then PUT with the digest).
func (g *Guard) uploadBlob(ctx context.Context, repo, auth string, d digest.Digest, data []byte) error {
	status, hdr, err := g.apiHeader(ctx, http.MethodPost, "/v2/"+repo+"/blobs/uploads/", auth, nil, "")
	if err != nil || status != http.StatusAccepted {
		return fmt.Errorf("start: %d %v", status, err)
	}
	loc, err := url.Parse(hdr.Get("Location"))
	if err != nil {
		return err
	}
	q := loc.Query()
	q.Set("digest", d.String())
	status, err = g.api(ctx, http.MethodPut, loc.Path+"?"+q.Encode(), auth, data, "application/octet-stream")
	if err != nil || status != http.StatusCreated {
		return fmt.Errorf("put: %d %v", status, err)
	}
	return nil
}

// api calls the registry directly (not through the gate) with the caller's credentials.
func (g *Guard) api(ctx context.Context, method, p, auth string, body []byte, contentType string) (int, error) {
	status, _, err := g.apiHeader(ctx, method, p, auth, body, contentType)
	return status, err
}

func (g *Guard) apiHeader(ctx context.Context, method, p, auth string, body []byte, contentType string) (int, http.Header, error) {
	u := *g.upstream
	path, query, _ := strings.Cut(p, "?")
	u.Path, u.RawQuery = path, query
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), rd)
	if err != nil {
		return 0, nil, err
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := g.client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, resp.Header, nil
}
