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
	"strconv"
	"strings"
	"sync"
	"time"

	"sigs.k8s.io/yaml"
)

type webhookResult struct {
	stamp
	Handler handlerBench `json:"handler"`
	Load    webhookLoad  `json:"load"`
}

type handlerBench struct {
	Command     string    `json:"command"`
	NsPerOp     []float64 `json:"nsPerOp"`
	BytesPerOp  float64   `json:"bytesPerOp"`
	AllocsPerOp float64   `json:"allocsPerOp"`
	Error       string    `json:"error,omitempty"`
}

func (h handlerBench) MedianNs() float64 { return median(h.NsPerOp) }

var benchLine = regexp.MustCompile(`^BenchmarkWebhookHandler\S*\s+\d+\s+([\d.]+) ns/op\s+([\d.]+) B/op\s+([\d.]+) allocs/op`)

func runHandlerBench(repo string) handlerBench {
	args := []string{"test", "-run", "^$", "-bench", "^BenchmarkWebhookHandler$", "-benchmem", "-benchtime", "2s", "-count", "3", "./tests/go/webhook/"}
	hb := handlerBench{Command: "go " + strings.Join(args, " ")}
	logf("webhook handler: %s", hb.Command)
	out, err := command(repo, nil, nil, "go", args...)
	if err != nil {
		hb.Error = err.Error()
		return hb
	}
	for _, l := range strings.Split(out, "\n") {
		if m := benchLine.FindStringSubmatch(l); m != nil {
			ns, _ := strconv.ParseFloat(m[1], 64)
			hb.NsPerOp = append(hb.NsPerOp, ns)
			hb.BytesPerOp, _ = strconv.ParseFloat(m[2], 64)
			hb.AllocsPerOp, _ = strconv.ParseFloat(m[3], 64)
			logf("  %s", strings.TrimSpace(l))
		}
	}
	if len(hb.NsPerOp) == 0 {
		hb.Error = "no benchmark line in the output: " + lastLines(out, 10)
	}
	return hb
}

func lastLines(s string, n int) string {
	ls := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(ls[max(0, len(ls)-n):], "\n")
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
	Rates     []int        `json:"rates"`
	Secs      float64      `json:"secs"` // of each rate
	Clients   int          `json:"clients"`
	Results   []loadResult `json:"results"`
	ServerRSS float64      `json:"serverRSSMiB"` // VmHWM of the server process
	Error     string       `json:"error,omitempty"`
}

func runWebhookLoad(repo, work string, rates []int, secs float64, clients int) webhookLoad {
	wl := webhookLoad{Rates: rates, Secs: secs, Clients: clients}
	if err := wl.run(repo, work); err != nil {
		wl.Error = err.Error()
		logf("webhook load: %s", wl.Error)
	}
	return wl
}

func (wl *webhookLoad) run(repo, work string) error {
	dir := filepath.Join(work, "webhook")
	_ = os.RemoveAll(dir)
	certDir := filepath.Join(dir, "tls")
	if err := os.MkdirAll(certDir, 0o755); err != nil {
		return err
	}
	bin := filepath.Join(work, "bin", "oras-cache-webhook")
	logf("webhook load: building %s", bin)
	if _, err := command(repo, []string{"CGO_ENABLED=0"}, nil, "go", "build", "-o", bin, "./webhook/cmd/oras-cache-webhook"); err != nil {
		return err
	}
	caPEM, err := writeCerts(certDir)
	if err != nil {
		return err
	}
	addrs := make([]string, 3) // admission, metrics, health
	for i := range addrs {
		if addrs[i], err = freeAddr(); err != nil {
			return err
		}
	}
	_, port, _ := net.SplitHostPort(addrs[0])
	// The golden tests' configuration (what the chart renders), served on loopback ports.
	golden := filepath.Join(repo, "tests", "go", "webhook", "testdata", "golden")
	base, err := os.ReadFile(filepath.Join(golden, "config.yaml"))
	if err != nil {
		return err
	}
	head, _, ok := strings.Cut(string(base), "\nserver:\n")
	if !ok {
		return fmt.Errorf("tests/go/webhook/testdata/golden/config.yaml has no server: block")
	}
	cfg := head + fmt.Sprintf("\nserver:\n  port: %s\n  path: /mutate-v1-pod\n  certDir: %s\n  metricsAddr: %q\n  healthAddr: %q\n",
		port, certDir, addrs[1], addrs[2])
	cfgPath := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		return err
	}
	logFile, err := os.Create(filepath.Join(dir, "webhook.log"))
	if err != nil {
		return err
	}
	defer logFile.Close()
	cmd := exec.Command(bin, "--config", cfgPath)
	// no cluster: an empty HOME and no KUBECONFIG (pods with a command need no image lookup)
	cmd.Env = []string{"HOME=" + dir}
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, "KUBECONFIG=") && !strings.HasPrefix(e, "HOME=") && !strings.HasPrefix(e, "KUBERNETES_") {
			cmd.Env = append(cmd.Env, e)
		}
	}
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		return err
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
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		resp, err := http.Get("http://" + addrs[2] + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(logFile.Name())
			return fmt.Errorf("webhook not ready within 30s: %s", lastLines(string(b), 5))
		}
	}
	podYAML, err := os.ReadFile(filepath.Join(golden, "job-one-container", "pod.yaml"))
	if err != nil {
		return err
	}
	podJSON, err := yaml.YAMLToJSON(podYAML)
	if err != nil {
		return err
	}
	url := fmt.Sprintf("https://127.0.0.1:%s/mutate-v1-pod", port)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	for _, rate := range wl.Rates {
		r := loadRun(url, pool, podJSON, rate, int(float64(rate)*wl.Secs), wl.Clients)
		logf("  %d req/s × %d (%d clients): achieved %.0f/s, p50 %.2f ms, p99 %.2f ms, max %.2f ms, p99 from schedule %.2f ms, errors %d %s",
			rate, r.Requests, wl.Clients, r.Achieved, r.P50ms, r.P99ms, r.MaxMs, r.SchedP99ms, r.Errors, r.FirstError)
		wl.Results = append(wl.Results, r)
	}
	return nil
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
	do := func(c *http.Client, uid string) error {
		resp, err := c.Post(url, "application/json", bytes.NewReader(review(uid, pod)))
		if err != nil {
			return err
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err == nil && (resp.StatusCode != 200 || !bytes.Contains(b, []byte(`"allowed":true`)) || !bytes.Contains(b, []byte(`"patch":`)) || !bytes.Contains(b, []byte(uid))) {
			err = fmt.Errorf("HTTP %d: %.200s", resp.StatusCode, b)
		}
		return err
	}
	cl := make([]*http.Client, clients)
	for i := range cl {
		cl[i] = &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
			TLSClientConfig:     &tls.Config{RootCAs: pool, ServerName: "cache-oras-cache-webhook.jobs.svc", MinVersion: tls.VersionTLS12},
			MaxIdleConnsPerHost: 1, MaxConnsPerHost: 1, ForceAttemptHTTP2: false,
		}}
		_ = do(cl[i], fmt.Sprintf("warm-%d", i)) // TLS handshake outside the measurement
		defer cl[i].CloseIdleConnections()
	}
	lat, sched, errs := make([]float64, total), make([]float64, total), make([]error, total)
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(float64(total)/float64(rate)*float64(time.Second))+30*time.Second)
	defer cancel()
	start := time.Now().Add(20 * time.Millisecond)
	var wg sync.WaitGroup
	for w := range clients {
		wg.Go(func() {
			for i := w; i < total; i += clients {
				due := start.Add(time.Duration(float64(i) / float64(rate) * float64(time.Second)))
				time.Sleep(time.Until(due))
				if errs[i] = ctx.Err(); errs[i] != nil {
					continue
				}
				t0 := time.Now()
				errs[i] = do(cl[w], fmt.Sprintf("00000000-0000-4000-8000-%012d", i))
				lat[i], sched[i] = time.Since(t0).Seconds()*1000, time.Since(due).Seconds()*1000
			}
		})
	}
	wg.Wait()
	res.Seconds = time.Since(start).Seconds()
	res.Achieved = float64(total) / res.Seconds
	var ok, okSched []float64
	for i, err := range errs {
		if err == nil {
			ok, okSched = append(ok, lat[i]), append(okSched, sched[i])
		} else if res.Errors++; res.FirstError == "" {
			res.FirstError = err.Error()
		}
	}
	res.P50ms, res.P99ms, res.MaxMs, res.SchedP99ms = pct(ok, 50), pct(ok, 99), pct(ok, 100), pct(okSched, 99)
	return res
}

func pct(v []float64, p float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Sorted(slices.Values(v))
	return s[min(max(int(float64(len(s))*p/100+0.5)-1, 0), len(s)-1)]
}

// writeCerts writes a CA and a serving certificate for 127.0.0.1 (tls.crt, tls.key) into dir and
// returns the CA's certificate.
func writeCerts(dir string) ([]byte, error) {
	cert := func(serial int64, cn string, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) (*x509.Certificate, *ecdsa.PrivateKey, []byte, error) {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		t := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: cn},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour)}
		if parent == nil { // the CA
			t.IsCA, t.BasicConstraintsValid, t.KeyUsage, parent, parentKey = true, true, x509.KeyUsageCertSign, t, key
		} else {
			t.DNSNames, t.IPAddresses = []string{cn}, []net.IP{net.ParseIP("127.0.0.1")}
			t.KeyUsage, t.ExtKeyUsage = x509.KeyUsageDigitalSignature, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		}
		der, err := x509.CreateCertificate(rand.Reader, t, parent, &key.PublicKey, parentKey)
		if err != nil {
			return nil, nil, nil, err
		}
		c, err := x509.ParseCertificate(der)
		return c, key, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), err
	}
	ca, caKey, caPEM, err := cert(1, "oras-cache bench CA", nil, nil)
	if err != nil {
		return nil, err
	}
	_, key, crt, err := cert(2, "cache-oras-cache-webhook.jobs.svc", ca, caKey)
	if err != nil {
		return nil, err
	}
	kb, _ := x509.MarshalECPrivateKey(key)
	if err := os.WriteFile(filepath.Join(dir, "tls.key"), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		return nil, err
	}
	return caPEM, os.WriteFile(filepath.Join(dir, "tls.crt"), crt, 0o600)
}
