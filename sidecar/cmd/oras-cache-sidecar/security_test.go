package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content/file"
	"oras.land/oras-go/v2/registry"
	"oras.land/oras-go/v2/registry/remote"
	"oras.land/oras-go/v2/registry/remote/auth"

	"github.com/converged-computing/oras-cache/sidecar/artifact"
	"github.com/converged-computing/oras-cache/sidecar/registrytest"
)

// Issue 9, item 1, through the real processes: init and push name full references on a FAKE
// hostile registry (401 Basic, then 401 Bearer with a token realm; it records every Authorization
// header) while the pod holds the cache's credentials. The password never reaches it.
func TestCacheCredentialsNeverReachAnotherHost(t *testing.T) {
	reg := registrytest.Start(t, registrytest.Options{Auth: true})
	for _, challenge := range []string{registrytest.ChallengeBasic, registrytest.ChallengeBearer} {
		t.Run(challenge, func(t *testing.T) {
			hostile := registrytest.StartHostile(t, challenge)
			env := append(registryEnv(reg), "ORAS_CACHE_PLAIN_HTTP_REGISTRIES="+hostile.Host, "ORAS_CACHE_TIMEOUT=20s")
			share := filepath.Join(t.TempDir(), "oras-cache")
			init := startProc(t, env, "", "init", "--share", share, "--input", hostile.Host+"/org/data:v1")
			if code := init.wait(t, 60*time.Second); code != exitFailed {
				t.Fatalf("init exit %d:\n%s", code, init.stderr.String())
			}
			term := filepath.Join(t.TempDir(), "term")
			push := startProc(t, env, "", "push", "--share", share, "--output", hostile.Host+"/org/out:v1", "--termination-log", term)
			app := startProc(t, os.Environ(), t.TempDir(), "launch", "--share", share, "--output-path", "out", "--",
				"sh", "-c", "mkdir out && echo result > out/r")
			if code := app.wait(t, 30*time.Second); code != 0 {
				t.Fatalf("launch exit %d:\n%s", code, app.stderr.String())
			}
			if code := push.wait(t, 60*time.Second); code != exitFailed {
				t.Fatalf("push exit %d:\n%s", code, push.stderr.String())
			}
			if hostile.Requests() < 2 {
				t.Fatalf("the hostile registry saw %d requests: this test would prove nothing", hostile.Requests())
			}
			for _, a := range hostile.Authorizations() {
				if strings.Contains(a, reg.Password) || strings.HasPrefix(a, "Basic ") {
					t.Errorf("the hostile registry received %q", a)
				}
			}
		})
	}
}

type tarEntry struct {
	name, link string
	typ        byte
	size       int // regular files: that many zero bytes
}

// pushTarLayer pushes a hand-made archive as a directory layer (title, unpack=true), as a
// malicious artifact author could: the tar is built here, not by our packer.
func pushTarLayer(t *testing.T, reg *registrytest.Registry, repoTag, title string, entries []tarEntry) int {
	t.Helper()
	var tgz bytes.Buffer
	gz := gzip.NewWriter(&tgz)
	tw := tar.NewWriter(gz)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Linkname: e.link, Typeflag: e.typ, Mode: 0o755, Size: int64(e.size)}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if e.size > 0 {
			if _, err := tw.Write(make([]byte, e.size)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := gz.Close(); err != nil {
		t.Fatal(err)
	}
	ref, err := registry.ParseReference(reg.Host + "/" + repoTag)
	if err != nil {
		t.Fatal(err)
	}
	repo := &remote.Repository{Reference: ref, PlainHTTP: true, Client: &auth.Client{}}
	ctx := context.Background()
	layer := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayerGzip, Digest: digest.FromBytes(tgz.Bytes()), Size: int64(tgz.Len()),
		Annotations: map[string]string{ocispec.AnnotationTitle: title, file.AnnotationUnpack: "true"}}
	if err := repo.Push(ctx, layer, bytes.NewReader(tgz.Bytes())); err != nil {
		t.Fatal(err)
	}
	if err := repo.Push(ctx, ocispec.DescriptorEmptyJSON, bytes.NewReader(ocispec.DescriptorEmptyJSON.Data)); err != nil {
		t.Fatal(err)
	}
	mb, _ := json.Marshal(ocispec.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest,
		ArtifactType: artifact.ArtifactType, Config: ocispec.DescriptorEmptyJSON, Layers: []ocispec.Descriptor{layer}})
	md := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromBytes(mb), Size: int64(len(mb))}
	if err := repo.PushReference(ctx, md, bytes.NewReader(mb), ref.Reference); err != nil {
		t.Fatal(err)
	}
	return tgz.Len()
}

// forge lays entries out under dir the way an unpack that let them through would have.
func forge(t *testing.T, dir string, entries []tarEntry) {
	t.Helper()
	for _, e := range entries {
		p := filepath.Join(dir, e.name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		var err error
		switch e.typ {
		case tar.TypeDir:
			err = os.MkdirAll(p, 0o755)
		case tar.TypeSymlink:
			err = os.Symlink(e.link, p)
		case tar.TypeLink:
			err = os.Link(filepath.Join(dir, e.link), p)
		default:
			err = os.WriteFile(p, make([]byte, e.size), 0o644)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

// Issue 9, item 2: the symlink chain from the issue — x/a/b/c/up -> ../../.. (x itself), then
// x/p -> a/b/c/up/../../secret, lexically inside x, dangling in the init container, and in
// input-path resolving to a file beside it. init refuses it; a share forged to hold it anyway
// (as the previous init left it) is refused by the launcher; nothing outside input-path is read
// or written.
func TestSymlinkChainCannotLeaveInputPath(t *testing.T) {
	reg := registrytest.Start(t, registrytest.Options{})
	chain := []tarEntry{
		{name: "x/", typ: tar.TypeDir},
		{name: "x/a/b/c/up", typ: tar.TypeSymlink, link: "../../.."},
		{name: "x/p", typ: tar.TypeSymlink, link: "a/b/c/up/../../secret"},
	}
	pushTarLayer(t, reg, "evil/chain:v1", "x", chain)
	outside := filepath.Join(t.TempDir(), "outside")
	inputPath := filepath.Join(outside, "in")
	secret := filepath.Join(outside, "secret")
	if err := os.MkdirAll(inputPath, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(secret, []byte("top secret"), 0o600); err != nil {
		t.Fatal(err)
	}

	share := filepath.Join(t.TempDir(), "oras-cache")
	init := startProc(t, registryEnv(reg), "", "init", "--share", share, "--input", "evil/chain:v1")
	if code := init.wait(t, 60*time.Second); code != exitFailed {
		t.Fatalf("init accepted the chain (exit %d):\n%s", code, init.stderr.String())
	}
	if s := init.stderr.String(); !strings.Contains(s, `symlink \"x/p\" points outside \"x\"`) && !strings.Contains(s, `symlink "x/p" points outside "x"`) {
		t.Fatalf("init does not name the link:\n%s", s)
	}

	forge(t, filepath.Join(share, "inputs", "0"), chain)
	app := startProc(t, os.Environ(), inputPath, "launch", "--share", share, "--input-path", inputPath, "--",
		"sh", "-c", "cat x/p; echo pwned > x/p")
	code := app.wait(t, 30*time.Second)
	if b, _ := os.ReadFile(secret); string(b) != "top secret" || strings.Contains(app.stdout.String(), "top secret") {
		t.Fatalf("the app reached a file outside input-path: secret %q, stdout %q", b, app.stdout.String())
	}
	if code != 125 || !strings.Contains(app.stderr.String(), "x/p") {
		t.Fatalf("launch exit %d, want 125 naming x/p:\n%s", code, app.stderr.String())
	}
	entries, _ := os.ReadDir(outside)
	if len(entries) != 2 {
		t.Fatalf("something was created beside input-path: %v", entries)
	}
}

// Issue 9, item 3: a hard-link bomb — one 1 MiB file and 200 hard links to it, a few KiB of gzip
// that the launcher would copy as 201 MiB — is refused by init and, from a share forged to hold
// it, by the launcher, each naming the bound and its variable. So is an archive over the entry bound.
func TestHardLinkBombIsRefused(t *testing.T) {
	reg := registrytest.Start(t, registrytest.Options{})
	bomb := []tarEntry{{name: "bomb/", typ: tar.TypeDir}, {name: "bomb/f", typ: tar.TypeReg, size: 1 << 20}}
	for i := range 200 {
		bomb = append(bomb, tarEntry{name: fmt.Sprintf("bomb/h%03d", i), typ: tar.TypeLink, link: "bomb/f"})
	}
	n := pushTarLayer(t, reg, "evil/bomb:v1", "bomb", bomb)
	t.Logf("the bomb is %d bytes of gzip for 201 MiB of files", n)
	bound := "ORAS_CACHE_MAX_UNPACK_SIZE=2097152"
	env := append(registryEnv(reg), "ORAS_CACHE_MAX_UNPACK_SIZE=2Mi")

	share := filepath.Join(t.TempDir(), "oras-cache")
	init := startProc(t, env, "", "init", "--share", share, "--input", "evil/bomb:v1")
	if code := init.wait(t, 60*time.Second); code != exitFailed || !strings.Contains(init.stderr.String(), bound) {
		t.Fatalf("init exit %d, want 1 naming %s:\n%s", code, bound, init.stderr.String())
	}
	entries := append(registryEnv(reg), "ORAS_CACHE_MAX_UNPACK_ENTRIES=100")
	init = startProc(t, entries, "", "init", "--share", share, "--input", "evil/bomb:v1")
	if code := init.wait(t, 60*time.Second); code != exitFailed || !strings.Contains(init.stderr.String(), "ORAS_CACHE_MAX_UNPACK_ENTRIES=100") {
		t.Fatalf("init exit %d, want 1 naming the entry bound:\n%s", code, init.stderr.String())
	}

	forge(t, filepath.Join(share, "inputs", "0"), bomb)
	inputPath := filepath.Join(t.TempDir(), "in")
	app := startProc(t, append(os.Environ(), "ORAS_CACHE_MAX_UNPACK_SIZE=2Mi"), "", "launch", "--share", share, "--input-path", inputPath, "--", "true")
	if code := app.wait(t, 60*time.Second); code != 125 || !strings.Contains(app.stderr.String(), bound) {
		t.Fatalf("launch exit %d, want 125 naming %s:\n%s", code, bound, app.stderr.String())
	}
	if placed, _ := os.ReadDir(inputPath); len(placed) != 0 {
		t.Fatalf("the launcher placed %v before refusing", placed)
	}
}

// Issue 9, item 8: a registry's error text — newlines, carriage returns, escape sequences, NUL,
// and a lot of it — reaches the init container's last stderr line (its termination message) and
// the push container's termination message as one bounded line without control characters. The
// registry is a FAKE (it must say arbitrary bytes); init, launch and push are the real binary.
func TestRegistryErrorTextIsSanitized(t *testing.T) {
	evil := "denied\nFORGED LINE: input ready\r\x1b[31mred\x1b[0m\x00" + strings.Repeat("long ", 600)
	host := registrytest.StartNoisy(t, evil)
	env := append(os.Environ(), "ORAS_CACHE_REGISTRY="+host, "ORAS_CACHE_PLAIN_HTTP=true", "ORAS_CACHE_TIMEOUT=20s")
	clean := func(what, s string) {
		t.Helper()
		for _, r := range s {
			if r < 0x20 && r != '\n' || r == 0x7f {
				t.Fatalf("%s holds control character %q:\n%q", what, r, s)
			}
		}
	}

	share := filepath.Join(t.TempDir(), "oras-cache")
	init := startProc(t, env, "", "init", "--share", share, "--input", "org/data:v1")
	if code := init.wait(t, 60*time.Second); code != exitFailed {
		t.Fatalf("init exit %d:\n%s", code, init.stderr.String())
	}
	stderr := init.stderr.String()
	clean("init's stderr", stderr)
	lines := strings.Split(strings.TrimSuffix(stderr, "\n"), "\n")
	last := lines[len(lines)-1]
	if !strings.HasPrefix(last, "oras-cache init: input org/data:v1: ") || !strings.Contains(last, "FORGED LINE") || len(last) > 1024 {
		t.Fatalf("the last stderr line (the termination message) is not one bounded line (%d bytes):\n%.300q", len(last), last)
	}
	for _, l := range lines {
		if !strings.HasPrefix(l, "{") && !strings.HasPrefix(l, "oras-cache init: ") {
			t.Fatalf("a line was forged into init's stderr: %q", l)
		}
	}

	term := filepath.Join(t.TempDir(), "term")
	push := startProc(t, env, "", "push", "--share", share, "--output", "org/out:v1", "--termination-log", term)
	app := startProc(t, os.Environ(), t.TempDir(), "launch", "--share", share, "--output-path", "out", "--",
		"sh", "-c", "mkdir out && echo result > out/r")
	if code := app.wait(t, 30*time.Second); code != 0 {
		t.Fatalf("launch exit %d:\n%s", code, app.stderr.String())
	}
	if code := push.wait(t, 60*time.Second); code != exitFailed {
		t.Fatalf("push exit %d:\n%s", code, push.stderr.String())
	}
	clean("push's stderr", push.stderr.String())
	m := readTermination(t, term)
	msg := fmt.Sprint(m["error"])
	clean("the push termination message", msg)
	if !strings.Contains(msg, "FORGED LINE") {
		t.Fatalf("the registry's words were lost instead of cleaned: %q", msg)
	}
}

// forgeRun writes the share's run/ as an app that owns the share could: a finished launcher
// (launcher.lock, not locked) with runID and a done.json naming outputs.
func forgeRun(t *testing.T, share, runID string, outputs []string) {
	t.Helper()
	run := filepath.Join(share, "run")
	if err := os.MkdirAll(filepath.Join(share, "outputs"), 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(run, 0o777); err != nil {
		t.Fatal(err)
	}
	lock, _ := json.Marshal(map[string]any{"runId": runID, "pid": 1, "startedAt": time.Now().UTC()})
	done, _ := json.Marshal(map[string]any{"runId": runID, "exitCode": 0, "outputs": outputs, "finishedAt": time.Now().UTC()})
	if err := os.WriteFile(filepath.Join(run, "launcher.lock"), lock, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(run, "done.json"), done, 0o644); err != nil {
		t.Fatal(err)
	}
}

// Issue 9, item 4: the push container distrusts the app-writable share. Forged states, each
// through the real push process against a real registry holding the credentials: a top-level
// outputs/x -> /proc/self/environ (the push container's environment, password included), outputs
// naming paths outside outputs/, a symlink to a directory, and a run id built to write outside
// run/. Each exits 1 with a message naming what was refused; nothing is pushed or written.
func TestPushDistrustsTheShare(t *testing.T) {
	reg := registrytest.Start(t, registrytest.Options{Auth: true})
	c := testClient(t, reg)
	validID := "0123456789abcdef01234567"
	for i, tc := range []struct {
		name, runID string
		outputs     []string
		prepare     func(t *testing.T, share string)
		want        string
	}{
		{"symlink to the environment", validID, []string{"x"}, func(t *testing.T, share string) {
			if err := os.Symlink("/proc/self/environ", filepath.Join(share, "outputs", "x")); err != nil {
				t.Fatal(err)
			}
		}, "symlink"},
		{"symlink to a directory outside", validID, []string{"d"}, func(t *testing.T, share string) {
			if err := os.Symlink(filepath.Dir(share), filepath.Join(share, "outputs", "d")); err != nil {
				t.Fatal(err)
			}
		}, "symlink"},
		{"output outside outputs/", validID, []string{"../run"}, nil, `"../run"`},
		{"output with a separator", validID, []string{"a/b"}, func(t *testing.T, share string) {
			if err := os.MkdirAll(filepath.Join(share, "outputs", "a", "b"), 0o755); err != nil {
				t.Fatal(err)
			}
		}, `"a/b"`},
		{"run id that escapes run/", "../../../../pwned", []string{"ok"}, nil, "run id"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			share := filepath.Join(t.TempDir(), "s", "oras-cache")
			forgeRun(t, share, tc.runID, tc.outputs)
			if err := os.MkdirAll(filepath.Join(share, "outputs", "ok"), 0o755); err != nil {
				t.Fatal(err)
			}
			if tc.prepare != nil {
				tc.prepare(t, share)
			}
			term := filepath.Join(t.TempDir(), "term")
			tag := fmt.Sprintf("forged/case%d:v1", i)
			push := startProc(t, registryEnv(reg), "", "push", "--share", share, "--output", tag, "--termination-log", term)
			code := push.wait(t, 60*time.Second)
			msg := fmt.Sprint(readTermination(t, term)["error"])
			if code != exitFailed || !strings.Contains(msg, tc.want) {
				t.Fatalf("push exit %d, want 1 with %q in the termination message %q\n%s", code, tc.want, msg, push.stderr.String())
			}
			if _, err := c.Pull(context.Background(), tag, filepath.Join(t.TempDir(), "pulled"), artifact.PullOptions{}); err == nil {
				t.Fatal("something was pushed from the forged share")
			}
			if _, err := os.Lstat(filepath.Join(filepath.Dir(filepath.Dir(share)), "pwned")); err == nil {
				t.Fatal("a file was written outside run/")
			}
			if strings.Contains(push.stdout.String()+push.stderr.String(), reg.Password) {
				t.Fatal("the password appeared in push's output")
			}
		})
	}
}
