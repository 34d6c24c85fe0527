package main

// Renders docs/benchmarks.md (and the same tables on stdout) from the results.

import (
	"fmt"
	"os"
	"sort"
	"strings"
	"time"
)

type target struct {
	ID, Name, Want, Got string
	Met                 *bool // nil: not measured
}

func boolp(b bool) *bool { return &b }

func (r *results) find(caseName, tool string) *series {
	for _, s := range r.Series {
		if s.Case == caseName && s.Tool == tool {
			return s
		}
	}
	return nil
}

func speedup(ours, oras *series) float64 {
	if ours == nil || oras == nil || ours.Secs() == 0 || len(ours.measured()) == 0 || len(oras.measured()) == 0 {
		return 0
	}
	return oras.Secs() / ours.Secs()
}

func (r *results) targets() []target {
	var ts []target
	ratio := func(id, caseName string, want float64) {
		if len(r.Series) == 0 {
			return
		}
		t := target{ID: id, Name: caseName + ": speed vs the oras CLI", Want: fmt.Sprintf("≥ %.1f×", want)}
		if x := speedup(r.find(caseName, "ours"), r.find(caseName, "oras")); x > 0 {
			t.Got = fmt.Sprintf("%.2f×", x)
			t.Met = boolp(x >= want)
		}
		ts = append(ts, t)
	}
	ratio("push-b", "push b", 3)
	ratio("push-c", "push c", 2)
	ratio("push-d", "push d", 1.5)
	ratio("push-a", "push a", 1)
	ratio("pull-b", "pull b", 1.2)
	ratio("pull-c", "pull c", 1.2)
	ratio("pull-d", "pull d", 1.2)
	ratio("pull-a", "pull a", 1)
	if o, a := r.find("re-push b (e)", "ours"), r.find("re-push b (e)", "oras"); o != nil && len(o.measured()) > 0 {
		blob := int64(0)
		for _, s := range o.measured() {
			blob = max(blob, s.BlobUp)
		}
		ts = append(ts, target{ID: "repush-bytes", Name: "re-push (e): blob bytes uploaded", Want: "0",
			Got: fmt.Sprintf("%d (TCP upload %s incl. HTTP)", blob, human(int64(o.Up()))), Met: boolp(blob == 0)})
		t := target{ID: "repush-time", Name: "re-push (e): time vs the oras CLI's", Want: "≤ 15 %"}
		if a != nil && len(a.measured()) > 0 {
			f := o.Secs() / a.Secs()
			t.Got = fmt.Sprintf("%.1f %% (%.2f s vs %.2f s)", 100*f, o.Secs(), a.Secs())
			t.Met = boolp(f <= 0.15)
		}
		ts = append(ts, t)
	}
	if len(r.Series) > 0 {
		worst, where := 0.0, ""
		for _, s := range r.Series {
			if s.Tool == "ours" && s.MaxRSSMiB() > worst {
				worst, where = s.MaxRSSMiB(), s.Case
			}
		}
		ts = append(ts, target{ID: "rss", Name: "peak RSS of our data path, every case", Want: "≤ 64 MiB",
			Got: fmt.Sprintf("%.1f MiB (max, %s)", worst, where), Met: boolp(worst <= 64)})
	}
	if h := r.Handler; h != nil {
		t := target{ID: "handler", Name: "webhook handler, typical Job pod", Want: "≤ 50 µs/op"}
		if len(h.NsPerOp) > 0 {
			ns := median(h.NsPerOp)
			t.Got = fmt.Sprintf("%.1f µs/op, %.0f allocs/op", ns/1000, h.AllocsPerOp)
			t.Met = boolp(ns <= 50000)
		}
		ts = append(ts, t)
	}
	if l := r.Load; l != nil {
		t := target{ID: "load", Name: "webhook over HTTPS at 500 req/s, 32 clients", Want: "p99 ≤ 5 ms, 0 errors"}
		for _, x := range l.Results {
			if x.Rate == 500 {
				t.Got = fmt.Sprintf("p99 %.2f ms, %d errors", x.P99ms, x.Errors)
				t.Met = boolp(x.P99ms <= 5 && x.Errors == 0)
			}
		}
		ts = append(ts, t)
	}
	if c := r.Cluster; c != nil {
		t := target{ID: "cluster", Name: "per-step overhead of injection on the local cluster", Want: "≤ 2 s over the transfer"}
		if c.Skipped != "" || len(c.Cases) == 0 {
			t.Got = "skipped: " + c.Skipped
			if c.Failed != "" {
				t.Got = "failed before any case finished"
			}
		} else {
			worst := 0.0
			for _, x := range c.Cases {
				worst = max(worst, x.InjectSecs-x.PlainSecs-x.TransferSec)
			}
			t.Got = fmt.Sprintf("%.1f s (worst of %d cases)", worst, len(c.Cases))
			for _, m := range r.ClusterMore {
				w := 0.0
				for _, x := range m.Result.Cases {
					w = max(w, x.InjectSecs-x.PlainSecs-x.TransferSec)
				}
				t.Got += fmt.Sprintf("; %.1f s when run alone at %s", w, m.Started.UTC().Format("15:04"))
			}
			if c.Failed != "" {
				t.Got += "; the run broke off before the other cases"
			}
			t.Met = boolp(worst <= 2)
		}
		ts = append(ts, t)
	}
	if r.TotalSecs > 0 && strings.Contains(r.Parts, "data") && r.Scale == 1 {
		got := fmt.Sprintf("%.1f min", r.TotalSecs/60)
		if r.ClusterSecs > 30 {
			got += fmt.Sprintf(" (%.1f min without the optional cluster part)", (r.TotalSecs-r.ClusterSecs)/60)
		}
		ts = append(ts, target{ID: "total", Name: "`make bench` end to end", Want: "< 15 min", Got: got, Met: boolp(r.TotalSecs < 900)})
	}
	return ts
}

func mark(m *bool) string {
	switch {
	case m == nil:
		return "not measured"
	case *m:
		return "**met**"
	}
	return "**missed**"
}

func dataTable(r *results) string {
	var b strings.Builder
	b.WriteString("| case | data | ours s | oras s | ours / oras (time) | speedup (oras s / ours s) | ours MB/s | oras MB/s | ours RSS MiB (max) | oras RSS MiB (max) | uploaded ours | uploaded oras | runs ours / oras |\n")
	b.WriteString("|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|:-:|\n")
	cases := []string{"push a", "push b", "push c", "push d", "re-push b (e)", "pull a", "pull b", "pull c", "pull d"}
	for _, c := range cases {
		o, a := r.find(c, "ours"), r.find(c, "oras")
		if o == nil && a == nil {
			continue
		}
		data := ""
		if s := firstSeries(o, a); s != nil {
			data = human(s.Bytes)
		}
		col := func(s *series, f func(*series) string) string {
			if s == nil || len(s.measured()) == 0 {
				if s != nil && len(s.Errors) > 0 {
					return "error"
				}
				return "–"
			}
			return f(s)
		}
		secs := func(s *series) string { return fmt.Sprintf("%.2f", s.Secs()) }
		mbps := func(s *series) string { return fmt.Sprintf("%.0f", s.MBps()) }
		rss := func(s *series) string { return fmt.Sprintf("%.1f (%.1f)", s.RSSMiB(), s.MaxRSSMiB()) }
		up := func(s *series) string { return human(int64(s.Up())) }
		n := func(s *series) string {
			if s == nil {
				return "0"
			}
			return fmt.Sprint(len(s.measured()))
		}
		sp, tr := "–", "–"
		if x := speedup(o, a); x > 0 {
			sp, tr = fmt.Sprintf("**%.2f×**", x), fmt.Sprintf("%.2f", 1/x)
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s / %s |\n", c, data,
			col(o, secs), col(a, secs), tr, sp, col(o, mbps), col(a, mbps), col(o, rss), col(a, rss), col(o, up), col(a, up), n(o), n(a))
	}
	return b.String()
}

func firstSeries(s ...*series) *series {
	for _, x := range s {
		if x != nil {
			return x
		}
	}
	return nil
}

func spreadTable(r *results) string {
	var b strings.Builder
	b.WriteString("| case | tool | runs (s) | median | min–max | verified pull |\n|---|---|---|--:|---|---|\n")
	for _, s := range r.Series {
		if s.Tool != "ours" && s.Tool != "oras" {
			continue
		}
		var v []string
		for _, x := range s.measured() {
			v = append(v, fmt.Sprintf("%.2f", x.Secs))
		}
		lo, hi := s.Range()
		ver := s.Verified
		if len(s.Errors) > 0 {
			ver += fmt.Sprintf(" %d error(s): %s", len(s.Errors), strings.ReplaceAll(trunc(s.Errors[0], 200), "|", "\\|"))
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %.2f | %.2f–%.2f | %s |\n", s.Case, s.Tool, strings.Join(v, " "), s.Secs(), lo, hi, ver)
	}
	return b.String()
}

func trunc(s string, n int) string {
	s = strings.ReplaceAll(s, "\n", " ")
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

func baselineTable(r *results) string {
	var b strings.Builder
	b.WriteString("| data | tar -cf s | tar MB/s | cp -r s | cp MB/s | ours push s | ours pull s |\n|---|--:|--:|--:|--:|--:|--:|\n")
	for _, k := range []string{"a", "b", "c", "d"} {
		t, c := r.find("tar "+k, "tar"), r.find("cp "+k, "cp")
		if t == nil {
			continue
		}
		op, ol := r.find("push "+k, "ours"), r.find("pull "+k, "ours")
		g := func(s *series) string {
			if s == nil {
				return "–"
			}
			return fmt.Sprintf("%.2f", s.Secs())
		}
		fmt.Fprintf(&b, "| (%s) %s | %.2f | %.0f | %s | %.0f | %s | %s |\n", k, human(t.Bytes), t.Secs(), t.MBps(), g(c), c.MBps(), g(op), g(ol))
	}
	return b.String()
}

func writeReport(r *results, out string, logf func(string, ...any)) int {
	var b strings.Builder
	p := func(f string, a ...any) { fmt.Fprintf(&b, f, a...) }
	p("# Benchmarks\n\n")
	p("Written by `make bench` (`bash ci/bench.sh` → `go run ./ci/bench`) on %s UTC; the whole run took %.1f min", r.Started.UTC().Format("2006-01-02 15:04"), r.TotalSecs/60)
	if r.ClusterSecs > 30 {
		p(" (%.1f min of it the optional cluster part)", r.ClusterSecs/60)
	}
	p(".\n")
	p("Benchmarks are not tests: nothing in `make test` asserts a time. Raw results: `.work/bench/results.json`.\n\n")
	if r.Scale != 1 {
		p("> **Scale %.3g**: datasets are %.3g× the sizes of issue 6 — a development run, not the reference numbers.\n\n", r.Scale, r.Scale)
	}
	p("Load (1-minute average) at the start %s, at the end %s; sampled every 30 s: %s. ", r.LoadBefore, r.LoadAfter, strings.Join(r.LoadSamples, " "))
	p("The machine has %s cores; the benchmark alone keeps the load near 1–2 (the client under test and the registry are both busy), so a load well above 2 means other processes competed for the cores.\n\n", r.Machine["cores"])

	ts := r.targets()
	p("## Targets of issue 6\n\n| target | wanted | measured | |\n|---|---|---|---|\n")
	for _, t := range ts {
		p("| %s | %s | %s | %s |\n", t.Name, t.Want, strings.ReplaceAll(t.Got, "|", "\\|"), mark(t.Met))
	}
	p("\n")
	var missed []target
	for _, t := range ts {
		if t.Met != nil && !*t.Met {
			missed = append(missed, t)
		}
	}
	if len(missed) > 0 {
		p("### Missed targets: why, and what would close them\n\n")
		for _, t := range missed {
			note := missNotes[t.ID]
			if note == "" {
				note = "(no analysis recorded for this target)"
			}
			p("- **%s** (%s, wanted %s): %s\n", t.Name, t.Got, t.Want, note)
		}
		p("\n")
	}

	if len(r.Series) > 0 {
		p("## 1. Data path vs the `oras` CLI\n\n")
		p("Median of %d measured rounds, interleaved: each round runs every case with both tools back to back, ours first in odd rounds and the oras CLI first in even rounds (A B, B A, …). ", r.Runs)
		p("Warm-up (not counted): every dataset is read once (page cache) and each tool pushes and pulls (a) once. ")
		p("The oras CLI's three slowest cases — its pushes of (b) and (c) and the re-push (e), ~30 s each — get %d runs ", r.SlowRuns)
		p("(the page cache is already warm from the other runs) so that `make bench` stays under 15 minutes. ")
		p("Time is wall time of the whole process (start to exit, as a user sees it); RSS is its peak, `ru_maxrss` as GNU `time -f %%M` reports it around each command (Go's own rusage of a child it starts would include the bench process's RSS: Go starts children with vfork); ")
		p("uploaded is every byte the client sent to the registry through the counting proxy (HTTP headers included). ")
		p("MB/s = dataset bytes (10⁶) per second. Both tools pull the artifact our data path pushed (the format the cache holds; `oras pull` reads it as its own).\n\n")
		p("%s\n", dataTable(r))
		p("Datasets (generated once, deterministic, cached in `.work/bench/data`):\n\n")
		for _, d := range r.Datasets {
			p("- (%s) `%s`: %s — %d files, %s\n", d.Key, d.Title, d.Desc, d.Files, human(d.Bytes))
		}
		p("- (e) re-push of unchanged (b) to the reference that already holds it\n\n")
		p("### Physical baseline (same data, same disk)\n\n%s\n", baselineTable(r))
		p("`tar -cf` writes the uncompressed archive to `.work/bench/tmp` (the disk the registry stores on); `cp -r` copies the tree there. ")
		p("Medians of %d runs (in the first rounds).\n\n", r.BaseRuns)
		p("### Every run\n\n%s\n", spreadTable(r))
		p("%s\n", analysisNotes)
	}

	p("## 2. Webhook\n\n")
	if h := r.Handler; h != nil {
		p("Handler micro-benchmark (decode, validation, patch, its JSON encoding; no HTTP/TLS): `%s`\n\n", h.Command)
		if h.Error != "" {
			p("**Error**: %s\n\n", trunc(h.Error, 600))
		} else {
			var v []string
			for _, x := range h.NsPerOp {
				v = append(v, fmt.Sprintf("%.1f", x/1000))
			}
			p("| µs/op (median of %d) | runs µs/op | B/op | allocs/op |\n|--:|---|--:|--:|\n| %.1f | %s | %.0f | %.0f |\n\n",
				len(h.NsPerOp), median(h.NsPerOp)/1000, strings.Join(v, " "), h.BytesPerOp, h.AllocsPerOp)
		}
	}
	if l := r.Load; l != nil {
		p("Load run against the real HTTPS server: %s. Latency is from sending a request to reading the whole response; ", r.Commands["webhook load"])
		p("\"p99 from schedule\" counts from when the request was due (so it includes any client-side queueing — the load generator shares the 2 cores with the server). ")
		p("A response counts as an error unless it is HTTP 200, `allowed: true`, with a patch and the request's UID.\n\n")
		if l.Error != "" {
			p("**Error**: %s\n\n", trunc(l.Error, 600))
		}
		if len(l.Results) > 0 {
			p("| rate req/s | requests | achieved req/s | p50 ms | p99 ms | max ms | p99 from schedule ms | errors |\n|--:|--:|--:|--:|--:|--:|--:|--:|\n")
			for _, x := range l.Results {
				p("| %d | %d | %.0f | %.2f | %.2f | %.2f | %.2f | %d |\n", x.Rate, x.Requests, x.Achieved, x.P50ms, x.P99ms, x.MaxMs, x.SchedP99ms, x.Errors)
			}
			p("\nPeak RSS of the webhook process over the load runs: %.1f MiB.", l.ServerRSS)
			for _, x := range l.Results {
				if x.FirstError != "" {
					p(" First error at %d req/s: `%s`.", x.Rate, trunc(x.FirstError, 200))
				}
			}
			p("\n\n")
		}
	}

	p("## 3. Local cluster: per-step overhead of injection\n\n")
	switch c := r.Cluster; {
	case c == nil:
		p("Not run (`-parts` excluded it).\n\n")
	case len(c.Cases) == 0 && c.Failed != "":
		p("**Failed** before any case finished: %s\n\n", strings.ReplaceAll(c.Failed, "\n", " "))
	case c.Skipped != "":
		p("**Skipped**: %s. This part is optional; it runs when `.work/cluster/kubeconfig` exists and the API server answers.\n\n", c.Skipped)
		p("%s Why, and what would close it: %s\n\n", clusterEarlier, missNotes["cluster"])
	default:
		p("Wall time from `kubectl create` of the Job to its `Complete` condition (`kubectl wait`), one run each; the app is `%s` (busybox) writing N random bytes to `/tmp/out`; ", busyboxImage)
		p("with annotations it also gets the N-byte input (pushed beforehand by a Job of its own) in `/tmp/in` and pushes `/tmp/out`. ")
		p("Transfer = what the sidecar reports: the init container's pull `durationMs` plus the push sidecar's termination-message `durationMs`. Overhead = with − without − transfer.\n\n")
		clusterTable(&b, c)
		for _, m := range r.ClusterMore {
			p("The same part run again on its own at %s UTC (load %s), after the full run — the full run's cluster part starts right after gigabytes of data-path writes, and other sessions used the cluster at the time:\n\n", m.Started.UTC().Format("15:04"), m.Load)
			clusterTable(&b, &m.Result)
		}
		p("\n%s\n\n", clusterNotes)
	}

	p("## Exact commands\n\n")
	p("- everything: `make bench` = `bash ci/bench.sh` (installs the pinned tools with `ci/install-tools.sh`, builds `ci/bench`, runs it)\n")
	keys := make([]string, 0, len(r.Commands))
	for k := range r.Commands {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		p("- %s: %s\n", k, r.Commands[k])
	}
	p("- registry: `registry serve config.yml` (CNCF distribution, filesystem storage under `.work/bench/registry/storage`, 127.0.0.1, access log off), ")
	p("behind a byte-counting TCP proxy in the bench process (splice, so it costs little CPU); both tools talk to the proxy with plain HTTP. ")
	p("Every push goes to a new repository (`bench/<tool>-<dataset>-r<round>`), so no push finds its blob in the registry except the re-push (e).\n")
	p("- `HOME`, `DOCKER_CONFIG` and `TMPDIR` of every measured process point into `.work/bench` (no credential store; temporary files on the same disk).\n")
	p("- page cache: warm (the datasets are read once per round by each tool; there is no portable way to drop caches without root). Outputs of a round are moved aside and deleted at its end, and a `sync` runs before each dataset's runs (both untimed), so deletions and write-back of earlier runs disturb later ones less.\n\n")

	p("## Machine and versions\n\n| | |\n|---|---|\n")
	for _, k := range []string{"cpu", "cores", "memory", "disk", "kernel", "go", "oras", "registry", "tar", "cp", "commit"} {
		p("| %s | %s |\n", k, strings.ReplaceAll(r.Machine[k], "|", "\\|"))
	}
	p("| date | %s |\n| scale | %g (runs %d, oras slow runs %d, baseline runs %d) |\n", r.Started.UTC().Format(time.RFC3339), r.Scale, r.Runs, r.SlowRuns, r.BaseRuns)

	doc := b.String()
	if err := os.WriteFile(out, []byte(doc), 0o644); err != nil {
		logf("writing %s: %v", out, err)
		return 1
	}
	// the same tables on stdout
	fmt.Println("\n== targets ==")
	for _, t := range ts {
		fmt.Printf("  %-55s want %-22s got %-40s %s\n", t.Name, t.Want, t.Got, strings.Trim(mark(t.Met), "*"))
	}
	if len(r.Series) > 0 {
		fmt.Println("\n== data path (median seconds) ==")
		fmt.Print(dataTable(r))
		fmt.Println("\n== baseline ==")
		fmt.Print(baselineTable(r))
	}
	logf("wrote %s", out)
	return 0
}

func clusterTable(b *strings.Builder, c *clusterResult) {
	p := func(f string, a ...any) { fmt.Fprintf(b, f, a...) }
	if c.Failed != "" {
		p("**The run broke off**: %s\n\n", strings.ReplaceAll(c.Failed, "\n", " "))
	}
	p("| case | without annotations s | with annotations s | transfer s | overhead s |\n|---|--:|--:|--:|--:|\n")
	for _, x := range c.Cases {
		name := x.Name
		if x.Note != "" {
			name += " (" + x.Note + ")"
		}
		p("| %s | %.1f | %.1f | %.1f | %.1f |\n", name, x.PlainSecs, x.InjectSecs, x.TransferSec, x.InjectSecs-x.PlainSecs-x.TransferSec)
	}
	var bd []string
	for _, x := range c.Cases {
		if x.Breakdown != "" {
			bd = append(bd, fmt.Sprintf("- %s: %s", x.Name, x.Breakdown))
		}
	}
	if len(bd) > 0 {
		p("\nWhen the containers of the injected pods ran (seconds after the pod was created; 1 s resolution):\n\n%s\n", strings.Join(bd, "\n"))
	}
	p("\n")
}
