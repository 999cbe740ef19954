// Package operator is the Coffer operator: controller-runtime controllers
// that keep native Secrets in step with secrets stored in a Coffer (or
// Vault-API) server, described by the coffer.dev/v1alpha1 resources.
//
// The decisions are pure functions, tested without a cluster: MakePlan
// (what the target Secret must look like under each creationPolicy),
// Render (templates with ESO's common functions), Refresh (whether a sync
// is due), ReloadHash and SelectNamespaces. The controllers around them
// only read, call those functions and apply the result.
//
// One session per store identity (server, CA, auth method and principal)
// logs in once, renews its token past half its TTL and logs in again only
// when the token is refused. One event subscription per identity
// (sys/events/subscribe/kv*) resyncs the CofferSecrets whose paths
// changed; refreshInterval is the safety net. Run starts everything; see
// docs/operator.md.
package operator
