package operator

import (
	"context"
	"errors"
	"fmt"
	"net"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/coffer-dev/coffer/api"
	"github.com/coffer-dev/coffer/apis/coffer/v1alpha1"
	"github.com/coffer-dev/coffer/internal/agent"
)

func TestRefresh(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	synced := func(ago time.Duration, interval *metav1.Duration, ready bool) *v1alpha1.CofferSecret {
		cs := &v1alpha1.CofferSecret{ObjectMeta: metav1.ObjectMeta{Generation: 3, Labels: map[string]string{"a": "b"}}}
		cs.Spec.RefreshInterval = interval
		cs.Status.RefreshTime = metav1.NewTime(now.Add(-ago))
		cs.Status.SyncedResourceVersion = SyncedVersion(cs.ObjectMeta)
		st := metav1.ConditionTrue
		if !ready {
			st = metav1.ConditionFalse
		}
		cs.Status.Conditions = []metav1.Condition{{Type: ConditionReady, Status: st}}
		return cs
	}
	hour := &metav1.Duration{Duration: time.Hour}
	zero := &metav1.Duration{}
	changed := synced(time.Minute, hour, true)
	changed.Generation = 4
	relabelled := synced(time.Minute, hour, true)
	relabelled.Labels = map[string]string{"a": "c"}
	for name, tc := range map[string]struct {
		cs           *v1alpha1.CofferSecret
		forced, gone bool
		wantSync     bool
		wantAfter    time.Duration
	}{
		"never synced":                   {cs: &v1alpha1.CofferSecret{}, wantSync: true, wantAfter: time.Hour},
		"synced a minute ago":            {cs: synced(time.Minute, hour, true), wantAfter: 59 * time.Minute},
		"an event forces a sync":         {cs: synced(time.Minute, hour, true), forced: true, wantSync: true, wantAfter: time.Hour},
		"a missing target forces a sync": {cs: synced(time.Minute, hour, true), gone: true, wantSync: true, wantAfter: time.Hour},
		"the interval has passed":        {cs: synced(2*time.Hour, hour, true), wantSync: true, wantAfter: time.Hour},
		"the spec changed":               {cs: changed, wantSync: true, wantAfter: time.Hour},
		"the labels changed":             {cs: relabelled, wantSync: true, wantAfter: time.Hour},
		"the last sync failed":           {cs: synced(time.Minute, hour, false), wantSync: true, wantAfter: time.Hour},
		"interval 0 never polls":         {cs: synced(48*time.Hour, zero, true)},
		"unset interval defaults to 1h":  {cs: synced(30*time.Minute, nil, true), wantAfter: 30 * time.Minute},
	} {
		t.Run(name, func(t *testing.T) {
			sync, after := Refresh(tc.cs, now, tc.forced, tc.gone)
			if sync != tc.wantSync || after != tc.wantAfter {
				t.Errorf("Refresh = %v, %v; want %v, %v", sync, after, tc.wantSync, tc.wantAfter)
			}
		})
	}
}

func TestReason(t *testing.T) {
	for name, tc := range map[string]struct {
		err  error
		want string
	}{
		"nil is synced":        {nil, ReasonSynced},
		"sealed":               {fmt.Errorf("read: %w", &api.Error{StatusCode: 503, Errors: []string{"Vault is sealed"}}), ReasonSealed},
		"login refused":        {fmt.Errorf("%w: role x", ErrLoginRefused), ReasonLoginRefused},
		"unreachable":          {fmt.Errorf("cannot reach: %w", &net.OpError{Op: "dial", Err: errors.New("refused")}), ReasonUnreachable},
		"remote missing":       {ErrRemoteNotFound, ReasonRemoteNotFound},
		"policy denies a read": {&api.Error{StatusCode: 403}, ReasonPermissionDenied},
		"template":             {ErrTemplate, ReasonTemplateError},
		"store missing":        {errStoreNotFound, ReasonStoreNotFound},
		"anything else":        {errors.New("boom"), ReasonSyncError},
	} {
		t.Run(name, func(t *testing.T) {
			if got := Reason(tc.err); got != tc.want {
				t.Errorf("Reason(%v) = %q, want %q", tc.err, got, tc.want)
			}
		})
	}
}

func TestResolve(t *testing.T) {
	k8s := func(ns string) v1alpha1.StoreAuth {
		return v1alpha1.StoreAuth{Kubernetes: &v1alpha1.KubernetesAuth{Role: "r", ServiceAccountRef: v1alpha1.ServiceAccountSelector{Name: "sa", Namespace: ns}}}
	}
	spec := func(a v1alpha1.StoreAuth) v1alpha1.StoreSpec {
		return v1alpha1.StoreSpec{Server: "http://c:8200/", Auth: a}
	}
	for name, tc := range map[string]struct {
		st       storeRef
		ns       string
		wantNS   string
		complete bool
		wantErr  error
	}{
		"namespaced store uses its namespace":         {st: storeRef{Namespace: "team", Spec: spec(k8s(""))}, ns: "team", wantNS: "team", complete: true},
		"namespaced store may not name another":       {st: storeRef{Namespace: "team", Spec: spec(k8s("kube-system"))}, wantErr: ErrInvalidConfig},
		"cluster store with a namespace":              {st: storeRef{Spec: spec(k8s("ops"))}, ns: "team", wantNS: "ops", complete: true},
		"cluster store without one uses the secret's": {st: storeRef{Spec: spec(k8s(""))}, ns: "team", wantNS: "team", complete: true},
		"cluster store checked alone is incomplete":   {st: storeRef{Spec: spec(k8s(""))}, ns: ""},
		"no auth":   {st: storeRef{Spec: spec(v1alpha1.StoreAuth{})}, wantErr: ErrInvalidConfig},
		"no server": {st: storeRef{Spec: v1alpha1.StoreSpec{Auth: k8s("")}}, wantErr: ErrInvalidConfig},
		"two methods": {st: storeRef{Spec: spec(v1alpha1.StoreAuth{Kubernetes: k8s("").Kubernetes,
			TokenSecretRef: &v1alpha1.SecretKeySelector{Name: "t"}})}, wantErr: ErrInvalidConfig},
	} {
		t.Run(name, func(t *testing.T) {
			id, complete, err := resolve(tc.st, tc.ns)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("resolve error = %v, want %v", err, tc.wantErr)
			}
			if err != nil {
				return
			}
			if id.saNamespace != tc.wantNS || complete != tc.complete || id.server != "http://c:8200" || id.mount != "kubernetes" {
				t.Errorf("resolve = %+v complete=%v; want namespace %q complete=%v", id, complete, tc.wantNS, tc.complete)
			}
		})
	}
	a, _, _ := resolve(storeRef{Spec: spec(k8s("ops"))}, "one")
	b, _, _ := resolve(storeRef{Spec: spec(k8s("ops"))}, "two")
	if a != b {
		t.Error("one service account in two namespaces' syncs gave two identities: two logins")
	}
}

func TestSplit(t *testing.T) {
	for _, tc := range []struct{ store, key, mount, rel string }{
		{"secret", "app/db", "secret", "app/db"},
		{"/secret/", "/app", "secret", "app"},
		{"", "kv/app", "kv", "app"},
	} {
		p, err := split(tc.store, tc.key)
		if err != nil || p.mount != tc.mount || p.key != tc.rel {
			t.Errorf("split(%q, %q) = %+v, %v", tc.store, tc.key, p, err)
		}
	}
	for _, bad := range [][2]string{{"", "app"}, {"secret", ""}, {"secret", "/"}} {
		if _, err := split(bad[0], bad[1]); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("split(%q, %q) error = %v, want ErrInvalidConfig", bad[0], bad[1], err)
		}
	}
}

func TestSelectNamespaces(t *testing.T) {
	ns := func(name string, labels map[string]string, terminating bool) corev1.Namespace {
		n := corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}
		if terminating {
			n.Status.Phase = corev1.NamespaceTerminating
		}
		return n
	}
	all := []corev1.Namespace{
		ns("a", map[string]string{"team": "x"}, false), ns("b", nil, false),
		ns("c", map[string]string{"team": "x"}, true), ns("d", map[string]string{"team": "y"}, false),
	}
	got, err := SelectNamespaces(v1alpha1.ClusterSecretSpec{
		Namespaces:         []string{"b", "missing"},
		NamespaceSelectors: []*metav1.LabelSelector{{MatchLabels: map[string]string{"team": "x"}}},
	}, all)
	if err != nil || fmt.Sprint(got) != "[a b]" {
		t.Errorf("SelectNamespaces = %v, %v; want [a b]", got, err)
	}
	_, err = SelectNamespaces(v1alpha1.ClusterSecretSpec{NamespaceSelectors: []*metav1.LabelSelector{{
		MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "k", Operator: "Bogus"}}}}}, all)
	if !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("bad selector error = %v, want ErrInvalidConfig", err)
	}
}

// TestHubRoutesEventsByPath drives the hub with a fake event source (named
// so: the real WebSocket stream is tested end to end in tests/compat).
func TestHubRoutesEventsByPath(t *testing.T) {
	got := make(chan types.NamespacedName, 16)
	h := newHub(discard(), func(nn types.NamespacedName) { got <- nn })
	events := make(chan agent.Event)
	h.subscribe = func(ctx context.Context, _ *session, _ string, ch chan<- agent.Event) error {
		for {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case ev := <-events:
				ch <- ev
			}
		}
	}
	ss := newSessions(nil, nil, time.Now)
	s := &session{id: identity{server: "http://x", secretName: "t", secretKey: "token"}, owner: ss, kv: map[string]int{}}
	ss.reader = staticToken{} // token auth reads its Secret on every use
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error)
	go func() { done <- h.Start(ctx) }()
	app := types.NamespacedName{Namespace: "n", Name: "app"}
	other := types.NamespacedName{Namespace: "n", Name: "other"}
	h.Watch(app, s, remotePath{"secret", "app"}.eventPaths(2))
	h.Watch(other, s, remotePath{"secret", "other"}.eventPaths(2))
	// The first event also triggers the connect-time resync of both.
	events <- agent.Event{Type: "kv-v2/data-write", Path: "secret/data/app"}
	seen := map[types.NamespacedName]int{}
	for i := 0; i < 3; i++ {
		select {
		case nn := <-got:
			seen[nn]++
		case <-time.After(5 * time.Second):
			t.Fatalf("only %v triggered", seen)
		}
	}
	if seen[app] != 2 || seen[other] != 1 {
		t.Errorf("triggers = %v, want app twice (resync, event) and other once (resync)", seen)
	}
	events <- agent.Event{Type: "kv-v2/delete", Path: "/secret/delete/other"}
	if nn := <-got; nn != other {
		t.Errorf("delete event triggered %v, want %v", nn, other)
	}
	events <- agent.Event{Type: "kv-v2/data-write", Path: "secret/data/unrelated"}
	select {
	case nn := <-got:
		t.Errorf("unrelated path triggered %v", nn)
	case <-time.After(100 * time.Millisecond):
	}
	cancel()
	<-done
}
