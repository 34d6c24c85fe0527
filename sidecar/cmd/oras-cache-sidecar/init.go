package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/converged-computing/oras-cache/sidecar/artifact"
	"github.com/converged-computing/oras-cache/sidecar/contract"
)

func cmdInit(args []string) int {
	a, err := contract.ParseInit(args)
	if err != nil {
		usageError(err)
		return exitUsage
	}
	share := a.Share
	log, client, _, err := setup(contract.RoleInit, a.Debug)
	if err != nil {
		log.Error("configuration", "error", err.Error())
		return exitFailed
	}
	for _, d := range contract.Dirs {
		p := share.Dir(d)
		if err := os.MkdirAll(p, 0o777); err != nil {
			log.Error("preparing the share", "error", err.Error())
			return exitFailed
		}
		mode := os.FileMode(0o777)
		if d == contract.BinDir {
			mode = 0o755
		}
		_ = os.Chmod(p, mode)
	}
	if err := copySelf(share.Launcher()); err != nil {
		log.Error("copying the launcher into the share", "error", err.Error())
		return exitFailed
	}
	ctx, cancel := signalContext()
	defer cancel()
	for i, ref := range a.Inputs {
		dest := share.Input(i)
		if err := os.RemoveAll(dest); err != nil { // left by an earlier attempt of this init container
			log.Error("preparing the input directory", "error", err.Error())
			return exitFailed
		}
		res, err := client.Pull(ctx, ref, dest, artifact.PullOptions{KeepArchives: a.KeepArchives, ReadableByAll: true})
		if err != nil {
			log.Error("input unavailable: the app will not start", "input", ref, "error", err.Error())
			// The last stderr line is the init container's termination message: one line, bounded,
			// whatever the registry answered.
			fmt.Fprintln(os.Stderr, artifact.SafeText(fmt.Sprintf("oras-cache init: input %s: %v", ref, err), artifact.MaxErrorText))
			return exitFailed
		}
		log.Info("input ready", "input", ref, "digest", res.Digest, "files", res.Files, "bytes", res.Bytes, "path", dest)
	}
	return exitOK
}

// copySelf installs this executable at dst with mode 0555 (temp file + rename).
func copySelf(dst string) error {
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	in, err := os.Open(exe)
	if err != nil {
		return err
	}
	defer in.Close()
	tmp, err := os.CreateTemp(filepath.Dir(dst), ".oras-cache-sidecar-*")
	if err != nil {
		return err
	}
	_, err = io.Copy(tmp, in)
	if err == nil {
		err = tmp.Chmod(0o555)
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), dst)
	}
	if err != nil {
		os.Remove(tmp.Name())
	}
	return err
}
