package main

// Per-step overhead of injection on the local cluster (optional, last; only when
// .work/cluster/kubeconfig exists and the API server answers, otherwise the report says why it
// was skipped): the same app as a Job with and without the oras-cache annotations, with no data,
// 100 MiB and 1 GiB of input and output. Wall time from `kubectl create` of the Job to its
// Complete condition (`kubectl wait`); the transfer time is what the sidecar itself reports (the
// init container's "pulled" durationMs and the push sidecar's termination message durationMs).
// overhead = injected − plain − transfer.

import (
	"bufio"
	"bytes"
	"context"
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

type clusterResult struct {
	stamp
	Image   string        `json:"image"`
	Reps    int           `json:"reps"` // runs of each case
	Skipped string        `json:"skipped,omitempty"`
	Failed  string        `json:"failed,omitempty"` // a run that broke off (cases measured so far are kept)
	Cases   []clusterCase `json:"cases,omitempty"`
}

// clusterCase is one size, its runs and their medians.
type clusterCase struct {
	Name     string       `json:"name"`
	Bytes    int64        `json:"bytes"` // of the input and of the output
	Runs     []clusterRun `json:"runs"`
	Plain    float64      `json:"medianPlainSecs"`
	Inject   float64      `json:"medianInjectSecs"`
	Transfer float64      `json:"medianTransferSecs"`
	Overhead float64      `json:"medianOverheadSecs"`
}

type clusterRun struct {
	Plain     float64 `json:"plainSecs"`
	Inject    float64 `json:"injectSecs"`
	Transfer  float64 `json:"transferSecs"`
	Note      string  `json:"note,omitempty"`
	Breakdown string  `json:"breakdown,omitempty"` // when each container of the injected pod ran
}

func (c *clusterCase) summarize() {
	var p, i, t, o []float64
	for _, r := range c.Runs {
		p, i, t, o = append(p, r.Plain), append(i, r.Inject), append(t, r.Transfer), append(o, r.Inject-r.Plain-r.Transfer)
	}
	c.Plain, c.Inject, c.Transfer, c.Overhead = median(p), median(i), median(t), median(o)
}

type kube struct{ kubectl, helm, kubeconfig string }

func (k *kube) run(stdin []byte, name string, args ...string) (string, error) {
	return command("", []string{"KUBECONFIG=" + k.kubeconfig}, stdin, map[string]string{"helm": k.helm, "kubectl": k.kubectl}[name], args...)
}

func runCluster(repo string, reps int) *clusterResult {
	res := &clusterResult{Image: busyboxImage, Reps: reps}
	k := &kube{kubeconfig: filepath.Join(repo, ".work", "cluster", "kubeconfig")}
	k.kubectl, _ = tool(repo, "kubectl")
	k.helm, _ = tool(repo, "helm")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	digests, _ := os.ReadFile(filepath.Join(repo, ".work", "images", "digests.txt"))
	if _, err := os.Stat(k.kubeconfig); err != nil {
		res.Skipped = "no .work/cluster/kubeconfig (the local cluster is not up: `make up`)"
	} else if k.kubectl == "" || k.helm == "" {
		res.Skipped = "kubectl or helm missing (`make tools`)"
	} else if out, err := exec.CommandContext(ctx, k.kubectl, "--kubeconfig", k.kubeconfig, "get", "--raw", "/readyz").CombinedOutput(); err != nil || strings.TrimSpace(string(out)) != "ok" {
		res.Skipped = "the local cluster does not answer (`kubectl get --raw /readyz`: " + strings.TrimSpace(lastLines(string(out), 1)) + ")"
	} else if !bytes.Contains(digests, []byte("oras-cache-sidecar")) || !bytes.Contains(digests, []byte(busyboxImage)) {
		res.Skipped = "the cluster answers but the images are not built and imported (`make images`)"
	}
	if res.Skipped != "" {
		logf("cluster: skipped: %s", res.Skipped)
		return res
	}
	if err := k.runCases(res, repo); err != nil {
		res.Failed = err.Error()[:min(len(err.Error()), 600)]
		logf("cluster: %v", err)
	}
	return res
}

func (k *kube) runCases(res *clusterResult, repo string) error {
	_, _ = k.run(nil, "kubectl", "delete", "namespace", benchNS, "--ignore-not-found", "--wait", "--timeout=2m")
	if _, err := k.run(nil, "kubectl", "create", "namespace", benchNS); err != nil {
		return err
	}
	defer func() {
		_, _ = k.run(nil, "helm", "uninstall", benchRelease, "-n", benchNS, "--wait", "--timeout", "2m")
		_, _ = k.run(nil, "kubectl", "delete", "namespace", benchNS, "--wait=false")
	}()
	logf("cluster: helm install %s in %s", benchRelease, benchNS)
	chart := filepath.Join(repo, "charts", "oras-cache")
	if _, err := k.run(nil, "helm", "upgrade", "--install", benchRelease, chart, "-n", benchNS, "--wait", "--timeout", "4m",
		"-f", filepath.Join(chart, "ci", "e2e-local-values.yaml"), "--set", "registry.emptyDirSizeLimit=8Gi"); err != nil {
		return err
	}
	for _, sz := range []clusterCase{{Name: "no data"}, {Name: "100 MiB in, 100 MiB out", Bytes: 100 << 20}, {Name: "1 GiB in, 1 GiB out", Bytes: 1 << 30}} {
		tag := fmt.Sprint(sz.Bytes >> 20)
		if sz.Bytes > 0 {
			// the input: pushed by a Job of its own (untimed)
			if _, err := k.runJob("seed-"+tag, sz.Bytes, map[string]string{"output-uri": "bench/input-" + tag + ":v1", "output-path": "/tmp/out"}); err != nil {
				return err
			}
		}
		for rep := range res.Reps {
			if rep > 0 {
				tag = fmt.Sprintf("%d-%d", sz.Bytes>>20, rep)
			}
			ann := map[string]string{"output-uri": "bench/out-" + tag + ":v1", "output-path": "/tmp/out"}
			if sz.Bytes > 0 {
				ann["input-uri"] = fmt.Sprintf("bench/input-%d:v1", sz.Bytes>>20)
				ann["input-path"] = "/tmp/in"
			}
			var r clusterRun
			var err error
			if r.Plain, err = k.runJob("plain-"+tag, sz.Bytes, nil); err != nil {
				return err
			}
			if r.Inject, err = k.runJob("inject-"+tag, sz.Bytes, ann); err != nil {
				return err
			}
			if r.Transfer, r.Breakdown, err = k.inspect("inject-" + tag); err != nil {
				r.Note = err.Error()
			}
			logf("cluster: %s: plain %.1fs, injected %.1fs, transfer %.1fs → overhead %.1fs %s [%s]",
				sz.Name, r.Plain, r.Inject, r.Transfer, r.Inject-r.Plain-r.Transfer, r.Note, r.Breakdown)
			sz.Runs = append(sz.Runs, r)
		}
		sz.summarize()
		res.Cases = append(res.Cases, sz)
	}
	return nil
}

// runJob creates a Job whose app writes size random bytes to /tmp/out (with the oras-cache
// annotations ann, if any) and waits for it to complete; it returns the wall time.
func (k *kube) runJob(name string, size int64, ann map[string]string) (float64, error) {
	command := []string{"sh", "-c", fmt.Sprintf("mkdir -p /tmp/out && head -c %d /dev/urandom > /tmp/out/data.bin", size)}
	if size == 0 {
		command = []string{"sh", "-c", "mkdir -p /tmp/out && echo done > /tmp/out/result.txt"}
	}
	tmpl := map[string]any{"spec": map[string]any{"restartPolicy": "Never", "containers": []any{map[string]any{
		"name": "app", "image": busyboxImage, "imagePullPolicy": "Never", "command": command}}}}
	if len(ann) > 0 {
		a := map[string]string{inject.AnnotationCache: benchRelease}
		for key, v := range ann {
			a[inject.Prefix+key] = v
		}
		tmpl["metadata"] = map[string]any{"annotations": a}
	}
	job, _ := json.Marshal(map[string]any{"apiVersion": "batch/v1", "kind": "Job",
		"metadata": map[string]any{"name": name, "namespace": benchNS},
		"spec":     map[string]any{"backoffLimit": 0, "template": tmpl}})
	t0 := time.Now()
	if _, err := k.run(job, "kubectl", "create", "-f", "-"); err != nil {
		return 0, err
	}
	_, err := k.run(nil, "kubectl", "-n", benchNS, "wait", "--for=condition=complete", "job/"+name, "--timeout=10m")
	secs := time.Since(t0).Seconds()
	if err != nil {
		desc, _ := k.run(nil, "kubectl", "-n", benchNS, "describe", "pods", "-l", "job-name="+name)
		return secs, fmt.Errorf("%v\n%s", err, lastLines(desc, 25))
	}
	return secs, nil
}

// inspect reads what the sidecar reports — pull durations from the init container's log, the
// push duration from the push sidecar's termination message — and when each container of the
// Job's pod ran, in seconds after the pod's creation (the API's timestamps have 1 s resolution).
func (k *kube) inspect(job string) (transfer float64, breakdown string, err error) {
	type ctrStatus struct {
		Name  string
		State struct {
			Terminated *struct {
				StartedAt, FinishedAt time.Time
				Message               string
			}
		}
	}
	var pod struct {
		Metadata struct {
			Name              string
			CreationTimestamp time.Time
		}
		Status struct{ InitContainerStatuses, ContainerStatuses []ctrStatus }
	}
	var msg string
	for i := 0; i < 50 && msg == ""; i++ { // the Job condition can come before the last container status
		if i > 0 {
			time.Sleep(200 * time.Millisecond)
		}
		out, err := k.run(nil, "kubectl", "-n", benchNS, "get", "pods", "-l", "job-name="+job, "-o", "jsonpath={.items[0]}")
		if err != nil || json.Unmarshal([]byte(out), &pod) != nil {
			return 0, "", fmt.Errorf("the pod of job %s: %v %s", job, err, out)
		}
		for _, c := range pod.Status.ContainerStatuses {
			if c.Name == "oras-cache-push" && c.State.Terminated != nil {
				msg = strings.TrimSpace(c.State.Terminated.Message)
			}
		}
	}
	var parts []string
	for _, c := range append(pod.Status.InitContainerStatuses, pod.Status.ContainerStatuses...) {
		if t, t0 := c.State.Terminated, pod.Metadata.CreationTimestamp; t != nil {
			parts = append(parts, fmt.Sprintf("%s %.0f→%.0f s", c.Name, t.StartedAt.Sub(t0).Seconds(), t.FinishedAt.Sub(t0).Seconds()))
		}
	}
	breakdown = strings.Join(parts, ", ")
	logs, err := k.run(nil, "kubectl", "-n", benchNS, "logs", pod.Metadata.Name, "-c", "oras-cache-init")
	if err != nil {
		return 0, breakdown, err
	}
	for sc := bufio.NewScanner(strings.NewReader(logs)); sc.Scan(); {
		var l struct {
			Msg        string
			DurationMs int64
		}
		if json.Unmarshal(sc.Bytes(), &l) == nil && l.Msg == "pulled" {
			transfer += float64(l.DurationMs) / 1000
		}
	}
	var pr contract.Termination
	switch err := json.Unmarshal([]byte(msg), &pr); {
	case err != nil:
		return transfer, breakdown, fmt.Errorf("push termination message %q: %v", msg, err)
	case pr.Error != "":
		return transfer, breakdown, fmt.Errorf("push failed: %s", pr.Error)
	case pr.PushResult == nil:
		return transfer, breakdown, fmt.Errorf("push termination message %q reports no push", msg)
	}
	return transfer + float64(pr.DurationMs)/1000, breakdown, nil
}
