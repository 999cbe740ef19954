package injector

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	jsonpatch "github.com/evanphx/json-patch/v5"
	"golang.org/x/text/unicode/norm"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/coffer-dev/coffer/internal/agent"
)

var testCfg = Config{AgentImage: "ghcr.io/coffer-dev/coffer:test", Address: "https://coffer.coffer.svc:8200"}

// pod is a fixture builder: two app containers, the second without
// mounts, the first with the service-account token mount.
func pod(ann map[string]string) *corev1.Pod {
	return &corev1.Pod{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "team-a", Annotations: ann},
		Spec: corev1.PodSpec{
			Containers: []corev1.Container{
				{Name: "app", Image: "app", VolumeMounts: []corev1.VolumeMount{{Name: "kube-api-access", MountPath: saTokenDir, ReadOnly: true}}},
				{Name: "proxy", Image: "proxy"},
			},
			Volumes: []corev1.Volume{{Name: "kube-api-access"}},
		},
	}
}

func annotated(extra ...string) map[string]string {
	m := map[string]string{AnnInject: "true", AnnRole: "web", AnnSecret + "db": "secret/data/db"}
	for i := 0; i+1 < len(extra); i += 2 {
		m[extra[i]] = extra[i+1]
	}
	return m
}

// apply applies patch to p and returns the result.
func apply(t *testing.T, p *corev1.Pod, patch []byte) *corev1.Pod {
	t.Helper()
	orig, _ := json.Marshal(p)
	dec, err := jsonpatch.DecodePatch(patch)
	if err != nil {
		t.Fatalf("the patch is not RFC 6902: %v\n%s", err, patch)
	}
	b, err := dec.Apply(orig)
	if err != nil {
		t.Fatalf("apply: %v\n%s", err, patch)
	}
	var out corev1.Pod
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return &out
}

func TestMutateInjects(t *testing.T) {
	in := pod(annotated(AnnTemplate+"db", `{{ with secret "secret/data/db" }}{{ .Data.data.password }}{{ end }}`,
		AnnCommand+"db", "kill -HUP 1", AnnSecret+"api", "kv/api", AnnRequestsMem, "20Mi"))
	patch, err := Mutate(in, testCfg)
	if err != nil {
		t.Fatal(err)
	}
	var ops []map[string]any
	json.Unmarshal(patch, &ops)
	paths := map[string]string{}
	for _, op := range ops {
		paths[op["path"].(string)] = op["op"].(string)
	}
	for path, op := range map[string]string{
		"/metadata/annotations/coffer.dev~1agent-inject-status": "add",
		"/spec/initContainers":              "add",
		"/spec/containers/2":                "add",
		"/spec/containers/1/volumeMounts":   "add",
		"/spec/containers/0/volumeMounts/1": "add",
		"/spec/volumes/1":                   "add",
	} {
		if paths[path] != op {
			t.Errorf("patch lacks %s %s:\n%s", op, path, patch)
		}
	}
	out := apply(t, in, patch)
	if len(out.Spec.InitContainers) != 1 || out.Spec.InitContainers[0].Name != InitName || strings.Join(out.Spec.InitContainers[0].Args, " ") != "agent --once" {
		t.Errorf("init containers = %+v", out.Spec.InitContainers)
	}
	if len(out.Spec.Containers) != 3 || out.Spec.Containers[2].Name != SidecarName || strings.Join(out.Spec.Containers[2].Args, " ") != "agent" {
		t.Fatalf("containers = %+v", out.Spec.Containers)
	}
	v := out.Spec.Volumes[1]
	if v.Name != VolumeName || v.EmptyDir == nil || v.EmptyDir.Medium != corev1.StorageMediumMemory {
		t.Errorf("volume = %+v, want an emptyDir in memory", v)
	}
	for _, c := range append(out.Spec.Containers, out.Spec.InitContainers...) {
		found := false
		for _, m := range c.VolumeMounts {
			found = found || (m.Name == VolumeName && m.MountPath == MountPath)
		}
		if !found {
			t.Errorf("container %s lacks the %s mount", c.Name, MountPath)
		}
	}
	sc := out.Spec.Containers[2]
	if len(sc.VolumeMounts) != 2 || sc.VolumeMounts[1].MountPath != saTokenDir {
		t.Errorf("sidecar mounts = %+v, want the service-account token copied", sc.VolumeMounts)
	}
	if got := sc.Resources.Requests.Memory().String(); got != "20Mi" {
		t.Errorf("memory request = %s, want the annotation's 20Mi", got)
	}
	if got := sc.Resources.Limits.Cpu().String(); got != defaultCPULim {
		t.Errorf("cpu limit = %s, want default %s", got, defaultCPULim)
	}
	if sc.SecurityContext == nil || !*sc.SecurityContext.ReadOnlyRootFilesystem || *sc.SecurityContext.AllowPrivilegeEscalation {
		t.Errorf("security context = %+v", sc.SecurityContext)
	}
	if out.Annotations[AnnStatus] != StatusValue {
		t.Errorf("status annotation = %q", out.Annotations[AnnStatus])
	}
	// The configuration the agent will read.
	if len(sc.Env) != 1 || sc.Env[0].Name != agent.ConfigEnv {
		t.Fatalf("env = %+v", sc.Env)
	}
	src, _ := base64.StdEncoding.DecodeString(sc.Env[0].Value)
	cfg, err := agent.ParseConfig(src, "injected")
	if err != nil {
		t.Fatalf("the injected config does not parse: %v\n%s", err, src)
	}
	if cfg.Address != testCfg.Address || cfg.Method.Type != "kubernetes" || cfg.Method.Options["role"] != "web" || cfg.Method.MountPath != "auth/kubernetes" {
		t.Errorf("config = %+v method %+v", cfg, cfg.Method)
	}
	if len(cfg.Templates) != 2 || cfg.Templates[0].Destination != "/coffer/secrets/api" || cfg.Templates[1].Destination != "/coffer/secrets/db" {
		t.Fatalf("templates = %+v", cfg.Templates)
	}
	if cfg.Templates[1].Contents != in.Annotations[AnnTemplate+"db"] || cfg.Templates[1].Command != "kill -HUP 1" || cfg.Templates[1].Perms != 0o444 {
		t.Errorf("db template = %+v", cfg.Templates[1])
	}
	if !strings.Contains(cfg.Templates[0].Contents, `secret "kv/api"`) {
		t.Errorf("default template = %q", cfg.Templates[0].Contents)
	}

	// Idempotent: the injected pod is not injected again.
	if again, err := Mutate(out, testCfg); err != nil || again != nil {
		t.Errorf("second admission: patch %s, err %v; want none", again, err)
	}
}

func TestMutateLeavesAlone(t *testing.T) {
	for name, ann := range map[string]map[string]string{
		"no annotations":         nil,
		"other annotations":      {"team": "a", AnnRole: "web"},
		"inject is false":        {AnnInject: "false", AnnRole: "web"},
		"already injected":       annotated(AnnStatus, StatusValue),
		"inject is false, bad 2": {AnnInject: "0", AnnSecret + "../x": "y"},
	} {
		t.Run(name, func(t *testing.T) {
			if patch, err := Mutate(pod(ann), testCfg); err != nil || patch != nil {
				t.Errorf("Mutate = %s, %v; want no patch", patch, err)
			}
		})
	}
}

func TestMutatePrePopulateOnly(t *testing.T) {
	in := pod(annotated(AnnPrePopulateOnly, "true"))
	patch, err := Mutate(in, testCfg)
	if err != nil {
		t.Fatal(err)
	}
	out := apply(t, in, patch)
	if len(out.Spec.Containers) != 2 || len(out.Spec.InitContainers) != 1 {
		t.Errorf("containers %d init %d, want 2 and 1 (no sidecar)", len(out.Spec.Containers), len(out.Spec.InitContainers))
	}
}

func TestMutateRefuses(t *testing.T) {
	for name, tc := range map[string]struct {
		ann  map[string]string
		want string
	}{
		"inject is not a bool":    {annotated(AnnInject, "yes please"), "agent-inject must be"},
		"role missing":            {map[string]string{AnnInject: "true", AnnSecret + "db": "secret/data/db"}, "coffer.dev/role is required"},
		"no secret":               {map[string]string{AnnInject: "true", AnnRole: "web"}, "nothing to inject"},
		"file name escapes":       {annotated(AnnSecret+"..", "secret/data/x"), "not a valid file name"},
		"file name hidden":        {annotated(AnnSecret+".env", "secret/data/x"), "not a valid file name"},
		"empty path":              {annotated(AnnSecret+"x", " / "), "needs a secret path"},
		"path with a quote":       {annotated(AnnSecret+"x", `a"b`), "needs a secret path"},
		"template without secret": {annotated(AnnTemplate+"other", "x"), "has no matching"},
		"command without secret":  {annotated(AnnCommand+"other", "x"), "has no matching"},
		"template does not parse": {annotated(AnnTemplate+"db", "{{ with secret }"), "agent-inject-template-db"},
		"template unknown func":   {annotated(AnnTemplate+"db", `{{ vault "x" }}`), "agent-inject-template-db"},
		"bad perms":               {annotated(AnnPerms+"db", "rw-r--r--"), "octal"},
		"bad quantity":            {annotated(AnnLimitsMem, "lots"), "agent-limits-mem"},
		"negative quantity":       {annotated(AnnRequestsCPU, "-1"), "agent-requests-cpu"},
		"request above limit":     {annotated(AnnRequestsMem, "1Gi"), "exceeds its limit"},
		"service not a URL":       {annotated(AnnService, "coffer:8200"), "coffer.dev/service"},
		"pre-populate not a bool": {annotated(AnnPrePopulateOnly, "maybe"), "agent-pre-populate-only"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := Mutate(pod(tc.ann), testCfg)
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Mutate = %v, want ErrInvalid mentioning %q", err, tc.want)
			}
		})
	}
	p := pod(annotated())
	p.Spec.Containers[1].Name = SidecarName
	if _, err := Mutate(p, testCfg); !errors.Is(err, ErrInvalid) {
		t.Errorf("a pod with a container named %s: err = %v", SidecarName, err)
	}
}

// FuzzQuote: any annotation text survives HCL quoting and the agent's
// parser unchanged (up to NFC normalization).
func FuzzQuote(f *testing.F) {
	for _, s := range []string{`{{ with secret "a" }}${x}%{y}{{ end }}`, "a\nb\t\"c\\", "$${", "\x00\x7f"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if s == "" || !utf8Valid(s) {
			return
		}
		cfg, err := agent.ParseConfig([]byte("template {\n contents = "+quote(s)+"\n destination = \"/d\"\n}\n"), "f")
		if err != nil {
			t.Fatalf("quote(%q) does not parse: %v", s, err)
		}
		// HCL normalizes strings to Unicode NFC; nothing else may change.
		if cfg.Templates[0].Contents != norm.NFC.String(s) {
			t.Fatalf("round trip: %q became %q", s, cfg.Templates[0].Contents)
		}
	})
}

func utf8Valid(s string) bool { return strings.ToValidUTF8(s, "\uFFFD") == s }
