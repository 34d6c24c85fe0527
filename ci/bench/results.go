package main

// results.json: what a run measured, each part stamped with when it ran, and the targets judged
// from the measurements. docs/benchmarks.md is rendered from it (report.go), so the doc can be
// re-rendered without measuring again (`make bench-report`).
//
// A new benchmark adds a part: a field here with its own result type (embedding stamp), a run
// function called from main.go, its targets in (*results).judge, and a section in
// benchmarks.md.tmpl with a "why/<target id>" block for each of its targets.

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

type results struct {
	Run     runInfo        `json:"run"`
	Targets []target       `json:"targets"`
	Data    *dataResult    `json:"data,omitempty"`
	Webhook *webhookResult `json:"webhook,omitempty"`
	Cluster *clusterResult `json:"cluster,omitempty"`
}

// runInfo describes the run that wrote the file (parts merged in later with -merge keep their own
// stamps).
type runInfo struct {
	Started     time.Time         `json:"started"`
	Args        string            `json:"args"`      // of the bench program, e.g. "-scale 0.01 -runs 2"
	TotalSecs   float64           `json:"totalSecs"` // of `make bench` when -t0 is given, else of this program
	Parts       string            `json:"parts"`
	Scale       float64           `json:"scale"`
	Runs        int               `json:"runs"`
	SlowRuns    int               `json:"slowRuns"`
	BaseRuns    int               `json:"baseRuns"`
	LoadBefore  string            `json:"loadBefore"`
	LoadAfter   string            `json:"loadAfter"`
	LoadSamples []string          `json:"loadSamples"` // 1-minute load average every 30 s
	Machine     map[string]string `json:"machine"`
}

// stamp says when a part ran and under which load.
type stamp struct {
	Started time.Time `json:"started"`
	Secs    float64   `json:"secs"`
	Load    string    `json:"load"` // 1-minute load average before → after
	Commit  string    `json:"commit"`
}

// target is one bound of an issue, named by what it measures and the bound itself.
type target struct {
	ID     string  `json:"id"`   // stable; benchmarks.md.tmpl explains a miss in "why/<id>"
	Name   string  `json:"name"` // e.g. "push (b) 1 GiB directory of 1 000 random files: ≥ 3× the oras CLI's speed"
	Issue  int     `json:"issue"`
	Got    string  `json:"got"`
	Value  float64 `json:"value"`
	Status string  `json:"status"` // met, missed, not measured
}

func (t target) Missed() bool { return t.Status == "missed" }

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Sorted(slices.Values(v))
	return (s[(len(s)-1)/2] + s[len(s)/2]) / 2
}

// summarize fills the medians of every part's samples (saved for readers of results.json).
func (r *results) summarize() {
	if r.Data != nil {
		for _, s := range r.Data.Series {
			s.summarize()
		}
	}
	if r.Cluster != nil {
		for i := range r.Cluster.Cases {
			r.Cluster.Cases[i].summarize()
		}
	}
}

// judge computes the targets from the measurements.
func (r *results) judge() {
	var ts []target
	add := func(issue int, id, name string, measured bool, value float64, ok bool, got string, a ...any) {
		t := target{ID: id, Name: name, Issue: issue, Status: "not measured", Got: "–"}
		if measured {
			t.Value, t.Got, t.Status = value, fmt.Sprintf(got, a...), map[bool]string{true: "met", false: "missed"}[ok]
		}
		ts = append(ts, t)
	}
	if d := r.Data; d != nil && len(d.Series) > 0 {
		for _, c := range []struct {
			op, key string
			want    float64
		}{{"push", "b", 3}, {"push", "c", 2}, {"push", "d", 1.5}, {"push", "a", 1},
			{"pull", "b", 1.2}, {"pull", "c", 1.2}, {"pull", "d", 1.2}, {"pull", "a", 1}} {
			x := speedup(d.Find(c.op+" "+c.key, "ours"), d.Find(c.op+" "+c.key, "oras"))
			add(6, c.op+"-"+c.key, fmt.Sprintf("%s (%s) %s: ≥ %.1f× the oras CLI's speed", c.op, c.key, d.What(c.key), c.want),
				x > 0, x, x >= c.want, "%.2f×", x)
		}
		if o, a := d.Find("re-push b (e)", "ours"), d.Find("re-push b (e)", "oras"); o != nil && o.Runs > 0 {
			blob := int64(0)
			for _, s := range o.Samples {
				if !s.Warmup {
					blob = max(blob, s.BlobUp)
				}
			}
			add(6, "repush-bytes", "re-push (e) of unchanged (b): 0 blob bytes uploaded", true, float64(blob), blob == 0,
				"%d (TCP upload %s incl. HTTP)", blob, human(int64(o.UpBytes)))
			f := 0.0
			if a != nil && a.Secs > 0 {
				f = o.Secs / a.Secs
			}
			add(6, "repush-time", "re-push (e) of unchanged (b): ≤ 15 % of the oras CLI's time", f > 0, f, f <= 0.15,
				"%.1f %% (%.2f s vs %.2f s)", 100*f, o.Secs, a.secs())
		}
		worst, where := 0.0, ""
		for _, s := range d.Series {
			if s.Tool == "ours" && s.MaxRSSMiB > worst {
				worst, where = s.MaxRSSMiB, s.Case
			}
		}
		add(6, "rss", "peak RSS of our data path in every push and pull above: ≤ 64 MiB", true, worst, worst <= 64, "%.1f MiB (max, %s)", worst, where)
	}
	if w := r.Webhook; w != nil {
		h := w.Handler
		ns := median(h.NsPerOp)
		add(6, "handler", "webhook handler, typical Job pod: ≤ 50 µs/op", ns > 0, ns/1000, ns <= 50000, "%.1f µs/op, %.0f allocs/op", ns/1000, h.AllocsPerOp)
		i := slices.IndexFunc(w.Load.Results, func(x loadResult) bool { return x.Rate == 500 })
		var x loadResult
		if i >= 0 {
			x = w.Load.Results[i]
		}
		add(6, "load", "webhook over HTTPS at 500 req/s from 32 clients: p99 ≤ 5 ms, 0 errors", i >= 0, x.P99ms, x.P99ms <= 5 && x.Errors == 0,
			"p99 %.2f ms, %d errors", x.P99ms, x.Errors)
	}
	if c := r.Cluster; c != nil {
		worst := 0.0
		for _, x := range c.Cases {
			worst = max(worst, x.Overhead)
		}
		id, name := "cluster", "per-step overhead of injection on the local cluster: ≤ 2 s over the transfer"
		switch {
		case len(c.Cases) == 0 && c.Failed != "":
			add(6, id, name, true, 0, false, "failed before any case finished")
		case len(c.Cases) == 0:
			add(6, id, name, false, 0, false, "")
			ts[len(ts)-1].Got = "skipped: " + c.Skipped
		default:
			more := ""
			if c.Failed != "" {
				more = "; the run broke off before the other cases"
			}
			add(6, id, name, true, worst, worst <= 2, "%.1f s (worst of %d cases)%s", worst, len(c.Cases), more)
		}
	}
	if r.Run.TotalSecs > 0 && strings.Contains(r.Run.Parts, "data") && r.Run.Scale == 1 {
		got := fmt.Sprintf("%.1f min", r.Run.TotalSecs/60)
		if c := r.Cluster; c != nil && c.Secs > 30 {
			got += fmt.Sprintf(" (%.1f min without the optional cluster part)", (r.Run.TotalSecs-c.Secs)/60)
		}
		add(6, "total", "`make bench` end to end: < 15 min", true, r.Run.TotalSecs/60, r.Run.TotalSecs < 900, "%s", got)
	}
	r.Targets = ts
}
