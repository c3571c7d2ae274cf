package memkv_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/dhdfs/dhdfs/cluster/kv"
	"github.com/dhdfs/dhdfs/cluster/kv/kvtest"
	"github.com/dhdfs/dhdfs/cluster/kv/memkv"
)

func TestConformance(t *testing.T) {
	kvtest.Run(t, kvtest.Harness{Open: func(t *testing.T) kv.Engine { return memkv.New() }})
}

func TestOpenURL(t *testing.T) {
	e, err := kv.Open("mem://")
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	if _, ok := e.(*memkv.Engine); !ok {
		t.Fatalf("mem:// opened a %T", e)
	}
}

// mem://NAME keeps its data across Close, until Forget.
func TestNamed(t *testing.T) {
	n := 0
	kvtest.Run(t, kvtest.Harness{
		Open: func(t *testing.T) kv.Engine {
			n++
			e, err := kv.Open(fmt.Sprintf("mem://named-test/%d", n))
			if err != nil {
				t.Fatal(err)
			}
			return e
		},
		Reopen: func(t *testing.T, e kv.Engine) kv.Engine {
			e.Close()
			e, err := kv.Open(fmt.Sprintf("mem://named-test/%d", n))
			if err != nil {
				t.Fatal(err)
			}
			return e
		},
	})
	memkv.Forget("named-test/")
	e, err := kv.Open("mem://named-test/1")
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	if err := e.View(context.Background(), func(r kv.Reader) error {
		return r.Scan(nil, nil, kv.ScanOptions{}, func(k, _ []byte) error { return fmt.Errorf("key %q after Forget", k) })
	}); err != nil {
		t.Fatal(err)
	}
}
