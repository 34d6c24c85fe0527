package inject

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	sigsjson "sigs.k8s.io/json"
)

// Config is the webhook configuration file rendered by the chart (ConfigMap
// <fullname>-webhook, key config.yaml). Unknown keys are an error.
type Config struct {
	// CacheName is the value of the oras-cache annotation this webhook serves (the release).
	CacheName string `json:"cacheName"`
	// Namespace is the release namespace; pods elsewhere are admitted unchanged.
	Namespace string         `json:"namespace"`
	Registry  RegistryConfig `json:"registry"`
	Sidecar   SidecarConfig  `json:"sidecar"`
	// PlainHTTPRegistries are the hosts (host[:port]) other than the cache that are read over plain
	// HTTP, by the ENTRYPOINT lookup and by the injected containers alike; every other host is HTTPS.
	PlainHTTPRegistries []string               `json:"plainHTTPRegistries,omitempty"`
	EntrypointLookup    EntrypointLookupConfig `json:"entrypointLookup"`
	Server              ServerConfig           `json:"server"`
}

// RegistryConfig is the in-cluster cache used for relative references.
type RegistryConfig struct {
	// Host is host:port of the cache registry Service.
	Host string `json:"host"`
	// PlainHTTP is true when the cache serves HTTP without TLS.
	PlainHTTP bool `json:"plainHTTP"`
	// AuthSecret names the Secret with keys username/password; empty when auth is off.
	AuthSecret string `json:"authSecret,omitempty"`
}

// SidecarConfig shapes the injected containers.
type SidecarConfig struct {
	Image           string                      `json:"image"`
	ImagePullPolicy corev1.PullPolicy           `json:"imagePullPolicy,omitempty"`
	Resources       corev1.ResourceRequirements `json:"resources,omitempty"`
	// SecurityContext must satisfy Pod Security "restricted" plus a read-only root filesystem;
	// when omitted, such a context is used.
	SecurityContext *corev1.SecurityContext `json:"securityContext,omitempty"`
	// AllowImageOverride honours the oras-container annotation.
	AllowImageOverride bool `json:"allowImageOverride,omitempty"`
	// Timeout is the total deadline of one pull or push (ORAS_CACHE_TIMEOUT).
	Timeout metav1.Duration `json:"timeout,omitempty"`
	// ShareSizeLimit is the sizeLimit of the oras-cache emptyDir (inputs, the output copy, the
	// launcher): a pod writing more is evicted by the kubelet rather than filling the node.
	ShareSizeLimit string `json:"shareSizeLimit,omitempty"`
	// shareSize is ShareSizeLimit parsed (by Validate)
	shareSize resource.Quantity
}

// EntrypointLookupConfig configures reading ENTRYPOINT/CMD from image configs.
type EntrypointLookupConfig struct {
	Timeout metav1.Duration `json:"timeout,omitempty"`
}

// ServerConfig is where the webhook listens.
type ServerConfig struct {
	Port        int    `json:"port,omitempty"`
	Path        string `json:"path,omitempty"`
	CertDir     string `json:"certDir,omitempty"`
	MetricsAddr string `json:"metricsAddr,omitempty"`
	HealthAddr  string `json:"healthAddr,omitempty"`
	// ClientCAFile, when set, is a PEM bundle: the admission port then accepts only TLS clients
	// with a certificate signed by one of these CAs (the API server's, from its
	// AdmissionConfiguration), so no other caller can submit an AdmissionReview.
	ClientCAFile string `json:"clientCAFile,omitempty"`
}

// Defaults of the optional Config fields.
const (
	DefaultTimeout        = 30 * time.Minute
	DefaultShareSizeLimit = "20Gi"
	DefaultLookupTimeout  = 10 * time.Second
	DefaultPort           = 9443
	DefaultPath           = "/mutate-v1-pod"
	DefaultCertDir        = "/etc/oras-cache/tls"
	DefaultMetricsAddr    = ":8080"
	DefaultHealthAddr     = ":8081"
	DefaultConfigPath     = "/etc/oras-cache/config.yaml"
)

// RestrictedSecurityContext is the default securityContext of the injected containers: it
// passes Pod Security "restricted" and makes the root filesystem read-only.
func RestrictedSecurityContext() *corev1.SecurityContext {
	no, yes := false, true
	return &corev1.SecurityContext{
		RunAsNonRoot:             &yes,
		AllowPrivilegeEscalation: &no,
		ReadOnlyRootFilesystem:   &yes,
		Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
		SeccompProfile:           &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
	}
}

// LoadConfig reads and validates the configuration file.
func LoadConfig(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	cfg, err := ParseConfig(data)
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	return cfg, nil
}

// ParseConfig decodes YAML strictly (unknown keys fail), applies defaults and validates.
func ParseConfig(data []byte) (*Config, error) {
	var cfg Config
	// YAML 1.2 scalars (yaml v3): a namespace or release named "no" or "on" stays a string
	var doc any
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, err
	}
	if doc == nil {
		doc = map[string]any{}
	}
	js, err := json.Marshal(doc)
	if err != nil {
		return nil, err
	}
	// case-sensitive, unknown and duplicate fields are errors
	strict, err := sigsjson.UnmarshalStrict(js, &cfg)
	if err != nil {
		return nil, err
	}
	if len(strict) > 0 {
		return nil, errors.Join(strict...)
	}
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &cfg, nil
}

// SetDefaults fills the optional fields.
func (c *Config) SetDefaults() {
	if c.Sidecar.ImagePullPolicy == "" {
		c.Sidecar.ImagePullPolicy = corev1.PullIfNotPresent
	}
	if c.Sidecar.SecurityContext == nil {
		c.Sidecar.SecurityContext = RestrictedSecurityContext()
	}
	if c.Sidecar.Timeout.Duration == 0 {
		c.Sidecar.Timeout.Duration = DefaultTimeout
	}
	if c.Sidecar.ShareSizeLimit == "" {
		c.Sidecar.ShareSizeLimit = DefaultShareSizeLimit
	}
	if c.EntrypointLookup.Timeout.Duration == 0 {
		c.EntrypointLookup.Timeout.Duration = DefaultLookupTimeout
	}
	s := &c.Server
	if s.Port == 0 {
		s.Port = DefaultPort
	}
	if s.Path == "" {
		s.Path = DefaultPath
	}
	if s.CertDir == "" {
		s.CertDir = DefaultCertDir
	}
	if s.MetricsAddr == "" {
		s.MetricsAddr = DefaultMetricsAddr
	}
	if s.HealthAddr == "" {
		s.HealthAddr = DefaultHealthAddr
	}
}

// Validate reports every problem of the configuration at once.
func (c *Config) Validate() error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", key, fmt.Sprintf(format, args...)))
	}
	if c.CacheName == "" {
		bad("cacheName", "required (the Helm release name)")
	}
	if c.Namespace == "" {
		bad("namespace", "required (the release namespace)")
	}
	if c.Registry.Host == "" {
		bad("registry.host", "required (host:port of the cache registry)")
	} else if err := validateHost(c.Registry.Host); err != nil {
		bad("registry.host", "%v", err)
	}
	if c.Sidecar.Image == "" {
		bad("sidecar.image", "required")
	} else if err := validateImage(c.Sidecar.Image); err != nil {
		bad("sidecar.image", "%v", err)
	}
	switch c.Sidecar.ImagePullPolicy {
	case corev1.PullAlways, corev1.PullIfNotPresent, corev1.PullNever:
	default:
		bad("sidecar.imagePullPolicy", "%q is not Always, IfNotPresent or Never", c.Sidecar.ImagePullPolicy)
	}
	if err := checkRestricted(c.Sidecar.SecurityContext); err != nil {
		bad("sidecar.securityContext", "%v", err)
	}
	if c.Sidecar.Timeout.Duration < 0 {
		bad("sidecar.timeout", "must be positive")
	}
	if q, err := resource.ParseQuantity(c.Sidecar.ShareSizeLimit); err != nil {
		bad("sidecar.shareSizeLimit", "%q is not a quantity such as 20Gi", c.Sidecar.ShareSizeLimit)
	} else if q.Sign() <= 0 {
		bad("sidecar.shareSizeLimit", "must be positive")
	} else {
		c.Sidecar.shareSize = q
	}
	if c.EntrypointLookup.Timeout.Duration < 0 {
		bad("entrypointLookup.timeout", "must be positive")
	}
	for i, h := range c.PlainHTTPRegistries {
		if err := validateHost(h); err != nil {
			bad(fmt.Sprintf("plainHTTPRegistries[%d]", i), "%v", err)
		}
	}
	if c.Server.Port < 1 || c.Server.Port > 65535 {
		bad("server.port", "%d is not a TCP port", c.Server.Port)
	}
	if c.Server.ClientCAFile != "" && !strings.HasPrefix(c.Server.ClientCAFile, "/") {
		bad("server.clientCAFile", "%q must be an absolute path", c.Server.ClientCAFile)
	}
	if !strings.HasPrefix(c.Server.Path, "/") {
		bad("server.path", "%q must start with /", c.Server.Path)
	}
	return errors.Join(errs...)
}

// checkRestricted verifies the Pod Security "restricted" container rules, plus a read-only root
// filesystem, on a securityContext used for the injected containers.
func checkRestricted(sc *corev1.SecurityContext) error {
	var problems []string
	if sc.Privileged != nil && *sc.Privileged {
		problems = append(problems, "privileged must be false")
	}
	if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		problems = append(problems, "allowPrivilegeEscalation must be false")
	}
	if sc.RunAsUser != nil && *sc.RunAsUser == 0 {
		problems = append(problems, "runAsUser must not be 0")
	}
	if (sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot) && (sc.RunAsUser == nil || *sc.RunAsUser == 0) {
		problems = append(problems, "runAsNonRoot must be true (or runAsUser non-zero)")
	}
	if sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") {
		problems = append(problems, "capabilities.drop must contain ALL")
	} else {
		for _, c := range sc.Capabilities.Add {
			if c != "NET_BIND_SERVICE" {
				problems = append(problems, fmt.Sprintf("capabilities.add may only hold NET_BIND_SERVICE, not %s", c))
			}
		}
	}
	if sc.SeccompProfile == nil || (sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault && sc.SeccompProfile.Type != corev1.SeccompProfileTypeLocalhost) {
		problems = append(problems, "seccompProfile.type must be RuntimeDefault or Localhost")
	}
	if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		problems = append(problems, "readOnlyRootFilesystem must be true")
	}
	if len(problems) > 0 {
		return fmt.Errorf("not restricted: %s", strings.Join(problems, "; "))
	}
	return nil
}

// plainHTTP reports whether host is listed in plainHTTPRegistries.
func (c *Config) plainHTTP(host string) bool {
	return slices.Contains(c.PlainHTTPRegistries, host)
}
