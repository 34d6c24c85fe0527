package main

// Per-step overhead of injection on the local cluster: the same app as a Job with and without the
// oras-cache annotations, with no data, 100 MiB and 1 GiB of input and output. Wall time from
// `kubectl create` of the Job to its Complete condition (`kubectl wait`); the transfer time is
// what the sidecar itself reports (the init container's "pulled" durationMs and the push
// sidecar's termination message durationMs). overhead = injected − plain − transfer.

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/converged-computing/oras-cache/sidecar/contract"
	"github.com/converged-computing/oras-cache/webhook/inject"
)

const (
	benchNS      = "oras-cache-bench"
	benchRelease = "bench"
	busyboxImage = "localhost/oras-cache-test/busybox:1"
)

type kube struct {
	kubectl, helm, kubeconfig string
	logf                      func(string, ...any)
}

func (k *kube) run(stdin []byte, name string, args ...string) (string, error) {
	bin := k.kubectl
	if name == "helm" {
		bin = k.helm
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+k.kubeconfig)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, lastLines(string(out), 5))
	}
	return string(out), nil
}

func appCommand(size int64) []string {
	if size == 0 {
		return []string{"sh", "-c", "mkdir -p /tmp/out && echo done > /tmp/out/result.txt"}
	}
	return []string{"sh", "-c", fmt.Sprintf("mkdir -p /tmp/out && head -c %d /dev/urandom > /tmp/out/data.bin", size)}
}

func jobJSON(name string, command []string, ann map[string]string) []byte {
	pod := map[string]any{
		"restartPolicy": "Never",
		"containers": []any{map[string]any{
			"name": "app", "image": busyboxImage, "imagePullPolicy": "Never", "command": command,
		}},
	}
	tmpl := map[string]any{"spec": pod}
	if len(ann) > 0 {
		a := map[string]string{inject.AnnotationCache: benchRelease}
		for k, v := range ann {
			a[inject.Prefix+k] = v
		}
		tmpl["metadata"] = map[string]any{"annotations": a}
	}
	j := map[string]any{
		"apiVersion": "batch/v1", "kind": "Job",
		"metadata": map[string]any{"name": name, "namespace": benchNS},
		"spec":     map[string]any{"backoffLimit": 0, "template": tmpl},
	}
	b, _ := json.Marshal(j)
	return b
}

// runJob creates the Job and waits for it to complete; it returns the wall time.
func (k *kube) runJob(name string, command []string, ann map[string]string, timeout time.Duration) (float64, error) {
	t0 := time.Now()
	if _, err := k.run(jobJSON(name, command, ann), "kubectl", "create", "-f", "-"); err != nil {
		return 0, err
	}
	_, err := k.run(nil, "kubectl", "-n", benchNS, "wait", "--for=condition=complete", "job/"+name, "--timeout="+timeout.String())
	secs := time.Since(t0).Seconds()
	if err != nil {
		desc, _ := k.run(nil, "kubectl", "-n", benchNS, "describe", "pods", "-l", "job-name="+name)
		return secs, fmt.Errorf("%v\n%s", err, lastLines(desc, 25))
	}
	return secs, nil
}

// transferSecs reads what the sidecar reports: pull durations from the init container's log,
// the push duration from the push sidecar's termination message.
func (k *kube) transferSecs(job string) (float64, error) {
	pod, err := k.run(nil, "kubectl", "-n", benchNS, "get", "pods", "-l", "job-name="+job, "-o", "jsonpath={.items[0].metadata.name}")
	if err != nil {
		return 0, err
	}
	pod = strings.TrimSpace(pod)
	total := 0.0
	logs, err := k.run(nil, "kubectl", "-n", benchNS, "logs", pod, "-c", "oras-cache-init")
	if err != nil {
		return 0, err
	}
	sc := bufio.NewScanner(strings.NewReader(logs))
	for sc.Scan() {
		var l struct {
			Msg        string `json:"msg"`
			DurationMs int64  `json:"durationMs"`
		}
		if json.Unmarshal(sc.Bytes(), &l) == nil && l.Msg == "pulled" {
			total += float64(l.DurationMs) / 1000
		}
	}
	var msg string
	for i := 0; i < 50; i++ { // the Job condition can come before the last container status
		msg, _ = k.run(nil, "kubectl", "-n", benchNS, "get", "pod", pod, "-o",
			`jsonpath={.status.containerStatuses[?(@.name=="oras-cache-push")].state.terminated.message}`)
		if strings.TrimSpace(msg) != "" {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	var pr contract.Termination
	if err := json.Unmarshal([]byte(msg), &pr); err != nil {
		return total, fmt.Errorf("push termination message %q: %v", msg, err)
	}
	if pr.Error != "" {
		return total, fmt.Errorf("push failed: %s", pr.Error)
	}
	if pr.PushResult == nil {
		return total, fmt.Errorf("push termination message %q reports no push", msg)
	}
	return total + float64(pr.DurationMs)/1000, nil
}

func runClusterCases(repo, work, kubeconfig string, logf func(string, ...any)) clusterResult {
	var res clusterResult
	digests, _ := os.ReadFile(filepath.Join(repo, ".work", "images", "digests.txt"))
	if !bytes.Contains(digests, []byte("oras-cache-sidecar")) || !bytes.Contains(digests, []byte(busyboxImage)) {
		res.Skipped = "the cluster answers but the images are not built and imported (`make images`)"
		logf("cluster: skipped: %s", res.Skipped)
		return res
	}
	kubectl, err1 := tool(repo, "kubectl")
	helm, err2 := tool(repo, "helm")
	if err1 != nil || err2 != nil {
		res.Skipped = "kubectl or helm missing (`make tools`)"
		return res
	}
	k := &kube{kubectl: kubectl, helm: helm, kubeconfig: kubeconfig, logf: logf}
	fail := func(err error) clusterResult {
		res.Failed = trunc(err.Error(), 600)
		logf("cluster: %v", err)
		return res
	}
	_, _ = k.run(nil, "kubectl", "delete", "namespace", benchNS, "--ignore-not-found", "--wait", "--timeout=2m")
	if _, err := k.run(nil, "kubectl", "create", "namespace", benchNS); err != nil {
		return fail(err)
	}
	defer func() {
		_, _ = k.run(nil, "helm", "uninstall", benchRelease, "-n", benchNS, "--wait", "--timeout", "2m")
		_, _ = k.run(nil, "kubectl", "delete", "namespace", benchNS, "--wait=false")
	}()
	logf("cluster: helm install %s in %s", benchRelease, benchNS)
	chart := filepath.Join(repo, "charts", "oras-cache")
	if _, err := k.run(nil, "helm", "upgrade", "--install", benchRelease, chart, "-n", benchNS, "--wait", "--timeout", "4m",
		"-f", filepath.Join(chart, "ci", "e2e-local-values.yaml"), "--set", "registry.emptyDirSizeLimit=8Gi"); err != nil {
		return fail(err)
	}
	sizes := []struct {
		name string
		n    int64
	}{{"no data", 0}, {"100 MiB in, 100 MiB out", 100 << 20}, {"1 GiB in, 1 GiB out", 1 << 30}}
	for _, sz := range sizes {
		c := clusterCase{Name: sz.name}
		tag := fmt.Sprintf("%d", sz.n>>20)
		ann := map[string]string{"output-uri": "bench/out-" + tag + ":v1", "output-path": "/tmp/out"}
		if sz.n > 0 {
			// the input: pushed by a Job of its own (untimed)
			if _, err := k.runJob("seed-"+tag, appCommand(sz.n), map[string]string{"output-uri": "bench/input-" + tag + ":v1", "output-path": "/tmp/out"}, 10*time.Minute); err != nil {
				return fail(err)
			}
			ann["input-uri"] = "bench/input-" + tag + ":v1"
			ann["input-path"] = "/tmp/in"
		}
		plain, err := k.runJob("plain-"+tag, appCommand(sz.n), nil, 10*time.Minute)
		if err != nil {
			return fail(err)
		}
		inj, err := k.runJob("inject-"+tag, appCommand(sz.n), ann, 10*time.Minute)
		if err != nil {
			return fail(err)
		}
		tr, err := k.transferSecs("inject-" + tag)
		if err != nil {
			c.Note = err.Error()
		}
		c.Breakdown = k.breakdown("inject-" + tag)
		c.PlainSecs, c.InjectSecs, c.TransferSec = plain, inj, tr
		logf("cluster: %s: plain %.1fs, injected %.1fs, transfer %.1fs → overhead %.1fs %s [%s]", sz.name, plain, inj, tr, inj-plain-tr, c.Note, c.Breakdown)
		res.Cases = append(res.Cases, c)
	}
	return res
}

// breakdown lists when each container of the Job's pod ran, in seconds after the pod's creation
// (the API's timestamps have a resolution of one second).
func (k *kube) breakdown(job string) string {
	out, err := k.run(nil, "kubectl", "-n", benchNS, "get", "pods", "-l", "job-name="+job, "-o", "json")
	if err != nil {
		return ""
	}
	var pl struct {
		Items []struct {
			Metadata struct {
				CreationTimestamp time.Time `json:"creationTimestamp"`
			} `json:"metadata"`
			Status struct {
				Init       []ctrStatus `json:"initContainerStatuses"`
				Containers []ctrStatus `json:"containerStatuses"`
			} `json:"status"`
		} `json:"items"`
	}
	if json.Unmarshal([]byte(out), &pl) != nil || len(pl.Items) == 0 {
		return ""
	}
	p := pl.Items[0]
	t0 := p.Metadata.CreationTimestamp
	var parts []string
	for _, c := range append(p.Status.Init, p.Status.Containers...) {
		if t := c.State.Terminated; t != nil {
			parts = append(parts, fmt.Sprintf("%s %.0f→%.0f s", c.Name, t.StartedAt.Sub(t0).Seconds(), t.FinishedAt.Sub(t0).Seconds()))
		}
	}
	return strings.Join(parts, ", ")
}

type ctrStatus struct {
	Name  string `json:"name"`
	State struct {
		Terminated *struct {
			StartedAt  time.Time `json:"startedAt"`
			FinishedAt time.Time `json:"finishedAt"`
		} `json:"terminated"`
	} `json:"state"`
}
