package logical

import "context"

type remoteAddrKey struct{}

// WithRemoteAddr returns ctx carrying the client's address ("host:port"),
// for the core's entry points that take no Request (Authorize, Subscribe,
// CheckToken and those built on them): a token with bound CIDRs is
// checked against it.
func WithRemoteAddr(ctx context.Context, addr string) context.Context {
	return context.WithValue(ctx, remoteAddrKey{}, addr)
}

// RemoteAddrFrom returns the address WithRemoteAddr put in ctx, or "" (an
// address no bound CIDR contains).
func RemoteAddrFrom(ctx context.Context) string {
	addr, _ := ctx.Value(remoteAddrKey{}).(string)
	return addr
}
