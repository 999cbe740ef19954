package kv

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"testing"

	"github.com/coffer-dev/coffer/internal/logical"
)

// A key written in the older layout (metadata JSON at metadata/<key>, no
// versions/<key>/meta) reads, lists and writes as before; its first write
// moves the metadata next to its versions and leaves an empty listing
// entry.
func TestOlderLayoutKeyIsMoved(t *testing.T) {
	ctx := context.Background()
	f := newV2(t)
	must(t, f.b, logical.UpdateOperation, "data/app/db", `{"data":{"v":"one"}}`)
	must(t, f.b, logical.UpdateOperation, "data/app/db", `{"data":{"v":"two"}}`)

	// Rewrite it into the older layout by hand.
	raw, err := f.s.Get(ctx, metaKey("app/db"))
	if err != nil {
		t.Fatal(err)
	}
	if err := f.s.Apply(ctx, []logical.Op{
		{Key: listKey("app/db"), Value: raw},
		{Key: metaKey("app/db"), Delete: true},
	}); err != nil {
		t.Fatal(err)
	}
	f = &fixture{b: reopen(t, f), s: f.s, clk: f.clk}

	d := wire(t, must(t, f.b, logical.ReadOperation, "data/app/db", ""))
	if d["data"].(map[string]any)["v"] != "two" || d["metadata"].(map[string]any)["version"] != float64(2) {
		t.Fatalf("read of an older-layout key = %v", d)
	}
	if got := wire(t, must(t, f.b, logical.ListOperation, "metadata/app/", ""))["keys"]; !slices.Equal(stringsOf(got), []string{"db"}) {
		t.Errorf("list = %v, want [db]", got)
	}
	must(t, f.b, logical.UpdateOperation, "data/app/db", `{"options":{"cas":2},"data":{"v":"three"}}`)
	if v, err := f.s.Get(ctx, listKey("app/db")); err != nil || len(v) != 0 {
		t.Errorf("listing entry after the move = %q, %v; want empty", v, err)
	}
	var m keyMeta
	raw, err = f.s.Get(ctx, metaKey("app/db"))
	if err != nil || json.Unmarshal(raw, &m) != nil || m.CurrentVersion != 3 || len(m.Versions) != 3 {
		t.Errorf("moved metadata = %s, %v", raw, err)
	}

	// Deleting the key removes every entry it had.
	must(t, f.b, logical.DeleteOperation, "metadata/app/db", "")
	for _, k := range []string{metaKey("app/db"), listKey("app/db"), versionKey("app/db", 3)} {
		if _, err := f.s.Get(ctx, k); !errors.Is(err, logical.ErrNotFound) {
			t.Errorf("after metadata delete, %s: %v, want not found", k, err)
		}
	}
	if got, _ := f.s.List(ctx, ""); got != nil {
		t.Errorf("storage after deleting the only key lists %q", got)
	}
}

// reopen returns a new engine over f's storage (an empty cache), as after
// a restart.
func reopen(t *testing.T, f *fixture) *V2 {
	t.Helper()
	be, err := Factory(context.Background(), logical.BackendConfig{
		Storage: f.s, MountPoint: "secret/", Options: map[string]string{"version": "2"}, Now: f.clk.Now, Cache: withCache,
	})
	if err != nil {
		t.Fatal(err)
	}
	return be.(*V2)
}

func stringsOf(v any) []string {
	var out []string
	for _, s := range v.([]any) {
		out = append(out, s.(string))
	}
	return out
}
