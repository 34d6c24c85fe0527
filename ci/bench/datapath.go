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
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

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

// series is every run of one (case, tool).
type series struct {
	Case     string   `json:"case"` // "push b", "pull a", "re-push b (e)", "tar c", ...
	Key      string   `json:"key"`  // dataset key; "e" for the re-push
	Op       string   `json:"op"`   // push, pull, repush, tar, cp
	Tool     string   `json:"tool"` // ours, oras, tar, cp
	Bytes    int64    `json:"bytes"`
	Samples  []sample `json:"samples"`
	Verified string   `json:"verified,omitempty"`
	Errors   []string `json:"errors,omitempty"`
}

func (s *series) measured() []sample {
	var out []sample
	for _, x := range s.Samples {
		if !x.Warmup {
			out = append(out, x)
		}
	}
	return out
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func (s *series) med(f func(sample) float64) float64 {
	var v []float64
	for _, x := range s.measured() {
		v = append(v, f(x))
	}
	return median(v)
}

func (s *series) Secs() float64 { return s.med(func(x sample) float64 { return x.Secs }) }
func (s *series) RSSMiB() float64 {
	return s.med(func(x sample) float64 { return float64(x.RSSKiB) / 1024 })
}
func (s *series) MaxRSSMiB() float64 {
	m := 0.0
	for _, x := range s.Samples {
		m = max(m, float64(x.RSSKiB)/1024)
	}
	return m
}
func (s *series) Up() float64     { return s.med(func(x sample) float64 { return float64(x.Up) }) }
func (s *series) BlobUp() float64 { return s.med(func(x sample) float64 { return float64(x.BlobUp) }) }
func (s *series) Range() (float64, float64) {
	lo, hi := 0.0, 0.0
	for i, x := range s.measured() {
		if i == 0 || x.Secs < lo {
			lo = x.Secs
		}
		hi = max(hi, x.Secs)
	}
	return lo, hi
}
func (s *series) MBps() float64 {
	if t := s.Secs(); t > 0 {
		return float64(s.Bytes) / 1e6 / t
	}
	return 0
}

type dataBench struct {
	work, self, oras string
	proxy            *countingProxy
	data             map[string]*dataset
	runs, slowRuns   int
	baseRuns         int
	series           map[string]*series // case|tool
	order            []string
	logf             func(string, ...any)
	tmp, home        string
	timeBin          string // GNU time, for the peak RSS of the measured process
	roundSecs        []float64
	ntrash           int
}

func (b *dataBench) get(caseName, key, op, tool string, bytes int64) *series {
	k := caseName + "|" + tool
	if s, ok := b.series[k]; ok {
		return s
	}
	s := &series{Case: caseName, Key: key, Op: op, Tool: tool, Bytes: bytes}
	b.series[k] = s
	b.order = append(b.order, k)
	return s
}

// run executes one command and measures wall time, peak RSS and the proxy's byte counts.
func (b *dataBench) run(dir string, argv []string) (sample, []byte, error) {
	b.proxy.Reset()
	rssFile := filepath.Join(b.tmp, ".rss")
	if b.timeBin != "" {
		// GNU time forks (not vforks) the command and reports its own child's ru_maxrss: the
		// rusage Go gets for a direct child includes this (vforking) process's RSS high-water
		// mark, which would be a floor of ~25 MiB under every figure.
		_ = os.Remove(rssFile)
		argv = append([]string{b.timeBin, "-f", "%M", "-o", rssFile}, argv...)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "HOME="+b.home, "TMPDIR="+b.tmp, "DOCKER_CONFIG="+filepath.Join(b.home, ".docker"))
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	t0 := time.Now()
	err := cmd.Run()
	secs := time.Since(t0).Seconds()
	var s sample
	s.Secs = secs
	s.BlobUp = -1
	if cmd.ProcessState != nil {
		if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
			s.RSSKiB = ru.Maxrss // KiB on Linux
		}
	}
	if b.timeBin != "" {
		s.RSSKiB = 0
		if rb, err := os.ReadFile(rssFile); err == nil {
			ls := strings.Fields(string(rb))
			if len(ls) > 0 {
				s.RSSKiB, _ = strconv.ParseInt(ls[len(ls)-1], 10, 64)
			}
		}
	}
	s.Up, s.Down = b.proxy.Settle()
	if err != nil {
		msg := strings.TrimSpace(errb.String())
		if len(msg) > 400 {
			msg = msg[len(msg)-400:]
		}
		return s, out.Bytes(), fmt.Errorf("%s: %v: %s", strings.Join(argv, " "), err, msg)
	}
	return s, out.Bytes(), nil
}

func (b *dataBench) record(s *series, smp sample, err error, warm bool) bool {
	smp.Warmup = warm
	if err != nil {
		b.logf("  ERROR %s %s: %v", s.Tool, s.Case, err)
		s.Errors = append(s.Errors, err.Error())
		return false
	}
	s.Samples = append(s.Samples, smp)
	tag := ""
	if warm {
		tag = " (warm-up)"
	}
	b.logf("  %-5s %-14s %7.2fs  rss %5.1f MiB  up %s%s", s.Tool, s.Case, smp.Secs, float64(smp.RSSKiB)/1024, human(smp.Up), tag)
	return true
}

func (b *dataBench) verify(s *series, d *dataset, pulled string) {
	got, err := treeHash(pulled)
	switch {
	case err != nil:
		s.Verified = "error: " + err.Error()
	case got != d.Tree:
		s.Verified = fmt.Sprintf("MISMATCH (tree %s, want %s)", got, d.Tree)
	default:
		s.Verified = "ok (tree " + got + ")"
	}
	b.logf("  verify %s pull %s: %s", s.Tool, d.Key, s.Verified)
}

// slow reports whether the oras CLI's run of this case is one of the slowest (directory pushes,
// ~30 s each), which get fewer runs to keep `make bench` under 15 minutes.
func slow(op, key string) bool { return (op == "push" && (key == "b" || key == "c")) || op == "repush" }

func (b *dataBench) Run(keys []string) error {
	for _, d := range []string{b.tmp, b.home, b.trash()} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	// Warm-up (not counted): read every dataset once (page cache), and one push and pull of (a)
	// by each tool (binaries, registry, disk). The measured rounds follow.
	t0 := time.Now()
	for _, key := range keys {
		if _, err := treeHash(b.data[key].Path()); err != nil {
			return err
		}
	}
	b.logf("warm-up: read every dataset in %.1fs", time.Since(t0).Seconds())
	warmKey := keys[0]
	for round := 0; round <= b.runs; round++ {
		warm := round == 0
		roundStart := time.Now()
		b.logf("round %d/%d%s", round, b.runs, map[bool]string{true: " (warm-up)"}[warm])
		for _, key := range keys {
			d := b.data[key]
			if d == nil || (warm && key != warmKey) {
				continue
			}
			// flush the previous dataset's writes (untimed): small-file cases suffer most from
			// a file system busy writing back gigabytes
			syscall.Sync()
			b.runDataset(round, key, d, warm)
		}
		// delete the round's outputs (untimed), so that the deletions (ext4 with discard) do not
		// slow the next round
		syncT := time.Now()
		_ = os.RemoveAll(b.trash())
		_ = os.MkdirAll(b.trash(), 0o755)
		syscall.Sync()
		b.logf("  cleanup+sync %.1fs", time.Since(syncT).Seconds())
		if !warm {
			b.roundSecs = append(b.roundSecs, time.Since(roundStart).Seconds())
		}
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

func (b *dataBench) runDataset(round int, key string, d *dataset, warm bool) {
	proxyHost := b.proxy.Addr
	ourRepo := fmt.Sprintf("bench/ours-%s-r%d", key, round)
	orasRepo := fmt.Sprintf("bench/oras-%s-r%d", key, round)
	orasOK := func(op string) bool {
		if !slow(op, key) {
			return true
		}
		return round >= 1 && round <= b.slowRuns
	}

	// A B A B …, alternating which tool goes first from one round to the next (A B, B A, …) so
	// that neither always runs right after the cleanup of the previous round.
	order := []string{"ours", "oras"}
	if !warm && round%2 == 0 {
		order = []string{"oras", "ours"}
	}
	pushArgv := func(tool string) []string {
		if tool == "ours" {
			return []string{b.self, "worker", "push", "-registry", proxyHost, "-ref", ourRepo + ":v1", d.Title}
		}
		return []string{b.oras, "push", "--plain-http", proxyHost + "/" + orasRepo + ":v1", d.Title}
	}
	pushAll := func(caseName, key, op string) bool {
		ourOK := false
		for _, tool := range order {
			if tool == "oras" && !orasOK(op) {
				continue
			}
			s := b.get(caseName, key, op, tool, d.Bytes)
			smp, out, err := b.run(d.Dir, pushArgv(tool))
			if tool == "ours" && err == nil {
				smp.BlobUp = blobUp(out)
			}
			if ok := b.record(s, smp, err, warm); tool == "ours" {
				ourOK = ok
			}
		}
		return ourOK
	}
	// push into new repositories, so the registry has nothing
	ourPushed := pushAll("push "+key, key, "push")
	// (e): re-push of unchanged (b) to the same reference that already holds it
	if key == "b" && b.data["e"] != nil {
		pushAll("re-push b (e)", "e", "repush")
	}
	var s *series
	var smp sample
	var err error

	// pull: both tools pull the artifact our push wrote (the format the cache holds)
	if ourPushed {
		for _, tool := range order {
			dest := filepath.Join(b.tmp, "pull-"+tool)
			_ = os.RemoveAll(dest)
			var argv []string
			if tool == "ours" {
				argv = []string{b.self, "worker", "pull", "-registry", proxyHost, "-ref", ourRepo + ":v1", dest}
			} else {
				argv = []string{b.oras, "pull", "--plain-http", "-o", dest, proxyHost + "/" + ourRepo + ":v1"}
			}
			s = b.get("pull "+key, key, "pull", tool, d.Bytes)
			smp, _, err = b.run(b.tmp, argv)
			if b.record(s, smp, err, warm) && s.Verified == "" && !warm {
				b.verify(s, d, filepath.Join(dest, d.Title))
			}
			b.discard(dest)
		}
	}

	// physical baseline: tar of the same data to the same disk, and cp -r
	if !warm && round <= b.baseRuns {
		tarOut := filepath.Join(b.tmp, "baseline.tar")
		s = b.get("tar "+key, key, "tar", "tar", d.Bytes)
		smp, _, err = b.run(d.Dir, []string{"tar", "-cf", tarOut, d.Title})
		b.record(s, smp, err, warm)
		b.discard(tarOut)
		cpOut := filepath.Join(b.tmp, "baseline-cp")
		s = b.get("cp "+key, key, "cp", "cp", d.Bytes)
		smp, _, err = b.run(d.Dir, []string{"cp", "-r", d.Title, cpOut})
		b.record(s, smp, err, warm)
		b.discard(cpOut)
	}
}

func blobUp(out []byte) int64 {
	var r workerResult
	if json.Unmarshal(out, &r) == nil && r.Push != nil {
		return r.Push.UploadedBytes
	}
	return -1
}
