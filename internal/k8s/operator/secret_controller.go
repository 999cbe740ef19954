package operator

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/coffer-dev/coffer/apis/coffer/v1alpha1"
)

// recorder emits Kubernetes events (events.k8s.io/v1).
type recorder interface {
	Eventf(regarding, related runtime.Object, eventtype, reason, action, note string, args ...any)
}

// secretReconciler syncs CofferSecrets into Secrets.
type secretReconciler struct {
	client client.Client
	// reader reads Secrets past the cache, for the rollout check right
	// after a write (nil: client).
	reader   client.Reader
	sessions *sessions
	dyn      dynCache
	hub      *hub
	events   recorder
	log      *slog.Logger
	now      func() time.Time
	// kickStore asks for a recheck of the store a failed sync used, so its
	// Ready condition follows a sealed or unreachable server at once.
	kickStore func(kind, namespace, name string)

	forced sync.Map // types.NamespacedName → struct{}: an event asked for a sync
}

// force marks nn for a sync regardless of refreshInterval.
func (r *secretReconciler) force(nn types.NamespacedName) { r.forced.Store(nn, struct{}{}) }

// Reconcile implements reconcile.Reconciler.
func (r *secretReconciler) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	var cs v1alpha1.CofferSecret
	if err := r.client.Get(ctx, req.NamespacedName, &cs); err != nil {
		if apierrors.IsNotFound(err) {
			r.hub.Forget(req.NamespacedName)
			return reconcile.Result{}, nil
		}
		return reconcile.Result{}, err
	}
	if hasDynamic(&cs) && r.reader != nil {
		// The cache may not hold the leases the last reconcile wrote yet;
		// acting on stale ones would rotate twice or lose a lease.
		if err := r.reader.Get(ctx, req.NamespacedName, &cs); err != nil {
			return reconcile.Result{}, client.IgnoreNotFound(err)
		}
	}
	if !cs.DeletionTimestamp.IsZero() {
		return reconcile.Result{}, r.finalize(ctx, &cs)
	}
	if controllerutil.AddFinalizer(&cs, Finalizer) {
		if err := r.client.Update(ctx, &cs); err != nil {
			return reconcile.Result{}, err
		}
	}
	base := cs.DeepCopy()

	target := targetName(&cs)
	existing := &corev1.Secret{}
	if err := r.client.Get(ctx, types.NamespacedName{Namespace: cs.Namespace, Name: target}, existing); err != nil {
		if !apierrors.IsNotFound(err) {
			return reconcile.Result{}, err
		}
		existing = nil
	}
	policy := cs.Spec.Target.CreationPolicy
	creates := policy == "" || policy == v1alpha1.CreatePolicyOwner || policy == v1alpha1.CreatePolicyOrphan
	_, forced := r.forced.LoadAndDelete(req.NamespacedName)
	due, after := Refresh(&cs, r.now(), forced, creates && existing == nil)
	retireStale(&cs)
	rotate := r.rotations(&cs)
	if len(rotate) > 0 {
		due = true
	}
	if !due {
		return r.leasesOnly(ctx, base, &cs, target, after)
	}

	action, err := r.sync(ctx, &cs, target, existing, rotate)
	if err != nil {
		reason := Reason(err)
		if errors.Is(err, errRemoteDeleted) {
			reason = ReasonRemoteDeleted
		}
		r.events.Eventf(&cs, nil, corev1.EventTypeWarning, reason, "Sync", "%v", err)
		switch reason {
		case ReasonSealed, ReasonUnreachable, ReasonLoginRefused:
			if r.kickStore != nil {
				ns := cs.Namespace
				if cs.Spec.SecretStoreRef.Kind == v1alpha1.KindClusterStore {
					ns = ""
				}
				r.kickStore(cs.Spec.SecretStoreRef.Kind, ns, cs.Spec.SecretStoreRef.Name)
			}
		}
		r.log.WarnContext(ctx, "sync failed", "coffersecret", req.NamespacedName, "reason", reason, "err", err)
		if serr := r.setStatus(ctx, base, &cs, metav1.ConditionFalse, reason, err.Error(), false); serr != nil {
			return reconcile.Result{}, serr
		}
		return reconcile.Result{}, err
	}
	r.events.Eventf(&cs, nil, corev1.EventTypeNormal, ReasonSynced, "Sync", "secret %s: %s", target, action)
	if len(cs.Status.Leases)+len(cs.Status.PreviousLeases) > 0 {
		if s, err := r.session(ctx, &cs); err == nil {
			after = minAfter(after, r.maintainLeases(ctx, s, &cs, target))
		}
	}
	if err := r.setStatus(ctx, base, &cs, metav1.ConditionTrue, ReasonSynced, "secret "+target+" synced", true); err != nil {
		return reconcile.Result{}, err
	}
	return reconcile.Result{RequeueAfter: after}, nil
}

// rotations are the dataFrom indexes whose dynamic credentials must be
// generated now: no current lease, or DecideLease says rotate.
func (r *secretReconciler) rotations(cs *v1alpha1.CofferSecret) map[int]bool {
	out := map[int]bool{}
	for i, df := range cs.Spec.DataFrom {
		if df.Dynamic == nil {
			continue
		}
		l := currentLease(&cs.Status, i, df.Dynamic.Path)
		if l == nil {
			// A source without a lease (none recorded yet, or it
			// answers without one) is generated on every sync only.
			continue
		}
		if DecideLease(*l, r.now(), false, false).Rotate {
			out[i] = true
		}
	}
	return out
}

// leasesOnly renews and revokes leases when no sync is due, and patches
// the status when they changed.
func (r *secretReconciler) leasesOnly(ctx context.Context, base, cs *v1alpha1.CofferSecret, target string, after time.Duration) (reconcile.Result, error) {
	if len(cs.Status.Leases)+len(cs.Status.PreviousLeases) == 0 {
		return reconcile.Result{RequeueAfter: after}, nil
	}
	s, err := r.session(ctx, cs)
	if err != nil {
		return reconcile.Result{}, err
	}
	after = minAfter(after, r.maintainLeases(ctx, s, cs, target))
	if err := r.client.Status().Patch(ctx, cs, client.MergeFrom(base)); err != nil && !apierrors.IsNotFound(err) {
		return reconcile.Result{}, fmt.Errorf("operator: status of %s/%s: %w", cs.Namespace, cs.Name, err)
	}
	return reconcile.Result{RequeueAfter: after}, nil
}

// session returns the store session cs syncs through.
func (r *secretReconciler) session(ctx context.Context, cs *v1alpha1.CofferSecret) (*session, error) {
	st, err := r.store(ctx, cs)
	if err != nil {
		return nil, err
	}
	id, _, err := resolve(st, cs.Namespace)
	if err != nil {
		return nil, err
	}
	return r.sessions.get(id, st.Spec.CABundle)
}

// errRemoteDeleted reports that the target Secret was deleted because the
// remote secret disappeared (deletionPolicy Delete).
var errRemoteDeleted = errors.New("operator: remote secret deleted, so the target Secret was deleted")

// targetName is the Secret's name.
func targetName(cs *v1alpha1.CofferSecret) string {
	if cs.Spec.Target.Name != "" {
		return cs.Spec.Target.Name
	}
	return cs.Name
}

// sync fetches, renders and writes. Nothing is written unless every value
// was fetched and rendered, so a failure never empties a Secret.
//
// Dynamic sources reuse the data of their current lease (kept in memory)
// unless rotate names them or the data is not known; a new lease becomes
// the current one, and the one it replaces a previous one, only once the
// Secret was written; on failure the new leases are revoked.
func (r *secretReconciler) sync(ctx context.Context, cs *v1alpha1.CofferSecret, target string, existing *corev1.Secret, rotate map[int]bool) (act Action, err error) {
	st, err := r.store(ctx, cs)
	if err != nil {
		return ActionNone, err
	}
	id, _, err := resolve(st, cs.Namespace)
	if err != nil {
		return ActionNone, err
	}
	sess, err := r.sessions.get(id, st.Spec.CABundle)
	if err != nil {
		return ActionNone, err
	}
	var issued []v1alpha1.DynamicLease
	defer func() {
		if err != nil {
			for _, l := range issued {
				if rerr := revokeLease(ctx, sess, l.LeaseID); rerr != nil {
					r.log.WarnContext(ctx, "revoking an unused lease failed", "path", l.Path, "err", rerr)
				}
				r.dyn.drop(l.LeaseID)
			}
			return
		}
		for _, l := range issued {
			if old := currentLease(&cs.Status, l.Index, l.Path); old != nil {
				cs.Status.PreviousLeases = append(cs.Status.PreviousLeases, *old)
				*old = l
			} else {
				cs.Status.Leases = append(cs.Status.Leases, l)
			}
			r.events.Eventf(cs, nil, corev1.EventTypeNormal, "LeaseIssued", "Sync", "new lease for %s (lease_duration %ds, max TTL %ds)", l.Path, l.LeaseDuration, l.MaxTTL)
		}
	}()
	dyn := func(ctx context.Context, i int, d v1alpha1.DynamicRef) (map[string]any, error) {
		if l := currentLease(&cs.Status, i, d.Path); l != nil && !rotate[i] {
			if v, ok := r.dyn.get(l.LeaseID); ok {
				return v, nil
			}
		}
		l, v, err := issueLease(ctx, sess, i, d, r.now)
		if err != nil {
			return nil, err
		}
		if l.LeaseID != "" {
			issued = append(issued, l)
			r.dyn.put(l.LeaseID, v)
		}
		return v, nil
	}
	f, err := fetch(ctx, sess, st.Spec.Path, cs.Spec, dyn)
	r.hub.Watch(types.NamespacedName{Namespace: cs.Namespace, Name: cs.Name}, sess, f.paths)
	if err != nil {
		if errors.Is(err, ErrRemoteNotFound) && cs.Spec.Target.DeletionPolicy == v1alpha1.DeletionPolicyDelete &&
			(existing == nil || existing.Labels[LabelManaged] == cs.Name) {
			if existing != nil {
				if derr := r.client.Delete(ctx, existing); derr != nil && !apierrors.IsNotFound(derr) {
					return ActionNone, fmt.Errorf("%w (and deleting the Secret failed: %v)", err, derr)
				}
			}
			return ActionNone, fmt.Errorf("%w: %v", errRemoteDeleted, err)
		}
		return ActionNone, err
	}
	in := PlanInput{
		Namespace: cs.Namespace, Name: target,
		Owner:    Owner{Name: cs.Name, UID: cs.UID},
		Policy:   cs.Spec.Target.CreationPolicy,
		Data:     f.values,
		Existing: existing,
	}
	if t := cs.Spec.Target.Template; t != nil {
		in.Type = corev1.SecretType(t.Type)
		in.Labels, in.Annotations = t.Metadata.Labels, t.Metadata.Annotations
		if in.Data, err = Render(t.Data, f.values); err != nil {
			return ActionNone, err
		}
	}
	plan, err := MakePlan(in)
	if err != nil {
		return ActionNone, err
	}
	switch plan.Action {
	case ActionCreate:
		err = r.client.Create(ctx, plan.Secret)
	case ActionUpdate:
		err = r.client.Update(ctx, plan.Secret)
	}
	if err != nil {
		return ActionNone, fmt.Errorf("operator: %s secret %s: %w", plan.Action, target, err)
	}
	return plan.Action, nil
}

// store reads the referenced store.
func (r *secretReconciler) store(ctx context.Context, cs *v1alpha1.CofferSecret) (storeRef, error) {
	ref := cs.Spec.SecretStoreRef
	switch ref.Kind {
	case "", v1alpha1.KindStore:
		var s v1alpha1.CofferStore
		if err := r.client.Get(ctx, types.NamespacedName{Namespace: cs.Namespace, Name: ref.Name}, &s); err != nil {
			return storeRef{}, storeErr(err, ref)
		}
		return storeRef{Kind: v1alpha1.KindStore, Name: s.Name, Namespace: s.Namespace, Spec: s.Spec}, nil
	case v1alpha1.KindClusterStore:
		var s v1alpha1.ClusterCofferStore
		if err := r.client.Get(ctx, types.NamespacedName{Name: ref.Name}, &s); err != nil {
			return storeRef{}, storeErr(err, ref)
		}
		return storeRef{Kind: v1alpha1.KindClusterStore, Name: s.Name, Spec: s.Spec}, nil
	}
	return storeRef{}, fmt.Errorf("%w: unknown secretStoreRef.kind %q", ErrInvalidConfig, ref.Kind)
}

// errStoreNotFound: the referenced store does not exist.
var errStoreNotFound = errors.New("operator: store not found")

func storeErr(err error, ref v1alpha1.SecretStoreRef) error {
	if apierrors.IsNotFound(err) {
		return fmt.Errorf("%w: %s %s", errStoreNotFound, ref.Kind, ref.Name)
	}
	return err
}

// setStatus writes the Ready condition (and on success refreshTime and
// syncedResourceVersion) with a merge patch of the status from base, so
// the leases changed since base are written too.
func (r *secretReconciler) setStatus(ctx context.Context, base, cs *v1alpha1.CofferSecret, status metav1.ConditionStatus, reason, msg string, synced bool) error {
	meta.SetStatusCondition(&cs.Status.Conditions, metav1.Condition{
		Type: ConditionReady, Status: status, Reason: reason, Message: msg, ObservedGeneration: cs.Generation,
	})
	if synced {
		cs.Status.RefreshTime = metav1.NewTime(r.now())
		cs.Status.SyncedResourceVersion = SyncedVersion(cs.ObjectMeta)
	}
	if err := r.client.Status().Patch(ctx, cs, client.MergeFrom(base)); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("operator: status of %s/%s: %w", cs.Namespace, cs.Name, err)
	}
	return nil
}

// finalize applies deletionPolicy to the target Secret, then lets the
// CofferSecret go: Retain removes the owner reference first, so garbage
// collection cannot delete the Secret; Delete deletes a Secret this
// CofferSecret created (never one it merged into).
func (r *secretReconciler) finalize(ctx context.Context, cs *v1alpha1.CofferSecret) error {
	nn := types.NamespacedName{Namespace: cs.Namespace, Name: cs.Name}
	r.hub.Forget(nn)
	if !controllerutil.ContainsFinalizer(cs, Finalizer) {
		return nil
	}
	if cs.Spec.Target.DeletionPolicy == v1alpha1.DeletionPolicyDelete {
		r.revokeAll(ctx, cs)
	}
	var sec corev1.Secret
	err := r.client.Get(ctx, types.NamespacedName{Namespace: cs.Namespace, Name: targetName(cs)}, &sec)
	switch {
	case apierrors.IsNotFound(err):
	case err != nil:
		return err
	case cs.Spec.Target.DeletionPolicy == v1alpha1.DeletionPolicyDelete:
		if sec.Labels[LabelManaged] == cs.Name {
			if err := r.client.Delete(ctx, &sec); err != nil && !apierrors.IsNotFound(err) {
				return err
			}
		}
	default:
		if released, changed := ReleaseOwner(&sec, cs.UID); changed {
			if err := r.client.Update(ctx, released); err != nil {
				return fmt.Errorf("operator: release secret %s: %w", sec.Name, err)
			}
		}
	}
	controllerutil.RemoveFinalizer(cs, Finalizer)
	return r.client.Update(ctx, cs)
}
