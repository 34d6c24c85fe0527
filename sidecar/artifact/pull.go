package artifact

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/klauspost/pgzip"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content/file"
	"oras.land/oras-go/v2/errdef"
	"oras.land/oras-go/v2/registry/remote"

	"github.com/converged-computing/oras-cache/sidecar/contract"
)

// maxManifestBytes bounds the manifest we read.
const maxManifestBytes = 4 << 20

// PullOptions tune one pull.
type PullOptions struct {
	// KeepArchives stores directory layers as <title>.tar.gz instead of unpacking them.
	KeepArchives bool
	// ReadableByAll adds a+r to files and a+rx to directories (the app may run as another uid).
	ReadableByAll bool
}

// PullResult is what one pull did.
type PullResult struct {
	Reference  string   `json:"reference"`
	Digest     string   `json:"digest"`
	Titles     []string `json:"titles"`
	Files      int      `json:"files"`
	Bytes      int64    `json:"bytes"` // bytes written
	DurationMs int64    `json:"durationMs"`
}

// Pull fetches the artifact rawRef into dest (created; it must not exist): every titled layer
// becomes dest/<title> — a file, or a directory unpacked safely when the layer carries
// io.deis.oras.content.unpack=true. Every blob is verified against its digest while it streams;
// the whole artifact is staged in dest.partial and renamed into place only when complete, so a
// failed pull leaves nothing at dest. Transfers resume after connection errors until the deadline.
func (c *Client) Pull(ctx context.Context, rawRef, dest string, opts PullOptions) (PullResult, error) {
	start := time.Now()
	res := PullResult{}
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	ref, err := ParseRef(rawRef, c.cfg.Registry)
	if err != nil {
		return res, err
	}
	res.Reference = ref.String()
	fail := func(err error) (PullResult, error) {
		return res, clean(fmt.Errorf("pull %s: %w", ref, c.explain(ref.Registry, err)))
	}
	if _, err := os.Lstat(dest); err == nil {
		return fail(fmt.Errorf("destination %s already exists", dest))
	}
	repo := c.repository(ref)

	var mdesc ocispec.Descriptor
	var mb []byte
	err = c.retry(ctx, "resolve", func(ctx context.Context) error {
		d, rc, err := repo.FetchReference(ctx, ref.Reference)
		if err != nil {
			if errors.Is(err, errdef.ErrNotFound) {
				return permanent(fmt.Errorf("not found in the registry"))
			}
			return err
		}
		defer rc.Close()
		b, err := io.ReadAll(io.LimitReader(rc, maxManifestBytes+1))
		if err != nil {
			return err
		}
		if len(b) > maxManifestBytes {
			return permanent(fmt.Errorf("manifest larger than %d bytes", maxManifestBytes))
		}
		mdesc, mb = d, b
		return nil
	})
	if err != nil {
		return fail(err)
	}
	got := digest.FromBytes(mb)
	if want, err := ref.Digest(); err == nil && want != got {
		return fail(fmt.Errorf("manifest digest mismatch: got %s", got))
	}
	if mdesc.Digest != "" && mdesc.Digest != got {
		return fail(fmt.Errorf("manifest digest mismatch: registry says %s, content is %s", mdesc.Digest, got))
	}
	res.Digest = got.String()
	var m ocispec.Manifest
	if err := json.Unmarshal(mb, &m); err != nil {
		return fail(fmt.Errorf("manifest: %w", err))
	}
	if mt := firstNonEmpty(m.MediaType, mdesc.MediaType); mt != ocispec.MediaTypeImageManifest {
		return fail(fmt.Errorf("%s is a %q, not an OCI image manifest (oras artifact)", ref, mt))
	}

	stage := dest + ".partial"
	if err := os.RemoveAll(stage); err != nil {
		return fail(err)
	}
	if err := os.MkdirAll(stage, 0o755); err != nil {
		return fail(err)
	}
	defer os.RemoveAll(stage)
	budget := Limits{Bytes: c.cfg.MaxUnpackSize, Entries: c.cfg.MaxUnpackEntries} // for the whole input
	for _, l := range m.Layers {
		title := l.Annotations[ocispec.AnnotationTitle]
		if title == "" {
			c.log.Warn("skipping a layer without a title", "digest", l.Digest.String())
			continue
		}
		if err := checkRelName(title); err != nil {
			return fail(fmt.Errorf("%w: layer title %q: %v", ErrUnsafe, title, err))
		}
		title = path.Clean(title)
		if err := l.Digest.Validate(); err != nil || l.Size < 0 {
			return fail(fmt.Errorf("layer %q: invalid descriptor", title))
		}
		if err := mkdirNoSymlinks(stage, path.Dir(title)); err != nil {
			return fail(err)
		}
		t0 := time.Now()
		var st UnpackStats
		if l.Annotations[file.AnnotationUnpack] == "true" && !opts.KeepArchives {
			st, err = c.pullDir(ctx, repo, l, stage, title, budget, opts.ReadableByAll)
		} else {
			name := title
			if l.Annotations[file.AnnotationUnpack] == "true" {
				name += ".tar.gz"
			}
			if l.Size > budget.Bytes || budget.Entries < 1 {
				return fail(fmt.Errorf("%w: layer %q is %d bytes, over what is left of the unpack bound %s=%d",
					ErrUnsafe, title, l.Size, contract.EnvMaxUnpackSize, c.cfg.MaxUnpackSize))
			}
			st = UnpackStats{Files: 1, Entries: 1, Bytes: l.Size}
			err = c.pullFile(ctx, repo, l, filepath.Join(stage, filepath.FromSlash(name)))
		}
		if err != nil {
			return fail(fmt.Errorf("layer %q (%s): %w", title, l.Digest, err))
		}
		files, n := st.Files, st.Bytes
		budget.Bytes -= n
		budget.Entries -= st.Entries
		res.Files += files
		res.Bytes += n
		res.Titles = append(res.Titles, title)
		secs := time.Since(t0).Seconds()
		c.log.Info("pulled layer", "title", title, "blobBytes", l.Size, "bytesWritten", n, "files", files,
			"seconds", round1(secs), "MBps", round1(float64(l.Size)/1e6/max(secs, 1e-3)))
	}
	if err := os.Rename(stage, dest); err != nil {
		return fail(err)
	}
	res.DurationMs = time.Since(start).Milliseconds()
	c.log.Info("pulled", "reference", res.Reference, "digest", res.Digest, "files", res.Files, "bytes", res.Bytes, "durationMs", res.DurationMs)
	return res, nil
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}

// mkdirNoSymlinks creates root/rel (slash path) refusing to go through a symlink.
func mkdirNoSymlinks(root, rel string) error {
	if rel == "." || rel == "" {
		return nil
	}
	cur := root
	for _, c := range strings.Split(rel, "/") {
		cur = filepath.Join(cur, c)
		fi, err := os.Lstat(cur)
		switch {
		case errors.Is(err, os.ErrNotExist):
			if err := os.Mkdir(cur, 0o755); err != nil {
				return err
			}
		case err != nil:
			return err
		case !fi.IsDir():
			return fmt.Errorf("%w: %s is not a directory", ErrUnsafe, cur)
		}
	}
	return nil
}

func (c *Client) pullFile(ctx context.Context, repo *remote.Repository, desc ocispec.Descriptor, dst string) error {
	f, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL|noFollow, 0o644)
	if err != nil {
		return err
	}
	rr := c.newResumingReader(ctx, repo, desc)
	defer rr.Close()
	_, err = io.CopyBuffer(f, rr, make([]byte, 1<<20))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

func (c *Client) pullDir(ctx context.Context, repo *remote.Repository, desc ocispec.Descriptor, stage, title string, limit Limits, readable bool) (UnpackStats, error) {
	rr := c.newResumingReader(ctx, repo, desc)
	defer rr.Close()
	gz, err := pgzip.NewReaderN(bufio.NewReaderSize(rr, 1<<20), 1<<20, 4)
	if err != nil {
		return UnpackStats{}, err
	}
	defer gz.Close()
	var r io.Reader = gz
	var th hash.Hash
	want, _ := digest.Parse(desc.Annotations[file.AnnotationDigest])
	if want != "" && want.Algorithm() == digest.SHA256 {
		th = sha256.New()
		r = io.TeeReader(gz, th)
	}
	st, err := Untar(r, stage, title, limit, readable)
	if err != nil {
		return st, err
	}
	// Read the tar padding, the gzip trailer (CRC) and the rest of the blob (digest check).
	if _, err := io.Copy(io.Discard, r); err != nil {
		return st, err
	}
	if _, err := io.Copy(io.Discard, rr); err != nil {
		return st, err
	}
	if th != nil {
		if got := digest.NewDigestFromEncoded(digest.SHA256, hex.EncodeToString(th.Sum(nil))); got != want {
			return st, fmt.Errorf("uncompressed tar digest mismatch: got %s, annotation says %s", got, want)
		}
	}
	return st, nil
}

// resumingReader streams one blob, verifies its size and digest, and on a connection error
// reopens it at the current offset (HTTP range request) with backoff, until the deadline.
type resumingReader struct {
	ctx  context.Context
	c    *Client
	repo *remote.Repository
	desc ocispec.Descriptor
	rc   io.ReadCloser
	off  int64
	h    hash.Hash
	prog *progress
	done bool
}

func (c *Client) newResumingReader(ctx context.Context, repo *remote.Repository, desc ocispec.Descriptor) *resumingReader {
	return &resumingReader{ctx: ctx, c: c, repo: repo, desc: desc, h: desc.Digest.Algorithm().Hash(),
		prog: c.startProgress("download "+desc.Digest.String(), desc.Size)}
}

func (r *resumingReader) open() error {
	return r.c.retry(r.ctx, fmt.Sprintf("download %s at offset %d", r.desc.Digest, r.off), func(ctx context.Context) error {
		rc, err := r.repo.Fetch(ctx, r.desc)
		if err != nil {
			if errors.Is(err, errdef.ErrNotFound) {
				return permanent(fmt.Errorf("blob not found in the registry"))
			}
			return err
		}
		if r.off > 0 {
			s, ok := rc.(io.Seeker)
			if !ok {
				rc.Close()
				return permanent(fmt.Errorf("the registry does not support range requests: cannot resume at %d", r.off))
			}
			if _, err := s.Seek(r.off, io.SeekStart); err != nil {
				rc.Close()
				return err
			}
		}
		r.rc = rc
		return nil
	})
}

func (r *resumingReader) Read(p []byte) (int, error) {
	if r.done {
		return 0, io.EOF
	}
	for {
		if r.rc == nil {
			if err := r.open(); err != nil {
				return 0, err
			}
		}
		n, err := r.rc.Read(p)
		if n > 0 {
			r.h.Write(p[:n])
			r.off += int64(n)
			r.prog.set(r.off)
			if r.off > r.desc.Size {
				return n, permanent(fmt.Errorf("blob is larger than its descriptor says (%d bytes)", r.desc.Size))
			}
		}
		if err == io.EOF && r.off == r.desc.Size {
			got := digest.NewDigest(r.desc.Digest.Algorithm(), r.h)
			if got != r.desc.Digest {
				return n, permanent(fmt.Errorf("blob digest mismatch: got %s", got))
			}
			r.done = true
			return n, io.EOF
		}
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		if err != nil {
			if !Retryable(err) || r.ctx.Err() != nil {
				return n, err
			}
			r.c.log.Warn("download interrupted, resuming", "digest", r.desc.Digest.String(), "offset", r.off, "error", clean(err).Error())
			r.rc.Close()
			r.rc = nil
			if n > 0 {
				return n, nil
			}
			continue
		}
		return n, nil
	}
}

func (r *resumingReader) Close() error {
	r.prog.done()
	if r.rc != nil {
		return r.rc.Close()
	}
	return nil
}
