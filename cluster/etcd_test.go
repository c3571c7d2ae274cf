package cluster

import (
	"context"
	"testing"

	"github.com/dhdfs/dhdfs/cluster/kv"
	_ "github.com/dhdfs/dhdfs/cluster/kv/etcdkv"
	"github.com/dhdfs/dhdfs/cluster/kv/etcdkv/etcdtest"
)

// A pool whose metadata lives in etcd (a real 3-member cluster on
// 127.0.0.1): files written, read back after a restart, healed, checked;
// home lost and rebuilt from a drive's copy of the config.
func TestPoolOnEtcd(t *testing.T) {
	c := etcdtest.Start(t, 3)
	tp := newTestPoolWithConfig(t, 3, 2, func(cfg *PoolConfig) { cfg.Meta = c.URL("/dhdfs/pool") })
	files := tp.putFiles(5)
	big := randBytes(9, 40*MinChunkSize+17)
	tp.put("/big", big)
	tp.reopen()
	for p, data := range files {
		tp.mustEqual(p, data)
	}
	tp.mustEqual("/big", big)
	if err := tp.RemovePath("/big", false); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := tp.GC(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if rep, err := tp.Fsck(ctx, false, nil); err != nil || len(rep.Problems) != 0 {
		t.Fatalf("fsck: %v %s", err, problemKinds(rep))
	}
	if _, err := Init(t.TempDir(), PoolConfig{Replicas: 2, ChunkSize: MinChunkSize, Hash: tp.Config().Hash, Meta: c.URL("/dhdfs/pool")}); err == nil {
		t.Fatal("a second pool was made on the same etcd prefix")
	}
	if _, err := tp.MirrorMeta(); err != nil {
		t.Fatal(err)
	}
	if err := tp.Close(); err != nil {
		t.Fatal(err)
	}
	// Home lost, the engine intact: only the config comes from a drive.
	home := t.TempDir() + "/home2"
	if rep, err := RebuildHome(ctx, tp.paths[0], home, Options{}, nil); err != nil || rep.Segments != 0 {
		t.Fatalf("rebuild with the engine intact: %+v, %v", rep, err)
	}
	reopenAndCheck := func(home string) {
		t.Helper()
		m, err := Open(home, Options{})
		if err != nil {
			t.Fatal(err)
		}
		rp := &testPool{Manager: m, t: t}
		for p, data := range files {
			rp.mustEqual(p, data)
		}
		if err := m.Close(); err != nil {
			t.Fatal(err)
		}
	}
	reopenAndCheck(home)

	// Home and the engine's keys lost: the drives' mirror fills the engine.
	eng, err := kv.Open(c.URL("/dhdfs/pool"))
	if err != nil {
		t.Fatal(err)
	}
	for more := true; more; {
		err := kv.Update(ctx, eng, func(txn kv.Txn) error {
			n := 0
			err := txn.Scan(nil, nil, kv.ScanOptions{Limit: 100, KeysOnly: true}, func(k, _ []byte) error {
				n++
				return txn.Delete(k)
			})
			more = n > 0
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	eng.Close()
	home3 := t.TempDir() + "/home3"
	if rep, err := RebuildHome(ctx, tp.paths[1], home3, Options{}, nil); err != nil || rep.Segments == 0 || rep.Fsck.Unrepaired() != 0 {
		t.Fatalf("rebuild into an emptied engine: %+v, %v", rep, err)
	}
	reopenAndCheck(home3)
}
