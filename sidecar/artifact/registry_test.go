package artifact

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/converged-computing/oras-cache/tests/go/registrytest"
)

func TestPushPullRoundTrip(t *testing.T) {
	for _, withAuth := range []bool{false, true} {
		name := "no-auth"
		if withAuth {
			name = "htpasswd"
		}
		t.Run(name, func(t *testing.T) {
			reg := registrytest.Start(t, registrytest.Options{Auth: withAuth})
			c, log := newTestClient(t, testConfig(reg))
			ctx := context.Background()
			src := t.TempDir()
			dir := filepath.Join(src, "results")
			writeTree(t, dir, map[string]string{"a.txt": "alpha", "sub/b.bin": string(randomBytes(300 << 10)), "run.sh": "#!/bin/sh\n", "empty": ""},
				map[string]os.FileMode{"run.sh": 0o755, "a.txt": 0o640})
			if err := os.MkdirAll(filepath.Join(dir, "emptydir"), 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink("sub/b.bin", filepath.Join(dir, "link")); err != nil {
				t.Fatal(err)
			}
			single := filepath.Join(src, "log.txt")
			writeTree(t, src, map[string]string{"log.txt": "a single file\n"}, nil)

			res, err := c.Push(ctx, "team/results:v1", []string{dir, single}, PushOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if res.Reference != reg.Host+"/team/results:v1" || !strings.HasPrefix(res.Digest, "sha256:") || res.Files != 5 {
				t.Fatalf("unexpected result %+v", res)
			}
			if res.UploadedBytes == 0 {
				t.Fatal("first push uploaded nothing")
			}
			// Re-push of unchanged content: same digest, zero blob bytes.
			again, err := c.Push(ctx, "team/results:v2", []string{dir, single}, PushOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if again.Digest != res.Digest || again.UploadedBytes != 0 {
				t.Fatalf("re-push: digest %s (first %s), uploaded %d bytes", again.Digest, res.Digest, again.UploadedBytes)
			}
			// Pull by tag (relative reference) and by digest (absolute).
			for _, ref := range []string{"team/results:v1", reg.Host + "/team/results@" + res.Digest} {
				dest := filepath.Join(t.TempDir(), "in")
				pr, err := c.Pull(ctx, ref, dest, PullOptions{})
				if err != nil {
					t.Fatal(err)
				}
				if pr.Digest != res.Digest || pr.Files != 5 {
					t.Fatalf("pull result %+v", pr)
				}
				compareTrees(t, dir, filepath.Join(dest, "results"))
				b, err := os.ReadFile(filepath.Join(dest, "log.txt"))
				if err != nil || string(b) != "a single file\n" {
					t.Fatalf("single file: %q %v", b, err)
				}
				if _, err := os.Stat(dest + ".partial"); !os.IsNotExist(err) {
					t.Fatal("staging directory left behind")
				}
			}
			// Keep archives instead of unpacking.
			dest := filepath.Join(t.TempDir(), "in")
			if _, err := c.Pull(ctx, "team/results:v1", dest, PullOptions{KeepArchives: true}); err != nil {
				t.Fatal(err)
			}
			if _, err := os.Stat(filepath.Join(dest, "results.tar.gz")); err != nil {
				t.Fatal(err)
			}
			if withAuth && strings.Contains(log.all(), reg.Password) {
				t.Fatal("the password appears in the logs")
			}
		})
	}
}

func TestAuthFailureIsClearAndFast(t *testing.T) {
	reg := registrytest.Start(t, registrytest.Options{Auth: true})
	cfg := testConfig(reg)
	cfg.Password = "wrong-password-123"
	c, log := newTestClient(t, cfg)
	dir := filepath.Join(t.TempDir(), "d")
	writeTree(t, dir, map[string]string{"f": "x"}, nil)
	start := time.Now()
	_, err := c.Push(context.Background(), "x/y:z", []string{dir}, PushOptions{})
	if err == nil || !strings.Contains(err.Error(), "401") && !strings.Contains(strings.ToLower(err.Error()), "unauthorized") {
		t.Fatalf("want an unauthorized error, got %v", err)
	}
	if time.Since(start) > 10*time.Second {
		t.Fatalf("an auth failure was retried for %s", time.Since(start))
	}
	if strings.Contains(err.Error(), cfg.Password) || strings.Contains(log.all(), cfg.Password) {
		t.Fatal("the password leaked into an error or a log")
	}
}

func TestPullMissingReferenceNamesIt(t *testing.T) {
	reg := registrytest.Start(t, registrytest.Options{})
	c, _ := newTestClient(t, testConfig(reg))
	dest := filepath.Join(t.TempDir(), "in")
	_, err := c.Pull(context.Background(), "no/such:tag", dest, PullOptions{})
	if err == nil || !strings.Contains(err.Error(), reg.Host+"/no/such:tag") || !strings.Contains(err.Error(), "not found") {
		t.Fatalf("want a not-found error naming the reference, got %v", err)
	}
	if _, err := os.Stat(dest); !os.IsNotExist(err) {
		t.Fatal("destination created by a failed pull")
	}
}

func TestParseRef(t *testing.T) {
	cases := map[string]string{
		"repo":                     "cache:5000/repo:latest",
		"team/repo:v1":             "cache:5000/team/repo:v1",
		"localhost/repo:v1":        "localhost/repo:v1",
		"registry.example.com/a/b": "registry.example.com/a/b:latest",
		"127.0.0.1:5000/a@sha256:" + strings.Repeat("0", 64): "127.0.0.1:5000/a@sha256:" + strings.Repeat("0", 64),
	}
	for in, want := range cases {
		ref, err := ParseRef(in, "cache:5000")
		if err != nil || ref.String() != want {
			t.Errorf("ParseRef(%q) = %q, %v; want %q", in, ref.String(), err, want)
		}
	}
	if _, err := ParseRef("repo:v1", ""); err == nil {
		t.Error("a relative reference without a cache registry was accepted")
	}
	if _, err := ParseRef("UPPER/case", "cache:5000"); err == nil {
		t.Error("an invalid reference was accepted")
	}
}

func TestRetryable(t *testing.T) {
	if Retryable(context.DeadlineExceeded) || Retryable(permanent(errors.New("connection refused"))) {
		t.Fatal("deadline or permanent errors must not be retried")
	}
	if !Retryable(errors.New("dial tcp 127.0.0.1:1: connect: connection refused")) {
		t.Fatal("connection refused must be retried")
	}
}
