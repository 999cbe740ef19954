package operator

import (
	"errors"
	"fmt"
	"maps"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/coffer-dev/coffer/apis/coffer/v1alpha1"
)

// Labels and annotations the operator sets.
const (
	// LabelManaged marks a Secret that a CofferSecret created (Owner or
	// Orphan); the value is the CofferSecret's name.
	LabelManaged = "coffer.dev/managed-by"
	// AnnotationReload on a Deployment, StatefulSet or DaemonSet lists the
	// Secrets ("a,b") whose changes roll its pods.
	AnnotationReload = "coffer.dev/reload"
	// AnnotationReloadHash is set on the pod template: the sha256 of the
	// listed Secrets' sorted data.
	AnnotationReloadHash = "coffer.dev/reload-hash"
	// Finalizer holds a CofferSecret until its target Secret is released
	// (Retain) or deleted (Delete).
	Finalizer = "coffer.dev/target-secret"
)

// Sentinel errors of Plan.
var (
	// ErrTargetMissing: creationPolicy Merge needs an existing Secret.
	ErrTargetMissing = errors.New("operator: target secret does not exist (creationPolicy Merge never creates one)")
	// ErrOwnedByOther: the target Secret has another controller.
	ErrOwnedByOther = errors.New("operator: target secret is controlled by another object")
	// ErrTypeChange: a Secret's type cannot change in place.
	ErrTypeChange = errors.New("operator: target secret has another type")
)

// Action is what Apply must do with the target Secret.
type Action int

// Actions.
const (
	ActionNone Action = iota
	ActionCreate
	ActionUpdate
)

func (a Action) String() string {
	return [...]string{"none", "create", "update"}[a]
}

// Owner identifies the CofferSecret for owner references.
type Owner struct {
	Name string
	UID  types.UID
}

// PlanInput is everything that decides the target Secret.
type PlanInput struct {
	// Namespace and Name of the target Secret.
	Namespace, Name string
	// Owner is the CofferSecret.
	Owner Owner
	// Policy: empty means Owner.
	Policy v1alpha1.CreationPolicy
	// Type: empty means Opaque.
	Type corev1.SecretType
	// Labels and Annotations from the template's metadata.
	Labels, Annotations map[string]string
	// Data is the rendered data.
	Data map[string][]byte
	// Existing is the current Secret; nil when there is none.
	Existing *corev1.Secret
}

// Plan is the decided Secret and the action that gets it there.
type Plan struct {
	Action Action
	// Secret is the desired object (nil for ActionNone with no Existing).
	Secret *corev1.Secret
}

// ownerRef is the controller owner reference to a CofferSecret.
func ownerRef(o Owner) metav1.OwnerReference {
	t := true
	return metav1.OwnerReference{
		APIVersion: v1alpha1.GroupVersion.String(), Kind: "CofferSecret",
		Name: o.Name, UID: o.UID, Controller: &t, BlockOwnerDeletion: &t,
	}
}

// MakePlan decides what the target Secret must look like. It is pure.
//
//   - Owner: the Secret holds exactly Data, with this CofferSecret as its
//     controller owner reference (an existing Secret without a controller
//     is adopted; one with another controller gives ErrOwnedByOther).
//   - Orphan: as Owner, without an owner reference.
//   - Merge: Data's keys are added to (or replace those of) an existing
//     Secret; other keys, type, owners stay; no Secret: ErrTargetMissing.
//   - None: nothing is written.
//
// Template labels and annotations are added; others on the Secret stay.
func MakePlan(in PlanInput) (Plan, error) {
	policy := in.Policy
	if policy == "" {
		policy = v1alpha1.CreatePolicyOwner
	}
	typ := in.Type
	if typ == "" {
		typ = corev1.SecretTypeOpaque
	}
	switch policy {
	case v1alpha1.CreatePolicyNone:
		return Plan{Action: ActionNone, Secret: in.Existing}, nil
	case v1alpha1.CreatePolicyMerge:
		if in.Existing == nil {
			return Plan{}, ErrTargetMissing
		}
		want := in.Existing.DeepCopy()
		if want.Data == nil {
			want.Data = map[string][]byte{}
		}
		maps.Copy(want.Data, in.Data)
		want.Labels = union(want.Labels, in.Labels)
		want.Annotations = union(want.Annotations, in.Annotations)
		return diff(in.Existing, want), nil
	case v1alpha1.CreatePolicyOwner, v1alpha1.CreatePolicyOrphan:
	default:
		return Plan{}, fmt.Errorf("operator: unknown creationPolicy %q", policy)
	}

	var want *corev1.Secret
	if in.Existing == nil {
		want = &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: in.Namespace, Name: in.Name}, Type: typ}
	} else {
		if in.Existing.Type != typ && !(in.Existing.Type == "" && typ == corev1.SecretTypeOpaque) {
			return Plan{}, fmt.Errorf("%w: %s, want %s (delete it to let the operator recreate it)", ErrTypeChange, in.Existing.Type, typ)
		}
		want = in.Existing.DeepCopy()
	}
	want.Data = maps.Clone(in.Data)
	if want.Data == nil {
		want.Data = map[string][]byte{}
	}
	want.StringData = nil
	want.Labels = union(want.Labels, in.Labels)
	want.Labels = union(want.Labels, map[string]string{LabelManaged: in.Owner.Name})
	want.Annotations = union(want.Annotations, in.Annotations)

	if policy == v1alpha1.CreatePolicyOwner {
		refs := want.OwnerReferences[:0:0]
		found := false
		for _, r := range want.OwnerReferences {
			switch {
			case r.UID == in.Owner.UID:
				found = true
				refs = append(refs, ownerRef(in.Owner))
			case r.Controller != nil && *r.Controller:
				return Plan{}, fmt.Errorf("%w: %s %s", ErrOwnedByOther, r.Kind, r.Name)
			default:
				refs = append(refs, r)
			}
		}
		if !found {
			refs = append(refs, ownerRef(in.Owner))
		}
		want.OwnerReferences = refs
	}
	if in.Existing == nil {
		return Plan{Action: ActionCreate, Secret: want}, nil
	}
	return diff(in.Existing, want), nil
}

// diff returns ActionNone when want equals have in what the operator sets.
func diff(have, want *corev1.Secret) Plan {
	same := have.Type == want.Type &&
		maps.EqualFunc(have.Data, want.Data, func(a, b []byte) bool { return string(a) == string(b) }) &&
		maps.Equal(have.Labels, want.Labels) &&
		maps.Equal(have.Annotations, want.Annotations) &&
		sameOwners(have.OwnerReferences, want.OwnerReferences)
	if same {
		return Plan{Action: ActionNone, Secret: have}
	}
	return Plan{Action: ActionUpdate, Secret: want}
}

func sameOwners(a, b []metav1.OwnerReference) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].UID != b[i].UID || (a[i].Controller == nil) != (b[i].Controller == nil) {
			return false
		}
	}
	return true
}

// union returns base with add's entries set (base is not modified).
func union(base, add map[string]string) map[string]string {
	if len(add) == 0 {
		return base
	}
	out := maps.Clone(base)
	if out == nil {
		out = map[string]string{}
	}
	maps.Copy(out, add)
	return out
}

// ReleaseOwner returns a copy of s without owner references to uid, and
// whether there was one: what the finalizer does for deletionPolicy
// Retain, so garbage collection cannot delete the Secret.
func ReleaseOwner(s *corev1.Secret, uid types.UID) (*corev1.Secret, bool) {
	out := s.DeepCopy()
	refs := out.OwnerReferences[:0:0]
	for _, r := range out.OwnerReferences {
		if r.UID != uid {
			refs = append(refs, r)
		}
	}
	if len(refs) == len(s.OwnerReferences) {
		return s, false
	}
	out.OwnerReferences = refs
	return out, true
}
