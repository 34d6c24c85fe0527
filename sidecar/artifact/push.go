package artifact

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content/file"
	"oras.land/oras-go/v2/registry/remote"

	"github.com/converged-computing/oras-cache/sidecar/contract"
)

// PushOptions tune one push.
type PushOptions struct {
	// Annotations are added to the manifest. They change its digest: by default there are none,
	// so identical content gives an identical manifest digest.
	Annotations map[string]string
	// Root, when set, is where the paths are: each must be a single name in it (no separator,
	// no ".."), read without following any symlink — a top-level symlink is refused — so nothing
	// outside Root can be pushed (the push sidecar reads the app-writable share this way).
	Root *os.Root
}

type layer struct {
	desc  ocispec.Descriptor
	open  func() (io.ReadCloser, error) // the blob's bytes, from the start
	files int
	close func() // releases what open needs
}

// Push packs every path (a file or a directory; the layer is titled with its base name) exactly as
// `oras push` would and pushes the artifact to rawRef (a tag). The tag is moved only after every
// blob is in the registry, so it never points at a partial artifact. Blobs the registry already
// has are not uploaded again. Retries and the total deadline come from the config.
func (c *Client) Push(ctx context.Context, rawRef string, paths []string, opts PushOptions) (contract.PushResult, error) {
	start := time.Now()
	res := contract.PushResult{}
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	ref, err := ParseRef(rawRef, c.cfg.Registry)
	if err != nil {
		return res, err
	}
	if _, err := ref.Digest(); err == nil {
		return res, fmt.Errorf("push reference %s must be a tag, not a digest", ref)
	}
	res.Reference = ref.String()
	if len(paths) == 0 {
		return res, fmt.Errorf("push %s: nothing to push", ref)
	}
	var layers []layer
	titles := map[string]bool{}
	for _, p := range paths {
		l, err := c.packLayer(ctx, p, opts.Root)
		if l.close != nil {
			defer l.close()
		}
		if err != nil {
			return res, fmt.Errorf("push %s: packing %s: %w", ref, p, err)
		}
		layers = append(layers, l)
		title := l.desc.Annotations[ocispec.AnnotationTitle]
		if titles[title] {
			return res, fmt.Errorf("push %s: two outputs are named %q", ref, title)
		}
		titles[title] = true
		res.Size += l.desc.Size
		res.Files += l.files
	}
	repo := c.repository(ref)

	// The empty config, then the layers; the manifest (and tag) last.
	cfg := ocispec.DescriptorEmptyJSON
	if err := c.uploadBlob(ctx, repo, cfg, func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(cfg.Data)), nil
	}, &res); err != nil {
		return res, clean(fmt.Errorf("push %s: %w", ref, c.explain(ref.Registry, err)))
	}
	descs := make([]ocispec.Descriptor, 0, len(layers))
	for _, l := range layers {
		if err := c.uploadBlob(ctx, repo, l.desc, l.open, &res); err != nil {
			return res, clean(fmt.Errorf("push %s: %w", ref, c.explain(ref.Registry, err)))
		}
		descs = append(descs, l.desc)
	}
	manifest := ocispec.Manifest{
		Versioned:    specs.Versioned{SchemaVersion: 2},
		MediaType:    ocispec.MediaTypeImageManifest,
		ArtifactType: ArtifactType,
		Config:       ocispec.DescriptorEmptyJSON,
		Layers:       descs,
		Annotations:  opts.Annotations,
	}
	mb, err := json.Marshal(manifest)
	if err != nil {
		return res, err
	}
	mdesc := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromBytes(mb), Size: int64(len(mb)), ArtifactType: ArtifactType}
	err = c.retry(ctx, "push manifest "+ref.String(), func(ctx context.Context) error {
		return repo.PushReference(ctx, mdesc, bytes.NewReader(mb), ref.Reference)
	})
	if err != nil {
		return res, clean(c.explain(ref.Registry, err))
	}
	res.Digest = mdesc.Digest.String()
	res.DurationMs = time.Since(start).Milliseconds()
	c.log.Info("pushed", "reference", res.Reference, "digest", res.Digest, "size", res.Size, "files", res.Files,
		"uploadedBytes", res.UploadedBytes, "durationMs", res.DurationMs)
	return res, nil
}

// packLayer turns one path into a layer: a file as is; a directory as a reproducible tar+gzip
// stream, packed once to learn its digest and size (nothing is written to disk), and packed again
// while it is uploaded, only when the registry does not have it yet. Everything is read through an
// os.Root: in is the caller's when set (p a single name in it), else the directory holding the
// path p resolves to (the caller's own path, a symlink to a directory packs the directory).
func (c *Client) packLayer(ctx context.Context, p string, in *os.Root) (layer, error) {
	var l layer
	parent, name, title := in, p, p
	if in != nil {
		if p == "" || p == "." || p == ".." || strings.ContainsAny(p, "/\x00") {
			return l, permanent(fmt.Errorf("%q is not a single name", p))
		}
	} else {
		abs, err := filepath.Abs(p)
		if err != nil {
			return l, err
		}
		title = filepath.Base(abs)
		if title == "/" || title == "." {
			return l, fmt.Errorf("cannot name a layer after %q", p)
		}
		real := abs
		if r, err := filepath.EvalSymlinks(abs); err == nil {
			real = r
		}
		if parent, err = os.OpenRoot(filepath.Dir(real)); err != nil {
			return l, err
		}
		name = filepath.Base(real)
		l.close = func() { parent.Close() }
	}
	fi, err := parent.Lstat(name)
	if err != nil {
		return l, err
	}
	start := time.Now()
	switch {
	case fi.Mode()&fs.ModeSymlink != 0:
		return l, permanent(fmt.Errorf("%s is a symlink (refusing to follow it out of where it is)", p))
	case fi.Mode().IsRegular():
		open := func() (io.ReadCloser, error) { return parent.OpenFile(name, os.O_RDONLY|noFollow, 0) }
		prog := c.startProgress("hash "+title, fi.Size())
		d, n, err := fileDigest(ctx, open, prog.set)
		prog.done()
		if err != nil {
			return l, err
		}
		l.files, l.open = 1, open
		l.desc = ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayer, Digest: d, Size: n,
			Annotations: map[string]string{ocispec.AnnotationTitle: title}}
	case fi.IsDir():
		dir, err := parent.OpenRoot(name)
		if err != nil {
			return l, err
		}
		if prev := l.close; prev != nil {
			l.close = func() { dir.Close(); prev() }
		} else {
			l.close = func() { dir.Close() }
		}
		prog := c.startProgress("pack "+title, 0)
		hw := newHashingWriter(io.Discard)
		st, err := PackRoot(ctx, dir, title, hw, c.cfg.CompressionLevel, prog.set)
		prog.done()
		if err != nil {
			return l, err
		}
		for _, s := range st.Skipped {
			c.log.Warn("skipped a special file (not data)", "entry", s)
		}
		l.files = st.Files
		l.desc = ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayerGzip, Digest: hw.digest(), Size: hw.n,
			Annotations: map[string]string{
				ocispec.AnnotationTitle: title,
				file.AnnotationDigest:   st.TarDigest.String(),
				file.AnnotationUnpack:   "true",
			}}
		level, want := c.cfg.CompressionLevel, l.desc.Digest
		l.open = func() (io.ReadCloser, error) {
			pr, pw := io.Pipe()
			go func() {
				h := newHashingWriter(pw)
				_, err := PackRoot(ctx, dir, title, h, level, nil)
				if err == nil && h.digest() != want {
					err = permanent(fmt.Errorf("%s changed while it was pushed (packed as %s, then as %s)", p, want, h.digest()))
				}
				pw.CloseWithError(err) // nil: EOF
			}()
			return pr, nil // closing pr stops the packer
		}
		secs := time.Since(start).Seconds()
		c.log.Info("packed", "path", p, "files", st.Files, "tarBytes", st.TarSize, "gzipBytes", hw.n,
			"seconds", round1(secs), "MBps", round1(float64(st.TarSize)/1e6/max(secs, 1e-3)))
	default:
		return l, fmt.Errorf("%s is %w", p, errNotDirOrFile)
	}
	return l, nil
}

// uploadBlob uploads desc unless the registry has it, retrying from the start of the content.
func (c *Client) uploadBlob(ctx context.Context, repo *remote.Repository, desc ocispec.Descriptor, open func() (io.ReadCloser, error), res *contract.PushResult) error {
	what := "upload " + desc.Digest.String()
	if t := desc.Annotations[ocispec.AnnotationTitle]; t != "" {
		what = "upload " + t + " (" + desc.Digest.String() + ")"
	}
	return c.retry(ctx, what, func(ctx context.Context) error {
		ok, err := repo.Exists(ctx, desc)
		if err != nil {
			return err
		}
		if ok {
			c.log.Info("blob already in the registry", "digest", desc.Digest.String(), "size", desc.Size)
			return nil
		}
		rc, err := open()
		if err != nil {
			return permanent(err)
		}
		defer rc.Close()
		prog := c.startProgress(what, desc.Size)
		defer prog.done()
		body := &countingReader{r: rc, p: prog}
		if err := repo.Push(ctx, desc, body); err != nil {
			return err
		}
		res.UploadedBytes += desc.Size
		return nil
	})
}

type countingReader struct {
	r io.Reader
	p *progress
}

func (c *countingReader) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	c.p.add(int64(n))
	return n, err
}
