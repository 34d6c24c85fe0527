package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/converged-computing/oras-cache/sidecar/artifact"
	"github.com/converged-computing/oras-cache/sidecar/marker"
	"github.com/converged-computing/oras-cache/sidecar/transfer"
)

func cmdPush(args []string) int {
	fs := flag.NewFlagSet("push", flag.ContinueOnError)
	share := fs.String("share", "/oras-cache", "the shared volume")
	output := fs.String("output", "", "artifact reference to push to (a tag; relative to $ORAS_CACHE_REGISTRY when it has no host)")
	pushOnFailure := fs.Bool("push-on-failure", false, "push the output even when the app failed")
	termLog := fs.String("termination-log", "/dev/termination-log", "where to write the JSON termination message (\"\" = stdout only)")
	startTimeout := fs.Duration("start-timeout", marker.DefaultStart, "give up when no launcher runs in the app container for this long")
	poll := fs.Duration("poll", marker.DefaultPoll, "marker polling interval")
	debug := fs.Bool("debug", false, "verbose logs")
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	if *output == "" || fs.NArg() > 0 {
		fmt.Fprintln(os.Stderr, "push: --output REF is required and there are no positional arguments")
		return exitUsage
	}
	log, client, _, err := setup("push", *debug)
	t := termination{Reference: *output, Pod: os.Getenv("HOSTNAME")}
	if err != nil {
		t.Error = "configuration: " + err.Error()
		log.Error("configuration", "error", err.Error())
		writeTermination(*termLog, t, log)
		return exitFailed
	}
	// A bad reference fails now, not after the app ran.
	ref, err := artifact.ParseRef(*output, os.Getenv(transfer.EnvRegistry))
	if err == nil {
		_, derr := ref.Digest()
		if derr == nil {
			err = fmt.Errorf("--output %s must be a tag, not a digest", *output)
		}
	}
	if err != nil {
		t.Error = err.Error()
		log.Error("invalid output reference", "error", err.Error())
		writeTermination(*termLog, t, log)
		return exitFailed
	}
	t.Reference = ref.String()
	ctx, cancel := signalContext()
	defer cancel()
	runDir := filepath.Join(*share, "run")
	log.Info("waiting for the app", "runDir", runDir)
	d, err := marker.Wait(runDir, marker.WaitOptions{Poll: *poll, StartTimeout: *startTimeout,
		OnRunning: func(id string) { log.Info("app running", "runId", id) }}, ctx.Done())
	if err != nil {
		t.Error = err.Error()
		t.RunID = d.RunID
		log.Error("no result from the app", "error", err.Error())
		writeTermination(*termLog, t, log)
		return exitFailed
	}
	t.RunID = d.RunID
	code := d.ExitCode
	t.ExitCode = &code
	log.Info("app finished", "runId", d.RunID, "exitCode", d.ExitCode, "signal", d.Signal, "outputs", d.Outputs, "launcherError", d.Error)
	if d.Failed() && !*pushOnFailure {
		t.Skipped = fmt.Sprintf("the app failed (exit code %d", d.ExitCode)
		if d.Error != "" {
			t.Skipped += "; " + d.Error
		}
		t.Skipped += "); nothing pushed (see push-on-failure)"
		writeTermination(*termLog, t, log)
		_ = marker.MarkHandled(runDir, d.RunID)
		return exitSkipped
	}
	if len(d.Outputs) == 0 {
		t.Error = "the app recorded no output to push (is output-path set, and did it exist?)"
		if d.Error != "" {
			t.Error += ": " + d.Error
		}
		log.Error("nothing to push", "error", t.Error)
		writeTermination(*termLog, t, log)
		return exitFailed
	}
	var paths []string
	for _, o := range d.Outputs {
		paths = append(paths, filepath.Join(*share, "outputs", o))
	}
	res, err := client.Push(ctx, *output, paths, artifact.PushOptions{})
	if err != nil {
		t.Error = err.Error()
		log.Error("push failed", "output", *output, "error", err.Error())
		writeTermination(*termLog, t, log)
		return exitFailed
	}
	t.Reference, t.PushResult = res.Reference, &res
	writeTermination(*termLog, t, log)
	_ = marker.MarkHandled(runDir, d.RunID)
	return exitOK
}
