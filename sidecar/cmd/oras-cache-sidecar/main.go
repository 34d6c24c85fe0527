// Command oras-cache-sidecar is the one static binary of the oras-cache data path:
//
//	oras-cache-sidecar init     --share DIR [--input REF]... [--unpack=false] [--debug]
//	oras-cache-sidecar launch   --share DIR [--input-path P] [--output-path P] [--output-pipe F] [--debug] -- ARGV...
//	oras-cache-sidecar push     --share DIR --output REF [--push-on-failure] [--termination-log F] [--start-timeout D] [--debug]
//	oras-cache-sidecar selftest [--reference REF] [--debug]
//	oras-cache-sidecar collect  [--timeout D] [--debug]
//	oras-cache-sidecar guard    [--listen A] [--upstream A] [--root DIR] [--config F] [-- REGISTRY COMMAND...] | --install DIR
//
// Registry settings come from the ORAS_CACHE_* environment (named in sidecar/contract, read by
// sidecar/transfer); the roles' flags are parsed by sidecar/contract too. See docs/design.md.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"

	"github.com/converged-computing/oras-cache/sidecar/artifact"
	"github.com/converged-computing/oras-cache/sidecar/contract"
	"github.com/converged-computing/oras-cache/sidecar/transfer"
)

// Exit codes of init, push and selftest.
const (
	exitOK      = 0
	exitFailed  = 1 // the transfer failed (message names the reference and the reason)
	exitUsage   = 2
	exitSkipped = 3 // push: the app failed, nothing pushed (see --push-on-failure)
)

const usage = `usage: oras-cache-sidecar <command> [flags]

commands:
  init      copy this binary into the share and pull the inputs (init container)
  launch    run the app as PID 1: place inputs, run argv, record the result (app container)
  push      wait for the app's result and push its output (sidecar container)
  selftest  push and pull a small artifact against $ORAS_CACHE_REGISTRY (helm test)
  guard     keep the cache within its bound, in front of the registry (registry pod)
  collect   apply the retention rules and collect garbage in the cache (retention CronJob)

environment: ORAS_CACHE_REGISTRY, ORAS_CACHE_PLAIN_HTTP (default true),
ORAS_CACHE_PLAIN_HTTP_REGISTRIES, ORAS_CACHE_USERNAME, ORAS_CACHE_PASSWORD (for
ORAS_CACHE_REGISTRY only), ORAS_CACHE_TIMEOUT (default 30m), ORAS_CACHE_CA_FILE,
ORAS_CACHE_COMPRESSION_LEVEL (1-9, default 1), ORAS_CACHE_MAX_UNPACK_SIZE (default 64Gi),
ORAS_CACHE_MAX_UNPACK_ENTRIES (default 1000000)
`

// memoryLimit is the Go heap's soft limit unless GOMEMLIMIT says otherwise: transfers stream, so
// a small live heap suffices and the container's memory stays flat (the webhook requests 64Mi).
const memoryLimit = 40 << 20

func main() {
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(memoryLimit)
	}
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	if len(args) == 0 {
		fmt.Fprint(os.Stderr, usage)
		return exitUsage
	}
	switch args[0] {
	case contract.RoleInit:
		return cmdInit(args[1:])
	case contract.RoleLaunch:
		return cmdLaunch(args[1:])
	case contract.RolePush:
		return cmdPush(args[1:])
	case contract.RoleSelftest:
		return cmdSelftest(args[1:])
	case "guard":
		return cmdGuard(args[1:])
	case "collect":
		return cmdCollect(args[1:])
	case "-h", "--help", "help":
		fmt.Fprint(os.Stdout, usage)
		return exitOK
	default:
		fmt.Fprintf(os.Stderr, "unknown command %q\n%s", args[0], usage)
		return exitUsage
	}
}

// usageError reports a bad command line; the flag package has already printed its own errors.
func usageError(err error) {
	if !errors.Is(err, contract.ErrFlags) {
		fmt.Fprintln(os.Stderr, err)
	}
}

func newLogger(debug bool, role string) *slog.Logger {
	level := slog.LevelInfo
	if debug {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: level})).With("role", role)
}

func setup(role string, debug bool) (*slog.Logger, *artifact.Client, transfer.Config, error) {
	log := newLogger(debug, role)
	cfg, err := transfer.FromEnv(nil)
	if err != nil {
		return log, nil, cfg, err
	}
	log.Debug("config", "config", cfg.String())
	c, err := artifact.NewClient(cfg, log)
	return log, c, cfg, err
}

// signalContext is cancelled on SIGTERM/SIGINT.
func signalContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
}
