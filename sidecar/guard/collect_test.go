package guard_test

import (
	"context"
	"encoding/base64"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/converged-computing/oras-cache/sidecar/artifact"
	"github.com/converged-computing/oras-cache/sidecar/guard"
	"github.com/converged-computing/oras-cache/sidecar/registrytest"
)

func basic(reg *registrytest.Registry) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(reg.Username+":"+reg.Password))
}

func blobPath(reg *registrytest.Registry, d string) string {
	hex := strings.TrimPrefix(d, "sha256:")
	return filepath.Join(reg.Root, "docker", "registry", "v2", "blobs", "sha256", hex[:2], hex, "data")
}

// Six tags, keepLast 3: a collection deletes the three oldest (through the registry API), the
// registry's garbage collection frees their blobs, the three newest stay pullable.
func TestRetentionKeepsTheNewestAndReclaims(t *testing.T) {
	g, _, c, reg, _ := setup(t, guard.Config{VolumeSize: "256Mi", Volume: "emptyDir", Retention: guard.Retention{KeepLast: 3}})
	ctx := context.Background()
	var digests []string
	var layerBlobs []string
	for i := 1; i <= 6; i++ {
		f := randomFile(t, "data.bin", 2<<20)
		res, err := c.Push(ctx, "ret/app:v"+string(rune('0'+i)), []string{f}, artifact.PushOptions{})
		if err != nil {
			t.Fatal(err)
		}
		digests = append(digests, res.Digest)
		layerBlobs = append(layerBlobs, digest.FromBytes(mustRead(t, f)).String())
	}
	rep := g.Collect(ctx, basic(reg))
	if rep.Error != "" {
		t.Fatal(rep.Error)
	}
	if strings.Join(rep.DeletedTags, ",") != "ret/app:v1,ret/app:v2,ret/app:v3" || rep.DeletedManifests != 3 || rep.KeptTags != 3 {
		t.Fatalf("report %+v", rep)
	}
	// The three 2 MiB layers and their three manifests (the empty config is shared by the kept ones).
	if rep.Reclaimed < 6<<20 || rep.Reclaimed > 6<<20+3*4096 {
		t.Fatalf("reclaimed %d bytes, want the three 2 MiB layers and their manifests", rep.Reclaimed)
	}
	for i, d := range layerBlobs {
		_, err := os.Stat(blobPath(reg, d))
		if gone := os.IsNotExist(err); gone != (i < 3) {
			t.Fatalf("layer of v%d: gone=%v", i+1, gone)
		}
	}
	for i := 4; i <= 6; i++ {
		res, err := c.Pull(ctx, "ret/app:v"+string(rune('0'+i)), filepath.Join(t.TempDir(), "p"), artifact.PullOptions{})
		if err != nil || res.Digest != digests[i-1] {
			t.Fatalf("kept v%d: %v", i, err)
		}
	}
	if _, err := c.Pull(ctx, "ret/app:v1", filepath.Join(t.TempDir(), "p"), artifact.PullOptions{}); err == nil {
		t.Fatal("v1 still pullable")
	}
	if u := g.Usage(); u.Collections != 1 || u.ReclaimedBytes != rep.Reclaimed || u.DeletedTags != 3 {
		t.Fatalf("usage %+v", u)
	}
}

// A tag shared with a kept tag keeps its manifest; excluded repositories are never touched.
func TestRetentionSharedDigestAndExclude(t *testing.T) {
	g, _, c, reg, _ := setup(t, guard.Config{VolumeSize: "256Mi", Volume: "emptyDir",
		Retention: guard.Retention{KeepLast: 1, Exclude: []string{"keep/*"}}})
	ctx := context.Background()
	f := randomFile(t, "same.bin", 1<<20)
	for _, ref := range []string{"shared/app:old", "shared/app:new", "keep/app:a", "keep/app:b"} {
		if _, err := c.Push(ctx, ref, []string{f}, artifact.PushOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	rep := g.Collect(ctx, basic(reg))
	if rep.Error != "" || strings.Join(rep.DeletedTags, ",") != "shared/app:old" || rep.DeletedManifests != 0 {
		t.Fatalf("report %+v", rep)
	}
	for _, ref := range []string{"shared/app:new", "keep/app:a", "keep/app:b"} {
		if _, err := c.Pull(ctx, ref, filepath.Join(t.TempDir(), "p"), artifact.PullOptions{}); err != nil {
			t.Fatalf("%s: %v", ref, err)
		}
	}
}

// A push whose blob landed before the collection and whose manifest comes after it loses
// nothing: the guard held the blob for the collection.
func TestCollectionHoldsTheBlobsOfAPushBetweenBlobAndManifest(t *testing.T) {
	g, host, _, reg, _ := setup(t, guard.Config{VolumeSize: "256Mi", Volume: "emptyDir"})
	ctx := context.Background()
	data := mustRead(t, randomFile(t, "late.bin", 1<<20))
	d := digest.FromBytes(data)
	do := func(method, url, ctype string, body []byte) (int, http.Header) {
		t.Helper()
		req, _ := http.NewRequest(method, url, strings.NewReader(string(body)))
		req.Header.Set("Authorization", basic(reg))
		if ctype != "" {
			req.Header.Set("Content-Type", ctype)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode, resp.Header
	}
	base := "http://" + host + "/v2/late/app"
	for _, b := range []struct {
		d    digest.Digest
		data []byte
	}{{d, data}, {digest.FromBytes([]byte("{}")), []byte("{}")}} {
		st, hdr := do(http.MethodPost, base+"/blobs/uploads/", "", nil)
		if st != http.StatusAccepted {
			t.Fatalf("blob upload start: %d", st)
		}
		loc := hdr.Get("Location")
		if !strings.HasPrefix(loc, "http") {
			loc = "http://" + host + loc
		}
		if st, _ := do(http.MethodPut, loc+"&digest="+b.d.String(), "application/octet-stream", b.data); st != http.StatusCreated {
			t.Fatalf("blob upload: %d", st)
		}
	}
	rep := g.Collect(ctx, basic(reg))
	if rep.Error != "" || rep.HeldBlobs < 1 {
		t.Fatalf("report %+v", rep)
	}
	if _, err := os.Stat(blobPath(reg, d.String())); err != nil {
		t.Fatalf("the pushed blob was collected: %v", err)
	}
	manifest := `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.empty.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2,"data":"e30="},"layers":[{"mediaType":"application/octet-stream","digest":"` +
		d.String() + `","size":` + itoa(len(data)) + `}]}`
	if st, _ := do(http.MethodPut, base+"/manifests/v1", "application/vnd.oci.image.manifest.v1+json", []byte(manifest)); st != http.StatusCreated {
		t.Fatalf("manifest after the collection: %d", st)
	}
	// The hold is released; a second collection keeps the blob because the manifest names it.
	if rep := g.Collect(ctx, basic(reg)); rep.Error != "" {
		t.Fatal(rep.Error)
	}
	if _, err := os.Stat(blobPath(reg, d.String())); err != nil {
		t.Fatalf("a blob named by a manifest was collected: %v", err)
	}
}

// Collections need the registry's credentials.
func TestCollectNeedsCredentials(t *testing.T) {
	_, host, _, reg, _ := setup(t, guard.Config{VolumeSize: "256Mi", Volume: "emptyDir"})
	for _, auth := range []string{"", "Basic " + base64.StdEncoding.EncodeToString([]byte("oras:wrong"))} {
		req, _ := http.NewRequest(http.MethodPost, "http://"+host+guard.CollectPath, nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("collect with %q: %s", auth, resp.Status)
		}
	}
	req, _ := http.NewRequest(http.MethodPost, "http://"+host+guard.CollectPath, nil)
	req.Header.Set("Authorization", basic(reg))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("collect with the credentials: %s", resp.Status)
	}
}

func mustRead(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func itoa(n int) string { return strconv.Itoa(n) }
