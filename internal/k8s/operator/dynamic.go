package operator

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/coffer-dev/coffer/api"
	"github.com/coffer-dev/coffer/apis/coffer/v1alpha1"
)

// probeIncrement is the increment of the renewal that learns a new
// lease's max TTL: the server caps it at the max TTL and says by how much.
const probeIncrement = 10 * 365 * 24 * 3600

// dynCache keeps, in memory only, the data of each current lease, so a
// resync (a KV change, refreshInterval) renders the Secret again without
// a new lease. After an operator restart it is empty: the next resync
// then rotates the credentials, the previous lease being revoked after
// the rollout as for any rotation.
type dynCache struct {
	mu sync.Mutex
	m  map[string]map[string]any // lease ID → data
}

func (c *dynCache) get(id string) (map[string]any, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	v, ok := c.m[id]
	return v, ok
}

func (c *dynCache) put(id string, v map[string]any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[string]map[string]any{}
	}
	c.m[id] = v
}

func (c *dynCache) drop(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.m, id)
}

// issueLease calls dataFrom[i].dynamic and describes the lease of its
// answer. For a renewable lease it learns the max TTL with one renewal
// by probeIncrement (which the server caps at the max TTL), then renews
// again by the lease's own duration, so the lease keeps its short TTL.
// A response without a lease gives a DynamicLease with an empty LeaseID.
func issueLease(ctx context.Context, s *session, i int, d v1alpha1.DynamicRef, now func() time.Time) (v1alpha1.DynamicLease, map[string]any, error) {
	issued := now()
	resp, err := dynamic(ctx, s, d)
	if err != nil {
		return v1alpha1.DynamicLease{}, nil, err
	}
	l := v1alpha1.DynamicLease{
		Index: i, Path: d.Path, LeaseID: resp.LeaseID,
		IssueTime: metav1.NewTime(issued), RenewTime: metav1.NewTime(issued),
		LeaseDuration: int64(resp.LeaseDuration), Renewable: resp.Renewable,
	}
	if l.LeaseID == "" || l.LeaseDuration <= 0 {
		l.LeaseID = ""
		return l, resp.Data, nil
	}
	if !l.Renewable {
		l.MaxTTL = l.LeaseDuration
		return l, resp.Data, nil
	}
	probed := now()
	granted, err := renewLease(ctx, s, l.LeaseID, probeIncrement)
	if err != nil {
		// Without a max TTL the lease is renewed until renewal fails.
		return l, resp.Data, nil
	}
	if granted < probeIncrement {
		l.MaxTTL = int64(probed.Add(time.Duration(granted)*time.Second).Sub(issued) / time.Second)
	}
	l.RenewTime, l.LeaseDuration = metav1.NewTime(probed), int64(granted)
	at := now()
	if g, err := renewLease(ctx, s, l.LeaseID, int(resp.LeaseDuration)); err == nil && g > 0 {
		l.RenewTime, l.LeaseDuration = metav1.NewTime(at), int64(g)
	}
	return l, resp.Data, nil
}

// renewLease renews lease id by increment seconds and returns the
// lease_duration granted.
func renewLease(ctx context.Context, s *session, id string, increment int) (int, error) {
	var resp *api.Response
	err := s.do(ctx, func(c *api.Client) (err error) {
		resp, err = c.Write(ctx, "sys/leases/renew", map[string]any{"lease_id": id, "increment": increment})
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("operator: renew lease: %w", err)
	}
	return resp.LeaseDuration, nil
}

// errLeaseGone: the server no longer knows the lease (expired, revoked).
var errLeaseGone = errors.New("operator: lease no longer exists")

// revokeLease revokes lease id. A lease the server no longer knows
// (expired or revoked already: a 400 "invalid lease") counts as revoked.
func revokeLease(ctx context.Context, s *session, id string) error {
	err := s.do(ctx, func(c *api.Client) error {
		_, err := c.Write(ctx, "sys/leases/revoke", map[string]any{"lease_id": id})
		return err
	})
	if gone(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("operator: revoke lease: %w", err)
	}
	return nil
}

// gone reports whether err is the server's answer for an unknown lease.
func gone(err error) bool {
	var ae *api.Error
	return errors.As(err, &ae) && ae.StatusCode == http.StatusBadRequest
}

// currentLease returns the status' current lease of dataFrom[i], nil when
// there is none for that index and path.
func currentLease(st *v1alpha1.SecretStatus, i int, path string) *v1alpha1.DynamicLease {
	for j := range st.Leases {
		if st.Leases[j].Index == i && st.Leases[j].Path == path {
			return &st.Leases[j]
		}
	}
	return nil
}

// retireStale moves current leases whose dataFrom entry no longer exists
// (or names another path) to the previous leases.
func retireStale(cs *v1alpha1.CofferSecret) {
	keep := cs.Status.Leases[:0:0]
	for _, l := range cs.Status.Leases {
		if l.Index < len(cs.Spec.DataFrom) && cs.Spec.DataFrom[l.Index].Dynamic != nil && cs.Spec.DataFrom[l.Index].Dynamic.Path == l.Path {
			keep = append(keep, l)
			continue
		}
		cs.Status.PreviousLeases = append(cs.Status.PreviousLeases, l)
	}
	cs.Status.Leases = keep
}

// minAfter returns the shorter positive wait (0 means none).
func minAfter(a, b time.Duration) time.Duration {
	switch {
	case a <= 0:
		return b
	case b <= 0:
		return a
	}
	return min(a, b)
}

// maintainLeases renews the current leases that are due and renews or
// revokes the previous ones (revoking once the target's annotated
// workloads rolled out the Secret's current contents). It returns the
// wait until the next lease decision.
func (r *secretReconciler) maintainLeases(ctx context.Context, s *session, cs *v1alpha1.CofferSecret, target string) time.Duration {
	var after time.Duration
	for j := range cs.Status.Leases {
		l := &cs.Status.Leases[j]
		d := DecideLease(*l, r.now(), false, false)
		if d.Renew {
			at := r.now()
			granted, err := renewLease(ctx, s, l.LeaseID, int(l.LeaseDuration))
			switch {
			case err == nil && granted > 0:
				l.RenewTime, l.LeaseDuration = metav1.NewTime(at), int64(granted)
			case err == nil, gone(err):
				// Lost: expire it now, so the next decision rotates.
				l.RenewTime, l.LeaseDuration = metav1.NewTime(at), 0
				r.log.WarnContext(ctx, "lease lost; rotating", "coffersecret", cs.Namespace+"/"+cs.Name, "path", l.Path)
			default:
				r.log.WarnContext(ctx, "lease renewal failed", "coffersecret", cs.Namespace+"/"+cs.Name, "path", l.Path, "err", err)
				after = minAfter(after, time.Second)
			}
			d = DecideLease(*l, r.now(), false, false)
		}
		if d.Rotate {
			after = minAfter(after, time.Millisecond)
		}
		after = minAfter(after, d.After)
	}
	if len(cs.Status.PreviousLeases) == 0 {
		return after
	}
	var rd client.Reader = r.client
	if r.reader != nil {
		rd = r.reader
	}
	done, err := rolledOut(ctx, rd, cs.Namespace, target)
	if err != nil {
		r.log.WarnContext(ctx, "rollout check failed", "coffersecret", cs.Namespace+"/"+cs.Name, "err", err)
		after = minAfter(after, time.Second)
	}
	keep := cs.Status.PreviousLeases[:0:0]
	for _, l := range cs.Status.PreviousLeases {
		d := DecideLease(l, r.now(), true, done)
		switch {
		case d.Revoke:
			if err := revokeLease(ctx, s, l.LeaseID); err != nil {
				r.log.WarnContext(ctx, "revoking a previous lease failed", "coffersecret", cs.Namespace+"/"+cs.Name, "path", l.Path, "err", err)
				keep = append(keep, l)
				after = minAfter(after, time.Second)
				continue
			}
			r.dyn.drop(l.LeaseID)
			r.events.Eventf(cs, nil, "Normal", "LeaseRevoked", "Revoke", "previous lease of %s revoked (rolled out: %v)", l.Path, done)
			continue
		case d.Renew:
			at := r.now()
			if granted, err := renewLease(ctx, s, l.LeaseID, int(l.LeaseDuration)); err == nil && granted > 0 {
				l.RenewTime, l.LeaseDuration = metav1.NewTime(at), int64(granted)
			} else if gone(err) {
				continue
			}
			d = DecideLease(l, r.now(), true, false)
		}
		keep = append(keep, l)
		after = minAfter(after, d.After)
	}
	cs.Status.PreviousLeases = keep
	return after
}

// revokeAll revokes every lease of cs (deletionPolicy Delete). Failures
// are logged: the leases then expire on their own.
func (r *secretReconciler) revokeAll(ctx context.Context, cs *v1alpha1.CofferSecret) {
	ls := append(append([]v1alpha1.DynamicLease(nil), cs.Status.Leases...), cs.Status.PreviousLeases...)
	if len(ls) == 0 {
		return
	}
	s, err := r.session(ctx, cs)
	if err != nil {
		r.log.WarnContext(ctx, "cannot revoke leases; they expire on their own", "coffersecret", cs.Namespace+"/"+cs.Name, "err", err)
		return
	}
	for _, l := range ls {
		if err := revokeLease(ctx, s, l.LeaseID); err != nil {
			r.log.WarnContext(ctx, "revoking a lease failed; it expires on its own", "coffersecret", cs.Namespace+"/"+cs.Name, "path", l.Path, "err", err)
		}
		r.dyn.drop(l.LeaseID)
	}
}

// pendingFor maps a workload annotated coffer.dev/reload to the
// CofferSecrets of its namespace that target a listed Secret and wait for
// a rollout to revoke a previous lease.
func (r *secretReconciler) pendingFor(ctx context.Context, o client.Object) []reconcile.Request {
	names := ParseReload(o.GetAnnotations()[AnnotationReload])
	if len(names) == 0 {
		return nil
	}
	var l v1alpha1.CofferSecretList
	if err := r.client.List(ctx, &l, client.InNamespace(o.GetNamespace())); err != nil {
		return nil
	}
	var out []reconcile.Request
	for i := range l.Items {
		cs := &l.Items[i]
		if len(cs.Status.PreviousLeases) > 0 && slices.Contains(names, targetName(cs)) {
			out = append(out, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: cs.Namespace, Name: cs.Name}})
		}
	}
	return out
}

// hasDynamic reports whether cs has a dataFrom[].dynamic source or leases.
func hasDynamic(cs *v1alpha1.CofferSecret) bool {
	for _, df := range cs.Spec.DataFrom {
		if df.Dynamic != nil {
			return true
		}
	}
	return len(cs.Status.Leases)+len(cs.Status.PreviousLeases) > 0
}
