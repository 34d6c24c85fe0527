package schema

// values.schema.json: generated from schema/values.go and not stale; values.yaml and every
// example values file validate; bad values files fail with the expected message (gojsonschema)
// and make helm fail too; a typo'd --set fails rendering with the key named.

import (
	"bytes"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/xeipuuv/gojsonschema"
	"sigs.k8s.io/yaml"

	"github.com/converged-computing/oras-cache/schema"
	"github.com/converged-computing/oras-cache/sidecar/registrytest"

	"github.com/converged-computing/oras-cache/tests/go/testkit"
)

func TestSchemaNotStale(t *testing.T) {
	js, table, err := schema.Generate(testkit.Read(t, testkit.ChartDir+"/values.yaml"))
	require.NoError(t, err)
	assert.Equal(t, string(js), string(testkit.Read(t, testkit.ChartDir+"/values.schema.json")),
		"charts/oras-cache/values.schema.json is stale: run `make schema`")
	readme := testkit.Read(t, testkit.Root+"/README.md")
	want, err := schema.ReplaceReadmeBlock(readme, table)
	require.NoError(t, err)
	block := func(b []byte) string {
		s := string(b)
		i, j := strings.Index(s, schema.ReadmeStart), strings.Index(s, schema.ReadmeEnd)
		require.True(t, i >= 0 && j > i, "README values markers")
		return s[i:j]
	}
	assert.Equal(t, block(want), block(readme), "the README values table is stale: run `make schema`")
	values := testkit.Read(t, testkit.ChartDir+"/values.yaml")
	commented, err := schema.CommentValues(values)
	require.NoError(t, err)
	assert.Equal(t, string(commented), string(values),
		"the # -- comments of charts/oras-cache/values.yaml differ from schema/values.go: run `make schema`")
}

// The values.yaml comments are rewritten from values.go: a drifted one is replaced, a missing one
// added, nested keys found by their path, and every other line (values, plain comments) kept.
func TestSchemaCommentValuesRewrites(t *testing.T) {
	in := "# header\n\n# -- drifted text\nclusterDomain: x\nregistry:\n  # a plain comment\n  logLevel: debug\n  resources:\n    requests: {cpu: 1}\n"
	got, err := schema.CommentValues([]byte(in))
	require.NoError(t, err)
	assert.Equal(t, "# header\n\n"+
		"# -- DNS domain of the cluster, used in the registry address given to pods and in the webhook certificate.\nclusterDomain: x\n"+
		"# -- The cache: a CNCF distribution registry.\nregistry:\n"+
		"  # a plain comment\n  # -- Log level of the registry.\n  logLevel: debug\n"+
		"  # -- Resources of the registry container.\n  resources:\n    requests: {cpu: 1}\n", string(got))
}

func TestSchemaEveryKeyDocumented(t *testing.T) {
	var s map[string]any
	require.NoError(t, yaml.Unmarshal(testkit.Read(t, testkit.ChartDir+"/values.schema.json"), &s))
	var walk func(prefix string, node map[string]any)
	walk = func(prefix string, node map[string]any) {
		props, _ := node["properties"].(map[string]any)
		if len(props) > 0 {
			assert.Equal(t, false, node["additionalProperties"], "%s rejects unknown keys", testkit.Or(prefix, "(root)"))
		}
		for k, v := range props {
			p := v.(map[string]any)
			key := strings.TrimPrefix(prefix+"."+k, ".")
			assert.NotEmpty(t, p["description"], "%s has a description", key)
			if items, ok := p["items"].(map[string]any); ok {
				walk(key+"[]", items)
			}
			walk(key, p)
		}
	}
	walk("", s)
}

func chartSchema(t *testing.T) *gojsonschema.Schema {
	t.Helper()
	abs, err := filepath.Abs(testkit.ChartDir + "/values.schema.json")
	require.NoError(t, err)
	sch, err := gojsonschema.NewSchema(gojsonschema.NewReferenceLoader("file://" + abs))
	require.NoError(t, err)
	return sch
}

func chValidateValues(t *testing.T, sch *gojsonschema.Schema, vals map[string]any) []string {
	t.Helper()
	res, err := sch.Validate(gojsonschema.NewGoLoader(vals))
	require.NoError(t, err)
	var errs []string
	for _, e := range res.Errors() {
		errs = append(errs, e.String())
	}
	return errs
}

func TestSchemaValuesFilesValidate(t *testing.T) {
	sch := chartSchema(t)
	var defaults map[string]any
	require.NoError(t, yaml.Unmarshal(testkit.Read(t, testkit.ChartDir+"/values.yaml"), &defaults))
	assert.Empty(t, chValidateValues(t, sch, defaults), "values.yaml")
	for _, f := range testkit.ChartExampleValuesFiles(t) {
		eff := testkit.ChartEffectiveValues(t, testkit.ChartValues(t, []string{f}))
		assert.Empty(t, chValidateValues(t, sch, eff), f)
	}
}

func TestSchemaBadValuesFail(t *testing.T) {
	sch := chartSchema(t)
	files, err := filepath.Glob("testdata/bad-values/*.yaml")
	require.NoError(t, err)
	require.GreaterOrEqual(t, len(files), 12)
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			raw := testkit.Read(t, f)
			first, _, _ := bytes.Cut(raw, []byte("\n"))
			expect, ok := strings.CutPrefix(string(first), "# expect: ")
			require.True(t, ok, "%s starts with '# expect: <message>'", f)
			var user map[string]any
			require.NoError(t, yaml.Unmarshal(raw, &user))
			errs := chValidateValues(t, sch, testkit.ChartEffectiveValues(t, user))
			require.NotEmpty(t, errs, "%s must not validate", f)
			assert.Contains(t, strings.Join(errs, "\n"), expect)

			// helm refuses it as well, before rendering anything
			_, _, _, err := testkit.ChartInstall(t, "r", "ns", user)
			require.Error(t, err, "helm accepts %s", f)
			assert.Contains(t, err.Error(), "values don't meet the specifications of the schema")
		})
	}
}

func TestSchemaTypoFailsTemplateNamingTheKey(t *testing.T) {
	cases := map[string][]string{
		"registy.image.tag=x":               {"additional properties 'registy' not allowed"},
		"webhook.namspaceSelector=x":        {"at '/webhook'", "additional properties 'namspaceSelector' not allowed"},
		"registry.persistance.enabled=true": {"at '/registry'", "'persistance'"},
		"webhook.tls.mod=secret":            {"at '/webhook/tls'", "'mod'"},
	}
	for set, wants := range cases {
		_, _, _, err := testkit.ChartInstall(t, "r", "ns", testkit.ChartValues(t, nil, set))
		require.Error(t, err, set)
		for _, w := range wants {
			assert.Contains(t, err.Error(), w, set)
		}
	}

	// and through the helm binary, as a user would type it
	helm := registrytest.Binary(t, "helm") // fails with the fix (make tools) when missing
	out, err := exec.Command(helm, "template", "r", testkit.ChartDir, "--set", "registy.image=x").CombinedOutput()
	require.Error(t, err)
	assert.Contains(t, string(out), "additional properties 'registy' not allowed")
}
