package barriertest

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/coffer-dev/coffer/internal/logical"
)

func TestStorageRoundTripsAndKeysWalksEveryLevel(t *testing.T) {
	ctx := context.Background()
	s := Storage(t)
	for _, k := range []string{"a", "d/b", "d/e/f", "z/y"} {
		if err := s.Put(ctx, k, []byte("v-"+k)); err != nil {
			t.Fatal(err)
		}
	}
	if got, err := s.Get(ctx, "d/e/f"); err != nil || string(got) != "v-d/e/f" {
		t.Errorf("Get(d/e/f) = %q, %v; want %q", got, err, "v-d/e/f")
	}
	if got, want := Keys(t, s, ""), []string{"a", "d/b", "d/e/f", "z/y"}; !slices.Equal(got, want) {
		t.Errorf("Keys(\"\") = %v, want %v", got, want)
	}
	if got, want := Keys(t, s, "d/"), []string{"d/b", "d/e/f"}; !slices.Equal(got, want) {
		t.Errorf("Keys(d/) = %v, want %v", got, want)
	}
	for _, k := range []string{"a", "d/b", "d/e/f", "z/y"} {
		if err := s.Delete(ctx, k); err != nil {
			t.Fatal(err)
		}
	}
	if got := Keys(t, s, ""); len(got) != 0 {
		t.Errorf("Keys after deleting everything = %v, want none", got)
	}
	if _, err := s.Get(ctx, "a"); !errors.Is(err, logical.ErrNotFound) {
		t.Errorf("Get of a deleted key = %v, want ErrNotFound", err)
	}
}

func TestEachStorageIsFresh(t *testing.T) {
	a, b := Storage(t), Storage(t)
	if err := a.Put(context.Background(), "k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Get(context.Background(), "k"); !errors.Is(err, logical.ErrNotFound) {
		t.Errorf("a second Storage sees the first one's entry: %v", err)
	}
}
