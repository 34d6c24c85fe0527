package main

// Webhook benchmarks: the existing `go test -bench` of the admission handler, and a load run
// against the real HTTPS server (the built oras-cache-webhook binary on 127.0.0.1, TLS with a
// generated CA), 32 concurrent clients at fixed request rates, bounded in count and time.

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"sigs.k8s.io/yaml"
)

type handlerBench struct {
	Command     string    `json:"command"`
	NsPerOp     []float64 `json:"nsPerOp"`
	BytesPerOp  float64   `json:"bytesPerOp"`
	AllocsPerOp float64   `json:"allocsPerOp"`
	Raw         string    `json:"raw"`
	Error       string    `json:"error,omitempty"`
}

var benchLine = regexp.MustCompile(`^BenchmarkWebhookHandler\S*\s+\d+\s+([\d.]+) ns/op\s+([\d.]+) B/op\s+([\d.]+) allocs/op`)

func runHandlerBench(repo string, logf func(string, ...any)) handlerBench {
	args := []string{"test", "-run", "^$", "-bench", "^BenchmarkWebhookHandler$", "-benchmem", "-benchtime", "2s", "-count", "3", "./tests/go/webhook/"}
	hb := handlerBench{Command: "go " + strings.Join(args, " ")}
	logf("webhook handler: %s", hb.Command)
	cmd := exec.Command("go", args...)
	cmd.Dir = repo
	out, err := cmd.CombinedOutput()
	hb.Raw = string(out)
	if err != nil {
		hb.Error = fmt.Sprintf("%v: %s", err, lastLines(string(out), 10))
		return hb
	}
	for _, l := range strings.Split(string(out), "\n") {
		if m := benchLine.FindStringSubmatch(l); m != nil {
			ns, _ := strconv.ParseFloat(m[1], 64)
			hb.NsPerOp = append(hb.NsPerOp, ns)
			hb.BytesPerOp, _ = strconv.ParseFloat(m[2], 64)
			hb.AllocsPerOp, _ = strconv.ParseFloat(m[3], 64)
			logf("  %s", strings.TrimSpace(l))
		}
	}
	if len(hb.NsPerOp) == 0 {
		hb.Error = "no benchmark line in the output: " + lastLines(string(out), 10)
	}
	return hb
}

func lastLines(s string, n int) string {
	ls := strings.Split(strings.TrimSpace(s), "\n")
	if len(ls) > n {
		ls = ls[len(ls)-n:]
	}
	return strings.Join(ls, "\n")
}

type loadResult struct {
	Rate       int     `json:"rate"`
	Requests   int     `json:"requests"`
	Clients    int     `json:"clients"`
	Seconds    float64 `json:"seconds"`
	Achieved   float64 `json:"achieved"` // requests/s actually sent
	P50ms      float64 `json:"p50ms"`
	P99ms      float64 `json:"p99ms"`
	MaxMs      float64 `json:"maxMs"`
	SchedP99ms float64 `json:"schedP99ms"` // from the scheduled send time (includes client-side queueing)
	Errors     int     `json:"errors"`
	FirstError string  `json:"firstError,omitempty"`
}

type webhookLoad struct {
	Binary    string       `json:"binary"`
	Results   []loadResult `json:"results"`
	ServerRSS float64      `json:"serverRSSMiB"`
	Error     string       `json:"error,omitempty"`
}

func runWebhookLoad(repo, work string, rates []int, secs float64, clients int, logf func(string, ...any)) (wl webhookLoad) {
	dir := filepath.Join(work, "webhook")
	_ = os.RemoveAll(dir)
	certDir := filepath.Join(dir, "tls")
	if err := os.MkdirAll(certDir, 0o755); err != nil {
		wl.Error = err.Error()
		return wl
	}
	bin := filepath.Join(work, "bin", "oras-cache-webhook")
	wl.Binary = bin
	logf("webhook load: building %s", bin)
	build := exec.Command("go", "build", "-o", bin, "./webhook/cmd/oras-cache-webhook")
	build.Dir = repo
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		wl.Error = fmt.Sprintf("build: %v: %s", err, out)
		return wl
	}
	caPEM, err := writeCerts(certDir)
	if err != nil {
		wl.Error = err.Error()
		return wl
	}
	addrs := make([]string, 3)
	for i := range addrs {
		if addrs[i], err = freeAddr(); err != nil {
			wl.Error = err.Error()
			return wl
		}
	}
	_, port, _ := net.SplitHostPort(addrs[0])
	// The golden tests' configuration (what the chart renders), served on loopback ports.
	base, err := os.ReadFile(filepath.Join(repo, "tests", "go", "webhook", "testdata", "golden", "config.yaml"))
	if err != nil {
		wl.Error = err.Error()
		return wl
	}
	head, _, ok := strings.Cut(string(base), "\nserver:\n")
	if !ok {
		wl.Error = "tests/go/webhook/testdata/golden/config.yaml has no server: block"
		return wl
	}
	cfg := head + fmt.Sprintf("\nserver:\n  port: %s\n  path: /mutate-v1-pod\n  certDir: %s\n  metricsAddr: %q\n  healthAddr: %q\n",
		port, certDir, addrs[1], addrs[2])
	cfgPath := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		wl.Error = err.Error()
		return wl
	}
	logFile, err := os.Create(filepath.Join(dir, "webhook.log"))
	if err != nil {
		wl.Error = err.Error()
		return wl
	}
	defer logFile.Close()
	cmd := exec.Command(bin, "--config", cfgPath)
	// no cluster: an empty HOME and no KUBECONFIG (pods with a command need no image lookup)
	env := []string{"HOME=" + dir}
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, "KUBECONFIG=") && !strings.HasPrefix(e, "HOME=") && !strings.HasPrefix(e, "KUBERNETES_") {
			env = append(env, e)
		}
	}
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		wl.Error = err.Error()
		return wl
	}
	defer func() {
		// VmHWM: the peak RSS of the server's own memory (Go's rusage of a child it started
		// also counts this process's RSS, see datapath.go)
		if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", cmd.Process.Pid)); err == nil {
			for _, l := range strings.Split(string(b), "\n") {
				if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmHWM:" {
					kb, _ := strconv.ParseFloat(f[1], 64)
					wl.ServerRSS = kb / 1024
				}
			}
		}
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}()
	ready := false
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		resp, err := http.Get("http://" + addrs[2] + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				ready = true
				break
			}
		}
	}
	if !ready {
		b, _ := os.ReadFile(logFile.Name())
		wl.Error = "webhook not ready within 30s: " + lastLines(string(b), 5)
		return wl
	}
	podYAML, err := os.ReadFile(filepath.Join(repo, "tests/go/webhook/testdata/golden/job-one-container/pod.yaml"))
	if err != nil {
		wl.Error = err.Error()
		return wl
	}
	podJSON, err := yaml.YAMLToJSON(podYAML)
	if err != nil {
		wl.Error = err.Error()
		return wl
	}
	url := fmt.Sprintf("https://127.0.0.1:%s/mutate-v1-pod", port)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	for _, rate := range rates {
		r := loadRun(url, pool, podJSON, rate, int(float64(rate)*secs), clients)
		logf("  %d req/s × %d (%d clients): achieved %.0f/s, p50 %.2f ms, p99 %.2f ms, max %.2f ms, p99 from schedule %.2f ms, errors %d %s",
			rate, r.Requests, clients, r.Achieved, r.P50ms, r.P99ms, r.MaxMs, r.SchedP99ms, r.Errors, r.FirstError)
		wl.Results = append(wl.Results, r)
	}
	return wl
}

func review(uid string, pod []byte) []byte {
	return []byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"` + uid +
		`","kind":{"group":"","version":"v1","kind":"Pod"},"resource":{"group":"","version":"v1","resource":"pods"},` +
		`"namespace":"jobs","operation":"CREATE","userInfo":{"username":"system:serviceaccount:kube-system:job-controller"},"object":` +
		string(pod) + `}}`)
}

// loadRun sends total requests at rate req/s spread over clients connections (one keep-alive TLS
// connection each, handshaken before the clock starts); request i is due at start + i/rate.
func loadRun(url string, pool *x509.CertPool, pod []byte, rate, total, clients int) loadResult {
	res := loadResult{Rate: rate, Requests: total, Clients: clients}
	mk := func() *http.Client {
		return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
			TLSClientConfig:     &tls.Config{RootCAs: pool, ServerName: "cache-oras-cache-webhook.jobs.svc", MinVersion: tls.VersionTLS12},
			MaxIdleConnsPerHost: 1, MaxConnsPerHost: 1, ForceAttemptHTTP2: false,
		}}
	}
	cl := make([]*http.Client, clients)
	do := func(c *http.Client, uid string) error {
		resp, err := c.Post(url, "application/json", bytes.NewReader(review(uid, pod)))
		if err != nil {
			return err
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return err
		}
		if resp.StatusCode != 200 || !bytes.Contains(b, []byte(`"allowed":true`)) || !bytes.Contains(b, []byte(`"patch":`)) || !bytes.Contains(b, []byte(uid)) {
			return fmt.Errorf("HTTP %d: %.200s", resp.StatusCode, b)
		}
		return nil
	}
	for i := range cl {
		cl[i] = mk()
		_ = do(cl[i], fmt.Sprintf("warm-%d", i)) // TLS handshake outside the measurement
	}
	lat := make([]float64, total)
	sched := make([]float64, total)
	errs := make([]error, total)
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(float64(total)/float64(rate)*float64(time.Second))+30*time.Second)
	defer cancel()
	start := time.Now().Add(20 * time.Millisecond)
	var wg sync.WaitGroup
	for w := 0; w < clients; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < total; i += clients {
				due := start.Add(time.Duration(float64(i) / float64(rate) * float64(time.Second)))
				if d := time.Until(due); d > 0 {
					time.Sleep(d)
				}
				if ctx.Err() != nil {
					errs[i] = ctx.Err()
					continue
				}
				t0 := time.Now()
				errs[i] = do(cl[w], fmt.Sprintf("00000000-0000-4000-8000-%012d", i))
				t1 := time.Now()
				lat[i] = t1.Sub(t0).Seconds() * 1000
				sched[i] = t1.Sub(due).Seconds() * 1000
			}
		}()
	}
	wg.Wait()
	res.Seconds = time.Since(start).Seconds()
	res.Achieved = float64(total) / res.Seconds
	var ok, okSched []float64
	for i := range total {
		if errs[i] != nil {
			res.Errors++
			if res.FirstError == "" {
				res.FirstError = errs[i].Error()
			}
			continue
		}
		ok = append(ok, lat[i])
		okSched = append(okSched, sched[i])
	}
	res.P50ms, res.P99ms, res.MaxMs = pct(ok, 50), pct(ok, 99), pct(ok, 100)
	res.SchedP99ms = pct(okSched, 99)
	for _, c := range cl {
		c.CloseIdleConnections()
	}
	return res
}

func pct(v []float64, p float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	sort.Float64s(s)
	i := int(float64(len(s))*p/100+0.5) - 1
	return s[min(max(i, 0), len(s)-1)]
}

// writeCerts writes a CA and a serving certificate for 127.0.0.1 (tls.crt, tls.key) into dir.
func writeCerts(dir string) ([]byte, error) {
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caT := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "oras-cache bench CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caT, caT, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	caCert, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	t := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "cache-oras-cache-webhook.jobs.svc"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		DNSNames: []string{"cache-oras-cache-webhook.jobs.svc"}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, t, caCert, &key.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	kb, _ := x509.MarshalECPrivateKey(key)
	if err := os.WriteFile(filepath.Join(dir, "tls.key"), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "tls.crt"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), nil
}
