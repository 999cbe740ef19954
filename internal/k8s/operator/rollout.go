package operator

import (
	"context"
	"slices"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// RolledOut reports whether a Deployment, StatefulSet or DaemonSet runs
// the pod template whose coffer.dev/reload-hash is hash: the template
// carries it, the controller has observed that generation, and every
// replica is updated and available (kubectl rollout status's rules). Any
// other object is never rolled out.
func RolledOut(obj client.Object, hash string) bool {
	switch w := obj.(type) {
	case *appsv1.Deployment:
		want := int32(1)
		if w.Spec.Replicas != nil {
			want = *w.Spec.Replicas
		}
		s := w.Status
		return w.Spec.Template.Annotations[AnnotationReloadHash] == hash &&
			s.ObservedGeneration >= w.Generation && s.UpdatedReplicas >= want &&
			s.Replicas == s.UpdatedReplicas && s.AvailableReplicas >= want
	case *appsv1.StatefulSet:
		want := int32(1)
		if w.Spec.Replicas != nil {
			want = *w.Spec.Replicas
		}
		s := w.Status
		return w.Spec.Template.Annotations[AnnotationReloadHash] == hash &&
			s.ObservedGeneration >= w.Generation && s.UpdatedReplicas >= want &&
			s.AvailableReplicas >= want && (s.UpdateRevision == "" || s.CurrentRevision == s.UpdateRevision)
	case *appsv1.DaemonSet:
		s := w.Status
		return w.Spec.Template.Annotations[AnnotationReloadHash] == hash &&
			s.ObservedGeneration >= w.Generation && s.UpdatedNumberScheduled >= s.DesiredNumberScheduled &&
			s.NumberAvailable >= s.DesiredNumberScheduled
	}
	return false
}

// rolledOut reports whether every workload of ns annotated
// coffer.dev/reload with secret runs the Secrets' current contents. With
// no such workload it is true: nothing is known to use the credentials.
func rolledOut(ctx context.Context, c client.Reader, ns, secret string) (bool, error) {
	for _, k := range workloads {
		l := k.newList()
		if err := c.List(ctx, l, client.InNamespace(ns)); err != nil {
			return false, err
		}
		for _, w := range k.items(l) {
			names := ParseReload(w.GetAnnotations()[AnnotationReload])
			if !slices.Contains(names, secret) {
				continue
			}
			secrets := map[string]*corev1.Secret{}
			for _, n := range names {
				var s corev1.Secret
				err := c.Get(ctx, types.NamespacedName{Namespace: ns, Name: n}, &s)
				switch {
				case err == nil:
					secrets[n] = &s
				case !apierrors.IsNotFound(err):
					return false, err
				}
			}
			if !RolledOut(w, ReloadHash(names, secrets)) {
				return false, nil
			}
		}
	}
	return true, nil
}
