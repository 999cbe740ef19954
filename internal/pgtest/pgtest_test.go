package pgtest

import (
	"context"
	"errors"
	"os"
	"testing"
)

func TestServerLifecycle(t *testing.T) {
	ctx := context.Background()
	s, err := Start(ctx, Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Stop() })

	c, err := s.Connect(ctx, s.SuperUser, s.SuperPassword)
	if err != nil {
		t.Fatalf("superuser login over TCP: %v", err)
	}
	var super bool
	if err := c.QueryRow(ctx, `SELECT rolsuper FROM pg_roles WHERE rolname = current_user`).Scan(&super); err != nil || !super {
		t.Errorf("current user is superuser = %v, %v; want true", super, err)
	}
	c.Close(ctx)

	if c, err := s.Connect(ctx, s.SuperUser, "wrong-password"); err == nil {
		c.Close(ctx)
		t.Error("login with a wrong password succeeded; TCP logins must need the password")
	}
	if ok, err := s.RoleExists(ctx, s.SuperUser); err != nil || !ok {
		t.Errorf("RoleExists(%q) = %v, %v; want true", s.SuperUser, ok, err)
	}

	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := s.Stop(); err != nil {
		t.Errorf("second Stop = %v, want nil (idempotent)", err)
	}
	if _, err := os.Stat(s.Dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("data directory still there after Stop: %v", err)
	}
}

func TestMissingBinariesSaySo(t *testing.T) {
	_, err := Start(context.Background(), Config{BinDir: t.TempDir()})
	if !errors.Is(err, ErrNoBinaries) {
		t.Fatalf("Start with an empty BinDir = %v, want ErrNoBinaries", err)
	}
}
