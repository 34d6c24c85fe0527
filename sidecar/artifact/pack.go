package artifact

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"time"

	"github.com/klauspost/pgzip"
	"github.com/opencontainers/go-digest"
)

// ArtifactType is our manifest's artifactType. The rest of the wire format is exactly what
// `oras push` writes (docs/design.md, "Artifact format"), so its names come from image-spec
// (ocispec.MediaTypeImageLayer for a file's raw bytes, as oras uses it; MediaTypeImageLayerGzip
// for a directory's tar+gzip; AnnotationTitle) and oras-go's file store (file.AnnotationUnpack,
// file.AnnotationDigest: the digest of the uncompressed tar).
const ArtifactType = "application/vnd.converged-computing.oras-cache.v1"

// gzipBlockSize is part of the reproducibility contract: the compressed bytes depend on it (and on
// the level), never on the number of CPUs.
const gzipBlockSize = 1 << 20

// PackStats describes one packed directory.
type PackStats struct {
	TarDigest digest.Digest // sha256 of the uncompressed tar
	TarSize   int64
	Files     int // regular files
	Skipped   []string
}

// PackDir writes the directory dir as a reproducible tar+gzip stream to w, every entry prefixed
// with name (the layer title), entries sorted, uid/gid 0, no owner names, mtime 0, gzip header
// without name or time. The gzip stream is compressed in parallel blocks; level is 1..9. A dir
// that is a symlink packs the directory it names; inside it, nothing is followed (PackRoot).
func PackDir(ctx context.Context, dir, name string, w io.Writer, level int, progress func(int64)) (PackStats, error) {
	if real, err := filepath.EvalSymlinks(dir); err == nil {
		dir = real
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return PackStats{}, err
	}
	defer root.Close()
	return PackRoot(ctx, root, name, w, level, progress)
}

// PackRoot is PackDir for the directory open as root: every read goes through it, symlinks are
// stored as links and never followed, so nothing outside the directory is read.
func PackRoot(ctx context.Context, root *os.Root, name string, w io.Writer, level int, progress func(int64)) (PackStats, error) {
	var st PackStats
	gz, err := pgzip.NewWriterLevel(w, level)
	if err != nil {
		return st, err
	}
	gz.ModTime = time.Unix(0, 0) // pgzip writes the zero time.Time as a non-zero stamp
	if err := gz.SetConcurrency(gzipBlockSize, max(2, 2*runtime.GOMAXPROCS(0))); err != nil {
		return st, err
	}
	th := sha256.New()
	cw := &countWriter{w: io.MultiWriter(gz, th), progress: progress}
	tw := tar.NewWriter(cw)
	buf := make([]byte, 256<<10)
	if err := packTree(ctx, tw, root, ".", name, buf, &st); err != nil {
		_ = gz.Close()
		return st, err
	}
	if err := tw.Close(); err != nil {
		_ = gz.Close()
		return st, err
	}
	if err := gz.Close(); err != nil {
		return st, err
	}
	st.TarDigest = digest.NewDigestFromEncoded(digest.SHA256, hex.EncodeToString(th.Sum(nil)))
	st.TarSize = cw.n
	return st, nil
}

var epoch = time.Unix(0, 0).UTC()

func packTree(ctx context.Context, tw *tar.Writer, root *os.Root, rel, name string, buf []byte, st *PackStats) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	fi, err := root.Lstat(rel)
	if err != nil {
		return err
	}
	hdr := &tar.Header{Name: name, Mode: tarMode(fi.Mode()), ModTime: epoch}
	switch {
	case fi.IsDir():
		hdr.Typeflag, hdr.Name = tar.TypeDir, name+"/"
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		entries, err := fs.ReadDir(root.FS(), rel) // sorted by name
		if err != nil {
			return err
		}
		for _, e := range entries {
			if err := packTree(ctx, tw, root, path.Join(rel, e.Name()), path.Join(name, e.Name()), buf, st); err != nil {
				return err
			}
		}
		return nil
	case fi.Mode().IsRegular(): // hard links are stored as regular files, as oras does
		hdr.Typeflag, hdr.Size = tar.TypeReg, fi.Size()
		f, err := root.OpenFile(rel, os.O_RDONLY|noFollow, 0)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		n, err := io.CopyBuffer(tw, io.LimitReader(f, fi.Size()), buf)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		if n != fi.Size() {
			return permanent(fmt.Errorf("%s changed size while it was packed", name))
		}
		st.Files++
		return nil
	case fi.Mode()&fs.ModeSymlink != 0:
		target, err := root.Readlink(rel)
		if err != nil {
			return err
		}
		hdr.Typeflag, hdr.Linkname = tar.TypeSymlink, target
		return tw.WriteHeader(hdr)
	default: // sockets, fifos, devices: not data
		st.Skipped = append(st.Skipped, name)
		return nil
	}
}

// tarMode keeps permission, setuid/setgid and sticky bits.
func tarMode(m fs.FileMode) int64 {
	mode := int64(m.Perm())
	if m&fs.ModeSetuid != 0 {
		mode |= 0o4000
	}
	if m&fs.ModeSetgid != 0 {
		mode |= 0o2000
	}
	if m&fs.ModeSticky != 0 {
		mode |= 0o1000
	}
	return mode
}

type countWriter struct {
	w        io.Writer
	n        int64
	progress func(int64)
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	if c.progress != nil {
		c.progress(c.n)
	}
	return n, err
}

// hashingWriter hashes and counts what passes through.
type hashingWriter struct {
	w io.Writer
	h hash.Hash
	n int64
}

func newHashingWriter(w io.Writer) *hashingWriter { return &hashingWriter{w: w, h: sha256.New()} }

func (h *hashingWriter) Write(p []byte) (int, error) {
	n, err := h.w.Write(p)
	h.h.Write(p[:n])
	h.n += int64(n)
	return n, err
}

func (h *hashingWriter) digest() digest.Digest {
	return digest.NewDigestFromEncoded(digest.SHA256, hex.EncodeToString(h.h.Sum(nil)))
}

// fileDigest hashes a whole file, opened by open.
func fileDigest(ctx context.Context, open func() (io.ReadCloser, error), progress func(int64)) (digest.Digest, int64, error) {
	f, err := open()
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	hw := newHashingWriter(io.Discard)
	cw := &countWriter{w: hw, progress: progress}
	if _, err := io.CopyBuffer(cw, &ctxReader{ctx, f}, make([]byte, 256<<10)); err != nil {
		return "", 0, err
	}
	return hw.digest(), hw.n, nil
}

type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c *ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

var errNotDirOrFile = errors.New("neither a regular file nor a directory")
