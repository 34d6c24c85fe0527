package chart

// Decoding every manifest the chart renders (through testkit) strictly.

import (
	"bytes"
	"encoding/json"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	admissionv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/converged-computing/oras-cache/tests/go/testkit"
)

// Minimal strict mirrors of the two cert-manager kinds the chart renders (no Go module of
// cert-manager in this repository); unknown fields still fail.
type cmIssuerRef struct {
	Name  string `json:"name"`
	Kind  string `json:"kind"`
	Group string `json:"group"`
}

type cmCertificate struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		SecretName     string `json:"secretName"`
		SecretTemplate struct {
			Labels map[string]string `json:"labels"`
		} `json:"secretTemplate"`
		CommonName  string   `json:"commonName"`
		DNSNames    []string `json:"dnsNames"`
		Duration    string   `json:"duration"`
		RenewBefore string   `json:"renewBefore"`
		PrivateKey  struct {
			Algorithm      string `json:"algorithm"`
			Size           int    `json:"size"`
			RotationPolicy string `json:"rotationPolicy"`
		} `json:"privateKey"`
		Usages    []string    `json:"usages"`
		IssuerRef cmIssuerRef `json:"issuerRef"`
	} `json:"spec"`
}

type cmIssuer struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		SelfSigned *struct{} `json:"selfSigned"`
	} `json:"spec"`
}

// chartObjects is one rendering, decoded.
type chartObjects struct {
	Release, Namespace string
	Values             map[string]any // the user values of this rendering
	Notes              string
	All                []metav1.Object
	Kinds              map[metav1.Object]string
	Deployments        map[string]*appsv1.Deployment
	Services           map[string]*corev1.Service
	ConfigMaps         map[string]*corev1.ConfigMap
	Secrets            map[string]*corev1.Secret
	PVCs               map[string]*corev1.PersistentVolumeClaim
	ServiceAccounts    map[string]*corev1.ServiceAccount
	Roles              map[string]*rbacv1.Role
	RoleBindings       map[string]*rbacv1.RoleBinding
	PDBs               map[string]*policyv1.PodDisruptionBudget
	NetworkPolicies    map[string]*networkingv1.NetworkPolicy
	MWCs               map[string]*admissionv1.MutatingWebhookConfiguration
	Certificates       map[string]*cmCertificate
	Issuers            map[string]*cmIssuer
	TestPods           map[string]*corev1.Pod
	CronJobs           map[string]*batchv1.CronJob
}

func newChartObjects() *chartObjects {
	return &chartObjects{
		Kinds:           map[metav1.Object]string{},
		Deployments:     map[string]*appsv1.Deployment{},
		Services:        map[string]*corev1.Service{},
		ConfigMaps:      map[string]*corev1.ConfigMap{},
		Secrets:         map[string]*corev1.Secret{},
		PVCs:            map[string]*corev1.PersistentVolumeClaim{},
		ServiceAccounts: map[string]*corev1.ServiceAccount{},
		Roles:           map[string]*rbacv1.Role{},
		RoleBindings:    map[string]*rbacv1.RoleBinding{},
		PDBs:            map[string]*policyv1.PodDisruptionBudget{},
		NetworkPolicies: map[string]*networkingv1.NetworkPolicy{},
		MWCs:            map[string]*admissionv1.MutatingWebhookConfiguration{},
		Certificates:    map[string]*cmCertificate{},
		Issuers:         map[string]*cmIssuer{},
		TestPods:        map[string]*corev1.Pod{},
		CronJobs:        map[string]*batchv1.CronJob{},
	}
}

// chartSplit splits a multi-document YAML stream into non-empty documents.
func chartSplit(stream string) []string {
	var docs []string
	for _, d := range strings.Split("\n"+stream, "\n---") {
		if strings.TrimSpace(chStripComments(d)) != "" {
			docs = append(docs, d)
		}
	}
	return docs
}

func chStripComments(doc string) string {
	var b strings.Builder
	for _, l := range strings.Split(doc, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(l), "#") {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}

// chStrictDecode decodes one YAML document into out; unknown or duplicate fields fail.
func chStrictDecode(doc string, out any) error {
	js, err := yaml.YAMLToJSONStrict([]byte(doc))
	if err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.DisallowUnknownFields()
	return dec.Decode(out)
}

// chartRender renders and decodes; it fails the test on any error.
func chartRender(t *testing.T, release, namespace string, vals map[string]any) *chartObjects {
	t.Helper()
	manifest, hooks, notes, err := testkit.ChartInstall(t, release, namespace, vals)
	require.NoError(t, err)
	objs := newChartObjects()
	objs.Release, objs.Namespace, objs.Values, objs.Notes = release, namespace, vals, notes
	docs := append(chartSplit(manifest), hooks...)
	for _, doc := range docs {
		var tm metav1.TypeMeta
		require.NoError(t, yaml.Unmarshal([]byte(doc), &tm))
		key := tm.APIVersion + "/" + tm.Kind
		var obj metav1.Object
		var add func()
		switch key {
		case "apps/v1/Deployment":
			o := &appsv1.Deployment{}
			obj, add = o, func() { objs.Deployments[o.Name] = o }
		case "v1/Service":
			o := &corev1.Service{}
			obj, add = o, func() { objs.Services[o.Name] = o }
		case "v1/ConfigMap":
			o := &corev1.ConfigMap{}
			obj, add = o, func() { objs.ConfigMaps[o.Name] = o }
		case "v1/Secret":
			o := &corev1.Secret{}
			obj, add = o, func() { objs.Secrets[o.Name] = o }
		case "v1/PersistentVolumeClaim":
			o := &corev1.PersistentVolumeClaim{}
			obj, add = o, func() { objs.PVCs[o.Name] = o }
		case "v1/ServiceAccount":
			o := &corev1.ServiceAccount{}
			obj, add = o, func() { objs.ServiceAccounts[o.Name] = o }
		case "rbac.authorization.k8s.io/v1/Role":
			o := &rbacv1.Role{}
			obj, add = o, func() { objs.Roles[o.Name] = o }
		case "rbac.authorization.k8s.io/v1/RoleBinding":
			o := &rbacv1.RoleBinding{}
			obj, add = o, func() { objs.RoleBindings[o.Name] = o }
		case "policy/v1/PodDisruptionBudget":
			o := &policyv1.PodDisruptionBudget{}
			obj, add = o, func() { objs.PDBs[o.Name] = o }
		case "networking.k8s.io/v1/NetworkPolicy":
			o := &networkingv1.NetworkPolicy{}
			obj, add = o, func() { objs.NetworkPolicies[o.Name] = o }
		case "admissionregistration.k8s.io/v1/MutatingWebhookConfiguration":
			o := &admissionv1.MutatingWebhookConfiguration{}
			obj, add = o, func() { objs.MWCs[o.Name] = o }
		case "cert-manager.io/v1/Certificate":
			o := &cmCertificate{}
			obj, add = o, func() { objs.Certificates[o.Name] = o }
		case "cert-manager.io/v1/Issuer":
			o := &cmIssuer{}
			obj, add = o, func() { objs.Issuers[o.Name] = o }
		case "batch/v1/CronJob":
			o := &batchv1.CronJob{}
			obj, add = o, func() { objs.CronJobs[o.Name] = o }
		case "v1/Pod":
			o := &corev1.Pod{}
			obj, add = o, func() { objs.TestPods[o.Name] = o }
		default:
			t.Fatalf("unexpected kind %s in the rendering:\n%s", key, doc)
		}
		require.NoError(t, chStrictDecode(doc, obj), "strict decoding of %s:\n%s", key, doc)
		add()
		objs.All = append(objs.All, obj)
		objs.Kinds[obj] = tm.Kind
	}
	return objs
}

func chSortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
