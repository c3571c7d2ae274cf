package memkv_test

import (
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
