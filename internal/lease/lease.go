// Package lease is the core's lease manager: it remembers when every lease
// (a token's life, a dynamic secret's credentials) ends, and revokes it on
// time, also after a restart or a fail-over.
//
// # How it works
//
// Each lease is stored three times in the manager's logical.Storage view,
// always written together with one atomic Storage.Apply:
//
//	entry/<h>                                 the Lease as JSON
//	expire/<yyyymmddhh>/<mm>/<ssnnnnnnnnn>-<h> the expiry index (UTC)
//	path/<lease path>/<h>                     the index RevokePrefix walks
//
// where h is the hex SHA-256 of the lease ID (IDs may hold any character;
// the hash is a safe key). The expiry index is bucketed by hour and minute
// and its keys sort in time order, and the exact expiry is part of the key,
// so the manager learns what comes due next with a few List calls and no
// Get at all. It loads lazily: start-up reads nothing, and the expiry loop
// only lists the buckets that are due (plus the name of the next one), so
// neither start-up time nor memory grow with the number of leases.
//
// # Wiring
//
// The owner of a kind of lease registers a revoker for its Kind in Config.
// The core starts Run on the active node while unsealed and cancels its
// context on seal or step-down. Register, Renew, Lookup, Revoke, Forget and
// RevokePrefix may be called at any time, from any goroutine, with or
// without Run.
//
// A revoker that fails is retried with exponential back-off (capped at
// MaxBackoff), without end: a lease is never dropped while its revocation
// fails, and it stays in storage, so a restart retries it too. From the
// sixth failed attempt on every failure is logged at error level, with the
// lease ID and kind only.
package lease

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/coffer-dev/coffer/internal/logical"
)

// Lease is one lease. The manager stores it as JSON; Data belongs to the
// owner (what it needs to revoke) and must not hold secret values in clear
// beyond what the barrier below already protects.
type Lease struct {
	// ID names the lease; unique; any characters. Required.
	ID string `json:"id"`
	// Kind selects the revoker ("token", "database", ...). Required.
	Kind string `json:"kind"`
	// Path is the request path that created the lease ("auth/token/create",
	// "database/creds/ro"). RevokePrefix matches on it, segment by segment.
	// Required.
	Path string `json:"path"`
	// IssueTime is when the lease began; zero is replaced by now on Register.
	IssueTime time.Time `json:"issue_time"`
	// ExpireTime is when it is revoked; zero means never.
	ExpireTime time.Time `json:"expire_time"`
	// LastRenewal is when Renew last moved ExpireTime; zero if never.
	LastRenewal time.Time `json:"last_renewal,omitzero"`
	// Data is opaque to the manager and handed back to the revoker.
	Data json.RawMessage `json:"data,omitempty"`
}

// ErrNotFound is returned for a lease ID that is not (or no longer) known.
var ErrNotFound = errors.New("lease: not found")

// ErrInvalid is returned by Register for a lease that lacks an ID, a Path
// or a Kind that has a revoker.
var ErrInvalid = errors.New("lease: invalid lease")

// hashID returns the storage name of a lease ID.
func hashID(id string) string {
	sum := sha256.Sum256([]byte(id))
	return hex.EncodeToString(sum[:])
}

const (
	entryPrefix  = "entry/"
	expirePrefix = "expire/"
	pathPrefix   = "path/"
	hourLayout   = "2006010215"
)

func entryKey(h string) string { return entryPrefix + h }

// expireKey returns the expiry index key of a lease expiring at t.
func expireKey(t time.Time, h string) string {
	t = t.UTC()
	return fmt.Sprintf("%s%s/%02d/%02d%09d-%s", expirePrefix, t.Format(hourLayout), t.Minute(), t.Second(), t.Nanosecond(), h)
}

// bucketStart returns the start of the minute bucket that holds t.
func bucketStart(t time.Time) time.Time { return t.UTC().Truncate(time.Minute) }

// cleanPath trims the slashes around a lease path.
func cleanPath(p string) string { return strings.Trim(p, "/") }

func pathKey(p, h string) string { return pathPrefix + cleanPath(p) + "/" + h }

// parseIndexName parses "<ssnnnnnnnnn>-<h>" within a minute bucket.
func parseIndexName(minute time.Time, name string) (time.Time, string, bool) {
	if len(name) < 13 || name[11] != '-' {
		return time.Time{}, "", false
	}
	for _, c := range name[:11] {
		if c < '0' || c > '9' {
			return time.Time{}, "", false
		}
	}
	sec, _ := strconv.Atoi(name[:2])
	nsec, _ := strconv.Atoi(name[2:11])
	if sec > 59 {
		return time.Time{}, "", false
	}
	return minute.Add(time.Duration(sec)*time.Second + time.Duration(nsec)), name[12:], true
}

// opsFor returns the writes that store l with all its index entries.
func opsFor(l *Lease, b []byte) []logical.Op {
	h := hashID(l.ID)
	ops := []logical.Op{{Key: entryKey(h), Value: b}, {Key: pathKey(l.Path, h), Value: []byte(h)}}
	if !l.ExpireTime.IsZero() {
		ops = append(ops, logical.Op{Key: expireKey(l.ExpireTime, h), Value: []byte(h)})
	}
	return ops
}

// deleteOps returns the writes that remove l and all its index entries.
func deleteOps(l *Lease) []logical.Op {
	h := hashID(l.ID)
	ops := []logical.Op{{Key: entryKey(h), Delete: true}, {Key: pathKey(l.Path, h), Delete: true}}
	if !l.ExpireTime.IsZero() {
		ops = append(ops, logical.Op{Key: expireKey(l.ExpireTime, h), Delete: true})
	}
	return ops
}

// logger returns a usable logger for a possibly nil one.
func logger(l *slog.Logger) *slog.Logger {
	if l == nil {
		return slog.New(slog.DiscardHandler)
	}
	return l
}
