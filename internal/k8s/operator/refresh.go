package operator

import (
	"crypto/sha256"
	"encoding/hex"
	"slices"
	"strconv"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/coffer-dev/coffer/apis/coffer/v1alpha1"
)

// DefaultRefreshInterval is used when spec.refreshInterval is unset.
const DefaultRefreshInterval = time.Hour

// SyncedVersion is what status.syncedResourceVersion records: the
// generation and a hash of the labels and annotations, as ESO does, so a
// change of either triggers a sync.
func SyncedVersion(m metav1.ObjectMeta) string {
	h := sha256.New()
	for _, kv := range []map[string]string{m.Labels, m.Annotations} {
		keys := make([]string, 0, len(kv))
		for k := range kv {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			field(h, k)
			field(h, kv[k])
		}
		h.Write([]byte{0xff})
	}
	return strconv.FormatInt(m.Generation, 10) + "-" + hex.EncodeToString(h.Sum(nil))[:16]
}

// Refresh decides whether a CofferSecret must be synced now. forced is
// set when a server event named one of its paths; targetMissing when its
// Secret does not exist (and it creates one). A CofferSecret whose last
// sync failed (Ready is not True) is always due. When no sync is due it
// returns the wait until the next one (0: never, refreshInterval 0s).
func Refresh(cs *v1alpha1.CofferSecret, now time.Time, forced, targetMissing bool) (sync bool, after time.Duration) {
	interval := DefaultRefreshInterval
	if cs.Spec.RefreshInterval != nil {
		interval = cs.Spec.RefreshInterval.Duration
	}
	if forced || targetMissing || cs.Status.SyncedResourceVersion != SyncedVersion(cs.ObjectMeta) || cs.Status.RefreshTime.IsZero() ||
		!meta.IsStatusConditionTrue(cs.Status.Conditions, ConditionReady) {
		return true, interval
	}
	if interval <= 0 {
		return false, 0
	}
	next := cs.Status.RefreshTime.Add(interval)
	if !now.Before(next) {
		return true, interval
	}
	return false, next.Sub(now)
}
