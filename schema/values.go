// Package schema is the one typed source of the oras-cache chart's values: `make schema`
// reflects Values into charts/oras-cache/values.schema.json and the README values table.
// Field comments are the descriptions; jsonschema tags give enums, ranges and patterns;
// defaults are read from charts/oras-cache/values.yaml. Every object rejects unknown keys,
// except the free-form Kubernetes objects (resources, securityContext, affinity, ...).
package schema

import "github.com/invopop/jsonschema"

// Object is a free-form Kubernetes object (resources, securityContext, affinity, ...),
// validated by the API server rather than by this schema.
type Object map[string]any

// Values is the root of the chart's values.
type Values struct {
	// Override the chart name used in object names and the app.kubernetes.io/name label.
	NameOverride string `json:"nameOverride" jsonschema:"maxLength=63,pattern=^([a-z0-9]([-a-z0-9]*[a-z0-9])?)?$"`
	// Override the full name (<release>-oras-cache) that every object name starts with.
	FullnameOverride string `json:"fullnameOverride" jsonschema:"maxLength=63,pattern=^([a-z0-9]([-a-z0-9]*[a-z0-9])?)?$"`
	// DNS domain of the cluster, used in the registry address given to pods and in the webhook certificate.
	ClusterDomain string `json:"clusterDomain" jsonschema:"required,minLength=1,pattern=^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"`
	// Image pull secrets of the registry, webhook and test pods.
	ImagePullSecrets []LocalObjectReference `json:"imagePullSecrets"`

	// The cache: a CNCF distribution registry.
	Registry Registry `json:"registry" jsonschema:"required"`
	// Credentials of the registry.
	Auth Auth `json:"auth" jsonschema:"required"`
	// The mutating admission webhook.
	Webhook Webhook `json:"webhook" jsonschema:"required"`
	// The containers the webhook injects into annotated pods.
	Sidecar Sidecar `json:"sidecar" jsonschema:"required"`
	// Registries (host[:port]) other than the cache that are reached over plain HTTP, by the webhook's ENTRYPOINT lookup and by the injected containers (the `registry` annotation, full references) alike. Every other registry is HTTPS, verified against the system roots; list only registries on a network you trust.
	PlainHTTPRegistries []string `json:"plainHTTPRegistries" jsonschema:"uniqueItems=true,pattern=^[A-Za-z0-9.-]+(:[0-9]+)?$"`
	// How the webhook reads an image's ENTRYPOINT/CMD when a pod sets no command.
	EntrypointLookup EntrypointLookup `json:"entrypointLookup" jsonschema:"required"`
	// NetworkPolicies of the registry and the webhook.
	NetworkPolicy NetworkPolicy `json:"networkPolicy" jsonschema:"required"`
	// Retention rules and garbage collection of the cache.
	Retention Retention `json:"retention" jsonschema:"required"`
	// The `helm test` hook.
	Tests Tests `json:"tests" jsonschema:"required"`
}

// Retention decides which tags a collection deletes; garbage collection then frees their blobs.
type Retention struct {
	// Run the collection on schedule (CronJob <fullname>-retention); when false the CronJob is suspended and runs only on demand (`kubectl create job --from=cronjob/<fullname>-retention NAME`).
	Enabled bool `json:"enabled"`
	// Cron schedule of the collection.
	Schedule string `json:"schedule" jsonschema:"required,minLength=9,pattern=^(@(hourly|daily|weekly|monthly|yearly)|\\S+( \\S+){4})$"`
	// Keep the N most recently pushed tags of each repository (0: no count rule).
	KeepLast int `json:"keepLast" jsonschema:"minimum=0"`
	// Keep tags pushed within this Go duration, e.g. 168h ("": no age rule). A tag is deleted only when no rule that is set keeps it; age is the time its tag was last pushed.
	MaxAge string `json:"maxAge" jsonschema:"pattern=^(([0-9]+(\\.[0-9]+)?(ns|us|ms|s|m|h))+)?$"`
	// Repositories (globs such as datasets/*) that retention never touches.
	Exclude []string `json:"exclude" jsonschema:"uniqueItems=true"`
	// Deadline of one collection run (Go duration).
	Timeout string `json:"timeout" jsonschema:"pattern=^([0-9]+(\\.[0-9]+)?(ns|us|ms|s|m|h))+$"`
}

// LocalObjectReference names a Secret in the release namespace.
type LocalObjectReference struct {
	// Name of the Secret.
	Name string `json:"name" jsonschema:"required,minLength=1,maxLength=253,pattern=^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"`
}

// Image of a container.
type Image struct {
	// Image repository, with its registry host.
	Repository string `json:"repository" jsonschema:"required,minLength=1,pattern=^[a-z0-9][a-z0-9._/:-]*[a-z0-9]$"`
	// Image tag.
	Tag string `json:"tag" jsonschema:"pattern=^[A-Za-z0-9_][A-Za-z0-9._-]{0\\,127}$"`
	// Kubernetes imagePullPolicy.
	PullPolicy string `json:"pullPolicy" jsonschema:"enum=IfNotPresent,enum=Always,enum=Never"`
}

// ImageDefaultTag is an Image whose empty tag means the chart appVersion.
type ImageDefaultTag struct {
	// Image repository, with its registry host.
	Repository string `json:"repository" jsonschema:"required,minLength=1,pattern=^[a-z0-9][a-z0-9._/:-]*[a-z0-9]$"`
	// Image tag; "" means the chart appVersion.
	Tag string `json:"tag" jsonschema:"pattern=^([A-Za-z0-9_][A-Za-z0-9._-]{0\\,127})?$"`
	// Kubernetes imagePullPolicy.
	PullPolicy string `json:"pullPolicy" jsonschema:"enum=IfNotPresent,enum=Always,enum=Never"`
}

// Registry is the CNCF distribution Deployment, its Service and storage.
type Registry struct {
	// Registry image; the container runs `registry serve /etc/distribution/config.yml`.
	Image Image `json:"image" jsonschema:"required"`
	// Log level of the registry.
	LogLevel string `json:"logLevel" jsonschema:"enum=error,enum=warn,enum=info,enum=debug"`
	// The registry Service.
	Service RegistryService `json:"service" jsonschema:"required"`
	// Storage of the cache.
	Persistence Persistence `json:"persistence" jsonschema:"required"`
	// sizeLimit of the emptyDir used when persistence is disabled.
	EmptyDirSizeLimit string `json:"emptyDirSizeLimit" jsonschema:"pattern=^[0-9]+(\\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$"`
	// How much the cache may hold (enforced by the guard in front of the registry).
	Capacity Capacity `json:"capacity" jsonschema:"required"`
	// Resources of the registry container.
	Resources Object `json:"resources"`
	// Pod securityContext of the registry.
	PodSecurityContext Object `json:"podSecurityContext"`
	// Container securityContext of the registry.
	SecurityContext Object `json:"securityContext"`
	// Extra env of the registry container (REGISTRY_* variables override its configuration).
	ExtraEnv []Object `json:"extraEnv"`
	// Annotations of the registry pod.
	PodAnnotations map[string]string `json:"podAnnotations"`
	// nodeSelector of the registry pod.
	NodeSelector map[string]string `json:"nodeSelector"`
	// Tolerations of the registry pod.
	Tolerations []Object `json:"tolerations"`
	// Affinity of the registry pod.
	Affinity Object `json:"affinity"`
}

// Capacity bounds the cache.
type Capacity struct {
	// The most the cache may hold (a quantity); a push past it fails at once with "cache full"
	// (HTTP 507). "" means 90% of the volume (emptyDirSizeLimit, or persistence.size); a bound above
	// that is refused (the registry logs why and keeps the previous bound). `helm upgrade` changes it
	// without restarting the registry.
	Bound string `json:"bound" jsonschema:"pattern=^([0-9]+(\\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?)?$"`
}

// RegistryService is the Service in front of the registry.
type RegistryService struct {
	// Port of the Service and of the registry container (the same, so a headless Service works).
	Port int `json:"port" jsonschema:"required,minimum=1024,maximum=65535"`
	// Headless Service (clusterIP: None): clients resolve the registry pod IP directly.
	Headless bool `json:"headless"`
	// Annotations of the Service.
	Annotations map[string]string `json:"annotations"`
}

// Persistence of the cache.
type Persistence struct {
	// Keep the cache in a PersistentVolumeClaim; when false, an emptyDir (lost with the pod).
	Enabled bool `json:"enabled"`
	// Use this existing claim instead of creating one.
	ExistingClaim string `json:"existingClaim" jsonschema:"pattern=^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*)?$"`
	// Requested size of the claim.
	Size string `json:"size" jsonschema:"pattern=^[0-9]+(\\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$"`
	// storageClassName of the claim; "" uses the cluster default.
	StorageClass string `json:"storageClass"`
	// Access modes of the claim; without ReadWriteMany the Deployment strategy is Recreate.
	AccessModes []string `json:"accessModes" jsonschema:"minItems=1,uniqueItems=true,enum=ReadWriteOnce,enum=ReadWriteOncePod,enum=ReadWriteMany"`
	// Annotate the claim helm.sh/resource-policy=keep so `helm uninstall` leaves it (and the cache).
	KeepOnUninstall bool `json:"keepOnUninstall"`
}

// Auth of the registry.
type Auth struct {
	// Require htpasswd (bcrypt) credentials; the webhook gives injected containers them through secretKeyRef env.
	Enabled bool `json:"enabled"`
	// User name of the generated credentials (the password is random and kept across upgrades).
	Username string `json:"username" jsonschema:"minLength=1,maxLength=64,pattern=^[A-Za-z0-9._-]+$"`
	// Use this Secret (keys username, password, htpasswd) instead of generating one.
	ExistingSecret string `json:"existingSecret" jsonschema:"pattern=^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*)?$"`
}

// JSONSchemaExtend: an existingSecret with auth disabled is a mistake, not a no-op.
func (Auth) JSONSchemaExtend(s *jsonschema.Schema) {
	s.If = props("enabled", &jsonschema.Schema{Const: false})
	s.If.Required = []string{"enabled"}
	s.Then = props("existingSecret", &jsonschema.Schema{MaxLength: ptr(uint64(0))})
}

// Webhook is the admission webhook Deployment and its MutatingWebhookConfiguration.
type Webhook struct {
	// Replicas of the webhook (with failurePolicy Fail, more than one keeps admission up during a rollout).
	Replicas int `json:"replicas" jsonschema:"required,minimum=1,maximum=10"`
	// Webhook image; "" tag means the chart appVersion.
	Image ImageDefaultTag `json:"image" jsonschema:"required"`
	// URL path the webhook serves; the same value goes to the server and the MutatingWebhookConfiguration.
	Path string `json:"path" jsonschema:"required,pattern=^/[A-Za-z0-9._/-]*$"`
	// Container port of the admission server (the Service listens on 443).
	Port int `json:"port" jsonschema:"required,minimum=1024,maximum=65535"`
	// Container port of the metrics endpoint.
	MetricsPort int `json:"metricsPort" jsonschema:"required,minimum=1024,maximum=65535"`
	// Container port of /healthz and /readyz.
	HealthPort int `json:"healthPort" jsonschema:"required,minimum=1024,maximum=65535"`
	// What the API server does when the webhook cannot be reached; only annotated pods of this release are concerned.
	FailurePolicy string `json:"failurePolicy" jsonschema:"required,enum=Fail,enum=Ignore"`
	// Admission timeout in seconds.
	TimeoutSeconds int `json:"timeoutSeconds" jsonschema:"required,minimum=1,maximum=30"`
	// Serving certificate of the webhook.
	TLS TLS `json:"tls" jsonschema:"required"`
	// Client certificate authentication of the API server to the webhook.
	ClientAuth ClientAuth `json:"clientAuth"`
	// PodDisruptionBudget of the webhook.
	PDB PDB `json:"pdb" jsonschema:"required"`
	// Resources of the webhook container.
	Resources Object `json:"resources"`
	// Pod securityContext of the webhook.
	PodSecurityContext Object `json:"podSecurityContext"`
	// Container securityContext of the webhook.
	SecurityContext Object `json:"securityContext"`
	// Annotations of the webhook pods.
	PodAnnotations map[string]string `json:"podAnnotations"`
	// nodeSelector of the webhook pods.
	NodeSelector map[string]string `json:"nodeSelector"`
	// Tolerations of the webhook pods.
	Tolerations []Object `json:"tolerations"`
	// Affinity of the webhook pods; when empty and replicas > 1, a preferred anti-affinity by node.
	Affinity Object `json:"affinity"`
}

// TLS of the webhook.
type TLS struct {
	// helm: CA and certificate generated by the chart (kept on upgrade); certManager: Issuer + Certificate and cainjector; secret: your own Secret and caBundle.
	Mode string `json:"mode" jsonschema:"required,enum=helm,enum=certManager,enum=secret"`
	// Settings of mode helm.
	Helm TLSHelm `json:"helm"`
	// Settings of mode certManager.
	CertManager TLSCertManager `json:"certManager"`
	// Settings of mode secret.
	Secret TLSSecret `json:"secret"`
}

// JSONSchemaExtend: mode secret needs the Secret name and the caBundle.
func (TLS) JSONSchemaExtend(s *jsonschema.Schema) {
	s.If = props("mode", &jsonschema.Schema{Const: "secret"})
	s.If.Required = []string{"mode"}
	secret := props("name", &jsonschema.Schema{MinLength: ptr(uint64(1))})
	secret.Properties.Set("caBundle", &jsonschema.Schema{MinLength: ptr(uint64(1))})
	secret.Required = []string{"name", "caBundle"}
	s.Then = props("secret", secret)
	s.Then.Required = []string{"secret"}
}

// TLSHelm configures certificates generated by the chart.
type TLSHelm struct {
	// Validity of the generated CA and serving certificate, in days.
	ValidityDays int `json:"validityDays" jsonschema:"minimum=1,maximum=36500"`
}

// TLSCertManager configures the cert-manager Certificate.
type TLSCertManager struct {
	// Issuer of the Certificate; when name is "" the chart creates a self-signed Issuer.
	IssuerRef IssuerRef `json:"issuerRef"`
	// Certificate duration (Go duration).
	Duration string `json:"duration" jsonschema:"pattern=^([0-9]+(\\.[0-9]+)?(ns|us|ms|s|m|h))+$"`
	// Renew this long before expiry (Go duration).
	RenewBefore string `json:"renewBefore" jsonschema:"pattern=^([0-9]+(\\.[0-9]+)?(ns|us|ms|s|m|h))+$"`
}

// IssuerRef names a cert-manager issuer.
type IssuerRef struct {
	// Name of the issuer; "" creates a self-signed Issuer.
	Name string `json:"name" jsonschema:"pattern=^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*)?$"`
	// Kind of the issuer.
	Kind string `json:"kind" jsonschema:"enum=Issuer,enum=ClusterIssuer"`
	// API group of the issuer.
	Group string `json:"group" jsonschema:"minLength=1"`
}

// TLSSecret is a user-provided serving certificate.
type TLSSecret struct {
	// Name of a kubernetes.io/tls Secret (tls.crt, tls.key) valid for the webhook Service DNS names.
	Name string `json:"name" jsonschema:"pattern=^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*)?$"`
	// Base64-encoded PEM of the CA that signed that certificate.
	CABundle string `json:"caBundle" jsonschema:"pattern=^[A-Za-z0-9+/=]*$"`
}

// ClientAuth makes the admission port accept only TLS clients with a certificate of a CA.
type ClientAuth struct {
	// Accept admission requests only from clients presenting a certificate signed by the CA below (the API server, configured with an AdmissionConfiguration; see README). Without it any pod that reaches the webhook Service can submit AdmissionReviews.
	Enabled bool `json:"enabled"`
	// Base64-encoded PEM of the CA that signs the API server's client certificate.
	CABundle string `json:"caBundle" jsonschema:"pattern=^[A-Za-z0-9+/=]*$"`
	// Or the name of a Secret in the release namespace holding that CA under the key ca.crt (read at start: restart the webhook after changing it).
	CASecret string `json:"caSecret" jsonschema:"pattern=^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*)?$"`
}

// JSONSchemaExtend: enabled needs caBundle or caSecret.
func (ClientAuth) JSONSchemaExtend(s *jsonschema.Schema) {
	s.If = props("enabled", &jsonschema.Schema{Const: true})
	s.If.Required = []string{"enabled"}
	bundle := props("caBundle", &jsonschema.Schema{MinLength: ptr(uint64(1))})
	bundle.Required = []string{"caBundle"}
	secret := props("caSecret", &jsonschema.Schema{MinLength: ptr(uint64(1))})
	secret.Required = []string{"caSecret"}
	s.Then = &jsonschema.Schema{AnyOf: []*jsonschema.Schema{bundle, secret}}
}

// PDB is the webhook PodDisruptionBudget.
type PDB struct {
	// Create the PodDisruptionBudget.
	Enabled bool `json:"enabled"`
	// Webhook pods that may be evicted at once (at least 1, so a drain is never blocked).
	MaxUnavailable int `json:"maxUnavailable" jsonschema:"minimum=1"`
}

// Sidecar configures the containers the webhook injects (init, launcher copy, push).
type Sidecar struct {
	// Sidecar image; "" tag means the chart appVersion. Also the image of the `helm test` pod.
	Image ImageDefaultTag `json:"image" jsonschema:"required"`
	// Resources of the injected containers.
	Resources Object `json:"resources"`
	// securityContext of the injected containers.
	SecurityContext Object `json:"securityContext"`
	// Honour the oras-container annotation (a pod choosing its own sidecar image).
	AllowImageOverride bool `json:"allowImageOverride"`
	// Total deadline of one pull or push, retries included (Go duration).
	Timeout string `json:"timeout" jsonschema:"required,pattern=^([0-9]+(\\.[0-9]+)?(ns|us|ms|s|m|h))+$"`
	// sizeLimit of the `oras-cache` emptyDir of every injected pod, which holds the pulled inputs (unpacked) and a copy of the output: a pod writing more is evicted by the kubelet instead of filling the node's disk. Raise it for larger data.
	ShareSizeLimit string `json:"shareSizeLimit" jsonschema:"required,pattern=^[0-9]+(\\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$"`
}

// EntrypointLookup configures the webhook's reading of image configurations.
type EntrypointLookup struct {
	// Deadline of one lookup (Go duration). Keep it below webhook.timeoutSeconds so a slow registry
	// gives the user the webhook's denial (set command) rather than an API-server timeout.
	Timeout string `json:"timeout" jsonschema:"required,pattern=^([0-9]+(\\.[0-9]+)?(ns|us|ms|s|m|h))+$"`
}

// NetworkPolicy of the chart.
type NetworkPolicy struct {
	// Allow the registry only from pods of the release namespace (plus extraFrom); open the webhook port to the API server (any source, or webhookFrom).
	Enabled bool `json:"enabled"`
	// More NetworkPolicyPeers allowed to reach the registry (for example a namespaceSelector).
	ExtraFrom []Object `json:"extraFrom"`
	// NetworkPolicyPeers allowed to reach the webhook's admission port; empty: any source, since the chart cannot know where the API server's calls come from. Set it to the control plane's addresses, e.g. `[{ipBlock: {cidr: 172.16.0.0/28}}]` (see README).
	WebhookFrom []Object `json:"webhookFrom"`
}

// Tests is the `helm test` hook.
type Tests struct {
	// Render the `helm test` pod, which pushes and pulls an artifact through the cache with the chart's credentials.
	Enabled bool `json:"enabled"`
}

func props(name string, s *jsonschema.Schema) *jsonschema.Schema {
	out := &jsonschema.Schema{Properties: jsonschema.NewProperties()}
	out.Properties.Set(name, s)
	return out
}

func ptr[T any](v T) *T { return &v }
