package webhook

// Fuzzing the mutation over annotations and pod shapes: it never panics, and every admitted
// result passes whCheckMutation (owned paths only, nothing lost, strict decode, restricted
// injected containers, exact argv, idempotent). `go test -fuzz FuzzWebhookMutate ./tests/go/webhook/`
// explores; a plain `go test` runs the seed corpus.

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/converged-computing/oras-cache/webhook/inject"
)

func FuzzWebhookMutate(f *testing.F) {
	type seed struct {
		in, inPath, out, outPath, pipe, container, key, val string
		n, flags                                            uint8
	}
	for _, s := range []seed{
		{"data/set:v1", "/data", "out:v1", "/out", "", "", "", "", 0, 0x01},
		{"a:1,b:2", "", "", "", "", "", "", "", 0, 0x03},
		{"", "", "res:part-$(IDX)", "part-$(IDX)", "/tmp/log", "c1", "", "", 1, 0x05},
		{"x/$(IDX):v1", "/w", "o:v1", "o", "", "c0", "debug", "true", 2, 0xff},
		{"ghcr.io/a/b@sha256:" + strings.Repeat("ab", 32), "", "", "", "", "", "input-uri_3", "c:v1", 0, 0x1e},
		{"a:v1", "/oras-cache", "", "", "", "", "ouput-uri", "x", 0, 0x01},
		{"a:v1", "", "o:v1", "../o", "", "nope", "unpack", "false", 1, 0x20},
		{"$(", "", "o:$(A)$(B)", "/o", "", "", "registry", "localhost:5000", 0, 0x45},
		{"a:v1", "", "", "", "", "", "oras-env", "creds", 0, 0x81},
	} {
		f.Add(s.in, s.inPath, s.out, s.outPath, s.pipe, s.container, s.key, s.val, s.n, s.flags)
	}
	cfg := whConfig(f, whBaseConfig)
	f.Fuzz(func(t *testing.T, in, inPath, out, outPath, pipe, container, key, val string, n, flags uint8) {
		ann := map[string]string{inject.AnnotationCache: "cache"}
		for k, v := range map[string]string{
			inject.AnnotationInputURI: in, inject.AnnotationInputPath: inPath, inject.AnnotationOutputURI: out,
			inject.AnnotationOutputPath: outPath, inject.AnnotationOutputPipe: pipe, inject.AnnotationContainer: container,
		} {
			if v != "" {
				ann[k] = v
			}
		}
		if key != "" {
			ann[inject.Prefix+key] = val
		}
		pod := whPod(nil)
		pod.Annotations = ann
		cs := []corev1.Container{}
		for i := 0; i < 1+int(n%3); i++ {
			c := corev1.Container{Name: "c" + string(rune('0'+i)), Image: "ghcr.io/example/app:1.0"}
			if flags&0x01 != 0 {
				c.Command = []string{"/app", "a b", "$(IDX)"}
			}
			if flags&0x02 != 0 {
				c.Args = []string{"--x", "it's"}
			}
			if flags&0x04 != 0 {
				c.Env = []corev1.EnvVar{{Name: "IDX", Value: "3"}, {Name: "A", Value: "$(IDX)"}}
			}
			if flags&0x40 != 0 {
				c.EnvFrom = []corev1.EnvFromSource{{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "cm"}}}}
			}
			cs = append(cs, c)
		}
		pod.Spec.Containers = cs
		if flags&0x08 != 0 {
			pod.Spec.InitContainers = []corev1.Container{{Name: "setup", Image: "x:1"}}
		}
		if flags&0x10 != 0 {
			pod.Spec.Volumes = []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}}
		}
		if flags&0x20 != 0 {
			pod.Spec.RestartPolicy = corev1.RestartPolicyAlways
		}
		raw, err := json.Marshal(pod)
		if err != nil {
			t.Skip("fuzz input does not marshal into a pod; nothing to admit")
		}
		if flags&0x80 != 0 {
			raw = []byte(strings.Replace(string(raw), `"spec":{`, `"spec":{"fuzzUnknown":[1,{"a":null}],`, 1))
		}
		m := &inject.Mutator{Config: cfg, Images: &whFakeImages{Entrypoint: []string{"/e"}, Cmd: []string{"c $x"}}}
		res, err := m.Mutate(context.Background(), "jobs", raw)
		if err != nil {
			t.Fatalf("Mutate error on a valid pod: %v", err)
		}
		switch {
		case res.Skip != "":
			if len(res.Patch) > 0 || len(res.Denials) > 0 {
				t.Fatal("skip with a patch or denials")
			}
		case len(res.Denials) > 0:
			if len(res.Patch) > 0 {
				t.Fatal("denial with a patch")
			}
			for _, d := range res.Denials {
				if d.Message == "" || d.Reason == "" {
					t.Fatalf("empty denial %+v", d)
				}
			}
		default:
			whCheckMutation(t, m, "jobs", raw, res)
		}
	})
}
