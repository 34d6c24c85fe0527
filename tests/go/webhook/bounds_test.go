package webhook

// Admission cost does not grow faster than the pod: many $(VAR) references are admitted, many
// annotations get one short denial, denials are bounded in length. The time figures are in
// BenchmarkWebhookHandler10kVars (no timing assertions here).

import (
	"context"
	"fmt"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/converged-computing/oras-cache/webhook/inject"
	"github.com/converged-computing/oras-cache/webhook/server"
)

// whManyVarsPod is a pod with n $(VAR) references, every variable defined in the app
// container's env: in input-uri (n/10 references of 10 distinct variables each), or, with
// inPath, all n distinct variables in input-path (one string, the worst case of a set-less parser).
func whManyVarsPod(n int, inPath bool) *corev1.Pod {
	var refs []string
	var env []corev1.EnvVar
	var path strings.Builder
	for i := 0; i < n; i += 10 {
		var b strings.Builder
		b.WriteString("d")
		for j := i; j < i+10 && j < n; j++ {
			fmt.Fprintf(&b, "$(V%d)", j)
			fmt.Fprintf(&path, "/$(V%d)", j)
			env = append(env, corev1.EnvVar{Name: fmt.Sprintf("V%d", j), Value: "x"})
		}
		b.WriteString(":v1")
		refs = append(refs, b.String())
	}
	ann := map[string]string{"oras-cache": "cache", "input-uri": strings.Join(refs, ","), "input-path": "/data"}
	if inPath {
		ann["input-uri"], ann["input-path"] = "data:v1", path.String()
	}
	pod := whPod(ann)
	pod.Spec.Containers[0].Env = env
	return pod
}

func whHandler(t testing.TB) *server.Handler {
	return &server.Handler{Mutator: &inject.Mutator{Config: whConfig(t, whBaseConfig)}, Metrics: server.NewMetrics(nil)}
}

func TestWebhookManyVariablesAdmitted(t *testing.T) {
	pod := whManyVarsPod(10000, false)
	h := whHandler(t)
	raw := whMustJSON(t, pod)
	res, err := h.Mutator.Mutate(context.Background(), "jobs", raw)
	if err != nil || len(res.Denials) > 0 || res.Plan == nil {
		t.Fatalf("10 000 $(VAR) references not admitted: %v %v", err, res.Message())
	}
	vars := 0
	for _, in := range res.Plan.Inputs {
		vars += len(in.Vars)
	}
	if len(res.Plan.Inputs) != 1000 || vars != 10000 {
		t.Fatalf("%d inputs, %d variables; want 1000 and 10000", len(res.Plan.Inputs), vars)
	}
	out := whCheckMutation(t, h.Mutator, "jobs", raw, res)
	mutated, _, err := whStrictPod(out)
	if err != nil {
		t.Fatal(err)
	}
	// the init container gets exactly the env entries the references use, once each
	init := mutated.Spec.InitContainers[len(mutated.Spec.InitContainers)-1]
	seen := map[string]bool{}
	for _, e := range init.Env {
		if strings.HasPrefix(e.Name, "V") {
			seen[e.Name] = true
		}
	}
	if len(seen) != 10000 || len(init.Env) != 10000+5 { // + registry, plain HTTP, username, password, timeout
		t.Fatalf("init env: %d entries, %d distinct variables; want each of the 10 000 once", len(init.Env), len(seen))
	}
	if resp := h.Handle(context.Background(), whRawRequest(raw)); !resp.Allowed {
		t.Fatalf("handler denied: %+v", resp.Result)
	}
	// the same number of distinct variables in one path
	res, err = h.Mutator.Mutate(context.Background(), "jobs", whMustJSON(t, whManyVarsPod(10000, true)))
	if err != nil || res.Plan == nil || strings.Count(res.Plan.InputPath, "$(") != 10000 {
		t.Fatalf("10 000 $(VAR) in input-path not admitted: %v %s", err, res.Message())
	}
}

// The cost of an annotation is linear: allocations for 4x the references grow about 4x (a
// count, not a time; a quadratic step would show in the benchmark below).
func TestWebhookManyVariablesAllocationsLinear(t *testing.T) {
	h := whHandler(t)
	allocs := func(n int) float64 {
		raw := whMustJSON(t, whManyVarsPod(n, false))
		return testing.AllocsPerRun(3, func() {
			if res, err := h.Mutator.Mutate(context.Background(), "jobs", raw); err != nil || res.Plan == nil {
				t.Fatalf("not admitted: %v", err)
			}
		})
	}
	small, large := allocs(2500), allocs(10000)
	t.Logf("allocations: %.0f for 2 500 references, %.0f for 10 000", small, large)
	if large > 5*small {
		t.Fatalf("allocations grow faster than the annotations: %.0f → %.0f for 4x the references", small, large)
	}
}

func TestWebhookManyUnknownKeysShortDenial(t *testing.T) {
	ann := map[string]string{"oras-cache": "cache", "input-uri": "a:v1"}
	for i := 0; i < 4000; i++ {
		ann[fmt.Sprintf("unknown-key-%d", i)] = strings.Repeat("v", 200)
	}
	h := whHandler(t)
	resp := h.Handle(context.Background(), whRequest(t, whPod(ann)))
	if resp.Allowed {
		t.Fatal("admitted")
	}
	msg := resp.Result.Message
	t.Logf("denial (%d bytes): %s", len(msg), msg)
	if len(msg) > 1024 {
		t.Fatalf("denial of %d bytes for 4 000 unknown keys; want a short one", len(msg))
	}
	for _, w := range []string{"4002 annotations", fmt.Sprint(inject.MaxAnnotations), P + "input-uri", "remove unknown keys"} {
		if !strings.Contains(msg, w) {
			t.Errorf("denial lacks %q", w)
		}
	}
	res, _ := h.Mutator.Mutate(context.Background(), "jobs", whMustJSON(t, whPod(ann)))
	if len(res.Denials) != 1 || res.Denials[0].Reason != inject.ReasonTooLarge {
		t.Fatalf("want one %s denial, got %d", inject.ReasonTooLarge, len(res.Denials))
	}

	// under the count bound but over the size bound
	big := map[string]string{"oras-cache": "cache", "input-uri": "a:v1", "input-path": "/" + strings.Repeat("d", inject.MaxAnnotationBytes)}
	resp = h.Handle(context.Background(), whRequest(t, whPod(big)))
	if resp.Allowed || !strings.Contains(resp.Result.Message, "bytes are accepted") || len(resp.Result.Message) > 1024 {
		t.Fatalf("want a short size denial, got %+v", resp.Result)
	}
}

// Many bad entries within the bounds: the denial lists MaxDenials problems, each cut to
// MaxDenialLen bytes, and counts the rest.
func TestWebhookDenialBounded(t *testing.T) {
	var refs []string
	for i := 0; i < 5000; i++ {
		refs = append(refs, fmt.Sprintf("Bad%d/%s:v1", i, strings.Repeat("x", 10)))
	}
	refs[0] = "Bad/" + strings.Repeat("x", 2000) + ":v1" // echoed, then cut
	ann := map[string]string{"oras-cache": "cache", "input-uri": strings.Join(refs, ",")}
	resp := whHandler(t).Handle(context.Background(), whRequest(t, whPod(ann)))
	if resp.Allowed {
		t.Fatal("admitted")
	}
	msg := resp.Result.Message
	if max := (inject.MaxDenials+1)*(inject.MaxDenialLen+2) + 64; len(msg) > max {
		t.Fatalf("denial of %d bytes, bound %d", len(msg), max)
	}
	if !strings.Contains(msg, "and 4990 more problems not shown") || !strings.Contains(msg, "must be lowercase") || !strings.Contains(msg, "…(cut)") {
		t.Fatalf("denial does not list, cut and count: %s", msg)
	}
	if strings.Count(msg, P+"input-uri: ") != inject.MaxDenials {
		t.Fatalf("more than %d problems listed: %s", inject.MaxDenials, msg)
	}
}

// A skip echoes the oras-cache value into the response and the log: bounded too.
func TestWebhookSkipMessageBounded(t *testing.T) {
	resp := whHandler(t).Handle(context.Background(), whRequest(t, whPod(map[string]string{"oras-cache": strings.Repeat("x", 100000)})))
	if !resp.Allowed || len(resp.Patch) != 0 {
		t.Fatalf("another cache: want an unchanged admission, got %+v", resp.Result)
	}
	if n := len(resp.Result.Message); n > 512 {
		t.Fatalf("skip message of %d bytes", n)
	}
}
