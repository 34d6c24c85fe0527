package main

// The report renders from results.json alone, so a template error, a target without its
// analysis or a doc out of step with its template fails here, without a benchmark run.

import (
	"bytes"
	"os"
	"strings"
	"testing"
)

func renderFile(t *testing.T, path string, edit func(*results)) (*results, string) {
	t.Helper()
	r, err := loadResults(path)
	if err != nil {
		t.Fatal(err)
	}
	edit(r)
	r.summarize()
	r.judge()
	doc, err := render(r)
	if err != nil {
		t.Fatal(err)
	}
	return r, string(doc)
}

// TestReportRendersFixture renders testdata/results.json (a small development run that missed
// targets) with each state of the cluster part; every target has its row, every miss its analysis.
func TestReportRendersFixture(t *testing.T) {
	keep := &clusterResult{} // the fixture's own cluster part
	for _, c := range []*clusterResult{keep, nil, {Skipped: "no kubeconfig"}, {Failed: "helm: timed out"}} {
		r, doc := renderFile(t, "testdata/results.json", func(r *results) {
			if c != keep {
				r.Cluster = c
			}
			r.Run.Scale, r.Run.Parts = 1, "data,webhook,cluster" // the total-time target too
		})
		for _, bad := range []string{"<no value>", "(no analysis recorded", "%!"} {
			if strings.Contains(doc, bad) {
				t.Errorf("the report contains %q:\n%s", bad, doc)
			}
		}
		missed := 0
		for _, tg := range r.Targets {
			if !strings.Contains(doc, "| "+tg.Name+" | "+strings.ReplaceAll(tg.Got, "|", `\|`)+" |") {
				t.Errorf("no row for target %s", tg.ID)
			}
			if !strings.Contains(reportTemplate, `{{- define "why/`+tg.ID+`"}}`) {
				t.Errorf("benchmarks.md.tmpl has no block why/%s", tg.ID)
			}
			if tg.Missed() {
				missed++
			}
		}
		if strings.Count(doc, "\n- **") != missed || missed == 0 {
			t.Errorf("%d targets missed, want each explained (and the fixture to miss some):\n%s", missed, doc)
		}
	}
}

// TestCommittedReport: docs/benchmarks.md is what the template renders from the committed
// results (after editing the template: `make bench-report`).
func TestCommittedReport(t *testing.T) {
	_, doc := renderFile(t, "../../docs/benchmarks/results.json", func(*results) {})
	committed, err := os.ReadFile("../../docs/benchmarks.md")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal([]byte(doc), committed) {
		t.Errorf("docs/benchmarks.md is not the rendering of docs/benchmarks/results.json: run `make bench-report`")
	}
}
