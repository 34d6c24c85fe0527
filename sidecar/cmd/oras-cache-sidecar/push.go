package main

import (
	"fmt"
	"os"

	"github.com/converged-computing/oras-cache/sidecar/artifact"
	"github.com/converged-computing/oras-cache/sidecar/contract"
	"github.com/converged-computing/oras-cache/sidecar/marker"
)

func cmdPush(args []string) int {
	a, err := contract.ParsePush(args)
	if err != nil {
		usageError(err)
		return exitUsage
	}
	output, termLog := a.Output, a.TerminationLogPath()
	log, client, _, err := setup(contract.RolePush, a.Debug)
	t := contract.Termination{Reference: output, Pod: os.Getenv("HOSTNAME")}
	if err != nil {
		t.Error = "configuration: " + err.Error()
		log.Error("configuration", "error", err.Error())
		writeTermination(termLog, t, log)
		return exitFailed
	}
	// A bad reference fails now, not after the app ran.
	ref, err := artifact.ParseRef(output, os.Getenv(contract.EnvRegistry))
	if err == nil {
		_, derr := ref.Digest()
		if derr == nil {
			err = fmt.Errorf("--output %s must be a tag, not a digest", output)
		}
	}
	if err != nil {
		t.Error = err.Error()
		log.Error("invalid output reference", "error", err.Error())
		writeTermination(termLog, t, log)
		return exitFailed
	}
	t.Reference = ref.String()
	ctx, cancel := signalContext()
	defer cancel()
	runDir := a.Share.Dir(contract.RunDir)
	log.Info("waiting for the app", "runDir", runDir)
	d, err := marker.Wait(runDir, marker.WaitOptions{Poll: a.Poll, StartTimeout: a.StartTimeout,
		OnRunning: func(id string) { log.Info("app running", "runId", id) }}, ctx.Done())
	if err != nil {
		t.Error = err.Error()
		t.RunID = d.RunID
		log.Error("no result from the app", "error", err.Error())
		writeTermination(termLog, t, log)
		return exitFailed
	}
	t.RunID = d.RunID
	code := d.ExitCode
	t.ExitCode = &code
	log.Info("app finished", "runId", d.RunID, "exitCode", d.ExitCode, "signal", d.Signal, "outputs", d.Outputs, "launcherError", d.Error)
	if d.Failed() && !a.PushOnFailure {
		t.Skipped = fmt.Sprintf("the app failed (exit code %d", d.ExitCode)
		if d.Error != "" {
			t.Skipped += "; " + d.Error
		}
		t.Skipped += "); nothing pushed (see push-on-failure)"
		writeTermination(termLog, t, log)
		_ = marker.MarkHandled(runDir, d.RunID)
		return exitSkipped
	}
	if len(d.Outputs) == 0 {
		t.Error = "the app recorded no output to push (is output-path set, and did it exist?)"
		if d.Error != "" {
			t.Error += ": " + d.Error
		}
		log.Error("nothing to push", "error", t.Error)
		writeTermination(termLog, t, log)
		return exitFailed
	}
	// The share is writable by the app: its outputs are read through a root at outputs/, as single
	// names (marker.Wait checked them), never following a symlink out of it.
	outs, err := openOutputs(a.Share)
	if err != nil {
		t.Error = "opening the share's outputs: " + err.Error()
		log.Error("push failed", "output", output, "error", t.Error)
		writeTermination(termLog, t, log)
		return exitFailed
	}
	defer outs.Close()
	res, err := client.Push(ctx, output, d.Outputs, artifact.PushOptions{Root: outs})
	if msg, full := artifact.CacheFull(err); full {
		// Permanent, and said first: the step fails now instead of retrying until the deadline.
		t.Error = msg + " (pushing " + t.Reference + ")"
		log.Error("push failed: "+msg, "output", output, "error", err.Error())
		writeTermination(termLog, t, log)
		return exitFailed
	}
	if err != nil {
		t.Error = err.Error()
		log.Error("push failed", "output", output, "error", err.Error())
		writeTermination(termLog, t, log)
		return exitFailed
	}
	t.Reference, t.PushResult = res.Reference, &res
	writeTermination(termLog, t, log)
	_ = marker.MarkHandled(runDir, d.RunID)
	return exitOK
}

// openOutputs opens share/outputs as an os.Root, itself reached through a root at the share.
func openOutputs(share contract.Share) (*os.Root, error) {
	r, err := os.OpenRoot(string(share))
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return r.OpenRoot(contract.OutputsDir)
}
