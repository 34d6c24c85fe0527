// Package imageconfig reads the ENTRYPOINT and CMD of a container image from its registry with
// oras-go, anonymously or with the pod's imagePullSecrets, and caches them by manifest digest.
package imageconfig

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	corev1 "k8s.io/api/core/v1"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/errdef"
	"oras.land/oras-go/v2/registry"
	"oras.land/oras-go/v2/registry/remote"
	"oras.land/oras-go/v2/registry/remote/auth"
	"oras.land/oras-go/v2/registry/remote/errcode"

	"github.com/converged-computing/oras-cache/sidecar/contract"
)

// SecretGetter reads a Secret (an imagePullSecret of the pod).
type SecretGetter interface {
	GetSecret(ctx context.Context, namespace, name string) (*corev1.Secret, error)
}

// Options configure a Resolver.
type Options struct {
	// PlainHTTP lists registries (host[:port], as written in image references) read over HTTP.
	PlainHTTP []string
	// Timeout bounds one lookup (default 10s).
	Timeout time.Duration
	// TagTTL is how long a tag → digest resolution is reused (default 1m).
	TagTTL time.Duration
	// Secrets reads imagePullSecrets; nil means anonymous access only.
	Secrets SecretGetter
	// HTTPClient is the transport (default: a client with its own http.Transport).
	HTTPClient *http.Client
	// MaxEntries bounds the digest cache (default 4096).
	MaxEntries int
	// Log receives the reason of each failed lookup, which denials do not carry (default: none).
	Log *slog.Logger
}

// Image is what the lookup returns.
type Image struct {
	// Digest of the manifest (or index) the reference resolved to.
	Digest     string
	Entrypoint []string
	Cmd        []string
}

// Resolver looks images up; safe for concurrent use.
type Resolver struct {
	opts     Options
	mu       sync.Mutex
	byDigest map[string]Image
	byTag    map[string]tagEntry
	now      func() time.Time
}

type tagEntry struct {
	digest  string
	expires time.Time
}

// New returns a Resolver with opts (zero values take defaults).
func New(opts Options) *Resolver {
	if opts.Timeout <= 0 {
		opts.Timeout = 10 * time.Second
	}
	if opts.TagTTL <= 0 {
		opts.TagTTL = time.Minute
	}
	// every request goes through the guard (redirects and token realms included)
	if opts.HTTPClient == nil {
		opts.HTTPClient = &http.Client{Transport: newTransport()}
	} else {
		c := *opts.HTTPClient
		if c.Transport == nil {
			c.Transport = newTransport()
		}
		opts.HTTPClient = &c
	}
	opts.HTTPClient.Transport = &guard{base: opts.HTTPClient.Transport, plainHTTP: opts.PlainHTTP, resolver: net.DefaultResolver}
	if opts.MaxEntries <= 0 {
		opts.MaxEntries = 4096
	}
	return &Resolver{opts: opts, byDigest: map[string]Image{}, byTag: map[string]tagEntry{}, now: time.Now}
}

// Command implements inject.ImageResolver.
func (r *Resolver) Command(ctx context.Context, image, namespace string, pullSecrets []string) ([]string, []string, error) {
	img, err := r.Resolve(ctx, image, namespace, pullSecrets)
	if err != nil {
		return nil, nil, err
	}
	return img.Entrypoint, img.Cmd, nil
}

// maxManifestSize bounds manifests and configs read into memory.
const maxManifestSize = 4 << 20

// Resolve returns the ENTRYPOINT/CMD of image (a pod's container image reference). Its errors
// are *LookupError: their text says what the user can change and echoes neither the registry's
// answers nor anything about Secrets (the detail goes to Options.Log).
func (r *Resolver) Resolve(ctx context.Context, image, namespace string, pullSecrets []string) (Image, error) {
	ref, host, err := Normalize(image)
	if err != nil {
		return Image{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, r.opts.Timeout)
	defer cancel()
	// the credential first: what was read with one credential is never served to another request
	cred, credNote := r.credential(ctx, host, namespace, pullSecrets)
	ck := credKey(cred)
	key := ck + "|" + ref.Registry + "/" + ref.Repository + ":" + ref.Reference
	digest := ""
	if _, derr := ref.Digest(); derr == nil {
		digest = ref.Reference
	} else {
		r.mu.Lock()
		if e, ok := r.byTag[key]; ok && r.now().Before(e.expires) {
			digest = e.digest
		}
		r.mu.Unlock()
	}
	if digest != "" {
		r.mu.Lock()
		img, ok := r.byDigest[ck+"|"+digest]
		r.mu.Unlock()
		if ok {
			return img, nil
		}
	}

	plain := slices.Contains(r.opts.PlainHTTP, host)
	scheme := "https"
	if plain {
		scheme = "http"
	}
	repo := &remote.Repository{
		Reference: ref,
		PlainHTTP: plain,
		Client: &auth.Client{
			Client: r.opts.HTTPClient,
			Cache:  auth.NewCache(),
			// bound to the registry's host: a realm or redirect elsewhere gets none
			Credential: auth.StaticCredential(ref.Registry, cred),
		},
	}
	img, err := r.fetch(withLookup(ctx, hostPort(scheme, ref.Registry)), repo, ref.Reference, ck)
	if err != nil {
		lerr := &LookupError{Host: host, Anonymous: len(pullSecrets) == 0, PlainHTTP: plain, Cause: err}
		if r.opts.Log != nil {
			r.opts.Log.WarnContext(ctx, "entrypoint lookup failed", "image", image, "namespace", namespace,
				"credentials", credNote, "reason", truncate(describe(err, host, plain, r.opts.Timeout), 512))
		}
		return Image{}, lerr
	}
	r.mu.Lock()
	if len(r.byDigest) >= r.opts.MaxEntries {
		clear(r.byDigest)
	}
	if len(r.byTag) >= r.opts.MaxEntries {
		clear(r.byTag)
	}
	r.byDigest[ck+"|"+img.Digest] = img
	if digest == "" {
		r.byTag[key] = tagEntry{digest: img.Digest, expires: r.now().Add(r.opts.TagTTL)}
	}
	r.mu.Unlock()
	return img, nil
}

// credKey identifies a credential in cache keys without holding it in the clear.
func credKey(c auth.Credential) string {
	if c == auth.EmptyCredential {
		return "anonymous"
	}
	h := sha256.Sum256([]byte(c.Username + "\x00" + c.Password + "\x00" + c.RefreshToken + "\x00" + c.AccessToken))
	return hex.EncodeToString(h[:])
}

// LookupError is a failed lookup. Its text is the same whatever the registry answered (or did
// not), so that a denial is no oracle on a registry's responses, on which ports answer, or on the
// namespace's Secrets; Cause keeps the reason for the webhook's log and for tests.
type LookupError struct {
	Host      string
	Anonymous bool
	PlainHTTP bool
	Cause     error
}

func (e *LookupError) Error() string {
	how := "with the pod's imagePullSecrets"
	if e.Anonymous {
		how = "anonymously: the pod has no imagePullSecrets"
	}
	return fmt.Sprintf("registry %s did not give its configuration (read %s; a private image needs an imagePullSecret for that host, a plain-HTTP registry the chart value plainHTTPRegistries; the reason is in the webhook's log)", e.Host, how)
}

func (e *LookupError) Unwrap() error { return e.Cause }

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

func (r *Resolver) fetch(ctx context.Context, repo *remote.Repository, reference, ck string) (Image, error) {
	desc, body, err := repo.FetchReference(ctx, reference)
	if err != nil {
		return Image{}, err
	}
	top := desc.Digest.String()
	r.mu.Lock()
	cached, ok := r.byDigest[ck+"|"+top]
	r.mu.Unlock()
	if ok {
		body.Close()
		return cached, nil
	}
	data, err := readAll(body, desc)
	if err != nil {
		return Image{}, err
	}
	if isIndex(desc.MediaType) {
		var index ocispec.Index
		if err := json.Unmarshal(data, &index); err != nil {
			return Image{}, fmt.Errorf("decode image index: %w", err)
		}
		child, err := pickPlatform(index.Manifests)
		if err != nil {
			return Image{}, err
		}
		rc, err := repo.Manifests().Fetch(ctx, child)
		if err != nil {
			return Image{}, err
		}
		if data, err = readAll(rc, child); err != nil {
			return Image{}, err
		}
		desc = child
	}
	if !isManifest(desc.MediaType) {
		return Image{}, fmt.Errorf("%s is not an image manifest (media type %q)", reference, desc.MediaType)
	}
	var manifest ocispec.Manifest
	if err := json.Unmarshal(data, &manifest); err != nil {
		return Image{}, fmt.Errorf("decode image manifest: %w", err)
	}
	switch manifest.Config.MediaType {
	case ocispec.MediaTypeImageConfig, "application/vnd.docker.container.image.v1+json":
	default:
		return Image{}, fmt.Errorf("%s is not a container image (config media type %q)", reference, manifest.Config.MediaType)
	}
	if manifest.Config.Size > maxManifestSize {
		return Image{}, fmt.Errorf("image config of %d bytes is too large", manifest.Config.Size)
	}
	cfgBytes, err := content.FetchAll(ctx, repo.Blobs(), manifest.Config)
	if err != nil {
		return Image{}, err
	}
	var cfg ocispec.Image
	if err := json.Unmarshal(cfgBytes, &cfg); err != nil {
		return Image{}, fmt.Errorf("decode image config: %w", err)
	}
	return Image{Digest: top, Entrypoint: cfg.Config.Entrypoint, Cmd: cfg.Config.Cmd}, nil
}

func readAll(rc io.ReadCloser, desc ocispec.Descriptor) ([]byte, error) {
	defer rc.Close()
	if desc.Size > maxManifestSize {
		return nil, fmt.Errorf("manifest of %d bytes is too large", desc.Size)
	}
	return content.ReadAll(rc, desc)
}

func isIndex(mt string) bool {
	return mt == ocispec.MediaTypeImageIndex || mt == "application/vnd.docker.distribution.manifest.list.v2+json"
}

func isManifest(mt string) bool {
	return mt == ocispec.MediaTypeImageManifest || mt == "application/vnd.docker.distribution.manifest.v2+json"
}

// pickPlatform chooses linux on this process's architecture, else linux/amd64, else the first
// real image (attestation manifests have platform unknown/unknown).
func pickPlatform(ms []ocispec.Descriptor) (ocispec.Descriptor, error) {
	for _, want := range []string{runtime.GOARCH, "amd64"} {
		for _, m := range ms {
			if m.Platform != nil && m.Platform.OS == "linux" && m.Platform.Architecture == want {
				return m, nil
			}
		}
	}
	for _, m := range ms {
		if m.Platform == nil || m.Platform.OS != "unknown" {
			return m, nil
		}
	}
	return ocispec.Descriptor{}, errors.New("the image index lists no image")
}

// Normalize turns a pod image reference into the registry reference to read (Docker Hub names
// expanded as the container runtime does) and the host as written (for plain-HTTP and
// credential matching).
func Normalize(image string) (registry.Reference, string, error) {
	if image == "" {
		return registry.Reference{}, "", errors.New("the container has no image")
	}
	name, digest, _ := strings.Cut(image, "@")
	host, name := contract.SplitHost(name)
	if host == "" {
		host = "docker.io"
	}
	tag := ""
	if i := strings.LastIndexByte(name, ':'); i > strings.LastIndexByte(name, '/') {
		name, tag = name[:i], name[i+1:]
	}
	apiHost := host
	if isDockerHub(host) {
		apiHost = "registry-1.docker.io"
		host = "docker.io"
		if !strings.Contains(name, "/") {
			name = "library/" + name
		}
	}
	ref := registry.Reference{Registry: apiHost, Repository: name}
	switch {
	case digest != "":
		ref.Reference = digest
	case tag != "":
		ref.Reference = tag
	default:
		ref.Reference = "latest"
	}
	if err := ref.Validate(); err != nil {
		return registry.Reference{}, "", fmt.Errorf("invalid image reference %q: %w", image, err)
	}
	return ref, host, nil
}

func isDockerHub(h string) bool {
	return h == "docker.io" || h == "index.docker.io" || h == "registry-1.docker.io"
}

// dockerConfig is the content of a kubernetes.io/dockerconfigjson Secret (".dockercfg" Secrets
// hold the auths map directly).
type dockerConfig struct {
	Auths map[string]dockerAuth `json:"auths"`
}

type dockerAuth struct {
	Username      string `json:"username"`
	Password      string `json:"password"`
	Auth          string `json:"auth"`
	IdentityToken string `json:"identitytoken"`
	RegistryToken string `json:"registrytoken"`
}

// credential finds credentials for host in the pod's imagePullSecrets (first match wins, as in
// the kubelet). credNote describes, for error messages, which credentials were used.
func (r *Resolver) credential(ctx context.Context, host, namespace string, secrets []string) (auth.Credential, string) {
	if len(secrets) == 0 {
		return auth.EmptyCredential, "anonymously (the pod has no imagePullSecrets)"
	}
	if r.opts.Secrets == nil {
		return auth.EmptyCredential, "anonymously (the webhook cannot read imagePullSecrets)"
	}
	var problems []string
	for _, name := range secrets {
		s, err := r.opts.Secrets.GetSecret(ctx, namespace, name)
		if err != nil {
			problems = append(problems, fmt.Sprintf("imagePullSecret %q: %v", name, err))
			continue
		}
		auths, err := parseDockerSecret(s)
		if err != nil {
			problems = append(problems, fmt.Sprintf("imagePullSecret %q: %v", name, err))
			continue
		}
		for k, a := range auths {
			if !hostMatches(k, host) {
				continue
			}
			cred := auth.Credential{Username: a.Username, Password: a.Password, RefreshToken: a.IdentityToken, AccessToken: a.RegistryToken}
			if a.Auth != "" && cred.Username == "" {
				if raw, err := base64.StdEncoding.DecodeString(a.Auth); err == nil {
					cred.Username, cred.Password, _ = strings.Cut(string(raw), ":")
				}
			}
			return cred, fmt.Sprintf("with the credentials of imagePullSecret %q", name)
		}
	}
	note := fmt.Sprintf("anonymously (no imagePullSecret of the pod has credentials for %s)", host)
	if len(problems) > 0 {
		note = fmt.Sprintf("anonymously (%s)", strings.Join(problems, "; "))
	}
	return auth.EmptyCredential, note
}

func parseDockerSecret(s *corev1.Secret) (map[string]dockerAuth, error) {
	if data, ok := s.Data[corev1.DockerConfigJsonKey]; ok {
		var cfg dockerConfig
		if err := json.Unmarshal(data, &cfg); err != nil {
			return nil, fmt.Errorf("key %s is not valid JSON: %v", corev1.DockerConfigJsonKey, err)
		}
		return cfg.Auths, nil
	}
	if data, ok := s.Data[corev1.DockerConfigKey]; ok {
		var auths map[string]dockerAuth
		if err := json.Unmarshal(data, &auths); err != nil {
			return nil, fmt.Errorf("key %s is not valid JSON: %v", corev1.DockerConfigKey, err)
		}
		return auths, nil
	}
	return nil, fmt.Errorf("has neither %s nor %s", corev1.DockerConfigJsonKey, corev1.DockerConfigKey)
}

// hostMatches compares a docker config key ("host", "https://host/v1/", …) with host.
func hostMatches(key, host string) bool {
	k := strings.TrimPrefix(strings.TrimPrefix(key, "https://"), "http://")
	k, _, _ = strings.Cut(k, "/")
	if k == host {
		return true
	}
	return isDockerHub(host) && isDockerHub(k)
}

// describe is the reason of a failed lookup, for the webhook's log (never for a denial).
func describe(err error, host string, plain bool, timeout time.Duration) string {
	var resp *errcode.ErrorResponse
	switch {
	case errors.Is(err, auth.ErrBasicCredentialNotFound):
		return fmt.Sprintf("registry %s refused access (HTTP 401: credentials required) to the lookup", host)
	case errors.As(err, &resp) && (resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden):
		return fmt.Sprintf("registry %s refused access (HTTP %d) to the lookup", host, resp.StatusCode)
	case errors.As(err, &resp) && resp.StatusCode == http.StatusNotFound, errors.Is(err, errdef.ErrNotFound):
		return fmt.Sprintf("the image was not found in registry %s: %v", host, err)
	case errors.Is(err, context.DeadlineExceeded):
		return fmt.Sprintf("registry %s did not answer within %s", host, timeout)
	case strings.Contains(err.Error(), "x509:") || strings.Contains(err.Error(), "tls:"):
		return fmt.Sprintf("registry %s: TLS failed (%v); the webhook trusts the public CAs only, so set command in the container or list the registry in the chart value plainHTTPRegistries if it serves plain HTTP", host, err)
	case strings.Contains(err.Error(), "server gave HTTP response to HTTPS client"):
		return fmt.Sprintf("registry %s serves plain HTTP; list it in the chart value plainHTTPRegistries to allow that", host)
	}
	var netErr net.Error
	var opErr *net.OpError
	if errors.As(err, &opErr) || errors.As(err, &netErr) {
		scheme := "HTTPS"
		if plain {
			scheme = "HTTP"
		}
		return fmt.Sprintf("cannot reach registry %s over %s: %v", host, scheme, err)
	}
	return fmt.Sprintf("reading the image config from %s failed: %v", host, err)
}
