package operator

import (
	"context"
	"slices"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
)

// workload is one kind the reloader handles: Deployment, StatefulSet or
// DaemonSet.
type workload struct {
	name     string
	new      func() client.Object
	newList  func() client.ObjectList
	items    func(client.ObjectList) []client.Object
	template func(client.Object) *corev1.PodTemplateSpec
}

var workloads = []workload{
	{
		name: "deployment",
		new:  func() client.Object { return &appsv1.Deployment{} }, newList: func() client.ObjectList { return &appsv1.DeploymentList{} },
		items: func(l client.ObjectList) []client.Object {
			var out []client.Object
			for i := range l.(*appsv1.DeploymentList).Items {
				out = append(out, &l.(*appsv1.DeploymentList).Items[i])
			}
			return out
		},
		template: func(o client.Object) *corev1.PodTemplateSpec { return &o.(*appsv1.Deployment).Spec.Template },
	},
	{
		name: "statefulset",
		new:  func() client.Object { return &appsv1.StatefulSet{} }, newList: func() client.ObjectList { return &appsv1.StatefulSetList{} },
		items: func(l client.ObjectList) []client.Object {
			var out []client.Object
			for i := range l.(*appsv1.StatefulSetList).Items {
				out = append(out, &l.(*appsv1.StatefulSetList).Items[i])
			}
			return out
		},
		template: func(o client.Object) *corev1.PodTemplateSpec { return &o.(*appsv1.StatefulSet).Spec.Template },
	},
	{
		name: "daemonset",
		new:  func() client.Object { return &appsv1.DaemonSet{} }, newList: func() client.ObjectList { return &appsv1.DaemonSetList{} },
		items: func(l client.ObjectList) []client.Object {
			var out []client.Object
			for i := range l.(*appsv1.DaemonSetList).Items {
				out = append(out, &l.(*appsv1.DaemonSetList).Items[i])
			}
			return out
		},
		template: func(o client.Object) *corev1.PodTemplateSpec { return &o.(*appsv1.DaemonSet).Spec.Template },
	},
}

// reloadReconciler sets coffer.dev/reload-hash on the pod template of a
// workload annotated with coffer.dev/reload, so its pods roll when the
// listed Secrets change.
type reloadReconciler struct {
	client client.Client
	kind   workload
}

// Reconcile implements reconcile.Reconciler.
func (r *reloadReconciler) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	obj := r.kind.new()
	if err := r.client.Get(ctx, req.NamespacedName, obj); err != nil {
		return reconcile.Result{}, client.IgnoreNotFound(err)
	}
	names := ParseReload(obj.GetAnnotations()[AnnotationReload])
	if len(names) == 0 {
		return reconcile.Result{}, nil
	}
	secrets := map[string]*corev1.Secret{}
	for _, n := range names {
		var s corev1.Secret
		err := r.client.Get(ctx, types.NamespacedName{Namespace: req.Namespace, Name: n}, &s)
		switch {
		case err == nil:
			secrets[n] = &s
		case !apierrors.IsNotFound(err):
			return reconcile.Result{}, err
		}
	}
	hash := ReloadHash(names, secrets)
	if r.kind.template(obj).Annotations[AnnotationReloadHash] == hash {
		return reconcile.Result{}, nil
	}
	base := obj.DeepCopyObject().(client.Object)
	tpl := r.kind.template(obj)
	if tpl.Annotations == nil {
		tpl.Annotations = map[string]string{}
	}
	tpl.Annotations[AnnotationReloadHash] = hash
	return reconcile.Result{}, client.IgnoreNotFound(r.client.Patch(ctx, obj, client.MergeFrom(base)))
}

// workloadsFor maps a Secret to the workloads of its namespace that list it.
func (r *reloadReconciler) workloadsFor(ctx context.Context, o client.Object) []reconcile.Request {
	l := r.kind.newList()
	if err := r.client.List(ctx, l, client.InNamespace(o.GetNamespace())); err != nil {
		return nil
	}
	var out []reconcile.Request
	for _, w := range r.kind.items(l) {
		if slices.Contains(ParseReload(w.GetAnnotations()[AnnotationReload]), o.GetName()) {
			out = append(out, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: w.GetNamespace(), Name: w.GetName()}})
		}
	}
	return out
}
