package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/converged-computing/oras-cache/sidecar/guard"
)

// ---- guard ----

// cmdGuard runs the capacity guard in front of distribution (the registry pod's main process),
// or, with --install DIR, copies this binary into DIR (the registry pod's init container: the
// registry image has no copy of it).
func cmdGuard(args []string) int {
	fs := flag.NewFlagSet("guard", flag.ContinueOnError)
	install := fs.String("install", "", "copy this binary to DIR/oras-cache-sidecar and exit")
	listen := fs.String("listen", ":5000", "address of the guard (the registry Service port)")
	upstream := fs.String("upstream", "127.0.0.1:5001", "address distribution listens on")
	root := fs.String("root", "/var/lib/registry", "distribution's filesystem root directory")
	config := fs.String("config", "/etc/oras-cache-guard/guard.json", "capacity config (re-read while running)")
	walkEvery := fs.Duration("walk-every", 30*time.Second, "how often the root is measured again")
	debug := fs.Bool("debug", false, "verbose logs")
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	if *install != "" {
		if fs.NArg() > 0 {
			fmt.Fprintln(os.Stderr, "guard --install DIR takes no command")
			return exitUsage
		}
		if err := copySelf(filepath.Join(*install, "oras-cache-sidecar")); err != nil {
			fmt.Fprintf(os.Stderr, "guard: installing into %s: %v\n", *install, err)
			return exitFailed
		}
		return exitOK
	}
	argv := fs.Args()
	if i := slices.Index(args, "--"); len(argv) > 0 && (i < 0 || len(args)-i-1 != len(argv)) {
		fmt.Fprintln(os.Stderr, "usage: guard [flags] [-- REGISTRY COMMAND...]")
		return exitUsage
	}
	log := newLogger(*debug, "guard")
	ctx, cancel := signalContext()
	defer cancel()
	err := guard.Serve(ctx, guard.ServeOptions{Listen: *listen, Argv: argv, Options: guard.Options{
		Upstream: *upstream, Root: *root, ConfigFile: *config, WalkEvery: *walkEvery, Log: log}})
	if err != nil {
		log.Error("guard stopped", "error", err.Error())
		fmt.Fprintf(os.Stderr, "oras-cache guard: %v\n", err)
		return exitFailed
	}
	return exitOK
}
