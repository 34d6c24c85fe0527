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
	fs := flag.NewFlagSet("worker", flag.ContinueOnError)
	reg := fs.String("registry", "", "registry host:port (plain HTTP)")
	ref := fs.String("ref", "", "repository:tag, relative to -registry")
	if len(args) < 1 || (args[0] != "push" && args[0] != "pull") || fs.Parse(args[1:]) != nil || fs.NArg() != 1 || *reg == "" || *ref == "" {
		fmt.Fprintln(os.Stderr, "usage: bench worker push|pull -registry HOST -ref REF PATH")
		return 2
	}
	cfg := transfer.Default()
	cfg.Registry = *reg
	c, err := artifact.NewClient(cfg, nil)
	if p := os.Getenv("BENCH_CPUPROFILE"); p != "" && err == nil { // for analysis, never set by the benchmark
		if f, err := os.Create(p); err == nil {
			_ = pprof.StartCPUProfile(f)
			defer func() { pprof.StopCPUProfile(); f.Close() }()
		}
	}
	var out workerResult
	if err == nil && args[0] == "push" {
		var r contract.PushResult
		r, err = c.Push(context.Background(), *ref, []string{fs.Arg(0)}, artifact.PushOptions{})
		out.Push = &r
	} else if err == nil {
		var r artifact.PullResult
		r, err = c.Pull(context.Background(), *ref, fs.Arg(0), artifact.PullOptions{})
		out.Pull = &r
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	_ = json.NewEncoder(os.Stdout).Encode(out)
	return 0
}
