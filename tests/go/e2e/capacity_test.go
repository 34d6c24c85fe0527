//go:build e2e

package e2e

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
)

// usage reads the guard's numbers through the Service (the port-forward).
type usage struct {
	Used, Bound, Free, Volume int64
	Tags, RejectedWrites      int64
}

func (r *registry) usage(t testing.TB) usage {
	t.Helper()
	var u usage
	var err error
	for i := 0; i < 5; i++ {
		var resp *http.Response
		resp, err = http.Get("http://" + r.Host + "/-/oras-cache/usage")
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err = json.Unmarshal(b, &u); err == nil {
				return u
			}
		}
		time.Sleep(time.Second)
	}
	t.Fatalf("reading the guard's usage: %v", err)
	return u
}

func registryPod(t testing.TB, ns string) corev1.Pod {
	t.Helper()
	pods, err := client.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{LabelSelector: "app.kubernetes.io/component=registry"})
	if err != nil || len(pods.Items) != 1 {
		t.Fatalf("registry pods: %v (%d)", err, len(pods.Items))
	}
	return pods.Items[0]
}

// registryUnharmed fails when the registry pod was replaced, restarted or evicted since `before`.
func registryUnharmed(t testing.TB, ns string, before corev1.Pod) {
	t.Helper()
	now := registryPod(t, ns)
	if now.UID != before.UID {
		t.Fatalf("the registry pod was replaced (%s → %s): the cache was lost", before.Name, now.Name)
	}
	for _, cs := range now.Status.ContainerStatuses {
		if cs.RestartCount != 0 {
			t.Fatalf("registry container %s restarted %d times", cs.Name, cs.RestartCount)
		}
	}
	ev, _ := client.CoreV1().Events(ns).List(context.Background(), metav1.ListOptions{})
	for _, e := range ev.Items {
		if e.Reason == "Evicted" || strings.Contains(e.Message, "exceeds the limit") {
			t.Fatalf("eviction: %s %s", e.Reason, e.Message)
		}
	}
}

// randomOutputJob writes n random bytes and pushes them to ref.
func randomOutputJob(name, ref string, mib int) *batchv1.Job {
	return job(name, busybox, []string{"sh", "-c", fmt.Sprintf("head -c %d /dev/urandom > /tmp/out.bin", mib<<20)},
		map[string]string{"output-uri": ref, "output-path": "/tmp/out.bin"})
}

// TestCapacityFill is scenario 1 of issue 10: with a small bound, a push that fits lands, the
// next one fails its Job at once with "cache full", the first stays pullable and the registry pod
// is never evicted or restarted; `helm upgrade` then raises the bound in the same pod.
func TestCapacityFill(t *testing.T) {
	ns := newNamespace(t, "e2e-cap", true)
	helmInstall(t, ns, "--set", "registry.emptyDirSizeLimit=64Mi", "--set", "registry.capacity.bound=40Mi")
	reg := portForwardRegistry(t, ns)
	before := registryPod(t, ns)
	if u := reg.usage(t); u.Bound != 40<<20 || u.Volume != 64<<20 {
		t.Fatalf("guard usage %+v, want bound 40Mi of a 64Mi volume", u)
	}

	createJob(t, ns, randomOutputJob("fill-a", "fill/a:v1", 8))
	if !waitJob(t, ns, "fill-a", 3*time.Minute) {
		t.Fatal("push A (8 MiB of 40 MiB) failed")
	}
	a := pushMessage(t, ns, jobPods(t, ns, "fill-a")[0].Name)

	createJob(t, ns, randomOutputJob("fill-b", "fill/b:v1", 40))
	if waitJob(t, ns, "fill-b", 3*time.Minute) {
		t.Fatal("push B (40 MiB more) completed past the 40 MiB bound")
	}
	pod := jobPods(t, ns, "fill-b")[0]
	msg := terminated(t, ns, pod.Name, "oras-cache-push")
	var res struct{ Error string }
	_ = json.Unmarshal([]byte(msg.Message), &res)
	if !strings.HasPrefix(res.Error, "cache full: ") || !strings.Contains(res.Error, " of 40.0MiB used") ||
		!strings.Contains(res.Error, "registry.capacity.bound") || !strings.Contains(res.Error, "retention") {
		t.Fatalf("push B's termination message: %s", msg.Message)
	}
	app := terminated(t, ns, pod.Name, "app")
	j, _ := client.BatchV1().Jobs(ns).Get(context.Background(), "fill-b", metav1.GetOptions{})
	for _, c := range j.Status.Conditions {
		if c.Type == batchv1.JobFailed {
			// The push starts when the app has written its output.
			t.Logf("MEASURE scenario 1: push B started %s (app finished), push container ended %s, Job failed %s: %.1fs from push start to Job failure",
				app.FinishedAt.Format(time.RFC3339), msg.FinishedAt.Format(time.RFC3339), c.LastTransitionTime.Format(time.RFC3339),
				c.LastTransitionTime.Sub(app.FinishedAt.Time).Seconds())
		}
	}
	if got := readFile(t, reg.pull(t, "fill/a:v1")+"/out.bin"); len(got) != 8<<20 {
		t.Fatalf("A after the refusal: %d bytes", len(got))
	}
	if reg.exists(t, "fill/b:v1") {
		t.Fatal("B is in the cache")
	}
	if u := reg.usage(t); u.RejectedWrites < 1 || u.Used > u.Bound {
		t.Fatalf("usage after the refusal: %+v", u)
	}
	registryUnharmed(t, ns, before)
	// helm test says how full the cache is.
	out := mustRun(t, "helm", "test", release, "-n", ns, "--logs")
	if !strings.Contains(out, "cache usage: ") || !strings.Contains(out, " of 40.0MiB used (") || strings.Contains(out, " 0 writes refused as full") {
		t.Fatalf("helm test output lacks the cache usage:\n%s", out)
	}

	// helm upgrade raises the bound: the running guard picks it up, the cache stays.
	helmInstall(t, ns, "--set", "registry.emptyDirSizeLimit=64Mi", "--set", "registry.capacity.bound=56Mi")
	err := wait.PollUntilContextTimeout(context.Background(), 2*time.Second, 3*time.Minute, true, func(context.Context) (bool, error) {
		return reg.usage(t).Bound == 56<<20, nil
	})
	if err != nil {
		t.Fatalf("the guard never saw the upgraded bound: %+v", reg.usage(t))
	}
	registryUnharmed(t, ns, before)
	createJob(t, ns, randomOutputJob("fill-b2", "fill/b:v1", 40))
	if !waitJob(t, ns, "fill-b2", 3*time.Minute) {
		t.Fatal("push B after raising the bound failed")
	}
	if !reg.exists(t, "fill/a@"+a.Digest) {
		t.Fatal("A lost after the upgrade")
	}
	registryUnharmed(t, ns, before)
}

// metric reads one value of the guard's Prometheus metrics through the port-forward.
func (r *registry) metric(t testing.TB, name string) int64 {
	t.Helper()
	resp, err := http.Get("http://" + r.Host + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			var n int64
			fmt.Sscan(v, &n)
			return n
		}
	}
	t.Fatalf("metric %s not found:\n%s", name, b)
	return 0
}

// orasPushRandom pushes a random file of n MiB with the stock oras CLI.
func (r *registry) orasPushRandom(t testing.TB, ref string, mib int) {
	t.Helper()
	dir := t.TempDir()
	b := make([]byte, mib<<20)
	_, _ = rand.Read(b)
	if err := os.WriteFile(filepath.Join(dir, "data.bin"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("oras", append([]string{"push", r.Host + "/" + ref, "data.bin"}, r.orasArgs()...)...)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("oras push %s: %v\n%s", ref, err, out)
	}
}

// collectNow runs the retention CronJob on demand, as the README says, and returns its report.
func collectNow(t testing.TB, ns, name string) string {
	t.Helper()
	mustRun(t, "kubectl", "-n", ns, "create", "job", "--from=cronjob/"+release+"-retention", name)
	if !waitJob(t, ns, name, 5*time.Minute) {
		dumpNamespace(t, ns)
		t.Fatalf("collection job %s failed", name)
	}
	return mustRun(t, "kubectl", "-n", ns, "logs", "job/"+name)
}

// TestCapacityRetention is scenario 2 of issue 10: six tags, keepLast 3 → exactly the three
// newest stay, the freed bytes show in the metrics, and a 200 MiB push in flight during the
// collection completes and is pullable.
func TestCapacityRetention(t *testing.T) {
	ns := newNamespace(t, "e2e-ret", true)
	helmInstall(t, ns, "--set", "retention.keepLast=3")
	reg := portForwardRegistry(t, ns)
	before := registryPod(t, ns)
	for i := 1; i <= 6; i++ {
		reg.orasPushRandom(t, fmt.Sprintf("ret/app:v%d", i), 4)
	}
	// The same 200 MiB push twice: alone (baseline), then while a collection runs.
	big := func(name string) *batchv1.Job {
		return job(name, busybox, []string{"sh", "-c", "head -c 209715200 /dev/urandom > /tmp/big.bin"},
			map[string]string{"output-uri": "big/app:" + name, "output-path": "/tmp/big.bin"})
	}
	createJob(t, ns, big("baseline"))
	if !waitJob(t, ns, "baseline", 5*time.Minute) {
		t.Fatal("baseline 200 MiB push failed")
	}
	baseline := pushMessage(t, ns, jobPods(t, ns, "baseline")[0].Name)

	createJob(t, ns, big("inflight"))
	// The push starts as the app ends: start the collection then.
	err := wait.PollUntilContextTimeout(context.Background(), 200*time.Millisecond, 3*time.Minute, true, func(ctx context.Context) (bool, error) {
		pods := jobPods(t, ns, "inflight")
		if len(pods) == 0 {
			return false, nil
		}
		for _, cs := range pods[0].Status.ContainerStatuses {
			if cs.Name == "app" && cs.State.Terminated != nil {
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		t.Fatal("the 200 MiB app never finished")
	}
	report := collectNow(t, ns, "collect-now")
	if !waitJob(t, ns, "inflight", 5*time.Minute) {
		t.Fatal("the 200 MiB push in flight during the collection failed")
	}
	inflight := pushMessage(t, ns, jobPods(t, ns, "inflight")[0].Name)
	var rep struct {
		DeletedTags []string
		Reclaimed   int64
		ReadOnlyMs  int64
	}
	var line string
	for _, l := range strings.Split(report, "\n") {
		if strings.HasPrefix(l, `{"deletedTags"`) {
			line = l
		}
	}
	if err := json.Unmarshal([]byte(line), &rep); err != nil {
		t.Fatalf("collection report: %v\n%s", err, report)
	}
	if strings.Join(rep.DeletedTags, ",") != "ret/app:v1,ret/app:v2,ret/app:v3" {
		t.Fatalf("deleted tags %v, want v1-v3", rep.DeletedTags)
	}
	for i := 1; i <= 6; i++ {
		if got := reg.exists(t, fmt.Sprintf("ret/app:v%d", i)); got != (i > 3) {
			t.Fatalf("ret/app:v%d exists=%v after keepLast 3", i, got)
		}
	}
	reg.pull(t, "ret/app:v4")
	if got := reg.metric(t, "oras_cache_reclaimed_bytes_total"); got < 12<<20 || got != rep.Reclaimed {
		t.Fatalf("reclaimed bytes in the metrics: %d (report %d), want at least the three 4 MiB layers", got, rep.Reclaimed)
	}
	if fi, err := os.Stat(filepath.Join(reg.pull(t, "big/app:inflight"), "big.bin")); err != nil || fi.Size() != 200<<20 {
		t.Fatalf("the in-flight artifact: %v %v", fi, err)
	}
	t.Logf("MEASURE scenario 2: reclaimed %d bytes (%.1f MiB), read-only window %d ms; 200 MiB push %d ms alone, %d ms during the collection (extra %d ms)",
		rep.Reclaimed, float64(rep.Reclaimed)/(1<<20), rep.ReadOnlyMs, baseline.DurationMs, inflight.DurationMs, inflight.DurationMs-baseline.DurationMs)
	registryUnharmed(t, ns, before)
}

// TestCapacityPersistent is scenarios 3 and 4 of issue 10 with a small claim: the registry pod
// deleted during a collection loses nothing kept; a claim that fills fails the push as clearly as
// an emptyDir and keeps the rest.
func TestCapacityPersistent(t *testing.T) {
	ns := newNamespace(t, "e2e-pvc", true)
	values := []string{"--set", "registry.persistence.enabled=true", "--set", "registry.persistence.size=96Mi",
		"--set", "retention.keepLast=2"}
	if sc := os.Getenv("E2E_STORAGE_CLASS"); sc != "" {
		values = append(values, "--set", "registry.persistence.storageClass="+sc)
	}
	helmInstall(t, ns, values...)
	reg := portForwardRegistry(t, ns)
	for i := 1; i <= 4; i++ {
		reg.orasPushRandom(t, fmt.Sprintf("keep/app:v%d", i), 2)
	}
	reg.orasPushRandom(t, "other/app:v1", 2)

	parent := t // the port-forward must outlive the subtest that replaces it
	t.Run("restart-during-collection", func(t *testing.T) {
		old := registryPod(t, ns)
		mustRun(t, "kubectl", "-n", ns, "create", "job", "--from=cronjob/"+release+"-retention", "collect-restart")
		// Delete the registry pod as soon as the collection has reached it.
		_ = wait.PollUntilContextTimeout(context.Background(), 300*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
			out, _ := exec.Command("kubectl", "-n", ns, "logs", old.Name, "-c", "registry").CombinedOutput()
			// distribution's access log line of the first tag deletion
			return strings.Contains(string(out), `"DELETE /v2/`), nil
		})
		mustRun(t, "kubectl", "-n", ns, "delete", "pod", old.Name, "--wait=false")
		if !waitJob(t, ns, "collect-restart", 6*time.Minute) {
			dumpNamespace(t, ns)
			t.Fatal("the collection did not complete after the registry restarted")
		}
		mustRun(t, "kubectl", "-n", ns, "rollout", "status", "deployment/"+release+"-registry", "--timeout=180s")
		reg.stop()
		reg = portForwardRegistry(parent, ns)
		// Kept: the two newest tags of keep/app and the only one of other/app.
		for _, ref := range []string{"keep/app:v3", "keep/app:v4", "other/app:v1"} {
			reg.pull(t, ref)
		}
		for _, ref := range []string{"keep/app:v1", "keep/app:v2"} {
			if reg.exists(t, ref) {
				t.Fatalf("%s survived keepLast 2", ref)
			}
		}
	})

	t.Run("claim-full", func(t *testing.T) {
		before := registryPod(t, ns)
		u := reg.usage(t)
		if u.Volume != 96<<20 {
			t.Fatalf("guard usage %+v: the volume should be the claim's 96Mi", u)
		}
		createJob(t, ns, randomOutputJob("fill-claim", "fill/claim:v1", 90))
		if waitJob(t, ns, "fill-claim", 3*time.Minute) {
			t.Fatal("a 90 MiB push fit a 96Mi claim")
		}
		msg := terminated(t, ns, jobPods(t, ns, "fill-claim")[0].Name, "oras-cache-push")
		if !strings.Contains(msg.Message, `"error":"cache full: `) || !strings.Contains(msg.Message, "registry.persistence.size") {
			t.Fatalf("termination message: %s", msg.Message)
		}
		for _, ref := range []string{"keep/app:v3", "keep/app:v4", "other/app:v1"} {
			reg.pull(t, ref)
		}
		registryUnharmed(t, ns, before)
	})
}
