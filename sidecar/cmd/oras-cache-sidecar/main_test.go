package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/converged-computing/oras-cache/sidecar/artifact"
	"github.com/converged-computing/oras-cache/sidecar/contract"
	"github.com/converged-computing/oras-cache/sidecar/registrytest"
	"github.com/converged-computing/oras-cache/sidecar/transfer"
)

var binary string

// TestMain builds the real static binary once; the tests run it as the pod would.
func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "oras-cache-sidecar-test-")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "oras-cache-sidecar")
	build := exec.Command("go", "build", "-o", binary, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building the sidecar: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func registryEnv(reg *registrytest.Registry) []string {
	env := append(os.Environ(), "ORAS_CACHE_REGISTRY="+reg.Host, "ORAS_CACHE_PLAIN_HTTP=true", "ORAS_CACHE_TIMEOUT=60s")
	if reg.Username != "" {
		env = append(env, "ORAS_CACHE_USERNAME="+reg.Username, "ORAS_CACHE_PASSWORD="+reg.Password)
	}
	return env
}

type proc struct {
	cmd            *exec.Cmd
	stdout, stderr bytes.Buffer
	done           chan struct{}
}

func startProc(t *testing.T, env []string, dir string, args ...string) *proc {
	t.Helper()
	return startPath(t, binary, env, dir, args...)
}

func startPath(t *testing.T, bin string, env []string, dir string, args ...string) *proc {
	t.Helper()
	p := &proc{cmd: exec.Command(bin, args...), done: make(chan struct{})}
	p.cmd.Env, p.cmd.Dir = env, dir
	p.cmd.Stdout, p.cmd.Stderr = &p.stdout, &p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() { _ = p.cmd.Process.Kill(); <-p.done })
	return p
}

func (p *proc) wait(t *testing.T, timeout time.Duration) int {
	t.Helper()
	select {
	case <-p.done:
		return p.cmd.ProcessState.ExitCode()
	case <-time.After(timeout):
		t.Fatalf("%v did not exit within %s\nstderr:\n%s", p.cmd.Args, timeout, p.stderr.String())
		return -1
	}
}

func readTermination(t *testing.T, path string) map[string]any {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) >= 4096 {
		t.Fatalf("termination message is %d bytes", len(b))
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("termination message is not JSON: %q", b)
	}
	return m
}

func testClient(t *testing.T, reg *registrytest.Registry) *artifact.Client {
	t.Helper()
	cfg := transfer.Default()
	cfg.Registry, cfg.Username, cfg.Password = reg.Host, reg.Username, reg.Password
	c, err := artifact.NewClient(cfg, slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// The whole pod flow with real processes: init pulls inputs, the launcher (from the share) runs the
// app, the push sidecar pushes its output; stock `oras pull` gets it back.
func TestPodFlowEndToEnd(t *testing.T) {
	reg := registrytest.Start(t, registrytest.Options{Auth: true})
	env := registryEnv(reg)
	c := testClient(t, reg)
	ctx := context.Background()

	seed := t.TempDir()
	if err := os.MkdirAll(filepath.Join(seed, "dataset", "part"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(seed, "dataset", "part", "numbers.txt"), []byte("1\n2\n3\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(seed, "config.yaml"), []byte("factor: 2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Push(ctx, "pipeline/dataset:v1", []string{filepath.Join(seed, "dataset")}, artifact.PushOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Push(ctx, "pipeline/config:v1", []string{filepath.Join(seed, "config.yaml")}, artifact.PushOptions{}); err != nil {
		t.Fatal(err)
	}

	share := filepath.Join(t.TempDir(), "oras-cache")
	init := startProc(t, env, "", "init", "--share", share, "--input", "pipeline/dataset:v1", "--input", reg.Host+"/pipeline/config:v1")
	if code := init.wait(t, 60*time.Second); code != 0 {
		t.Fatalf("init exit %d:\n%s", code, init.stderr.String())
	}
	fi, err := os.Stat(filepath.Join(share, "bin", "oras-cache-sidecar"))
	if err != nil || fi.Mode().Perm() != 0o555 {
		t.Fatalf("launcher copy: %v %v", fi, err)
	}
	for _, d := range []string{"inputs", "outputs", "run"} {
		if fi, err := os.Stat(filepath.Join(share, d)); err != nil || fi.Mode().Perm() != 0o777 {
			t.Fatalf("%s: %v %v", d, fi, err)
		}
	}

	term := filepath.Join(t.TempDir(), "termination-log")
	push := startProc(t, env, "", "push", "--share", share, "--output", "pipeline/result:v1", "--termination-log", term)
	work := t.TempDir()
	app := startPath(t, filepath.Join(share, "bin", "oras-cache-sidecar"), os.Environ(), work,
		"launch", "--share", share, "--output-path", "out", "--output-pipe", "out/stdout.log", "--",
		"sh", "-c", `mkdir -p out && cat dataset/part/numbers.txt config.yaml > out/combined.txt && echo "app ran with $# args: $1|$2"`, "sh", "a b", "*")
	if code := app.wait(t, 30*time.Second); code != 0 {
		t.Fatalf("launch exit %d:\n%s", code, app.stderr.String())
	}
	if !strings.Contains(app.stdout.String(), "app ran with 2 args: a b|*") {
		t.Fatalf("app stdout: %q", app.stdout.String())
	}
	if code := push.wait(t, 60*time.Second); code != 0 {
		t.Fatalf("push exit %d:\n%s", code, push.stderr.String())
	}
	m := readTermination(t, term)
	if m["reference"] != reg.Host+"/pipeline/result:v1" || !strings.HasPrefix(fmt.Sprint(m["digest"]), "sha256:") ||
		m["files"].(float64) != 2 || m["size"].(float64) <= 0 || m["durationMs"] == nil || m["exitCode"].(float64) != 0 {
		t.Fatalf("termination message %v", m)
	}
	if strings.Contains(push.stderr.String()+init.stderr.String(), reg.Password) {
		t.Fatal("a password appeared in the logs")
	}

	out := t.TempDir()
	oras := exec.Command(registrytest.Binary(t, "oras"), "pull", "--plain-http", "-u", reg.Username, "-p", reg.Password, reg.Host+"/pipeline/result:v1")
	oras.Dir = out
	oras.Env = append(os.Environ(), "HOME="+t.TempDir())
	if b, err := oras.CombinedOutput(); err != nil {
		t.Fatalf("oras pull: %v\n%s", err, b)
	}
	b, err := os.ReadFile(filepath.Join(out, "out", "combined.txt"))
	if err != nil || string(b) != "1\n2\n3\nfactor: 2\n" {
		t.Fatalf("combined.txt: %q %v", b, err)
	}
	b, _ = os.ReadFile(filepath.Join(out, "out", "stdout.log"))
	if !strings.Contains(string(b), "app ran with 2 args") {
		t.Fatalf("stdout.log: %q", b)
	}
}

func TestPushSkipsFailedAppUnlessAsked(t *testing.T) {
	reg := registrytest.Start(t, registrytest.Options{})
	env := registryEnv(reg)
	for _, onFailure := range []bool{false, true} {
		t.Run(fmt.Sprint("push-on-failure=", onFailure), func(t *testing.T) {
			share := t.TempDir()
			term := filepath.Join(t.TempDir(), "term")
			args := []string{"push", "--share", share, "--output", "failing/app:v1", "--termination-log", term}
			if onFailure {
				args = append(args, "--push-on-failure")
			}
			push := startProc(t, env, "", args...)
			work := t.TempDir()
			app := startProc(t, os.Environ(), work, "launch", "--share", share, "--output-path", "partial.txt", "--",
				"sh", "-c", "echo partial > partial.txt; exit 42")
			if code := app.wait(t, 30*time.Second); code != 42 {
				t.Fatalf("launch exit %d:\n%s", code, app.stderr.String())
			}
			code := push.wait(t, 60*time.Second)
			m := readTermination(t, term)
			if m["exitCode"].(float64) != 42 {
				t.Fatalf("termination %v", m)
			}
			if !onFailure {
				if code != exitSkipped || !strings.Contains(fmt.Sprint(m["skipped"]), "exit code 42") || m["digest"] != nil {
					t.Fatalf("exit %d, termination %v", code, m)
				}
				return
			}
			if code != 0 || m["digest"] == nil {
				t.Fatalf("exit %d, termination %v\n%s", code, m, push.stderr.String())
			}
		})
	}
}

// The launcher itself dies (SIGKILL, like an OOM kill of the container): the push sidecar notices
// within seconds and fails with a clear message instead of waiting forever.
func TestPushNoticesDeadLauncher(t *testing.T) {
	reg := registrytest.Start(t, registrytest.Options{})
	share := t.TempDir()
	term := filepath.Join(t.TempDir(), "term")
	push := startProc(t, registryEnv(reg), "", "push", "--share", share, "--output", "x/y:z", "--termination-log", term)
	pidFile := filepath.Join(t.TempDir(), "pid")
	app := startProc(t, os.Environ(), t.TempDir(), "launch", "--share", share, "--", "sh", "-c", "echo $$ > "+pidFile+"; exec sleep 60")
	deadline := time.Now().Add(20 * time.Second)
	var childPid int
	for childPid == 0 && time.Now().Before(deadline) {
		if b, err := os.ReadFile(pidFile); err == nil {
			childPid, _ = strconv.Atoi(strings.TrimSpace(string(b)))
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Cleanup(func() {
		if childPid > 0 {
			_ = syscall.Kill(childPid, syscall.SIGKILL)
		}
	})
	time.Sleep(300 * time.Millisecond)
	select {
	case <-push.done:
		t.Fatalf("push exited while the app runs:\n%s", push.stderr.String())
	default:
	}
	killed := time.Now()
	_ = app.cmd.Process.Kill()
	code := push.wait(t, 10*time.Second)
	if code != exitFailed || time.Since(killed) > 5*time.Second {
		t.Fatalf("push exit %d after %s", code, time.Since(killed))
	}
	if m := readTermination(t, term); !strings.Contains(fmt.Sprint(m["error"]), "without recording a result") {
		t.Fatalf("termination %v", m)
	}
}

func TestInitFailureNamesTheReference(t *testing.T) {
	reg := registrytest.Start(t, registrytest.Options{})
	share := t.TempDir()
	p := startProc(t, registryEnv(reg), "", "init", "--share", share, "--input", "missing/input:v9")
	if code := p.wait(t, 30*time.Second); code != exitFailed {
		t.Fatalf("exit %d", code)
	}
	if s := p.stderr.String(); !strings.Contains(s, reg.Host+"/missing/input:v9") || !strings.Contains(s, "not found") {
		t.Fatalf("stderr does not name the reference and the reason:\n%s", s)
	}
	// Registry down: a clear failure within ORAS_CACHE_TIMEOUT.
	reg.Stop()
	env := append(registryEnv(reg), "ORAS_CACHE_TIMEOUT=2s")
	start := time.Now()
	p = startProc(t, env, "", "init", "--share", share, "--input", "some/input:v1")
	if code := p.wait(t, 30*time.Second); code != exitFailed || time.Since(start) > 10*time.Second {
		t.Fatalf("exit %d after %s", code, time.Since(start))
	}
	if s := p.stderr.String(); !strings.Contains(s, "some/input:v1") || !strings.Contains(s, "connection refused") {
		t.Fatalf("stderr:\n%s", s)
	}
}

func TestSelftest(t *testing.T) {
	reg := registrytest.Start(t, registrytest.Options{Auth: true})
	p := startProc(t, registryEnv(reg), "", "selftest")
	if code := p.wait(t, 60*time.Second); code != 0 || !strings.Contains(p.stdout.String(), "selftest passed") {
		t.Fatalf("exit %d\n%s\n%s", code, p.stdout.String(), p.stderr.String())
	}
	bad := append(registryEnv(reg), "ORAS_CACHE_PASSWORD=wrong")
	p = startProc(t, bad, "", "selftest")
	if code := p.wait(t, 60*time.Second); code != exitFailed {
		t.Fatalf("selftest with a wrong password exited %d", code)
	}
}

func TestUsageErrors(t *testing.T) {
	for _, c := range []struct {
		args []string
		code int
	}{
		{[]string{}, exitUsage},
		{[]string{"bogus"}, exitUsage},
		{[]string{"push", "--share", "/tmp"}, exitUsage},
		{[]string{"push", "--share", "/tmp", "--output", "Bad/UPPER:case", "--termination-log", ""}, exitFailed},
		{[]string{"push", "--share", "/tmp", "--output", "127.0.0.1:1/a@sha256:" + strings.Repeat("0", 64), "--termination-log", ""}, exitFailed},
		{[]string{"launch", "--share", "/tmp", "echo", "no-dashes"}, 125},
		{[]string{"launch", "--share", "/tmp", "--"}, 125},
	} {
		p := startProc(t, os.Environ(), "", c.args...)
		if code := p.wait(t, 10*time.Second); code != c.code {
			t.Errorf("%v: exit %d, want %d", c.args, code, c.code)
		}
	}
}

func TestTerminationMessageStaysUnder4KiB(t *testing.T) {
	path := filepath.Join(t.TempDir(), "term")
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	writeTermination(path, contract.Termination{Reference: "r", Error: strings.Repeat("é", 5000)}, log)
	m := readTermination(t, path)
	if !strings.HasSuffix(fmt.Sprint(m["error"]), "...") {
		t.Fatalf("not truncated: %v", m)
	}
}

// The usage names every ORAS_CACHE_* variable of the contract, so a new one is documented where
// `oras-cache-sidecar --help` shows it.
func TestUsageListsEveryEnvVar(t *testing.T) {
	f, err := parser.ParseFile(token.NewFileSet(), filepath.Join("..", "..", "contract", "env.go"), nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	ast.Inspect(f, func(node ast.Node) bool {
		lit, ok := node.(*ast.BasicLit)
		if !ok || lit.Kind != token.STRING {
			return true
		}
		name, _ := strconv.Unquote(lit.Value)
		if strings.HasPrefix(name, "ORAS_CACHE_") {
			n++
			if !strings.Contains(usage, name+",") && !strings.Contains(usage, name+" ") && !strings.Contains(usage, name+"\n") {
				t.Errorf("the usage does not mention %s", name)
			}
		}
		return true
	})
	if n < 8 {
		t.Fatalf("found %d ORAS_CACHE_* names in sidecar/contract/env.go", n)
	}
}
