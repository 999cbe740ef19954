package agent

import (
	"errors"
	"io/fs"
	"strings"
	"testing"
	"time"
)

func TestParseConfig(t *testing.T) {
	full := `
vault {
  address = "https://coffer:8200"
  ca_cert = "/etc/ca.pem"
}
auto_auth {
  method "kubernetes" {
    mount_path = "auth/k8s"
    config = { role = "web", token_path = "/tok" }
  }
  sink "file" {
    config = { path = "/home/app/.token", mode = 0600 }
  }
}
template {
  source      = "/etc/t.tmpl"
  destination = "/coffer/secrets/a"
  perms       = "0644"
  command     = "kill -HUP 1"
  error_on_missing_key = true
}
template_config { static_secret_render_interval = "30s" }
listener "tcp" {
  address     = "127.0.0.1:8100"
  tls_disable = true
}
exit_after_auth = true
`
	cfg, err := ParseConfig([]byte(full), "full.hcl")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Address != "https://coffer:8200" || cfg.CACert != "/etc/ca.pem" || !cfg.ExitAfterAuth || cfg.ListenAddr != "127.0.0.1:8100" || cfg.StaticInterval != 30*time.Second {
		t.Errorf("cfg = %+v", cfg)
	}
	if m := cfg.Method; m == nil || m.Type != "kubernetes" || m.MountPath != "auth/k8s" || m.Options["role"] != "web" || m.Options["token_path"] != "/tok" {
		t.Errorf("method = %+v", cfg.Method)
	}
	if len(cfg.Sinks) != 1 || cfg.Sinks[0].Mode != 0o600 {
		t.Errorf("sinks = %+v", cfg.Sinks)
	}
	if len(cfg.Templates) != 1 || cfg.Templates[0].Perms != 0o644 || !cfg.Templates[0].ErrorOnMissingKey || cfg.Templates[0].Command == "" {
		t.Errorf("templates = %+v", cfg.Templates)
	}

	def, err := ParseConfig([]byte(`
auto_auth {
  method "approle" {
    config = { role_id_file_path = "r", secret_id_file_path = "s" }
  }
  sink "file" {
    config = { path = "/t" }
  }
}
template {
  contents    = "x"
  destination = "/d"
}`), "def.hcl")
	if err != nil {
		t.Fatal(err)
	}
	if def.Method.MountPath != "auth/approle" || def.Sinks[0].Mode != 0o640 || def.Templates[0].Perms != 0o400 {
		t.Errorf("defaults: mount %q sink mode %v perms %v; want auth/approle, 0640, 0400", def.Method.MountPath, def.Sinks[0].Mode, def.Templates[0].Perms)
	}
}

func TestParseConfigRejects(t *testing.T) {
	for name, tc := range map[string]struct{ src, want string }{
		"unknown block":                {`cache {}`, "cache"},
		"two server blocks":            {"coffer {}\nvault {}", "only one coffer"},
		"unknown method":               {"auto_auth {\n method \"aws\" {}\n}", `"aws" is not supported`},
		"kubernetes without role":      {"auto_auth {\n method \"kubernetes\" {}\n}", "config.role is required"},
		"token_file without path":      {"auto_auth {\n method \"token_file\" {}\n}", "token_file_path is required"},
		"approle without secret file":  {"auto_auth {\n method \"approle\" { config = { role_id_file_path = \"r\" } }\n}", "secret_id_file_path"},
		"two methods":                  {"auto_auth {\n method \"token_file\" { config = { token_file_path = \"a\" } }\n method \"token_file\" { config = { token_file_path = \"a\" } }\n}", "exactly one method"},
		"template with both sources":   {"template {\n source = \"a\"\n contents = \"b\"\n destination = \"d\"\n}", "exactly one of source and contents"},
		"template without destination": {"template {\n contents = \"b\"\n}", "destination"},
		"bad perms":                    {"template {\n contents = \"b\"\n destination = \"d\"\n perms = \"0999\"\n}", "octal file mode"},
		"perms too wide":               {"template {\n contents = \"b\"\n destination = \"d\"\n perms = \"7777\"\n}", "octal file mode"},
		"bad interval":                 {"template_config { static_secret_render_interval = \"soon\" }", "static_secret_render_interval"},
		"tls listener":                 {"listener \"tcp\" { address = \"x\" }", "tls_disable"},
		"namespace":                    {"auto_auth {\n method \"token_file\" {\n namespace = \"ns1\"\n config = { token_file_path = \"a\" }\n }\n}", "namespaces"},
		"syntax error":                 {"coffer {", "config"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := ParseConfig([]byte(tc.src), "config")
			if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("ParseConfig = %v, want ErrConfig mentioning %q", err, tc.want)
			}
		})
	}
}

func TestParseMode(t *testing.T) {
	for in, want := range map[string]fs.FileMode{"": 0o400, "0640": 0o640, "640": 0o640, "0400": 0o400, "777": 0o777} {
		if got, err := parseMode(in, 0o400); err != nil || got != want {
			t.Errorf("parseMode(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"0800", "rw", "-1", "1000"} {
		if _, err := parseMode(in, 0); err == nil {
			t.Errorf("parseMode(%q) succeeded", in)
		}
	}
}

func FuzzParseConfig(f *testing.F) {
	f.Add("coffer {\n address = \"http://x\"\n}\ntemplate {\n contents = \"{{ secret \\\"a\\\" }}\"\n destination = \"/d\"\n perms = \"0640\"\n}")
	f.Add("auto_auth {\n method \"kubernetes\" { config = { role = \"r\" } }\n}")
	f.Fuzz(func(t *testing.T, src string) {
		cfg, err := ParseConfig([]byte(src), "fuzz")
		if err != nil {
			if !errors.Is(err, ErrConfig) {
				t.Fatalf("error %v does not wrap ErrConfig", err)
			}
			return
		}
		for _, tc := range cfg.Templates {
			if tc.Perms&^0o777 != 0 || tc.Destination == "" {
				t.Fatalf("accepted template %+v", tc)
			}
		}
	})
}
