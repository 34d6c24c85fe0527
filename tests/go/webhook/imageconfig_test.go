package webhook

// ENTRYPOINT/CMD lookup against a real registry process (CNCF distribution on 127.0.0.1).

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/converged-computing/oras-cache/sidecar/registrytest"
	"github.com/converged-computing/oras-cache/webhook/imageconfig"
	"github.com/converged-computing/oras-cache/webhook/inject"
	"github.com/converged-computing/oras-cache/webhook/server"
)

// whSecrets is a fake SecretGetter holding dockerconfigjson Secrets by name.
type whSecrets map[string]*corev1.Secret

func (s whSecrets) GetSecret(_ context.Context, ns, name string) (*corev1.Secret, error) {
	if sec, ok := s[ns+"/"+name]; ok {
		return sec, nil
	}
	return nil, apierrors.NewNotFound(schema.GroupResource{Resource: "secrets"}, name)
}

func whDockerSecret(host, user, pass string) *corev1.Secret {
	cfg := map[string]any{"auths": map[string]any{host: map[string]string{
		"auth": base64.StdEncoding.EncodeToString([]byte(user + ":" + pass)),
	}}}
	b, _ := json.Marshal(cfg)
	return &corev1.Secret{Type: corev1.SecretTypeDockerConfigJson, Data: map[string][]byte{corev1.DockerConfigJsonKey: b}}
}

// whLookupLog is a logger for the Resolver and what it wrote.
func whLookupLog() (*slog.Logger, *bytes.Buffer) {
	var b bytes.Buffer
	return slog.New(slog.NewJSONHandler(&b, nil)), &b
}

// whExpectLookup checks a failed lookup: the error (what a denial carries) is the fixed text,
// echoing nothing of leak; the log (what the operator reads) has the reason, wantLog.
func whExpectLookup(t *testing.T, err error, log *bytes.Buffer, leak []string, wantLog ...string) {
	t.Helper()
	var le *imageconfig.LookupError
	if !errors.As(err, &le) {
		t.Fatalf("want a *LookupError, got %T %v", err, err)
	}
	if !strings.Contains(err.Error(), "did not give its configuration") || !strings.Contains(err.Error(), "the reason is in the webhook's log") {
		t.Errorf("not the fixed text: %v", err)
	}
	msg := strings.ReplaceAll(err.Error(), le.Host, "HOST") // a random port may contain "401"
	for _, l := range leak {
		if strings.Contains(msg, l) {
			t.Errorf("the error echoes %q: %v", l, err)
		}
	}
	logged := log.String()
	log.Reset()
	for _, w := range wantLog {
		if !strings.Contains(logged, w) {
			t.Errorf("log lacks %q: %s", w, logged)
		}
	}
}

// what a denial must never echo: registry answers, connection errors, Secret details
var whLeaks = []string{"401", "403", "404", "not found", "refused", "connection", "dial", "media type", "x509", "tls", "HTTP response", "imagePullSecret \"", "dockerconfig", "timeout", "deadline"}

func whExpectErr(t *testing.T, err error, want ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("want an error containing %q", want)
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error lacks %q: %v", w, err)
		}
	}
}

func TestWebhookImageConfigAnonymous(t *testing.T) {
	r := registrytest.Start(t, registrytest.Options{})
	img := whPushImage(t, r, "tools/app", "1.0", []string{"/app", "--serve"}, []string{"--port", "8080"})
	ctx := context.Background()
	log, logged := whLookupLog()
	res := imageconfig.New(imageconfig.Options{PlainHTTP: []string{r.Host}, Timeout: 5 * time.Second, Log: log})

	got, err := res.Resolve(ctx, img.Ref, "jobs", nil)
	if err != nil {
		t.Fatal(err)
	}
	if got.Digest != img.Digest || !reflect.DeepEqual(got.Entrypoint, []string{"/app", "--serve"}) || !reflect.DeepEqual(got.Cmd, []string{"--port", "8080"}) {
		t.Fatalf("got %+v", got)
	}
	byDigest := r.Host + "/tools/app@" + img.Digest
	if got2, err := res.Resolve(ctx, byDigest, "jobs", nil); err != nil || got2.Digest != img.Digest {
		t.Fatalf("by digest: %+v %v", got2, err)
	}
	if got3, err := res.Resolve(ctx, r.Host+"/tools/app:1.0@"+img.Digest, "jobs", nil); err != nil || got3.Digest != img.Digest {
		t.Fatalf("tag@digest: %+v %v", got3, err)
	}

	// cached: the registry is gone, the tag (TTL) and the digest still resolve
	r.Stop()
	if _, err := res.Resolve(ctx, img.Ref, "jobs", nil); err != nil {
		t.Fatalf("tag cache: %v", err)
	}
	if _, err := res.Resolve(ctx, byDigest, "jobs", nil); err != nil {
		t.Fatalf("digest cache: %v", err)
	}
	_, err = res.Resolve(ctx, r.Host+"/tools/app:2.0", "jobs", nil)
	// every failure gives the same text (no port-scanning oracle); the log says which it was
	whExpectLookup(t, err, logged, whLeaks, "cannot reach registry "+r.Host, "over HTTP")
	r.Restart(t)

	// not found
	_, err = res.Resolve(ctx, r.Host+"/tools/missing:1.0", "jobs", nil)
	whExpectLookup(t, err, logged, whLeaks, "not found in registry "+r.Host)

	// plain HTTP only when listed
	strict := imageconfig.New(imageconfig.Options{Timeout: 5 * time.Second, Log: log})
	_, err = strict.Resolve(ctx, img.Ref, "jobs", nil)
	whExpectLookup(t, err, logged, whLeaks, "serves plain HTTP")

	// an artifact is not an image
	whPushManifest(t, r, "tools/artifact", "v1", "application/vnd.converged-computing.oras-cache.v1", []byte("{}"), []byte("data"))
	_, err = res.Resolve(ctx, r.Host+"/tools/artifact:v1", "jobs", nil)
	whExpectLookup(t, err, logged, append(whLeaks, "application/vnd"), "not a container image", "application/vnd.converged-computing.oras-cache.v1")
}

func TestWebhookImageConfigIndex(t *testing.T) {
	r := registrytest.Start(t, registrytest.Options{})
	amd := whPushImage(t, r, "tools/multi", "amd64", []string{"/amd64-app"}, nil)
	arm := whPushImage(t, r, "tools/multi", "arm64", []string{"/arm64-app"}, nil)
	idx := whPushIndex(t, r, "tools/multi", "1.0", map[string]whImage{"linux/amd64": amd, "linux/arm64": arm})
	res := imageconfig.New(imageconfig.Options{PlainHTTP: []string{r.Host}})
	got, err := res.Resolve(context.Background(), idx.Ref, "jobs", nil)
	if err != nil {
		t.Fatal(err)
	}
	want := "/amd64-app"
	if runtime.GOARCH == "arm64" {
		want = "/arm64-app"
	}
	if got.Digest != idx.Digest || len(got.Entrypoint) != 1 || got.Entrypoint[0] != want {
		t.Fatalf("got %+v, want entrypoint %s from index %s", got, want, idx.Digest)
	}
}

func TestWebhookImageConfigPullSecrets(t *testing.T) {
	r := registrytest.Start(t, registrytest.Options{Auth: true})
	img := whPushImage(t, r, "private/app", "1.0", []string{"/private"}, []string{"run"})
	ctx := context.Background()
	secrets := whSecrets{
		"jobs/regcred":   whDockerSecret(r.Host, r.Username, r.Password),
		"jobs/othercred": whDockerSecret("ghcr.io", "x", "y"),
		"jobs/wrongpass": whDockerSecret("https://"+r.Host+"/v2/", r.Username, "nope"),
	}
	log, logged := whLookupLog()
	res := imageconfig.New(imageconfig.Options{PlainHTTP: []string{r.Host}, Secrets: secrets, Timeout: 5 * time.Second, Log: log})

	// a missing Secret, one without credentials for the host, a wrong password: the same text
	// (the pod's own spec is all it reflects), so a denial reveals no Secret's existence or type
	_, err := res.Resolve(ctx, img.Ref, "jobs", nil)
	whExpectErr(t, err, "anonymously: the pod has no imagePullSecrets", "imagePullSecret for that host")
	whExpectLookup(t, err, logged, whLeaks, "refused access (HTTP 401")
	var texts []string
	for _, names := range [][]string{{"othercred", "gone"}, {"othercred"}, {"wrongpass"}, {"gone"}} {
		_, err = res.Resolve(ctx, img.Ref, "jobs", names)
		whExpectLookup(t, err, logged, append(whLeaks, "gone", "othercred", "wrongpass"), "HTTP 401")
		texts = append(texts, err.Error())
	}
	for _, tx := range texts[1:] {
		if tx != texts[0] {
			t.Errorf("denial text depends on the Secrets: %q vs %q", texts[0], tx)
		}
	}

	got, err := res.Resolve(ctx, img.Ref, "jobs", []string{"othercred", "regcred"})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got.Entrypoint, []string{"/private"}) || !reflect.DeepEqual(got.Cmd, []string{"run"}) {
		t.Fatalf("got %+v", got)
	}

	// through the handler: a pod without command and without credentials is denied with the fix
	cfg := whConfig(t, whBaseConfig)
	h := &server.Handler{Mutator: &inject.Mutator{Config: cfg, Images: imageconfig.New(imageconfig.Options{PlainHTTP: []string{r.Host}, Secrets: secrets})}}
	pod := whPod(map[string]string{"oras-cache": "cache", "input-uri": "a:v1"})
	pod.Spec.Containers[0].Command = nil
	pod.Spec.Containers[0].Image = img.Ref
	resp := h.Handle(ctx, whRequest(t, pod))
	if resp.Allowed || !strings.Contains(resp.Result.Message, "set command") || !strings.Contains(resp.Result.Message, "imagePullSecret for that host") || strings.Contains(strings.ReplaceAll(resp.Result.Message, r.Host, "HOST"), "401") || strings.Contains(resp.Result.Message, "…(cut)") {
		t.Fatalf("want a whole denial naming the fix and not the registry's answer, got %+v", resp.Result)
	}
	pod.Spec.ImagePullSecrets = []corev1.LocalObjectReference{{Name: "regcred"}}
	resp = h.Handle(ctx, whRequest(t, pod))
	if !resp.Allowed || len(resp.Patch) == 0 {
		t.Fatalf("want a patch, got %+v", resp.Result)
	}
}

func TestWebhookImageConfigNormalize(t *testing.T) {
	for in, want := range map[string]string{
		"busybox":                           "registry-1.docker.io/library/busybox:latest docker.io",
		"busybox:1.36":                      "registry-1.docker.io/library/busybox:1.36 docker.io",
		"docker.io/bitnami/redis:7":         "registry-1.docker.io/bitnami/redis:7 docker.io",
		"index.docker.io/library/alpine":    "registry-1.docker.io/library/alpine:latest docker.io",
		"ghcr.io/org/app:v1":                "ghcr.io/org/app:v1 ghcr.io",
		"localhost/app":                     "localhost/app:latest localhost",
		"127.0.0.1:5000/a/b:c":              "127.0.0.1:5000/a/b:c 127.0.0.1:5000",
		"ghcr.io/org/app@sha256:" + zeros64: "ghcr.io/org/app@sha256:" + zeros64 + " ghcr.io",
		"org/app:1@sha256:" + zeros64:       "registry-1.docker.io/org/app@sha256:" + zeros64 + " docker.io",
	} {
		ref, host, err := imageconfig.Normalize(in)
		if err != nil {
			t.Errorf("%s: %v", in, err)
			continue
		}
		if got := fmt.Sprintf("%s %s", ref.String(), host); got != want {
			t.Errorf("%s: got %s, want %s", in, got, want)
		}
	}
	if _, _, err := imageconfig.Normalize("UPPER/case"); err == nil {
		t.Errorf("invalid reference accepted")
	}
}

var zeros64 = strings.Repeat("0", 64)

// TestWebhookImageConfigConcurrent: many admissions look the same images up at once.
func TestWebhookImageConfigConcurrent(t *testing.T) {
	r := registrytest.Start(t, registrytest.Options{})
	a := whPushImage(t, r, "tools/a", "1", []string{"/a"}, nil)
	b := whPushImage(t, r, "tools/b", "1", []string{"/b"}, nil)
	res := imageconfig.New(imageconfig.Options{PlainHTTP: []string{r.Host}, MaxEntries: 1})
	errs := make(chan error, 40)
	for i := 0; i < 40; i++ {
		go func() {
			img, want := a, "/a"
			if i%2 == 1 {
				img, want = b, "/b"
			}
			got, err := res.Resolve(context.Background(), img.Ref, "jobs", nil)
			if err == nil && (len(got.Entrypoint) != 1 || got.Entrypoint[0] != want) {
				err = fmt.Errorf("%s: got %v", img.Ref, got.Entrypoint)
			}
			errs <- err
		}()
	}
	for i := 0; i < 40; i++ {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}
