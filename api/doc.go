// Package api is the Go client for Coffer's HTTP API, which is compatible
// with HashiCorp Vault's. It imports nothing from Coffer's internal
// packages, so other programs can use it.
//
// A Client sends requests under /v1/ with the token in X-Vault-Token:
//
//	c, err := api.NewClient(api.ConfigFromEnv(os.Getenv, home))
//	r, err := c.Read(ctx, "secret/data/myapp")
//	fmt.Println(r.Data["data"])
//
// Most endpoints answer with the Vault envelope, decoded into a Response
// by Do and its helpers Read, Write, List and Delete. The few that do not
// (sys/seal-status, sys/health, sys/init, sys/unseal, the storage backup
// stream) are reached with Raw or RawJSON, or with the typed helpers
// SealStatus, Health, Init and Unseal.
//
// Every failure the server reports is an *Error carrying the HTTP status
// and the server's messages; errors.Is(err, ErrNotFound),
// ErrPermissionDenied and ErrSealed let callers branch without parsing
// text. Numbers in Data are json.Number, so large integers survive.
//
// A Client is safe for concurrent use; WithToken returns a copy that uses
// another token.
package api
