package webhook

// Helpers shared by the webhook tests (golden, denial table, fuzz, HTTPS, ENTRYPOINT lookup,
// benchmark). Every name starts with "wh" to stay clear of the other test files of the package.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	jsonpatch "github.com/evanphx/json-patch"
	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/registry/remote"
	"oras.land/oras-go/v2/registry/remote/auth"
	sigsjson "sigs.k8s.io/json"

	"github.com/converged-computing/oras-cache/sidecar/contract"
	"github.com/converged-computing/oras-cache/sidecar/registrytest"
	"github.com/converged-computing/oras-cache/webhook/inject"
)

// whApply applies a patch (as the API server does) and returns the new pod JSON.
func whApply(t testing.TB, raw []byte, ops []inject.Op) []byte {
	t.Helper()
	pb, err := json.Marshal(ops)
	if err != nil {
		t.Fatalf("marshal patch: %v", err)
	}
	p, err := jsonpatch.DecodePatch(pb)
	if err != nil {
		t.Fatalf("decode patch: %v", err)
	}
	out, err := p.Apply(raw)
	if err != nil {
		t.Fatalf("apply patch %s: %v", pb, err)
	}
	return out
}

// whStrictPod decodes pod JSON strictly (unknown, duplicate or mis-cased fields are errors) and
// returns the strict errors separately.
func whStrictPod(raw []byte) (*corev1.Pod, []error, error) {
	var pod corev1.Pod
	strict, err := sigsjson.UnmarshalStrict(raw, &pod)
	return &pod, strict, err
}

var whAllowedPath = regexp.MustCompile(`^(/spec/volumes(/-)?|/spec/initContainers(/-)?|/spec/containers/-|/spec/containers/[0-9]+/(command|args|volumeMounts(/-)?)|/metadata/annotations/` +
	regexp.QuoteMeta(strings.ReplaceAll(inject.AnnotationStatus, "/", "~1")) + `)$`)

// whCheckMutation verifies the properties every admitted mutation must have: add/replace only
// on owned paths; nothing of the input lost or rewritten except the app's command/args; the
// result decodes strictly (apart from fields the input already had that our API types do not
// know); the injected containers are restricted and take credentials from secretKeyRef only;
// the original argv follows the launcher's "--"; a second pass is a no-op.
func whCheckMutation(t testing.TB, m *inject.Mutator, ns string, in []byte, res *inject.Result) []byte {
	t.Helper()
	for _, op := range res.Patch {
		if op.Op != "add" && op.Op != "replace" {
			t.Fatalf("patch op %q on %s: only add/replace allowed", op.Op, op.Path)
		}
		if !whAllowedPath.MatchString(op.Path) {
			t.Fatalf("patch touches %s, a path oras-cache does not own", op.Path)
		}
	}
	out := whApply(t, in, res.Patch)
	var inDoc, outDoc any
	if err := json.Unmarshal(in, &inDoc); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(out, &outDoc); err != nil {
		t.Fatal(err)
	}
	app := res.Plan.ContainerIndex
	owned := func(p string) bool {
		return p == fmt.Sprintf("/spec/containers/%d/command", app) || p == fmt.Sprintf("/spec/containers/%d/args", app)
	}
	if err := whPreserved(inDoc, outDoc, "", owned); err != nil {
		t.Fatalf("the mutation lost or rewrote input: %v", err)
	}
	_, inStrict, err := whStrictPod(in)
	if err != nil {
		t.Fatalf("input decode: %v", err)
	}
	pod, outStrict, err := whStrictPod(out)
	if err != nil {
		t.Fatalf("mutated pod does not decode: %v", err)
	}
	if fmt.Sprint(inStrict) != fmt.Sprint(outStrict) {
		t.Fatalf("strict decode of the mutated pod: %v (input had only %v)", outStrict, inStrict)
	}
	if pod.Annotations[inject.AnnotationStatus] != inject.StatusInjected {
		t.Fatalf("status annotation missing")
	}
	var inPod corev1.Pod
	_ = sigsjson.UnmarshalCaseSensitivePreserveInts(in, &inPod)
	c := pod.Spec.Containers[app]
	if len(c.Command) < 5 || c.Command[0] != contract.LauncherPath || c.Command[1] != "launch" {
		t.Fatalf("app command %q does not start with the launcher", c.Command)
	}
	dash := slices.Index(c.Command, "--")
	if dash < 0 {
		t.Fatalf("app command %q has no --", c.Command)
	}
	if orig := inPod.Spec.Containers[app].Command; len(orig) > 0 && !reflect.DeepEqual(c.Command[dash+1:], orig) {
		t.Fatalf("original command %q not kept exactly after --: %q", orig, c.Command[dash+1:])
	}
	if len(inPod.Spec.Containers[app].Args) > 0 && !reflect.DeepEqual(c.Args, inPod.Spec.Containers[app].Args) {
		t.Fatalf("args changed: %q → %q", inPod.Spec.Containers[app].Args, c.Args)
	}
	var injected []corev1.Container
	for _, ic := range pod.Spec.InitContainers {
		if ic.Name == inject.InitContainerName {
			injected = append(injected, ic)
		}
	}
	for _, ic := range pod.Spec.Containers {
		if ic.Name == inject.PushContainerName {
			injected = append(injected, ic)
		}
	}
	want := 1
	if res.Plan.Output != nil {
		want = 2
	}
	if len(injected) != want {
		t.Fatalf("%d injected containers, want %d", len(injected), want)
	}
	if pod.Spec.InitContainers[len(pod.Spec.InitContainers)-1].Name != inject.InitContainerName {
		t.Fatalf("init container not appended last")
	}
	for _, ic := range injected {
		whCheckRestricted(t, ic)
		whCheckCredentials(t, m.Config, res.Plan, ic)
	}
	if pod.Spec.Subdomain != inPod.Spec.Subdomain || !reflect.DeepEqual(pod.Labels, inPod.Labels) {
		t.Fatalf("subdomain or labels changed")
	}
	again, err := m.Mutate(context.Background(), ns, out)
	if err != nil || again.Skip == "" {
		t.Fatalf("second pass is not a no-op: %+v %v", again, err)
	}
	return out
}

func whCheckRestricted(t testing.TB, c corev1.Container) {
	t.Helper()
	sc := c.SecurityContext
	ok := sc != nil && sc.AllowPrivilegeEscalation != nil && !*sc.AllowPrivilegeEscalation &&
		sc.RunAsNonRoot != nil && *sc.RunAsNonRoot && (sc.RunAsUser == nil || *sc.RunAsUser != 0) &&
		sc.Capabilities != nil && slices.Contains(sc.Capabilities.Drop, "ALL") && len(sc.Capabilities.Add) == 0 &&
		sc.SeccompProfile != nil && sc.SeccompProfile.Type == corev1.SeccompProfileTypeRuntimeDefault &&
		sc.ReadOnlyRootFilesystem != nil && *sc.ReadOnlyRootFilesystem && (sc.Privileged == nil || !*sc.Privileged)
	if !ok {
		b, _ := json.Marshal(sc)
		t.Fatalf("%s: securityContext is not restricted: %s", c.Name, b)
	}
}

// whPreserved checks that everything in in is still in out (lists may only grow at the end),
// except under the paths owned(path) reports.
func whPreserved(in, out any, path string, owned func(string) bool) error {
	if owned(path) {
		return nil
	}
	switch iv := in.(type) {
	case map[string]any:
		ov, ok := out.(map[string]any)
		if !ok {
			return fmt.Errorf("%s: object became %T", path, out)
		}
		for k, v := range iv {
			o, ok := ov[k]
			if !ok {
				return fmt.Errorf("%s/%s: removed", path, k)
			}
			if err := whPreserved(v, o, path+"/"+k, owned); err != nil {
				return err
			}
		}
	case []any:
		ov, ok := out.([]any)
		if !ok {
			return fmt.Errorf("%s: list became %T", path, out)
		}
		if len(ov) < len(iv) {
			return fmt.Errorf("%s: list shrank", path)
		}
		for i := range iv {
			if err := whPreserved(iv[i], ov[i], fmt.Sprintf("%s/%d", path, i), owned); err != nil {
				return err
			}
		}
	case nil:
		// null may become a list (add on a null member)
	default:
		if !reflect.DeepEqual(in, out) {
			return fmt.Errorf("%s: %v became %v", path, in, out)
		}
	}
	return nil
}

// whImage is an image pushed into a test registry.
type whImage struct {
	Ref    string // host/repo:tag
	Digest string
}

// whPushImage pushes a minimal container image (config with entrypoint/cmd, one empty layer)
// into the registry r with oras-go over plain HTTP.
func whPushImage(t testing.TB, r *registrytest.Registry, repo, tag string, entrypoint, cmd []string) whImage {
	t.Helper()
	cfg := ocispec.Image{
		Platform: ocispec.Platform{Architecture: "amd64", OS: "linux"},
		Config:   ocispec.ImageConfig{Entrypoint: entrypoint, Cmd: cmd, User: "65532"},
	}
	layer := make([]byte, 1024) // an empty tar archive
	cfg.RootFS = ocispec.RootFS{Type: "layers", DiffIDs: []digest.Digest{digest.FromBytes(layer)}}
	cfgBytes, _ := json.Marshal(cfg)
	return whPushManifest(t, r, repo, tag, ocispec.MediaTypeImageConfig, cfgBytes, layer)
}

func whRepo(t testing.TB, r *registrytest.Registry, repo string) *remote.Repository {
	t.Helper()
	rp, err := remote.NewRepository(r.Host + "/" + repo)
	if err != nil {
		t.Fatal(err)
	}
	rp.PlainHTTP = true
	if r.Username != "" {
		rp.Client = &auth.Client{Credential: auth.StaticCredential(r.Host, auth.Credential{Username: r.Username, Password: r.Password})}
	}
	return rp
}

func whPushManifest(t testing.TB, r *registrytest.Registry, repo, tag, configType string, cfgBytes, layer []byte) whImage {
	t.Helper()
	ctx := context.Background()
	rp := whRepo(t, r, repo)
	cfgDesc := content.NewDescriptorFromBytes(configType, cfgBytes)
	layerDesc := content.NewDescriptorFromBytes(ocispec.MediaTypeImageLayer, layer)
	for _, b := range []struct {
		d ocispec.Descriptor
		c []byte
	}{{cfgDesc, cfgBytes}, {layerDesc, layer}} {
		if err := rp.Push(ctx, b.d, bytes.NewReader(b.c)); err != nil {
			t.Fatalf("push blob: %v", err)
		}
	}
	m := ocispec.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest, Config: cfgDesc, Layers: []ocispec.Descriptor{layerDesc}}
	mb, _ := json.Marshal(m)
	mDesc := content.NewDescriptorFromBytes(ocispec.MediaTypeImageManifest, mb)
	if err := rp.PushReference(ctx, mDesc, bytes.NewReader(mb), tag); err != nil {
		t.Fatalf("push manifest: %v", err)
	}
	return whImage{Ref: r.Host + "/" + repo + ":" + tag, Digest: mDesc.Digest.String()}
}

// whPushIndex pushes an image index over the given manifests (by digest) under tag.
func whPushIndex(t testing.TB, r *registrytest.Registry, repo, tag string, platforms map[string]whImage) whImage {
	t.Helper()
	ctx := context.Background()
	rp := whRepo(t, r, repo)
	idx := ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageIndex}
	keys := make([]string, 0, len(platforms))
	for k := range platforms {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, arch := range keys {
		img := platforms[arch]
		desc, err := rp.Resolve(ctx, img.Digest)
		if err != nil {
			t.Fatal(err)
		}
		os, a, _ := strings.Cut(arch, "/")
		desc.Platform = &ocispec.Platform{OS: os, Architecture: a}
		idx.Manifests = append(idx.Manifests, desc)
	}
	ib, _ := json.Marshal(idx)
	d := content.NewDescriptorFromBytes(ocispec.MediaTypeImageIndex, ib)
	if err := rp.PushReference(ctx, d, bytes.NewReader(ib), tag); err != nil {
		t.Fatalf("push index: %v", err)
	}
	return whImage{Ref: r.Host + "/" + repo + ":" + tag, Digest: d.Digest.String()}
}

// whFakeImages is an ImageResolver for tests that need no registry.
type whFakeImages struct {
	Entrypoint, Cmd []string
	Err             error
	Calls           int
}

func (f *whFakeImages) Command(_ context.Context, _, _ string, _ []string) ([]string, []string, error) {
	f.Calls++
	return f.Entrypoint, f.Cmd, f.Err
}

// whConfig parses a webhook config for tests.
func whConfig(t testing.TB, yamlText string) *inject.Config {
	t.Helper()
	cfg, err := inject.ParseConfig([]byte(yamlText))
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	return cfg
}

// whBaseConfig is the configuration the chart renders for release "cache" in namespace "jobs":
// the golden cases' shared config file (ci/bench starts its webhook from it too).
var whBaseConfig = func() string {
	b, err := os.ReadFile(filepath.Join("testdata", "golden", "config.yaml"))
	if err != nil {
		panic(err)
	}
	return string(b)
}()

func metav1TypeMeta(apiVersion, kind string) metav1.TypeMeta {
	return metav1.TypeMeta{APIVersion: apiVersion, Kind: kind}
}

// whCheckCredentials: credentials come from a secretKeyRef only — of the auth Secret when relative
// references go to the cache, of the oras-env Secret with the registry annotation — and only in a
// container with a reference to ORAS_CACHE_REGISTRY (relative, or naming that host): a container
// whose references all name other hosts holds none. ORAS_CACHE_PLAIN_HTTP_REGISTRIES is the
// chart's list, present only when it is not empty.
func whCheckCredentials(t testing.TB, cfg *inject.Config, plan *inject.Plan, c corev1.Container) {
	t.Helper()
	env := map[string]corev1.EnvVar{}
	for _, e := range c.Env {
		env[e.Name] = e
	}
	registry, secret := cfg.Registry.Host, cfg.Registry.AuthSecret
	if plan.Registry != "" {
		registry, secret = plan.Registry, plan.OrasEnv
	}
	if env[contract.EnvRegistry].Value != registry {
		t.Fatalf("%s: %s=%q, want %q", c.Name, contract.EnvRegistry, env[contract.EnvRegistry].Value, registry)
	}
	usesRegistry := false
	for i, a := range c.Args {
		if (a == "--input" || a == "--output") && i+1 < len(c.Args) {
			if host, _ := contract.SplitHost(c.Args[i+1]); host == "" || host == registry {
				usesRegistry = true
			}
		}
	}
	for _, name := range []string{contract.EnvUsername, contract.EnvPassword} {
		e, ok := env[name]
		if !ok {
			if usesRegistry && secret != "" {
				t.Fatalf("%s: no %s, but it uses %s", c.Name, name, registry)
			}
			continue
		}
		if !usesRegistry {
			t.Fatalf("%s: holds %s but none of its references is on %s (args %q)", c.Name, name, registry, c.Args)
		}
		if e.Value != "" || e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil || e.ValueFrom.SecretKeyRef.Name != secret {
			t.Fatalf("%s: credential %s not from a secretKeyRef of %q", c.Name, name, secret)
		}
	}
	if got, want := env[contract.EnvPlainHTTPRegistries].Value, strings.Join(cfg.PlainHTTPRegistries, ","); got != want {
		t.Fatalf("%s: %s=%q, want %q", c.Name, contract.EnvPlainHTTPRegistries, got, want)
	}
	if _, ok := env[contract.EnvPlainHTTPRegistries]; ok && len(cfg.PlainHTTPRegistries) == 0 {
		t.Fatalf("%s: empty %s injected", c.Name, contract.EnvPlainHTTPRegistries)
	}
}
