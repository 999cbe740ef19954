package compat

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/coffer-dev/coffer/apis/coffer/v1alpha1"
	"github.com/coffer-dev/coffer/internal/k8s/operator"
)

// dynPolicy lets the operator generate, renew and revoke database
// credentials.
const dynPolicy = `
path "database/creds/ro"  { capabilities = ["read"] }
path "sys/leases/renew"   { capabilities = ["update"] }
path "sys/leases/revoke"  { capabilities = ["update"] }
`

// completeRollout marks the Deployment's current pod template as fully
// rolled out. envtest runs no kube-controller-manager and no kubelet, so
// nothing else ever writes a Deployment's status: the test plays the
// Deployment controller, with observedGeneration and updated/available
// replicas as a finished rollout reports them.
func completeRollout(t *testing.T, b *operatorBed, name, hash string) {
	t.Helper()
	eventually(t, 10*time.Second, "rollout status of "+name, func() error {
		var d appsv1.Deployment
		if err := b.c.Get(context.Background(), types.NamespacedName{Namespace: "app", Name: name}, &d); err != nil {
			return err
		}
		if got := d.Spec.Template.Annotations[operator.AnnotationReloadHash]; got != hash {
			return fmt.Errorf("template hash %q, want %q", got, hash)
		}
		d.Status = appsv1.DeploymentStatus{ObservedGeneration: d.Generation, Replicas: 1, UpdatedReplicas: 1, ReadyReplicas: 1, AvailableReplicas: 1}
		return b.c.Status().Update(context.Background(), &d)
	})
}

func (b *operatorBed) cofferSecret(t *testing.T, name string) *v1alpha1.CofferSecret {
	t.Helper()
	var cs v1alpha1.CofferSecret
	if err := b.c.Get(context.Background(), types.NamespacedName{Namespace: "app", Name: name}, &cs); err != nil {
		t.Fatal(err)
	}
	return &cs
}

// TestOperatorDynamicLeaseRotation drives a CofferSecret with
// dataFrom.dynamic database/creds/ro (default TTL 4s, max TTL 12s) on a
// real kube-apiserver, a real coffer server and a real PostgreSQL: the
// operator records the lease in status (with the max TTL it learned),
// renews it, writes new credentials before the max TTL ends, which rolls
// the annotated Deployment, keeps the old database role while the rollout
// runs, and drops it once the Deployment reports the new template rolled
// out. Deleting the CofferSecret (deletionPolicy Delete) revokes the
// current lease at once.
func TestOperatorDynamicLeaseRotation(t *testing.T) {
	b := startOperatorBed(t)
	pg := startPG(t)
	setupDatabase(t, b.root, pg, "4s", "12s")
	if err := b.root.Sys().PutPolicy("sync", syncPolicy+dynPolicy); err != nil {
		t.Fatal(err)
	}
	bg := context.Background()
	if err := b.c.Create(bg, b.store("coffer", "sync")); err != nil {
		t.Fatal(err)
	}
	if err := b.c.Create(bg, deployment("api", "db-auth")); err != nil {
		t.Fatal(err)
	}
	cs := &v1alpha1.CofferSecret{
		ObjectMeta: metav1.ObjectMeta{Namespace: "app", Name: "db"},
		Spec: v1alpha1.SecretSpec{
			RefreshInterval: &metav1.Duration{Duration: time.Hour},
			SecretStoreRef:  v1alpha1.SecretStoreRef{Name: "coffer", Kind: v1alpha1.KindStore},
			Target:          v1alpha1.Target{Name: "db-auth", DeletionPolicy: v1alpha1.DeletionPolicyDelete},
			DataFrom:        []v1alpha1.DataFrom{{Dynamic: &v1alpha1.DynamicRef{Path: "database/creds/ro"}}},
		},
	}
	if err := b.c.Create(bg, cs); err != nil {
		t.Fatal(err)
	}

	// 1. The first credentials and their lease.
	var first v1alpha1.DynamicLease
	var user1 string
	eventually(t, 30*time.Second, "first credentials", func() error {
		s, err := b.secret(t, "app", "db-auth")
		if err != nil {
			return err
		}
		got := b.cofferSecret(t, "db")
		if len(got.Status.Leases) != 1 || len(s.Data["username"]) == 0 {
			return errors.New("no lease in status yet")
		}
		first, user1 = got.Status.Leases[0], string(s.Data["username"])
		return nil
	})
	if first.LeaseDuration < 1 || first.LeaseDuration > 4 || first.MaxTTL < 10 || first.MaxTTL > 12 || !first.Renewable {
		t.Fatalf("status lease = %+v, want lease_duration ≤4s, max TTL ≈12s, renewable", first)
	}
	if exists, err := pg.RoleExists(ctx(t), user1); err != nil || !exists {
		t.Fatalf("role %s exists = %v, %v", user1, exists, err)
	}
	hash1 := waitReloadHash(t, b, "api", "")
	completeRollout(t, b, "api", hash1)

	// 2. Renewed: the server shows a renewal, and the role outlives its
	// 4s default TTL.
	eventually(t, 10*time.Second, "lease renewal", func() error {
		if _, _, renewed := leaseTimes(t, b.root, first.LeaseID); !renewed {
			return errors.New("not renewed")
		}
		return nil
	})

	// 3. New credentials before the first lease's max TTL.
	maxEnd := first.IssueTime.Add(12 * time.Second)
	var user2, pass2 string
	eventually(t, 20*time.Second, "new credentials", func() error {
		s, err := b.secret(t, "app", "db-auth")
		if err != nil {
			return err
		}
		if u := string(s.Data["username"]); u != user1 {
			user2, pass2 = u, string(s.Data["password"])
			return nil
		}
		return errors.New("still the first credentials")
	})
	rotatedAt := time.Now()
	if !rotatedAt.Before(maxEnd) {
		t.Fatalf("new credentials at %v, after the first lease's max TTL end %v", rotatedAt, maxEnd)
	}
	t.Logf("rotated %v after issue (max TTL 12s)", rotatedAt.Sub(first.IssueTime.Time).Round(time.Millisecond))
	if conn, err := pg.Connect(ctx(t), user2, pass2); err != nil {
		t.Fatalf("new credentials do not log in: %v", err)
	} else {
		conn.Close(ctx(t))
	}

	// 4. The Deployment rolls; the old role stays while the rollout runs.
	hash2 := waitReloadHash(t, b, "api", hash1)
	time.Sleep(500 * time.Millisecond)
	if exists, err := pg.RoleExists(ctx(t), user1); err != nil || !exists {
		t.Fatalf("old role %s dropped before the rollout finished (exists %v, %v)", user1, exists, err)
	}
	got := b.cofferSecret(t, "db")
	if len(got.Status.PreviousLeases) != 1 || got.Status.PreviousLeases[0].LeaseID != first.LeaseID {
		t.Fatalf("previous leases = %+v, want the first lease", got.Status.PreviousLeases)
	}

	// 5. The rollout finishes: the old lease is revoked and its role dropped.
	completeRollout(t, b, "api", hash2)
	doneAt := time.Now()
	waitRoleGone(t, pg, user1, 15*time.Second)
	t.Logf("old role dropped %v after the rollout finished", time.Since(doneAt).Round(time.Millisecond))
	if time.Now().Before(maxEnd) {
		t.Logf("dropped before the old lease's max TTL (by the rollout, not by expiry)")
	}
	eventually(t, 10*time.Second, "previous leases cleared", func() error {
		if n := len(b.cofferSecret(t, "db").Status.PreviousLeases); n != 0 {
			return fmt.Errorf("%d previous leases", n)
		}
		return nil
	})
	if exists, err := pg.RoleExists(ctx(t), user2); err != nil || !exists {
		t.Fatalf("current role %s exists = %v, %v", user2, exists, err)
	}

	// 6. Deletion with deletionPolicy Delete revokes the current lease.
	cur := b.cofferSecret(t, "db").Status.Leases[0]
	if err := b.c.Delete(bg, cs); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "coffersecret deleted", func() error {
		err := b.c.Get(bg, types.NamespacedName{Namespace: "app", Name: "db"}, &v1alpha1.CofferSecret{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		return errors.New("still there")
	})
	if _, err := b.root.Sys().Lookup(cur.LeaseID); err == nil {
		t.Errorf("lease %s still exists after the CofferSecret (deletionPolicy Delete) was deleted", cur.LeaseID)
	}
	waitRoleGone(t, pg, user2, 5*time.Second)
}
