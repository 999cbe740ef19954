package events

import (
	"testing"
	"time"
)

func TestMatch(t *testing.T) {
	for _, tc := range []struct {
		pattern, s string
		want       bool
	}{
		{"*", "kv-v2/data-write", true},
		{"kv*", "kv-v2/data-write", true},
		{"kv*", "kv-v1/write", true},
		{"kv-v2/data-*", "kv-v2/data-write", true},
		{"kv-v2/data-*", "kv-v2/metadata-write", false},
		{"kv-v2/data-write", "kv-v2/data-write", true},
		{"kv-v2/data-write", "kv-v2/data-writes", false},
		{"*write", "kv-v2/data-write", true},
		{"*write", "kv-v2/data-delete", false},
		{"kv*data*write", "kv-v2/data-write", true},
		{"kv*data*write", "kv-v2/metadata-delete", false},
		{"a*a", "a", false},
		{"", "", true},
	} {
		if got := Match(tc.pattern, tc.s); got != tc.want {
			t.Errorf("Match(%q, %q) = %v, want %v", tc.pattern, tc.s, got, tc.want)
		}
	}
}

func TestPublishFiltersAndNeverBlocks(t *testing.T) {
	b := New(2)
	all := b.Subscribe("*", nil)
	kv := b.Subscribe("kv-v2/*", func(e Event) bool { return e.DataPath != "secret/data/hidden" })
	defer all.Close()
	defer kv.Close()

	b.Publish(Event{Type: "kv-v2/data-write", DataPath: "secret/data/app"})
	b.Publish(Event{Type: "kv-v2/data-write", DataPath: "secret/data/hidden"})
	b.Publish(Event{Type: "kv-v1/write", DataPath: "kv/app"})

	done := make(chan struct{})
	go func() {
		for i := 0; i < 1000; i++ { // nobody reads: must not block
			b.Publish(Event{Type: "kv-v1/write"})
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Publish blocked on a subscriber that does not read")
	}
	if e := <-kv.C; e.DataPath != "secret/data/app" {
		t.Errorf("kv subscriber got %+v first", e)
	}
	select {
	case e := <-kv.C:
		t.Errorf("kv subscriber got a filtered or unmatched event: %+v", e)
	default:
	}
	if all.Dropped() == 0 {
		t.Error("a full subscriber dropped nothing")
	}
}

func TestCloseIsIdempotent(t *testing.T) {
	b := New(1)
	s := b.Subscribe("*", nil)
	s.Close()
	s.Close()
	if _, ok := <-s.C; ok {
		t.Error("C is not closed")
	}
	b.Publish(Event{Type: "x"}) // must not panic on a closed subscriber
	if n := b.Subscribers(); n != 0 {
		t.Errorf("Subscribers() = %d after Close", n)
	}
}
