// Command imagebuild writes a single-layer OCI image layout, reproducibly: the same inputs
// always give the same layer, config and manifest digests (entries sorted, uid/gid 0, a fixed
// mtime, no build timestamps). Used by ci/images.sh for the images of the local test cluster;
// the layout imports into containerd with `ctr images import` and copies to a registry with
// `oras cp --from-oci-layout`.
//
//	imagebuild -layout DIR -name REF [-entrypoint ARG]... [-cmd ARG]... [-env K=V]... [-user U]
//	  [-workdir D] [-label K=V]... [-file SRC=DEST[:MODE]]... [-dir DEST[:MODE]]...
//	  [-symlink DEST=TARGET]...
//
// It prints the manifest digest on stdout.
package main

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// epoch is the mtime of every layer entry and the config's created time.
var epoch = time.Unix(0, 0).UTC()

type list []string

func (l *list) String() string     { return strings.Join(*l, " ") }
func (l *list) Set(v string) error { *l = append(*l, v); return nil }

type entry struct {
	name   string // absolute path in the image, cleaned
	kind   byte   // tar.TypeReg, tar.TypeDir, tar.TypeSymlink
	mode   int64
	src    string // host file for regular files
	target string // symlink target
}

type descriptor struct {
	MediaType   string            `json:"mediaType"`
	Digest      string            `json:"digest"`
	Size        int64             `json:"size"`
	Annotations map[string]string `json:"annotations,omitempty"`
	Platform    *platform         `json:"platform,omitempty"`
}

type platform struct {
	Architecture string `json:"architecture"`
	OS           string `json:"os"`
}

type imageConfig struct {
	User         string              `json:"User,omitempty"`
	ExposedPorts map[string]struct{} `json:"ExposedPorts,omitempty"`
	Env          []string            `json:"Env,omitempty"`
	Entrypoint   []string            `json:"Entrypoint,omitempty"`
	Cmd          []string            `json:"Cmd,omitempty"`
	WorkingDir   string              `json:"WorkingDir,omitempty"`
	Labels       map[string]string   `json:"Labels,omitempty"`
}

func main() {
	var (
		layout, name, user, workdir                             string
		entrypoint, cmd, env, labels, files, dirs, links, ports list
	)
	flag.StringVar(&layout, "layout", "", "output OCI image layout directory (replaced)")
	flag.StringVar(&name, "name", "", "image reference, e.g. docker.io/library/registry:3")
	flag.StringVar(&user, "user", "", "config User (e.g. 65532:65532)")
	flag.StringVar(&workdir, "workdir", "", "config WorkingDir")
	flag.Var(&entrypoint, "entrypoint", "one Entrypoint element (repeat)")
	flag.Var(&cmd, "cmd", "one Cmd element (repeat)")
	flag.Var(&env, "env", "K=V (repeat)")
	flag.Var(&labels, "label", "K=V (repeat)")
	flag.Var(&ports, "expose", "PORT/PROTO (repeat)")
	flag.Var(&files, "file", "SRC=DEST[:MODE] regular file (repeat; MODE octal, default 0755)")
	flag.Var(&dirs, "dir", "DEST[:MODE] directory (repeat; default 0755)")
	flag.Var(&links, "symlink", "DEST=TARGET symbolic link (repeat)")
	flag.Parse()
	if layout == "" || name == "" || flag.NArg() != 0 {
		flag.Usage()
		os.Exit(2)
	}
	cfg := imageConfig{User: user, Env: env, Entrypoint: entrypoint, Cmd: cmd, WorkingDir: workdir}
	if len(labels) > 0 {
		cfg.Labels = map[string]string{}
		for _, l := range labels {
			k, v, _ := strings.Cut(l, "=")
			cfg.Labels[k] = v
		}
	}
	if len(ports) > 0 {
		cfg.ExposedPorts = map[string]struct{}{}
		for _, p := range ports {
			cfg.ExposedPorts[p] = struct{}{}
		}
	}
	entries, err := parseEntries(files, dirs, links)
	if err == nil {
		var digest string
		digest, err = build(layout, name, cfg, entries)
		if err == nil {
			fmt.Println(digest)
			return
		}
	}
	fmt.Fprintln(os.Stderr, "imagebuild:", err)
	os.Exit(1)
}

func parseMode(s string, def int64) (string, int64, error) {
	p, m, ok := strings.Cut(s, ":")
	if !ok {
		return p, def, nil
	}
	mode, err := strconv.ParseInt(m, 8, 64)
	if err != nil {
		return "", 0, fmt.Errorf("bad mode in %q: %w", s, err)
	}
	return p, mode, nil
}

func clean(p string) (string, error) {
	if !strings.HasPrefix(p, "/") {
		return "", fmt.Errorf("image path %q must be absolute", p)
	}
	c := path.Clean(p)
	if c == "/" {
		return "", errors.New("image path / is implicit")
	}
	return c, nil
}

func parseEntries(files, dirs, links list) (map[string]entry, error) {
	out := map[string]entry{}
	add := func(e entry) error {
		if old, ok := out[e.name]; ok && !(old.kind == tar.TypeDir && e.kind == tar.TypeDir) {
			return fmt.Errorf("duplicate image path %s", e.name)
		}
		out[e.name] = e
		return nil
	}
	for _, f := range files {
		src, rest, ok := strings.Cut(f, "=")
		if !ok {
			return nil, fmt.Errorf("-file %q: want SRC=DEST[:MODE]", f)
		}
		dest, mode, err := parseMode(rest, 0o755)
		if err != nil {
			return nil, err
		}
		if dest, err = clean(dest); err != nil {
			return nil, err
		}
		if st, err := os.Stat(src); err != nil {
			return nil, err
		} else if !st.Mode().IsRegular() {
			return nil, fmt.Errorf("%s is not a regular file", src)
		}
		if err := add(entry{name: dest, kind: tar.TypeReg, mode: mode, src: src}); err != nil {
			return nil, err
		}
	}
	for _, d := range dirs {
		dest, mode, err := parseMode(d, 0o755)
		if err != nil {
			return nil, err
		}
		if dest, err = clean(dest); err != nil {
			return nil, err
		}
		if err := add(entry{name: dest, kind: tar.TypeDir, mode: mode}); err != nil {
			return nil, err
		}
	}
	for _, l := range links {
		dest, target, ok := strings.Cut(l, "=")
		if !ok || target == "" {
			return nil, fmt.Errorf("-symlink %q: want DEST=TARGET", l)
		}
		dest, err := clean(dest)
		if err != nil {
			return nil, err
		}
		if err := add(entry{name: dest, kind: tar.TypeSymlink, mode: 0o777, target: target}); err != nil {
			return nil, err
		}
	}
	// Every parent directory is an explicit entry (0755 unless given).
	for n := range out {
		for d := path.Dir(n); d != "/"; d = path.Dir(d) {
			if _, ok := out[d]; !ok {
				out[d] = entry{name: d, kind: tar.TypeDir, mode: 0o755}
			} else if out[d].kind != tar.TypeDir {
				return nil, fmt.Errorf("%s is used as a directory and as a file", d)
			}
		}
	}
	return out, nil
}

// layerTar writes the layer: entries in lexical order of their paths (parents sort first).
func layerTar(w io.Writer, entries map[string]entry) error {
	names := make([]string, 0, len(entries))
	for n := range entries {
		names = append(names, n)
	}
	sort.Strings(names)
	tw := tar.NewWriter(w)
	for _, n := range names {
		e := entries[n]
		hdr := &tar.Header{
			Typeflag: e.kind, Name: strings.TrimPrefix(n, "/"), Mode: e.mode,
			ModTime: epoch, Uid: 0, Gid: 0, Format: tar.FormatPAX,
		}
		switch e.kind {
		case tar.TypeDir:
			hdr.Name += "/"
		case tar.TypeSymlink:
			hdr.Linkname = e.target
		case tar.TypeReg:
			data, err := os.ReadFile(e.src)
			if err != nil {
				return err
			}
			hdr.Size = int64(len(data))
			if err := tw.WriteHeader(hdr); err != nil {
				return err
			}
			if _, err := tw.Write(data); err != nil {
				return err
			}
			continue
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
	}
	return tw.Close()
}

func writeBlob(layout string, data []byte) (string, error) {
	sum := sha256.Sum256(data)
	hexd := hex.EncodeToString(sum[:])
	if err := os.WriteFile(filepath.Join(layout, "blobs", "sha256", hexd), data, 0o644); err != nil {
		return "", err
	}
	return "sha256:" + hexd, nil
}

func build(layout, name string, cfg imageConfig, entries map[string]entry) (string, error) {
	var layer bytes.Buffer
	if err := layerTar(&layer, entries); err != nil {
		return "", err
	}
	tmp := layout + ".tmp"
	if err := os.RemoveAll(tmp); err != nil {
		return "", err
	}
	if err := os.MkdirAll(filepath.Join(tmp, "blobs", "sha256"), 0o755); err != nil {
		return "", err
	}
	layerDigest, err := writeBlob(tmp, layer.Bytes())
	if err != nil {
		return "", err
	}
	config := map[string]any{
		"created":      epoch.Format(time.RFC3339),
		"architecture": "amd64",
		"os":           "linux",
		"config":       cfg,
		"rootfs":       map[string]any{"type": "layers", "diff_ids": []string{layerDigest}},
		"history":      []map[string]any{{"created": epoch.Format(time.RFC3339), "created_by": "oras-cache ci/imagebuild"}},
	}
	configJSON, err := json.Marshal(config)
	if err != nil {
		return "", err
	}
	configDigest, err := writeBlob(tmp, configJSON)
	if err != nil {
		return "", err
	}
	manifest := map[string]any{
		"schemaVersion": 2,
		"mediaType":     ocispec.MediaTypeImageManifest,
		"config":        descriptor{MediaType: ocispec.MediaTypeImageConfig, Digest: configDigest, Size: int64(len(configJSON))},
		"layers":        []descriptor{{MediaType: ocispec.MediaTypeImageLayer, Digest: layerDigest, Size: int64(layer.Len())}},
	}
	manifestJSON, err := json.Marshal(manifest)
	if err != nil {
		return "", err
	}
	manifestDigest, err := writeBlob(tmp, manifestJSON)
	if err != nil {
		return "", err
	}
	tag := name[strings.LastIndex(name, ":")+1:]
	if strings.Contains(tag, "/") || !strings.Contains(name, ":") {
		return "", fmt.Errorf("image name %q needs a tag", name)
	}
	index := map[string]any{
		"schemaVersion": 2,
		"mediaType":     ocispec.MediaTypeImageIndex,
		"manifests": []descriptor{{
			MediaType: ocispec.MediaTypeImageManifest, Digest: manifestDigest, Size: int64(len(manifestJSON)),
			Annotations: map[string]string{"io.containerd.image.name": name, ocispec.AnnotationRefName: tag},
			Platform:    &platform{Architecture: "amd64", OS: "linux"},
		}},
	}
	indexJSON, err := json.Marshal(index)
	if err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(tmp, "index.json"), indexJSON, 0o644); err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(tmp, "oci-layout"), []byte(`{"imageLayoutVersion":"`+ocispec.ImageLayoutVersion+`"}`), 0o644); err != nil {
		return "", err
	}
	if err := os.RemoveAll(layout); err != nil {
		return "", err
	}
	return manifestDigest, os.Rename(tmp, layout)
}
