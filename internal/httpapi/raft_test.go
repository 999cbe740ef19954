package httpapi

import (
	"testing"

	vault "github.com/hashicorp/vault/api"
)

func TestIndexHeaderRoundTrip(t *testing.T) {
	h := encodeIndex("c0ffee", 4242)
	st, err := vault.ParseReplicationState(h, nil)
	if err != nil {
		t.Fatalf("the Vault client cannot parse our X-Vault-Index: %v", err)
	}
	if st.LocalIndex != 4242 || st.ClusterID != "c0ffee" {
		t.Errorf("parsed %+v, want local index 4242, cluster c0ffee", st)
	}
	for name, tc := range map[string]struct {
		in   []string
		want uint64
	}{
		"no header is index 0":                    {nil, 0},
		"the highest index wins":                  {[]string{encodeIndex("c", 7), encodeIndex("c", 9), encodeIndex("c", 8)}, 9},
		"garbage is ignored":                      {[]string{"%%%", "djE6Yzp4OjA6eA==", encodeIndex("c", 3)}, 3},
		"a non-v1 state is ignored":               {[]string{"djI6YzozOjA6YWI="}, 0},
		"a negative index is ignored":             {[]string{"djE6YzotMTowOmFi"}, 0},
		"a state without its checksum is ignored": {[]string{"djE6Yzo1OjA="}, 0},
	} {
		t.Run(name, func(t *testing.T) {
			if got := decodeIndex(tc.in); got != tc.want {
				t.Errorf("decodeIndex(%q) = %d, want %d", tc.in, got, tc.want)
			}
		})
	}
}

func FuzzDecodeIndex(f *testing.F) {
	f.Add(encodeIndex("c", 1))
	f.Add("djE6Yzp4OjA6eA==")
	f.Fuzz(func(t *testing.T, s string) {
		_ = decodeIndex([]string{s})
	})
}
