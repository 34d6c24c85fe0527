package inject

import (
	"reflect"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestWebhookParseReference(t *testing.T) {
	ok := map[string]Reference{
		"data:v1":                  {Repository: "data", Tag: "v1"},
		"a/b/c:1.0-rc_1":           {Repository: "a/b/c", Tag: "1.0-rc_1"},
		"ghcr.io/org/x:v1":         {Host: "ghcr.io", Repository: "org/x", Tag: "v1"},
		"localhost/x:v1":           {Host: "localhost", Repository: "x", Tag: "v1"},
		"reg:5000/x:v1":            {Host: "reg:5000", Repository: "x", Tag: "v1"},
		"[::1]:5000/x:v1":          {Host: "[::1]:5000", Repository: "x", Tag: "v1"},
		"x@sha256:" + hex64:        {Repository: "x", Digest: "sha256:" + hex64},
		"x:t@sha256:" + hex64:      {Repository: "x", Tag: "t", Digest: "sha256:" + hex64},
		"results:part-$(IDX)":      {Repository: "results", Tag: "part-$(IDX)", Vars: []string{"IDX"}},
		"s/$(A)-$(B):$(A)":         {Repository: "s/$(A)-$(B)", Tag: "$(A)", Vars: []string{"A", "B"}},
		"$(PROJECT)/data:v1":       {Repository: "$(PROJECT)/data", Tag: "v1", Vars: []string{"PROJECT"}},
		"ghcr.io/$(ORG)/x:$(T)":    {Host: "ghcr.io", Repository: "$(ORG)/x", Tag: "$(T)", Vars: []string{"ORG", "T"}},
		"a__b/c--d.e:v":            {Repository: "a__b/c--d.e", Tag: "v"},
		"registry.example.com/x:1": {Host: "registry.example.com", Repository: "x", Tag: "1"},
	}
	for in, want := range ok {
		got, err := ParseReference(in)
		if err != nil {
			t.Errorf("%s: %v", in, err)
			continue
		}
		want.Raw = in
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: got %+v, want %+v", in, got, want)
		}
	}
	bad := map[string]string{
		"":                         "empty",
		"Data:v1":                  "lowercase",
		"a b:v1":                   "space",
		"x:-v":                     "tag",
		"x@sha256:12":              "digest",
		"x@sha256:$(D)":            "digest",
		"https://ghcr.io/x:v":      "scheme",
		"$(H).io/x:v":              "host",
		"reg:99999/x:v":            "port",
		"x:$(":                     "closing",
		"x:$()":                    "names no variable",
		"x:$$(A)":                  "'$'",
		"x:v$":                     "'$'",
		"a//b:v":                   "component",
		"ghcr.io/:v":               "no repository",
		"x:" + hex64 + hex64 + "a": "tag",
		"x:$(A=B)":                 "not a valid",
		"é:v":                      "non-ASCII",
		"x:v\n":                    "control",
		"a_-b:v":                   "component",
		"host.io:/x:v":             "port",
		"[zz]:1/x:v":               "IPv6",
		strings.Repeat("a", 300):   "longer than 255",
	}
	for in, want := range bad {
		if _, err := ParseReference(in); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: want error containing %q, got %v", in, want, err)
		}
	}
}

const hex64 = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

func TestWebhookSuggest(t *testing.T) {
	for in, want := range map[string]string{
		"ouput-uri":      AnnotationOutputURI,
		"input_uri":      AnnotationInputURI,
		"inputpath":      AnnotationInputPath,
		"Output-Path":    AnnotationOutputPath,
		"push-on-fail":   AnnotationPushOnFailure,
		"oras-containr":  AnnotationOrasContainer,
		"input-uri-2":    AnnotationInputURIListPrefix + "<n>",
		"debugging-mode": "",
		"x":              "",
	} {
		if got := suggestAnnotation(Prefix + in); got != want {
			t.Errorf("%s: got %q, want %q", in, got, want)
		}
	}
	if levenshtein("kitten", "sitting") != 3 || levenshtein("", "abc") != 3 || levenshtein("ab", "ab") != 0 {
		t.Fatal("levenshtein")
	}
}

func TestWebhookEscape(t *testing.T) {
	got := escapeAll([]string{"$(HOME)", "$$", "a$b", "plain", "$"})
	want := []string{"$$(HOME)", "$$$$", "a$$b", "plain", "$$"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %q", got)
	}
	if pointerEscape("a/b~c") != "a~1b~0c" {
		t.Fatal("pointer escape")
	}
}

func TestWebhookCopyVars(t *testing.T) {
	app := &corev1.Container{
		Name: "app",
		Env: []corev1.EnvVar{
			{Name: "A", Value: "a"},
			{Name: "UNUSED", Value: "u"},
			{Name: "MEM", ValueFrom: &corev1.EnvVarSource{ResourceFieldRef: &corev1.ResourceFieldSelector{Resource: "limits.memory"}}},
			{Name: "B", Value: "$(A)-$(MEM)"},
		},
		EnvFrom: []corev1.EnvFromSource{{Prefix: "X_", ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "cm"}}}},
	}
	env, envFrom := copyVars(app, []string{"B"})
	var names []string
	for _, e := range env {
		names = append(names, e.Name)
	}
	if !reflect.DeepEqual(names, []string{"A", "MEM", "B"}) || envFrom != nil {
		t.Fatalf("got %v %v", names, envFrom)
	}
	if env[1].ValueFrom.ResourceFieldRef.ContainerName != "app" || app.Env[2].ValueFrom.ResourceFieldRef.ContainerName != "" {
		t.Fatalf("resourceFieldRef must name the app container (in the copy only)")
	}
	if _, envFrom = copyVars(app, []string{"X_FROM_CM"}); len(envFrom) != 1 || envFrom[0].Prefix != "X_" {
		t.Fatalf("envFrom not copied: %v", envFrom)
	}
	if env, envFrom = copyVars(app, nil); env != nil || envFrom != nil {
		t.Fatal("nothing to copy")
	}
}

// Every reference in a Plan carries the annotation it was written in, and denials about it name
// that annotation (here an undefined variable in the second list entry).
func TestWebhookPlanReferencesKeepTheirAnnotation(t *testing.T) {
	cfg := &Config{CacheName: "c"}
	cfg.SetDefaults()
	pod := func(extra map[string]string) *corev1.Pod {
		ann := map[string]string{
			AnnotationCache:                    "c",
			AnnotationInputURI:                 "a:1, b:$(V)",
			AnnotationInputURIListPrefix + "7": "c:1",
			AnnotationInputURIListPrefix + "2": "d:$(V)",
			AnnotationOutputURI:                "out:$(V)",
			AnnotationOutputPath:               "/out",
		}
		for k, v := range extra {
			ann[k] = v
		}
		return &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Annotations: ann},
			Spec: corev1.PodSpec{RestartPolicy: corev1.RestartPolicyNever, Containers: []corev1.Container{
				{Name: "app", Command: []string{"x"}, Env: []corev1.EnvVar{{Name: "V", Value: "v"}}}}},
		}
	}
	res := Parse(cfg, pod(nil))
	if res.Plan == nil {
		t.Fatalf("denied: %s", res.Message())
	}
	var got []string
	for _, in := range res.Plan.Inputs {
		got = append(got, in.Raw+" from "+strings.TrimPrefix(in.Annotation, Prefix))
	}
	want := []string{"a:1 from input-uri", "b:$(V) from input-uri", "d:$(V) from input-uri_2", "c:1 from input-uri_7"}
	if !reflect.DeepEqual(got, want) || res.Plan.Output.Annotation != AnnotationOutputURI {
		t.Fatalf("inputs %q, output from %q", got, res.Plan.Output.Annotation)
	}

	p := pod(nil)
	p.Spec.Containers[0].Env = nil
	res = Parse(cfg, p)
	var keys []string
	for _, d := range res.Denials {
		if d.Reason == ReasonUndefinedVar {
			keys = append(keys, strings.TrimPrefix(d.Annotation, Prefix))
		}
	}
	if want := []string{"input-uri", "input-uri_2", "output-uri"}; !reflect.DeepEqual(keys, want) {
		t.Fatalf("undefined-variable denials name %q, want %q", keys, want)
	}
}
