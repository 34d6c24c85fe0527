//go:build e2e

package e2e

import (
	"context"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestWorkflow installs the chart once with default values (auth on) and runs the user-facing
// scenarios of issue 5 against it, in order.
func TestWorkflow(t *testing.T) {
	ns := newNamespace(t, "e2e-wf", true)
	// The cache itself serves the shell-less test image for the ENTRYPOINT lookup (plain HTTP).
	cacheHost := fmt.Sprintf("%s-registry.%s.svc.cluster.local:5000", release, ns)
	helmInstall(t, ns, "--set", "plainHTTPRegistries={"+cacheHost+"}")
	reg := portForwardRegistry(t, ns)
	if reg.Username == "" {
		t.Fatal("auth is on by default, but the auth Secret has no username")
	}

	t.Run("hello-world", func(t *testing.T) {
		createJob(t, ns, job("hello", busybox,
			[]string{"sh", "-c", "echo 'hello, cache' > /tmp/hello.txt"},
			map[string]string{"output-uri": "hello:v1", "output-path": "/tmp/hello.txt"}))
		if !waitJob(t, ns, "hello", 3*time.Minute) {
			dumpNamespace(t, ns)
			t.Fatal("hello job failed")
		}
		pod := jobPods(t, ns, "hello")[0]
		msg := pushMessage(t, ns, pod.Name)
		if !strings.HasPrefix(msg.Digest, "sha256:") || msg.Files != 1 {
			t.Fatalf("termination message %+v lacks the pushed digest", msg)
		}
		got := readFile(t, filepath.Join(reg.pull(t, "hello:v1"), "hello.txt"))
		if got != "hello, cache\n" {
			t.Fatalf("pulled hello.txt = %q", got)
		}
	})

	t.Run("dag-workflow", func(t *testing.T) {
		dir := filepath.Join(repoRoot, "examples", "dag")
		steps := [][]string{{"produce-greeting", "produce-numbers"}, {"combine"}, {"report"}}
		files := map[string]string{
			"produce-greeting": "01-produce-greeting.yaml", "produce-numbers": "01-produce-numbers.yaml",
			"combine": "02-combine.yaml", "report": "03-report.yaml",
		}
		for _, level := range steps {
			for _, name := range level {
				applyFile(t, ns, filepath.Join(dir, files[name]))
			}
			for _, name := range level {
				if !waitJob(t, ns, name, 3*time.Minute) {
					dumpNamespace(t, ns)
					t.Fatalf("step %s failed", name)
				}
				msg := pushMessage(t, ns, jobPods(t, ns, name)[0].Name)
				if !strings.HasPrefix(msg.Digest, "sha256:") {
					t.Fatalf("step %s: termination message %+v has no digest", name, msg)
				}
				t.Logf("step %s pushed %s %s (%d bytes, %d files, %d ms)", name, msg.Reference, msg.Digest, msg.Size, msg.Files, msg.DurationMs)
			}
		}
		got := readFile(t, filepath.Join(reg.pull(t, "dag/report:v1"), "report.txt"))
		want := "# oras-cache DAG report\nhello from step 1a\nodd sum: 9\neven sum: 12\nlines: 3\n"
		if got != want {
			t.Fatalf("report.txt:\n%s\nwant:\n%s", got, want)
		}
		// The directory artifact is a standard oras directory: stock oras pull unpacks it.
		numbers := reg.pull(t, "dag/numbers:v1")
		if v := readFile(t, filepath.Join(numbers, "numbers", "even", "4.txt")); v != "4\n" {
			t.Fatalf("numbers/even/4.txt = %q", v)
		}
	})

	t.Run("no-shell-no-command", func(t *testing.T) {
		// The image has one static binary, an ENTRYPOINT and no shell; the pod sets no command.
		// The webhook reads the ENTRYPOINT from the image config in a registry, with the pod's
		// imagePullSecrets: here the cache itself holds the image, and the node has it imported
		// under the same name (nothing is ever pulled from outside).
		image := cacheHost + "/apps/noshell:1"
		mustRun(t, "oras", "cp", "--from-oci-layout", filepath.Join(repoRoot, ".work", "images", "noshell")+":1",
			reg.Host+"/apps/noshell:1", "--to-plain-http", "--to-username", reg.Username, "--to-password", reg.Password)
		mustRun(t, "ctr", "--address", filepath.Join(repoRoot, ".work", "cluster", "containerd", "containerd.sock"),
			"-n", "k8s.io", "images", "tag", "--force", noshell, image)
		auth := base64.StdEncoding.EncodeToString([]byte(reg.Username + ":" + reg.Password))
		dockercfg := fmt.Sprintf(`{"auths":{%q:{"username":%q,"password":%q,"auth":%q}}}`, cacheHost, reg.Username, reg.Password, auth)
		_, err := client.CoreV1().Secrets(ns).Create(context.Background(), &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: "cache-pull"},
			Type:       corev1.SecretTypeDockerConfigJson,
			Data:       map[string][]byte{corev1.DockerConfigJsonKey: []byte(dockercfg)},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		j := job("noshell", image, nil, map[string]string{"output-uri": "noshell:v1", "output-path": "/data/noshell.txt"})
		j.Spec.Template.Spec.ImagePullSecrets = []corev1.LocalObjectReference{{Name: "cache-pull"}}
		j.Spec.Template.Spec.Containers[0].Env = []corev1.EnvVar{
			{Name: "NOSHELL_OUT", Value: "/data/noshell.txt"}, {Name: "NOSHELL_TEXT", Value: "ran without a shell"}}
		createJob(t, ns, j)
		if !waitJob(t, ns, "noshell", 3*time.Minute) {
			t.Fatal("the shell-less job failed")
		}
		pod := jobPods(t, ns, "noshell")[0]
		cmd := pod.Spec.Containers[0].Command
		if len(cmd) < 2 || cmd[len(cmd)-1] != "/noshell" || cmd[len(cmd)-2] != "--" {
			t.Fatalf("app command %q does not end with the image ENTRYPOINT after --", cmd)
		}
		if got := readFile(t, filepath.Join(reg.pull(t, "noshell:v1"), "noshell.txt")); got != "ran without a shell\n" {
			t.Fatalf("noshell.txt = %q", got)
		}
	})

	t.Run("exit-codes", func(t *testing.T) {
		cmd := []string{"sh", "-c", "echo partial > /tmp/out.txt; exit 3"}
		createJob(t, ns, job("fails", busybox, cmd, map[string]string{"output-uri": "fails:v1", "output-path": "/tmp/out.txt"}))
		createJob(t, ns, job("fails-pushed", busybox, cmd, map[string]string{
			"output-uri": "fails-pushed:v1", "output-path": "/tmp/out.txt", "push-on-failure": "true"}))
		for _, name := range []string{"fails", "fails-pushed"} {
			if waitJob(t, ns, name, 3*time.Minute) {
				t.Fatalf("job %s completed although its app exited 3", name)
			}
			if st := terminated(t, ns, jobPods(t, ns, name)[0].Name, "app"); st.ExitCode != 3 {
				t.Fatalf("job %s: app exit code %d, want 3", name, st.ExitCode)
			}
		}
		if reg.exists(t, "fails:v1") {
			t.Fatal("the output of a failed app was pushed without push-on-failure")
		}
		if !reg.exists(t, "fails-pushed:v1") {
			t.Fatal("push-on-failure: the output was not pushed")
		}
	})

	t.Run("oom-killed-app-does-not-hang", func(t *testing.T) {
		j := job("oom", busybox, []string{"sh", "-c", "echo started > /tmp/o.txt; head -c 600m /dev/zero | tail"},
			map[string]string{"output-uri": "oom:v1", "output-path": "/tmp/o.txt"})
		j.Spec.Template.Spec.Containers[0].Resources = corev1.ResourceRequirements{
			Limits: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("48Mi")},
		}
		start := time.Now()
		createJob(t, ns, j)
		if waitJob(t, ns, "oom", 3*time.Minute) {
			t.Fatal("the OOM-killed job completed")
		}
		pod := jobPods(t, ns, "oom")[0]
		st := terminated(t, ns, pod.Name, "app")
		if st.ExitCode != 137 {
			t.Fatalf("OOM-killed app: exit code %d (%s), want 137", st.ExitCode, st.Reason)
		}
		push := terminated(t, ns, pod.Name, "oras-cache-push")
		t.Logf("OOM: job failed after %.1fs; app exit %d (%s); push sidecar exit %d: %s",
			time.Since(start).Seconds(), st.ExitCode, st.Reason, push.ExitCode, push.Message)
		if reg.exists(t, "oom:v1") {
			t.Fatal("the output of an OOM-killed app was pushed")
		}
	})

	t.Run("indexed-job", func(t *testing.T) {
		three := int32(3)
		mode := batchv1.IndexedCompletion
		j := job("parts", busybox,
			[]string{"sh", "-c", "mkdir -p /tmp/parts && echo \"part $JOB_COMPLETION_INDEX\" > /tmp/parts/part-$JOB_COMPLETION_INDEX.txt"},
			map[string]string{
				"output-uri":  "parts:part-$(JOB_COMPLETION_INDEX)",
				"output-path": "/tmp/parts/part-$(JOB_COMPLETION_INDEX).txt",
			})
		j.Spec.Completions, j.Spec.Parallelism, j.Spec.CompletionMode = &three, &three, &mode
		createJob(t, ns, j)
		if !waitJob(t, ns, "parts", 3*time.Minute) {
			t.Fatal("indexed job failed")
		}
		gather := job("gather", busybox,
			[]string{"sh", "-c", "cd /tmp/gather && cat part-0.txt part-1.txt part-2.txt > all.txt"},
			map[string]string{
				"input-uri":   "parts:part-0,parts:part-1,parts:part-2",
				"input-path":  "/tmp/gather",
				"output-uri":  "parts:all",
				"output-path": "/tmp/gather/all.txt",
			})
		createJob(t, ns, gather)
		if !waitJob(t, ns, "gather", 3*time.Minute) {
			t.Fatal("gather job failed")
		}
		if got := readFile(t, filepath.Join(reg.pull(t, "parts:all"), "all.txt")); got != "part 0\npart 1\npart 2\n" {
			t.Fatalf("all.txt = %q", got)
		}
	})

	t.Run("bad-annotation-denied", func(t *testing.T) {
		pod := fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata:
  name: typo
  annotations:
    %[1]soras-cache: %[2]s
    %[1]souput-uri: results:v1
spec:
  restartPolicy: Never
  containers:
    - name: app
      image: %[3]s
      command: ["true"]
      securityContext:
        runAsNonRoot: true
        runAsUser: 1000
        allowPrivilegeEscalation: false
        capabilities: {drop: [ALL]}
        seccompProfile: {type: RuntimeDefault}
`, prefix, release, busybox)
		f := filepath.Join(t.TempDir(), "typo.yaml")
		if err := os.WriteFile(f, []byte(pod), 0o600); err != nil {
			t.Fatal(err)
		}
		out, err := run(t, "kubectl", "apply", "-n", ns, "-f", f)
		if err == nil {
			t.Fatalf("kubectl apply of a pod with a misspelt annotation succeeded:\n%s", out)
		}
		for _, want := range []string{"denied", "ouput-uri", "output-uri"} {
			if !strings.Contains(out, want) {
				t.Fatalf("denial does not mention %q:\n%s", want, out)
			}
		}
	})

	t.Run("scope", func(t *testing.T) {
		ctx := context.Background()
		plain := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "plain"},
			Spec: corev1.PodSpec{RestartPolicy: corev1.RestartPolicyNever, Containers: []corev1.Container{{
				Name: "app", Image: busybox, ImagePullPolicy: corev1.PullIfNotPresent, Command: []string{"true"},
				SecurityContext: appSecurity()}}},
		}
		created, err := client.CoreV1().Pods(ns).Create(ctx, plain.DeepCopy(), metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if len(created.Spec.Containers) != 1 || len(created.Spec.InitContainers) != 0 || len(created.Annotations) != 0 {
			t.Fatalf("an unannotated pod was mutated: %+v", created.Spec)
		}
		other := newNamespace(t, "e2e-other", false)
		annotated := plain.DeepCopy()
		annotated.Name = "annotated"
		annotated.Annotations = map[string]string{prefix + "oras-cache": release, prefix + "output-uri": "x:v1", prefix + "output-path": "/tmp/x"}
		created, err = client.CoreV1().Pods(other).Create(ctx, annotated.DeepCopy(), metav1.CreateOptions{})
		if err != nil {
			t.Fatalf("an annotated pod in a namespace without the cache was refused: %v", err)
		}
		if len(created.Spec.Containers) != 1 || len(created.Spec.InitContainers) != 0 {
			t.Fatal("the webhook mutated a pod in another namespace")
		}

		// With the webhook down, annotated pods are refused (never run without their sidecar),
		// unannotated ones are still created.
		scaleWebhook(t, ns, 0)
		defer scaleWebhook(t, ns, 2)
		annotated.Name = "annotated-down"
		_, err = client.CoreV1().Pods(ns).Create(ctx, annotated.DeepCopy(), metav1.CreateOptions{})
		if err == nil {
			t.Fatal("an annotated pod was admitted while the webhook was down")
		}
		t.Logf("with the webhook down, the annotated pod was refused: %v", err)
		plain.Name = "plain-down"
		if _, err := client.CoreV1().Pods(ns).Create(ctx, plain.DeepCopy(), metav1.CreateOptions{}); err != nil {
			t.Fatalf("an unannotated pod was refused while the webhook was down: %v", err)
		}
	})
}

func scaleWebhook(t *testing.T, ns string, replicas int32) {
	t.Helper()
	mustRun(t, "kubectl", "-n", ns, "scale", "deployment/"+release+"-webhook", fmt.Sprintf("--replicas=%d", replicas))
	if replicas == 0 {
		mustRun(t, "kubectl", "-n", ns, "wait", "--for=delete", "pod", "-l", "app.kubernetes.io/component=webhook", "--timeout=90s")
		return
	}
	mustRun(t, "kubectl", "-n", ns, "rollout", "status", "deployment/"+release+"-webhook", "--timeout=120s")
}
