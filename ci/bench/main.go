// Command bench runs the oras-cache benchmarks and writes results.json and docs/benchmarks.md:
// the data path (sidecar/artifact) against the oras CLI with the physical baseline beside them,
// the admission webhook (handler micro-benchmark and an HTTPS load run), and, when the local
// cluster is up, the per-step overhead of injection. `make bench` runs it through ci/bench.sh;
// `make bench-report` re-renders the doc from the committed results.json without measuring.
//
//	go run ./ci/bench [-scale 1] [-runs 5] [-slow-runs 3] [-parts data,webhook,cluster]
//	go run ./ci/bench -report
//
// Re-executed as `bench worker push|pull …` it is the process that runs our data path.
package main

import (
	"bytes"
	"cmp"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "worker" {
		os.Exit(workerMain(os.Args[2:]))
	}
	os.Exit(run())
}

func logf(f string, a ...any) {
	fmt.Fprintf(os.Stderr, "[%s] %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(f, a...))
}

func run() int {
	repo, _ := os.Getwd()
	scale := flag.Float64("scale", 1, "dataset size factor (1 = 1 GiB datasets; use 0.01 while developing)")
	runs := flag.Int("runs", 5, "measured runs of each case (after one warm-up round)")
	slowRuns := flag.Int("slow-runs", 3, "measured runs of the oras CLI's slowest cases (directory pushes (b), (c) and the re-push (e)); no warm-up")
	baseRuns := flag.Int("base-runs", 3, "measured runs of the tar/cp baselines")
	clusterReps := flag.Int("cluster-runs", 1, "runs of each case of the cluster part (the figures are their medians)")
	parts := flag.String("parts", "data,webhook,cluster", "what to run")
	only := flag.String("datasets", "a,b,c,d,e", "datasets of the data-path benchmark")
	work := flag.String("work", filepath.Join(repo, ".work", "bench"), "work directory (datasets, registry storage)")
	resPath := flag.String("results", "", "results file to write (default docs/benchmarks/results.json at -scale 1, else <work>/results.json)")
	out := flag.String("out", "", "the report to write (default docs/benchmarks.md at -scale 1, else <work>/benchmarks.md)")
	t0 := flag.Int64("t0", 0, "unix time `make bench` started (for the total time in the report)")
	loadRate := flag.String("webhook-rates", "500,2000", "request rates of the webhook load runs")
	loadSecs := flag.Float64("webhook-secs", 10, "seconds of each webhook load run")
	report := flag.Bool("report", false, "measure nothing: re-render -out from -results")
	merge := flag.Bool("merge", false, "keep the parts this run does not measure from the existing -results file")
	flag.Parse()
	if abs, err := filepath.Abs(*work); err == nil {
		*work = abs
	}
	if *resPath == "" || *out == "" {
		dir, res, doc := *work, "results.json", "benchmarks.md" // a development run leaves the committed figures alone
		if *scale == 1 {
			dir, res = filepath.Join(repo, "docs"), filepath.Join("benchmarks", "results.json")
		}
		*resPath, *out = cmp.Or(*resPath, filepath.Join(dir, res)), cmp.Or(*out, filepath.Join(dir, doc))
	}
	if *report {
		r, err := loadResults(*resPath)
		if err == nil {
			err = r.save(*resPath, *out)
		}
		if err != nil {
			logf("report: %v", err)
			return 1
		}
		return 0
	}

	r := &results{Run: runInfo{Started: time.Now(), Args: args(), Scale: *scale, Runs: *runs, SlowRuns: min(*slowRuns, *runs),
		BaseRuns: min(*baseRuns, *runs), Machine: machineFacts(repo, *work), LoadBefore: loadavg(), Parts: *parts}}
	if *merge {
		old, err := loadResults(*resPath)
		if err != nil {
			logf("merge: %v", err)
			return 1
		}
		r.Run, r.Data, r.Webhook, r.Cluster = old.Run, old.Data, old.Webhook, old.Cluster
	}
	var samples []string
	stopLoad := sampleLoad(&samples)
	status := 0
	// part stamps the result of one part with when it ran
	part := func(name string, measure func() *stamp) {
		if !strings.Contains(","+*parts+",", ","+name+",") {
			return
		}
		st, load := time.Now(), loadavg()
		s := measure()
		*s = stamp{Started: st, Secs: time.Since(st).Seconds(), LoadAvg: load + " → " + loadavg(), Commit: r.Run.Machine["commit"]}
	}
	part("data", func() *stamp {
		d, err := runData(r, repo, *work, *only)
		if err != nil {
			logf("data path: %v", err)
			status = 1
		}
		if d == nil {
			d = &dataResult{}
		}
		r.Data = d
		return &d.stamp
	})
	part("webhook", func() *stamp {
		var rates []int
		for _, s := range strings.Split(*loadRate, ",") {
			if n, err := strconv.Atoi(s); err == nil && n > 0 {
				rates = append(rates, n)
			}
		}
		r.Webhook = &webhookResult{Handler: runHandlerBench(repo), Load: runWebhookLoad(repo, *work, rates, *loadSecs, 32)}
		return &r.Webhook.stamp
	})
	part("cluster", func() *stamp {
		r.Cluster = runCluster(repo, *clusterReps)
		return &r.Cluster.stamp
	})
	stopLoad()
	if !*merge {
		r.Run.LoadAfter, r.Run.LoadSamples = loadavg(), samples
		start := r.Run.Started
		if *t0 > 0 {
			start = time.Unix(*t0, 0)
		}
		r.Run.TotalSecs = time.Since(start).Seconds()
	}
	if err := r.save(*resPath, *out); err != nil {
		logf("%v", err)
		status = 1
	}
	return status
}

// args are the flags set on the command line (but -t0, a time stamp).
func args() string {
	var a []string
	flag.Visit(func(f *flag.Flag) {
		if f.Name != "t0" {
			a = append(a, "-"+f.Name+" "+f.Value.String())
		}
	})
	return strings.Join(a, " ")
}

func loadResults(path string) (*results, error) {
	var r results
	b, err := os.ReadFile(path)
	if err == nil {
		err = json.Unmarshal(b, &r)
	}
	return &r, err
}

// save summarizes and judges the results, writes them as JSON and renders the report.
func (r *results) save(resPath, out string) error {
	r.summarize()
	r.judge()
	b, err := json.MarshalIndent(r, "", "  ")
	if err == nil {
		err = os.MkdirAll(filepath.Dir(resPath), 0o755)
	}
	if err == nil {
		err = os.WriteFile(resPath, append(b, '\n'), 0o644)
	}
	if err != nil {
		return err
	}
	doc, err := render(r)
	if err == nil {
		err = os.WriteFile(out, doc, 0o644)
	}
	if err != nil {
		return err
	}
	fmt.Println("\n== targets ==")
	for _, t := range r.Targets {
		fmt.Printf("  %-12s %s: %s\n", t.Status, t.Name, t.Got)
	}
	logf("wrote %s and %s", resPath, out)
	return nil
}

// tool finds a binary in .work/bin (installed by ci/install-tools.sh) or on PATH.
func tool(repo, name string) (string, error) {
	p := filepath.Join(repo, ".work", "bin", name)
	if _, err := os.Stat(p); err == nil {
		return p, nil
	}
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	return "", fmt.Errorf("%s not found in .work/bin or on PATH: run `make tools`", name)
}

// loadavg is the 1-, 5- and 15-minute load average.
func loadavg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	return strings.Join(append(strings.Fields(string(b)), "?", "?", "?")[:3], " ")
}

// sampleLoad records the 1-minute load average every 30 s until stopped.
func sampleLoad(into *[]string) func() {
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(30 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				*into = append(*into, strings.Fields(loadavg())[0])
			}
		}
	}()
	return func() { close(stop); <-done }
}

// command runs name in dir with extra environment variables and returns its combined output;
// the error names the command and ends with the output's last lines.
func command(dir string, env []string, stdin []byte, name string, args ...string) (string, error) {
	cmd := exec.Command(name, args...)
	cmd.Dir, cmd.Env, cmd.Stdin = dir, append(os.Environ(), env...), bytes.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	if err != nil {
		err = fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, lastLines(string(out), 10))
	}
	return string(out), err
}

// sh is the trimmed output of a command, "?" when it fails.
func sh(dir, name string, args ...string) string {
	out, err := command(dir, nil, nil, name, args...)
	if err != nil {
		return "?"
	}
	return strings.TrimSpace(out)
}

func machineFacts(repo, work string) map[string]string {
	_ = os.MkdirAll(work, 0o755)
	m := map[string]string{"cores": fmt.Sprint(runtime.NumCPU()), "go": runtime.Version(), "oras": "?",
		"rss": "GNU time -f %M (ru_maxrss of the measured process)"}
	for k, c := range map[string]string{
		"cpu":    `grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2-`,
		"memory": `awk '/^MemTotal:/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo`,
		"disk":   `d=$(df -hT . | tail -1); echo "$d (rotational=$(cat /sys/block/$(basename ${d%% *})/queue/rotational))"`,
		"kernel": "uname -srm",
		"tar":    "tar --version | head -1",
		"cp":     "cp --version | head -1",
	} {
		m[k] = sh(work, "bash", "-c", c)
	}
	if p, err := tool(repo, "oras"); err == nil {
		m["oras"] = strings.ReplaceAll(lastLines(sh("", p, "version"), 3), "\n", "; ")
	}
	if p, err := tool(repo, "registry"); err == nil {
		m["registry"] = sh("", p, "--version")
	}
	m["commit"] = sh(repo, "git", "rev-parse", "--short", "HEAD")
	if st := sh(repo, "git", "status", "--porcelain", "--", "sidecar", "ci/bench"); st != "" && st != "?" {
		m["commit"] += " (with uncommitted changes in sidecar/ or ci/bench/)"
	}
	return m
}
