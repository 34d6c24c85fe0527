package main

// The worker: this binary re-executed as `bench worker push|pull`, a separate process that runs
// our data path (sidecar/artifact) exactly as the sidecar does, so its wall time and peak RSS are
// measured like the oras CLI's.

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"runtime/debug"
	"runtime/pprof"

	"github.com/converged-computing/oras-cache/sidecar/artifact"
	"github.com/converged-computing/oras-cache/sidecar/contract"
	"github.com/converged-computing/oras-cache/sidecar/transfer"
)

// sidecarMemoryLimit mirrors sidecar/cmd/oras-cache-sidecar (the Go heap's soft limit unless
// GOMEMLIMIT is set).
const sidecarMemoryLimit = 40 << 20

type workerResult struct {
	Push *contract.PushResult `json:"push,omitempty"`
	Pull *artifact.PullResult `json:"pull,omitempty"`
}

func workerMain(args []string) int {
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(sidecarMemoryLimit)
	}
	if len(args) < 1 {
		fmt.Fprintln(os.Stderr, "usage: bench worker push|pull -registry HOST -ref REF PATH")
		return 2
	}
	fs := flag.NewFlagSet("worker "+args[0], flag.ContinueOnError)
	reg := fs.String("registry", "", "registry host:port (plain HTTP)")
	ref := fs.String("ref", "", "repository:tag, relative to -registry")
	if err := fs.Parse(args[1:]); err != nil || fs.NArg() != 1 || *reg == "" || *ref == "" {
		fmt.Fprintln(os.Stderr, "usage: bench worker push|pull -registry HOST -ref REF PATH")
		return 2
	}
	cfg := transfer.Default()
	cfg.Registry = *reg
	c, err := artifact.NewClient(cfg, nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if p := os.Getenv("BENCH_CPUPROFILE"); p != "" { // for analysis, never set by the benchmark
		if f, err := os.Create(p); err == nil {
			_ = pprof.StartCPUProfile(f)
			defer func() { pprof.StopCPUProfile(); f.Close() }()
		}
	}
	var out workerResult
	switch args[0] {
	case "push":
		r, err := c.Push(context.Background(), *ref, []string{fs.Arg(0)}, artifact.PushOptions{})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		out.Push = &r
	case "pull":
		r, err := c.Pull(context.Background(), *ref, fs.Arg(0), artifact.PullOptions{})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		out.Pull = &r
	default:
		fmt.Fprintln(os.Stderr, "worker: push or pull")
		return 2
	}
	_ = json.NewEncoder(os.Stdout).Encode(out)
	return 0
}
