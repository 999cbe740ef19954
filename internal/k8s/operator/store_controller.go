package operator

import (
	"context"
	"fmt"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/coffer-dev/coffer/api"
	"github.com/coffer-dev/coffer/apis/coffer/v1alpha1"
)

// Store checks are repeated this often while Ready, and sooner while not.
const (
	storeRecheckReady    = time.Minute
	storeRecheckNotReady = 15 * time.Second
)

// storeReconciler reports whether a CofferStore or ClusterCofferStore
// works, through its Ready condition. It shares the sessions of the
// secret controller, so checking a store does not log in again.
type storeReconciler struct {
	client   client.Client
	sessions *sessions
	cluster  bool // ClusterCofferStore
}

// Reconcile implements reconcile.Reconciler.
func (r *storeReconciler) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	var (
		obj  client.Object
		st   storeRef
		cond *[]metav1.Condition
	)
	if r.cluster {
		s := &v1alpha1.ClusterCofferStore{}
		obj, cond = s, &s.Status.Conditions
		if err := r.client.Get(ctx, req.NamespacedName, s); err != nil {
			return reconcile.Result{}, client.IgnoreNotFound(err)
		}
		st = storeRef{Kind: v1alpha1.KindClusterStore, Name: s.Name, Spec: s.Spec}
	} else {
		s := &v1alpha1.CofferStore{}
		obj, cond = s, &s.Status.Conditions
		if err := r.client.Get(ctx, req.NamespacedName, s); err != nil {
			return reconcile.Result{}, client.IgnoreNotFound(err)
		}
		st = storeRef{Kind: v1alpha1.KindStore, Name: s.Name, Namespace: s.Namespace, Spec: s.Spec}
	}
	base := obj.DeepCopyObject().(client.Object)
	msg, err := r.check(ctx, st)
	c := metav1.Condition{Type: ConditionReady, Status: metav1.ConditionTrue, Reason: ReasonValid, Message: msg, ObservedGeneration: obj.GetGeneration()}
	after := storeRecheckReady
	if err != nil {
		c.Status, c.Reason, c.Message = metav1.ConditionFalse, Reason(err), err.Error()
		after = storeRecheckNotReady
	}
	meta.SetStatusCondition(cond, c)
	if perr := r.client.Status().Patch(ctx, obj, client.MergeFrom(base)); perr != nil && !apierrors.IsNotFound(perr) {
		return reconcile.Result{}, perr
	}
	return reconcile.Result{RequeueAfter: after}, nil
}

// check returns nil when the server answers, is unsealed, accepts the
// login and has the mount; the message says what was checked.
func (r *storeReconciler) check(ctx context.Context, st storeRef) (string, error) {
	id, complete, err := resolve(st, "")
	if err != nil {
		return "", err
	}
	sess, err := r.sessions.get(id, st.Spec.CABundle)
	if err != nil {
		return "", err
	}
	ss, err := sess.client.SealStatus(ctx)
	if err != nil {
		return "", fmt.Errorf("operator: seal status: %w", err)
	}
	if ss.Sealed {
		return "", fmt.Errorf("operator: %s: %w", id.server, api.ErrSealed)
	}
	if !complete {
		return "server reachable and unsealed; the login is checked in each CofferSecret's namespace", nil
	}
	if _, err := sess.Token(ctx); err != nil {
		return "", err
	}
	if mount := st.Spec.Path; mount != "" {
		v, err := sess.kvVersion(ctx, mount)
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("logged in; %s is KV v%d", mount, v), nil
	}
	return "logged in", nil
}
