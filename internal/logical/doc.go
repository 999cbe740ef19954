// Package logical holds the types shared by the request pipeline, the
// secrets engines and the auth methods: a Request, a Response, the one
// Error type with its codes, and the logical Storage an engine writes to.
//
// It knows nothing of HTTP: httpapi turns HTTP into a Request and a Response
// or Error back into HTTP, through one table of codes to statuses.
package logical
