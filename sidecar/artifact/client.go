package artifact

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"strings"
	"syscall"
	"time"

	"oras.land/oras-go/v2/errdef"
	"oras.land/oras-go/v2/registry"
	"oras.land/oras-go/v2/registry/remote"
	"oras.land/oras-go/v2/registry/remote/auth"
	"oras.land/oras-go/v2/registry/remote/errcode"

	"github.com/converged-computing/oras-cache/sidecar/contract"
	"github.com/converged-computing/oras-cache/sidecar/transfer"
)

// Client talks to registries with the settings of one transfer.Config.
type Client struct {
	cfg  transfer.Config
	http *auth.Client
	log  Logger
	// Backoff bounds (tests shorten them).
	MinBackoff, MaxBackoff time.Duration
	// progressThreshold: transfers smaller than this log no progress lines.
	progressThreshold int64
	progressInterval  time.Duration
}

// NewClient builds the HTTP stack: TLS with the system roots plus the optional CA, plain HTTP only
// for the hosts cfg.PlainHTTPFor allows, and the credentials bound to the cache host.
func NewClient(cfg transfer.Config, log Logger) (*Client, error) {
	if log == nil {
		log = nopLogger{}
	}
	tr := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          16,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: 5 * time.Minute, // a registry may take a while to commit a big blob
		ExpectContinueTimeout: time.Second,
		WriteBufferSize:       256 << 10,
		ReadBufferSize:        256 << 10,
	}
	if cfg.CAFile != "" {
		pem, err := os.ReadFile(cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("reading CA file: %w", err)
		}
		pool, err := x509.SystemCertPool()
		if err != nil || pool == nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("CA file %s holds no PEM certificate", cfg.CAFile)
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	ac := &auth.Client{
		Client: &http.Client{Transport: tr},
		Cache:  auth.NewCache(),
		Header: http.Header{"User-Agent": {"oras-cache-sidecar"}},
	}
	if cfg.Username != "" && cfg.RegistryHost() != "" {
		// oras-go asks for the credential of the registry host it talks to, for Basic and for a
		// Bearer token realm alike: any other host (a full reference naming another registry)
		// gets none.
		ac.Credential = auth.StaticCredential(cfg.RegistryHost(), auth.Credential{Username: cfg.Username, Password: cfg.Password})
	}
	return &Client{cfg: cfg, http: ac, log: log, MinBackoff: 200 * time.Millisecond, MaxBackoff: 10 * time.Second,
		progressThreshold: defaultProgressThreshold, progressInterval: defaultProgressInterval}, nil
}

// ParseRef resolves a reference: one without a registry host (contract.SplitHost) is relative to
// the cache registry; the tag defaults to latest.
func ParseRef(raw, defaultRegistry string) (registry.Reference, error) {
	raw = strings.TrimSpace(raw)
	if raw == "" {
		return registry.Reference{}, errors.New("empty reference")
	}
	if host, _ := contract.SplitHost(raw); host == "" {
		if defaultRegistry == "" {
			return registry.Reference{}, fmt.Errorf("reference %q has no registry host and %s is not set", raw, contract.EnvRegistry)
		}
		raw = strings.TrimSuffix(defaultRegistry, "/") + "/" + raw
	}
	ref, err := registry.ParseReference(raw)
	if err != nil {
		return registry.Reference{}, fmt.Errorf("reference %q: %w", raw, err)
	}
	if ref.Reference == "" {
		ref.Reference = "latest"
	}
	return ref, nil
}

// explain adds the fix to an error a setting causes: a registry answering plain HTTP to the HTTPS
// that every host but the listed ones gets.
func (c *Client) explain(host string, err error) error {
	if errors.Is(err, http.ErrSchemeMismatch) && !c.cfg.PlainHTTPFor(host) {
		return fmt.Errorf("%w (registry %s serves plain HTTP; only the cache and the hosts listed in %s are read over plain HTTP — list it there, i.e. in the chart's plain-HTTP registries, if you trust it)",
			err, host, contract.EnvPlainHTTPRegistries)
	}
	return err
}

func (c *Client) repository(ref registry.Reference) *remote.Repository {
	return &remote.Repository{
		Client:          c.http,
		Reference:       ref,
		PlainHTTP:       c.cfg.PlainHTTPFor(ref.Registry),
		SkipReferrersGC: true,
	}
}

// retry runs op until it succeeds, fails with a permanent error, or ctx ends; its errors carry a
// registry's words through SafeText. Connection errors,
// 408, 429 and 5xx are retried with exponential backoff and full jitter.
func (c *Client) retry(ctx context.Context, what string, op func(ctx context.Context) error) error {
	backoff := c.MinBackoff
	var last error // the last error that was not the deadline itself
	giveUp := func(attempt int, err error) error {
		if last != nil && (errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled)) {
			err = last
		}
		why := "the deadline passed"
		if errors.Is(ctx.Err(), context.Canceled) {
			why = "it was cancelled"
		}
		return clean(fmt.Errorf("%s: gave up when %s after %d attempt(s), last error: %w", what, why, attempt, err))
	}
	for attempt := 1; ; attempt++ {
		err := op(ctx)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return giveUp(attempt, err)
		}
		if !Retryable(err) {
			return clean(fmt.Errorf("%s: %w", what, err))
		}
		last = err
		sleep := backoff/2 + rand.N(backoff/2+1)
		c.log.Warn("retrying", "op", what, "attempt", attempt, "in", sleep.Round(time.Millisecond).String(), "error", clean(err).Error())
		t := time.NewTimer(sleep)
		select {
		case <-ctx.Done():
			t.Stop()
			return giveUp(attempt, err)
		case <-t.C:
		}
		backoff = min(backoff*2, c.MaxBackoff)
	}
}

// Retryable reports whether err is worth another attempt: network failures, truncated
// responses, HTTP 408/429/5xx. Authentication, not-found, TLS verification and protocol
// mismatches fail at once.
func Retryable(err error) bool {
	if err == nil {
		return false
	}
	// A connection's own dial or read timeout also matches context.DeadlineExceeded (net's
	// timeout error says so), yet another attempt may well succeed — a registry pod being
	// replaced drops SYNs for a while. The overall deadline is the retry loop's ctx, not this.
	var connTimeout *net.OpError
	if errors.As(err, &connTimeout) && connTimeout.Timeout() {
		return true
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	var perm *permanentError
	if errors.As(err, &perm) {
		return false
	}
	var er *errcode.ErrorResponse
	if errors.As(err, &er) {
		if er.StatusCode == http.StatusInsufficientStorage {
			return false // the cache is full: waiting does not free space (see CacheFull)
		}
		return er.StatusCode == http.StatusRequestTimeout || er.StatusCode == http.StatusTooManyRequests || er.StatusCode >= 500
	}
	if errors.Is(err, errdef.ErrNotFound) {
		return false
	}
	// Misconfiguration: no retry can fix a certificate or a plain-HTTP/HTTPS mix-up.
	var certErr *tls.CertificateVerificationError
	var unknownCA x509.UnknownAuthorityError
	var hostErr x509.HostnameError
	var invalidCert x509.CertificateInvalidError
	var recordErr tls.RecordHeaderError
	if errors.As(err, &certErr) || errors.As(err, &unknownCA) || errors.As(err, &hostErr) ||
		errors.As(err, &invalidCert) || errors.As(err, &recordErr) || errors.Is(err, http.ErrSchemeMismatch) {
		return false
	}
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNREFUSED) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNABORTED) ||
		errors.Is(err, syscall.EHOSTUNREACH) || errors.Is(err, syscall.ENETUNREACH) || errors.Is(err, syscall.ETIMEDOUT) {
		return true
	}
	var opErr *net.OpError
	var dnsErr *net.DNSError
	if errors.As(err, &opErr) || errors.As(err, &dnsErr) {
		return true
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	msg := err.Error()
	for _, s := range []string{"connection refused", "connection reset", "broken pipe", "server closed idle connection", "unexpected EOF"} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}

// CacheFull tells whether err is the cache's "507 Insufficient Storage" answer and returns its
// message, which starts "cache full: <used> of <bound> used" and names the values to change.
func CacheFull(err error) (string, bool) {
	var er *errcode.ErrorResponse
	if !errors.As(err, &er) || er.StatusCode != http.StatusInsufficientStorage {
		return "", false
	}
	for _, e := range er.Errors {
		if strings.HasPrefix(e.Message, "cache full:") {
			return SafeText(e.Message, MaxErrorText), true
		}
	}
	// Another registry's 507: still a full store, still permanent.
	return SafeText("cache full: the registry answered 507 Insufficient Storage: "+err.Error(), MaxErrorText), true
}

// permanentError marks an error that no retry can fix (digest mismatch, unsafe archive...).
type permanentError struct{ err error }

func (p *permanentError) Error() string { return p.err.Error() }
func (p *permanentError) Unwrap() error { return p.err }

func permanent(err error) error {
	if err == nil {
		return nil
	}
	return &permanentError{err}
}

// Logger is the subset of *slog.Logger the package uses.
type Logger interface {
	Info(msg string, args ...any)
	Warn(msg string, args ...any)
}

type nopLogger struct{}

func (nopLogger) Info(string, ...any) {}
func (nopLogger) Warn(string, ...any) {}
