package webhook

// Golden tests of the pod mutation (linkerd style): each directory under testdata/golden holds
// pod.yaml (the pod as the API server hands it to the webhook) and the expected outcome:
// result.txt (injected / skipped: why), patch.json (the JSON patch, as data) and mutated.yaml
// (the pod after the API server applies the patch). `make golden` (-update) rewrites them.
// Cases that use REGISTRY_HOST run against a real registry process holding an image config.

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/converged-computing/oras-cache/sidecar/registrytest"
	"github.com/converged-computing/oras-cache/webhook/imageconfig"
	"github.com/converged-computing/oras-cache/webhook/inject"
)

// -update may already be defined by another test file of the package: define it only once.
func init() {
	if flag.Lookup("update") == nil {
		flag.Bool("update", false, "rewrite golden files instead of comparing")
	}
}

func whUpdate() bool {
	f := flag.Lookup("update")
	return f != nil && f.Value.String() == "true"
}

const whRegistryPlaceholder = "REGISTRY_HOST"

// whGreeterRegistry starts a registry holding tools/greeter:1.0 (ENTRYPOINT and CMD set).
func whGreeterRegistry(t *testing.T) *registrytest.Registry {
	t.Helper()
	r := registrytest.Start(t, registrytest.Options{})
	whPushImage(t, r, "tools/greeter", "1.0",
		[]string{"/usr/local/bin/greeter", "--from=image"},
		[]string{"--greeting", "cost $5 $(NOT_A_VAR)"})
	return r
}

func TestGoldenWebhook(t *testing.T) {
	root := filepath.Join("testdata", "golden")
	pods, err := filepath.Glob(filepath.Join(root, "*", "pod.yaml"))
	if err != nil || len(pods) < 15 {
		t.Fatalf("want at least 15 golden cases, found %d (%v)", len(pods), err)
	}
	baseConfig := whReadFile(t, filepath.Join(root, "config.yaml"))
	var reg *registrytest.Registry
	for _, p := range pods {
		dir := filepath.Dir(p)
		cfgText := baseConfig
		if b, err := os.ReadFile(filepath.Join(dir, "config.yaml")); err == nil {
			cfgText = string(b)
		}
		podText := whReadFile(t, p)
		needsRegistry := strings.Contains(podText+cfgText, whRegistryPlaceholder)
		if needsRegistry && reg == nil {
			reg = whGreeterRegistry(t)
		}
		t.Run(filepath.Base(dir), func(t *testing.T) {
			host := ""
			if needsRegistry {
				host = reg.Host
				cfgText = strings.ReplaceAll(cfgText, whRegistryPlaceholder, host)
				podText = strings.ReplaceAll(podText, whRegistryPlaceholder, host)
			}
			cfg := whConfig(t, cfgText)
			m := &inject.Mutator{Config: cfg, Images: imageconfig.New(imageconfig.Options{
				PlainHTTP: cfg.PlainHTTPRegistries,
				Timeout:   cfg.EntrypointLookup.Timeout.Duration,
			})}
			raw, err := yaml.YAMLToJSON([]byte(podText))
			if err != nil {
				t.Fatal(err)
			}
			res, err := m.Mutate(context.Background(), cfg.Namespace, raw)
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Denials) > 0 {
				t.Fatalf("denied: %s", res.Message())
			}
			out, result, patch := raw, "skipped: "+res.Skip+"\n", []inject.Op{}
			if res.Skip == "" {
				out = whCheckMutation(t, m, cfg.Namespace, raw, res)
				result, patch = "injected\n", res.Patch
			}
			patchJSON, err := json.MarshalIndent(patch, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			outYAML, err := yaml.JSONToYAML(out)
			if err != nil {
				t.Fatal(err)
			}
			unhost := func(b []byte) []byte {
				if host == "" {
					return b
				}
				return bytes.ReplaceAll(b, []byte(host), []byte(whRegistryPlaceholder))
			}
			whGolden(t, filepath.Join(dir, "result.txt"), []byte(result))
			whGolden(t, filepath.Join(dir, "patch.json"), unhost(append(patchJSON, '\n')))
			whGolden(t, filepath.Join(dir, "mutated.yaml"), unhost(outYAML))
		})
	}
}

func whReadFile(t testing.TB, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// whGolden compares got with the file, or rewrites the file with -update.
func whGolden(t *testing.T, path string, got []byte) {
	t.Helper()
	if whUpdate() {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run `make golden` to create it)", err)
	}
	if !bytes.Equal(want, got) {
		t.Errorf("%s differs from the mutation (run `make golden` and review the diff):\n--- want\n%s\n--- got\n%s", path, want, got)
	}
}
