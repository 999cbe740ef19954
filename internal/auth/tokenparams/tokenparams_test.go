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
	for _, remote := range []string{"10.1.2.4:1", "garbage", ""} {
		if _, err := p.Auth(remote); !errors.Is(err, ErrCIDR) {
			t.Errorf("Auth(%q) = %v, want ErrCIDR", remote, err)
		}
	}
}
