package main

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/converged-computing/oras-cache/sidecar/registrytest"
)

// startGuard runs `oras-cache-sidecar guard` with a real registry as its child, as the registry
// container does, and returns its address.
func startGuard(t *testing.T, bound string) string {
	return startGuardConfig(t, fmt.Sprintf(`{"bound":%q,"volumeSize":"64Mi","volume":"emptyDir"}`, bound))
}

func startGuardConfig(t *testing.T, config string) string {
	t.Helper()
	reg := registrytest.Start(t, registrytest.Options{Auth: true})
	reg.Stop() // the guard runs it
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	listen := l.Addr().String()
	l.Close()
	cfg := filepath.Join(t.TempDir(), "guard.json")
	if err := os.WriteFile(cfg, []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	g := startProc(t, os.Environ(), "", "guard", "--listen", listen, "--upstream", reg.Host, "--root", reg.Root, "--config", cfg,
		"--", registrytest.Binary(t, "registry"), "serve", filepath.Join(filepath.Dir(reg.Root), "config.yml"))
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := http.Get("http://" + listen + "/v2/")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusUnauthorized {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("guard did not proxy to the registry within 15s:\n%s", g.stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	return listen + "|" + reg.Username + "|" + reg.Password
}

// A push that does not fit fails at once: exit 1, the termination message and the log start
// with "cache full: <used> of <bound> used" and name the values to change.
func TestPushIntoFullCacheFailsAtOnce(t *testing.T) {
	parts := strings.Split(startGuard(t, "4Mi"), "|")
	env := append(os.Environ(), "ORAS_CACHE_REGISTRY="+parts[0], "ORAS_CACHE_PLAIN_HTTP=true", "ORAS_CACHE_TIMEOUT=10m",
		"ORAS_CACHE_USERNAME="+parts[1], "ORAS_CACHE_PASSWORD="+parts[2])
	share := filepath.Join(t.TempDir(), "oras-cache")
	init := startProc(t, env, "", "init", "--share", share)
	if code := init.wait(t, 30*time.Second); code != 0 {
		t.Fatalf("init: %d %s", code, init.stderr.String())
	}
	term := filepath.Join(t.TempDir(), "termination-log")
	push := startProc(t, env, "", "push", "--share", share, "--output", "full/big:v1", "--termination-log", term)
	app := startPath(t, filepath.Join(share, "bin", "oras-cache-sidecar"), os.Environ(), t.TempDir(),
		"launch", "--share", share, "--output-path", "big.bin", "--", "sh", "-c", "head -c 8388608 /dev/urandom > big.bin")
	if code := app.wait(t, 30*time.Second); code != 0 {
		t.Fatalf("launch: %d %s", code, app.stderr.String())
	}
	// With a 10m deadline, only a permanent failure ends this within the wait below.
	if code := push.wait(t, 60*time.Second); code != exitFailed {
		t.Fatalf("push exit %d, want %d:\n%s", code, exitFailed, push.stderr.String())
	}
	m := readTermination(t, term)
	msg := fmt.Sprint(m["error"])
	if !strings.HasPrefix(msg, "cache full: ") || !strings.Contains(msg, " of 4.0MiB used") ||
		!strings.Contains(msg, "registry.capacity.bound") || !strings.Contains(msg, "retention") || !strings.Contains(msg, "full/big:v1") {
		t.Fatalf("termination message %v", m)
	}
	if !strings.Contains(push.stderr.String(), `"msg":"push failed: cache full: `) || strings.Contains(push.stderr.String(), "retrying") {
		t.Fatalf("push log:\n%s", push.stderr.String())
	}
}

// `guard --install DIR` puts the binary where the registry container runs it from.
func TestGuardInstall(t *testing.T) {
	dir := t.TempDir()
	p := startProc(t, os.Environ(), "", "guard", "--install", dir)
	if code := p.wait(t, 30*time.Second); code != 0 {
		t.Fatalf("install: %d %s", code, p.stderr.String())
	}
	fi, err := os.Stat(filepath.Join(dir, "oras-cache-sidecar"))
	if err != nil || fi.Mode().Perm() != 0o555 {
		t.Fatalf("installed binary: %v %v", fi, err)
	}
}

// `helm test` (selftest) through the guard prints how full the cache is.
func TestSelftestPrintsCacheUsage(t *testing.T) {
	parts := strings.Split(startGuard(t, "40Mi"), "|")
	env := append(os.Environ(), "ORAS_CACHE_REGISTRY="+parts[0], "ORAS_CACHE_PLAIN_HTTP=true", "ORAS_CACHE_TIMEOUT=60s",
		"ORAS_CACHE_USERNAME="+parts[1], "ORAS_CACHE_PASSWORD="+parts[2])
	p := startProc(t, env, "", "selftest")
	if code := p.wait(t, 60*time.Second); code != 0 {
		t.Fatalf("selftest: %d %s", code, p.stderr.String())
	}
	out := p.stdout.String()
	if !strings.Contains(out, "selftest passed\ncache usage: ") || !strings.Contains(out, " of 40.0MiB used (") ||
		!strings.Contains(out, "1 repositories, 1 tags, 0 writes refused as full") {
		t.Fatalf("selftest output:\n%s", out)
	}
}

// `collect` (the retention CronJob) applies the rules through the guard and prints the report;
// wrong credentials fail it.
func TestCollectCommand(t *testing.T) {
	parts := strings.Split(startGuardConfig(t, `{"volumeSize":"64Mi","volume":"emptyDir","retention":{"keepLast":1}}`), "|")
	env := append(os.Environ(), "ORAS_CACHE_REGISTRY="+parts[0], "ORAS_CACHE_PLAIN_HTTP=true", "ORAS_CACHE_TIMEOUT=60s",
		"ORAS_CACHE_USERNAME="+parts[1], "ORAS_CACHE_PASSWORD="+parts[2])
	for _, tag := range []string{"v1", "v2"} {
		p := startProc(t, env, "", "selftest", "--reference", "coll/app:"+tag)
		if code := p.wait(t, 60*time.Second); code != 0 {
			t.Fatalf("selftest push %s: %s", tag, p.stderr.String())
		}
	}
	p := startProc(t, env, "", "collect")
	if code := p.wait(t, 60*time.Second); code != 0 {
		t.Fatalf("collect: %d\n%s\n%s", code, p.stdout.String(), p.stderr.String())
	}
	if out := p.stdout.String(); !strings.Contains(out, `"deletedTags":["coll/app:v1"]`) || !strings.Contains(out, "collected: 1 tags deleted (coll/app:v1)") {
		t.Fatalf("collect output:\n%s", out)
	}
	bad := append(env, "ORAS_CACHE_PASSWORD=wrong")
	p = startProc(t, bad, "", "collect", "--timeout", "20s")
	if code := p.wait(t, 60*time.Second); code != exitFailed || !strings.Contains(p.stderr.String(), "401") {
		t.Fatalf("collect with a wrong password: %d %s", code, p.stderr.String())
	}
}
