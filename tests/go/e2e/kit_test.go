//go:build e2e

// Package e2e runs oras-cache on a real cluster: a real kube-apiserver calling the real webhook,
// a real kubelet and containerd running the injected containers, a real registry in the cluster,
// and the stock helm, kubectl and oras CLIs driving it the way users do (README, NOTES.txt).
//
// Run it with `make e2e` (ci/e2e.sh brings the local cluster up and imports the images), or
// against any cluster with KUBECONFIG set and the images loaded.
package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/yaml"

	"github.com/converged-computing/oras-cache/sidecar/contract"
	"github.com/converged-computing/oras-cache/webhook/inject"
)

const (
	prefix  = inject.Prefix
	release = "oras-cache"
	// busybox is the test image with a shell; noshell has only a static binary and an ENTRYPOINT.
	busybox = "localhost/oras-cache-test/busybox:1"
	noshell = "localhost/oras-cache-test/noshell:1"
)

var (
	repoRoot = func() string {
		_, f, _, _ := runtime.Caller(0)
		return filepath.Join(filepath.Dir(f), "..", "..", "..")
	}()
	chartPath = filepath.Join(repoRoot, "charts", "oras-cache")
	client    kubernetes.Interface
)

func TestMain(m *testing.M) {
	if os.Getenv("KUBECONFIG") == "" {
		fmt.Fprintln(os.Stderr, "e2e: KUBECONFIG is not set: run `make e2e`, which brings up the local cluster")
		os.Exit(1)
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", os.Getenv("KUBECONFIG"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		os.Exit(1)
	}
	cfg.QPS, cfg.Burst = 50, 100
	client = kubernetes.NewForConfigOrDie(cfg)
	os.Exit(m.Run())
}

// run executes a CLI (helm, kubectl, oras) and returns its combined output.
func run(t testing.TB, name string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(name, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	err := cmd.Run()
	t.Logf("$ %s %s (%.1fs)\n%s", name, strings.Join(args, " "), time.Since(start).Seconds(), indent(out.String()))
	return out.String(), err
}

func mustRun(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := run(t, name, args...)
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return out
}

func indent(s string) string {
	if len(s) > 4000 {
		s = s[:2000] + "\n…\n" + s[len(s)-2000:]
	}
	return "    " + strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n    ")
}

func randSuffix() string {
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// newNamespace creates a namespace that is deleted when the test ends (unless it failed and
// E2E_KEEP is set, to look around). A restricted namespace enforces Pod Security "restricted",
// so the API server itself checks the chart's pods and every mutated pod against it.
func newNamespace(t testing.TB, base string, restricted bool) string {
	t.Helper()
	name := base + "-" + randSuffix()
	ctx := context.Background()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if restricted {
		ns.Labels = map[string]string{"pod-security.kubernetes.io/enforce": "restricted"}
	}
	_, err := client.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			dumpNamespace(t, name)
			if os.Getenv("E2E_KEEP") != "" {
				return
			}
		}
		_ = client.CoreV1().Namespaces().Delete(context.Background(), name, metav1.DeleteOptions{})
	})
	return name
}

// helmInstall installs the chart the way the README says, plus the local image settings.
func helmInstall(t testing.TB, ns string, extra ...string) {
	t.Helper()
	args := append([]string{"upgrade", "--install", release, chartPath, "-n", ns, "--wait", "--timeout", "4m",
		"-f", filepath.Join(chartPath, "ci", "e2e-local-values.yaml")}, extra...)
	mustRun(t, "helm", args...)
	t.Cleanup(func() {
		if t.Failed() && os.Getenv("E2E_KEEP") != "" {
			return
		}
		_, _ = run(t, "helm", "uninstall", release, "-n", ns, "--wait", "--timeout", "2m")
	})
}

// appSecurity is a Pod Security "restricted" context with a user of its own (1000): the app
// runs as another uid than the injected containers (65532), as in real clusters.
func appSecurity() *corev1.SecurityContext {
	yes, no, uid := true, false, int64(1000)
	return &corev1.SecurityContext{
		RunAsNonRoot: &yes, RunAsUser: &uid, RunAsGroup: &uid, AllowPrivilegeEscalation: &no,
		Capabilities:   &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
		SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
	}
}

// job builds a one-container Job whose pod carries the given oras-cache annotations; its app
// runs as a non-root user under a restricted security context.
func job(name, image string, command []string, ann map[string]string) *batchv1.Job {
	annotations := map[string]string{prefix + "oras-cache": release}
	for k, v := range ann {
		annotations[prefix+k] = v
	}
	zero := int32(0)
	return &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: batchv1.JobSpec{
			BackoffLimit: &zero,
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Annotations: annotations},
				Spec: corev1.PodSpec{
					RestartPolicy: corev1.RestartPolicyNever,
					Containers: []corev1.Container{{
						Name: "app", Image: image, ImagePullPolicy: corev1.PullIfNotPresent, Command: command,
						SecurityContext: appSecurity(),
					}},
				},
			},
		},
	}
}

func createJob(t testing.TB, ns string, j *batchv1.Job) {
	t.Helper()
	if _, err := client.BatchV1().Jobs(ns).Create(context.Background(), j, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create job %s: %v", j.Name, err)
	}
}

// applyFile creates the objects of a YAML file with kubectl, as a user would.
func applyFile(t testing.TB, ns, path string) {
	t.Helper()
	mustRun(t, "kubectl", "apply", "-n", ns, "-f", path)
}

// waitJob waits until the Job completes or fails and returns whether it completed.
func waitJob(t testing.TB, ns, name string, timeout time.Duration) bool {
	t.Helper()
	var done, ok bool
	err := wait.PollUntilContextTimeout(context.Background(), 500*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		j, err := client.BatchV1().Jobs(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		for _, c := range j.Status.Conditions {
			if c.Status != corev1.ConditionTrue {
				continue
			}
			switch c.Type {
			case batchv1.JobComplete:
				done, ok = true, true
			case batchv1.JobFailed:
				done, ok = true, false
			}
		}
		return done, nil
	})
	if err != nil {
		dumpNamespace(t, ns)
		t.Fatalf("job %s/%s did not finish within %s", ns, name, timeout)
	}
	return ok
}

// jobPods returns the Job's pods.
func jobPods(t testing.TB, ns, name string) []corev1.Pod {
	t.Helper()
	pods, err := client.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{LabelSelector: "job-name=" + name})
	if err != nil {
		t.Fatal(err)
	}
	return pods.Items
}

// terminated returns the terminated state of a container of the pod, waiting for it briefly
// (the Job condition can come before the last container status update).
func terminated(t testing.TB, ns, pod, container string) *corev1.ContainerStateTerminated {
	t.Helper()
	var st *corev1.ContainerStateTerminated
	_ = wait.PollUntilContextTimeout(context.Background(), 300*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		p, err := client.CoreV1().Pods(ns).Get(ctx, pod, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		for _, cs := range append(p.Status.InitContainerStatuses, p.Status.ContainerStatuses...) {
			if cs.Name == container && cs.State.Terminated != nil {
				st = cs.State.Terminated
				return true, nil
			}
		}
		return false, nil
	})
	if st == nil {
		dumpNamespace(t, ns)
		t.Fatalf("container %s of pod %s/%s never terminated", container, ns, pod)
	}
	return st
}

// pushMessage reads the termination message of the push sidecar, which must report a push.
func pushMessage(t testing.TB, ns, pod string) contract.Termination {
	t.Helper()
	st := terminated(t, ns, pod, "oras-cache-push")
	var r contract.Termination
	if err := json.Unmarshal([]byte(st.Message), &r); err != nil {
		t.Fatalf("termination message of %s/oras-cache-push is not JSON: %v\n%s", pod, err, st.Message)
	}
	if r.PushResult == nil {
		t.Fatalf("termination message of %s/oras-cache-push reports no push: %s", pod, st.Message)
	}
	return r
}

// registry is a port-forward to the cache's Service, as NOTES.txt tells users to do.
type registry struct {
	Host, Username, Password string
	stop                     func()
}

func portForwardRegistry(t testing.TB, ns string) *registry {
	t.Helper()
	svc := release + "-registry"
	cmd := exec.Command("kubectl", "-n", ns, "port-forward", "svc/"+svc, ":5000", "--address", "127.0.0.1")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	stop := func() { _ = cmd.Process.Kill(); _, _ = cmd.Process.Wait() }
	portRe := regexp.MustCompile(`127\.0\.0\.1:(\d+) ->`)
	found := make(chan string, 1)
	go func() {
		s := bufio.NewScanner(stdout)
		for s.Scan() {
			if m := portRe.FindStringSubmatch(s.Text()); m != nil {
				select {
				case found <- m[1]:
				default:
				}
			}
		}
	}()
	var port string
	select {
	case port = <-found:
	case <-time.After(30 * time.Second):
		stop()
		t.Fatalf("kubectl port-forward svc/%s printed no port within 30s", svc)
	}
	r := &registry{Host: "127.0.0.1:" + port, stop: stop}
	sec, err := client.CoreV1().Secrets(ns).Get(context.Background(), release+"-auth", metav1.GetOptions{})
	if err == nil {
		r.Username, r.Password = string(sec.Data["username"]), string(sec.Data["password"])
	} else if !apierrors.IsNotFound(err) {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	return r
}

func (r *registry) orasArgs() []string {
	args := []string{"--plain-http"}
	if r.Username != "" {
		args = append(args, "-u", r.Username, "-p", r.Password)
	}
	return args
}

// pull fetches ref from the cache with the stock oras CLI into a new directory.
func (r *registry) pull(t testing.TB, ref string) string {
	t.Helper()
	dir := t.TempDir()
	var out string
	var err error
	// A fresh port-forward can drop its first connection; retry a few times.
	for i := 0; i < 5; i++ {
		out, err = run(t, "oras", append([]string{"pull", r.Host + "/" + ref, "-o", dir}, r.orasArgs()...)...)
		if err == nil {
			return dir
		}
		time.Sleep(time.Second)
	}
	t.Fatalf("oras pull %s: %v\n%s", ref, err, out)
	return ""
}

// exists tells whether ref resolves in the cache (oras resolve).
func (r *registry) exists(t testing.TB, ref string) bool {
	t.Helper()
	_, err := run(t, "oras", append([]string{"resolve", r.Host + "/" + ref}, r.orasArgs()...)...)
	return err == nil
}

func readFile(t testing.TB, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// dumpNamespace prints what a person would look at when a test fails.
func dumpNamespace(t testing.TB, ns string) {
	t.Helper()
	out, _ := exec.Command("kubectl", "-n", ns, "get", "all,events", "-o", "wide").CombinedOutput()
	t.Logf("--- kubectl get all,events -n %s\n%s", ns, indent(string(out)))
	pods, err := client.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		return
	}
	for _, p := range pods.Items {
		st, _ := yaml.Marshal(p.Status.ContainerStatuses)
		ist, _ := yaml.Marshal(p.Status.InitContainerStatuses)
		t.Logf("--- pod %s phase %s\ninit: %s\ncontainers: %s", p.Name, p.Status.Phase, indent(string(ist)), indent(string(st)))
		logs, _ := exec.Command("kubectl", "-n", ns, "logs", p.Name, "--all-containers", "--prefix", "--tail", "40").CombinedOutput()
		t.Logf("--- logs %s\n%s", p.Name, indent(string(logs)))
	}
}
