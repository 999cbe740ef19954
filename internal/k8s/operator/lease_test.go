package operator

import (
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/coffer-dev/coffer/apis/coffer/v1alpha1"
)

func TestDecideLease(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	// default TTL 6s, max TTL 30s: renew at 4s after each renewal,
	// rotate at 20s (two thirds of the max TTL).
	lease := func(renewed float64, dur, maxTTL int64, renewable bool) v1alpha1.DynamicLease {
		return v1alpha1.DynamicLease{
			LeaseID: "database/creds/ro/x", IssueTime: metav1.NewTime(t0), RenewTime: metav1.NewTime(at(renewed)),
			LeaseDuration: dur, MaxTTL: maxTTL, Renewable: renewable,
		}
	}
	tests := []struct {
		name      string
		l         v1alpha1.DynamicLease
		now       float64
		previous  bool
		rolledOut bool
		want      LeaseDecision
	}{
		{"fresh: wait for two thirds", lease(0, 6, 30, true), 1, false, false, LeaseDecision{After: 3 * time.Second}},
		{"two thirds passed: renew", lease(0, 6, 30, true), 4, false, false, LeaseDecision{Renew: true}},
		{"renewed: wait again", lease(4, 6, 30, true), 5, false, false, LeaseDecision{After: 3 * time.Second}},
		{"renewal would pass the rotation: wait for it", lease(16, 6, 30, true), 17, false, false, LeaseDecision{After: 3 * time.Second}},
		{"two thirds of max TTL: rotate", lease(16, 6, 30, true), 20, false, false, LeaseDecision{Rotate: true}},
		{"expired: rotate", lease(0, 6, 30, true), 7, false, false, LeaseDecision{Rotate: true}},
		{"lost (duration 0): rotate", lease(3, 0, 30, true), 3, false, false, LeaseDecision{Rotate: true}},
		{"not renewable: rotate at two thirds of its TTL", lease(0, 6, 6, false), 4, false, false, LeaseDecision{Rotate: true}},
		{"not renewable: wait", lease(0, 6, 6, false), 1, false, false, LeaseDecision{After: 3 * time.Second}},
		{"max TTL unknown: renew forever", lease(100, 6, 0, true), 104, false, false, LeaseDecision{Renew: true}},
		{"capped at max TTL: no renewal, rotate later", lease(0, 30, 30, true), 10, false, false, LeaseDecision{After: 10 * time.Second}},
		{"previous, rolled out: revoke", lease(20, 6, 30, true), 21, true, true, LeaseDecision{Revoke: true}},
		{"previous, rolling: keep and wait", lease(20, 6, 30, true), 21, true, false, LeaseDecision{After: 3 * time.Second}},
		{"previous, rolling: renew", lease(20, 6, 30, true), 24, true, false, LeaseDecision{Renew: true}},
		{"previous, last renewal capped: wait for max TTL", lease(26, 4, 30, true), 27, true, false, LeaseDecision{After: 3 * time.Second}},
		{"previous, max TTL ended: revoke", lease(26, 4, 30, true), 30, true, false, LeaseDecision{Revoke: true}},
		{"previous, expired: revoke", lease(20, 6, 0, true), 26, true, false, LeaseDecision{Revoke: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := DecideLease(tt.l, at(tt.now), tt.previous, tt.rolledOut)
			if got != tt.want {
				t.Errorf("DecideLease = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestRolledOut(t *testing.T) {
	two := int32(2)
	tpl := func(h string) corev1.PodTemplateSpec {
		return corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{AnnotationReloadHash: h}}}
	}
	dep := func(h string, gen, observed int64, st appsv1.DeploymentStatus) *appsv1.Deployment {
		st.ObservedGeneration = observed
		return &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Generation: gen}, Spec: appsv1.DeploymentSpec{Replicas: &two, Template: tpl(h)}, Status: st}
	}
	done := appsv1.DeploymentStatus{Replicas: 2, UpdatedReplicas: 2, AvailableReplicas: 2}
	tests := []struct {
		name string
		obj  client.Object
		want bool
	}{
		{"deployment done", dep("h", 3, 3, done), true},
		{"deployment template not yet hashed", dep("old", 3, 3, done), false},
		{"deployment generation not observed", dep("h", 3, 2, done), false},
		{"deployment old replicas remain", dep("h", 3, 3, appsv1.DeploymentStatus{Replicas: 3, UpdatedReplicas: 2, AvailableReplicas: 2}), false},
		{"deployment not available", dep("h", 3, 3, appsv1.DeploymentStatus{Replicas: 2, UpdatedReplicas: 2, AvailableReplicas: 1}), false},
		{"statefulset done", &appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Generation: 1}, Spec: appsv1.StatefulSetSpec{Replicas: &two, Template: tpl("h")},
			Status: appsv1.StatefulSetStatus{ObservedGeneration: 1, UpdatedReplicas: 2, AvailableReplicas: 2, CurrentRevision: "r2", UpdateRevision: "r2"}}, true},
		{"statefulset revision differs", &appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Generation: 1}, Spec: appsv1.StatefulSetSpec{Replicas: &two, Template: tpl("h")},
			Status: appsv1.StatefulSetStatus{ObservedGeneration: 1, UpdatedReplicas: 2, AvailableReplicas: 2, CurrentRevision: "r1", UpdateRevision: "r2"}}, false},
		{"daemonset done", &appsv1.DaemonSet{ObjectMeta: metav1.ObjectMeta{Generation: 1}, Spec: appsv1.DaemonSetSpec{Template: tpl("h")},
			Status: appsv1.DaemonSetStatus{ObservedGeneration: 1, DesiredNumberScheduled: 3, UpdatedNumberScheduled: 3, NumberAvailable: 3}}, true},
		{"daemonset updating", &appsv1.DaemonSet{ObjectMeta: metav1.ObjectMeta{Generation: 1}, Spec: appsv1.DaemonSetSpec{Template: tpl("h")},
			Status: appsv1.DaemonSetStatus{ObservedGeneration: 1, DesiredNumberScheduled: 3, UpdatedNumberScheduled: 2, NumberAvailable: 3}}, false},
		{"other kind", &corev1.Pod{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := RolledOut(tt.obj, "h"); got != tt.want {
				t.Errorf("RolledOut = %v, want %v", got, tt.want)
			}
		})
	}
}
