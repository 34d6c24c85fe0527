package webhook

// The denial table: bad annotations and pod shapes are refused with a message that names the
// annotation (or the pod field) and says what to change. Run through the admission handler, so
// each case is also a real 403 AdmissionResponse.

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/converged-computing/oras-cache/webhook/inject"
	"github.com/converged-computing/oras-cache/webhook/server"
)

const P = inject.Prefix

// whPod is a one-container Job pod carrying the given annotations (short keys get the prefix).
func whPod(ann map[string]string) *corev1.Pod {
	full := map[string]string{}
	for k, v := range ann {
		if !strings.Contains(k, "/") {
			k = P + k
		}
		full[k] = v
	}
	return &corev1.Pod{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{Name: "job-abc12", Namespace: "jobs", Annotations: full},
		Spec: corev1.PodSpec{
			RestartPolicy: corev1.RestartPolicyNever,
			Containers: []corev1.Container{{
				Name: "app", Image: "ghcr.io/example/app:1.0", Command: []string{"/app"},
				Env: []corev1.EnvVar{{Name: "RUN", Value: "7"}},
			}},
		},
	}
}

// whRequest wraps a pod into an admission request for CREATE in namespace jobs.
func whRequest(t testing.TB, pod *corev1.Pod) admission.Request {
	t.Helper()
	raw, err := json.Marshal(pod)
	if err != nil {
		t.Fatal(err)
	}
	return whRawRequest(raw)
}

func whRawRequest(raw []byte) admission.Request {
	return admission.Request{AdmissionRequest: admissionv1.AdmissionRequest{
		UID:       "0b3c8a64-6fa3-4ad6-8f4e-2a1d1c3b4e5f",
		Kind:      metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
		Resource:  metav1.GroupVersionResource{Version: "v1", Resource: "pods"},
		Namespace: "jobs",
		Operation: admissionv1.Create,
		Object:    runtime.RawExtension{Raw: raw},
	}}
}

func TestDenyWebhookTable(t *testing.T) {
	io := map[string]string{"oras-cache": "cache", "input-uri": "data/set:v1"}
	with := func(base map[string]string, kv ...string) map[string]string {
		m := map[string]string{}
		for k, v := range base {
			m[k] = v
		}
		for i := 0; i+1 < len(kv); i += 2 {
			if kv[i+1] == "<delete>" {
				delete(m, kv[i])
			} else {
				m[kv[i]] = kv[i+1]
			}
		}
		return m
	}
	cases := []struct {
		name   string
		ann    map[string]string
		pod    func(*corev1.Pod)
		images *whFakeImages
		cfg    func(*inject.Config)
		key    string   // annotation the message must name ("" = none required)
		want   []string // substrings of the message (the fix)
		reason string
	}{
		{name: "other keys without oras-cache", ann: map[string]string{"input-uri": "data/set:v1"},
			key: "oras-cache", want: []string{"missing", `"cache"`, "input-uri"}, reason: inject.ReasonMissingCache},
		{name: "typo ouput-uri", ann: with(io, "ouput-uri", "out:v1"),
			key: "ouput-uri", want: []string{"did you mean " + P + "output-uri"}, reason: inject.ReasonUnknownAnnotation},
		{name: "typo input_uri", ann: with(io, "input_uri", "x:v1"),
			key: "input_uri", want: []string{"did you mean " + P + "input-uri"}},
		{name: "typo orascache in the switch", ann: map[string]string{"oras-cach": "cache", "input-uri": "a:v1"},
			key: "oras-cach", want: []string{"did you mean " + P + "oras-cache"}},
		{name: "unknown key far from any", ann: with(io, "colour", "blue"),
			key: "colour", want: []string{"unknown annotation", "the known ones are", "output-uri"}},
		{name: "input-uri_ not a number", ann: with(io, "input-uri_x", "a:v1"),
			key: "input-uri_x", want: []string{"not a number", "input-uri_1"}},
		{name: "empty input-uri", ann: with(io, "input-uri", ""),
			key: "input-uri", want: []string{"empty value"}, reason: inject.ReasonEmptyValue},
		{name: "empty oras-cache", ann: with(io, "oras-cache", " "),
			key: "oras-cache", want: []string{"empty value"}},
		// the matchConditions send an empty switch to the webhook (tests/go/chart/cel_test.go): denied, never run without its data
		{name: "oras-cache empty string", ann: with(io, "oras-cache", ""),
			key: "oras-cache", want: []string{"empty value", "run without its inputs", `set it to "cache"`}, reason: inject.ReasonEmptyValue},
		{name: "oras-cache empty string alone", ann: map[string]string{"oras-cache": ""},
			key: "oras-cache", want: []string{"empty value", `set it to "cache"`}},
		{name: "empty entry in list", ann: with(io, "input-uri", "a:v1,,b:v1"),
			key: "input-uri", want: []string{"entry 2", "empty", "extra comma"}},
		{name: "uppercase repository", ann: with(io, "input-uri", "Data/Set:v1"),
			key: "input-uri", want: []string{"must be lowercase", "repo:tag"}, reason: inject.ReasonInvalidReference},
		{name: "input without tag", ann: with(io, "input-uri", "datasets/mnist"),
			key: "input-uri", want: []string{"no tag or digest", "datasets/mnist:<tag>"}},
		{name: "bad digest", ann: with(io, "input-uri", "data/set@sha256:abc"),
			key: "input-uri", want: []string{"digest", "sha256:<64 hex>"}},
		{name: "URL scheme", ann: with(io, "input-uri", "https://ghcr.io/x/y:1"),
			key: "input-uri", want: []string{"URL scheme", "host[:port]/repository:tag"}},
		{name: "variable in host", ann: with(io, "input-uri", "$(REG).example.com/x:1"),
			key: "input-uri", want: []string{"not allowed in the registry host"}},
		{name: "output by digest", ann: with(io, "output-uri", "out@sha256:"+strings.Repeat("a", 64), "output-path", "/out"),
			key: "output-uri", want: []string{"pushed to a tag", "repo:tag"}},
		{name: "output without tag", ann: with(io, "output-uri", "results", "output-path", "/out"),
			key: "output-uri", want: []string{"no tag", "results:latest"}},
		{name: "relative input-path", ann: with(io, "input-path", "data"),
			key: "input-path", want: []string{"relative", "absolute path"}, reason: inject.ReasonInvalidPath},
		{name: "output-uri without output-path", ann: with(io, "output-uri", "out:v1"),
			key: "output-path", want: []string{"missing", "file or directory to push"}, reason: inject.ReasonMissingPair},
		{name: "output-path without output-uri", ann: with(io, "output-path", "/out"),
			key: "output-path", want: []string{"no effect without " + P + "output-uri"}},
		{name: "output-pipe without output-uri", ann: with(io, "output-pipe", "/tmp/log"),
			key: "output-pipe", want: []string{"no effect without"}},
		{name: "push-on-failure without output-uri", ann: with(io, "push-on-failure", "true"),
			key: "push-on-failure", want: []string{"no effect without"}},
		{name: "input-path without inputs", ann: map[string]string{"oras-cache": "cache", "input-path": "/data", "output-uri": "o:v1", "output-path": "/o"},
			key: "input-path", want: []string{"no effect without"}},
		{name: "dotdot in output-path", ann: with(io, "output-uri", "out:v1", "output-path", "../etc"),
			key: "output-path", want: []string{"'..'", "without it"}},
		{name: "dotdot in input-path", ann: with(io, "input-path", "/data/../etc"),
			key: "input-path", want: []string{"'..'"}},
		{name: "input-path inside /oras-cache", ann: with(io, "input-path", "/oras-cache/inputs"),
			key: "input-path", want: []string{"reserves", "another directory"}},
		{name: "container not in pod", ann: with(io, "container", "web"),
			key: "container", want: []string{`no container "web"`, "the containers are: app"}, reason: inject.ReasonContainer},
		{name: "several containers and no container", ann: io,
			pod: func(p *corev1.Pod) {
				p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: "sidecar", Image: "x:1"})
			},
			key: "container", want: []string{"2 containers (app, sidecar)", "name the app container"}},
		{name: "container is an init container", ann: with(io, "container", "setup"),
			pod: func(p *corev1.Pod) {
				p.Spec.InitContainers = []corev1.Container{{Name: "setup", Image: "x:1"}}
			},
			key: "container", want: []string{"is an init container", "app"}},
		{name: "duplicate input", ann: with(io, "input-uri", "a:v1, a:v1"),
			key: "input-uri", want: []string{"already an input", "once"}, reason: inject.ReasonDuplicateInput},
		{name: "duplicate list position", ann: with(io, "input-uri_1", "a:v1", "input-uri_01", "b:v1"),
			key: "input-uri_1", want: []string{"same position 1"}},
		{name: "list entry with commas", ann: with(io, "input-uri_1", "a:v1,b:v1"),
			key: "input-uri_1", want: []string{"holds one reference"}},
		{name: "non-boolean push-on-failure", ann: with(io, "output-uri", "o:v1", "output-path", "/o", "push-on-failure", "yes"),
			key: "push-on-failure", want: []string{`"yes" is not a boolean`, `use "true" or "false"`}, reason: inject.ReasonInvalidValue},
		{name: "non-boolean unpack", ann: with(io, "unpack", "False"),
			key: "unpack", want: []string{"not a boolean"}},
		{name: "non-boolean debug", ann: with(io, "debug", "1"),
			key: "debug", want: []string{"not a boolean"}},
		{name: "undefined variable", ann: with(io, "output-uri", "results:part-$(IDX)", "output-path", "/o"),
			key: "output-uri", want: []string{"$(IDX) is not defined in container \"app\"", "env"}, reason: inject.ReasonUndefinedVar},
		{name: "undefined variable in path", ann: with(io, "input-path", "/data/$(NOPE)"),
			key: "input-path", want: []string{"$(NOPE) is not defined"}},
		{name: "oras-container not allowed", ann: with(io, "oras-container", "ghcr.io/me/sidecar:1"),
			key: "oras-container", want: []string{"sidecar.allowImageOverride is false", "remove"}, reason: inject.ReasonImageOverride},
		{name: "oras-container invalid", ann: with(io, "oras-container", "Not An Image"),
			cfg: func(c *inject.Config) { c.Sidecar.AllowImageOverride = true },
			key: "oras-container", want: []string{"invalid image"}},
		{name: "invalid registry", ann: with(io, "registry", "https://ghcr.io"),
			key: "registry", want: []string{"host[:port]"}},
		{name: "oras-env without registry", ann: with(io, "oras-env", "creds"),
			key: "oras-env", want: []string{P + "registry", "not set"}},
		{name: "status set by a user", ann: with(io, "status", "done"),
			key: "status", want: []string{"written by the webhook", "remove it"}},
		{name: "nothing to do", ann: map[string]string{"oras-cache": "cache"},
			key: "oras-cache", want: []string{"nothing to do", "input-uri"}},
		{name: "restartPolicy Always with output", ann: with(io, "output-uri", "o:v1", "output-path", "/o"),
			pod: func(p *corev1.Pod) { p.Spec.RestartPolicy = corev1.RestartPolicyAlways },
			key: "output-uri", want: []string{"restartPolicy", "Never or OnFailure"}},
		{name: "reserved volume name", ann: io,
			pod: func(p *corev1.Pod) {
				p.Spec.Volumes = []corev1.Volume{{Name: "oras-cache", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}}
			},
			want: []string{`volume named "oras-cache"`, "rename"}, reason: inject.ReasonReservedName},
		{name: "reserved container name", ann: with(io, "container", "app"),
			pod: func(p *corev1.Pod) {
				p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: "oras-cache-push", Image: "x:1"})
			},
			want: []string{`"oras-cache-push"`, "reserves", "rename"}},
		{name: "reserved mount path", ann: io,
			pod: func(p *corev1.Pod) {
				p.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "v", MountPath: "/oras-cache"}}
			},
			want: []string{"mounts /oras-cache", "mount elsewhere"}},
		// the mutation adds the volume: a mount of it by name would give another container the share
		{name: "other container mounts the share by name", ann: with(io, "container", "app"),
			pod: func(p *corev1.Pod) {
				p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: "spy", Image: "x:1",
					VolumeMounts: []corev1.VolumeMount{{Name: "oras-cache", MountPath: "/elsewhere"}}})
			},
			want: []string{`container "spy" mounts the volume "oras-cache"`, "only oras-cache's own containers", "remove that volume mount"}, reason: inject.ReasonReservedName},
		{name: "app container mounts the share by name", ann: io,
			pod: func(p *corev1.Pod) {
				p.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "oras-cache", MountPath: "/data", ReadOnly: true}}
			},
			want: []string{`container "app" mounts the volume "oras-cache"`, P + "input-path"}},
		{name: "init container mounts the share by name", ann: io,
			pod: func(p *corev1.Pod) {
				p.Spec.InitContainers = []corev1.Container{{Name: "prep", Image: "x:1",
					VolumeMounts: []corev1.VolumeMount{{Name: "oras-cache", MountPath: "/x", SubPath: "run"}}}}
			},
			want: []string{`init container "prep" mounts the volume "oras-cache"`, "remove that volume mount"}},
		{name: "ephemeral container mounts the share by name", ann: io,
			pod: func(p *corev1.Pod) {
				p.Spec.EphemeralContainers = []corev1.EphemeralContainer{{EphemeralContainerCommon: corev1.EphemeralContainerCommon{
					Name: "debug", Image: "x:1", VolumeMounts: []corev1.VolumeMount{{Name: "oras-cache", MountPath: "/dbg"}}}}}
			},
			want: []string{`ephemeral container "debug" mounts the volume "oras-cache"`}},
		{name: "container uses the share as a block device", ann: io,
			pod: func(p *corev1.Pod) {
				p.Spec.Containers[0].VolumeDevices = []corev1.VolumeDevice{{Name: "oras-cache", DevicePath: "/dev/x"}}
			},
			want: []string{`container "app" mounts the volume "oras-cache"`}},
		{name: "entrypoint lookup fails", ann: io,
			pod:    func(p *corev1.Pod) { p.Spec.Containers[0].Command = nil },
			images: &whFakeImages{Err: errors.New("registry ghcr.io refused access (HTTP 401)")},
			want:   []string{"has no command", "ENTRYPOINT", "HTTP 401", "set command"}, reason: inject.ReasonEntrypointLookup},
		{name: "image without entrypoint or cmd", ann: io,
			pod:    func(p *corev1.Pod) { p.Spec.Containers[0].Command = nil },
			images: &whFakeImages{},
			want:   []string{"neither ENTRYPOINT nor CMD", "set command"}},
	}
	if len(cases) < 25 {
		t.Fatalf("only %d denial cases", len(cases))
	}
	t.Logf("%d denial cases", len(cases))
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := whConfig(t, whBaseConfig)
			if tc.cfg != nil {
				tc.cfg(cfg)
			}
			images := tc.images
			if images == nil {
				images = &whFakeImages{Err: errors.New("must not be called")}
			}
			h := &server.Handler{Mutator: &inject.Mutator{Config: cfg, Images: images}, Metrics: server.NewMetrics(nil)}
			pod := whPod(tc.ann)
			if tc.pod != nil {
				tc.pod(pod)
			}
			resp := h.Handle(context.Background(), whRequest(t, pod))
			if resp.Allowed {
				t.Fatalf("admitted; want a denial")
			}
			if resp.Result == nil || resp.Result.Code != http.StatusForbidden {
				t.Fatalf("want a 403 denial, got %+v", resp.Result)
			}
			msg := resp.Result.Message
			if tc.key != "" && !strings.Contains(msg, P+tc.key) {
				t.Errorf("message does not name %s%s:\n%s", P, tc.key, msg)
			}
			for _, w := range tc.want {
				if !strings.Contains(msg, w) {
					t.Errorf("message lacks %q:\n%s", w, msg)
				}
			}
			if tc.reason != "" {
				res, err := h.Mutator.Mutate(context.Background(), "jobs", whMustJSON(t, pod))
				if err != nil || len(res.Denials) == 0 || res.Denials[0].Reason != tc.reason {
					t.Errorf("want reason %s, got %+v %v", tc.reason, res, err)
				}
			}
			if len(resp.Patches) > 0 || len(resp.Patch) > 0 || resp.PatchType != nil {
				t.Errorf("a denial carries a patch")
			}
		})
	}
}

func whMustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestWebhookConfigStrict: the config file is read strictly and validated.
func TestWebhookConfigStrict(t *testing.T) {
	for name, tc := range map[string]struct{ yaml, want string }{
		"unknown key":      {whBaseConfig + "extra: 1\n", `unknown field "extra"`},
		"misspelled key":   {strings.Replace(whBaseConfig, "cacheName", "cachename", 1), `unknown field "cachename"`},
		"missing cache":    {strings.Replace(whBaseConfig, "cacheName: cache", "cacheName: \"\"", 1), "cacheName: required"},
		"privileged":       {strings.Replace(whBaseConfig, "allowPrivilegeEscalation: false", "allowPrivilegeEscalation: true", 1), "allowPrivilegeEscalation must be false"},
		"writable root":    {strings.Replace(whBaseConfig, "readOnlyRootFilesystem: true", "readOnlyRootFilesystem: false", 1), "readOnlyRootFilesystem must be true"},
		"bad registry":     {strings.Replace(whBaseConfig, "host: cache-oras-cache-registry.jobs.svc.cluster.local:5000", "host: http://x", 1), "registry.host"},
		"bad plain http":   {strings.Replace(whBaseConfig, "plainHTTPRegistries: []", "plainHTTPRegistries: [\"a b\"]", 1), "plainHTTPRegistries[0]"},
		"bad timeout type": {strings.Replace(whBaseConfig, "timeout: 30m", "timeout: soon", 1), "soon"},
		"zero share size":  {strings.Replace(whBaseConfig, "shareSizeLimit: 20Gi", "shareSizeLimit: \"0\"", 1), "sidecar.shareSizeLimit: must be positive"},
		"bad share size":   {strings.Replace(whBaseConfig, "shareSizeLimit: 20Gi", "shareSizeLimit: lots", 1), "lots"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := inject.ParseConfig([]byte(tc.yaml))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("want error containing %q, got %v", tc.want, err)
			}
		})
	}
	cfg := whConfig(t, "cacheName: c\nnamespace: no\nregistry: {host: 'r:5000'}\nsidecar: {image: 's:1'}\n")
	if cfg.Namespace != "no" || cfg.Server.Port != 9443 || cfg.Server.Path != "/mutate-v1-pod" || cfg.Sidecar.Timeout.Duration.String() != "30m0s" || cfg.Sidecar.SecurityContext == nil || cfg.Sidecar.ShareSizeLimit != inject.DefaultShareSizeLimit {
		t.Fatalf("defaults not applied: %+v", cfg)
	}
}
