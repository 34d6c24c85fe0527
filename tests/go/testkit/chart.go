// Package testkit holds the helpers that more than one subject package under tests/go uses:
// rendering the chart with the helm v3 SDK (the code path of `helm install --dry-run` /
// `helm template`, schema validation included) and reading repository files.
package testkit

import (
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/strvals"
	"sigs.k8s.io/yaml"
)

// Root is the repository root seen from a subject package: `go test` runs in the package's
// directory and every subject package sits at tests/go/<subject>.
const Root = "../../.."

// ChartDir is the chart under test.
const ChartDir = Root + "/charts/oras-cache"

var (
	chartOnce   sync.Once
	chartLoaded *chart.Chart
	chartErr    error
)

// ChartLoad loads the chart once per test binary.
func ChartLoad(t *testing.T) *chart.Chart {
	t.Helper()
	chartOnce.Do(func() { chartLoaded, chartErr = loader.Load(ChartDir) })
	require.NoError(t, chartErr)
	return chartLoaded
}

// ChartValues builds user values from values files (relative to the chart) and --set strings.
func ChartValues(t *testing.T, files []string, sets ...string) map[string]any {
	t.Helper()
	vals := map[string]any{}
	for _, f := range files {
		v, err := chartutil.ReadValuesFile(filepath.Join(ChartDir, f))
		require.NoError(t, err, f)
		vals = chartutil.MergeTables(v.AsMap(), vals)
	}
	for _, s := range sets {
		require.NoError(t, strvals.ParseInto(s, vals), s)
	}
	return vals
}

// ChartInstall renders like `helm install --dry-run` without a cluster.
func ChartInstall(t *testing.T, release, namespace string, vals map[string]any) (manifest string, hooks []string, notes string, err error) {
	t.Helper()
	cfg := &action.Configuration{Log: func(string, ...any) {}}
	inst := action.NewInstall(cfg)
	inst.DryRun = true
	inst.ClientOnly = true
	inst.ReleaseName = release
	inst.Namespace = namespace
	inst.KubeVersion = &chartutil.KubeVersion{Version: "v1.34.0", Major: "1", Minor: "34"}
	rel, err := inst.Run(ChartLoad(t), vals)
	if err != nil {
		return "", nil, "", err
	}
	for _, h := range rel.Hooks {
		hooks = append(hooks, h.Manifest)
	}
	return rel.Manifest, hooks, rel.Info.Notes, nil
}

// ChartExampleValuesFiles lists charts/oras-cache/ci/*-values.yaml relative to the chart.
func ChartExampleValuesFiles(t *testing.T) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(ChartDir, "ci", "*-values.yaml"))
	require.NoError(t, err)
	require.NotEmpty(t, m)
	var out []string
	for _, f := range m {
		out = append(out, filepath.Join("ci", filepath.Base(f)))
	}
	return out
}

// Read returns a file's content; a missing file fails the test.
func Read(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	return b
}

// ChartEffectiveValues merges the user values over values.yaml, as helm does.
func ChartEffectiveValues(t *testing.T, vals map[string]any) map[string]any {
	t.Helper()
	merged := map[string]any{}
	require.NoError(t, yaml.Unmarshal(Read(t, ChartDir+"/values.yaml"), &merged))
	var deepMerge func(dst, src map[string]any)
	deepMerge = func(dst, src map[string]any) {
		for k, v := range src {
			if sm, ok := v.(map[string]any); ok {
				if dm, ok := dst[k].(map[string]any); ok {
					deepMerge(dm, sm)
					continue
				}
			}
			dst[k] = v
		}
	}
	// round-trip through YAML so numbers have one representation
	b, err := yaml.Marshal(vals)
	require.NoError(t, err)
	var v map[string]any
	require.NoError(t, yaml.Unmarshal(b, &v))
	deepMerge(merged, v)
	return merged
}

// Or returns s, or d when s is empty.
func Or(s, d string) string {
	if s == "" {
		return d
	}
	return s
}
