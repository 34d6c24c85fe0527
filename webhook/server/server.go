// Package server serves the oras-cache mutating admission webhook: the controller-runtime
// webhook server (TLS reloaded on rotation), Prometheus metrics, health endpoints and graceful
// shutdown.
package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	admissionv1 "k8s.io/api/admission/v1"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
	"sigs.k8s.io/controller-runtime/pkg/webhook"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/converged-computing/oras-cache/webhook/inject"
)

// Metrics are the webhook's own Prometheus metrics (controller-runtime adds its
// controller_runtime_webhook_* request metrics to its registry).
type Metrics struct {
	Requests *prometheus.CounterVec
	Denials  *prometheus.CounterVec
	Latency  *prometheus.HistogramVec
}

// NewMetrics registers the metrics in reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "oras_cache_webhook_admissions_total",
			Help: "Admission requests handled, by result (injected, skipped, denied, error).",
		}, []string{"result"}),
		Denials: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "oras_cache_webhook_denials_total",
			Help: "Pods denied, by reason (one count per denial reason in the response).",
		}, []string{"reason"}),
		Latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "oras_cache_webhook_admission_duration_seconds",
			Help:    "Time to decide on an admission request, by result.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"result"}),
	}
	for _, r := range []string{"injected", "skipped", "denied", "error"} {
		m.Requests.WithLabelValues(r) // export zeros before the first request
	}
	if reg != nil {
		reg.MustRegister(m.Requests, m.Denials, m.Latency)
	}
	return m
}

// Handler is the admission.Handler of oras-cache.
type Handler struct {
	Mutator *inject.Mutator
	Log     *slog.Logger
	Metrics *Metrics
}

// Handle decides on one AdmissionRequest.
func (h *Handler) Handle(ctx context.Context, req admission.Request) admission.Response {
	start := time.Now()
	resp, result, reasons := h.handle(ctx, req)
	if h.Metrics != nil {
		h.Metrics.Requests.WithLabelValues(result).Inc()
		h.Metrics.Latency.WithLabelValues(result).Observe(time.Since(start).Seconds())
		for _, r := range reasons {
			h.Metrics.Denials.WithLabelValues(r).Inc()
		}
	}
	if h.Log != nil {
		attrs := []any{"uid", string(req.UID), "namespace", req.Namespace, "name", podName(req), "result", result, "durationMs", time.Since(start).Milliseconds()}
		if resp.Result != nil && resp.Result.Message != "" {
			attrs = append(attrs, "message", resp.Result.Message)
		}
		h.Log.InfoContext(ctx, "admission", attrs...)
	}
	return resp
}

func podName(req admission.Request) string {
	if req.Name != "" {
		return req.Name
	}
	return "(generated)"
}

func (h *Handler) handle(ctx context.Context, req admission.Request) (admission.Response, string, []string) {
	if req.Operation != admissionv1.Create || req.Kind.Kind != "Pod" || req.SubResource != "" {
		return admission.Allowed("oras-cache: only pod creation is mutated"), "skipped", nil
	}
	cfg := h.Mutator.Config
	if req.Namespace != cfg.Namespace {
		return admission.Allowed(fmt.Sprintf("oras-cache: namespace %q is not served by this cache (it serves %q)", req.Namespace, cfg.Namespace)), "skipped", nil
	}
	res, err := h.Mutator.Mutate(ctx, req.Namespace, req.Object.Raw)
	if err != nil {
		return admission.Errored(http.StatusBadRequest, err), "error", nil
	}
	switch {
	case res.Skip != "":
		return admission.Allowed("oras-cache: " + res.Skip), "skipped", nil
	case len(res.Denials) > 0:
		reasons := make([]string, 0, len(res.Denials))
		for _, d := range res.Denials {
			reasons = append(reasons, d.Reason)
		}
		return admission.Denied(res.Message()), "denied", reasons
	}
	// Encode the patch once, ourselves: handing controller-runtime jsonpatch operations makes it
	// marshal each value, then marshal and compact the list again (a third of the request's time).
	patch, err := json.Marshal(res.Patch)
	if err != nil {
		return admission.Errored(http.StatusInternalServerError, err), "error", nil
	}
	resp := admission.Allowed("")
	resp.Patch = patch
	pt := admissionv1.PatchTypeJSONPatch
	resp.PatchType = &pt
	return resp, "injected", nil
}

// Options of Run beyond the configuration file.
type Options struct {
	// Images resolves ENTRYPOINT/CMD (nil: pods without command are denied).
	Images inject.ImageResolver
	// Log is the structured logger (default slog.Default()).
	Log *slog.Logger
	// Registry receives the metrics (default: a new registry).
	Registry *prometheus.Registry
	// Ready is closed when every listener is up (optional, for tests).
	Ready chan<- struct{}
	// ShutdownTimeout bounds the graceful shutdown of the HTTP servers (default 20s).
	ShutdownTimeout time.Duration
	// DrainDelay is how long /readyz fails before the listeners close after ctx ends, so the
	// Service stops sending requests first (main uses 5s; default 0).
	DrainDelay time.Duration
}

// Run serves until ctx is cancelled (SIGTERM in main), then shuts down gracefully.
func Run(ctx context.Context, cfg *inject.Config, o Options) error {
	log := o.Log
	if log == nil {
		log = slog.Default()
	}
	ctrllog.SetLogger(logr.FromSlogHandler(log.Handler()))
	reg := o.Registry
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	if o.ShutdownTimeout <= 0 {
		o.ShutdownTimeout = 20 * time.Second
	}
	h := &Handler{
		Mutator: &inject.Mutator{Config: cfg, Images: o.Images},
		Log:     log,
		Metrics: NewMetrics(reg),
	}
	opts := webhook.Options{
		Port:     cfg.Server.Port,
		CertDir:  cfg.Server.CertDir,
		CertName: "tls.crt",
		KeyName:  "tls.key",
	}
	if cfg.Server.ClientCAFile != "" {
		pool, err := loadClientCAs(cfg.Server.ClientCAFile)
		if err != nil {
			return err
		}
		// every connection must present a certificate of these CAs before any request is read
		opts.TLSOpts = append(opts.TLSOpts, func(c *tls.Config) {
			c.ClientAuth = tls.RequireAndVerifyClientCert
			c.ClientCAs = pool
		})
		log.Info("admission port requires client certificates", "clientCAFile", cfg.Server.ClientCAFile)
	}
	srv := webhook.NewServer(opts)
	srv.Register(cfg.Server.Path, &webhook.Admission{Handler: h})

	var shuttingDown atomic.Bool
	started := srv.StartedChecker()
	health := http.NewServeMux()
	health.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	})
	health.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) {
		if shuttingDown.Load() {
			http.Error(w, "shutting down", http.StatusServiceUnavailable)
			return
		}
		if err := started(r); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok\n"))
	})
	metricsMux := http.NewServeMux()
	metricsMux.Handle("/metrics", promhttp.HandlerFor(prometheus.Gatherers{reg, ctrlmetrics.Registry}, promhttp.HandlerOpts{}))

	listen := func(addr string) (net.Listener, error) {
		l, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, fmt.Errorf("listen on %s: %w", addr, err)
		}
		return l, nil
	}
	healthL, err := listen(cfg.Server.HealthAddr)
	if err != nil {
		return err
	}
	metricsL, err := listen(cfg.Server.MetricsAddr)
	if err != nil {
		healthL.Close()
		return err
	}
	plain := []*http.Server{
		{Handler: health, ReadHeaderTimeout: 10 * time.Second},
		{Handler: metricsMux, ReadHeaderTimeout: 10 * time.Second},
	}
	errc := make(chan error, 3)
	for i, l := range []net.Listener{healthL, metricsL} {
		go func() {
			if err := plain[i].Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
				errc <- err
			}
		}()
	}
	whCtx, stopWebhook := context.WithCancel(context.Background())
	defer stopWebhook()
	whDone := make(chan error, 1)
	go func() { whDone <- srv.Start(whCtx) }()
	log.Info("oras-cache webhook serving", "cache", cfg.CacheName, "namespace", cfg.Namespace,
		"port", cfg.Server.Port, "path", cfg.Server.Path, "metrics", cfg.Server.MetricsAddr, "health", cfg.Server.HealthAddr)
	if o.Ready != nil {
		go func() {
			for whCtx.Err() == nil {
				if started(&http.Request{}) == nil {
					close(o.Ready)
					return
				}
				time.Sleep(20 * time.Millisecond)
			}
		}()
	}

	var runErr error
	select {
	case <-ctx.Done():
		log.Info("shutting down")
	case runErr = <-errc:
	case runErr = <-whDone:
		if runErr == nil {
			runErr = errors.New("webhook server stopped")
		}
		whDone = nil
	}
	shuttingDown.Store(true)
	if runErr == nil && o.DrainDelay > 0 {
		log.Info("draining before shutdown", "delay", o.DrainDelay.String())
		time.Sleep(o.DrainDelay)
	}
	stopWebhook()
	sctx, cancel := context.WithTimeout(context.Background(), o.ShutdownTimeout)
	defer cancel()
	for _, s := range plain {
		_ = s.Shutdown(sctx)
	}
	if whDone != nil {
		select {
		case err := <-whDone:
			if runErr == nil && err != nil {
				runErr = err
			}
		case <-sctx.Done():
		}
	}
	return runErr
}

// loadClientCAs reads the PEM bundle of CAs whose client certificates the admission port accepts.
func loadClientCAs(path string) (*x509.CertPool, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("server.clientCAFile: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data) {
		return nil, fmt.Errorf("server.clientCAFile %s: no PEM certificate in it", path)
	}
	return pool, nil
}
