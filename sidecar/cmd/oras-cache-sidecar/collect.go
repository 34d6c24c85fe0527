package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/converged-computing/oras-cache/sidecar/guard"
	"github.com/converged-computing/oras-cache/sidecar/transfer"
)

// ---- collect ----

// cmdCollect asks the cache's guard to apply the retention rules and collect garbage (the
// retention CronJob, or `kubectl create job --from=cronjob/…`). It prints the report.
func cmdCollect(args []string) int {
	fs := flag.NewFlagSet("collect", flag.ContinueOnError)
	timeout := fs.Duration("timeout", 30*time.Minute, "give up after this long (the registry may be restarting)")
	debug := fs.Bool("debug", false, "verbose logs")
	if err := fs.Parse(args); err != nil || fs.NArg() > 0 {
		return exitUsage
	}
	log := newLogger(*debug, "collect")
	cfg, err := transfer.FromEnv(nil)
	if err != nil {
		log.Error("configuration", "error", err.Error())
		return exitFailed
	}
	ctx, cancel := signalContext()
	defer cancel()
	ctx, cancelT := context.WithTimeout(ctx, *timeout)
	defer cancelT()
	scheme := "https"
	if cfg.PlainHTTP {
		scheme = "http"
	}
	var rep guard.Report
	for attempt := 1; ; attempt++ {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, scheme+"://"+cfg.Registry+guard.CollectPath, nil)
		if cfg.Username != "" {
			req.SetBasicAuth(cfg.Username, cfg.Password)
		}
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
			resp.Body.Close()
			// 503: the registry is (re)starting; 409: another collection runs — wait for it.
			if resp.StatusCode != http.StatusServiceUnavailable && resp.StatusCode != http.StatusConflict {
				if jerr := json.Unmarshal(b, &rep); jerr != nil || (resp.StatusCode != http.StatusOK && rep.Error == "") {
					log.Error("collection refused", "status", resp.Status, "body", strings.TrimSpace(string(b)))
					fmt.Fprintf(os.Stderr, "oras-cache collect: %s: %s\n", resp.Status, strings.TrimSpace(string(b)))
					return exitFailed
				}
				break
			}
			err = fmt.Errorf("%s", resp.Status)
		}
		if ctx.Err() != nil {
			fmt.Fprintf(os.Stderr, "oras-cache collect: gave up after %d attempts: %v\n", attempt, err)
			return exitFailed
		}
		log.Warn("retrying", "attempt", attempt, "error", err.Error())
		select {
		case <-ctx.Done():
		case <-time.After(min(time.Duration(attempt)*time.Second, 10*time.Second)):
		}
	}
	b, _ := json.Marshal(rep)
	fmt.Println(string(b))
	if rep.Error != "" {
		fmt.Fprintf(os.Stderr, "oras-cache collect: %s\n", rep.Error)
		return exitFailed
	}
	fmt.Printf("collected: %d tags deleted (%s), %d manifests deleted, %s reclaimed (%s → %s used), read-only for %.1fs\n",
		len(rep.DeletedTags), strings.Join(rep.DeletedTags, " "), rep.DeletedManifests, guard.Bytes(rep.Reclaimed),
		guard.Bytes(rep.UsedBefore), guard.Bytes(rep.UsedAfter), float64(rep.ReadOnlyMs)/1000)
	return exitOK
}
