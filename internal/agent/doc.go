// Package agent is `coffer agent`: it authenticates to a Coffer (or
// Vault) server over HTTP, writes the token to sinks, renders templates
// of secrets to files, and keeps them current.
//
// The configuration is HCL shaped like Vault Agent's, so an existing
// agent configuration ports by renaming the vault block to coffer (the
// vault name is accepted too):
//
//	coffer {
//	  address = "https://coffer:8200"
//	  ca_cert = "/etc/coffer/ca.pem"
//	}
//	auto_auth {
//	  method "kubernetes" { config = { role = "web" } }
//	  sink "file" { config = { path = "/home/app/.token" } }
//	}
//	template {
//	  contents    = "{{ with secret \"secret/data/web\" }}{{ .Data.data.password }}{{ end }}"
//	  destination = "/coffer/secrets/password"
//	}
//
// Templates are Go text/template with secret, env, base64Encode,
// base64Decode, toJSON, toJSONPretty and timestamp. Files are written
// atomically (temporary file, fsync, rename) with perms (default 0400),
// and only when their content changed; then the template's command runs
// and the application named by --signal-pid-file is signalled.
//
// Secrets stay current three ways: a change event from the server's
// event stream (sys/events/subscribe over WebSocket) re-reads the
// secrets it names at once; secrets without a lease are re-read every
// static_secret_render_interval as a fallback; leased secrets (dynamic
// database credentials) are renewed at two thirds of their lease and
// fetched anew once renewal stops extending them, before their max TTL.
// The token is renewed the same way, and a new login replaces it when it
// cannot be.
//
// The agent imports nothing from the server: it talks to it only through
// the api package.
package agent
