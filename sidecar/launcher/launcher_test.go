package launcher

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/converged-computing/oras-cache/sidecar/contract"
	"github.com/converged-computing/oras-cache/sidecar/marker"
)

// TestMain makes the test binary play two roles in real child processes:
//
//	<test> launcher-helper ARGV...   → launcher.Run with the options in $LAUNCHER_TEST_OPTS
//	<test> child-helper MODE ARGS... → the app (see child)
func TestMain(m *testing.M) {
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case "launcher-helper":
			var o Options
			if err := json.Unmarshal([]byte(os.Getenv("LAUNCHER_TEST_OPTS")), &o); err != nil {
				panic(err)
			}
			o.Argv = os.Args[2:]
			os.Exit(Run(o))
		case "child-helper":
			os.Exit(child(os.Args[2], os.Args[3:]))
		}
	}
	os.Exit(m.Run())
}

// child is the app: it reports to $CHILD_OUT.
func child(mode string, args []string) int {
	out := os.Getenv("CHILD_OUT")
	report := func(v any) {
		b, _ := json.Marshal(v)
		_ = os.WriteFile(out+".tmp", b, 0o644)
		_ = os.Rename(out+".tmp", out)
	}
	switch mode {
	case "argv":
		wd, _ := os.Getwd()
		report(map[string]any{"argv": args, "env": os.Getenv("LAUNCHER_TEST_ENV"), "wd": wd})
		return 0
	case "exit":
		n, _ := strconv.Atoi(args[0])
		return n
	case "sleep":
		report(map[string]any{"pid": os.Getpid()})
		time.Sleep(time.Minute)
		return 0
	case "term":
		c := make(chan os.Signal, 1)
		signal.Notify(c, syscall.SIGTERM)
		report(map[string]any{"ready": true})
		select {
		case <-c:
			report(map[string]any{"got": "SIGTERM"})
			return 7
		case <-time.After(time.Minute):
			return 0
		}
	case "orphan":
		// leave a background process that keeps stdout open, then exit
		c := exec.Command(os.Args[0], "child-helper", "sleep")
		c.Stdout = os.Stdout
		_ = c.Start()
		for i := 0; i < 500; i++ { // until the grandchild reported its pid
			if _, err := os.Stat(out); err == nil {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		fmt.Println("parent done")
		return 0
	case "orphans":
		// B starts G and exits at once; G exits too and is reparented, as a zombie, to PID 1.
		b := exec.Command(os.Args[0], "child-helper", "spawn")
		_ = b.Run()
		g, _ := os.ReadFile(out + ".g")
		time.Sleep(1500 * time.Millisecond)
		state := "reaped"
		if st, err := os.ReadFile("/proc/" + strings.TrimSpace(string(g)) + "/stat"); err == nil {
			state = "present: " + string(st)
			if f := strings.Fields(string(st)); len(f) > 2 && f[2] == "Z" {
				state = "zombie"
			}
		}
		report(map[string]any{"ppid": os.Getppid(), "orphan": state, "gpid": string(g)})
		return 0
	case "spawn":
		g := exec.Command(os.Args[0], "child-helper", "exit", "0")
		_ = g.Start()
		_ = os.WriteFile(out+".g", []byte(strconv.Itoa(g.Process.Pid)), 0o644)
		time.Sleep(200 * time.Millisecond) // G is a zombie of ours by now
		return 0
	case "stdout":
		for _, a := range args {
			fmt.Println(a)
		}
		return 0
	case "write":
		// write PATH CONTENT EXIT
		_ = os.MkdirAll(filepath.Dir(args[0]), 0o755)
		_ = os.WriteFile(args[0], []byte(args[1]), 0o600)
		n, _ := strconv.Atoi(args[2])
		return n
	}
	return 99
}

type launched struct {
	cmd    *exec.Cmd
	stdout *bytes.Buffer
	stderr *bytes.Buffer
	share  string
	out    string // CHILD_OUT
}

func start(t *testing.T, o Options, argv ...string) *launched {
	t.Helper()
	if o.Share == "" {
		o.Share = t.TempDir()
	}
	o.TeeGrace = time.Second
	b, _ := json.Marshal(o)
	l := &launched{stdout: &bytes.Buffer{}, stderr: &bytes.Buffer{}, share: o.Share, out: filepath.Join(t.TempDir(), "child.json")}
	l.cmd = exec.Command(os.Args[0], append([]string{"launcher-helper"}, argv...)...)
	l.cmd.Env = append(os.Environ(), "LAUNCHER_TEST_OPTS="+string(b), "CHILD_OUT="+l.out, "LAUNCHER_TEST_ENV=kept as is: $HOME")
	l.cmd.Stdout, l.cmd.Stderr = l.stdout, l.stderr
	if err := l.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.cmd.Process.Kill() })
	return l
}

func (l *launched) wait(t *testing.T) int {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- l.cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatalf("launcher did not exit; stderr:\n%s", l.stderr)
	}
	return l.cmd.ProcessState.ExitCode()
}

func (l *launched) childReport(t *testing.T, wait bool) map[string]any {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		b, err := os.ReadFile(l.out)
		if err == nil {
			var m map[string]any
			if err := json.Unmarshal(b, &m); err != nil {
				t.Fatal(err)
			}
			return m
		}
		if !wait || time.Now().After(deadline) {
			return nil
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (l *launched) done(t *testing.T) contract.Done {
	t.Helper()
	var d contract.Done
	b, err := os.ReadFile(filepath.Join(l.share, "run", marker.DoneFile))
	if err != nil {
		t.Fatalf("no done marker: %v; stderr:\n%s", err, l.stderr)
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatal(err)
	}
	return d
}

func self(mode string, args ...string) []string {
	return append([]string{os.Args[0], "child-helper", mode}, args...)
}

func TestArgvPreservedExactly(t *testing.T) {
	args := []string{"with spaces", `"double quoted"`, `'single'`, "*.go", "", "$(HOME)", "$HOME", `back\slash`, "semi;colon && echo no", "\ttab\nnewline", "ünïcode"}
	wd := t.TempDir()
	l := start(t, Options{InputPath: wd}, self("argv", args...)...)
	if code := l.wait(t); code != 0 {
		t.Fatalf("exit %d; stderr:\n%s", code, l.stderr)
	}
	r := l.childReport(t, false)
	got, _ := json.Marshal(r["argv"])
	want, _ := json.Marshal(args)
	if string(got) != string(want) {
		t.Fatalf("argv changed:\n got %s\nwant %s", got, want)
	}
	if r["env"] != "kept as is: $HOME" {
		t.Fatalf("environment changed: %v", r["env"])
	}
}

func TestExitCodes(t *testing.T) {
	for _, code := range []int{0, 1, 42} {
		t.Run(fmt.Sprint(code), func(t *testing.T) {
			l := start(t, Options{}, self("exit", fmt.Sprint(code))...)
			if got := l.wait(t); got != code {
				t.Fatalf("launcher exit %d, want %d; stderr:\n%s", got, code, l.stderr)
			}
			if d := l.done(t); d.ExitCode != code || d.Signal != "" {
				t.Fatalf("marker %+v", d)
			}
		})
	}
}

func TestChildKilledBySIGKILL(t *testing.T) {
	l := start(t, Options{}, self("sleep")...)
	pid := int(l.childReport(t, true)["pid"].(float64))
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if got := l.wait(t); got != 137 {
		t.Fatalf("exit %d, want 137; stderr:\n%s", got, l.stderr)
	}
	if d := l.done(t); d.ExitCode != 137 || d.Signal != "killed" {
		t.Fatalf("marker %+v", d)
	}
}

func TestSIGTERMForwarded(t *testing.T) {
	l := start(t, Options{}, self("term")...)
	l.childReport(t, true)
	if err := l.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if got := l.wait(t); got != 7 {
		t.Fatalf("exit %d, want the app's 7; stderr:\n%s", got, l.stderr)
	}
	if r := l.childReport(t, false); r["got"] != "SIGTERM" {
		t.Fatalf("the app did not receive SIGTERM: %v", r)
	}
}

func TestStdoutTee(t *testing.T) {
	pipe := filepath.Join(t.TempDir(), "logs", "app.log")
	l := start(t, Options{OutputPipe: pipe}, self("stdout", "line one", "line two")...)
	if code := l.wait(t); code != 0 {
		t.Fatalf("exit %d; stderr:\n%s", code, l.stderr)
	}
	b, err := os.ReadFile(pipe)
	if err != nil || string(b) != "line one\nline two\n" {
		t.Fatalf("output-pipe: %q %v", b, err)
	}
	if !strings.Contains(l.stdout.String(), "line one\nline two\n") {
		t.Fatalf("stdout lost: %q", l.stdout)
	}
}

func writeFile(t *testing.T, p, content string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
}

func TestInputsPlaced(t *testing.T) {
	share := t.TempDir()
	writeFile(t, filepath.Join(share, "inputs", "0", "data", "x.txt"), "x", 0o644)
	writeFile(t, filepath.Join(share, "inputs", "1", "model.bin"), "m", 0o755)
	writeFile(t, filepath.Join(share, "inputs", "10", "data", "y.txt"), "y", 0o644) // merges into data/
	wd := filepath.Join(t.TempDir(), "work")
	writeFile(t, filepath.Join(wd, "data", "mine.txt"), "user file", 0o644)
	l := start(t, Options{Share: share, InputPath: wd}, self("exit", "0")...)
	if code := l.wait(t); code != 0 {
		t.Fatalf("exit %d; stderr:\n%s", code, l.stderr)
	}
	for p, want := range map[string]string{"data/x.txt": "x", "data/y.txt": "y", "model.bin": "m", "data/mine.txt": "user file"} {
		b, err := os.ReadFile(filepath.Join(wd, p))
		if err != nil || string(b) != want {
			t.Errorf("%s: %q %v", p, b, err)
		}
	}
	if fi, _ := os.Stat(filepath.Join(wd, "model.bin")); fi == nil || fi.Mode().Perm() != 0o755 {
		t.Errorf("mode not kept: %v", fi)
	}
}

func TestInputConflictRefused(t *testing.T) {
	share := t.TempDir()
	writeFile(t, filepath.Join(share, "inputs", "0", "data", "x.txt"), "from the cache", 0o644)
	wd := t.TempDir()
	writeFile(t, filepath.Join(wd, "data", "x.txt"), "the user's own", 0o644)
	l := start(t, Options{Share: share, InputPath: wd}, self("argv")...)
	if code := l.wait(t); code != ExitLauncherError {
		t.Fatalf("exit %d, want %d", code, ExitLauncherError)
	}
	if l.childReport(t, false) != nil {
		t.Fatal("the app ran despite the conflict")
	}
	if b, _ := os.ReadFile(filepath.Join(wd, "data", "x.txt")); string(b) != "the user's own" {
		t.Fatal("an existing file was overwritten")
	}
	if d := l.done(t); !strings.Contains(d.Error, "would overwrite") || !strings.Contains(l.stderr.String(), "x.txt") {
		t.Fatalf("marker %+v; stderr:\n%s", d, l.stderr)
	}
}

func TestOutputCopiedIntoShare(t *testing.T) {
	wd := t.TempDir()
	out := filepath.Join(wd, "results", "r.txt")
	l := start(t, Options{OutputPath: filepath.Join(wd, "results")}, self("write", out, "result!", "0")...)
	if code := l.wait(t); code != 0 {
		t.Fatalf("exit %d; stderr:\n%s", code, l.stderr)
	}
	d := l.done(t)
	if len(d.Outputs) != 1 || d.Outputs[0] != "results" {
		t.Fatalf("marker %+v", d)
	}
	fi, err := os.Stat(filepath.Join(l.share, "outputs", "results", "r.txt"))
	if err != nil || fi.Mode().Perm() != 0o644 { // 0600 + read for all (the push sidecar's uid)
		t.Fatalf("copied output: %v %v", fi, err)
	}
}

func TestMissingOutputIsAnError(t *testing.T) {
	wd := t.TempDir()
	l := start(t, Options{OutputPath: filepath.Join(wd, "never-written")}, self("exit", "0")...)
	if code := l.wait(t); code != ExitLauncherError {
		t.Fatalf("a successful app without its output exited %d", code)
	}
	if d := l.done(t); d.ExitCode != 0 || !strings.Contains(d.Error, "does not exist") || !d.Failed() {
		t.Fatalf("marker %+v", d)
	}
	// A failed app without output keeps its own exit code and no launcher error.
	l = start(t, Options{OutputPath: filepath.Join(wd, "never-written")}, self("exit", "3")...)
	if code := l.wait(t); code != 3 {
		t.Fatalf("exit %d", code)
	}
	if d := l.done(t); d.Error != "" {
		t.Fatalf("marker %+v", d)
	}
}

func TestCommandNotFound(t *testing.T) {
	l := start(t, Options{}, "no-such-command-oras-cache", "arg")
	if code := l.wait(t); code != ExitNotFound {
		t.Fatalf("exit %d; stderr:\n%s", code, l.stderr)
	}
	if d := l.done(t); d.ExitCode != ExitNotFound || !strings.Contains(d.Error, "no-such-command-oras-cache") {
		t.Fatalf("marker %+v", d)
	}
}

func TestBackgroundProcessHoldingStdoutDoesNotHang(t *testing.T) {
	pipe := filepath.Join(t.TempDir(), "app.log")
	l := start(t, Options{OutputPipe: pipe}, self("orphan")...)
	begin := time.Now()
	code := l.wait(t)
	if r := l.childReport(t, true); r != nil {
		if pid, ok := r["pid"].(float64); ok {
			_ = syscall.Kill(int(pid), syscall.SIGKILL)
		}
	}
	if code != 0 || time.Since(begin) > 10*time.Second {
		t.Fatalf("exit %d after %s; stderr:\n%s", code, time.Since(begin), l.stderr)
	}
	if b, _ := os.ReadFile(pipe); !strings.Contains(string(b), "parent done") {
		t.Fatalf("output-pipe lost the app's output: %q", b)
	}
}

// As PID 1 of a PID namespace (as in a container), the launcher reaps orphaned zombies.
func TestAsPID1ReapsOrphans(t *testing.T) {
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		t.Skip("unshare(1) is not installed")
	}
	if out, err := exec.Command(unshare, "--pid", "--fork", "--mount-proc", "true").CombinedOutput(); err != nil {
		t.Skipf("cannot create a PID namespace here (needs root): %v %s", err, out)
	}
	o := Options{Share: t.TempDir(), TeeGrace: time.Second}
	b, _ := json.Marshal(o)
	outFile := filepath.Join(t.TempDir(), "child.json")
	cmd := exec.Command(unshare, "--pid", "--fork", "--mount-proc", os.Args[0], "launcher-helper", os.Args[0], "child-helper", "orphans")
	cmd.Env = append(os.Environ(), "LAUNCHER_TEST_OPTS="+string(b), "CHILD_OUT="+outFile)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	rb, err := os.ReadFile(outFile)
	if err != nil {
		t.Fatal(err)
	}
	var r map[string]any
	_ = json.Unmarshal(rb, &r)
	if r["ppid"] != float64(1) {
		t.Fatalf("the app's parent is not PID 1: %v", r)
	}
	if r["orphan"] != "reaped" {
		t.Fatalf("orphaned zombie not reaped by the launcher: %v", r)
	}
}

// A restarted container (input-path on a volume that survives) finds its inputs already placed by
// the previous run: that is not a conflict.
func TestInputsPlacedTwiceIsIdempotent(t *testing.T) {
	share := t.TempDir()
	writeFile(t, filepath.Join(share, "inputs", "0", "data", "x.txt"), "x", 0o644)
	if err := os.Symlink("x.txt", filepath.Join(share, "inputs", "0", "data", "link")); err != nil {
		t.Fatal(err)
	}
	wd := t.TempDir()
	for run := 0; run < 2; run++ {
		l := start(t, Options{Share: share, InputPath: wd}, self("exit", "0")...)
		if code := l.wait(t); code != 0 {
			t.Fatalf("run %d: exit %d; stderr:\n%s", run, code, l.stderr)
		}
	}
	// A changed file in the way is still a conflict.
	writeFile(t, filepath.Join(wd, "data", "x.txt"), "edited by the user", 0o644)
	l := start(t, Options{Share: share, InputPath: wd}, self("exit", "0")...)
	if code := l.wait(t); code != ExitLauncherError {
		t.Fatalf("exit %d", code)
	}
}
