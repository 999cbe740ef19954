package operator

import (
	"errors"
	"maps"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/coffer-dev/coffer/apis/coffer/v1alpha1"
)

func secret(data map[string]string, mutate ...func(*corev1.Secret)) *corev1.Secret {
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "app", Name: "db"}, Type: corev1.SecretTypeOpaque, Data: map[string][]byte{}}
	for k, v := range data {
		s.Data[k] = []byte(v)
	}
	for _, m := range mutate {
		m(s)
	}
	return s
}

func bytesMap(m map[string]string) map[string][]byte {
	out := map[string][]byte{}
	for k, v := range m {
		out[k] = []byte(v)
	}
	return out
}

func TestMakePlan(t *testing.T) {
	owner := Owner{Name: "db", UID: "uid-1"}
	other := func(s *corev1.Secret) {
		tr := true
		s.OwnerReferences = []metav1.OwnerReference{{Kind: "Thing", Name: "x", UID: "uid-9", Controller: &tr}}
	}
	ownedByUs := func(s *corev1.Secret) {
		s.OwnerReferences = []metav1.OwnerReference{ownerRef(owner)}
		s.Labels = map[string]string{LabelManaged: "db"}
	}
	for name, tc := range map[string]struct {
		policy   v1alpha1.CreationPolicy
		typ      corev1.SecretType
		existing *corev1.Secret
		data     map[string]string
		action   Action
		wantData map[string]string
		wantErr  error
		owned    bool
	}{
		"owner creates a secret with an owner reference": {
			policy: v1alpha1.CreatePolicyOwner, data: map[string]string{"a": "1"},
			action: ActionCreate, wantData: map[string]string{"a": "1"}, owned: true,
		},
		"empty policy means Owner": {
			data: map[string]string{"a": "1"}, action: ActionCreate, wantData: map[string]string{"a": "1"}, owned: true,
		},
		"orphan creates a secret without an owner reference": {
			policy: v1alpha1.CreatePolicyOrphan, data: map[string]string{"a": "1"},
			action: ActionCreate, wantData: map[string]string{"a": "1"},
		},
		"owner replaces the keys of its secret": {
			policy: v1alpha1.CreatePolicyOwner, existing: secret(map[string]string{"a": "0", "old": "x"}, ownedByUs),
			data: map[string]string{"a": "1"}, action: ActionUpdate, wantData: map[string]string{"a": "1"}, owned: true,
		},
		"an up-to-date secret needs nothing": {
			policy: v1alpha1.CreatePolicyOwner, existing: secret(map[string]string{"a": "1"}, ownedByUs),
			data: map[string]string{"a": "1"}, action: ActionNone, wantData: map[string]string{"a": "1"}, owned: true,
		},
		"owner adopts a secret without a controller": {
			policy: v1alpha1.CreatePolicyOwner, existing: secret(map[string]string{"a": "1"}),
			data: map[string]string{"a": "1"}, action: ActionUpdate, wantData: map[string]string{"a": "1"}, owned: true,
		},
		"owner refuses a secret another object controls": {
			policy: v1alpha1.CreatePolicyOwner, existing: secret(nil, other), data: map[string]string{"a": "1"},
			wantErr: ErrOwnedByOther,
		},
		"merge only adds keys": {
			policy: v1alpha1.CreatePolicyMerge, existing: secret(map[string]string{"keep": "k", "a": "0"}),
			data: map[string]string{"a": "1", "b": "2"}, action: ActionUpdate,
			wantData: map[string]string{"keep": "k", "a": "1", "b": "2"},
		},
		"merge leaves another controller in place": {
			policy: v1alpha1.CreatePolicyMerge, existing: secret(map[string]string{"keep": "k"}, other),
			data: map[string]string{"b": "2"}, action: ActionUpdate, wantData: map[string]string{"keep": "k", "b": "2"},
		},
		"merge never creates": {
			policy: v1alpha1.CreatePolicyMerge, data: map[string]string{"a": "1"}, wantErr: ErrTargetMissing,
		},
		"none writes nothing": {
			policy: v1alpha1.CreatePolicyNone, data: map[string]string{"a": "1"}, action: ActionNone,
		},
		"a type change is refused": {
			policy: v1alpha1.CreatePolicyOwner, typ: corev1.SecretTypeBasicAuth, existing: secret(map[string]string{"a": "1"}, ownedByUs),
			data: map[string]string{"username": "u"}, wantErr: ErrTypeChange,
		},
	} {
		t.Run(name, func(t *testing.T) {
			p, err := MakePlan(PlanInput{Namespace: "app", Name: "db", Owner: owner, Policy: tc.policy, Type: tc.typ,
				Data: bytesMap(tc.data), Existing: tc.existing})
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("MakePlan error = %v, want %v", err, tc.wantErr)
			}
			if err != nil {
				return
			}
			if p.Action != tc.action {
				t.Errorf("action = %v, want %v", p.Action, tc.action)
			}
			if tc.wantData == nil {
				return
			}
			if got := p.Secret.Data; !maps.EqualFunc(got, bytesMap(tc.wantData), func(a, b []byte) bool { return string(a) == string(b) }) {
				t.Errorf("data = %q, want %q", got, tc.wantData)
			}
			hasRef := false
			for _, r := range p.Secret.OwnerReferences {
				if r.UID == owner.UID {
					hasRef = true
					if r.Controller == nil || !*r.Controller || r.Kind != "CofferSecret" {
						t.Errorf("owner reference %+v is not a CofferSecret controller reference", r)
					}
				}
			}
			if hasRef != tc.owned {
				t.Errorf("owner reference present = %v, want %v", hasRef, tc.owned)
			}
		})
	}
}

func TestMakePlanInputNotModified(t *testing.T) {
	ex := secret(map[string]string{"keep": "k"})
	_, err := MakePlan(PlanInput{Name: "db", Namespace: "app", Policy: v1alpha1.CreatePolicyMerge, Existing: ex,
		Data: bytesMap(map[string]string{"b": "2"}), Labels: map[string]string{"l": "v"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(ex.Data) != 1 || ex.Labels != nil {
		t.Errorf("existing secret modified: %v %v", ex.Data, ex.Labels)
	}
}

func TestMakePlanTemplateMetadata(t *testing.T) {
	p, err := MakePlan(PlanInput{Name: "db", Namespace: "app", Owner: Owner{Name: "db", UID: "u"}, Type: corev1.SecretTypeBasicAuth,
		Labels: map[string]string{"team": "a"}, Annotations: map[string]string{"note": "x"}, Data: bytesMap(map[string]string{"username": "u"})})
	if err != nil {
		t.Fatal(err)
	}
	s := p.Secret
	if s.Type != corev1.SecretTypeBasicAuth || s.Labels["team"] != "a" || s.Labels[LabelManaged] != "db" || s.Annotations["note"] != "x" {
		t.Errorf("got type %q labels %v annotations %v", s.Type, s.Labels, s.Annotations)
	}
}

func TestReleaseOwner(t *testing.T) {
	tr := true
	s := secret(nil, func(s *corev1.Secret) {
		s.OwnerReferences = []metav1.OwnerReference{{UID: "mine", Controller: &tr}, {UID: "other"}}
	})
	got, changed := ReleaseOwner(s, "mine")
	if !changed || len(got.OwnerReferences) != 1 || got.OwnerReferences[0].UID != "other" {
		t.Errorf("ReleaseOwner = %v, %v; want only the other reference", got.OwnerReferences, changed)
	}
	if len(s.OwnerReferences) != 2 {
		t.Error("input modified")
	}
	if _, changed := ReleaseOwner(got, "mine"); changed {
		t.Error("second ReleaseOwner reported a change")
	}
}
