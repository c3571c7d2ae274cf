package etcdkv_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/dhdfs/dhdfs/cluster/kv"
	"github.com/dhdfs/dhdfs/cluster/kv/etcdkv"
	"github.com/dhdfs/dhdfs/cluster/kv/etcdkv/etcdtest"
	"github.com/dhdfs/dhdfs/cluster/kv/kvtest"
)

func TestConformance(t *testing.T) {
	c := etcdtest.Start(t, 3)
	var n atomic.Int64
	urls := map[kv.Engine]string{}
	open := func(t *testing.T, u string) kv.Engine {
		e, err := kv.Open(u)
		if err != nil {
			t.Fatal(err)
		}
		urls[e] = u
		return e
	}
	kvtest.Run(t, kvtest.Harness{
		// Each test its own prefix: an empty store on the same cluster.
		Open: func(t *testing.T) kv.Engine { return open(t, c.URL(fmt.Sprintf("/test/%d", n.Add(1)))) },
		Reopen: func(t *testing.T, e kv.Engine) kv.Engine {
			e.Close()
			return open(t, urls[e])
		},
	})
}

func TestBadURLs(t *testing.T) {
	for _, u := range []string{"etcd:///prefix", "etcd://127.0.0.1:1", "etcd://127.0.0.1:1/p?max-txn-ops=x", "etcd://127.0.0.1:1/p?timeout=-1s"} {
		if e, err := kv.Open(u); err == nil {
			e.Close()
			t.Errorf("kv.Open(%q) succeeded", u)
		}
	}
}

// Losing the leader mid-workload loses no acknowledged write: every
// increment Update returned nil for is in the final count.
func TestLeaderLoss(t *testing.T) {
	c := etcdtest.Start(t, 3)
	e, err := kv.Open(c.URL("/leader"))
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	ctx := context.Background()
	acked := 0
	incr := func() error {
		return kv.Update(ctx, e, func(tx kv.Txn) error {
			n := 0
			if v, err := tx.Get([]byte("n")); err == nil {
				n, _ = strconv.Atoi(string(v))
			} else if !errors.Is(err, kv.ErrNotFound) {
				return err
			}
			return tx.Set([]byte("n"), []byte(strconv.Itoa(n+1)))
		})
	}
	for i := 0; i < 300; i++ {
		if i == 100 {
			t.Logf("stopped leader m%d", c.StopLeader(t))
		}
		if err := incr(); err != nil {
			// A write whose answer was lost with the leader may or may not
			// have landed; it was not acknowledged.
			t.Logf("increment %d: %v", i, err)
			continue
		}
		acked++
	}
	var got int
	err = e.View(ctx, func(r kv.Reader) error {
		v, err := r.Get([]byte("n"))
		got, _ = strconv.Atoi(string(v))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if got < acked || got > 300 {
		t.Fatalf("%d increments acknowledged, the counter says %d", acked, got)
	}
	if acked < 250 {
		t.Fatalf("only %d of 300 increments succeeded across a leader change", acked)
	}
	var _ = etcdkv.DefaultMaxTxnOps
}
