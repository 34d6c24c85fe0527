// Command oras-cache-sidecar is the one static binary of the oras-cache data path:
//
//	oras-cache-sidecar init     --share DIR [--input REF]... [--unpack=false] [--debug]
//	oras-cache-sidecar launch   --share DIR [--input-path P] [--output-path P] [--output-pipe F] [--debug] -- ARGV...
//	oras-cache-sidecar push     --share DIR --output REF [--push-on-failure] [--termination-log F] [--start-timeout D] [--debug]
//	oras-cache-sidecar selftest [--reference REF] [--debug]
//
// Registry settings come from the ORAS_CACHE_* environment (sidecar/transfer). See docs/design.md.
package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/converged-computing/oras-cache/sidecar/artifact"
	"github.com/converged-computing/oras-cache/sidecar/launcher"
	"github.com/converged-computing/oras-cache/sidecar/marker"
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

environment: ORAS_CACHE_REGISTRY, ORAS_CACHE_PLAIN_HTTP (default true), ORAS_CACHE_USERNAME,
ORAS_CACHE_PASSWORD, ORAS_CACHE_TIMEOUT (default 30m), ORAS_CACHE_CA_FILE,
ORAS_CACHE_COMPRESSION_LEVEL (1-9, default 1), ORAS_CACHE_MAX_UNPACK_SIZE (default 64Gi)
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
	case "init":
		return cmdInit(args[1:])
	case "launch":
		return cmdLaunch(args[1:])
	case "push":
		return cmdPush(args[1:])
	case "selftest":
		return cmdSelftest(args[1:])
	case "-h", "--help", "help":
		fmt.Fprint(os.Stdout, usage)
		return exitOK
	default:
		fmt.Fprintf(os.Stderr, "unknown command %q\n%s", args[0], usage)
		return exitUsage
	}
}

type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

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

// ---- init ----

func cmdInit(args []string) int {
	fs := flag.NewFlagSet("init", flag.ContinueOnError)
	share := fs.String("share", "/oras-cache", "the shared volume")
	var inputs multiFlag
	fs.Var(&inputs, "input", "input artifact reference (repeatable); input i goes to <share>/inputs/<i>/")
	unpack := fs.Bool("unpack", true, "unpack directory layers (false: keep them as <title>.tar.gz)")
	debug := fs.Bool("debug", false, "verbose logs")
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "init: unexpected arguments %q\n", fs.Args())
		return exitUsage
	}
	log, client, _, err := setup("init", *debug)
	if err != nil {
		log.Error("configuration", "error", err.Error())
		return exitFailed
	}
	for _, d := range []string{"bin", "inputs", "outputs", "run"} {
		p := filepath.Join(*share, d)
		if err := os.MkdirAll(p, 0o777); err != nil {
			log.Error("preparing the share", "error", err.Error())
			return exitFailed
		}
		mode := os.FileMode(0o777)
		if d == "bin" {
			mode = 0o755
		}
		_ = os.Chmod(p, mode)
	}
	if err := copySelf(filepath.Join(*share, "bin", "oras-cache-sidecar")); err != nil {
		log.Error("copying the launcher into the share", "error", err.Error())
		return exitFailed
	}
	ctx, cancel := signalContext()
	defer cancel()
	for i, ref := range inputs {
		dest := filepath.Join(*share, "inputs", fmt.Sprint(i))
		if err := os.RemoveAll(dest); err != nil { // left by an earlier attempt of this init container
			log.Error("preparing the input directory", "error", err.Error())
			return exitFailed
		}
		res, err := client.Pull(ctx, ref, dest, artifact.PullOptions{KeepArchives: !*unpack, ReadableByAll: true})
		if err != nil {
			log.Error("input unavailable: the app will not start", "input", ref, "error", err.Error())
			fmt.Fprintf(os.Stderr, "oras-cache init: input %s: %v\n", ref, err)
			return exitFailed
		}
		log.Info("input ready", "input", ref, "digest", res.Digest, "files", res.Files, "bytes", res.Bytes, "path", dest)
	}
	return exitOK
}

// copySelf installs this executable at dst with mode 0555 (temp file + rename).
func copySelf(dst string) error {
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	in, err := os.Open(exe)
	if err != nil {
		return err
	}
	defer in.Close()
	tmp, err := os.CreateTemp(filepath.Dir(dst), ".oras-cache-sidecar-*")
	if err != nil {
		return err
	}
	_, err = io.Copy(tmp, in)
	if err == nil {
		err = tmp.Chmod(0o555)
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), dst)
	}
	if err != nil {
		os.Remove(tmp.Name())
	}
	return err
}

// ---- launch ----

func cmdLaunch(args []string) int {
	fs := flag.NewFlagSet("launch", flag.ContinueOnError)
	share := fs.String("share", "/oras-cache", "the shared volume")
	inputPath := fs.String("input-path", "", "where to place the inputs (default: the working directory)")
	outputPath := fs.String("output-path", "", "file or directory copied into the share after the app exits")
	outputPipe := fs.String("output-pipe", "", "file that receives a copy of the app's stdout")
	debug := fs.Bool("debug", false, "verbose logs")
	if err := fs.Parse(args); err != nil {
		return launcher.ExitLauncherError
	}
	argv := fs.Args()
	// flag stops at "--" and drops it; anything before a "--" that is not a flag is refused so a
	// missing "--" cannot silently eat arguments.
	if i := indexOf(args, "--"); i < 0 || len(args)-i-1 != len(argv) {
		fmt.Fprintln(os.Stderr, "oras-cache launcher: usage: launch [flags] -- COMMAND [ARGS...]")
		return launcher.ExitLauncherError
	}
	return launcher.Run(launcher.Options{Share: *share, InputPath: *inputPath, OutputPath: *outputPath,
		OutputPipe: *outputPipe, Argv: argv, Debug: *debug})
}

func indexOf(s []string, v string) int {
	for i, x := range s {
		if x == v {
			return i
		}
	}
	return -1
}

// ---- push ----

// termination is the JSON termination message of the push container (< 4 KiB).
type termination struct {
	Reference     string `json:"reference,omitempty"`
	Digest        string `json:"digest,omitempty"`
	Size          int64  `json:"size,omitempty"`
	Files         int    `json:"files,omitempty"`
	DurationMs    int64  `json:"durationMs,omitempty"`
	UploadedBytes *int64 `json:"uploadedBytes,omitempty"`
	ExitCode      *int   `json:"exitCode,omitempty"`
	RunID         string `json:"runId,omitempty"`
	Pod           string `json:"pod,omitempty"`
	Skipped       string `json:"skipped,omitempty"`
	Error         string `json:"error,omitempty"`
}

const maxTermination = 4000

func writeTermination(path string, t termination, log *slog.Logger) {
	b, _ := json.Marshal(t)
	for len(b) > maxTermination {
		// Shorten the longest free-text field on a rune boundary until the message fits.
		field := &t.Error
		if len(t.Skipped) > len(*field) {
			field = &t.Skipped
		}
		if len(t.Reference) > len(*field) {
			field = &t.Reference
		}
		keep := len(*field) - (len(b) - maxTermination) - 3
		if keep < 0 {
			keep = 0
		}
		*field = strings.ToValidUTF8((*field)[:keep], "") + "..."
		b, _ = json.Marshal(t)
	}
	fmt.Println(string(b))
	if path == "" {
		return
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		log.Warn("cannot write the termination message", "path", path, "error", err.Error())
	}
}

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
	t.Reference, t.Digest, t.Size, t.Files, t.DurationMs = res.Reference, res.Digest, res.Size, res.Files, res.DurationMs
	t.UploadedBytes = &res.UploadedBytes
	writeTermination(*termLog, t, log)
	_ = marker.MarkHandled(runDir, d.RunID)
	return exitOK
}

// ---- selftest ----

func cmdSelftest(args []string) int {
	fs := flag.NewFlagSet("selftest", flag.ContinueOnError)
	reference := fs.String("reference", "oras-cache/selftest:latest", "where to push the test artifact")
	debug := fs.Bool("debug", false, "verbose logs")
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	log, client, _, err := setup("selftest", *debug)
	if err != nil {
		log.Error("configuration", "error", err.Error())
		return exitFailed
	}
	if err := selftest(client, *reference, log); err != nil {
		log.Error("selftest failed", "error", err.Error())
		fmt.Fprintf(os.Stderr, "selftest FAILED: %v\n", err)
		return exitFailed
	}
	fmt.Println("selftest passed")
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
