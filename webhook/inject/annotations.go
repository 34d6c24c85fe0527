// Package inject holds the pod annotation contract of oras-cache, its validation (denials that
// name the annotation and the fix) and the pod mutation, expressed as a JSON patch of add/replace
// operations on the paths oras-cache owns.
package inject

// Prefix is the common prefix of every oras-cache pod annotation.
const Prefix = "oras.converged-computing.github.io/"

// The pod annotations. Each constant is the full key; the README table lists the same keys.
const (
	// AnnotationCache is the switch: the name of the cache (the Helm release) in this namespace
	// that should handle the pod. A webhook ignores pods naming another release.
	AnnotationCache = Prefix + "oras-cache"

	// AnnotationContainer names the app container to wrap. Required when the pod has more than
	// one container.
	AnnotationContainer = Prefix + "container"

	// AnnotationInputURI lists the artifacts to pull before the app starts, separated by commas:
	// "repo:tag" or "repo@sha256:…" in the cache (or in AnnotationRegistry), or a full reference
	// "host[:port]/repo:tag". References may use the target container's env as $(VAR).
	AnnotationInputURI = Prefix + "input-uri"

	// AnnotationInputURIListPrefix is the list form of AnnotationInputURI kept from the seed
	// prototype: "input-uri_<n>", one reference each, ordered by n numerically, after the
	// entries of AnnotationInputURI.
	AnnotationInputURIListPrefix = Prefix + "input-uri_"

	// AnnotationInputPath is the absolute directory where inputs appear in the app container.
	// Default: the container's workingDir.
	AnnotationInputPath = Prefix + "input-path"

	// AnnotationOutputURI is where to push the output after the app exits (same reference forms
	// as AnnotationInputURI, with a tag).
	AnnotationOutputURI = Prefix + "output-uri"

	// AnnotationOutputPath is the file or directory to push (absolute, or relative to the
	// container's workingDir). Required with AnnotationOutputURI.
	AnnotationOutputPath = Prefix + "output-path"

	// AnnotationOutputPipe also writes the app's stdout to this file so it can be pushed.
	AnnotationOutputPipe = Prefix + "output-pipe"

	// AnnotationPushOnFailure "true" pushes the output even when the app exits non-zero.
	// Default "false".
	AnnotationPushOnFailure = Prefix + "push-on-failure"

	// AnnotationRegistry is another registry host[:port] for relative references, instead of
	// this cache.
	AnnotationRegistry = Prefix + "registry"

	// AnnotationOrasEnv names a Secret in the pod's namespace holding credentials for
	// AnnotationRegistry under the keys "username" and "password".
	AnnotationOrasEnv = Prefix + "oras-env"

	// AnnotationUnpack "false" keeps pulled directories as their tar+gzip blob. Default "true".
	AnnotationUnpack = Prefix + "unpack"

	// AnnotationOrasContainer overrides the sidecar image; honoured only when the chart allows
	// it (sidecar.allowImageOverride).
	AnnotationOrasContainer = Prefix + "oras-container"

	// AnnotationDebug "true" turns on verbose logs in the injected containers.
	AnnotationDebug = Prefix + "debug"

	// AnnotationStatus is written by the webhook (value StatusInjected), never by users. A pod
	// carrying it is admitted unchanged, which makes the mutation idempotent.
	AnnotationStatus = Prefix + "status"

	// StatusInjected is the value of AnnotationStatus after the mutation.
	StatusInjected = "injected"
)

// KnownAnnotations lists every annotation key a user may set (AnnotationInputURIListPrefix
// stands for its numbered keys), plus AnnotationStatus. Used for typo suggestions.
var KnownAnnotations = []string{
	AnnotationCache,
	AnnotationContainer,
	AnnotationInputURI,
	AnnotationInputURIListPrefix + "<n>",
	AnnotationInputPath,
	AnnotationOutputURI,
	AnnotationOutputPath,
	AnnotationOutputPipe,
	AnnotationPushOnFailure,
	AnnotationRegistry,
	AnnotationOrasEnv,
	AnnotationUnpack,
	AnnotationOrasContainer,
	AnnotationDebug,
	AnnotationStatus,
}

// Names reserved by the mutation; a pod already using one of them is denied. The volume is
// mounted at contract.MountPath.
const (
	// VolumeName is the emptyDir shared by the injected containers and the app container.
	VolumeName = "oras-cache"
	// InitContainerName is the init container that installs the launcher and pulls the inputs.
	InitContainerName = "oras-cache-init"
	// PushContainerName is the sidecar container that pushes the output after the app ends.
	PushContainerName = "oras-cache-push"
)

// SecretKeyUsername and SecretKeyPassword are the keys read from the auth Secret and from the
// Secret named by AnnotationOrasEnv (into contract.EnvUsername and contract.EnvPassword).
const (
	SecretKeyUsername = "username"
	SecretKeyPassword = "password"
)
