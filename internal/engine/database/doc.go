// Package database is the database secrets engine (mount type "database")
// for PostgreSQL, with Vault's paths and JSON:
//
//	config/<name>         connection: plugin_name "postgresql-database-plugin",
//	                      connection_url with {{username}}/{{password}}, username,
//	                      password (never read back), allowed_roles,
//	                      password_authentication (password|scram-sha-256),
//	                      verify_connection (default true), max_open_connections
//	reset/<name>          close and reopen the connection pool
//	rotate-root/<name>    give the root user a new random password nobody sees
//	roles/<name>          dynamic roles: db_name, creation/revocation/renew/
//	                      rollback_statements, default_ttl, max_ttl
//	creds/<role>          a new database user under a lease
//	static-roles/<name>   an existing user whose password is rotated every
//	                      rotation_period; rotation_strategy "alternating" with
//	                      alternate_username is Coffer's extension (docs/database.md)
//	static-creds/<name>   the current static credentials
//	rotate-role/<name>    rotate a static role now
//
// Statements are templates: {{name}} (also {{username}}) is the user,
// {{password}} its password (the SCRAM verifier with password_authentication
// = scram-sha-256) and {{expiration}} the VALID UNTIL time. Each statement
// runs as sent (PostgreSQL's simple protocol, so a statement may hold
// several commands and DO blocks); the statements of one operation run in
// one transaction, so a failing statement leaves nothing behind.
//
// Dynamic credentials are leased: creds returns a logical.SecretLease and
// the Backend implements logical.SecretEngine, so the core revokes (drops)
// the user when the lease expires or is revoked, terminating its sessions
// first, and renews it with VALID UNTIL. Static roles are rotated by
// logical.Periodic.
//
// Passwords and connection URLs with passwords never appear in responses
// other than creds and static-creds, nor in errors or logs.
package database
