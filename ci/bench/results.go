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
	Note        string            `json:"note,omitempty"` // how the figures came about, when not by one plain run
}

// stamp says when a part ran and under which load.
type stamp struct {
	Started time.Time `json:"started"`
	Secs    float64   `json:"secs"`
	LoadAvg string    `json:"loadAvg"` // 1-, 5- and 15-minute load average before → after
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
	r.Targets = nil
	add := func(issue int, id, name string, measured, ok bool, value float64, got string) {
		status := map[bool]string{true: "met", false: "missed"}[ok]
		if !measured {
			status = "not measured"
		}
		r.Targets = append(r.Targets, target{ID: id, Name: name, Issue: issue, Got: got, Value: value, Status: status})
	}
	if d := r.Data; d != nil && len(d.Series) > 0 {
		for _, c := range []struct {
			op, key string
			want    float64
		}{{"push", "b", 3}, {"push", "c", 2}, {"push", "d", 1.5}, {"push", "a", 1},
			{"pull", "b", 1.2}, {"pull", "c", 1.2}, {"pull", "d", 1.2}, {"pull", "a", 1}} {
			x, got := speedup(d.Find(c.op+" "+c.key, "ours"), d.Find(c.op+" "+c.key, "oras")), ""
			if x > 0 {
				got = fmt.Sprintf("%.2f×", x)
			}
			add(6, c.op+"-"+c.key, fmt.Sprintf("%s (%s) %s: ≥ %.1f× the oras CLI's speed", c.op, c.key, d.What(c.key), c.want), x > 0, x >= c.want, x, got)
		}
		if o, a := d.Find("re-push b (e)", "ours"), d.Find("re-push b (e)", "oras"); o != nil && o.Runs > 0 {
			blob := int64(0)
			for _, s := range o.Samples {
				if !s.Warmup {
					blob = max(blob, s.BlobUp)
				}
			}
			add(6, "repush-bytes", "re-push (e) of unchanged (b): 0 blob bytes uploaded", true, blob == 0, float64(blob),
				fmt.Sprintf("%d (TCP upload %s incl. HTTP)", blob, human(int64(o.UpBytes))))
			if a != nil && a.Runs > 0 && a.Secs > 0 {
				f := o.Secs / a.Secs
				add(6, "repush-time", "re-push (e) of unchanged (b): ≤ 15 % of the oras CLI's time", true, f <= 0.15, f,
					fmt.Sprintf("%.1f %% (%.2f s vs %.2f s)", 100*f, o.Secs, a.Secs))
			} else {
				add(6, "repush-time", "re-push (e) of unchanged (b): ≤ 15 % of the oras CLI's time", false, false, 0, "")
			}
		}
		worst, where := 0.0, ""
		for _, s := range d.Series {
			if s.Tool == "ours" && s.MaxRSSMiB > worst {
				worst, where = s.MaxRSSMiB, s.Case
			}
		}
		add(6, "rss", "peak RSS of our data path in every push and pull above: ≤ 64 MiB", true, worst <= 64, worst,
			fmt.Sprintf("%.1f MiB (max, %s)", worst, where))
	}
	if w := r.Webhook; w != nil {
		ns := median(w.Handler.NsPerOp)
		add(6, "handler", "webhook handler, typical Job pod: ≤ 50 µs/op", ns > 0, ns <= 50000, ns/1000,
			fmt.Sprintf("%.1f µs/op, %.0f allocs/op", ns/1000, w.Handler.AllocsPerOp))
		x := loadResult{Rate: -1}
		if i := slices.IndexFunc(w.Load.Results, func(x loadResult) bool { return x.Rate == 500 }); i >= 0 {
			x = w.Load.Results[i]
		}
		add(6, "load", "webhook over HTTPS at 500 req/s from 32 clients: p99 ≤ 5 ms, 0 errors", x.Rate == 500, x.P99ms <= 5 && x.Errors == 0,
			x.P99ms, fmt.Sprintf("p99 %.2f ms, %d errors", x.P99ms, x.Errors))
	}
	if c := r.Cluster; c != nil {
		worst, got := 0.0, "skipped: "+c.Skipped
		for _, x := range c.Cases {
			worst = max(worst, x.Overhead)
		}
		switch {
		case len(c.Cases) > 0:
			got = fmt.Sprintf("%.1f s (worst of %d cases)", worst, len(c.Cases))
			if c.Failed != "" {
				got += "; the run broke off before the other cases"
			}
		case c.Failed != "":
			got = "failed before any case finished"
		}
		add(6, "cluster", "per-step overhead of injection on the local cluster: ≤ 2 s over the transfer", len(c.Cases) > 0, worst <= 2, worst, got)
	}
	if t := r.Run.TotalSecs; t > 0 && strings.Contains(r.Run.Parts, "data") && r.Run.Scale == 1 {
		got := fmt.Sprintf("%.1f min", t/60)
		if c := r.Cluster; c != nil && c.Secs > 30 {
			got += fmt.Sprintf(" (%.1f min without the optional cluster part)", (t-c.Secs)/60)
		}
		add(6, "total", "`make bench` end to end: < 15 min", true, t < 900, t/60, got)
	}
}
