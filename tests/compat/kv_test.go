package compat

import (
	"errors"
	"net/http"
	"reflect"
	"sort"
	"testing"

	vault "github.com/hashicorp/vault/api"
)

// TestKVv2Lifecycle walks the Vault Go client's KVv2 API end to end.
func TestKVv2Lifecycle(t *testing.T) {
	_, c := startDev(t)
	kv := c.KVv2("secret")
	cx := ctx(t)

	s1, err := kv.Put(cx, "app/db", map[string]any{"user": "admin", "password": "s3cret"})
	if err != nil {
		t.Fatalf("put v1: %v", err)
	}
	if s1.VersionMetadata.Version != 1 {
		t.Errorf("first version = %d, want 1", s1.VersionMetadata.Version)
	}
	if _, err := kv.Put(cx, "app/db", map[string]any{"user": "admin", "password": "n3w"}, vault.WithCheckAndSet(1)); err != nil {
		t.Fatalf("put v2 with cas=1: %v", err)
	}
	if _, err := kv.Put(cx, "app/db", map[string]any{"x": "y"}, vault.WithCheckAndSet(1)); err == nil {
		t.Fatal("put with a stale cas succeeded")
	}

	got, err := kv.Get(cx, "app/db")
	if err != nil {
		t.Fatal(err)
	}
	if got.Data["password"] != "n3w" || got.VersionMetadata.Version != 2 {
		t.Errorf("latest = %v (v%d), want password n3w at v2", got.Data, got.VersionMetadata.Version)
	}
	old, err := kv.GetVersion(cx, "app/db", 1)
	if err != nil || old.Data["password"] != "s3cret" {
		t.Fatalf("version 1 = %v, %v", old, err)
	}

	patched, err := kv.Patch(cx, "app/db", map[string]any{"password": "p4tched", "port": "5432"})
	if err != nil {
		t.Fatalf("patch: %v", err)
	}
	if patched.VersionMetadata.Version != 3 {
		t.Errorf("patch made version %d, want 3", patched.VersionMetadata.Version)
	}
	got, _ = kv.Get(cx, "app/db")
	want := map[string]any{"user": "admin", "password": "p4tched", "port": "5432"}
	if !reflect.DeepEqual(got.Data, want) {
		t.Errorf("after patch = %v, want %v", got.Data, want)
	}

	if err := kv.Delete(cx, "app/db"); err != nil {
		t.Fatalf("delete latest: %v", err)
	}
	// As Vault: the latest version reads as data null with its metadata.
	if got, err := kv.Get(cx, "app/db"); err != nil || got.Data != nil || got.VersionMetadata.DeletionTime.IsZero() {
		t.Errorf("get after delete = %+v, %v; want no data and a deletion time", got, err)
	}
	if err := kv.Undelete(cx, "app/db", []int{3}); err != nil {
		t.Fatalf("undelete: %v", err)
	}
	if got, err := kv.Get(cx, "app/db"); err != nil || got.Data["password"] != "p4tched" {
		t.Errorf("get after undelete = %v, %v", got, err)
	}
	if err := kv.Destroy(cx, "app/db", []int{1}); err != nil {
		t.Fatalf("destroy: %v", err)
	}
	if got, err := kv.GetVersion(cx, "app/db", 1); err != nil || got.Data != nil || !got.VersionMetadata.Destroyed {
		t.Errorf("destroyed version 1 = %+v, %v; want no data, destroyed", got, err)
	}
	if _, err := kv.Get(cx, "never/written"); !errors.Is(err, vault.ErrSecretNotFound) {
		t.Errorf("get of a missing secret = %v, want ErrSecretNotFound", err)
	}

	if err := kv.PutMetadata(cx, "app/db", vault.KVMetadataPutInput{MaxVersions: 5, CustomMetadata: map[string]any{"owner": "team-a"}}); err != nil {
		t.Fatalf("put metadata: %v", err)
	}
	md, err := kv.GetMetadata(cx, "app/db")
	if err != nil {
		t.Fatalf("get metadata: %v", err)
	}
	if md.MaxVersions != 5 || md.CustomMetadata["owner"] != "team-a" || md.CurrentVersion != 3 || len(md.Versions) != 3 {
		t.Errorf("metadata = max %d custom %v current %d versions %d", md.MaxVersions, md.CustomMetadata, md.CurrentVersion, len(md.Versions))
	}
	if !md.Versions["1"].Destroyed {
		t.Error("metadata does not show version 1 destroyed")
	}

	if _, err := kv.Put(cx, "app/cache", map[string]any{"k": "v"}); err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(cx, "top", map[string]any{"k": "v"}); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{"secret/metadata", "secret/metadata/"} {
		sec, err := c.Logical().List(path)
		if err != nil {
			t.Fatalf("list %s: %v", path, err)
		}
		keys := strs(sec.Data["keys"])
		if !reflect.DeepEqual(keys, []string{"app/", "top"}) {
			t.Errorf("list %s = %v, want [app/ top]", path, keys)
		}
	}
	sec, err := c.Logical().List("secret/metadata/app")
	if err != nil {
		t.Fatal(err)
	}
	if keys := strs(sec.Data["keys"]); !reflect.DeepEqual(keys, []string{"cache", "db"}) {
		t.Errorf("list app/ = %v", keys)
	}

	if err := kv.DeleteMetadata(cx, "app/db"); err != nil {
		t.Fatalf("delete metadata: %v", err)
	}
	if _, err := kv.GetMetadata(cx, "app/db"); err == nil {
		t.Error("metadata still there after delete")
	}
	// A missing secret is a 404 with only "errors".
	resp, err := c.Logical().ReadRawWithData("secret/data/nope", nil)
	if resp == nil || resp.StatusCode != http.StatusNotFound {
		t.Fatalf("missing secret: resp=%v err=%v", resp, err)
	}
}

func strs(v any) []string {
	l, _ := v.([]any)
	out := make([]string, 0, len(l))
	for _, x := range l {
		s, _ := x.(string)
		out = append(out, s)
	}
	sort.Strings(out)
	return out
}

// TestKVv1AndMounts enables, tunes, lists and disables mounts.
func TestKVv1AndMounts(t *testing.T) {
	_, c := startDev(t)
	cx := ctx(t)
	if err := c.Sys().MountWithContext(cx, "kv1", &vault.MountInput{Type: "kv", Description: "v1 store"}); err != nil {
		t.Fatalf("mount kv1: %v", err)
	}
	if err := c.Sys().MountWithContext(cx, "kv1", &vault.MountInput{Type: "kv"}); err == nil {
		t.Error("mounting twice at the same path succeeded")
	}
	if err := c.Sys().MountWithContext(cx, "bogus", &vault.MountInput{Type: "no-such-engine"}); err == nil {
		t.Error("mounting an unknown type succeeded")
	}
	kv := c.KVv1("kv1")
	if err := kv.Put(cx, "team/key", map[string]any{"v": "1"}); err != nil {
		t.Fatal(err)
	}
	got, err := kv.Get(cx, "team/key")
	if err != nil || got.Data["v"] != "1" {
		t.Fatalf("kv1 get = %v, %v", got, err)
	}
	mounts, err := c.Sys().ListMountsWithContext(cx)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"secret/", "kv1/", "sys/", "cubbyhole/"} {
		if _, ok := mounts[p]; !ok {
			t.Errorf("sys/mounts lacks %s: %v", p, mounts)
		}
	}
	if mounts["secret/"].Options["version"] != "2" || mounts["kv1/"].Type != "kv" {
		t.Errorf("mount details wrong: secret=%+v kv1=%+v", mounts["secret/"], mounts["kv1/"])
	}
	if err := c.Sys().TuneMountWithContext(cx, "kv1", vault.MountConfigInput{DefaultLeaseTTL: "1h", MaxLeaseTTL: "2h"}); err != nil {
		t.Fatalf("tune: %v", err)
	}
	cfg, err := c.Sys().MountConfigWithContext(cx, "kv1")
	if err != nil || cfg.DefaultLeaseTTL != 3600 || cfg.MaxLeaseTTL != 7200 {
		t.Fatalf("tune read = %+v, %v", cfg, err)
	}
	if err := c.Sys().UnmountWithContext(cx, "kv1"); err != nil {
		t.Fatalf("unmount: %v", err)
	}
	if _, err := kv.Get(cx, "team/key"); err == nil {
		t.Error("data still served after unmount")
	}
	// Remount: the old data must be gone, not resurrected.
	if err := c.Sys().MountWithContext(cx, "kv1", &vault.MountInput{Type: "kv"}); err != nil {
		t.Fatal(err)
	}
	if s, err := kv.Get(cx, "team/key"); err == nil && s != nil {
		t.Errorf("old data visible after remount: %v", s.Data)
	}
	if err := c.Sys().UnmountWithContext(cx, "sys"); err == nil {
		t.Error("unmounting sys/ succeeded")
	}
	ui, err := c.Logical().Read("sys/internal/ui/mounts/secret")
	if err != nil || ui.Data["type"] != "kv" {
		t.Fatalf("ui mounts = %v, %v", ui, err)
	}
	if opts, _ := ui.Data["options"].(map[string]any); opts["version"] != "2" {
		t.Errorf("ui mounts options = %v", ui.Data["options"])
	}
}
