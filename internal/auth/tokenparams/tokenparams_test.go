package tokenparams

import (
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/coffer-dev/coffer/internal/logical"
)

func TestApplyRefusesBadValues(t *testing.T) {
	for name, body := range map[string]string{
		"negative token_num_uses":    `{"token_num_uses": -1}`,
		"malformed bound CIDR":       `{"token_bound_cidrs": ["10.0.0.0/33"]}`,
		"batch tokens":               `{"token_type": "batch"}`,
		"unknown token type":         `{"token_type": "weird"}`,
		"ttl above max_ttl":          `{"token_ttl": "2h", "token_max_ttl": "1h"}`,
		"deprecated ttl above max":   `{"ttl": "2h", "max_ttl": "1h"}`,
		"bound CIDR that is no addr": `{"bound_cidrs": "nope"}`,
	} {
		t.Run(name, func(t *testing.T) {
			var r Request
			if err := logical.DecodeJSON([]byte(body), &r); err != nil {
				t.Fatal(err)
			}
			var p Params
			err := r.Apply(&p)
			var le *logical.Error
			if !errors.As(err, &le) || le.Code != logical.Invalid {
				t.Errorf("Apply(%s) = %v, want an Invalid error", body, err)
			}
		})
	}
}

func TestApplyPrefersTokenNamesAndAuthHonoursCIDRs(t *testing.T) {
	var r Request
	body := `{"token_policies": "B, a ,b", "policies": "ignored", "token_ttl": "1h", "ttl": "5m",
		"token_max_ttl": "2h", "token_explicit_max_ttl": "90m", "token_bound_cidrs": ["10.1.2.3", "192.168.0.0/16"]}`
	if err := logical.DecodeJSON([]byte(body), &r); err != nil {
		t.Fatal(err)
	}
	var p Params
	if err := r.Apply(&p); err != nil {
		t.Fatal(err)
	}
	want := Params{Policies: []string{"a", "b"}, TTL: time.Hour, MaxTTL: 2 * time.Hour, ExplicitMaxTTL: 90 * time.Minute,
		BoundCIDRs: []string{"10.1.2.3/32", "192.168.0.0/16"}}
	if !reflect.DeepEqual(p, want) {
		t.Fatalf("Apply = %+v, want %+v", p, want)
	}
	a, err := p.Auth("192.168.7.7:4242")
	if err != nil || a.MaxTTL != 90*time.Minute || a.TTL != time.Hour || !reflect.DeepEqual(a.Policies, []string{"a", "b"}) {
		t.Errorf("Auth from inside = %+v, %v; want max TTL 90m, TTL 1h, policies [a b]", a, err)
	}
	if err == nil && !reflect.DeepEqual(a.BoundCIDRs, want.BoundCIDRs) {
		t.Errorf("Auth BoundCIDRs = %v, want %v (the token keeps them)", a.BoundCIDRs, want.BoundCIDRs)
	}
	if err == nil && len(a.BoundCIDRs) > 0 {
		a.BoundCIDRs[0] = "0.0.0.0/0"
		if p.BoundCIDRs[0] != "10.1.2.3/32" {
			t.Errorf("changing the Auth's BoundCIDRs changed the role's: %v", p.BoundCIDRs)
		}
	}
	for _, remote := range []string{"10.1.2.4:1", "garbage", ""} {
		if _, err := p.Auth(remote); !errors.Is(err, ErrCIDR) {
			t.Errorf("Auth(%q) = %v, want ErrCIDR", remote, err)
		}
	}
}

func TestAuthWithoutCIDRsBindsNothing(t *testing.T) {
	a, err := (&Params{}).Auth("")
	if err != nil || a.BoundCIDRs != nil {
		t.Errorf("Auth of a role without CIDRs = %+v, %v; want no BoundCIDRs", a, err)
	}
}

func TestFormatCIDRs(t *testing.T) {
	for name, tc := range map[string]struct{ in, want []string }{
		"nothing is nil":                   {nil, nil},
		"a single IPv4 address is bare":    {[]string{"127.0.0.1/32"}, []string{"127.0.0.1"}},
		"a single IPv6 address is bare":    {[]string{"::1/128"}, []string{"::1"}},
		"a block keeps its length":         {[]string{"10.0.0.0/8", "fd00::/8"}, []string{"10.0.0.0/8", "fd00::/8"}},
		"an unparsable entry is unchanged": {[]string{"nope"}, []string{"nope"}},
	} {
		t.Run(name, func(t *testing.T) {
			if got := FormatCIDRs(tc.in); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("FormatCIDRs(%v) = %v, want %v", tc.in, got, tc.want)
			}
		})
	}
}

func TestRemoteAllowed(t *testing.T) {
	cidrs := []string{"10.0.0.0/8", "::1/128"}
	for name, tc := range map[string]struct {
		cidrs  []string
		remote string
		want   bool
	}{
		"no bounds allow any address":        {nil, "192.0.2.1:80", true},
		"no bounds allow even no address":    {nil, "", true},
		"an address inside with a port":      {cidrs, "10.2.3.4:5555", true},
		"an address inside without a port":   {cidrs, "10.2.3.4", true},
		"IPv6 loopback in brackets":          {cidrs, "[::1]:8200", true},
		"an IPv4-mapped address is unmapped": {cidrs, "[::ffff:10.0.0.1]:1", true},
		"an address outside":                 {cidrs, "192.0.2.1:80", false},
		"no address is outside every block":  {cidrs, "", false},
		"an unparsable address is outside":   {cidrs, "somewhere:80", false},
	} {
		t.Run(name, func(t *testing.T) {
			if got := RemoteAllowed(tc.cidrs, tc.remote); got != tc.want {
				t.Errorf("RemoteAllowed(%v, %q) = %v, want %v", tc.cidrs, tc.remote, got, tc.want)
			}
		})
	}
}
