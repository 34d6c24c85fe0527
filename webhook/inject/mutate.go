package inject

import (
	"context"
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	sigsjson "sigs.k8s.io/json"

	"github.com/converged-computing/oras-cache/sidecar/contract"
)

// Op is one JSON patch operation (RFC 6902). The mutation produces only "add" and "replace"
// operations, on paths oras-cache owns.
type Op struct {
	Op    string `json:"op"`
	Path  string `json:"path"`
	Value any    `json:"value"`
}

// ImageResolver reads the ENTRYPOINT and CMD of an image from its registry, using the pod's
// imagePullSecrets (Secret names in namespace) when needed.
type ImageResolver interface {
	Command(ctx context.Context, image, namespace string, pullSecrets []string) (entrypoint, cmd []string, err error)
}

// Mutator turns an incoming pod into a patch, a denial or a no-op.
type Mutator struct {
	Config *Config
	// Images resolves ENTRYPOINT/CMD for app containers without a command; nil denies such pods.
	Images ImageResolver
}

// present tells whether a list field was in the incoming JSON: decoding leaves a slice nil when
// the field is absent or null and makes it non-nil (even empty) when the JSON has a list, which
// is exactly what decides between "add the list" and "append to the list".
func present[T any](list []T) bool { return list != nil }

// Mutate decides what to do with the pod JSON raw, created in namespace.
func (m *Mutator) Mutate(ctx context.Context, namespace string, raw []byte) (*Result, error) {
	var pod corev1.Pod
	if err := sigsjson.UnmarshalCaseSensitivePreserveInts(raw, &pod); err != nil {
		return nil, fmt.Errorf("decode pod: %w", err)
	}
	res := Parse(m.Config, &pod)
	if res.Plan == nil {
		return res, nil
	}
	app := &pod.Spec.Containers[res.Plan.ContainerIndex]
	command, args, setArgs, denial := m.appCommand(ctx, namespace, &pod, app)
	if denial != nil {
		return &Result{Denials: []*Denial{denial}}, nil
	}
	res.Patch = m.patch(&pod, res.Plan, command, args, setArgs)
	return res, nil
}

// appCommand returns the argv the launcher runs (before the container's args) and, when the
// image CMD stands in for missing args, the args to set.
func (m *Mutator) appCommand(ctx context.Context, namespace string, pod *corev1.Pod, c *corev1.Container) (command, args []string, setArgs bool, denial *Denial) {
	if len(c.Command) > 0 {
		return c.Command, nil, false, nil
	}
	fail := func(format string, a ...any) *Denial {
		return &Denial{Reason: ReasonEntrypointLookup, Message: fmt.Sprintf("container %q has no command: set command (and args) in the container to the program to run; oras-cache needs the ENTRYPOINT of image %q otherwise, but %s", c.Name, c.Image, fmt.Sprintf(format, a...))}
	}
	if m.Images == nil {
		return nil, nil, false, fail("image lookup is not configured")
	}
	var secrets []string
	for _, s := range pod.Spec.ImagePullSecrets {
		if s.Name != "" {
			secrets = append(secrets, s.Name)
		}
	}
	ep, cmd, err := m.Images.Command(ctx, c.Image, namespace, secrets)
	if err != nil {
		return nil, nil, false, fail("%v", err)
	}
	if len(ep) == 1 && ep[0] == "" {
		ep = nil
	}
	if len(ep) == 0 && len(c.Args) == 0 && len(cmd) == 0 {
		return nil, nil, false, fail("the image has neither ENTRYPOINT nor CMD")
	}
	command = escapeAll(ep)
	if len(c.Args) == 0 && len(cmd) > 0 {
		return command, escapeAll(cmd), true, nil
	}
	return command, nil, false, nil
}

// escapeAll protects strings from the image config against the kubelet's $(VAR) expansion:
// every '$' becomes "$$", which the kubelet turns back into '$'.
func escapeAll(in []string) []string {
	out := make([]string, len(in))
	for i, s := range in {
		out[i] = strings.ReplaceAll(s, "$", "$$")
	}
	return out
}

// pointerEscape escapes a JSON pointer token (RFC 6901).
func pointerEscape(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "~", "~0"), "/", "~1")
}

// appendOp adds value to the list at path, creating the list when the pod has none.
func appendOp(path string, exists bool, value any) Op {
	if exists {
		return Op{Op: "add", Path: path + "/-", Value: value}
	}
	return Op{Op: "add", Path: path, Value: []any{value}}
}

func setOp(path string, exists bool, value any) Op {
	if exists {
		return Op{Op: "replace", Path: path, Value: value}
	}
	return Op{Op: "add", Path: path, Value: value}
}

func (m *Mutator) patch(pod *corev1.Pod, plan *Plan, command, imageArgs []string, setArgs bool) []Op {
	i := plan.ContainerIndex
	app := &pod.Spec.Containers[i]
	cpath := fmt.Sprintf("/spec/containers/%d", i)
	mount := corev1.VolumeMount{Name: VolumeName, MountPath: contract.MountPath}

	ops := []Op{appendOp("/spec/volumes", present(pod.Spec.Volumes), corev1.Volume{
		Name:         VolumeName,
		VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{SizeLimit: &m.Config.Sidecar.shareSize}},
	})}

	// init container: install the launcher, pull the inputs
	initArgs := contract.InitArgs{Share: contract.MountPath, KeepArchives: !plan.Unpack, Debug: plan.Debug}
	var inVars []string
	for _, in := range plan.Inputs {
		initArgs.Inputs = append(initArgs.Inputs, in.Raw)
		inVars = append(inVars, in.Vars...)
	}
	initC := m.container(InitContainerName, plan, app, initArgs.Args(), inVars, plan.Inputs)
	initC.TerminationMessagePolicy = corev1.TerminationMessageFallbackToLogsOnError
	ops = append(ops, appendOp("/spec/initContainers", present(pod.Spec.InitContainers), initC))

	// app container: the launcher runs the original argv
	launch := append([]string{contract.LauncherPath}, contract.LaunchArgs{Share: contract.MountPath,
		InputPath: plan.InputPath, OutputPath: plan.OutputPath, OutputPipe: plan.OutputPipe,
		Debug: plan.Debug, Argv: command}.Args()...)
	ops = append(ops, setOp(cpath+"/command", present(app.Command), launch))
	if setArgs {
		ops = append(ops, setOp(cpath+"/args", present(app.Args), imageArgs))
	}
	ops = append(ops, appendOp(cpath+"/volumeMounts", present(app.VolumeMounts), mount))

	// push sidecar
	if plan.Output != nil {
		pushArgs := contract.PushArgs{Share: contract.MountPath, Output: plan.Output.Raw,
			PushOnFailure: plan.PushOnFailure, Debug: plan.Debug}.Args()
		push := m.container(PushContainerName, plan, app, pushArgs, plan.Output.Vars, []Reference{*plan.Output})
		ops = append(ops, Op{Op: "add", Path: "/spec/containers/-", Value: push})
	}

	ops = append(ops, Op{Op: "add", Path: "/metadata/annotations/" + pointerEscape(AnnotationStatus), Value: StatusInjected})
	return ops
}

// container builds an injected container running the sidecar binary for refs.
func (m *Mutator) container(name string, plan *Plan, app *corev1.Container, args, vars []string, refs []Reference) corev1.Container {
	cfg := m.Config
	env, envFrom := copyVars(app, vars)
	env = append(env, m.registryEnv(plan, refs)...)
	return corev1.Container{
		Name:                     name,
		Image:                    plan.Image,
		ImagePullPolicy:          cfg.Sidecar.ImagePullPolicy,
		Command:                  []string{contract.SidecarBinary},
		Args:                     args,
		EnvFrom:                  envFrom,
		Env:                      env,
		Resources:                *cfg.Sidecar.Resources.DeepCopy(),
		SecurityContext:          cfg.Sidecar.SecurityContext.DeepCopy(),
		VolumeMounts:             []corev1.VolumeMount{{Name: VolumeName, MountPath: contract.MountPath}},
		TerminationMessagePath:   corev1.TerminationMessagePathDefault,
		TerminationMessagePolicy: corev1.TerminationMessageReadFile,
	}
}

// registryEnv is the registry address, transport, credentials and deadline of a sidecar that
// pulls or pushes refs. Relative references resolve to ORAS_CACHE_REGISTRY: the cache, or the
// registry annotation's host. Its credentials (the cache's, or oras-env's) are given only to a
// container with a reference to that host, and the sidecar sends them to that host only; full
// references to any other host get none.
func (m *Mutator) registryEnv(plan *Plan, refs []Reference) []corev1.EnvVar {
	cfg := m.Config
	host, plain, secret := cfg.Registry.Host, cfg.Registry.PlainHTTP, cfg.Registry.AuthSecret
	if plan.Registry != "" {
		host, plain, secret = plan.Registry, cfg.plainHTTP(plan.Registry), plan.OrasEnv
	}
	if !slices.ContainsFunc(refs, func(r Reference) bool { return r.Host == "" || r.Host == host }) {
		secret = ""
	}
	env := []corev1.EnvVar{
		{Name: contract.EnvRegistry, Value: host},
		{Name: contract.EnvPlainHTTP, Value: fmt.Sprint(plain)},
	}
	if len(cfg.PlainHTTPRegistries) > 0 {
		env = append(env, corev1.EnvVar{Name: contract.EnvPlainHTTPRegistries, Value: strings.Join(cfg.PlainHTTPRegistries, ",")})
	}
	if secret != "" {
		ref := func(key string) *corev1.EnvVarSource {
			return &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
				LocalObjectReference: corev1.LocalObjectReference{Name: secret}, Key: key}}
		}
		env = append(env,
			corev1.EnvVar{Name: contract.EnvUsername, ValueFrom: ref(SecretKeyUsername)},
			corev1.EnvVar{Name: contract.EnvPassword, ValueFrom: ref(SecretKeyPassword)})
	}
	return append(env, corev1.EnvVar{Name: contract.EnvTimeout, Value: cfg.Sidecar.Timeout.Duration.String()})
}

// copyVars returns the app container's env entries the variables need (and those their values
// refer to), in their original order, and the container's envFrom when a variable is not in env.
func copyVars(app *corev1.Container, vars []string) ([]corev1.EnvVar, []corev1.EnvFromSource) {
	if len(vars) == 0 {
		return nil, nil
	}
	needed := map[string]bool{}
	for _, v := range vars {
		needed[v] = true
	}
	keep := make([]bool, len(app.Env))
	// an env value may only refer to entries before it: one backward pass closes the set
	for i := len(app.Env) - 1; i >= 0; i-- {
		e := app.Env[i]
		if !needed[e.Name] {
			continue
		}
		keep[i] = true
		if refs, _, err := findVars(e.Value, ""); err == nil {
			for _, r := range refs {
				needed[r] = true
			}
		}
	}
	defined := map[string]bool{}
	var env []corev1.EnvVar
	for i, e := range app.Env {
		defined[e.Name] = true
		if !keep[i] {
			continue
		}
		e = *e.DeepCopy()
		if e.ValueFrom != nil && e.ValueFrom.ResourceFieldRef != nil && e.ValueFrom.ResourceFieldRef.ContainerName == "" {
			// a resourceFieldRef without containerName means "this container": keep the app's
			e.ValueFrom.ResourceFieldRef.ContainerName = app.Name
		}
		env = append(env, e)
	}
	var envFrom []corev1.EnvFromSource
	for name := range needed {
		if !defined[name] {
			for _, f := range app.EnvFrom {
				envFrom = append(envFrom, *f.DeepCopy())
			}
			break
		}
	}
	return env, envFrom
}
