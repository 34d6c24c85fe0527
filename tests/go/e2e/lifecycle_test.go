//go:build e2e

package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
)

// TestLifecycle covers the registry restart during a push (with persistence), helm test,
// helm upgrade and helm uninstall.
func TestLifecycle(t *testing.T) {
	ns := newNamespace(t, "e2e-life", true)
	// The claim uses the cluster's default StorageClass (the local cluster has one, `local`);
	// E2E_STORAGE_CLASS picks another.
	values := []string{"--set", "registry.persistence.enabled=true", "--set", "registry.persistence.size=2Gi",
		"--set", "registry.persistence.keepOnUninstall=true"}
	if sc := os.Getenv("E2E_STORAGE_CLASS"); sc != "" {
		values = append(values, "--set", "registry.persistence.storageClass="+sc)
	}
	helmInstall(t, ns, values...)
	reg := portForwardRegistry(t, ns)

	// An artifact from before the restart, which must survive it.
	createJob(t, ns, job("before", busybox, []string{"sh", "-c", "echo kept > /tmp/kept.txt"},
		map[string]string{"output-uri": "life/kept:v1", "output-path": "/tmp/kept.txt"}))
	if !waitJob(t, ns, "before", 3*time.Minute) {
		t.Fatal("job before failed")
	}

	t.Run("registry-restart-during-push", func(t *testing.T) {
		ctx := context.Background()
		// 400 MiB of random data: a push long enough to be interrupted.
		createJob(t, ns, job("big", busybox,
			[]string{"sh", "-c", "mkdir -p /tmp/big && head -c 400m /dev/urandom > /tmp/big/blob && md5sum /tmp/big/blob | cut -d' ' -f1 > /tmp/big/blob.md5"},
			map[string]string{"output-uri": "life/big:v1", "output-path": "/tmp/big"}))
		// Wait until the app has ended and the push sidecar is at work, then delete the registry pod.
		var pod string
		err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 3*time.Minute, true, func(ctx context.Context) (bool, error) {
			pods := jobPods(t, ns, "big")
			if len(pods) == 0 {
				return false, nil
			}
			pod = pods[0].Name
			for _, cs := range pods[0].Status.ContainerStatuses {
				if cs.Name == "app" && cs.State.Terminated != nil {
					return true, nil
				}
			}
			return false, nil
		})
		if err != nil {
			t.Fatal("the big job's app never finished")
		}
		time.Sleep(500 * time.Millisecond)
		mustRun(t, "kubectl", "-n", ns, "delete", "pod", "-l", "app.kubernetes.io/component=registry", "--wait=false")
		t.Logf("registry pod deleted while %s was pushing", pod)
		if !waitJob(t, ns, "big", 6*time.Minute) {
			t.Fatal("the push did not complete after the registry restart")
		}
		msg := pushMessage(t, ns, pod)
		t.Logf("pushed after restart: %+v", msg)
		// The scenario proves something only if the restart did interrupt the push.
		if logs := mustRun(t, "kubectl", "-n", ns, "logs", pod, "-c", "oras-cache-push"); !strings.Contains(logs, `"msg":"retrying"`) {
			t.Fatal("the push never retried: the registry restart did not interrupt it")
		}
		mustRun(t, "kubectl", "-n", ns, "rollout", "status", "deployment/"+release+"-registry", "--timeout=120s")
		reg.stop()
		reg = portForwardRegistry(t, ns)
		dir := reg.pull(t, "life/big:v1")
		sum := strings.TrimSpace(readFile(t, filepath.Join(dir, "big", "blob.md5")))
		out := mustRun(t, "md5sum", filepath.Join(dir, "big", "blob"))
		if !strings.HasPrefix(out, sum) {
			t.Fatalf("pulled blob md5 %s, the app computed %s", out, sum)
		}
		if got := readFile(t, filepath.Join(reg.pull(t, "life/kept:v1"), "kept.txt")); got != "kept\n" {
			t.Fatalf("artifact from before the restart: %q", got)
		}
	})

	t.Run("helm-test", func(t *testing.T) {
		mustRun(t, "helm", "test", release, "-n", ns, "--timeout", "3m")
	})

	t.Run("helm-upgrade-keeps-webhook-and-artifacts", func(t *testing.T) {
		ctx := context.Background()
		before, err := client.CoreV1().Secrets(ns).Get(ctx, release+"-webhook-tls", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		auth, err := client.CoreV1().Secrets(ns).Get(ctx, release+"-auth", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		mustRun(t, "helm", append([]string{"upgrade", release, chartPath, "-n", ns, "--wait", "--timeout", "4m",
			"-f", filepath.Join(chartPath, "ci", "e2e-local-values.yaml"), "--set", "webhook.timeoutSeconds=7"}, values...)...)
		after, _ := client.CoreV1().Secrets(ns).Get(ctx, release+"-webhook-tls", metav1.GetOptions{})
		if string(after.Data["tls.crt"]) != string(before.Data["tls.crt"]) {
			t.Fatal("helm upgrade replaced the webhook certificate")
		}
		auth2, _ := client.CoreV1().Secrets(ns).Get(ctx, release+"-auth", metav1.GetOptions{})
		if string(auth2.Data["password"]) != string(auth.Data["password"]) {
			t.Fatal("helm upgrade changed the registry password")
		}
		createJob(t, ns, job("after-upgrade", busybox, []string{"sh", "-c", "cat /tmp/w/kept.txt > /tmp/w/again.txt"},
			map[string]string{"input-uri": "life/kept:v1", "input-path": "/tmp/w", "output-uri": "life/again:v1", "output-path": "/tmp/w/again.txt"}))
		if !waitJob(t, ns, "after-upgrade", 3*time.Minute) {
			t.Fatal("an annotated job failed after helm upgrade")
		}
	})

	t.Run("helm-uninstall", func(t *testing.T) {
		ctx := context.Background()
		reg.stop()
		mustRun(t, "helm", "uninstall", release, "-n", ns, "--wait", "--timeout", "3m")
		sel := metav1.ListOptions{LabelSelector: "app.kubernetes.io/instance=" + release}
		leftovers := []string{}
		if l, _ := client.AppsV1().Deployments(ns).List(ctx, sel); len(l.Items) > 0 {
			leftovers = append(leftovers, "deployments")
		}
		if l, _ := client.CoreV1().Services(ns).List(ctx, sel); len(l.Items) > 0 {
			leftovers = append(leftovers, "services")
		}
		if l, _ := client.CoreV1().Secrets(ns).List(ctx, sel); len(l.Items) > 0 {
			leftovers = append(leftovers, "secrets")
		}
		if l, _ := client.CoreV1().ConfigMaps(ns).List(ctx, sel); len(l.Items) > 0 {
			leftovers = append(leftovers, "configmaps")
		}
		// Cluster-scoped: other namespaces may hold releases of the same name.
		if l, _ := client.AdmissionregistrationV1().MutatingWebhookConfigurations().List(ctx, sel); l != nil {
			for _, w := range l.Items {
				if strings.HasPrefix(w.Name, ns+"-") {
					leftovers = append(leftovers, "mutatingwebhookconfiguration "+w.Name)
				}
			}
		}
		if len(leftovers) > 0 {
			t.Fatalf("helm uninstall left %v behind", leftovers)
		}
		pvcs, _ := client.CoreV1().PersistentVolumeClaims(ns).List(ctx, sel)
		if len(pvcs.Items) != 1 {
			t.Fatalf("persistence.keepOnUninstall: want the PVC kept, found %d", len(pvcs.Items))
		}
		// Annotated pods are no longer intercepted once the release is gone.
		p := job("x", busybox, []string{"true"}, map[string]string{"output-uri": "x:v1", "output-path": "/x"}).Spec.Template
		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "after-uninstall", Annotations: p.Annotations}, Spec: p.Spec}
		created, err := client.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{})
		if err != nil {
			t.Fatalf("pod creation after uninstall: %v", err)
		}
		if len(created.Spec.InitContainers) != 0 {
			t.Fatal("a pod was mutated after helm uninstall")
		}
	})
}
