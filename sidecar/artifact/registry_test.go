package artifact

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content/file"

	"github.com/converged-computing/oras-cache/sidecar/registrytest"
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
	// A dial that times out (seen in the e2e while the registry pod was replaced) is wrapped
	// like a request error and also matches context.DeadlineExceeded: still worth a retry.
	_, dialErr := net.DialTimeout("tcp", "127.0.0.1:9", time.Nanosecond)
	if dialErr == nil {
		t.Fatal("a 1ns dial succeeded")
	}
	reqErr := &url.Error{Op: "Head", URL: "http://127.0.0.1:9/v2/", Err: dialErr}
	if !errors.Is(reqErr, context.DeadlineExceeded) || !Retryable(reqErr) {
		t.Fatalf("a dial timeout must be retried: %v", reqErr)
	}
}

// pushRaw pushes a hand-made single-layer artifact (a malicious one, typically).
func pushRaw(t *testing.T, c *Client, rawRef string, blob []byte, annotations map[string]string) {
	t.Helper()
	ctx := context.Background()
	ref, err := ParseRef(rawRef, c.cfg.Registry)
	if err != nil {
		t.Fatal(err)
	}
	repo := c.repository(ref)
	layer := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayerGzip, Digest: digest.FromBytes(blob), Size: int64(len(blob)), Annotations: annotations}
	for _, b := range []struct {
		d    ocispec.Descriptor
		data []byte
	}{{ocispec.DescriptorEmptyJSON, []byte("{}")}, {layer, blob}} {
		if err := repo.Push(ctx, b.d, bytes.NewReader(b.data)); err != nil {
			t.Fatal(err)
		}
	}
	m, _ := json.Marshal(ocispec.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest,
		ArtifactType: ArtifactType, Config: ocispec.DescriptorEmptyJSON, Layers: []ocispec.Descriptor{layer}})
	md := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromBytes(m), Size: int64(len(m))}
	if err := repo.PushReference(ctx, md, bytes.NewReader(m), ref.Reference); err != nil {
		t.Fatal(err)
	}
}

func gzipBytes(t *testing.T, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	_, _ = zw.Write(b)
	_ = zw.Close()
	return buf.Bytes()
}

// Malicious and oversized artifacts from the registry are refused; nothing lands outside (or at)
// the destination.
func TestPullRefusesMaliciousAndOversizedArtifacts(t *testing.T) {
	reg := registrytest.Start(t, registrytest.Options{})
	c, _ := newTestClient(t, testConfig(reg))
	unpack := func(title string) map[string]string {
		return map[string]string{ocispec.AnnotationTitle: title, file.AnnotationUnpack: "true"}
	}
	evil := gzipBytes(t, makeTar(t, []entry{{name: "d/", typ: tar.TypeDir, mode: 0o755}, {name: "d/../../escaped", typ: tar.TypeReg, body: "x"}}))
	pushRaw(t, c, "evil/dotdot:v1", evil, unpack("d"))
	link := gzipBytes(t, makeTar(t, []entry{{name: "d/", typ: tar.TypeDir, mode: 0o755}, {name: "d/l", typ: tar.TypeSymlink, link: "/"}}))
	pushRaw(t, c, "evil/symlink:v1", link, unpack("d"))
	pushRaw(t, c, "evil/title:v1", evil, unpack("../outside"))
	pushRaw(t, c, "evil/abs-title:v1", []byte("x"), map[string]string{ocispec.AnnotationTitle: "/etc/cron.d/x"})
	bomb := gzipBytes(t, makeTar(t, []entry{{name: "d/", typ: tar.TypeDir, mode: 0o755}, {name: "d/zeros", typ: tar.TypeReg, body: strings.Repeat("\x00", 2<<20)}}))
	pushRaw(t, c, "evil/bomb:v1", bomb, unpack("d"))
	valid := gzipBytes(t, makeTar(t, []entry{{name: "d/", typ: tar.TypeDir, mode: 0o755}, {name: "d/f", typ: tar.TypeReg, body: "ok"}}))
	pushRaw(t, c, "evil/bad-tar-digest:v1", valid, map[string]string{ocispec.AnnotationTitle: "d", file.AnnotationUnpack: "true", file.AnnotationDigest: digest.FromString("not it").String()})

	cfg := testConfig(reg)
	cfg.MaxUnpackSize = 1 << 20
	small, _ := newTestClient(t, cfg)
	for _, ref := range []string{"evil/dotdot:v1", "evil/symlink:v1", "evil/title:v1", "evil/abs-title:v1", "evil/bomb:v1", "evil/bad-tar-digest:v1"} {
		parent := t.TempDir()
		dest := filepath.Join(parent, "in")
		_, err := small.Pull(context.Background(), ref, dest, PullOptions{})
		if err == nil {
			t.Errorf("%s was pulled", ref)
			continue
		}
		if entries, _ := os.ReadDir(parent); len(entries) != 0 {
			t.Errorf("%s left %v next to the destination (err %v)", ref, entries, err)
		}
		if _, err := os.Lstat(filepath.Join(filepath.Dir(parent), "escaped")); err == nil {
			t.Errorf("%s escaped", ref)
		}
	}
	// The bomb within a large enough bound is fine.
	if _, err := c.Pull(context.Background(), "evil/bomb:v1", filepath.Join(t.TempDir(), "in"), PullOptions{}); err != nil {
		t.Fatal(err)
	}
}
