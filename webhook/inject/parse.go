package inject

import (
	"cmp"
	"fmt"
	"path"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/converged-computing/oras-cache/sidecar/contract"
)

// Bounds on what one pod may ask for, so that an admission costs little whatever the pod holds
// (the API server allows 256 KiB of annotations). Denials have their own bounds (deny.go).
const (
	// MaxAnnotations is the most annotations under Prefix a pod may carry (input-uri_<n> keys
	// included; a longer list of inputs goes in input-uri, comma-separated).
	MaxAnnotations = 256
	// MaxAnnotationBytes bounds the total size (keys and values) of the annotations under Prefix.
	MaxAnnotationBytes = 128 << 10
)

// Result is the outcome of Parse and of Mutate: exactly one of Skip, Denials or Plan is set
// (Mutate adds Patch to a Plan).
type Result struct {
	// Skip says why the pod is admitted unchanged.
	Skip string
	// Denials say why the pod is refused.
	Denials []*Denial
	// Plan is what the annotations ask for.
	Plan *Plan
	// Patch is the JSON patch that carries out Plan.
	Patch []Op
}

// Plan is what the annotations of an admitted pod ask for.
type Plan struct {
	// ContainerIndex is the index of the app container in plan.containers.
	ContainerIndex int
	Inputs         []Reference
	InputPath      string
	Output         *Reference
	OutputPath     string
	OutputPipe     string
	PushOnFailure  bool
	Unpack         bool
	Debug          bool
	// Registry is the registry annotation ("" = the cache).
	Registry string
	// OrasEnv is the Secret named by the oras-env annotation.
	OrasEnv string
	// Image is the sidecar image to use.
	Image string
}

type parser struct {
	cfg     *Config
	pod     *corev1.Pod
	ann     map[string]string
	denials []*Denial
	// dropped counts the denials beyond MaxDenials (not formatted: a pod with thousands of bad
	// entries costs no more than one with MaxDenials)
	dropped int
}

// Parse reads the oras-cache annotations of pod: a Skip when the pod is not for this webhook or
// is already injected (admit unchanged), Denials when it must be refused, otherwise the Plan.
func Parse(cfg *Config, pod *corev1.Pod) *Result {
	p := &parser{cfg: cfg, pod: pod, ann: map[string]string{}}
	var keys []string
	size := 0
	for k, v := range pod.Annotations {
		if strings.HasPrefix(k, Prefix) {
			p.ann[k] = v
			keys = append(keys, k)
			size += len(k) + len(v)
		}
	}
	if len(keys) == 0 {
		return &Result{Skip: "no " + Prefix + " annotations"}
	}
	if cache, ok := p.ann[AnnotationCache]; ok && strings.TrimSpace(cache) != "" && cache != cfg.CacheName {
		// the value is echoed into the response and the log: bounded like a denial
		return &Result{Skip: fmt.Sprintf("oras-cache %q is another cache (this webhook serves %q)", truncate(cache, 100), cfg.CacheName)}
	}
	// checked before any per-key work, so the cost of a denial does not grow with the pod
	if len(keys) > MaxAnnotations || size > MaxAnnotationBytes {
		p.deny("", ReasonTooLarge, "the pod has %d annotations under %s (%d bytes); at most %d annotations and %d bytes are accepted: list inputs in %s (comma-separated) instead of many %s<n> keys, and remove unknown keys", len(keys), Prefix, size, MaxAnnotations, MaxAnnotationBytes, AnnotationInputURI, AnnotationInputURIListPrefix)
		return p.denied()
	}
	slices.Sort(keys)
	if v, ok := p.ann[AnnotationStatus]; ok {
		if v == StatusInjected {
			return &Result{Skip: "already injected (" + AnnotationStatus + ": " + StatusInjected + ")"}
		}
		p.deny(AnnotationStatus, ReasonStatus, "is written by the webhook only (value %q); remove it", StatusInjected)
		return p.denied()
	}
	_, hasCache := p.ann[AnnotationCache]
	// unknown keys first: a typo in the switch itself shows up here too
	var inputKeys []string
	for _, k := range keys {
		if n, ok := strings.CutPrefix(k, AnnotationInputURIListPrefix); ok {
			inputKeys = append(inputKeys, k)
			if _, err := strconv.ParseUint(n, 10, 31); err != nil {
				p.deny(k, ReasonUnknownAnnotation, "the list form of input-uri is %s<n> with n a non-negative integer (e.g. %s1); %q is not a number", AnnotationInputURIListPrefix, AnnotationInputURIListPrefix, n)
			}
			continue
		}
		if slices.Contains(KnownAnnotations, k) {
			continue
		}
		if s := suggestAnnotation(k); s != "" {
			p.deny(k, ReasonUnknownAnnotation, "unknown annotation; did you mean %s?", s)
		} else {
			p.deny(k, ReasonUnknownAnnotation, "unknown annotation; the known ones are %s", strings.Join(shortKnown(), ", "))
		}
	}
	if !hasCache {
		var others []string
		for _, k := range keys {
			others = append(others, strings.TrimPrefix(k, Prefix))
		}
		p.deny(AnnotationCache, ReasonMissingCache, "missing: the pod has %s but not the switch; add %s: %q (the oras-cache release in this namespace) or remove them", strings.Join(others, ", "), AnnotationCache, cfg.CacheName)
		return p.denied()
	}
	for _, k := range keys {
		if strings.TrimSpace(p.ann[k]) != "" {
			continue
		}
		if k == AnnotationCache {
			// the matchConditions send an empty switch here so that the pod is not run without its data
			p.deny(k, ReasonEmptyValue, "empty value, so no cache would handle the pod and it would run without its inputs and outputs; set it to %q (the oras-cache release in this namespace) or remove the %s annotations", cfg.CacheName, Prefix)
			continue
		}
		p.deny(k, ReasonEmptyValue, "empty value; set a value or remove the annotation")
	}
	if len(p.denials) > 0 {
		return p.denied()
	}

	plan := &Plan{Unpack: true, Image: cfg.Sidecar.Image}
	plan.ContainerIndex = p.container()
	plan.PushOnFailure = p.boolean(AnnotationPushOnFailure, false)
	plan.Unpack = p.boolean(AnnotationUnpack, true)
	plan.Debug = p.boolean(AnnotationDebug, false)
	p.registry(plan)
	p.inputs(plan, inputKeys)
	p.outputs(plan)
	if v, ok := p.ann[AnnotationOrasContainer]; ok {
		if !cfg.Sidecar.AllowImageOverride {
			p.deny(AnnotationOrasContainer, ReasonImageOverride, "this cache does not allow choosing the sidecar image (chart value sidecar.allowImageOverride is false); remove the annotation")
		} else if err := validateImage(v); err != nil {
			p.deny(AnnotationOrasContainer, ReasonInvalidValue, "invalid image: %v", err)
		} else {
			plan.Image = v
		}
	}
	if len(plan.Inputs) == 0 && plan.Output == nil && len(p.denials) == 0 {
		p.deny(AnnotationCache, ReasonNothingToDo, "nothing to do: add %s and/or %s, or remove the annotation", AnnotationInputURI, AnnotationOutputURI)
	}
	p.reserved()
	if plan.ContainerIndex >= 0 {
		p.variables(plan)
	}
	if plan.Output != nil && (pod.Spec.RestartPolicy == corev1.RestartPolicyAlways || pod.Spec.RestartPolicy == "") {
		p.deny(AnnotationOutputURI, ReasonRestartPolicy, "needs a run-to-completion pod, but restartPolicy is Always (the push container would restart forever); set restartPolicy: Never or OnFailure (as in a Job)")
	}
	if len(p.denials) > 0 {
		return p.denied()
	}
	return &Result{Plan: plan}
}

func shortKnown() []string {
	var out []string
	for _, k := range KnownAnnotations {
		out = append(out, strings.TrimPrefix(k, Prefix))
	}
	return out
}

func containerNames(cs []corev1.Container) string {
	var names []string
	for _, c := range cs {
		names = append(names, c.Name)
	}
	return strings.Join(names, ", ")
}

// container returns the index of the app container, or -1 with a denial.
func (p *parser) container() int {
	cs := p.pod.Spec.Containers
	name, ok := p.ann[AnnotationContainer]
	if !ok {
		switch len(cs) {
		case 0:
			p.deny("", ReasonContainer, "the pod has no containers")
			return -1
		case 1:
			return 0
		default:
			p.deny(AnnotationContainer, ReasonContainer, "missing: the pod has %d containers (%s); name the app container to wrap", len(cs), containerNames(cs))
			return -1
		}
	}
	for i, c := range cs {
		if c.Name == name {
			return i
		}
	}
	for _, c := range p.pod.Spec.InitContainers {
		if c.Name == name {
			p.deny(AnnotationContainer, ReasonContainer, "%q is an init container; name one of the containers: %s", name, containerNames(cs))
			return -1
		}
	}
	p.deny(AnnotationContainer, ReasonContainer, "no container %q in the pod; the containers are: %s", name, containerNames(cs))
	return -1
}

func (p *parser) boolean(key string, def bool) bool {
	v, ok := p.ann[key]
	if !ok {
		return def
	}
	switch v {
	case "true":
		return true
	case "false":
		return false
	}
	p.deny(key, ReasonInvalidValue, "%q is not a boolean; use \"true\" or \"false\"", v)
	return def
}

func (p *parser) registry(plan *Plan) {
	if v, ok := p.ann[AnnotationRegistry]; ok {
		if err := validateHost(v); err != nil {
			p.deny(AnnotationRegistry, ReasonInvalidValue, "%v; write the registry as host[:port], e.g. ghcr.io or registry.example.com:5000", err)
		} else {
			plan.Registry = v
		}
	}
	if v, ok := p.ann[AnnotationOrasEnv]; ok {
		if errs := validation.IsDNS1123Subdomain(v); len(errs) > 0 {
			p.deny(AnnotationOrasEnv, ReasonInvalidValue, "%q is not a Secret name: %s", v, strings.Join(errs, "; "))
		} else if _, hasReg := p.ann[AnnotationRegistry]; !hasReg {
			p.deny(AnnotationOrasEnv, ReasonMissingPair, "gives credentials for %s, which is not set; add it or remove %s (the cache's own credentials are used for it)", AnnotationRegistry, AnnotationOrasEnv)
		} else {
			plan.OrasEnv = v
		}
	}
}

func (p *parser) reference(key, value string, output bool) (Reference, bool) {
	ref, err := ParseReference(value)
	ref.Annotation = key
	if err != nil {
		p.deny(key, ReasonInvalidReference, "%v; use repo:tag or repo@sha256:<digest> in the cache, or host[:port]/repo:tag", err)
		return ref, false
	}
	if output {
		if ref.Digest != "" {
			p.deny(key, ReasonInvalidReference, "%q: an output is pushed to a tag (its digest is only known after the push); write repo:tag", value)
			return ref, false
		}
		if ref.Tag == "" {
			p.deny(key, ReasonInvalidReference, "%q has no tag; write %s:<tag>, e.g. %s:latest", value, value, value)
			return ref, false
		}
	} else if ref.Tag == "" && ref.Digest == "" {
		p.deny(key, ReasonInvalidReference, "%q has no tag or digest; write %s:<tag> or %s@sha256:<digest>", value, value, value)
		return ref, false
	}
	return ref, true
}

func (p *parser) inputs(plan *Plan, listKeys []string) {
	var all []Reference
	if v, ok := p.ann[AnnotationInputURI]; ok {
		for i, part := range strings.Split(v, ",") {
			part = strings.TrimSpace(part)
			if part == "" {
				p.deny(AnnotationInputURI, ReasonEmptyValue, "entry %d of the comma-separated list is empty; remove the extra comma", i+1)
				continue
			}
			if ref, ok := p.reference(AnnotationInputURI, part, false); ok {
				all = append(all, ref)
			}
		}
	}
	type numbered struct {
		n   uint64
		key string
	}
	var list []numbered
	seenN := map[uint64]string{}
	for _, k := range listKeys {
		n, err := strconv.ParseUint(strings.TrimPrefix(k, AnnotationInputURIListPrefix), 10, 31)
		if err != nil {
			continue // denied already
		}
		if prev, dup := seenN[n]; dup {
			p.deny(k, ReasonDuplicateInput, "same position %d as %s; give each input-uri_<n> its own number", n, prev)
			continue
		}
		seenN[n] = k
		list = append(list, numbered{n, k})
	}
	slices.SortFunc(list, func(a, b numbered) int { return cmp.Compare(a.n, b.n) })
	for _, e := range list {
		v := strings.TrimSpace(p.ann[e.key])
		if strings.Contains(v, ",") {
			p.deny(e.key, ReasonInvalidReference, "holds one reference; use %s for a comma-separated list", AnnotationInputURI)
			continue
		}
		if ref, ok := p.reference(e.key, v, false); ok {
			all = append(all, ref)
		}
	}
	seen := map[string]string{}
	for _, ref := range all {
		canon := ref.Host + "/" + ref.Raw
		if ref.Host != "" {
			canon = ref.Raw
		}
		if prev, dup := seen[canon]; dup {
			p.deny(ref.Annotation, ReasonDuplicateInput, "%q is already an input (in %s); list each artifact once", ref.Raw, prev)
			continue
		}
		seen[canon] = ref.Annotation
		plan.Inputs = append(plan.Inputs, ref)
	}
	if v, ok := p.ann[AnnotationInputPath]; ok {
		if p.path(AnnotationInputPath, v, true) {
			plan.InputPath = v
		}
		if _, has := p.ann[AnnotationInputURI]; !has && len(listKeys) == 0 {
			p.deny(AnnotationInputPath, ReasonMissingPair, "has no effect without %s; add the inputs or remove it", AnnotationInputURI)
		}
	}
	if _, ok := p.ann[AnnotationUnpack]; ok {
		if _, has := p.ann[AnnotationInputURI]; !has && len(listKeys) == 0 {
			p.deny(AnnotationUnpack, ReasonMissingPair, "has no effect without %s; add the inputs or remove it", AnnotationInputURI)
		}
	}
}

func (p *parser) outputs(plan *Plan) {
	uri, hasURI := p.ann[AnnotationOutputURI]
	out, hasPath := p.ann[AnnotationOutputPath]
	if hasURI {
		if ref, ok := p.reference(AnnotationOutputURI, strings.TrimSpace(uri), true); ok {
			plan.Output = &ref
		}
		if !hasPath {
			p.deny(AnnotationOutputPath, ReasonMissingPair, "missing: %s needs the file or directory to push; add %s (absolute, or relative to the container's workingDir)", AnnotationOutputURI, AnnotationOutputPath)
		}
	}
	if hasPath {
		if p.path(AnnotationOutputPath, out, false) {
			plan.OutputPath = out
		}
		if !hasURI {
			p.deny(AnnotationOutputPath, ReasonMissingPair, "has no effect without %s; add where to push it (repo:tag) or remove it", AnnotationOutputURI)
		}
	}
	if v, ok := p.ann[AnnotationOutputPipe]; ok {
		if p.path(AnnotationOutputPipe, v, false) {
			plan.OutputPipe = v
		}
		if !hasURI {
			p.deny(AnnotationOutputPipe, ReasonMissingPair, "has no effect without %s and %s; add them (e.g. push the pipe file itself) or remove it", AnnotationOutputURI, AnnotationOutputPath)
		}
	}
	if _, ok := p.ann[AnnotationPushOnFailure]; ok && !hasURI {
		p.deny(AnnotationPushOnFailure, ReasonMissingPair, "has no effect without %s; add it or remove %s", AnnotationOutputURI, AnnotationPushOnFailure)
	}
}

// path validates a path annotation; absolute requires an absolute path.
func (p *parser) path(key, v string, absolute bool) bool {
	for _, r := range v {
		if r < ' ' || r == 0x7f {
			p.deny(key, ReasonInvalidPath, "%q contains a control character", v)
			return false
		}
	}
	if _, _, err := findVars(v, varPlaceholder); err != nil {
		p.deny(key, ReasonInvalidPath, "%v", err)
		return false
	}
	if absolute && !strings.HasPrefix(v, "/") {
		p.deny(key, ReasonInvalidPath, "%q is relative; write an absolute path such as /data", v)
		return false
	}
	for _, c := range strings.Split(v, "/") {
		if c == ".." {
			p.deny(key, ReasonInvalidPath, "%q contains '..'; write the path without it", v)
			return false
		}
	}
	clean := path.Clean(v)
	if clean == contract.MountPath || strings.HasPrefix(clean, contract.MountPath+"/") {
		p.deny(key, ReasonReservedName, "%q is inside %s, which oras-cache reserves; choose another directory", v, contract.MountPath)
		return false
	}
	return true
}

// reserved denies pods already using the names the mutation adds.
func (p *parser) reserved() {
	s := &p.pod.Spec
	for _, v := range s.Volumes {
		if v.Name == VolumeName {
			p.deny("", ReasonReservedName, "the pod already has a volume named %q, which oras-cache reserves; rename it", VolumeName)
		}
	}
	check := func(kind string, name string, mounts []corev1.VolumeMount, devices []corev1.VolumeDevice) {
		if name == InitContainerName || name == PushContainerName {
			p.deny("", ReasonReservedName, "the pod already has %s %q, a name oras-cache reserves; rename it", kind, name)
		}
		// the mutation adds the volume, which would make a mount of it by name (at any path) valid:
		// only oras-cache's own containers may see the share (inputs, outputs, the push records)
		mountsShare := slices.ContainsFunc(mounts, func(m corev1.VolumeMount) bool { return m.Name == VolumeName }) ||
			slices.ContainsFunc(devices, func(d corev1.VolumeDevice) bool { return d.Name == VolumeName })
		if mountsShare {
			p.deny("", ReasonReservedName, "%s %q mounts the volume %q, which only oras-cache's own containers may mount; remove that volume mount (the app container gets its inputs in %s and gives its output through %s)", kind, name, VolumeName, AnnotationInputPath, AnnotationOutputPath)
		}
		for _, m := range mounts {
			clean := path.Clean(m.MountPath)
			if clean == contract.MountPath || strings.HasPrefix(clean, contract.MountPath+"/") {
				p.deny("", ReasonReservedName, "%s %q mounts %s, a path oras-cache reserves; mount elsewhere", kind, name, m.MountPath)
			}
		}
	}
	for _, c := range s.InitContainers {
		check("init container", c.Name, c.VolumeMounts, c.VolumeDevices)
	}
	for _, c := range s.Containers {
		check("container", c.Name, c.VolumeMounts, c.VolumeDevices)
	}
	for _, c := range s.EphemeralContainers {
		check("ephemeral container", c.Name, c.VolumeMounts, c.VolumeDevices)
	}
}

// variables checks that every $(VAR) is defined in the app container.
func (p *parser) variables(plan *Plan) {
	c := &p.pod.Spec.Containers[plan.ContainerIndex]
	defined := map[string]bool{}
	for _, e := range c.Env {
		defined[e.Name] = true
	}
	check := func(key string, vars []string) {
		for _, v := range vars {
			if !defined[v] && len(c.EnvFrom) == 0 {
				p.deny(key, ReasonUndefinedVar, "$(%s) is not defined in container %q; add it to the container's env (e.g. {name: %s, value: ...}) or remove it", v, c.Name, v)
			}
		}
	}
	for _, in := range plan.Inputs {
		check(in.Annotation, in.Vars)
	}
	if plan.Output != nil {
		check(plan.Output.Annotation, plan.Output.Vars)
	}
	for _, kv := range [][2]string{{AnnotationInputPath, plan.InputPath}, {AnnotationOutputPath, plan.OutputPath}, {AnnotationOutputPipe, plan.OutputPipe}} {
		vars, _, _ := findVars(kv[1], varPlaceholder)
		check(kv[0], vars)
	}
}
