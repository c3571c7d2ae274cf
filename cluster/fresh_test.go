package cluster

import (
	"bytes"
	"context"
	"testing"
	"time"
)

// An fsync of a new chunk commits its record with the layer naming it:
// one metadata transaction for the write, not two.
func TestFsyncRecordsNewChunkWithItsLayer(t *testing.T) {
	onDisk(t) // journals need directory drives
	tp := newTestPoolWith(t, 3, 2, MinChunkSize, Options{SyncInterval: time.Hour})
	n, f := tp.createOpen("log")
	fsyncAt(t, f, randBytes(1, 300), 0)
	before := tp.meta.changes.Load()
	data := randBytes(2, 200)
	fsyncAt(t, f, data, 300)
	if got := tp.meta.changes.Load() - before; got != 1 {
		t.Fatalf("an fsync of a small append took %d metadata transactions, want 1", got)
	}
	ls, err := tp.slotAt(n.Ino, 0)
	if err != nil {
		t.Fatal(err)
	}
	top := ls[len(ls)-1].Ref
	rec, ok, err := tp.chunkRecordOf(top.ID)
	if err != nil || !ok || rec.Refs != 1 || len(rec.Holders) != 2 || len(rec.Sums) == 0 {
		t.Fatalf("record of the new chunk: %+v %v %v", rec, ok, err)
	}
	if tp.fresh.has(top.ID) {
		t.Fatal("the chunk is still fresh after its commit")
	}
	if err := f.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	tp.crash()
	tp.open()
	if got := tp.get("/log"); !bytes.Equal(got[300:], data) {
		t.Fatal("the fsynced append did not survive a crash")
	}
}

// Until its commit, a staged new chunk has no record: the deleters of
// copies that no record names, and the collector of an identical chunk
// whose last reference went, leave its copies alone.
func TestFreshChunkOutlivesDeleters(t *testing.T) {
	onDisk(t)
	tp := newTestPoolWith(t, 3, 2, MinChunkSize, Options{SyncInterval: time.Hour})
	ctx := context.Background()
	n, f := tp.createOpen("f")
	if err := f.Close(ctx); err != nil { // its size would hide the commit's
		t.Fatal(err)
	}
	data := randBytes(3, 500)
	st, err := tp.stageChunk(ctx, data, 2, 1, true)
	if err != nil || st.Fresh == nil {
		t.Fatalf("stage: %+v %v", st, err)
	}
	id := st.Ref.ID
	if _, ok, _ := tp.chunkRecordOf(id); ok {
		t.Fatal("the staged new chunk got a record before its commit")
	}
	for _, num := range st.Fresh.Holders {
		d := tp.driveByNum(num)
		if tp.deleteOrphan(d, d.usable(), id) {
			t.Fatalf("the orphan sweep deleted drive %d's fresh copy", num)
		}
		queued := []uint32{num}
		tp.queueDeletes(id, queued)
		if deleted, err := tp.finishDelete(d, id); deleted || err != nil {
			t.Fatalf("a pending delete took drive %d's fresh copy: %v", num, err)
		}
	}
	if err := tp.collectOne(id); err != nil {
		t.Fatal(err)
	}
	fresh := []freshChunk{*st.Fresh}
	piece := piece{Ref: st.Ref, Len: len(data)}
	if err := tp.commitLayers(n.Ino, []slot{{Idx: 0, Layers: layers{piece}}}, &fresh, int64(len(data)), true, false, st.Touched); err != nil {
		t.Fatal(err)
	}
	if len(fresh) != 0 || tp.fresh.has(id) {
		t.Fatal("the commit left the chunk fresh")
	}
	if err := tp.Sync(); err != nil {
		t.Fatal(err)
	}
	tp.mustEqual("/f", data)
	// With the record in place, the pending deletes queued above find the
	// drives named as holders and keep the copies.
	for _, num := range st.Fresh.Holders {
		if deleted, err := tp.finishDelete(tp.driveByNum(num), id); deleted || err != nil {
			t.Fatalf("drive %d: %v %v", num, deleted, err)
		}
	}
	tp.mustEqual("/f", data)
}
