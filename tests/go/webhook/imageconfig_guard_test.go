package webhook

// The ENTRYPOINT lookup against a hostile registry: an HTTPS front (a real TLS server in this
// process: the only way to make a registry answer with redirects) before a real registry
// process. A redirect that downgrades to plain HTTP or goes to a loopback address is refused
// and never reaches its target; a redirect to another, routable host still works. And the
// lookup cache never serves what one credential read to a request without it.

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/converged-computing/oras-cache/sidecar/registrytest"
	"github.com/converged-computing/oras-cache/webhook/imageconfig"
)

// whTLSServer starts an HTTPS server on addr ("127.0.0.1:0" or another local address) with a
// certificate for its IP signed by ca.
func whTLSServer(t *testing.T, ca *whCA, addr string, h http.Handler) *httptest.Server {
	t.Helper()
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("cannot listen on %s: %v", addr, err)
	}
	ip := l.Addr().(*net.TCPAddr).IP
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: ip.String()},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{ip}, DNSNames: []string{"localhost"},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	s := httptest.NewUnstartedServer(h)
	s.Listener.Close()
	s.Listener = l
	s.TLS = &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}
	s.StartTLS()
	t.Cleanup(s.Close)
	return s
}

// whCounting forwards to the registry at host over plain HTTP and counts the requests.
func whCounting(host string, hits *atomic.Int32) http.Handler {
	p := httputil.NewSingleHostReverseProxy(&url.URL{Scheme: "http", Host: host})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		p.ServeHTTP(w, r)
	})
}

// whRedirectingFront forwards everything to the registry except manifest reads, which it
// redirects to target + the same path.
func whRedirectingFront(t *testing.T, ca *whCA, registryHost string, target func() string) *httptest.Server {
	p := httputil.NewSingleHostReverseProxy(&url.URL{Scheme: "http", Host: registryHost})
	return whTLSServer(t, ca, "127.0.0.1:0", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.URL.Path, "/manifests/") {
			http.Redirect(w, r, target()+r.URL.Path, http.StatusTemporaryRedirect)
			return
		}
		p.ServeHTTP(w, r)
	}))
}

func TestWebhookImageConfigRedirects(t *testing.T) {
	r := registrytest.Start(t, registrytest.Options{})
	whPushImage(t, r, "tools/app", "1.0", []string{"/app"}, nil)
	ca := whNewCA(t)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca.pem)
	client := func() *http.Client {
		return &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	}

	var plainHits, loopHits, okHits atomic.Int32
	plain := httptest.NewServer(whCounting(r.Host, &plainHits))
	t.Cleanup(plain.Close)
	loop := whTLSServer(t, ca, "127.0.0.1:0", whCounting(r.Host, &loopHits))
	_, loopPort, _ := net.SplitHostPort(loop.Listener.Addr().String())

	cases := []struct {
		name   string
		target string
		hits   *atomic.Int32
		listed bool // the target host is in plainHTTP
	}{
		{"HTTPS to plain HTTP", plain.URL, &plainHits, false},
		{"HTTPS to plain HTTP of a listed host", plain.URL, &plainHits, true},
		{"to 127.0.0.1 over HTTPS", loop.URL, &loopHits, false},
		{"to localhost over HTTPS", "https://localhost:" + loopPort, &loopHits, false},
		{"to the unspecified address", "https://0.0.0.0:" + loopPort, &loopHits, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			front := whRedirectingFront(t, ca, r.Host, func() string { return tc.target })
			frontHost := strings.TrimPrefix(front.URL, "https://")
			log, logged := whLookupLog()
			opts := imageconfig.Options{HTTPClient: client(), Timeout: 5 * time.Second, Log: log}
			if tc.listed {
				opts.PlainHTTP = []string{strings.TrimPrefix(plain.URL, "http://")}
			}
			before := tc.hits.Load()
			_, err := imageconfig.New(opts).Resolve(context.Background(), frontHost+"/tools/app:1.0", "jobs", nil)
			if err == nil {
				t.Fatalf("redirect %s followed", tc.target)
			}
			if n := tc.hits.Load() - before; n != 0 {
				t.Fatalf("the redirect target received %d requests", n)
			}
			var le *imageconfig.LookupError
			if !errors.As(err, &le) || strings.Contains(err.Error(), "refused") || strings.Contains(err.Error(), tc.target) {
				t.Fatalf("want the fixed lookup error, got %v", err)
			}
			if !strings.Contains(logged.String(), "refused by the lookup's network policy") {
				t.Fatalf("not refused by the policy: %s", logged)
			}
		})
	}

	// a redirect to another routable host over HTTPS is followed (blob stores, CDNs)
	other := ""
	if ifAddrs, _ := net.InterfaceAddrs(); true {
		for _, a := range ifAddrs {
			if ipn, ok := a.(*net.IPNet); ok && ipn.IP.To4() != nil && !ipn.IP.IsLoopback() && !ipn.IP.IsLinkLocalUnicast() {
				other = ipn.IP.String()
				break
			}
		}
	}
	if other == "" {
		t.Log("no routable local address: the positive control is skipped")
		return
	}
	target := whTLSServer(t, ca, net.JoinHostPort(other, "0"), whCounting(r.Host, &okHits))
	front := whRedirectingFront(t, ca, r.Host, func() string { return target.URL })
	got, err := imageconfig.New(imageconfig.Options{HTTPClient: client(), Timeout: 5 * time.Second}).
		Resolve(context.Background(), strings.TrimPrefix(front.URL, "https://")+"/tools/app:1.0", "jobs", nil)
	if err != nil || len(got.Entrypoint) != 1 || got.Entrypoint[0] != "/app" || okHits.Load() == 0 {
		t.Fatalf("redirect to %s not followed: %+v %v (hits %d)", target.URL, got, err, okHits.Load())
	}
}

// What a private image's configuration, read with namespace A's pull secret, gives is never
// served from the cache to a request without that credential (by tag or by digest).
func TestWebhookImageConfigCacheKeyedByCredential(t *testing.T) {
	r := registrytest.Start(t, registrytest.Options{Auth: true})
	img := whPushImage(t, r, "private/app", "1.0", []string{"/private"}, nil)
	secrets := whSecrets{
		"team-a/regcred": whDockerSecret(r.Host, r.Username, r.Password),
		"team-b/regcred": whDockerSecret(r.Host, r.Username, "wrong"),
	}
	res := imageconfig.New(imageconfig.Options{PlainHTTP: []string{r.Host}, Secrets: secrets, Timeout: 5 * time.Second})
	ctx := context.Background()
	byDigest := r.Host + "/private/app@" + img.Digest
	for _, ref := range []string{img.Ref, byDigest} {
		if got, err := res.Resolve(ctx, ref, "team-a", []string{"regcred"}); err != nil || got.Entrypoint[0] != "/private" {
			t.Fatalf("%s with team-a's secret: %+v %v", ref, got, err)
		}
	}
	for _, c := range []struct {
		ns      string
		secrets []string
	}{{"team-a", nil}, {"team-b", nil}, {"team-b", []string{"regcred"}}, {"team-b", []string{"missing"}}} {
		for _, ref := range []string{img.Ref, byDigest} {
			if got, err := res.Resolve(ctx, ref, c.ns, c.secrets); err == nil {
				t.Fatalf("%s in %s with %v: served %v from the cache filled with team-a's credential", ref, c.ns, c.secrets, got.Entrypoint)
			}
		}
	}
	// and the cache still serves the holder of the credential with the registry gone
	r.Stop()
	if _, err := res.Resolve(ctx, img.Ref, "team-a", []string{"regcred"}); err != nil {
		t.Fatalf("cached lookup with the credential: %v", err)
	}
}
