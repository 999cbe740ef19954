package operator

import (
	"errors"
	"strings"
	"testing"
)

func TestRender(t *testing.T) {
	values := bytesMap(map[string]string{"user": "app", "password": "s3cret", "json": `{"a":[1,2]}`, "b64": "aGk="})
	for name, tc := range map[string]struct {
		tpl     string
		want    string
		wantErr error
	}{
		"plain variable":              {tpl: "{{ .user }}", want: "app"},
		"basic auth url":              {tpl: "postgres://{{ .user }}:{{ .password | urlquery }}@db", want: "postgres://app:s3cret@db"},
		"b64enc and b64dec":           {tpl: "{{ .b64 | b64dec }}/{{ .user | b64enc }}", want: "hi/YXBw"},
		"upper, lower, trim, replace": {tpl: `{{ " X " | trim | lower }}{{ .user | upper | replace "P" "p" }}`, want: "xApp"},
		"fromJson and toJson":         {tpl: `{{ (.json | fromJson).a | toJson }}`, want: "[1,2]"},
		"toYaml":                      {tpl: `{{ .json | fromJson | toYaml }}`, want: "a:\n- 1\n- 2"},
		"default on empty":            {tpl: `{{ "" | default "d" }}`, want: "d"},
		"sha256sum":                   {tpl: `{{ "a" | sha256sum }}`, want: "ca978112ca1bbdcafac231b39a23dc4da786eff8147c4e72b9807785afee48bb"},
		"missing key is an error":     {tpl: "{{ .pasword }}", wantErr: ErrTemplate},
		"syntax error":                {tpl: "{{ .user ", wantErr: ErrTemplate},
		"bad base64 is an error":      {tpl: "{{ .password | b64dec }}", wantErr: ErrTemplate},
	} {
		t.Run(name, func(t *testing.T) {
			got, err := Render(map[string]string{"k": tc.tpl}, values)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("Render error = %v, want %v", err, tc.wantErr)
			}
			if err != nil {
				if strings.Contains(err.Error(), "s3cret") {
					t.Errorf("error %q leaks a value", err)
				}
				return
			}
			if string(got["k"]) != tc.want {
				t.Errorf("Render = %q, want %q", got["k"], tc.want)
			}
		})
	}
}

func TestRenderWithoutTemplatesKeepsValues(t *testing.T) {
	v := bytesMap(map[string]string{"a": "1"})
	got, err := Render(nil, v)
	if err != nil || string(got["a"]) != "1" || len(got) != 1 {
		t.Errorf("Render(nil) = %q, %v", got, err)
	}
}

func TestFilterPEM(t *testing.T) {
	in := "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n-----BEGIN PRIVATE KEY-----\nBBBB\n-----END PRIVATE KEY-----\n"
	got, err := filterPEM("PRIVATE KEY", in)
	if err != nil || !strings.Contains(got, "BBBB") || strings.Contains(got, "AAAA") {
		t.Errorf("filterPEM = %q, %v", got, err)
	}
	if _, err := filterPEM("EC PRIVATE KEY", in); err == nil {
		t.Error("filterPEM found a block that is not there")
	}
}

func FuzzRender(f *testing.F) {
	f.Add("{{ .user | b64enc }}")
	f.Add("{{ .x }")
	f.Add(`{{ dict "a" .user | toJson }}`)
	f.Fuzz(func(t *testing.T, tpl string) {
		values := bytesMap(map[string]string{"user": "app", "password": "s3cret"})
		got, err := Render(map[string]string{"k": tpl}, values)
		if err != nil {
			if !errors.Is(err, ErrTemplate) {
				t.Fatalf("error %v does not wrap ErrTemplate", err)
			}
			if strings.Contains(err.Error(), "s3cret") && !strings.Contains(tpl, "s3cret") {
				t.Fatalf("error %q leaks a value", err)
			}
			return
		}
		if _, ok := got["k"]; !ok || len(got) != 1 {
			t.Fatalf("Render = %q, want exactly key k", got)
		}
	})
}
