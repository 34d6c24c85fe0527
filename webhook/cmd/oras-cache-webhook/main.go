// Command oras-cache-webhook is the mutating admission webhook of oras-cache.
//
// It takes one flag, --config (default /etc/oras-cache/config.yaml): the file the chart renders
// (see docs/design.md, "Webhook configuration file"). Logs are JSON on stderr.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	ctrlconfig "sigs.k8s.io/controller-runtime/pkg/client/config"

	"github.com/converged-computing/oras-cache/webhook/imageconfig"
	"github.com/converged-computing/oras-cache/webhook/inject"
	"github.com/converged-computing/oras-cache/webhook/server"
)

func main() {
	configPath := flag.String("config", inject.DefaultConfigPath, "path of the webhook configuration file (YAML, unknown keys rejected)")
	flag.Parse()
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "unexpected arguments: %v\n", flag.Args())
		os.Exit(2)
	}
	cfg, err := inject.LoadConfig(*configPath)
	if err != nil {
		log.Error("invalid configuration", "error", err.Error())
		os.Exit(1)
	}
	var secrets imageconfig.SecretGetter
	if rc, err := ctrlconfig.GetConfig(); err != nil {
		log.Warn("no Kubernetes API access: imagePullSecrets cannot be read for ENTRYPOINT lookups", "error", err.Error())
	} else if ks, err := imageconfig.NewKubeSecrets(rc); err != nil {
		log.Warn("no Kubernetes API client: imagePullSecrets cannot be read for ENTRYPOINT lookups", "error", err.Error())
	} else {
		secrets = ks
	}
	images := imageconfig.New(imageconfig.Options{
		PlainHTTP: cfg.PlainHTTPRegistries,
		Timeout:   cfg.EntrypointLookup.Timeout.Duration,
		Secrets:   secrets,
		Log:       log,
	})
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := server.Run(ctx, cfg, server.Options{Images: images, Log: log, DrainDelay: 5 * time.Second}); err != nil {
		log.Error("webhook failed", "error", err.Error())
		os.Exit(1)
	}
}
