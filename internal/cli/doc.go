// Package cli implements the client commands of the coffer binary: status,
// operator, kv, policy, token, secrets, login and the generic read, write,
// list and delete. They speak to the server only through package api, so
// they work against any Vault-compatible server too.
//
// New returns the root command; main adds the server command, then calls
// Execute, which accepts Vault's single-dash long flags (-format=json) as
// well as GNU ones (--format=json), prints errors in plain words
// ("Error: permission denied") and returns an *ExitError whose Code main
// passes to os.Exit: 2 for usage errors (and, as in Vault, for "no value
// found" and "sealed" from status), 1 for errors the server or the system
// reported.
//
// The address and token come from COFFER_ADDR and COFFER_TOKEN, falling
// back to VAULT_ADDR and VAULT_TOKEN, then to the token file written by
// "coffer login" (~/.coffer-token); --address overrides the address.
// Output is a table by default and the server's JSON envelope with
// --format=json; --field=NAME prints one value alone.
package cli
