package badgerkv_test

import (
	"errors"
	"path/filepath"
	"testing"

	"github.com/dhdfs/dhdfs/cluster/kv"
	"github.com/dhdfs/dhdfs/cluster/kv/badgerkv"
	"github.com/dhdfs/dhdfs/cluster/kv/kvtest"
)

func TestConformance(t *testing.T) {
	dirs := map[kv.Engine]string{}
	kvtest.Run(t, kvtest.Harness{
		Open: func(t *testing.T) kv.Engine {
			dir := t.TempDir()
			e, err := kv.Open("badger://" + dir)
			if err != nil {
				t.Fatal(err)
			}
			dirs[e] = dir
			return e
		},
		Reopen: func(t *testing.T, e kv.Engine) kv.Engine {
			if err := e.Close(); err != nil {
				t.Fatal(err)
			}
			e2, err := kv.Open(dirs[e]) // a bare path is a Badger directory
			if err != nil {
				t.Fatal(err)
			}
			return e2
		},
	})
}

func TestOpenURL(t *testing.T) {
	dir := t.TempDir()
	for _, bad := range []string{"badger://host/x", "nosuch://x", ""} {
		if e, err := kv.Open(bad); err == nil {
			e.Close()
			t.Fatalf("kv.Open(%q) succeeded", bad)
		}
	}
	if _, err := kv.Open("nosuch://x"); !errors.Is(err, kv.ErrUnknownScheme) {
		t.Fatalf("an unknown scheme: %v", err)
	}
	e, err := kv.Open(filepath.Join(dir, "meta"))
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	if _, ok := e.(*badgerkv.Engine); !ok {
		t.Fatalf("a bare path opened a %T", e)
	}
}
