package webhook

// The webhook served over real HTTPS (controller-runtime's server, certificates generated here)
// with real AdmissionReview JSON; metrics, health, certificate rotation and graceful shutdown.

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	jsonpatch "github.com/evanphx/json-patch"
	admissionv1 "k8s.io/api/admission/v1"

	"github.com/converged-computing/oras-cache/webhook/inject"
	"github.com/converged-computing/oras-cache/webhook/server"
)

type whCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func whNewCA(t *testing.T) *whCA {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "oras-cache test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &whCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// writeServing writes tls.crt/tls.key for 127.0.0.1 signed by the CA (atomic renames).
func (ca *whCA) writeServing(t *testing.T, dir string, serial int64) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "cache-oras-cache-webhook.jobs.svc"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		DNSNames: []string{"cache-oras-cache-webhook.jobs.svc", "localhost"}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(key)
	for name, data := range map[string][]byte{
		"tls.key": pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}),
		"tls.crt": pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
	} {
		tmp := filepath.Join(dir, "."+name+".tmp")
		if err := os.WriteFile(tmp, data, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
}

func whFreeAddr(t *testing.T) (string, int) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String(), l.Addr().(*net.TCPAddr).Port
}

func whServedCertSerial(addr string) (int64, error) {
	conn, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // inspecting the served cert
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0].SerialNumber.Int64(), nil
}

func TestWebhookHTTPS(t *testing.T) {
	certDir := t.TempDir()
	ca := whNewCA(t)
	ca.writeServing(t, certDir, 100)
	_, port := whFreeAddr(t)
	metricsAddr, _ := whFreeAddr(t)
	healthAddr, _ := whFreeAddr(t)
	cfgText := strings.NewReplacer(
		"port: 9443", fmt.Sprintf("port: %d", port),
		"certDir: /etc/oras-cache/tls", "certDir: "+certDir,
		`metricsAddr: ":8080"`, fmt.Sprintf("metricsAddr: %q", metricsAddr),
		`healthAddr: ":8081"`, fmt.Sprintf("healthAddr: %q", healthAddr),
	).Replace(whBaseConfig)
	cfg := whConfig(t, cfgText)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ready := make(chan struct{})
	done := make(chan error, 1)
	var logs bytes.Buffer
	go func() {
		done <- server.Run(ctx, cfg, server.Options{
			Images:     &whFakeImages{Entrypoint: []string{"/entry"}},
			Log:        slog.New(slog.NewJSONHandler(&logs, nil)),
			Ready:      ready,
			DrainDelay: 2 * time.Second,
		})
	}()
	whWaitReady(t, ready, done)

	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca.pem)
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "cache-oras-cache-webhook.jobs.svc"}}}
	url := fmt.Sprintf("https://127.0.0.1:%d%s", port, cfg.Server.Path)

	review := func(raw []byte) *admissionv1.AdmissionResponse {
		t.Helper()
		req := whRawRequest(raw)
		body, _ := json.Marshal(admissionv1.AdmissionReview{
			TypeMeta: metav1TypeMeta("admission.k8s.io/v1", "AdmissionReview"),
			Request:  &req.AdmissionRequest,
		})
		resp, err := client.Post(url, "application/json", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("HTTP %d: %s", resp.StatusCode, b)
		}
		var out admissionv1.AdmissionReview
		if err := json.Unmarshal(b, &out); err != nil {
			t.Fatalf("%v: %s", err, b)
		}
		if out.Kind != "AdmissionReview" || out.Response == nil || out.Response.UID != req.UID {
			t.Fatalf("bad AdmissionReview response: %s", b)
		}
		return out.Response
	}

	// a Job pod with a field our API types do not know: patched, field kept
	raw := []byte(strings.ReplaceAll(`{"apiVersion":"v1","kind":"Pod","metadata":{"generateName":"train-","namespace":"jobs",
	  "annotations":{"PREFIX/oras-cache":"cache",
	    "PREFIX/input-uri":"datasets/mnist:v1",
	    "PREFIX/output-uri":"models/mnist:v1",
	    "PREFIX/output-path":"/out"}},
	  "spec":{"restartPolicy":"Never","someFutureField":{"x":1},
	    "containers":[{"name":"train","image":"ghcr.io/example/train:1.0","args":["--epochs","3"]}]}}`, "PREFIX/", inject.Prefix))
	resp := review(raw)
	if !resp.Allowed || resp.PatchType == nil || *resp.PatchType != admissionv1.PatchTypeJSONPatch || len(resp.Patch) == 0 {
		t.Fatalf("want an allowed JSONPatch response, got %+v", resp)
	}
	p, err := jsonpatch.DecodePatch(resp.Patch)
	if err != nil {
		t.Fatal(err)
	}
	patched, err := p.Apply(raw)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(patched, []byte(`"someFutureField":{"x":1}`)) || !bytes.Contains(patched, []byte(`"/oras-cache/bin/oras-cache-sidecar","launch"`)) ||
		!bytes.Contains(patched, []byte(`"--","/entry"]`)) || !bytes.Contains(patched, []byte(inject.PushContainerName)) {
		t.Fatalf("patched pod: %s", patched)
	}

	// denial
	resp = review(whMustJSON(t, whPod(map[string]string{"oras-cache": "cache", "ouput-uri": "x:v1"})))
	if resp.Allowed || resp.Result == nil || resp.Result.Code != http.StatusForbidden || !strings.Contains(resp.Result.Message, "did you mean "+inject.AnnotationOutputURI) {
		t.Fatalf("want a denial, got %+v", resp.Result)
	}
	// not ours: another release
	resp = review(whMustJSON(t, whPod(map[string]string{"oras-cache": "other", "input-uri": "x:v1"})))
	if !resp.Allowed || len(resp.Patch) != 0 {
		t.Fatalf("want an unchanged admission, got %+v", resp)
	}

	get := func(u string) (int, string) {
		t.Helper()
		r, err := http.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Body.Close()
		b, _ := io.ReadAll(r.Body)
		return r.StatusCode, string(b)
	}
	for _, path := range []string{"/healthz", "/readyz"} {
		if code, body := get("http://" + healthAddr + path); code != 200 {
			t.Errorf("%s: %d %s", path, code, body)
		}
	}
	_, metrics := get("http://" + metricsAddr + "/metrics")
	for _, want := range []string{
		`oras_cache_webhook_admissions_total{result="injected"} 1`,
		`oras_cache_webhook_admissions_total{result="denied"} 1`,
		`oras_cache_webhook_admissions_total{result="skipped"} 1`,
		`oras_cache_webhook_denials_total{reason="unknown-annotation"} 1`,
		`oras_cache_webhook_admission_duration_seconds_bucket`,
		`controller_runtime_webhook_requests_total`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	if !strings.Contains(logs.String(), `"result":"injected"`) {
		t.Errorf("no structured admission log: %s", logs.String())
	}

	// certificate rotation: the new certificate is served without a restart
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	if s, err := whServedCertSerial(addr); err != nil || s != 100 {
		t.Fatalf("serial %d %v", s, err)
	}
	ca.writeServing(t, certDir, 200)
	deadline := time.Now().Add(30 * time.Second)
	for {
		s, err := whServedCertSerial(addr)
		if err == nil && s == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("rotated certificate not served within 30s (serial %d, %v)", s, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if resp := review(raw); !resp.Allowed {
		t.Fatalf("after rotation: %+v", resp.Result)
	}

	// graceful shutdown: readiness fails during the drain delay, then Run returns nil
	cancel()
	sawNotReady := false
	for i := 0; i < 50 && !sawNotReady; i++ {
		if code, _ := get("http://" + healthAddr + "/readyz"); code == http.StatusServiceUnavailable {
			sawNotReady = true
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !sawNotReady {
		t.Errorf("/readyz did not fail during the drain delay")
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no shutdown within 30s")
	}
}

// clientCert returns a client certificate signed by the CA (as the API server presents from its
// AdmissionConfiguration kubeconfig).
func (ca *whCA) clientCert(t *testing.T, cn string) tls.Certificate {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// With server.clientCAFile set, a forged AdmissionReview (any pod in the cluster can reach the
// webhook Service) is refused at the TLS handshake unless the caller presents a certificate of
// that CA; the API server's certificate is accepted.
func TestWebhookHTTPSClientAuth(t *testing.T) {
	certDir := t.TempDir()
	serving := whNewCA(t)
	serving.writeServing(t, certDir, 100)
	apiServerCA, otherCA := whNewCA(t), whNewCA(t)
	caFile := filepath.Join(t.TempDir(), "ca.crt")
	if err := os.WriteFile(caFile, apiServerCA.pem, 0o600); err != nil {
		t.Fatal(err)
	}
	_, port := whFreeAddr(t)
	metricsAddr, _ := whFreeAddr(t)
	healthAddr, _ := whFreeAddr(t)
	cfg := whConfig(t, strings.NewReplacer(
		"port: 9443", fmt.Sprintf("port: %d", port),
		"certDir: /etc/oras-cache/tls", "certDir: "+certDir+"\n  clientCAFile: "+caFile,
		`metricsAddr: ":8080"`, fmt.Sprintf("metricsAddr: %q", metricsAddr),
		`healthAddr: ":8081"`, fmt.Sprintf("healthAddr: %q", healthAddr),
	).Replace(whBaseConfig))
	if cfg.Server.ClientCAFile != caFile {
		t.Fatalf("clientCAFile not read: %+v", cfg.Server)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- server.Run(ctx, cfg, server.Options{Images: &whFakeImages{}, Log: slog.New(slog.NewJSONHandler(io.Discard, nil)), Ready: ready})
	}()
	t.Cleanup(func() { cancel(); <-done })
	whWaitReady(t, ready, done)

	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(serving.pem)
	req := whRequest(t, whPod(map[string]string{"oras-cache": "cache", "input-uri": "data:v1"}))
	body, _ := json.Marshal(admissionv1.AdmissionReview{TypeMeta: metav1TypeMeta("admission.k8s.io/v1", "AdmissionReview"), Request: &req.AdmissionRequest})
	post := func(certs ...tls.Certificate) (*admissionv1.AdmissionReview, error) {
		c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
			RootCAs: pool, ServerName: "cache-oras-cache-webhook.jobs.svc", Certificates: certs}}}
		resp, err := c.Post(fmt.Sprintf("https://127.0.0.1:%d%s", port, cfg.Server.Path), "application/json", bytes.NewReader(body))
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		var out admissionv1.AdmissionReview
		if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
			return nil, err
		}
		return &out, nil
	}

	if out, err := post(); err == nil {
		t.Fatalf("a forged AdmissionReview without a client certificate was answered: %+v", out.Response)
	} else if !strings.Contains(err.Error(), "certificate required") && !strings.Contains(err.Error(), "bad certificate") {
		t.Logf("refused: %v", err)
	}
	if out, err := post(otherCA.clientCert(t, "kube-apiserver")); err == nil {
		t.Fatalf("a client certificate of another CA was accepted: %+v", out.Response)
	}
	out, err := post(apiServerCA.clientCert(t, "kube-apiserver"))
	if err != nil {
		t.Fatalf("the API server's client certificate was refused: %v", err)
	}
	if out.Response == nil || !out.Response.Allowed || len(out.Response.Patch) == 0 {
		t.Fatalf("want a patch with a valid client certificate, got %+v", out.Response)
	}
}

// A clientCAFile that holds no certificate stops the webhook at start, naming the key.
func TestWebhookClientCAFileInvalid(t *testing.T) {
	caFile := filepath.Join(t.TempDir(), "ca.crt")
	if err := os.WriteFile(caFile, []byte("not a certificate\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, port := whFreeAddr(t)
	cfg := whConfig(t, strings.NewReplacer("port: 9443", fmt.Sprintf("port: %d", port),
		"certDir: /etc/oras-cache/tls", "certDir: "+t.TempDir()+"\n  clientCAFile: "+caFile).Replace(whBaseConfig))
	err := server.Run(context.Background(), cfg, server.Options{Log: slog.New(slog.NewJSONHandler(io.Discard, nil))})
	if err == nil || !strings.Contains(err.Error(), "server.clientCAFile") {
		t.Fatalf("want a start error naming server.clientCAFile, got %v", err)
	}
}

// whWaitReady waits for server.Run to report ready, failing the test if it ends first or takes
// over 20 s.
func whWaitReady(t *testing.T, ready <-chan struct{}, done <-chan error) {
	t.Helper()
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("server ended: %v", err)
	case <-time.After(20 * time.Second):
		t.Fatal("server not ready within 20s")
	}
}
