package operator

import (
	"errors"
	"net"
	"net/url"

	"github.com/coffer-dev/coffer/api"
)

// ConditionReady is the condition type of every resource's status.
const ConditionReady = "Ready"

// Reasons of the Ready condition.
const (
	ReasonValid                = "Valid"         // store: server reachable, unsealed, login accepted
	ReasonInvalidConfig        = "InvalidConfig" // store: spec cannot work (missing Secret, bad CA)
	ReasonUnreachable          = "Unreachable"   // the server did not answer
	ReasonSealed               = "Sealed"        // the server is sealed
	ReasonLoginRefused         = "LoginRefused"  // the server refused the login or the token
	ReasonSynced               = "SecretSynced"
	ReasonSyncError            = "SecretSyncedError"
	ReasonStoreNotFound        = "StoreNotFound"
	ReasonRemoteNotFound       = "RemoteSecretNotFound" // deletionPolicy Retain: the Secret is kept
	ReasonRemoteDeleted        = "RemoteSecretDeleted"  // deletionPolicy Delete: the Secret was deleted
	ReasonTemplateError        = "TemplateError"
	ReasonTargetMissing        = "TargetMissing"
	ReasonPermissionDenied     = "PermissionDenied"
	ReasonProvisioned          = "NamespacesProvisioned"
	ReasonProvisionedPartially = "NamespacesFailed"
)

// Sentinel errors of the store session.
var (
	// ErrLoginRefused: the server refused the login or the token.
	ErrLoginRefused = errors.New("operator: login refused")
	// ErrInvalidConfig: the store's spec cannot work.
	ErrInvalidConfig = errors.New("operator: invalid store configuration")
	// ErrRemoteNotFound: a referenced remote secret does not exist.
	ErrRemoteNotFound = errors.New("operator: remote secret not found")
)

// Reason maps an error of a sync or a store check to a Ready reason.
func Reason(err error) string {
	var ne net.Error
	var ue *url.Error
	switch {
	case err == nil:
		return ReasonSynced
	case errors.Is(err, errStoreNotFound):
		return ReasonStoreNotFound
	case errors.Is(err, ErrInvalidConfig):
		return ReasonInvalidConfig
	case errors.Is(err, ErrLoginRefused):
		return ReasonLoginRefused
	case errors.Is(err, api.ErrSealed):
		return ReasonSealed
	case errors.Is(err, ErrRemoteNotFound):
		return ReasonRemoteNotFound
	case errors.Is(err, ErrTemplate):
		return ReasonTemplateError
	case errors.Is(err, ErrTargetMissing):
		return ReasonTargetMissing
	case errors.Is(err, api.ErrPermissionDenied):
		return ReasonPermissionDenied
	case errors.As(err, &ne), errors.As(err, &ue):
		return ReasonUnreachable
	}
	return ReasonSyncError
}
