package chart

// Cross-resource invariants of the chart over a matrix of values: what a cluster would only
// reveal at run time (a webhook path the server does not serve, a caBundle that did not sign
// the serving certificate, a Secret key nobody created, a selector that selects nothing).

import (
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"net"
	"path"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	admissionv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/yaml"

	"github.com/converged-computing/oras-cache/webhook/inject"

	"github.com/converged-computing/oras-cache/tests/go/testkit"
)

type chartCase struct {
	name, release, namespace string
	files                    []string
	sets                     []string
}

func chartMatrix(t *testing.T) []chartCase {
	cases := []chartCase{
		{name: "defaults", release: "r", namespace: "ns"},
		{name: "release-contains-chart-name", release: "team-oras-cache", namespace: "team"},
		{name: "longest-release-name", release: "a-release-name-that-is-as-long-as-helm-allows-53-char", namespace: "a-namespace-with-a-rather-long-name-too"},
		// YAML 1.1 booleans as names must stay strings in every manifest and in the webhook config.
		{name: "boolean-looking-names", release: "on", namespace: "no"},
		{name: "overrides", release: "r", namespace: "ns", sets: []string{"nameOverride=cache,fullnameOverride=wf-cache"}},
		{name: "auth-off", release: "r", namespace: "ns", sets: []string{"auth.enabled=false"}},
		{name: "auth-existing-secret", release: "r", namespace: "ns", sets: []string{"auth.existingSecret=my-creds"}},
		{name: "persistence", release: "r", namespace: "ns", sets: []string{"registry.persistence.enabled=true,registry.persistence.keepOnUninstall=true"}},
		{name: "persistence-existing-claim", release: "r", namespace: "ns", sets: []string{"registry.persistence.enabled=true,registry.persistence.existingClaim=data"}},
		{name: "headless-other-port", release: "r", namespace: "ns", sets: []string{"registry.service.headless=true,registry.service.port=5050,clusterDomain=example.org"}},
		{name: "tls-cert-manager", release: "r", namespace: "ns", sets: []string{"webhook.tls.mode=certManager"}},
		{name: "tls-cert-manager-cluster-issuer", release: "r", namespace: "ns", sets: []string{"webhook.tls.mode=certManager,webhook.tls.certManager.issuerRef.name=corp,webhook.tls.certManager.issuerRef.kind=ClusterIssuer"}},
		{name: "failure-policy-ignore-one-replica-no-pdb", release: "r", namespace: "ns", sets: []string{"webhook.failurePolicy=Ignore,webhook.replicas=1,webhook.pdb.enabled=false"}},
		{name: "custom-path-and-ports", release: "r", namespace: "ns", sets: []string{"webhook.path=/oras/mutate,webhook.port=10250,webhook.metricsPort=9090,webhook.healthPort=9091"}},
		{name: "no-networkpolicy-no-tests", release: "r", namespace: "ns", sets: []string{"networkPolicy.enabled=false,tests.enabled=false"}},
	}
	for _, f := range testkit.ChartExampleValuesFiles(t) {
		cases = append(cases, chartCase{name: "example-" + path.Base(f), release: "wf", namespace: "science", files: []string{f}})
	}
	return cases
}

func TestChartInvariants(t *testing.T) {
	for _, c := range chartMatrix(t) {
		t.Run(c.name, func(t *testing.T) {
			vals := testkit.ChartValues(t, c.files, c.sets...)
			o := chartRender(t, c.release, c.namespace, vals)
			eff := testkit.ChartEffectiveValues(t, vals)
			chCheckMetadata(t, o)
			chCheckSelectors(t, o)
			cfg := chCheckWebhookWiring(t, o, eff)
			chCheckTLS(t, o, eff)
			chCheckSecretRefs(t, o, eff, cfg)
			chCheckVolumes(t, o)
			chCheckRegistry(t, o, eff)
			chCheckNetworkPolicy(t, o, eff)
		})
	}
}

func chVal(m map[string]any, dotted string) any {
	var cur any = m
	for _, k := range strings.Split(dotted, ".") {
		mm, ok := cur.(map[string]any)
		if !ok {
			return nil
		}
		cur = mm[k]
	}
	return cur
}

func chStr(m map[string]any, dotted string) string {
	v := chVal(m, dotted)
	if v == nil {
		return ""
	}
	return fmt.Sprint(v)
}

func chBool(m map[string]any, dotted string) bool { v, _ := chVal(m, dotted).(bool); return v }

func chInt(t *testing.T, m map[string]any, dotted string) int {
	n, err := strconv.Atoi(chStr(m, dotted))
	require.NoError(t, err, dotted)
	return n
}

var chartLabelKeys = []string{
	"app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/version",
	"app.kubernetes.io/component", "app.kubernetes.io/managed-by", "helm.sh/chart",
}

func chCheckMetadata(t *testing.T, o *chartObjects) {
	seen := map[string]bool{}
	for _, obj := range o.All {
		kind := o.Kinds[obj]
		id := kind + "/" + obj.GetName()
		assert.False(t, seen[id], "duplicate %s", id)
		seen[id] = true
		assert.Empty(t, validation.IsDNS1123Subdomain(obj.GetName()), id)
		assert.LessOrEqual(t, len(obj.GetName()), 63, id)
		if kind == "MutatingWebhookConfiguration" {
			assert.Empty(t, obj.GetNamespace(), "%s is cluster-scoped", id)
		} else {
			assert.Equal(t, o.Namespace, obj.GetNamespace(), "%s namespace", id)
		}
		for _, k := range chartLabelKeys {
			assert.NotEmpty(t, obj.GetLabels()[k], "%s label %s", id, k)
		}
		assert.Equal(t, o.Release, obj.GetLabels()["app.kubernetes.io/instance"], id)
		assert.Contains(t, []string{"registry", "webhook", "test", "retention"}, obj.GetLabels()["app.kubernetes.io/component"], id)
	}
	for _, s := range o.Services {
		assert.Empty(t, validation.IsDNS1035Label(s.Name), "Service %s must be a DNS-1035 label", s.Name)
	}
	require.Len(t, o.Deployments, 2)
	require.Len(t, o.MWCs, 1)
}

func chSelector(t *testing.T, ls *metav1.LabelSelector) labels.Selector {
	s, err := metav1.LabelSelectorAsSelector(ls)
	require.NoError(t, err)
	return s
}

// chartPodLabels are the pod templates of the chart: Deployments and the test pod.
func chartPodLabels(o *chartObjects) map[string]map[string]string {
	pods := map[string]map[string]string{}
	for n, d := range o.Deployments {
		pods["deployment/"+n] = d.Spec.Template.Labels
	}
	for n, p := range o.TestPods {
		pods["pod/"+n] = p.Labels
	}
	for n, c := range o.CronJobs {
		pods["cronjob/"+n] = c.Spec.JobTemplate.Spec.Template.Labels
	}
	return pods
}

func chMatching(sel labels.Selector, pods map[string]map[string]string) []string {
	var out []string
	for _, n := range chSortedKeys(pods) {
		if sel.Matches(labels.Set(pods[n])) {
			out = append(out, n)
		}
	}
	return out
}

func chCheckSelectors(t *testing.T, o *chartObjects) {
	pods := chartPodLabels(o)
	for n, d := range o.Deployments {
		sel := chSelector(t, d.Spec.Selector)
		assert.True(t, sel.Matches(labels.Set(d.Spec.Template.Labels)), "Deployment %s selects its own pods", n)
		assert.Equal(t, []string{"deployment/" + n}, chMatching(sel, pods), "Deployment %s selects only its pods", n)
	}
	for n, s := range o.Services {
		require.NotEmpty(t, s.Spec.Selector, n)
		assert.Equal(t, []string{"deployment/" + n}, chMatching(labels.SelectorFromSet(s.Spec.Selector), pods),
			"Service %s selects exactly the Deployment of the same name", n)
	}
	for n, p := range o.PDBs {
		assert.Equal(t, []string{"deployment/" + n}, chMatching(chSelector(t, p.Spec.Selector), pods), "PDB %s", n)
	}
	for n, np := range o.NetworkPolicies {
		assert.Equal(t, []string{"deployment/" + n}, chMatching(chSelector(t, &np.Spec.PodSelector), pods), "NetworkPolicy %s", n)
	}
	// the chart's own pods never reach the webhook
	for _, mwc := range o.MWCs {
		for _, w := range mwc.Webhooks {
			assert.Empty(t, chMatching(chSelector(t, w.ObjectSelector), pods), "objectSelector must exclude the chart's pods")
			assert.True(t, chSelector(t, w.ObjectSelector).Matches(labels.Set{"app": "user", "batch.kubernetes.io/job-name": "j"}), "user pods pass the objectSelector")
			assert.True(t, chSelector(t, w.NamespaceSelector).Matches(labels.Set{"kubernetes.io/metadata.name": o.Namespace}))
			assert.False(t, chSelector(t, w.NamespaceSelector).Matches(labels.Set{"kubernetes.io/metadata.name": o.Namespace + "-other"}))
		}
	}
}

func chComponent(o *chartObjects, comp string) *appsv1.Deployment {
	for _, d := range o.Deployments {
		if d.Labels["app.kubernetes.io/component"] == comp {
			return d
		}
	}
	return nil
}

func chServicePortTarget(t *testing.T, svc *corev1.Service, port int32, pod *corev1.PodSpec) (container *corev1.Container, containerPort int32) {
	for _, sp := range svc.Spec.Ports {
		if sp.Port != port {
			continue
		}
		for i := range pod.Containers {
			c := &pod.Containers[i]
			for _, cp := range c.Ports {
				if (sp.TargetPort.Type == intstr.String && sp.TargetPort.StrVal == cp.Name) ||
					(sp.TargetPort.Type == intstr.Int && sp.TargetPort.IntVal == cp.ContainerPort) {
					return c, cp.ContainerPort
				}
			}
		}
	}
	t.Fatalf("Service %s port %d reaches no container port", svc.Name, port)
	return nil, 0
}

// chCheckWebhookWiring: MWC → Service → container port = server.port, path = server.path; the
// ConfigMap parses with the webhook's own strict loader.
func chCheckWebhookWiring(t *testing.T, o *chartObjects, eff map[string]any) *inject.Config {
	wd := chComponent(o, "webhook")
	require.NotNil(t, wd)
	var mwc *admissionv1.MutatingWebhookConfiguration
	for _, m := range o.MWCs {
		mwc = m
	}
	require.Len(t, mwc.Webhooks, 1)
	w := mwc.Webhooks[0]
	ref := w.ClientConfig.Service
	require.NotNil(t, ref, "webhook called through its Service")
	assert.Nil(t, w.ClientConfig.URL)
	assert.Equal(t, o.Namespace, ref.Namespace)
	svc := o.Services[ref.Name]
	require.NotNil(t, svc, "MWC names Service %s, which the chart renders", ref.Name)
	require.NotNil(t, ref.Port)
	c, cport := chServicePortTarget(t, svc, *ref.Port, &wd.Spec.Template.Spec)

	// the config file the container reads
	require.Equal(t, []string{"--config", "/etc/oras-cache/config.yaml"}, c.Args)
	cmName := ""
	for _, v := range wd.Spec.Template.Spec.Volumes {
		if v.ConfigMap != nil {
			cmName = v.ConfigMap.Name
		}
	}
	mounted := false
	for _, m := range c.VolumeMounts {
		if m.MountPath == "/etc/oras-cache/config.yaml" && m.SubPath == "config.yaml" {
			mounted = true
		}
	}
	assert.True(t, mounted, "config.yaml mounted at /etc/oras-cache/config.yaml")
	cm := o.ConfigMaps[cmName]
	require.NotNil(t, cm, "webhook ConfigMap %q rendered", cmName)
	cfg, err := inject.ParseConfig([]byte(cm.Data["config.yaml"]))
	require.NoError(t, err, "the webhook's own strict loader accepts the chart's config:\n%s", cm.Data["config.yaml"])

	assert.Equal(t, o.Release, cfg.CacheName)
	assert.Equal(t, o.Namespace, cfg.Namespace)
	assert.Equal(t, int(cport), cfg.Server.Port, "Service → container port is the port the server listens on")
	require.NotNil(t, ref.Path)
	assert.Equal(t, *ref.Path, cfg.Server.Path, "the MWC path is the path the server serves")
	assert.Equal(t, chStr(eff, "webhook.path"), cfg.Server.Path)

	// health probes hit the health address of the config
	_, hport, err := net.SplitHostPort(cfg.Server.HealthAddr)
	require.NoError(t, err)
	for _, p := range []*corev1.Probe{c.ReadinessProbe, c.LivenessProbe} {
		require.NotNil(t, p)
		require.NotNil(t, p.HTTPGet)
		assert.Equal(t, hport, strconv.Itoa(int(chNamedPort(t, c, p.HTTPGet.Port))))
	}
	assert.Equal(t, "/readyz", c.ReadinessProbe.HTTPGet.Path)
	assert.Equal(t, "/healthz", c.LivenessProbe.HTTPGet.Path)

	// TLS files where the server looks for them
	tlsMounted := false
	for _, m := range c.VolumeMounts {
		if m.MountPath == cfg.Server.CertDir {
			tlsMounted = true
		}
	}
	assert.True(t, tlsMounted, "certDir %s mounted", cfg.Server.CertDir)

	// the registry host the injected containers use is the registry Service
	rsvc := o.Services[chComponent(o, "registry").Name]
	require.NotNil(t, rsvc)
	wantHost := fmt.Sprintf("%s.%s.svc.%s:%d", rsvc.Name, o.Namespace, chStr(eff, "clusterDomain"), rsvc.Spec.Ports[0].Port)
	assert.Equal(t, wantHost, cfg.Registry.Host)
	assert.True(t, cfg.Registry.PlainHTTP)
	assert.Equal(t, chStr(eff, "sidecar.image.repository")+":"+testkit.Or(chStr(eff, "sidecar.image.tag"), testkit.ChartLoad(t).Metadata.AppVersion), cfg.Sidecar.Image)

	// admission scope and policy
	assert.Equal(t, admissionv1.FailurePolicyType(chStr(eff, "webhook.failurePolicy")), *w.FailurePolicy)
	assert.Equal(t, admissionv1.SideEffectClassNone, *w.SideEffects)
	assert.Equal(t, int32(chInt(t, eff, "webhook.timeoutSeconds")), *w.TimeoutSeconds)
	assert.Equal(t, []string{"v1"}, w.AdmissionReviewVersions)
	require.Len(t, w.Rules, 1)
	assert.Equal(t, []admissionv1.OperationType{admissionv1.Create}, w.Rules[0].Operations)
	assert.Equal(t, []string{"pods"}, w.Rules[0].Resources)
	require.Len(t, w.MatchConditions, 1)
	assert.Equal(t, strings.TrimSuffix(chTrunc(o.Namespace+"-"+chartFullname(o, eff), 63), "-"), mwc.Name)

	// the webhook may read Secrets by name in its namespace, nothing more
	sa := wd.Spec.Template.Spec.ServiceAccountName
	require.NotNil(t, o.ServiceAccounts[sa])
	bound := false
	for _, rb := range o.RoleBindings {
		for _, s := range rb.Subjects {
			if s.Kind == "ServiceAccount" && s.Name == sa && s.Namespace == o.Namespace {
				bound = true
				role := o.Roles[rb.RoleRef.Name]
				require.NotNil(t, role, "RoleBinding names a rendered Role")
				require.Len(t, role.Rules, 1)
				assert.Equal(t, []string{"secrets"}, role.Rules[0].Resources)
				assert.Equal(t, []string{"get"}, role.Rules[0].Verbs)
			}
		}
	}
	assert.True(t, bound, "the webhook ServiceAccount is bound to its Role")
	return cfg
}

func chTrunc(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// chartFullname recomputes the fullname rule of design.md.
func chartFullname(o *chartObjects, eff map[string]any) string {
	if f := chStr(eff, "fullnameOverride"); f != "" {
		return strings.TrimSuffix(chTrunc(f, 63), "-")
	}
	name := testkit.Or(chStr(eff, "nameOverride"), "oras-cache")
	if strings.Contains(o.Release, name) {
		return strings.TrimSuffix(chTrunc(o.Release, 63), "-")
	}
	return strings.TrimSuffix(chTrunc(o.Release+"-"+name, 63), "-")
}

func chNamedPort(t *testing.T, c *corev1.Container, p intstr.IntOrString) int32 {
	if p.Type == intstr.Int {
		return p.IntVal
	}
	for _, cp := range c.Ports {
		if cp.Name == p.StrVal {
			return cp.ContainerPort
		}
	}
	t.Fatalf("container %s has no port named %s", c.Name, p.StrVal)
	return 0
}

func chWebhookDNSNames(o *chartObjects, svc, domain string) []string {
	return []string{svc, svc + "." + o.Namespace, svc + "." + o.Namespace + ".svc", svc + "." + o.Namespace + ".svc." + domain}
}

func chParseCert(t *testing.T, pemBytes []byte) *x509.Certificate {
	block, _ := pem.Decode(pemBytes)
	require.NotNil(t, block, "PEM")
	c, err := x509.ParseCertificate(block.Bytes)
	require.NoError(t, err)
	return c
}

// chCheckTLS: in mode helm the caBundle is the CA that signed the serving certificate, whose SANs
// cover every Service DNS name; in certManager the Certificate names the same Secret and the
// cainjector annotation points at it; in secret the user's Secret and caBundle are used.
func chCheckTLS(t *testing.T, o *chartObjects, eff map[string]any) {
	wd := chComponent(o, "webhook")
	var tlsSecret string
	for _, v := range wd.Spec.Template.Spec.Volumes {
		if v.Name == "tls" {
			tlsSecret = v.Secret.SecretName
		}
	}
	var mwc *admissionv1.MutatingWebhookConfiguration
	for _, m := range o.MWCs {
		mwc = m
	}
	w := mwc.Webhooks[0]
	svc := w.ClientConfig.Service.Name
	names := chWebhookDNSNames(o, svc, chStr(eff, "clusterDomain"))
	switch mode := chStr(eff, "webhook.tls.mode"); mode {
	case "helm":
		s := o.Secrets[tlsSecret]
		require.NotNil(t, s, "the mounted TLS Secret %s is rendered", tlsSecret)
		assert.Equal(t, corev1.SecretTypeTLS, s.Type)
		ca := chParseCert(t, s.Data["ca.crt"])
		leaf := chParseCert(t, s.Data["tls.crt"])
		assert.Equal(t, s.Data["ca.crt"], w.ClientConfig.CABundle, "caBundle is the Secret's CA")
		assert.True(t, ca.IsCA)
		require.NoError(t, leaf.CheckSignatureFrom(ca), "the CA signed the serving certificate")
		pool := x509.NewCertPool()
		pool.AddCert(ca)
		for _, n := range names {
			_, err := leaf.Verify(x509.VerifyOptions{DNSName: n, Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
			assert.NoError(t, err, "serving certificate valid for %s", n)
		}
		block, _ := pem.Decode(s.Data["tls.key"])
		require.NotNil(t, block, "tls.key is PEM")
		key, err := x509.ParsePKCS1PrivateKey(block.Bytes)
		require.NoError(t, err)
		assert.True(t, key.PublicKey.Equal(leaf.PublicKey), "tls.key matches tls.crt")
		assert.Empty(t, mwc.Annotations["cert-manager.io/inject-ca-from"])
	case "certManager":
		assert.Empty(t, w.ClientConfig.CABundle, "no caBundle templated (the cainjector owns it)")
		require.Len(t, o.Certificates, 1)
		for _, c := range o.Certificates {
			assert.Equal(t, o.Namespace+"/"+c.Name, mwc.Annotations["cert-manager.io/inject-ca-from"])
			assert.Equal(t, tlsSecret, c.Spec.SecretName, "the Deployment mounts the Certificate's Secret")
			assert.Subset(t, c.Spec.DNSNames, names)
			if n := chStr(eff, "webhook.tls.certManager.issuerRef.name"); n != "" {
				assert.Equal(t, n, c.Spec.IssuerRef.Name)
				assert.Empty(t, o.Issuers)
			} else {
				require.NotNil(t, o.Issuers[c.Spec.IssuerRef.Name], "the Issuer is rendered")
				assert.NotNil(t, o.Issuers[c.Spec.IssuerRef.Name].Spec.SelfSigned)
			}
		}
		assert.Nil(t, o.Secrets[tlsSecret], "cert-manager writes the Secret")
	case "secret":
		assert.Equal(t, chStr(eff, "webhook.tls.secret.name"), tlsSecret)
		assert.Nil(t, o.Secrets[tlsSecret], "the user's Secret is not rendered")
		want, err := base64.StdEncoding.DecodeString(chStr(eff, "webhook.tls.secret.caBundle"))
		require.NoError(t, err)
		assert.Equal(t, want, w.ClientConfig.CABundle)
		chParseCert(t, w.ClientConfig.CABundle)
	default:
		t.Fatalf("mode %q", mode)
	}
}

type chSecretRef struct{ from, name, key string }

func chPodSecretRefs(from string, spec *corev1.PodSpec) []chSecretRef {
	var refs []chSecretRef
	for _, c := range append(append([]corev1.Container{}, spec.InitContainers...), spec.Containers...) {
		for _, e := range c.Env {
			if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
				refs = append(refs, chSecretRef{from + " env " + e.Name, e.ValueFrom.SecretKeyRef.Name, e.ValueFrom.SecretKeyRef.Key})
			}
		}
	}
	for _, v := range spec.Volumes {
		if v.Secret != nil {
			for _, it := range v.Secret.Items {
				refs = append(refs, chSecretRef{from + " volume " + v.Name, v.Secret.SecretName, it.Key})
			}
		}
	}
	return refs
}

// chCheckSecretRefs: every Secret key a pod or the webhook config refers to exists in a Secret
// the chart renders, or the Secret is one the user named in values (existingSecret, own TLS).
func chCheckSecretRefs(t *testing.T, o *chartObjects, eff map[string]any, cfg *inject.Config) {
	var refs []chSecretRef
	for n, d := range o.Deployments {
		refs = append(refs, chPodSecretRefs("Deployment "+n, &d.Spec.Template.Spec)...)
	}
	for n, p := range o.TestPods {
		refs = append(refs, chPodSecretRefs("Pod "+n, &p.Spec)...)
	}
	for n, c := range o.CronJobs {
		refs = append(refs, chPodSecretRefs("CronJob "+n, &c.Spec.JobTemplate.Spec.Template.Spec)...)
	}
	if cfg.Registry.AuthSecret != "" {
		refs = append(refs, chSecretRef{"webhook config", cfg.Registry.AuthSecret, "username"}, chSecretRef{"webhook config", cfg.Registry.AuthSecret, "password"})
	}
	external := map[string]bool{}
	if s := chStr(eff, "auth.existingSecret"); s != "" {
		external[s] = true
	}
	switch chStr(eff, "webhook.tls.mode") {
	case "secret":
		external[chStr(eff, "webhook.tls.secret.name")] = true
	case "certManager":
		for _, c := range o.Certificates {
			external[c.Spec.SecretName] = true // tls.crt, tls.key, ca.crt written by cert-manager
		}
	}
	if s := chStr(eff, "webhook.clientAuth.caSecret"); s != "" && chBool(eff, "webhook.clientAuth.enabled") {
		external[s] = true // ca.crt: the CA of the API server's client certificate
	}
	require.NotEmpty(t, refs)
	for _, r := range refs {
		if external[r.name] {
			assert.Contains(t, []string{"username", "password", "htpasswd", "tls.crt", "tls.key", "ca.crt"}, r.key, "%s: key of a user Secret is documented", r.from)
			continue
		}
		s := o.Secrets[r.name]
		if assert.NotNil(t, s, "%s refers to Secret %s, which the chart does not render", r.from, r.name) {
			assert.Contains(t, s.Data, r.key, "%s refers to key %s of Secret %s", r.from, r.key, r.name)
		}
	}
	if chBool(eff, "auth.enabled") {
		assert.NotEmpty(t, cfg.Registry.AuthSecret, "auth on: the webhook hands the credentials to injected containers")
	} else {
		assert.Empty(t, cfg.Registry.AuthSecret)
	}
}

// chCheckVolumes: ConfigMaps and claims that pods mount exist (or are the user's existingClaim).
func chCheckVolumes(t *testing.T, o *chartObjects) {
	for n, d := range o.Deployments {
		spec := d.Spec.Template.Spec
		vols := map[string]bool{}
		for _, v := range spec.Volumes {
			vols[v.Name] = true
			if v.ConfigMap != nil {
				assert.NotNil(t, o.ConfigMaps[v.ConfigMap.Name], "%s mounts ConfigMap %s", n, v.ConfigMap.Name)
			}
			if v.PersistentVolumeClaim != nil && o.Values != nil {
				if ec := chStr(o.Values, "registry.persistence.existingClaim"); ec != "" {
					assert.Equal(t, ec, v.PersistentVolumeClaim.ClaimName)
					assert.Empty(t, o.PVCs)
				} else {
					assert.NotNil(t, o.PVCs[v.PersistentVolumeClaim.ClaimName], "%s mounts claim %s", n, v.PersistentVolumeClaim.ClaimName)
				}
			}
		}
		for _, c := range spec.Containers {
			for _, m := range c.VolumeMounts {
				assert.True(t, vols[m.Name], "%s container %s mounts unknown volume %s", n, c.Name, m.Name)
			}
			sc := c.SecurityContext
			require.NotNil(t, sc, "%s/%s securityContext", n, c.Name)
			assert.False(t, *sc.AllowPrivilegeEscalation)
			assert.True(t, *sc.ReadOnlyRootFilesystem)
			assert.Equal(t, []corev1.Capability{"ALL"}, sc.Capabilities.Drop)
		}
		psc := spec.SecurityContext
		require.NotNil(t, psc)
		assert.True(t, *psc.RunAsNonRoot, "%s runs as non-root", n)
	}
}

// chCheckRegistry: the distribution config agrees with the pod (port, htpasswd file, storage).
func chCheckRegistry(t *testing.T, o *chartObjects, eff map[string]any) {
	rd := chComponent(o, "registry")
	require.NotNil(t, rd)
	c := rd.Spec.Template.Spec.Containers[0]
	// The guard serves the Service port and runs distribution, which listens on 127.0.0.1 only.
	require.Greater(t, len(c.Command), 4, "registry command %q", c.Command)
	assert.Equal(t, []string{"/opt/oras-cache/oras-cache-sidecar", "guard"}, c.Command[:2])
	assert.Equal(t, []string{"--", "registry", "serve", "/etc/distribution/config.yml"}, c.Command[len(c.Command)-4:])
	guardFlags := map[string]string{}
	for _, a := range c.Command[2 : len(c.Command)-4] {
		k, v, _ := strings.Cut(strings.TrimPrefix(a, "--"), "=")
		guardFlags[k] = v
	}
	var cm *corev1.ConfigMap
	mounts := map[string]string{} // mountPath -> volume
	for _, m := range c.VolumeMounts {
		mounts[m.MountPath] = m.Name
	}
	for _, v := range rd.Spec.Template.Spec.Volumes {
		if v.ConfigMap != nil && mounts["/etc/distribution"] == v.Name {
			cm = o.ConfigMaps[v.ConfigMap.Name]
		}
	}
	require.NotNil(t, cm, "registry config mounted at /etc/distribution")
	var conf struct {
		Storage struct {
			Filesystem struct {
				RootDirectory string `json:"rootdirectory"`
			} `json:"filesystem"`
			Delete struct {
				Enabled bool `json:"enabled"`
			} `json:"delete"`
		} `json:"storage"`
		HTTP struct {
			Addr string `json:"addr"`
		} `json:"http"`
		Auth *struct {
			Htpasswd struct {
				Path string `json:"path"`
			} `json:"htpasswd"`
		} `json:"auth"`
	}
	require.NoError(t, yaml.Unmarshal([]byte(cm.Data["config.yml"]), &conf))
	assert.True(t, conf.Storage.Delete.Enabled, "delete enabled so garbage collection can work")
	assert.NotEmpty(t, mounts[conf.Storage.Filesystem.RootDirectory], "storage root is a volume")
	svc := o.Services[rd.Name]
	require.NotNil(t, svc)
	_, port := chServicePortTarget(t, svc, svc.Spec.Ports[0].Port, &rd.Spec.Template.Spec)
	assert.Equal(t, fmt.Sprintf(":%d", port), guardFlags["listen"], "the guard listens on the port the Service targets")
	assert.Equal(t, guardFlags["upstream"], conf.HTTP.Addr, "the guard proxies to the address distribution listens on")
	assert.True(t, strings.HasPrefix(conf.HTTP.Addr, "127.0.0.1:"), "distribution is reachable only through the guard")
	assert.NotEqual(t, fmt.Sprintf("127.0.0.1:%d", port), conf.HTTP.Addr)
	assert.Equal(t, conf.Storage.Filesystem.RootDirectory, guardFlags["root"], "the guard measures distribution's root")
	assert.NotEmpty(t, mounts[path.Dir(guardFlags["config"])], "the guard config %s is mounted", guardFlags["config"])
	assert.NotEmpty(t, mounts[path.Dir(c.Command[0])], "the guard binary %s is on a volume", c.Command[0])
	for _, m := range c.VolumeMounts {
		if m.MountPath == path.Dir(guardFlags["config"]) {
			assert.Empty(t, m.SubPath, "a subPath mount would never see an upgraded config")
		}
	}
	assert.Equal(t, svc.Spec.Ports[0].Port, port, "same port on Service and container (headless works)")
	if chBool(eff, "registry.service.headless") {
		assert.Equal(t, "None", svc.Spec.ClusterIP)
	}
	if chBool(eff, "auth.enabled") {
		require.NotNil(t, conf.Auth, "htpasswd auth configured")
		assert.NotEmpty(t, mounts[path.Dir(conf.Auth.Htpasswd.Path)], "htpasswd file %s is mounted", conf.Auth.Htpasswd.Path)
		assert.Equal(t, "/", c.ReadinessProbe.HTTPGet.Path, "/v2/ answers 401 with auth on")
	} else {
		assert.Nil(t, conf.Auth)
		assert.Equal(t, "/v2/", c.ReadinessProbe.HTTPGet.Path)
	}
	if chBool(eff, "registry.persistence.enabled") {
		assert.Equal(t, appsv1.RecreateDeploymentStrategyType, rd.Spec.Strategy.Type)
		for _, p := range o.PVCs {
			assert.Equal(t, chBool(eff, "registry.persistence.keepOnUninstall"), p.Annotations["helm.sh/resource-policy"] == "keep")
		}
	}
}

func chCheckNetworkPolicy(t *testing.T, o *chartObjects, eff map[string]any) {
	if !chBool(eff, "networkPolicy.enabled") {
		assert.Empty(t, o.NetworkPolicies)
		return
	}
	require.Len(t, o.NetworkPolicies, 2)
	rd := chComponent(o, "registry")
	np := o.NetworkPolicies[rd.Name]
	require.NotNil(t, np)
	require.Len(t, np.Spec.Ingress, 1)
	in := np.Spec.Ingress[0]
	require.NotEmpty(t, in.From)
	same := in.From[0]
	assert.NotNil(t, same.PodSelector)
	assert.Empty(t, same.PodSelector.MatchLabels, "every pod of the namespace")
	assert.Nil(t, same.NamespaceSelector, "only the release namespace")
	require.Len(t, in.Ports, 1)
	assert.Equal(t, "registry", in.Ports[0].Port.StrVal)
	chNamedPort(t, &rd.Spec.Template.Spec.Containers[0], *in.Ports[0].Port)
	for _, pod := range o.TestPods {
		assert.True(t, labels.Everything().Matches(labels.Set(pod.Labels)), "the helm test pod is allowed")
	}
	wd := chComponent(o, "webhook")
	wnp := o.NetworkPolicies[wd.Name]
	require.NotNil(t, wnp)
	require.Len(t, wnp.Spec.Ingress, 1)
	if from, _ := chVal(eff, "networkPolicy.webhookFrom").([]any); len(from) == 0 {
		assert.Empty(t, wnp.Spec.Ingress[0].From, "the API server is not a pod: any source")
	} else {
		assert.Len(t, wnp.Spec.Ingress[0].From, len(from), "networkPolicy.webhookFrom")
	}
	assert.Equal(t, int32(chInt(t, eff, "webhook.port")), chNamedPort(t, &wd.Spec.Template.Spec.Containers[0], *wnp.Spec.Ingress[0].Ports[0].Port))
}

// A configuration change rolls the pods that read it (the webhook reads config.yaml once), and
// only those; an unchanged configuration keeps the checksum (no needless rollout on upgrade).
func TestChartConfigChecksumRollsPods(t *testing.T) {
	sum := func(o *chartObjects, comp string) string {
		d := chComponent(o, comp)
		require.NotNil(t, d)
		s := d.Spec.Template.Annotations["checksum/config"]
		require.Len(t, s, 64)
		return s
	}
	base := chartRender(t, "r", "ns", testkit.ChartValues(t, nil))
	again := chartRender(t, "r", "ns", testkit.ChartValues(t, nil))
	assert.Equal(t, sum(base, "webhook"), sum(again, "webhook"), "deterministic")
	assert.Equal(t, sum(base, "registry"), sum(again, "registry"), "deterministic")

	sidecar := chartRender(t, "r", "ns", testkit.ChartValues(t, nil, "sidecar.timeout=1h"))
	assert.NotEqual(t, sum(base, "webhook"), sum(sidecar, "webhook"), "webhook config changed")
	assert.Equal(t, sum(base, "registry"), sum(sidecar, "registry"))

	reg := chartRender(t, "r", "ns", testkit.ChartValues(t, nil, "registry.logLevel=debug"))
	assert.NotEqual(t, sum(base, "registry"), sum(reg, "registry"), "registry config changed")
	assert.Equal(t, sum(base, "webhook"), sum(reg, "webhook"))
}

// Values the schema cannot relate to each other are refused by the templates, with the keys named.
func TestChartRefusesConflictingPorts(t *testing.T) {
	_, _, _, err := testkit.ChartInstall(t, "r", "ns", testkit.ChartValues(t, nil, "webhook.metricsPort=9443"))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "webhook.port (9443), webhook.metricsPort (9443) and webhook.healthPort (8081) must differ")
}
