// Package injector is `coffer injector`: a mutating admission webhook
// that puts a coffer agent into annotated Pods, so their secrets arrive
// as files in a memory volume and never as a Kubernetes Secret.
//
// For a Pod annotated coffer.dev/agent-inject: "true" it adds an init
// container (`coffer agent --once`, so the files exist before the app
// starts), a sidecar that keeps them current (unless
// coffer.dev/agent-pre-populate-only is "true"), an emptyDir{medium:
// Memory} volume mounted at /coffer/secrets in every app container, and
// the agent's configuration, rendered from the annotations and passed
// base64-encoded in COFFER_AGENT_CONFIG. The Pod is then annotated
// coffer.dev/agent-inject-status: injected, so a second admission changes
// nothing. A Pod without the annotation is not touched; a Pod whose
// annotations are invalid is refused with a message naming the
// annotation.
//
// Mutate is a pure function of the Pod and the Config; Run serves it.
package injector

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"gomodules.xyz/jsonpatch/v2"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/coffer-dev/coffer/internal/agent"
)

// The annotations the injector reads and writes.
const (
	Prefix             = "coffer.dev/"
	AnnInject          = Prefix + "agent-inject"
	AnnStatus          = Prefix + "agent-inject-status"
	AnnRole            = Prefix + "role"
	AnnAuthPath        = Prefix + "auth-path"
	AnnService         = Prefix + "service"
	AnnPrePopulateOnly = Prefix + "agent-pre-populate-only"
	AnnSecret          = Prefix + "agent-inject-secret-"
	AnnTemplate        = Prefix + "agent-inject-template-"
	AnnCommand         = Prefix + "agent-inject-command-"
	AnnPerms           = Prefix + "agent-inject-perms-"
	AnnRequestsCPU     = Prefix + "agent-requests-cpu"
	AnnRequestsMem     = Prefix + "agent-requests-mem"
	AnnLimitsCPU       = Prefix + "agent-limits-cpu"
	AnnLimitsMem       = Prefix + "agent-limits-mem"
)

// Names and paths of what is injected.
const (
	VolumeName    = "coffer-secrets"
	MountPath     = "/coffer/secrets"
	InitName      = "coffer-agent-init"
	SidecarName   = "coffer-agent"
	StatusValue   = "injected"
	saTokenDir    = "/var/run/secrets/kubernetes.io/serviceaccount"
	defaultPerms  = "0444"
	agentUID      = 100
	defaultCPUReq = "5m"
	defaultMemReq = "16Mi"
	defaultCPULim = "100m"
	defaultMemLim = "64Mi"
)

// ErrInvalid wraps every refusal caused by the Pod's annotations; its
// message is the admission message.
var ErrInvalid = errors.New("invalid coffer annotations")

// Config is what Mutate needs besides the Pod.
type Config struct {
	// AgentImage runs the init container and the sidecar; its entrypoint
	// is the coffer binary. Required.
	AgentImage string
	// Address is the Coffer server the agents talk to, unless the Pod's
	// coffer.dev/service annotation names another. Required.
	Address string
	// CACert is a CA file path inside the agent image or the Pod; "":
	// the system pool.
	CACert string
}

var pathRE = regexp.MustCompile(`^[A-Za-z0-9/._:@=+-]+$`)

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$`)

// Mutate returns the JSON patch (RFC 6902) that injects the agent into
// pod, or nil when the pod is not annotated for injection or already
// injected. The error wraps ErrInvalid when an annotation is wrong.
func Mutate(pod *corev1.Pod, cfg Config) ([]byte, error) {
	ann := pod.Annotations
	v, ok := ann[AnnInject]
	if !ok {
		return nil, nil
	}
	inject, err := strconv.ParseBool(v)
	if err != nil {
		return nil, fmt.Errorf("%w: %s must be \"true\" or \"false\", not %q", ErrInvalid, AnnInject, v)
	}
	if !inject || ann[AnnStatus] == StatusValue {
		return nil, nil
	}
	if cfg.AgentImage == "" || cfg.Address == "" {
		return nil, errors.New("injector: AgentImage and Address are required")
	}
	hcl, err := agentConfig(ann, cfg)
	if err != nil {
		return nil, err
	}
	res, err := resources(ann)
	if err != nil {
		return nil, err
	}
	prePopulateOnly := false
	if v, ok := ann[AnnPrePopulateOnly]; ok {
		if prePopulateOnly, err = strconv.ParseBool(v); err != nil {
			return nil, fmt.Errorf("%w: %s must be \"true\" or \"false\", not %q", ErrInvalid, AnnPrePopulateOnly, v)
		}
	}
	for _, c := range pod.Spec.Containers {
		if c.Name == SidecarName || c.Name == InitName {
			return nil, fmt.Errorf("%w: the pod already has a container named %q", ErrInvalid, c.Name)
		}
	}
	for _, vol := range pod.Spec.Volumes {
		if vol.Name == VolumeName {
			return nil, fmt.Errorf("%w: the pod already has a volume named %q", ErrInvalid, VolumeName)
		}
	}

	out := pod.DeepCopy()
	mount := corev1.VolumeMount{Name: VolumeName, MountPath: MountPath}
	agentMounts := []corev1.VolumeMount{mount}
	// Containers added by a webhook do not get the service-account token
	// mount (its admission plugin ran before): copy it from an app
	// container.
	for _, c := range pod.Spec.Containers {
		for _, m := range c.VolumeMounts {
			if m.MountPath == saTokenDir {
				agentMounts = append(agentMounts, m)
				break
			}
		}
		if len(agentMounts) > 1 {
			break
		}
	}
	for i := range out.Spec.Containers {
		out.Spec.Containers[i].VolumeMounts = append(out.Spec.Containers[i].VolumeMounts, mount)
	}
	out.Spec.Volumes = append(out.Spec.Volumes, corev1.Volume{Name: VolumeName, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{Medium: corev1.StorageMediumMemory}}})
	env := []corev1.EnvVar{{Name: agent.ConfigEnv, Value: base64.StdEncoding.EncodeToString([]byte(hcl))}}
	container := func(name string, args ...string) corev1.Container {
		f, t := false, true
		uid := int64(agentUID)
		return corev1.Container{
			Name: name, Image: cfg.AgentImage, Args: args, Env: env,
			VolumeMounts: agentMounts, Resources: res,
			SecurityContext: &corev1.SecurityContext{
				RunAsUser: &uid, RunAsGroup: &uid, RunAsNonRoot: &t,
				AllowPrivilegeEscalation: &f, ReadOnlyRootFilesystem: &t,
				Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
			},
		}
	}
	out.Spec.InitContainers = append(out.Spec.InitContainers, container(InitName, "agent", "--once"))
	if !prePopulateOnly {
		out.Spec.Containers = append(out.Spec.Containers, container(SidecarName, "agent"))
	}
	if out.Annotations == nil {
		out.Annotations = map[string]string{}
	}
	out.Annotations[AnnStatus] = StatusValue

	before, err := json.Marshal(pod)
	if err != nil {
		return nil, fmt.Errorf("injector: %w", err)
	}
	after, err := json.Marshal(out)
	if err != nil {
		return nil, fmt.Errorf("injector: %w", err)
	}
	ops, err := jsonpatch.CreatePatch(before, after)
	if err != nil {
		return nil, fmt.Errorf("injector: %w", err)
	}
	sort.SliceStable(ops, func(i, j int) bool { return ops[i].Path < ops[j].Path })
	return json.Marshal(ops)
}

// resources reads the resource annotations, with small defaults: the
// agent idles at a few MiB and no measurable CPU (docs/agent.md).
func resources(ann map[string]string) (corev1.ResourceRequirements, error) {
	q := func(key, def string) (resource.Quantity, error) {
		v := ann[key]
		if v == "" {
			v = def
		}
		r, err := resource.ParseQuantity(v)
		if err != nil || r.Sign() <= 0 {
			return r, fmt.Errorf("%w: %s: %q is not a positive quantity", ErrInvalid, key, v)
		}
		return r, nil
	}
	var rr corev1.ResourceRequirements
	rr.Requests, rr.Limits = corev1.ResourceList{}, corev1.ResourceList{}
	for _, x := range []struct {
		list     corev1.ResourceList
		name     corev1.ResourceName
		key, def string
	}{
		{rr.Requests, corev1.ResourceCPU, AnnRequestsCPU, defaultCPUReq},
		{rr.Requests, corev1.ResourceMemory, AnnRequestsMem, defaultMemReq},
		{rr.Limits, corev1.ResourceCPU, AnnLimitsCPU, defaultCPULim},
		{rr.Limits, corev1.ResourceMemory, AnnLimitsMem, defaultMemLim},
	} {
		v, err := q(x.key, x.def)
		if err != nil {
			return rr, err
		}
		x.list[x.name] = v
	}
	for _, n := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		req, lim := rr.Requests[n], rr.Limits[n]
		if req.Cmp(lim) > 0 {
			return rr, fmt.Errorf("%w: the agent's %s request (%s) exceeds its limit (%s)", ErrInvalid, n, req.String(), lim.String())
		}
	}
	return rr, nil
}

// agentConfig renders the agent's HCL configuration from the
// annotations, and checks it parses back.
func agentConfig(ann map[string]string, cfg Config) (string, error) {
	role := ann[AnnRole]
	if role == "" {
		return "", fmt.Errorf("%w: %s is required", ErrInvalid, AnnRole)
	}
	addr := cfg.Address
	if s := ann[AnnService]; s != "" {
		if !strings.HasPrefix(s, "https://") && !strings.HasPrefix(s, "http://") {
			return "", fmt.Errorf("%w: %s must be an http(s) URL, not %q", ErrInvalid, AnnService, s)
		}
		addr = s
	}
	authPath := strings.Trim(ann[AnnAuthPath], "/")
	if authPath == "" {
		authPath = "auth/kubernetes"
	}
	var names []string
	for k, v := range ann {
		name, ok := strings.CutPrefix(k, AnnSecret)
		if !ok {
			continue
		}
		if !nameRE.MatchString(name) || name == "." || name == ".." {
			return "", fmt.Errorf("%w: %s: %q is not a valid file name", ErrInvalid, k, name)
		}
		if strings.Trim(v, "/ ") == "" || !pathRE.MatchString(strings.Trim(v, "/ ")) {
			return "", fmt.Errorf("%w: %s needs a secret path of letters, digits and / . _ - : @ = +", ErrInvalid, k)
		}
		names = append(names, name)
	}
	for k := range ann {
		for _, p := range []string{AnnTemplate, AnnCommand, AnnPerms} {
			if name, ok := strings.CutPrefix(k, p); ok {
				if _, ok := ann[AnnSecret+name]; !ok {
					return "", fmt.Errorf("%w: %s has no matching %s%s", ErrInvalid, k, AnnSecret, name)
				}
			}
		}
	}
	if len(names) == 0 {
		return "", fmt.Errorf("%w: no %s<name> annotation: nothing to inject", ErrInvalid, AnnSecret)
	}
	sort.Strings(names)
	var b strings.Builder
	fmt.Fprintf(&b, "coffer {\n  address = %s\n", quote(addr))
	if cfg.CACert != "" {
		fmt.Fprintf(&b, "  ca_cert = %s\n", quote(cfg.CACert))
	}
	fmt.Fprintf(&b, "}\nauto_auth {\n  method \"kubernetes\" {\n    mount_path = %s\n    config = { role = %s }\n  }\n}\n", quote(authPath), quote(role))
	for _, name := range names {
		path := strings.Trim(ann[AnnSecret+name], "/ ")
		text, ok := ann[AnnTemplate+name]
		if !ok {
			text = defaultTemplate(path)
		}
		if _, err := agent.ParseTemplate(name, text); err != nil {
			return "", fmt.Errorf("%w: %s%s: %v", ErrInvalid, AnnTemplate, name, err)
		}
		perms := ann[AnnPerms+name]
		if perms == "" {
			perms = defaultPerms
		}
		fmt.Fprintf(&b, "template {\n  destination = %s\n  contents    = %s\n  perms       = %s\n", quote(MountPath+"/"+name), quote(text), quote(perms))
		if c := ann[AnnCommand+name]; c != "" {
			fmt.Fprintf(&b, "  command     = %s\n", quote(c))
		}
		b.WriteString("}\n")
	}
	if _, err := agent.ParseConfig([]byte(b.String()), "injected"); err != nil {
		return "", fmt.Errorf("%w: %s", ErrInvalid, strings.TrimPrefix(err.Error(), agent.ErrConfig.Error()+": "))
	}
	return b.String(), nil
}

// defaultTemplate writes key=value lines: a KV v2 secret's data.data,
// else the response's data.
func defaultTemplate(path string) string {
	return `{{ with secret "` + path + `" }}{{ $d := .Data }}{{ if and (index .Data "data") (index .Data "metadata") }}{{ $d = .Data.data }}{{ end }}{{ range $k, $v := $d }}{{ $k }}={{ $v }}
{{ end }}{{ end }}`
}

// quote writes s as an HCL quoted string, escaping the template
// sequences ${ and %{ so the text arrives verbatim.
func quote(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		case c == '\n':
			b.WriteString(`\n`)
		case c == '\r':
			b.WriteString(`\r`)
		case c == '\t':
			b.WriteString(`\t`)
		case (c == '$' || c == '%') && i+1 < len(s) && s[i+1] == '{':
			b.WriteByte(c)
			b.WriteByte(c)
		case c < 0x20 || c == 0x7f:
			fmt.Fprintf(&b, `\u%04x`, c)
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte('"')
	return b.String()
}
