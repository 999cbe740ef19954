// Package kv is the key/value secrets engine, in Vault's two flavours.
//
// Version 1 (NewV1) stores a JSON object at any path: GET, PUT, DELETE and
// LIST work on the paths themselves and the object is returned as it was
// written.
//
// Version 2 (NewV2) keeps every write of a key as a numbered version, with
// per-key metadata (current and oldest version, per-version creation and
// deletion times, a destroyed flag, max_versions, cas_required,
// delete_version_after and custom_metadata). It serves Vault's API under
// the mount:
//
//	config                  GET, POST      engine-wide defaults
//	data/<key>              GET (?version=N), POST/PUT, PATCH, DELETE
//	delete/<key>            POST {"versions":[...]}   soft delete
//	undelete/<key>          POST {"versions":[...]}
//	destroy/<key>           POST {"versions":[...]}   removes the data
//	metadata/<key>          GET, POST, PATCH, DELETE, LIST
//	subkeys/<key>           GET (?version=N&depth=D)
//
// Responses have Vault's shapes exactly (the golden files captured from a
// Vault-API server are the reference): times are RFC 3339 with nanoseconds
// in UTC, or "" when unset; a read of a deleted or destroyed version is a
// Response with StatusCode 404 whose data is null and whose metadata
// describes the version; a read of a missing key is a nil Response.
//
// # Storage
//
// Within the mount's storage view, version 2 keeps
//
//	config                  the engine configuration
//	metadata/<key>          one entry per key: its metadata (JSON)
//	versions/<key>/<n>      one entry per live version: its data (JSON)
//
// Every change of a key writes its version entries and its metadata in one
// Storage.Apply, so a crash never leaves a version without metadata or the
// reverse. Listing metadata/<prefix> gives the keys and folders.
//
// # Concurrency
//
// Backends are safe for concurrent use. Every read-modify-write of a key
// (write, patch, delete, undelete, destroy, metadata changes) holds that
// key's lock from a striped set of 256 locks, so concurrent writers never
// lose a version and check-and-set is exact. The locks live in the process:
// the engine runs only on the active node.
package kv
