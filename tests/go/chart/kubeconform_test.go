package chart

// kubeconform -strict over the value matrix, offline: strict per-kind JSON schemas are derived
// from the OpenAPI document of the k8s.io/kubernetes module (the same Kubernetes version as the
// local cluster, ci/lib.sh), as yannh's openapi2jsonschema does: int-or-string and Quantity as
// string-or-number, additionalProperties false on every object with properties. Skipped when
// the kubeconform binary is not installed (`make tools`).

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/converged-computing/oras-cache/sidecar/registrytest"
	"github.com/stretchr/testify/require"

	"github.com/converged-computing/oras-cache/tests/go/testkit"
)

// the kinds the chart renders (cert-manager kinds have no schema in Kubernetes' OpenAPI)
var chKubeconformKinds = map[string]bool{
	"/v1/ConfigMap": true, "/v1/Secret": true, "/v1/Service": true, "/v1/ServiceAccount": true,
	"/v1/PersistentVolumeClaim": true, "/v1/Pod": true, "apps/v1/Deployment": true,
	"rbac.authorization.k8s.io/v1/Role": true, "rbac.authorization.k8s.io/v1/RoleBinding": true,
	"policy/v1/PodDisruptionBudget": true, "networking.k8s.io/v1/NetworkPolicy": true, "batch/v1/CronJob": true,
	"admissionregistration.k8s.io/v1/MutatingWebhookConfiguration": true,
}

func chKubernetesVersion(t *testing.T) string {
	m := regexp.MustCompile(`(?m)^KUBERNETES_VERSION=(v[0-9.]+)`).FindSubmatch(testkit.Read(t, testkit.Root+"/ci/lib.sh"))
	require.NotNil(t, m, "KUBERNETES_VERSION in ci/lib.sh")
	return string(m[1])
}

// chKubernetesSwagger returns the path of api/openapi-spec/swagger.json of k8s.io/kubernetes,
// downloading the module zip through the Go module proxy when it is not cached.
func chKubernetesSwagger(t *testing.T, version string) string {
	out, err := exec.Command("go", "mod", "download", "-json", "k8s.io/kubernetes@"+version).Output()
	require.NoError(t, err, "go mod download k8s.io/kubernetes@%s", version)
	var mod struct{ Dir string }
	require.NoError(t, json.Unmarshal(out, &mod))
	p := filepath.Join(mod.Dir, "api", "openapi-spec", "swagger.json")
	_, err = os.Stat(p)
	require.NoError(t, err)
	return p
}

func chStrictify(node any) any {
	switch n := node.(type) {
	case map[string]any:
		if n["format"] == "int-or-string" {
			return map[string]any{"oneOf": []any{map[string]any{"type": "string"}, map[string]any{"type": "integer"}}}
		}
		for k, v := range n {
			if k == "properties" {
				props := v.(map[string]any)
				for pk, pv := range props {
					props[pk] = chStrictify(pv)
				}
				continue
			}
			n[k] = chStrictify(v)
		}
		if _, ok := n["properties"]; ok {
			if _, has := n["additionalProperties"]; !has {
				n["additionalProperties"] = false
			}
		}
		return n
	case []any:
		for i := range n {
			n[i] = chStrictify(n[i])
		}
	}
	return node
}

func chRefsOf(node any, into map[string]bool) {
	switch n := node.(type) {
	case map[string]any:
		for k, v := range n {
			if s, ok := v.(string); ok && k == "$ref" {
				into[strings.TrimPrefix(s, "#/definitions/")] = true
			} else {
				chRefsOf(v, into)
			}
		}
	case []any:
		for _, v := range n {
			chRefsOf(v, into)
		}
	}
}

// chWriteKubeconformSchemas writes <kind><kindSuffix>.json files (kubeconform's naming) into dir.
func chWriteKubeconformSchemas(t *testing.T, swagger, dir string) {
	var doc struct {
		Definitions map[string]map[string]any `json:"definitions"`
	}
	require.NoError(t, json.Unmarshal(testkit.Read(t, swagger), &doc))
	defs := doc.Definitions
	quantity := "io.k8s.apimachinery.pkg.api.resource.Quantity"
	require.Contains(t, defs, quantity)
	defs[quantity] = map[string]any{"oneOf": []any{map[string]any{"type": "string"}, map[string]any{"type": "number"}}}
	for name := range defs {
		defs[name] = chStrictify(defs[name]).(map[string]any)
	}
	written := 0
	for name, def := range defs {
		gvks, _ := def["x-kubernetes-group-version-kind"].([]any)
		for _, g := range gvks {
			gvk := g.(map[string]any)
			group, version, kind := gvk["group"].(string), gvk["version"].(string), gvk["kind"].(string)
			if !chKubeconformKinds[group+"/"+version+"/"+kind] {
				continue
			}
			// every definition reachable from this kind
			reach := map[string]bool{name: true}
			for todo := []string{name}; len(todo) > 0; {
				cur := todo[0]
				todo = todo[1:]
				found := map[string]bool{}
				chRefsOf(defs[cur], found)
				for r := range found {
					if !reach[r] {
						reach[r] = true
						todo = append(todo, r)
					}
				}
			}
			sub := map[string]any{}
			for r := range reach {
				sub[r] = defs[r]
			}
			suffix := "-" + strings.ToLower(strings.Split(group, ".")[0]) + "-" + version
			if group == "" {
				suffix = "-" + version
			}
			b, err := json.Marshal(map[string]any{"$ref": "#/definitions/" + name, "definitions": sub})
			require.NoError(t, err)
			require.NoError(t, os.WriteFile(filepath.Join(dir, strings.ToLower(kind)+suffix+".json"), b, 0o644))
			written++
		}
	}
	require.Equal(t, len(chKubeconformKinds), written, "a schema for every kind the chart renders")
}

func TestChartKubeconformStrict(t *testing.T) {
	bin := registrytest.Binary(t, "kubeconform") // fails with the fix (make tools) when missing
	version := chKubernetesVersion(t)
	dir := t.TempDir()
	chWriteKubeconformSchemas(t, chKubernetesSwagger(t, version), dir)
	location := filepath.Join(dir, "{{ .ResourceKind }}{{ .KindSuffix }}.json")

	for _, c := range chartMatrix(t) {
		t.Run(c.name, func(t *testing.T) {
			manifest, hooks, _, err := testkit.ChartInstall(t, c.release, c.namespace, testkit.ChartValues(t, c.files, c.sets...))
			require.NoError(t, err)
			stream := manifest + "\n---\n" + strings.Join(hooks, "\n---\n")
			cmd := exec.Command(bin, "-strict", "-summary", "-output", "text",
				"-kubernetes-version", strings.TrimPrefix(version, "v"),
				"-schema-location", location, "-skip", "Certificate,Issuer", "-")
			cmd.Stdin = strings.NewReader(stream)
			out, err := cmd.CombinedOutput()
			require.NoError(t, err, "kubeconform -strict:\n%s", out)
			require.Contains(t, string(out), "Invalid: 0, Errors: 0")
		})
	}
}
