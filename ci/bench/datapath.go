package main

// The data-path benchmark: our data path (the worker) against the oras CLI, interleaved, same
// registry process, same data, with the physical baseline (tar, cp) beside them.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/converged-computing/oras-cache/sidecar/registrytest"
)

type dataResult struct {
	stamp
	Datasets []*dataset `json:"datasets"`
	Series   []*series  `json:"series"`
}

// sample is one measured run.
type sample struct {
	Secs    float64 `json:"secs"`
	RSSKiB  int64   `json:"rssKiB"`
	Up      int64   `json:"up"`             // TCP bytes client → registry (proxy)
	Down    int64   `json:"down"`           // TCP bytes registry → client
	BlobUp  int64   `json:"blobUp"`         // blob bytes our push reports having sent (-1: unknown)
	Warmup  bool    `json:"warmup"`         // not counted
	Comment string  `json:"note,omitempty"` // e.g. verification
}

// series is every run of one (case, tool), and its summary over the measured (not warm-up) runs.
type series struct {
	Case     string   `json:"case"` // "push b", "pull a", "re-push b (e)", "tar c", ...
	Key      string   `json:"key"`  // dataset key; "e" for the re-push
	Op       string   `json:"op"`   // push, pull, repush, tar, cp
	Tool     string   `json:"tool"` // ours, oras, tar, cp
	Bytes    int64    `json:"bytes"`
	Samples  []sample `json:"samples"`
	Verified string   `json:"verified,omitempty"`
	Errors   []string `json:"errors,omitempty"`

	Runs      int     `json:"runs"`
	Secs      float64 `json:"medianSecs"`
	MinSecs   float64 `json:"minSecs"`
	MaxSecs   float64 `json:"maxSecs"`
	RSSMiB    float64 `json:"medianRSSMiB"`
	MaxRSSMiB float64 `json:"maxRSSMiB"` // warm-up included
	MBps      float64 `json:"mbps"`      // dataset bytes (10⁶) per median second
	UpBytes   float64 `json:"medianUpBytes"`
}

func (s *series) summarize() {
	var secs, rss, up []float64
	s.MaxRSSMiB, s.MinSecs, s.MaxSecs = 0, 0, 0
	for _, x := range s.Samples {
		s.MaxRSSMiB = max(s.MaxRSSMiB, float64(x.RSSKiB)/1024)
		if x.Warmup {
			continue
		}
		if len(secs) == 0 || x.Secs < s.MinSecs {
			s.MinSecs = x.Secs
		}
		s.MaxSecs = max(s.MaxSecs, x.Secs)
		secs, rss, up = append(secs, x.Secs), append(rss, float64(x.RSSKiB)/1024), append(up, float64(x.Up))
	}
	s.Runs, s.Secs, s.RSSMiB, s.UpBytes, s.MBps = len(secs), median(secs), median(rss), median(up), 0
	if s.Secs > 0 {
		s.MBps = float64(s.Bytes) / 1e6 / s.Secs
	}
}

func (d *dataResult) Find(caseName, tool string) *series {
	i := slices.IndexFunc(d.Series, func(s *series) bool { return s.Case == caseName && s.Tool == tool })
	if i < 0 {
		return nil
	}
	return d.Series[i]
}

// speedup is the oras CLI's median time over ours (0: not both measured).
func speedup(ours, oras *series) float64 {
	if ours == nil || oras == nil || ours.Runs == 0 || oras.Runs == 0 || ours.Secs == 0 {
		return 0
	}
	return oras.Secs / ours.Secs
}

// pair is one row of the main table: a case run by both tools.
type pair struct {
	Case       string
	Ours, Oras *series
	Speedup    float64
}

func (d *dataResult) Pairs() []pair {
	var out []pair
	for _, c := range []string{"push a", "push b", "push c", "push d", "re-push b (e)", "pull a", "pull b", "pull c", "pull d"} {
		if o, a := d.Find(c, "ours"), d.Find(c, "oras"); o != nil || a != nil {
			out = append(out, pair{c, o, a, speedup(o, a)})
		}
	}
	return out
}

// gnuTime measures the peak RSS of each command (ci/bench.sh installs it).
const gnuTime = "/usr/bin/time"

type dataBench struct {
	dataResult
	work, self, oras string
	proxy            *countingProxy
	data             map[string]*dataset // by key; "e" is (b) again
	runs, slowRuns   int
	baseRuns         int
	tmp, home        string
	ntrash           int
}

func runData(r *results, repo, work, only string) (*dataResult, error) {
	datasets, err := prepareData(work, r.Run.Scale)
	if err != nil {
		return nil, err
	}
	b := &dataBench{dataResult: dataResult{Datasets: datasets}, work: work, data: map[string]*dataset{}, runs: r.Run.Runs,
		slowRuns: r.Run.SlowRuns, baseRuns: r.Run.BaseRuns, tmp: filepath.Join(work, "tmp"), home: filepath.Join(work, "home")}
	keys := strings.Split(only, ",")
	var order []string
	for _, d := range datasets {
		if slices.Contains(keys, d.Key) {
			b.data[d.Key] = d
			order = append(order, d.Key)
		}
	}
	if slices.Contains(keys, "e") && b.data["b"] != nil {
		b.data["e"] = b.data["b"]
	}
	var regBin string
	if _, err = os.Stat(gnuTime); err != nil {
		return nil, fmt.Errorf("GNU time (Debian package time, installed by ci/bench.sh): %w", err)
	}
	if b.self, err = os.Executable(); err == nil {
		if b.oras, err = tool(repo, "oras"); err == nil {
			regBin, err = tool(repo, "registry")
		}
	}
	if err != nil {
		return nil, err
	}
	// the registry as the tests run it (sidecar/registrytest), with fresh storage
	regDir := filepath.Join(work, "registry")
	_ = os.RemoveAll(regDir)
	_ = os.MkdirAll(regDir, 0o755)
	reg, err := registrytest.Launch(regBin, regDir, registrytest.Options{})
	if err != nil {
		return nil, err
	}
	defer func() {
		reg.Close()
		_ = os.RemoveAll(reg.Root) // the blobs take several GiB
	}()
	if b.proxy, err = startProxy(reg.Host); err != nil {
		return nil, err
	}
	defer b.proxy.Close()
	logf("registry %s (storage %s), counting proxy %s", reg.Host, reg.Root, b.proxy.Addr)
	err = b.Run(order)
	_ = os.RemoveAll(b.tmp)
	return &b.dataResult, err
}

func (b *dataBench) get(caseName, key, op, tool string, bytes int64) *series {
	if s := b.Find(caseName, tool); s != nil {
		return s
	}
	s := &series{Case: caseName, Key: key, Op: op, Tool: tool, Bytes: bytes}
	b.Series = append(b.Series, s)
	return s
}

// measure runs one command and records its wall time, peak RSS and the proxy's byte counts in s
// (warm: not counted). It reports whether the command succeeded.
func (b *dataBench) measure(s *series, warm bool, dir string, argv ...string) bool {
	b.proxy.Reset()
	// GNU time forks (not vforks) the command and reports its own child's ru_maxrss: the rusage
	// Go gets for a direct child includes this (vforking) process's RSS high-water mark, which
	// would be a floor of ~25 MiB under every figure.
	rssFile := filepath.Join(b.tmp, ".rss")
	_ = os.Remove(rssFile)
	argv = append([]string{gnuTime, "-f", "%M", "-o", rssFile}, argv...)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "HOME="+b.home, "TMPDIR="+b.tmp, "DOCKER_CONFIG="+filepath.Join(b.home, ".docker"))
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	t0 := time.Now()
	err := cmd.Run()
	smp := sample{Secs: time.Since(t0).Seconds(), BlobUp: -1, Warmup: warm}
	if rb, err := os.ReadFile(rssFile); err == nil {
		if ls := strings.Fields(string(rb)); len(ls) > 0 {
			smp.RSSKiB, _ = strconv.ParseInt(ls[len(ls)-1], 10, 64)
		}
	}
	smp.Up, smp.Down = b.proxy.Settle()
	if err != nil {
		msg := strings.TrimSpace(errb.String())
		err = fmt.Errorf("%s: %v: %s", strings.Join(argv, " "), err, msg[max(0, len(msg)-400):])
		logf("  ERROR %s %s: %v", s.Tool, s.Case, err)
		s.Errors = append(s.Errors, err.Error())
		return false
	}
	var wr workerResult
	if s.Tool == "ours" && (s.Op == "push" || s.Op == "repush") && json.Unmarshal(out.Bytes(), &wr) == nil && wr.Push != nil {
		smp.BlobUp = wr.Push.UploadedBytes
	}
	s.Samples = append(s.Samples, smp)
	logf("  %-5s %-14s %7.2fs  rss %5.1f MiB  up %s%s", s.Tool, s.Case, smp.Secs, float64(smp.RSSKiB)/1024, human(smp.Up),
		map[bool]string{true: " (warm-up)"}[warm])
	return true
}

func (b *dataBench) Run(keys []string) error {
	for _, d := range []string{b.tmp, b.home, b.trash()} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	// Warm-up (not counted): read every dataset once (page cache), and one push and pull of the
	// first dataset by each tool (binaries, registry, disk). The measured rounds follow.
	t0 := time.Now()
	for _, key := range keys {
		if _, err := treeHash(b.data[key].Path()); err != nil {
			return err
		}
	}
	logf("warm-up: read every dataset in %.1fs", time.Since(t0).Seconds())
	for round := 0; round <= b.runs; round++ {
		logf("round %d/%d%s", round, b.runs, map[bool]string{true: " (warm-up)"}[round == 0])
		for _, key := range keys {
			if round == 0 && key != keys[0] {
				continue
			}
			// flush the previous dataset's writes (untimed): small-file cases suffer most from
			// a file system busy writing back gigabytes
			syscall.Sync()
			b.runDataset(round, key, b.data[key])
		}
		// delete the round's outputs (untimed), so that the deletions (ext4 with discard) do not
		// slow the next round
		syncT := time.Now()
		_ = os.RemoveAll(b.trash())
		_ = os.MkdirAll(b.trash(), 0o755)
		syscall.Sync()
		logf("  cleanup+sync %.1fs", time.Since(syncT).Seconds())
	}
	return nil
}

func (b *dataBench) trash() string { return filepath.Join(b.tmp, "trash") }

// discard moves p out of the way; it is deleted between rounds (untimed).
func (b *dataBench) discard(p string) {
	b.ntrash++
	if err := os.Rename(p, filepath.Join(b.trash(), fmt.Sprint(b.ntrash))); err != nil {
		_ = os.RemoveAll(p)
	}
}

func (b *dataBench) runDataset(round int, key string, d *dataset) {
	warm := round == 0
	ourRef := fmt.Sprintf("bench/ours-%s-r%d:v1", key, round)
	orasRef := fmt.Sprintf("%s/bench/oras-%s-r%d:v1", b.proxy.Addr, key, round)
	// A B A B …, alternating which tool goes first from one round to the next (A B, B A, …) so
	// that neither always runs right after the cleanup of the previous round.
	order := []string{"ours", "oras"}
	if !warm && round%2 == 0 {
		order = []string{"oras", "ours"}
	}
	// Every push goes to a new repository, so the registry has nothing, except (e): the re-push
	// of unchanged (b) to the same reference that already holds it. The oras CLI's slowest cases
	// (directory pushes, ~30 s each) get fewer runs to keep `make bench` under 15 minutes.
	pushAll := func(caseName, key, op string) (ourOK bool) {
		slow := (op == "push" && (key == "b" || key == "c")) || op == "repush"
		for _, tool := range order {
			if tool == "oras" && slow && (round < 1 || round > b.slowRuns) {
				continue
			}
			s := b.get(caseName, key, op, tool, d.Bytes)
			if tool == "ours" {
				ourOK = b.measure(s, warm, d.Dir, b.self, "worker", "push", "-registry", b.proxy.Addr, "-ref", ourRef, d.Title)
			} else {
				b.measure(s, warm, d.Dir, b.oras, "push", "--plain-http", orasRef, d.Title)
			}
		}
		return ourOK
	}
	ourPushed := pushAll("push "+key, key, "push")
	if key == "b" && b.data["e"] != nil {
		pushAll("re-push b (e)", "e", "repush")
	}
	// pull: both tools pull the artifact our push wrote (the format the cache holds)
	for _, tool := range order {
		if !ourPushed {
			break
		}
		dest := filepath.Join(b.tmp, "pull-"+tool)
		_ = os.RemoveAll(dest)
		argv := []string{b.oras, "pull", "--plain-http", "-o", dest, b.proxy.Addr + "/" + ourRef}
		if tool == "ours" {
			argv = []string{b.self, "worker", "pull", "-registry", b.proxy.Addr, "-ref", ourRef, dest}
		}
		s := b.get("pull "+key, key, "pull", tool, d.Bytes)
		if b.measure(s, warm, b.tmp, argv...) && s.Verified == "" && !warm {
			switch got, err := treeHash(filepath.Join(dest, d.Title)); {
			case err != nil:
				s.Verified = "error: " + err.Error()
			case got != d.Tree:
				s.Verified = fmt.Sprintf("MISMATCH (tree %s, want %s)", got, d.Tree)
			default:
				s.Verified = "ok (tree " + got + ")"
			}
			logf("  verify %s pull %s: %s", tool, key, s.Verified)
		}
		b.discard(dest)
	}
	// physical baseline: tar of the same data to the same disk, and cp -r
	if !warm && round <= b.baseRuns {
		tarOut, cpOut := filepath.Join(b.tmp, "baseline.tar"), filepath.Join(b.tmp, "baseline-cp")
		b.measure(b.get("tar "+key, key, "tar", "tar", d.Bytes), false, d.Dir, "tar", "-cf", tarOut, d.Title)
		b.discard(tarOut)
		b.measure(b.get("cp "+key, key, "cp", "cp", d.Bytes), false, d.Dir, "cp", "-r", d.Title, cpOut)
		b.discard(cpOut)
	}
}
