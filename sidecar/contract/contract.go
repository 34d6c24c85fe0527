// Package contract is the interface between the webhook, which writes pod specs, and the
// sidecar binary, which runs in them: the shared volume's layout, the ORAS_CACHE_* environment,
// the command line of each role, the done.json and termination-message formats and the rule that
// decides whether a reference names its registry. Both sides compile this one package, so a
// rename on one side is a rename on the other (docs/design.md, "What the mutation does").
//
// It imports the standard library only: the sidecar must stay free of Kubernetes dependencies.
package contract

import (
	"path/filepath"
	"strconv"
	"strings"
)

const (
	// MountPath is where the webhook mounts the shared volume in every container involved, and
	// the default --share of every role.
	MountPath = "/oras-cache"
	// SidecarBinary is the path of oras-cache-sidecar in the sidecar image.
	SidecarBinary = "/usr/local/bin/" + BinaryName
	// BinaryName is the file name of the sidecar binary, also under the share's bin/.
	BinaryName = "oras-cache-sidecar"
)

// Share is the shared volume's root directory as one container sees it:
//
//	bin/oras-cache-sidecar  the launcher, copied by init for the app container (mode 0755 dir)
//	inputs/<i>/             input i, pulled by init
//	outputs/<name>          what the launcher copied out of the app container, pushed by push
//	run/                    the hand-over between launcher and push (sidecar/marker)
type Share string

// Subdirectories of the share, in the order init creates them.
const (
	BinDir     = "bin"
	InputsDir  = "inputs"
	OutputsDir = "outputs"
	RunDir     = "run"
)

// Dirs lists the subdirectories init creates.
var Dirs = []string{BinDir, InputsDir, OutputsDir, RunDir}

// Dir is the subdirectory d (one of Dirs) of the share.
func (s Share) Dir(d string) string { return filepath.Join(string(s), d) }

// Launcher is where init installs the sidecar binary for the app container.
func (s Share) Launcher() string { return filepath.Join(string(s), BinDir, BinaryName) }

// Input is the directory of input i (0-based, in annotation order).
func (s Share) Input(i int) string { return filepath.Join(string(s), InputsDir, strconv.Itoa(i)) }

// Output is the path of the output named name (an entry of Done.Outputs).
func (s Share) Output(name string) string { return filepath.Join(string(s), OutputsDir, name) }

// LauncherPath is the launcher as the app container sees it: the webhook writes it as the
// container's command.
var LauncherPath = Share(MountPath).Launcher()

// SplitHost splits the registry host off a reference: the first '/'-separated component is a
// host when it contains '.' or ':' or is "localhost" (docker's rule, so "library/x" is a
// repository and "localhost/x" is not). host is "" for a reference relative to the default
// registry; rest is then ref itself.
func SplitHost(ref string) (host, rest string) {
	first, after, ok := strings.Cut(ref, "/")
	if ok && (strings.ContainsAny(first, ".:") || first == "localhost") {
		return first, after
	}
	return "", ref
}
