package chart

// The MutatingWebhookConfiguration's matchConditions compile with cel-go and select exactly
// the annotated pods of this release, evaluated on sample pods as the API server would
// (`object` is the pod being created).

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/cel-go/cel"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/converged-computing/oras-cache/webhook/inject"

	"github.com/converged-computing/oras-cache/tests/go/testkit"
)

// chartMatchConditions compiles the rendered matchConditions into one predicate on a pod.
func chartMatchConditions(t *testing.T, o *chartObjects) func(pod *corev1.Pod) bool {
	t.Helper()
	env, err := cel.NewEnv(cel.Variable("object", cel.DynType), cel.Variable("oldObject", cel.DynType))
	require.NoError(t, err)
	var progs []cel.Program
	for _, mwc := range o.MWCs {
		for _, w := range mwc.Webhooks {
			require.NotEmpty(t, w.MatchConditions)
			for _, mc := range w.MatchConditions {
				ast, iss := env.Compile(mc.Expression)
				require.NoError(t, iss.Err(), "matchCondition %s compiles:\n%s", mc.Name, mc.Expression)
				assert.Equal(t, cel.BoolType, ast.OutputType(), "matchCondition %s is boolean", mc.Name)
				prg, err := env.Program(ast)
				require.NoError(t, err)
				progs = append(progs, prg)
			}
		}
	}
	return func(pod *corev1.Pod) bool {
		b, err := json.Marshal(pod)
		require.NoError(t, err)
		var obj map[string]any
		require.NoError(t, json.Unmarshal(b, &obj))
		for _, p := range progs {
			out, _, err := p.Eval(map[string]any{"object": obj, "oldObject": nil})
			require.NoError(t, err, "evaluation on %s", string(b))
			if out.Value() != true {
				return false
			}
		}
		return true
	}
}

func chSamplePod(ann map[string]string) *corev1.Pod {
	return &corev1.Pod{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{GenerateName: "job-", Namespace: "ns", Annotations: ann, Labels: map[string]string{"job-name": "j"}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "busybox"}}},
	}
}

func TestChartMatchConditionsSelectThisReleasesPods(t *testing.T) {
	for _, release := range []string{"r", "team-oras-cache", "a-release-name-that-is-as-long-as-helm-allows-53-char"} {
		t.Run(release, func(t *testing.T) {
			o := chartRender(t, release, "ns", testkit.ChartValues(t, nil))
			match := chartMatchConditions(t, o)
			cases := []struct {
				name string
				ann  map[string]string
				want bool
			}{
				{"no annotations at all", nil, false},
				{"empty annotations", map[string]string{}, false},
				{"unrelated annotations", map[string]string{"prometheus.io/scrape": "true", "kubectl.kubernetes.io/default-container": "app"}, false},
				{"oras-cache naming this release", map[string]string{inject.Prefix + "oras-cache": release}, true},
				{"this release with inputs and outputs", map[string]string{inject.Prefix + "oras-cache": release, inject.Prefix + "input-uri": "data:v1", inject.Prefix + "output-uri": "result:v1", "other": "x"}, true},
				{"oras-cache naming another release", map[string]string{inject.Prefix + "oras-cache": release + "-other", inject.Prefix + "output-uri": "r:1"}, false},
				{"oras-cache naming a prefix of this release", map[string]string{inject.Prefix + "oras-cache": release[:len(release)-1]}, len(release) == 1}, // "" for release r
				// an empty switch reaches the webhook, which denies it: never run without its data
				{"oras-cache empty", map[string]string{inject.Prefix + "oras-cache": ""}, true},
				{"oras-cache blank", map[string]string{inject.Prefix + "oras-cache": " \t"}, true},
				{"oras-cache empty with inputs", map[string]string{inject.Prefix + "oras-cache": "", inject.Prefix + "input-uri": "data:v1"}, true},
				{"oras-cache naming another release, padded", map[string]string{inject.Prefix + "oras-cache": " x "}, false},
				// other keys without oras-cache reach the webhook, which denies them with a message
				{"oras keys without oras-cache", map[string]string{inject.Prefix + "output-uri": "result:v1"}, true},
				{"similar but foreign prefix", map[string]string{strings.TrimSuffix(inject.Prefix, "/") + ".example/oras-cache": release}, false},
				{"the status annotation alone", map[string]string{inject.Prefix + "status": "injected"}, true},
			}
			for _, c := range cases {
				assert.Equal(t, c.want, match(chSamplePod(c.ann)), c.name)
			}
		})
	}
}

// The Job that NOTES.txt tells users to copy is a valid batch/v1 Job whose pods this release's
// webhook selects.
func TestChartNotesJobIsValidAndSelected(t *testing.T) {
	for _, sets := range [][]string{nil, {"auth.enabled=false"}, {"registry.persistence.enabled=true,registry.persistence.keepOnUninstall=true"}} {
		o := chartRender(t, "wf", "science", testkit.ChartValues(t, nil, sets...))
		notes := o.Notes
		start := strings.Index(notes, "apiVersion: batch/v1")
		require.GreaterOrEqual(t, start, 0, "NOTES has a Job:\n%s", notes)
		end := strings.Index(notes[start:], "\n\n")
		require.Greater(t, end, 0)
		var job batchv1.Job
		require.NoError(t, chStrictDecode(notes[start:start+end], &job), "the Job in NOTES decodes strictly")
		assert.Equal(t, "science", job.Namespace)
		assert.Equal(t, corev1.RestartPolicyNever, job.Spec.Template.Spec.RestartPolicy)
		require.Len(t, job.Spec.Template.Spec.Containers, 1)
		assert.Equal(t, "wf", job.Spec.Template.Annotations[inject.Prefix+"oras-cache"])
		pod := chSamplePod(job.Spec.Template.Annotations)
		assert.True(t, chartMatchConditions(t, o)(pod), "the webhook selects the NOTES Job's pods")

		assert.Contains(t, notes, "port-forward svc/wf-oras-cache-registry 5000:5000")
		assert.Contains(t, notes, "oras pull --plain-http localhost:5000/hello:latest")
		assert.Contains(t, notes, "helm uninstall wf -n science")
		if strings.Contains(strings.Join(sets, ","), "auth.enabled=false") {
			assert.NotContains(t, notes, "get secret")
		} else {
			assert.Contains(t, notes, "get secret wf-oras-cache-auth -o jsonpath='{.data.password}' | base64 -d")
		}
	}
}
