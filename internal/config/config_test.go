package config

import (
	"strings"
	"testing"
)

func TestParseVaultShapedConfig(t *testing.T) {
	src := `
storage "bolt" {
  path = "/var/lib/coffer/coffer.db"
}
listener "tcp" {
  address     = "127.0.0.1:8201"
  tls_disable = true
  max_request_size = 1048576
}
api_addr  = "http://127.0.0.1:8201"
log_level = "debug"
ui        = true
audit "file" "file/" {
  description = "main"
  options = { file_path = "/var/log/coffer/audit.log" }
}
`
	c, err := Parse("coffer.hcl", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if c.Storage.Type != "bolt" || c.Storage.Options["path"] != "/var/lib/coffer/coffer.db" {
		t.Errorf("storage = %+v", c.Storage)
	}
	if len(c.Listeners) != 1 {
		t.Fatalf("listeners = %+v", c.Listeners)
	}
	l := c.Listeners[0]
	if l.Address != "127.0.0.1:8201" || !l.TLSDisable || l.MaxRequestSize != 1<<20 {
		t.Errorf("listener = %+v", l)
	}
	if c.APIAddr != "http://127.0.0.1:8201" || c.LogLevel != "debug" {
		t.Errorf("api_addr/log_level = %q %q", c.APIAddr, c.LogLevel)
	}
	if len(c.Warnings) != 1 || !strings.Contains(c.Warnings[0], "ui") {
		t.Errorf("warnings = %q, want one about ui", c.Warnings)
	}
	if len(c.Audits) != 1 || c.Audits[0].Labels[1] != "file/" {
		t.Fatalf("audits = %+v", c.Audits)
	}
	opts, _ := c.Audits[0].Attributes["options"].(map[string]any)
	if opts["file_path"] != "/var/log/coffer/audit.log" {
		t.Errorf("audit options = %v", c.Audits[0].Attributes)
	}
}

func TestParseErrors(t *testing.T) {
	for name, tc := range map[string]struct{ src, want string }{
		"no storage":            {`listener "tcp" { tls_disable = true }`, "storage block is required"},
		"no listener":           {`storage "bolt" { path = "x" }`, "listener"},
		"unknown setting":       {"storage \"bolt\" { path = \"x\" }\nlistener \"tcp\" { tls_disable = true }\nbogus = 1", `unknown setting "bogus"`},
		"unknown block":         {`frobnicate "x" {}`, `unknown block "frobnicate"`},
		"tls without files":     {"storage \"bolt\" { path = \"x\" }\nlistener \"tcp\" { address = \"127.0.0.1:1\" }", "tls_cert_file"},
		"wrong type":            {"storage \"bolt\" { path = \"x\" }\nlistener \"tcp\" { tls_disable = \"maybe\" }", "tls_disable must be true or false"},
		"syntax error has line": {"storage \"bolt\" {\n path = \n}", "coffer.hcl:"},
		"bad log level":         {"storage \"bolt\" { path = \"x\" }\nlistener \"tcp\" { tls_disable = true }\nlog_level = \"loud\"", "log_level"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := Parse("coffer.hcl", []byte(tc.src))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Parse error = %v, want it to contain %q", err, tc.want)
			}
		})
	}
}
