// Command bench runs the oras-cache benchmarks of issue 6 and writes docs/benchmarks.md:
// the data path (sidecar/artifact) against the oras CLI with the physical baseline beside them,
// the admission webhook (handler micro-benchmark and an HTTPS load run), and, when the local
// cluster is up, the per-step overhead of injection. `make bench` runs it through ci/bench.sh.
//
//	go run ./ci/bench [-scale 1] [-runs 5] [-slow-runs 3] [-parts data,webhook,cluster]
//
// Re-executed as `bench worker push|pull …` it is the process that runs our data path.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"
)

// results is everything one run measured (saved as JSON, rendered into the doc).
type results struct {
	Started     time.Time         `json:"started"`
	Finished    time.Time         `json:"finished"`
	TotalSecs   float64           `json:"totalSecs"` // of `make bench` when -t0 is given, else of this program
	ClusterSecs float64           `json:"clusterSecs"`
	Scale       float64           `json:"scale"`
	Runs        int               `json:"runs"`
	SlowRuns    int               `json:"slowRuns"`
	BaseRuns    int               `json:"baseRuns"`
	Datasets    []*dataset        `json:"datasets"`
	Series      []*series         `json:"series"`
	Handler     *handlerBench     `json:"handler,omitempty"`
	Load        *webhookLoad      `json:"load,omitempty"`
	Cluster     *clusterResult    `json:"cluster,omitempty"`
	ClusterMore []clusterExtra    `json:"clusterMore,omitempty"` // the cluster part run again alone (-merge-cluster)
	Machine     map[string]string `json:"machine"`
	LoadBefore  string            `json:"loadBefore"`
	LoadAfter   string            `json:"loadAfter"`
	LoadSamples []string          `json:"loadSamples"`
	Commands    map[string]string `json:"commands"`
	Parts       string            `json:"parts"`
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "worker" {
		os.Exit(workerMain(os.Args[2:]))
	}
	os.Exit(run())
}

func run() int {
	repo, _ := os.Getwd()
	scale := flag.Float64("scale", 1, "dataset size factor (1 = 1 GiB datasets; use 0.01 while developing)")
	runs := flag.Int("runs", 5, "measured runs of each case (after one warm-up round)")
	slowRuns := flag.Int("slow-runs", 3, "measured runs of the oras CLI's slowest cases (directory pushes (b), (c) and the re-push (e)); no warm-up")
	baseRuns := flag.Int("base-runs", 3, "measured runs of the tar/cp baselines")
	parts := flag.String("parts", "data,webhook,cluster", "what to run")
	only := flag.String("datasets", "a,b,c,d,e", "datasets of the data-path benchmark")
	work := flag.String("work", filepath.Join(repo, ".work", "bench"), "work directory (datasets, registry storage)")
	out := flag.String("out", filepath.Join(repo, "docs", "benchmarks.md"), "the report to write")
	t0 := flag.Int64("t0", 0, "unix time `make bench` started (for the total time in the report)")
	loadRate := flag.String("webhook-rates", "500,2000", "request rates of the webhook load runs")
	loadSecs := flag.Float64("webhook-secs", 10, "seconds of each webhook load run")
	reportOnly := flag.Bool("report-only", false, "re-render the report from <work>/results.json")
	mergeCluster := flag.String("merge-cluster", "", "with -report-only: add the cluster part of this results.json (a run of -parts cluster alone) to the report")
	flag.Parse()
	if abs, err := filepath.Abs(*work); err == nil {
		*work = abs
	}

	logf := func(f string, a ...any) {
		fmt.Fprintf(os.Stderr, "[%s] %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(f, a...))
	}
	resPath := filepath.Join(*work, "results.json")
	if *reportOnly {
		var r results
		b, err := os.ReadFile(resPath)
		if err == nil {
			err = json.Unmarshal(b, &r)
		}
		if err != nil {
			logf("report-only: %v", err)
			return 1
		}
		if *mergeCluster != "" {
			var o results
			b, err := os.ReadFile(*mergeCluster)
			if err == nil {
				err = json.Unmarshal(b, &o)
			}
			if err != nil || o.Cluster == nil {
				logf("merge-cluster: %v (or no cluster part in it)", err)
				return 1
			}
			r.ClusterMore = append(r.ClusterMore, clusterExtra{Started: o.Started, Load: o.LoadBefore + " → " + o.LoadAfter, Result: *o.Cluster})
			b, _ = json.MarshalIndent(&r, "", "  ")
			_ = os.WriteFile(resPath, b, 0o644)
		}
		return writeReport(&r, *out, logf)
	}

	r := &results{Started: time.Now(), Scale: *scale, Runs: *runs, SlowRuns: min(*slowRuns, *runs), BaseRuns: min(*baseRuns, *runs),
		Machine: machineFacts(repo, *work), LoadBefore: loadavg(), Commands: map[string]string{}, Parts: *parts}
	stopLoad := sampleLoad(&r.LoadSamples)
	if err := os.MkdirAll(*work, 0o755); err != nil {
		logf("%v", err)
		return 1
	}
	has := func(p string) bool { return strings.Contains(","+*parts+",", ","+p+",") }
	status := 0

	if has("data") {
		if err := runData(r, repo, *work, *only, logf); err != nil {
			logf("data path: %v", err)
			status = 1
		}
	}
	if has("webhook") {
		hb := runHandlerBench(repo, logf)
		r.Handler = &hb
		var rates []int
		for _, s := range strings.Split(*loadRate, ",") {
			var n int
			if _, err := fmt.Sscan(s, &n); err == nil && n > 0 {
				rates = append(rates, n)
			}
		}
		wl := runWebhookLoad(repo, *work, rates, *loadSecs, 32, logf)
		r.Load = &wl
		r.Commands["webhook load"] = fmt.Sprintf("built `go build -o .work/bench/bin/oras-cache-webhook ./webhook/cmd/oras-cache-webhook`, run as `oras-cache-webhook --config .work/bench/webhook/config.yaml` (TLS, generated CA, 127.0.0.1); 32 clients (one keep-alive TLS connection each, handshaken before the clock starts), %s req/s for %.0f s each; request *i* due at start + *i*/rate", *loadRate, *loadSecs)
		if wl.Error != "" {
			logf("webhook load: %s", wl.Error)
		}
	}
	if has("cluster") {
		ct := time.Now()
		cr := runCluster(repo, *work, logf)
		r.Cluster = &cr
		r.ClusterSecs = time.Since(ct).Seconds()
	}
	stopLoad()
	r.LoadAfter = loadavg()
	r.Finished = time.Now()
	start := r.Started
	if *t0 > 0 {
		start = time.Unix(*t0, 0)
	}
	r.TotalSecs = r.Finished.Sub(start).Seconds()
	b, _ := json.MarshalIndent(r, "", "  ")
	_ = os.WriteFile(resPath, b, 0o644)
	if writeReport(r, *out, logf) != 0 {
		status = 1
	}
	return status
}

func runData(r *results, repo, work, only string, logf func(string, ...any)) error {
	keys := strings.Split(only, ",")
	data, err := prepareData(work, r.Scale, logf)
	if err != nil {
		return err
	}
	r.Datasets = data
	byKey := map[string]*dataset{}
	for _, d := range data {
		for _, k := range keys {
			if k == d.Key {
				byKey[d.Key] = d
			}
		}
	}
	for _, k := range keys {
		if k == "e" && byKey["b"] != nil {
			byKey["e"] = byKey["b"]
		}
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	orasBin, err := tool(repo, "oras")
	if err != nil {
		return err
	}
	regBin, err := tool(repo, "registry")
	if err != nil {
		return err
	}
	reg, err := startRegistry(regBin, filepath.Join(work, "registry"))
	if err != nil {
		return err
	}
	defer func() {
		reg.Close()
		_ = os.RemoveAll(reg.Root) // the blobs take several GiB
	}()
	proxy, err := startProxy(reg.Host)
	if err != nil {
		return err
	}
	defer proxy.Close()
	logf("registry %s (storage %s), counting proxy %s", reg.Host, reg.Root, proxy.Addr)
	b := &dataBench{work: work, self: self, oras: orasBin, proxy: proxy, data: byKey, runs: r.Runs, slowRuns: r.SlowRuns,
		baseRuns: r.BaseRuns, series: map[string]*series{}, logf: logf,
		tmp: filepath.Join(work, "tmp"), home: filepath.Join(work, "home")}
	if p, err := exec.LookPath("time"); err == nil && strings.Contains(sh("", p, "--version"), "GNU") {
		b.timeBin = p
	} else if _, err := os.Stat("/usr/bin/time"); err == nil {
		b.timeBin = "/usr/bin/time"
	} else {
		logf("GNU time not found (Debian package `time`): peak RSS comes from Go's rusage of the child, which includes this process's RSS")
		r.Machine["rss"] = "Go rusage of the child (includes the bench process's RSS: no GNU time)"
	}
	if b.timeBin != "" {
		r.Machine["rss"] = "GNU time -f %M (ru_maxrss of the measured process)"
	}
	var order []string
	for _, k := range []string{"a", "b", "c", "d"} {
		if byKey[k] != nil {
			order = append(order, k)
		}
	}
	err = b.Run(order)
	for _, k := range b.order {
		r.Series = append(r.Series, b.series[k])
	}
	_ = os.RemoveAll(b.tmp)
	r.Commands["ours push"] = "(cd .work/bench/data/<k> && bench worker push -registry 127.0.0.1:<proxy> -ref bench/ours-<k>-r<round>:v1 <title>) — `artifact.NewClient(transfer.Default() with Registry=proxy).Push(ctx, ref, []string{title}, PushOptions{})`, GOMEMLIMIT as the sidecar (40 MiB soft)"
	r.Commands["oras push"] = "(cd .work/bench/data/<k> && oras push --plain-http 127.0.0.1:<proxy>/bench/oras-<k>-r<round>:v1 <title>)"
	r.Commands["ours pull"] = "bench worker pull -registry 127.0.0.1:<proxy> -ref bench/ours-<k>-r<round>:v1 .work/bench/tmp/pull-ours"
	r.Commands["oras pull"] = "oras pull --plain-http -o .work/bench/tmp/pull-oras 127.0.0.1:<proxy>/bench/ours-<k>-r<round>:v1"
	r.Commands["re-push (e)"] = "the same push command of (b) again, right after it, to the same reference (repository and tag) — the registry already has everything"
	r.Commands["tar"] = "(cd .work/bench/data/<k> && tar -cf .work/bench/tmp/baseline.tar <title>)"
	r.Commands["cp"] = "(cd .work/bench/data/<k> && cp -r <title> .work/bench/tmp/baseline-cp)"
	return err
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

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
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

func sh(dir, name string, args ...string) string {
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "?"
	}
	return strings.TrimSpace(string(out))
}

func machineFacts(repo, work string) map[string]string {
	m := map[string]string{}
	m["cores"] = fmt.Sprint(runtime.NumCPU())
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "model name") {
				m["cpu"] = strings.TrimSpace(strings.SplitN(l, ":", 2)[1])
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "MemTotal:") {
				var kb int64
				fmt.Sscan(strings.TrimSpace(strings.TrimPrefix(l, "MemTotal:")), &kb)
				m["memory"] = fmt.Sprintf("%.1f GiB", float64(kb)/(1<<20))
			}
		}
	}
	_ = os.MkdirAll(work, 0o755)
	m["disk"] = lastLines(sh(work, "df", "-hT", "."), 1)
	if dev := strings.Fields(m["disk"]); len(dev) > 0 {
		name := filepath.Base(dev[0])
		rot := sh("", "cat", "/sys/block/"+name+"/queue/rotational")
		m["disk"] += fmt.Sprintf(" (rotational=%s)", rot)
	}
	m["kernel"] = sh("", "uname", "-srm")
	m["go"] = runtime.Version()
	m["oras"] = "?"
	if p, err := tool(repo, "oras"); err == nil {
		m["oras"] = strings.ReplaceAll(lastLines(sh("", p, "version"), 3), "\n", "; ")
	}
	if p, err := tool(repo, "registry"); err == nil {
		m["registry"] = sh("", p, "--version")
	}
	m["tar"] = strings.SplitN(sh("", "tar", "--version"), "\n", 2)[0]
	m["cp"] = strings.SplitN(sh("", "cp", "--version"), "\n", 2)[0]
	m["commit"] = sh(repo, "git", "rev-parse", "--short", "HEAD")
	if st := sh(repo, "git", "status", "--porcelain", "--", "sidecar", "ci/bench"); st != "" && st != "?" {
		m["commit"] += " (with uncommitted changes in sidecar/ or ci/bench/)"
	}
	return m
}
