// Package launcher is PID 1 of the app container: it places the inputs, runs the original argv
// without a shell, forwards signals, reaps, tees stdout, copies the output into the share and
// records the result for the push sidecar (docs/design.md, "The sidecar binary").
package launcher

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/converged-computing/oras-cache/sidecar/contract"
	"github.com/converged-computing/oras-cache/sidecar/marker"
	"github.com/converged-computing/oras-cache/sidecar/transfer"
)

// Exit codes of the launcher itself (otherwise it exits with the app's code, 128+n for signal n).
const (
	ExitLauncherError = 125 // the launcher failed: inputs, output missing, share not writable
	ExitNotExecutable = 126
	ExitNotFound      = 127
)

// Options of one launch.
type Options struct {
	Share      string   // the shared volume (/oras-cache)
	InputPath  string   // where the inputs go ("" = working directory)
	OutputPath string   // what to copy into the share after the app ("" = nothing)
	OutputPipe string   // file receiving a copy of the app's stdout ("" = none)
	Argv       []string // the original command, run as is
	// Limits bound each input placed (zero: transfer's defaults, as for the unpack).
	Limits Limits
	// TeeGrace bounds how long stdout is drained after the app exits (grandchildren may hold it).
	TeeGrace time.Duration
	Stderr   io.Writer
	Debug    bool
}

type launch struct {
	opts Options
	run  *marker.Run
}

func (l *launch) logf(format string, args ...any) {
	fmt.Fprintf(l.opts.Stderr, "oras-cache launcher: "+format+"\n", args...)
}

// Run does the whole launch and returns the exit code for the process. It reaps every child of the
// process (it is meant to be PID 1), so it must own the process it runs in.
func Run(opts Options) int {
	if opts.Stderr == nil {
		opts.Stderr = os.Stderr
	}
	if opts.TeeGrace <= 0 {
		opts.TeeGrace = 5 * time.Second
	}
	l := &launch{opts: opts}
	if len(opts.Argv) == 0 {
		l.logf("error: no command given after --")
		return ExitLauncherError
	}
	// Receive every signal from now on, so none is lost between the start of the child and the loop.
	sigs := make(chan os.Signal, 64)
	signal.Notify(sigs)
	defer signal.Stop(sigs)

	run, err := marker.Begin(contract.Share(opts.Share).Dir(contract.RunDir))
	if err != nil {
		l.logf("error: cannot record the run in %s: %v", opts.Share, err)
		return ExitLauncherError
	}
	l.run = run
	defer run.Close()

	fail := func(code int, err error) int {
		l.logf("error: %v", err)
		if ferr := run.Finish(contract.Done{ExitCode: code, Error: err.Error(), Outputs: []string{}}); ferr != nil {
			l.logf("error: cannot write the done marker: %v", ferr)
		}
		return code
	}

	if err := l.placeInputs(); err != nil {
		return fail(ExitLauncherError, err)
	}
	// Terminated while the inputs were placed: do not start the app at all.
	for pending := true; pending; {
		select {
		case s := <-sigs:
			if sig, ok := s.(syscall.Signal); ok && (sig == syscall.SIGTERM || sig == syscall.SIGINT || sig == syscall.SIGHUP || sig == syscall.SIGQUIT) {
				return fail(128+int(sig), fmt.Errorf("received %v before the app started; not starting it", sig))
			}
		default:
			pending = false
		}
	}
	path, err := exec.LookPath(opts.Argv[0])
	if err != nil {
		code := ExitNotFound
		if errors.Is(err, os.ErrPermission) || errors.Is(err, exec.ErrDot) {
			code = ExitNotExecutable
		}
		return fail(code, fmt.Errorf("command %q: %v", opts.Argv[0], err))
	}

	cmd := &exec.Cmd{Path: path, Args: opts.Argv, Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr}
	var tee sync.WaitGroup
	var pipeR *os.File
	if opts.OutputPipe != "" {
		pf, err := openPipeFile(opts.OutputPipe)
		if err != nil {
			return fail(ExitLauncherError, fmt.Errorf("output-pipe %s: %v", opts.OutputPipe, err))
		}
		defer pf.Close()
		r, w, err := os.Pipe()
		if err != nil {
			return fail(ExitLauncherError, err)
		}
		cmd.Stdout, pipeR = w, r
		tee.Add(1)
		go func() {
			defer tee.Done()
			_, _ = io.CopyBuffer(io.MultiWriter(os.Stdout, pf), r, make([]byte, 64<<10))
		}()
		defer w.Close()
	}
	if err := cmd.Start(); err != nil {
		code := ExitNotExecutable
		if errors.Is(err, os.ErrNotExist) {
			code = ExitNotFound
		}
		return fail(code, fmt.Errorf("starting %q: %v", opts.Argv[0], err))
	}
	if w, ok := cmd.Stdout.(*os.File); ok && pipeR != nil {
		w.Close() // only the child (and its children) hold the write end now
	}
	pid := cmd.Process.Pid
	status := l.supervise(cmd.Process, pid, sigs)

	if pipeR != nil {
		done := make(chan struct{})
		go func() { tee.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(opts.TeeGrace):
			l.logf("warning: stdout still open %s after the app exited (a background process holds it); stopped copying it to %s", opts.TeeGrace, opts.OutputPipe)
			pipeR.Close()
		}
	}

	d := contract.Done{Outputs: []string{}}
	code := 0
	switch {
	case status.Exited():
		code = status.ExitStatus()
	case status.Signaled():
		code = 128 + int(status.Signal())
		d.Signal = status.Signal().String()
	default:
		code = ExitLauncherError
	}
	d.ExitCode = code
	out, err := l.copyOutput(code == 0)
	if err != nil {
		d.Error = err.Error()
		l.logf("error: %v", err)
		if code == 0 {
			code = ExitLauncherError
		}
	}
	if out != "" {
		d.Outputs = []string{out}
	}
	if err := run.Finish(d); err != nil {
		l.logf("error: cannot write the done marker: %v", err)
		if code == 0 {
			code = ExitLauncherError
		}
	}
	if opts.Debug {
		l.logf("app exited: code=%d signal=%q outputs=%v", d.ExitCode, d.Signal, d.Outputs)
	}
	return code
}

// supervise forwards signals to the child and reaps every child until the app itself exits.
func (l *launch) supervise(p *os.Process, pid int, sigs chan os.Signal) syscall.WaitStatus {
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	for {
		if ws, ok := reap(pid); ok {
			return ws
		}
		select {
		case s := <-sigs:
			sig, _ := s.(syscall.Signal)
			switch sig {
			case syscall.SIGCHLD, syscall.SIGURG, syscall.SIGPIPE:
				// SIGCHLD: reap above; SIGURG: Go runtime preemption; SIGPIPE: our own writes.
			default:
				if l.opts.Debug {
					l.logf("forwarding %v to the app (pid %d)", sig, pid)
				}
				_ = p.Signal(sig)
			}
		case <-tick.C:
		}
	}
}

// reap collects every exited child without blocking; it reports the app's status once it exited.
func reap(pid int) (syscall.WaitStatus, bool) {
	var app syscall.WaitStatus
	found := false
	for {
		var ws syscall.WaitStatus
		wpid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		if err != nil || wpid <= 0 {
			return app, found
		}
		if wpid == pid {
			app, found = ws, true
		}
	}
}

func openPipeFile(p string) (*os.File, error) {
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return nil, err
	}
	return os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
}

func (l *launch) placeInputs() error {
	share, err := os.OpenRoot(l.opts.Share)
	if err != nil {
		return err
	}
	defer share.Close()
	// Everything is read through a root at share/inputs and written through one at input-path:
	// no link in an input, nor any path, reaches outside either.
	inputs, err := share.OpenRoot(contract.InputsDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer inputs.Close()
	srcs, err := inputSources(inputs)
	if err != nil || len(srcs) == 0 {
		return err
	}
	dest := l.opts.InputPath
	if dest == "" {
		if dest, err = os.Getwd(); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(dest, 0o755); err != nil {
		return fmt.Errorf("input-path %s: %v", dest, err)
	}
	destRoot, err := os.OpenRoot(dest)
	if err != nil {
		return fmt.Errorf("input-path %s: %v", dest, err)
	}
	defer destRoot.Close()
	lim := l.opts.Limits
	if lim.Bytes <= 0 {
		lim.Bytes = transfer.DefaultMaxUnpackSize
	}
	if lim.Entries <= 0 {
		lim.Entries = transfer.DefaultMaxUnpackEntries
	}
	inputsDir := contract.Share(l.opts.Share).Dir(contract.InputsDir)
	if err := checkPlacement(inputs, destRoot, inputsDir, dest, srcs, lim); err != nil {
		return err
	}
	c := &copier{src: inputs, dst: destRoot, confine: true}
	for _, s := range srcs {
		err := c.copyTree(s.rel(), s.name, s.rel())
		if err != nil {
			return fmt.Errorf("placing input %s in %s: %v", filepath.Join(inputsDir, s.rel()), dest, err)
		}
	}
	for _, k := range c.skipped {
		l.logf("warning: skipped special file %s", filepath.Join(inputsDir, k))
	}
	if l.opts.Debug {
		l.logf("placed %d input(s) in %s", len(srcs), dest)
	}
	return nil
}

// copyOutput copies output-path into share/outputs/<base name>, readable by all. A missing output
// is an error only when the app succeeded.
func (l *launch) copyOutput(appOK bool) (string, error) {
	if l.opts.OutputPath == "" {
		return "", nil
	}
	abs, err := filepath.Abs(l.opts.OutputPath)
	if err != nil {
		return "", err
	}
	name := filepath.Base(abs)
	if name == "/" || name == "." {
		return "", fmt.Errorf("output-path %q has no usable name", l.opts.OutputPath)
	}
	if _, err := os.Stat(abs); err != nil {
		if !appOK {
			return "", nil
		}
		if errors.Is(err, os.ErrNotExist) {
			return "", fmt.Errorf("the app succeeded but its output-path %s does not exist", abs)
		}
		return "", fmt.Errorf("output-path %s: %v", abs, err)
	}
	// Written through a root at share/outputs: whatever the share holds, the copy stays in it.
	share, err := os.OpenRoot(l.opts.Share)
	if err != nil {
		return "", err
	}
	defer share.Close()
	if err := share.Mkdir(contract.OutputsDir, 0o777); err != nil && !errors.Is(err, os.ErrExist) {
		return "", err
	}
	outs, err := share.OpenRoot(contract.OutputsDir)
	if err != nil {
		return "", err
	}
	defer outs.Close()
	if err := outs.RemoveAll(name); err != nil { // left by an earlier run of this container
		return "", err
	}
	src := abs
	if r, err := filepath.EvalSymlinks(abs); err == nil {
		src = r // an output-path that is a symlink: copy what it names
	}
	srcRoot, err := os.OpenRoot(filepath.Dir(src))
	if err != nil {
		return "", err
	}
	defer srcRoot.Close()
	c := &copier{src: srcRoot, dst: outs, orMode: 0o444}
	err = c.copyTree(filepath.Base(src), name, "")
	for _, k := range c.skipped {
		l.logf("warning: skipped special file %s", filepath.Join(filepath.Dir(src), k))
	}
	if err != nil {
		return "", fmt.Errorf("copying output %s into the share: %v", abs, err)
	}
	return name, nil
}
