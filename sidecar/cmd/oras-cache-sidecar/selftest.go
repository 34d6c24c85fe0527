package main

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/converged-computing/oras-cache/sidecar/artifact"
	"github.com/converged-computing/oras-cache/sidecar/contract"
	"github.com/converged-computing/oras-cache/sidecar/guard"
)

func cmdSelftest(args []string) int {
	a, err := contract.ParseSelftest(args)
	if err != nil {
		usageError(err)
		return exitUsage
	}
	log, client, cfg, err := setup(contract.RoleSelftest, a.Debug)
	if err != nil {
		log.Error("configuration", "error", err.Error())
		return exitFailed
	}
	if err := selftest(client, a.Reference, log); err != nil {
		log.Error("selftest failed", "error", err.Error())
		fmt.Fprintf(os.Stderr, "selftest FAILED: %v\n", err)
		return exitFailed
	}
	fmt.Println("selftest passed")
	// The cache's own guard says how full it is (helm test --logs shows it).
	if cfg.PlainHTTP && cfg.Registry != "" {
		ctx, cancel := signalContext()
		defer cancel()
		if u, ok, err := guard.FetchUsage(ctx, cfg.Registry); ok {
			fmt.Println(u.String())
		} else if err != nil {
			log.Warn("cache usage unavailable", "error", err.Error())
		}
	}
	return exitOK
}

func selftest(client *artifact.Client, ref string, log *slog.Logger) error {
	ctx, cancel := signalContext()
	defer cancel()
	work, err := os.MkdirTemp("", "oras-cache-selftest-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	src := filepath.Join(work, "src", "selftest")
	if err := os.MkdirAll(filepath.Join(src, "sub"), 0o755); err != nil {
		return err
	}
	payload := make([]byte, 256<<10)
	_, _ = rand.Read(payload)
	files := map[string][]byte{"random.bin": payload, "sub/hello.txt": []byte("hello from oras-cache " + time.Now().UTC().Format(time.RFC3339Nano) + "\n")}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(src, name), b, 0o644); err != nil {
			return err
		}
	}
	pushed, err := client.Push(ctx, ref, []string{src}, artifact.PushOptions{})
	if err != nil {
		return err
	}
	dest := filepath.Join(work, "pulled")
	byDigest, err := artifact.ParseRef(pushed.Reference, "")
	if err != nil {
		return err
	}
	byDigest.Reference = pushed.Digest
	pulled, err := client.Pull(ctx, byDigest.String(), dest, artifact.PullOptions{})
	if err != nil {
		return err
	}
	if pulled.Digest != pushed.Digest {
		return fmt.Errorf("pulled digest %s differs from pushed %s", pulled.Digest, pushed.Digest)
	}
	for name, want := range files {
		got, err := os.ReadFile(filepath.Join(dest, "selftest", name))
		if err != nil {
			return err
		}
		if !bytes.Equal(got, want) {
			return errors.New("pulled bytes differ from pushed bytes for " + name)
		}
	}
	log.Info("selftest passed", "reference", pushed.Reference, "digest", pushed.Digest)
	return nil
}
