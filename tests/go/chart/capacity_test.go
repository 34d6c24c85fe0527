package chart

// The capacity settings the chart gives the guard (sidecar/guard), read by the guard's own code.

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/converged-computing/oras-cache/sidecar/guard"

	"github.com/converged-computing/oras-cache/tests/go/testkit"
)

func chGuardConfig(t *testing.T, o *chartObjects) guard.Config {
	t.Helper()
	cm := o.ConfigMaps["r-oras-cache-registry-guard"]
	require.NotNil(t, cm, "guard ConfigMap")
	p := filepath.Join(t.TempDir(), "guard.json")
	require.NoError(t, os.WriteFile(p, []byte(cm.Data["guard.json"]), 0o644))
	cfg, err := guard.ReadConfig(p)
	require.NoError(t, err, "the guard reads the chart's config strictly")
	return cfg
}

// `helm upgrade` with another bound changes only the guard's ConfigMap, never the registry pod
// template: a new pod would start with an empty emptyDir.
func TestChartCapacityBoundChangeKeepsTheRegistryPod(t *testing.T) {
	a := chartRender(t, "r", "ns", testkit.ChartValues(t, nil))
	b := chartRender(t, "r", "ns", testkit.ChartValues(t, nil, "registry.capacity.bound=1Gi"))
	assert.Equal(t, a.Deployments["r-oras-cache-registry"].Spec.Template, b.Deployments["r-oras-cache-registry"].Spec.Template)
	assert.NotEqual(t, chGuardConfig(t, a), chGuardConfig(t, b))
}

// Every volume kind gives the guard a bound it accepts, 90% of the volume by default, and a bound
// without headroom is refused with the values to change.
func TestChartCapacityBounds(t *testing.T) {
	cases := []struct {
		sets      []string
		wantBound int64
		wantErr   string
	}{
		{nil, guard.MaxBound(10 << 30), ""},
		{[]string{"registry.emptyDirSizeLimit=64Mi", "registry.capacity.bound=40Mi"}, 40 << 20, ""},
		{[]string{"registry.persistence.enabled=true", "registry.persistence.size=2Gi"}, guard.MaxBound(2 << 30), ""},
		{[]string{"registry.emptyDirSizeLimit=64Mi", "registry.capacity.bound=64Mi"}, 0,
			"registry.capacity.bound=64Mi is above 56.0MiB, the most a volume of 64.0MiB allows (a tenth, at least 8.0MiB, stays free so the kubelet never evicts the registry): lower registry.capacity.bound or raise registry.emptyDirSizeLimit"},
		{[]string{"registry.persistence.enabled=true", "registry.persistence.size=1Gi", "registry.capacity.bound=1Gi"}, 0,
			"registry.capacity.bound=1Gi is above 921.6MiB, the most a volume of 1.0GiB allows (a tenth, at least 8.0MiB, stays free so the kubelet never evicts the registry): lower registry.capacity.bound or raise registry.persistence.size"},
	}
	for _, c := range cases {
		cfg := chGuardConfig(t, chartRender(t, "r", "ns", testkit.ChartValues(t, nil, c.sets...)))
		lim, err := cfg.Limits(0)
		if c.wantErr != "" {
			assert.EqualError(t, err, c.wantErr, "%v", c.sets)
			continue
		}
		require.NoError(t, err, "%v", c.sets)
		assert.Equal(t, c.wantBound, lim.Bound, "%v", c.sets)
	}
	// An existing claim's size comes from its filesystem.
	cfg := chGuardConfig(t, chartRender(t, "r", "ns", testkit.ChartValues(t, nil, "registry.persistence.enabled=true", "registry.persistence.existingClaim=mine")))
	lim, err := cfg.Limits(5 << 30)
	require.NoError(t, err)
	assert.Equal(t, guard.MaxBound(5<<30), lim.Bound)
	_, err = cfg.Limits(0)
	assert.EqualError(t, err, "the size of the cache volume is unknown: set registry.persistence.size")
}
