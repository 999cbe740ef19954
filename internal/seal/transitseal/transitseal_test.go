package transitseal

import (
	"errors"
	"net"
	"strings"
	"testing"

	"github.com/coffer-dev/coffer/internal/seal"
)

// The round trip against a real server is in tests/compat (a real coffer
// process's transit engine); here: config and unreachable servers.

func TestNewValidates(t *testing.T) {
	noenv := func(string) string { return "" }
	for name, cfg := range map[string]Config{
		"no address":              {Token: "t", KeyName: "k"},
		"no token":                {Address: "http://127.0.0.1:1", KeyName: "k"},
		"no key":                  {Address: "http://127.0.0.1:1", Token: "t"},
		"key with a slash":        {Address: "http://127.0.0.1:1", Token: "t", KeyName: "a/b"},
		"client cert without key": {Address: "http://127.0.0.1:1", Token: "t", KeyName: "k", TLSClientCert: "/x"},
		"unreadable CA":           {Address: "http://127.0.0.1:1", Token: "t", KeyName: "k", TLSCACert: "/nonexistent/ca.pem"},
		"address is not a URL":    {Address: "127.0.0.1:1", Token: "t", KeyName: "k"},
	} {
		t.Run(name, func(t *testing.T) {
			cfg.Getenv = noenv
			_, err := New(cfg)
			if !errors.Is(err, seal.ErrInvalidConfig) {
				t.Fatalf("New = %v, want ErrInvalidConfig", err)
			}
			if strings.Contains(err.Error(), "s3cr3t") {
				t.Error("error holds the token")
			}
		})
	}
	env := map[string]string{"VAULT_ADDR": "http://127.0.0.1:1", "VAULT_TOKEN": "s3cr3t"}
	if _, err := New(Config{KeyName: "k", Getenv: func(k string) string { return env[k] }}); err != nil {
		t.Errorf("New with VAULT_ADDR/VAULT_TOKEN from the environment: %v", err)
	}
}

func TestUnreachableServerIsKeyUnavailable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens there now
	s, err := New(Config{Address: "http://" + addr, Token: "s3cr3t", KeyName: "unseal"})
	if err != nil {
		t.Fatal(err)
	}
	for name, call := range map[string]func() error{
		"wrap":   func() error { _, err := s.Wrap(t.Context(), make([]byte, 32)); return err },
		"unwrap": func() error { _, err := s.Unwrap(t.Context(), []byte("vault:v1:AAAA")); return err },
	} {
		err := call()
		if !errors.Is(err, seal.ErrKeyUnavailable) || !strings.Contains(err.Error(), addr) {
			t.Errorf("%s = %v, want ErrKeyUnavailable naming %s", name, err, addr)
		}
		if strings.Contains(err.Error(), "s3cr3t") {
			t.Errorf("%s error holds the token", name)
		}
	}
}

func TestConfigFromBlock(t *testing.T) {
	got, err := ConfigFromBlock(map[string]any{
		"address": "https://a:8200", "token": "t", "key_name": "k", "mount_path": "unseal/",
		"tls_skip_verify": true, "disable_renewal": "false", "namespace": "",
	})
	if err != nil || got.Address != "https://a:8200" || got.KeyName != "k" || got.MountPath != "unseal/" || !got.TLSSkipVerify {
		t.Errorf("ConfigFromBlock = %+v, %v", got, err)
	}
	for name, attrs := range map[string]map[string]any{
		"unknown setting":   {"adress": "x"},
		"number as address": {"address": int64(1)},
		"a namespace":       {"namespace": "team-a"},
	} {
		if _, err := ConfigFromBlock(attrs); !errors.Is(err, seal.ErrInvalidConfig) {
			t.Errorf("%s: err = %v, want ErrInvalidConfig", name, err)
		}
	}
}
