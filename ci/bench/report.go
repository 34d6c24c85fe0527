package main

// docs/benchmarks.md is rendered from the results with benchmarks.md.tmpl: the template holds the
// prose (method, analysis, why a target was missed), the results hold the figures.

import (
	"bytes"
	_ "embed"
	"fmt"
	"slices"
	"strings"
	"text/template"
)

//go:embed benchmarks.md.tmpl
var reportTemplate string

func render(r *results) ([]byte, error) {
	var t *template.Template
	funcs := template.FuncMap{
		"human": human,
		"join":  strings.Join,
		"split": strings.Fields,
		"missed": func(ts []target) bool {
			return slices.ContainsFunc(ts, target.Missed)
		},
		"div": func(a, b float64) float64 { return a / b },
		"sub": func(a, b float64) float64 { return a - b },
		// esc makes text safe in a table cell and cuts it to n characters (0: no limit).
		"esc": func(n int, s string) string {
			s = strings.NewReplacer("|", `\|`, "\n", " ").Replace(s)
			if n > 0 && len(s) > n {
				return s[:n] + "…"
			}
			return s
		},
		// cell is one figure of a series in the data-path table.
		"cell": func(what string, s *series) string {
			switch {
			case s == nil:
				return "–"
			case what == "runs":
				return fmt.Sprint(s.Runs)
			case s.Runs == 0 && len(s.Errors) > 0:
				return "error"
			case s.Runs == 0:
				return "–"
			}
			return map[string]func() string{
				"secs": func() string { return fmt.Sprintf("%.2f", s.Secs) },
				"mbps": func() string { return fmt.Sprintf("%.0f", s.MBps) },
				"rss":  func() string { return fmt.Sprintf("%.1f (%.1f)", s.RSSMiB, s.MaxRSSMiB) },
				"up":   func() string { return human(int64(s.UpBytes)) },
				"all": func() string {
					var v []string
					for _, x := range s.Samples {
						if !x.Warmup {
							v = append(v, fmt.Sprintf("%.2f", x.Secs))
						}
					}
					return strings.Join(v, " ")
				},
			}[what]()
		},
		// why is the analysis of a missed target: the template's block "why/<id>".
		"why": func(id string) (string, error) {
			if t.Lookup("why/"+id) == nil {
				return "(no analysis recorded for this target)", nil
			}
			var b strings.Builder
			err := t.ExecuteTemplate(&b, "why/"+id, r)
			return strings.Join(strings.Fields(b.String()), " "), err
		},
	}
	t, err := template.New("benchmarks.md").Funcs(funcs).Option("missingkey=error").Parse(reportTemplate)
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	if err := t.Execute(&b, r); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// Breakdowns lists when the containers of each case's first injected pod ran.
func (c *clusterResult) Breakdowns() []string {
	var out []string
	for _, x := range c.Cases {
		if len(x.Runs) > 0 && x.Runs[0].Breakdown != "" {
			out = append(out, x.Name+": "+x.Runs[0].Breakdown)
		}
	}
	return out
}
