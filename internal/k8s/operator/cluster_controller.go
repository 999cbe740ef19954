package operator

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/coffer-dev/coffer/apis/coffer/v1alpha1"
)

// LabelClusterSecret marks a CofferSecret made by a ClusterCofferSecret;
// the value is the ClusterCofferSecret's name.
const LabelClusterSecret = "coffer.dev/cluster-coffer-secret"

// SelectNamespaces returns the sorted names of the namespaces that a
// ClusterCofferSecret targets: those listed by name (and existing) plus
// those matching any selector. Terminating namespaces are skipped. It is
// pure; an invalid selector is an error.
func SelectNamespaces(spec v1alpha1.ClusterSecretSpec, namespaces []corev1.Namespace) ([]string, error) {
	var sels []labels.Selector
	for _, s := range spec.NamespaceSelectors {
		sel, err := metav1.LabelSelectorAsSelector(s)
		if err != nil {
			return nil, fmt.Errorf("%w: namespaceSelectors: %v", ErrInvalidConfig, err)
		}
		sels = append(sels, sel)
	}
	var out []string
	for _, ns := range namespaces {
		if ns.Status.Phase == corev1.NamespaceTerminating || !ns.DeletionTimestamp.IsZero() {
			continue
		}
		ok := slices.Contains(spec.Namespaces, ns.Name)
		for _, sel := range sels {
			ok = ok || sel.Matches(labels.Set(ns.Labels))
		}
		if ok {
			out = append(out, ns.Name)
		}
	}
	slices.Sort(out)
	return out, nil
}

// clusterSecretReconciler stamps CofferSecrets into namespaces.
type clusterSecretReconciler struct {
	client client.Client
}

// Reconcile implements reconcile.Reconciler.
func (r *clusterSecretReconciler) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	var ccs v1alpha1.ClusterCofferSecret
	if err := r.client.Get(ctx, req.NamespacedName, &ccs); err != nil {
		return reconcile.Result{}, client.IgnoreNotFound(err)
	}
	if !ccs.DeletionTimestamp.IsZero() {
		return reconcile.Result{}, nil // owner references let GC remove the CofferSecrets
	}
	name := ccs.Spec.CofferSecretName
	if name == "" {
		name = ccs.Name
	}
	var nsl corev1.NamespaceList
	if err := r.client.List(ctx, &nsl); err != nil {
		return reconcile.Result{}, err
	}
	base := ccs.DeepCopy()
	want, err := SelectNamespaces(ccs.Spec, nsl.Items)
	var failed []v1alpha1.NamespaceFailure
	var done []string
	if err == nil {
		for _, ns := range want {
			if ferr := r.ensure(ctx, &ccs, ns, name); ferr != nil {
				failed = append(failed, v1alpha1.NamespaceFailure{Namespace: ns, Reason: ferr.Error()})
			} else {
				done = append(done, ns)
			}
		}
		// Remove the CofferSecrets of namespaces no longer selected.
		var have v1alpha1.CofferSecretList
		if lerr := r.client.List(ctx, &have, client.MatchingLabels{LabelClusterSecret: ccs.Name}); lerr != nil {
			return reconcile.Result{}, lerr
		}
		for i := range have.Items {
			if cs := &have.Items[i]; !slices.Contains(want, cs.Namespace) {
				if derr := r.client.Delete(ctx, cs); derr != nil && !apierrors.IsNotFound(derr) {
					return reconcile.Result{}, derr
				}
			}
		}
	}
	ccs.Status.CofferSecretName, ccs.Status.ProvisionedNamespaces, ccs.Status.FailedNamespaces = name, done, failed
	c := metav1.Condition{Type: ConditionReady, Status: metav1.ConditionTrue, Reason: ReasonProvisioned,
		Message: fmt.Sprintf("%d namespaces", len(done)), ObservedGeneration: ccs.Generation}
	switch {
	case err != nil:
		c.Status, c.Reason, c.Message = metav1.ConditionFalse, ReasonInvalidConfig, err.Error()
	case len(failed) > 0:
		c.Status, c.Reason, c.Message = metav1.ConditionFalse, ReasonProvisionedPartially, fmt.Sprintf("%d namespaces failed", len(failed))
	}
	meta.SetStatusCondition(&ccs.Status.Conditions, c)
	if perr := r.client.Status().Patch(ctx, &ccs, client.MergeFrom(base)); perr != nil {
		return reconcile.Result{}, client.IgnoreNotFound(perr)
	}
	every := time.Minute
	if ccs.Spec.RefreshTime != nil && ccs.Spec.RefreshTime.Duration > 0 {
		every = ccs.Spec.RefreshTime.Duration
	}
	return reconcile.Result{RequeueAfter: every}, nil
}

// ensure creates or updates the CofferSecret in ns.
func (r *clusterSecretReconciler) ensure(ctx context.Context, ccs *v1alpha1.ClusterCofferSecret, ns, name string) error {
	cs := &v1alpha1.CofferSecret{}
	err := r.client.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, cs)
	if err != nil && !apierrors.IsNotFound(err) {
		return err
	}
	exists := err == nil
	if exists && cs.Labels[LabelClusterSecret] != ccs.Name {
		return fmt.Errorf("a CofferSecret %s/%s not made by this ClusterCofferSecret exists", ns, name)
	}
	before := cs.DeepCopy()
	cs.Namespace, cs.Name = ns, name
	cs.Labels = union(union(cs.Labels, ccs.Spec.CofferSecretMetadata.Labels), map[string]string{LabelClusterSecret: ccs.Name})
	cs.Annotations = union(cs.Annotations, ccs.Spec.CofferSecretMetadata.Annotations)
	cs.Spec = *ccs.Spec.CofferSecretSpec.DeepCopy()
	if err := controllerutil.SetControllerReference(ccs, cs, r.client.Scheme()); err != nil {
		return err
	}
	if !exists {
		return r.client.Create(ctx, cs)
	}
	if equality.Semantic.DeepEqual(before.Spec, cs.Spec) && maps.Equal(before.Labels, cs.Labels) &&
		maps.Equal(before.Annotations, cs.Annotations) && len(before.OwnerReferences) == len(cs.OwnerReferences) {
		return nil
	}
	return r.client.Update(ctx, cs)
}
