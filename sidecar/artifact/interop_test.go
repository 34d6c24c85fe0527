package artifact

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/converged-computing/oras-cache/sidecar/registrytest"
)

func runOras(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command(registrytest.Binary(t, "oras"), args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "HOME="+t.TempDir()) // no docker config of the host
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("oras %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func interopTree(t *testing.T, root string) (dir, file string) {
	dir = filepath.Join(root, "outdir")
	writeTree(t, dir, map[string]string{
		"a.txt": "alpha\n", "nested/deeper/b.bin": string(randomBytes(200 << 10)), "bin/tool": "#!/bin/sh\necho hi\n", "private": "secret-ish",
	}, map[string]os.FileMode{"bin/tool": 0o755, "private": 0o600})
	if err := os.Chmod(filepath.Join(dir, "nested"), 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../a.txt", filepath.Join(dir, "bin", "a-link")); err != nil {
		t.Fatal(err)
	}
	file = filepath.Join(root, "report.csv")
	writeTree(t, root, map[string]string{"report.csv": "x,y\n1,2\n"}, nil)
	return dir, file
}

// Our push → stock `oras pull` restores the directory and the file byte for byte, modes included.
func TestInteropOurPushOrasPull(t *testing.T) {
	reg := registrytest.Start(t, registrytest.Options{})
	c, _ := newTestClient(t, testConfig(reg))
	src := t.TempDir()
	dir, file := interopTree(t, src)
	res, err := c.Push(context.Background(), "interop/ours:v1", []string{dir, file}, PushOptions{})
	if err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	runOras(t, out, "pull", "--plain-http", reg.Host+"/interop/ours:v1")
	compareTrees(t, dir, filepath.Join(out, "outdir"))
	b, err := os.ReadFile(filepath.Join(out, "report.csv"))
	if err != nil || string(b) != "x,y\n1,2\n" {
		t.Fatalf("report.csv: %q %v", b, err)
	}
	// The manifest carries our artifactType and the oras annotations.
	m := runOras(t, out, "manifest", "fetch", "--plain-http", reg.Host+"/interop/ours@"+res.Digest)
	for _, want := range []string{ArtifactType, `"io.deis.oras.content.unpack":"true"`, `"io.deis.oras.content.digest":"sha256:`, `"org.opencontainers.image.title":"outdir"`, "application/vnd.oci.image.layer.v1.tar+gzip"} {
		if !strings.Contains(m, want) {
			t.Errorf("manifest lacks %s:\n%s", want, m)
		}
	}
	if strings.Contains(m, "org.opencontainers.image.created") {
		t.Error("manifest carries a creation time (breaks reproducibility)")
	}
}

// Stock `oras push` → our pull.
func TestInteropOrasPushOurPull(t *testing.T) {
	reg := registrytest.Start(t, registrytest.Options{Auth: true})
	src := t.TempDir()
	dir, _ := interopTree(t, src)
	runOras(t, src, "push", "--plain-http", "-u", reg.Username, "-p", reg.Password, reg.Host+"/interop/theirs:v1", "outdir", "report.csv")
	c, _ := newTestClient(t, testConfig(reg))
	dest := filepath.Join(t.TempDir(), "in")
	res, err := c.Pull(context.Background(), "interop/theirs:v1", dest, PullOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Files != 5 {
		t.Fatalf("pulled %d files", res.Files)
	}
	compareTrees(t, dir, filepath.Join(dest, "outdir"))
	b, err := os.ReadFile(filepath.Join(dest, "report.csv"))
	if err != nil || string(b) != "x,y\n1,2\n" {
		t.Fatalf("report.csv: %q %v", b, err)
	}
}
