package cluster

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/dhdfs/dhdfs/nodes"
)

// callCounter counts the calls that reach a store.
type callCounter struct {
	nodes.Store
	puts, deletes int
}

func (c *callCounter) Put(id nodes.ChunkID, data []byte) error {
	c.puts++
	return c.Store.Put(id, data)
}

func (c *callCounter) Delete(id nodes.ChunkID) error {
	c.deletes++
	return c.Store.Delete(id)
}

// A held chunk reads, ranges and lists as stored; a deleted one never
// reaches the store; Has, Sync, Iterate and Close put what is held
// into the store; the bound sends chunks to the store.
func TestHeldStore(t *testing.T) {
	inner := &callCounter{Store: nodes.NewMemStore(1 << 30)}
	h := holdFor(inner)
	a, b, c := []byte("chunk a"), []byte("chunk b, longer"), []byte("chunk c")
	ida, idb, idc := nodes.SumChunk(a), nodes.SumChunk(b), nodes.SumChunk(c)
	for id, data := range map[nodes.ChunkID][]byte{ida: a, idb: b, idc: c} {
		if !h.hold(id, data) {
			t.Fatal("hold refused a small chunk")
		}
	}
	if got, err := h.Get(ida, nil); err != nil || !bytes.Equal(got, a) {
		t.Fatalf("Get of a held chunk: %q %v", got, err)
	}
	if got, err := h.GetRange(idb, 6, 100, nil); err != nil || string(got) != "b, longer" {
		t.Fatalf("GetRange of a held chunk: %q %v", got, err)
	}
	if err := h.Delete(idc); err != nil {
		t.Fatal(err)
	}
	if _, err := h.Get(idc, nil); !errors.Is(err, nodes.ErrNotFound) {
		t.Fatalf("a deleted held chunk reads: %v", err)
	}
	if inner.puts+inner.deletes != 0 {
		t.Fatalf("the store saw %d puts and %d deletes of held chunks", inner.puts, inner.deletes)
	}
	// Has relies on the copy: it must then be in the store.
	if ok, err := h.Has(ida); err != nil || !ok {
		t.Fatalf("Has of a held chunk: %v %v", ok, err)
	}
	if ok, _ := inner.Has(ida); !ok || inner.puts != 1 {
		t.Fatalf("Has left the chunk out of the store (%d puts)", inner.puts)
	}
	if err := h.Sync(); err != nil {
		t.Fatal(err)
	}
	if ok, _ := inner.Has(idb); !ok || h.heldBytes() != 0 {
		t.Fatalf("Sync left %d bytes held", h.heldBytes())
	}
	if ok, _ := inner.Has(idc); ok {
		t.Fatal("a chunk deleted while held reached the store")
	}

	// Iterate and Close list and keep held chunks too.
	if !h.hold(idc, c) {
		t.Fatal("hold refused")
	}
	n := 0
	if err := h.Iterate(func(nodes.ChunkID, int64) error { n++; return nil }); err != nil || n != 3 {
		t.Fatalf("Iterate saw %d chunks (%v), want 3", n, err)
	}
	d := []byte("chunk d")
	if !h.hold(nodes.SumChunk(d), d) {
		t.Fatal("hold refused")
	}
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	if ok, err := inner.Store.(*nodes.MemStore).Has(nodes.SumChunk(d)); ok || !errors.Is(err, nodes.ErrClosed) {
		// MemStore forgets nothing at Close but refuses calls: the put must
		// have happened before, which its count shows.
		if inner.puts != 5 {
			t.Fatalf("Close did not put the held chunk: %d puts", inner.puts)
		}
	}

	// Past heldMax the caller puts.
	h = holdFor(nodes.NewMemStore(1 << 40))
	big := make([]byte, heldMax/2+1)
	if !h.hold(nodes.ChunkID{1}, big) || h.hold(nodes.ChunkID{2}, big) {
		t.Fatal("the bound did not send the second half to the store")
	}
}

// An fsynced small write is held: the drives' stores get it at the next
// checkpoint, and only its journal records hold it until then. A piece
// folded away before the checkpoint never reaches a store.
func TestFsyncHoldsSmallChunks(t *testing.T) {
	onDisk(t) // journals need directory drives
	tp := newTestPoolWith(t, 3, 2, MinChunkSize, Options{SyncInterval: time.Hour})
	ctx := context.Background()
	n, f := tp.createOpen("log")
	data := randBytes(1, 300)
	fsyncAt(t, f, data, 0)
	ls, err := tp.slotAt(n.Ino, 0)
	if err != nil || len(ls) != 1 {
		t.Fatalf("slot: %v %v", ls, err)
	}
	id := ls[0].Ref.ID
	rec, _, err := tp.chunkRecordOf(id)
	if err != nil || len(rec.Holders) != 2 {
		t.Fatalf("record: %+v %v", rec, err)
	}
	for _, num := range rec.Holders {
		h := tp.driveByNum(num).usable().(*heldStore)
		if _, ok := h.lookup(id); !ok {
			t.Fatalf("drive %d does not hold the fsynced chunk", num)
		}
		if ok, _ := h.Store.Has(id); ok {
			t.Fatalf("drive %d's store got the fsynced chunk before a checkpoint", num)
		}
	}
	if tp.journalRecordCount() == 0 {
		t.Fatal("no journal record")
	}
	if got := tp.get("/log"); !bytes.Equal(got, data) {
		t.Fatal("the held chunk does not read back")
	}
	if err := tp.Checkpoint(); err != nil {
		t.Fatal(err)
	}
	for _, num := range rec.Holders {
		h := tp.driveByNum(num).usable().(*heldStore)
		if ok, _ := h.Store.Has(id); !ok || h.heldBytes() != 0 {
			t.Fatalf("drive %d: the checkpoint left the chunk out of the store", num)
		}
	}

	// Many fsynced appends: the pieces folded away are deleted while
	// held, so the stores get far fewer chunks than were fsynced.
	want := data
	before := tp.storePuts()
	for i := 0; i < 200; i++ {
		b := randBytes(uint64(100+i), 100)
		fsyncAt(t, f, b, len(want))
		want = append(want, b...)
	}
	tp.settleNow()
	if err := tp.Checkpoint(); err != nil {
		t.Fatal(err)
	}
	// Without holding, every append put two copies (400), and every fold
	// two more.
	if puts := tp.storePuts() - before; puts > 2*20 {
		t.Fatalf("200 fsynced appends put %d chunks into the stores", puts)
	}
	t.Logf("200 fsynced appends put %d chunks into the stores", tp.storePuts()-before)
	if err := f.Close(ctx); err != nil {
		t.Fatal(err)
	}
	tp.reopen()
	tp.mustEqual("/log", want)
	tp.mustFsckClean()
}

// storePuts counts the chunks put into the drives' stores (behind what
// they hold).
func (tp *testPool) storePuts() int64 {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	var n int64
	for _, f := range tp.faulty {
		n += f.Puts()
	}
	return n
}

// A process killed after a commit of held chunks and before the round
// that would journal them: the metadata names a chunk no drive holds,
// and the next open reverts that unsynced layer, as after a power cut.
func TestKilledBeforeRoundDropsHeldWrite(t *testing.T) {
	killBeforeRound(t, 100) // an overwrite
}

// The same for an append: the file's growth goes with the lost layer,
// or the file would end in zeros nobody wrote.
func TestKilledBeforeRoundDropsHeldAppend(t *testing.T) {
	killBeforeRound(t, 5000)
}

// A process killed before the round, after a commit whose chunk one
// drive held and the other, holding its most already, put into its store:
// the copy that reached a store is the write's, and the next open puts it
// on the drive that only held it, so that every holder the record names
// has the chunk.
func TestKilledBeforeRoundWithOneCopyStored(t *testing.T) {
	tp, f, old := heldFile(t, 2)
	// The second drive holds all it may: the chunk goes to its store.
	full, ok := tp.driveList()[1].usable().(*heldStore)
	if !ok {
		t.Fatal("drive store is not a heldStore")
	}
	full.mu.Lock()
	full.bytes = heldMax
	full.mu.Unlock()
	data := randBytes(2, 300)
	commitThenKill(t, tp, f, data, 100)
	tp.mustEqual("/f", append(append(slices.Clone(old[:100]), data...), old[400:]...))
	tp.mustFsckClean()
}

// killBeforeRound writes 300 bytes at off into a file of 5,000, commits
// them held and kills the process before the round; the file must read
// as before and fsck find the pool clean.
func killBeforeRound(t *testing.T, off int64) {
	tp, f, old := heldFile(t, 3)
	commitThenKill(t, tp, f, randBytes(2, 300), off)
	tp.mustEqual("/f", old)
	tp.mustFsckClean()
}

// heldFile makes a pool of drives drives (replicas 2) that syncs only
// when asked, with a file /f of 5,000 random bytes (old), open as f.
func heldFile(t *testing.T, drives int) (tp *testPool, f *File, old []byte) {
	onDisk(t)
	tp = newTestPoolWith(t, drives, 2, MinChunkSize, Options{SyncInterval: time.Hour})
	old = randBytes(1, 5000)
	tp.put("/f", old)
	a, _ := tp.Resolve("/f")
	f, err := tp.OpenFile(a.Ino)
	if err != nil {
		t.Fatal(err)
	}
	return tp, f, old
}

// commitThenKill writes data at off into f and commits it as an fsync
// would, its chunks held, then kills the process before the round that
// would journal them, and opens the pool again.
func commitThenKill(t *testing.T, tp *testPool, f *File, data []byte, off int64) {
	ctx := context.Background()
	if _, err := f.WriteAt(ctx, data, off); err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	err := f.drain(ctx, true)
	if err == nil {
		err = f.commit(false) // committed; the round never runs
	}
	f.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	tp.crash()
	tp.open()
}

// mustFsckClean fails the test unless fsck finds no problem and every
// chunk has its copies.
func (tp *testPool) mustFsckClean() {
	tp.t.Helper()
	if rep, err := tp.Fsck(context.Background(), false, nil); err != nil || len(rep.Problems) > 0 || rep.UnderReplicated > 0 {
		tp.t.Fatalf("fsck: %v %+v", err, rep)
	}
}

// A process killed while a round appended to the drives' journals: one
// journal has the record, the other none. The next open puts the chunk
// from that one journal on both of its holders.
func TestReplayRestoresEveryHolder(t *testing.T) {
	onDisk(t)
	tp := newTestPoolWith(t, 2, 2, MinChunkSize, Options{SyncInterval: time.Hour})
	_, f := tp.createOpen("f")
	data := randBytes(3, 700)
	fsyncAt(t, f, data, 0)
	tp.crash()
	// The second drive's journal never got its record.
	dir := filepath.Join(tp.paths[1], nodes.JournalDir)
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	tp.open()
	tp.mustEqual("/f", data)
	tp.mustFsckClean()
}

// A drive that fills up holding an fsynced chunk: the checkpoint cannot
// put it into the store, so that drive keeps its journal, and a killed
// process loses nothing: the next open puts the chunk back from it.
func TestCheckpointKeepsJournalOfUnsyncedDrive(t *testing.T) {
	onDisk(t)
	tp := newTestPoolWith(t, 2, 2, MinChunkSize, Options{SyncInterval: time.Hour})
	_, f := tp.createOpen("f")
	data := randBytes(4, 900)
	fsyncAt(t, f, data, 0)
	full := tp.driveList()[1].record().Name
	tp.fault(full, nodes.Faults{Capacity: 1})
	if err := tp.Checkpoint(); err != nil {
		t.Fatal(err)
	}
	records := func(name string) int {
		d, err := tp.driveByName(name)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		d.journalOf().Replay(func(uint64, []byte) error { n++; return nil })
		return n
	}
	if records(full) == 0 {
		t.Fatal("the checkpoint dropped the journal of a drive whose store did not sync")
	}
	if other := tp.driveList()[0].record().Name; records(other) != 0 {
		t.Fatal("the checkpoint kept the journal of a drive it synced")
	}
	tp.crash()
	tp.open()
	tp.mustEqual("/f", data)
	tp.mustFsckClean()
}

// fsyncAt writes data into f at off and fsyncs it.
func fsyncAt(t *testing.T, f *File, data []byte, off int) {
	t.Helper()
	ctx := context.Background()
	if _, err := f.WriteAt(ctx, data, int64(off)); err != nil {
		t.Fatal(err)
	}
	if err := f.Fsync(ctx); err != nil {
		t.Fatal(err)
	}
}
