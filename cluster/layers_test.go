package cluster

import (
	"bytes"
	"context"
	"math/rand/v2"
	"reflect"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/dhdfs/dhdfs/nodes"
)

// render computes a slot's content from its layers the slow way, byte by
// byte, with chunks given by their content.
func render(ls layers, chunks map[nodes.ChunkID][]byte) []byte {
	out := make([]byte, ls.length())
	for _, p := range ls {
		for k := 0; k < p.Len; k++ {
			if p.zero() {
				out[p.At+k] = 0
			} else {
				out[p.At+k] = chunks[p.Ref.ID][p.Off+k]
			}
		}
	}
	return out
}

// Random layers: visible, storedBytes, cut and settle agree with a
// byte-by-byte rendering, and every encoding decodes to what it was.
func TestLayersModel(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for round := 0; round < 300; round++ {
		chunks := map[nodes.ChunkID][]byte{}
		var ls layers
		for i := r.IntN(8); i >= 0; i-- {
			at, n := r.IntN(1000), 1+r.IntN(300)
			if r.IntN(5) == 0 {
				ls = append(ls, piece{At: at, Len: n, Unsynced: r.IntN(2) == 0})
				continue
			}
			data := randBytes(r.Uint64(), n+r.IntN(50))
			id := nodes.SumChunk(data)
			chunks[id] = data
			off := r.IntN(len(data) - n + 1)
			ls = append(ls, piece{Ref: ChunkRef{ID: id, Size: len(data)}, Off: off, At: at, Len: n, Unsynced: r.IntN(2) == 0})
		}
		want := render(ls, chunks)
		// visible covers every byte a piece shows, with the newest piece.
		got := make([]byte, ls.length())
		var stored int64
		ls.visible(0, ls.length(), func(i int, s span) {
			p := ls[i]
			if p.stored() {
				copy(got[s.lo:s.hi], chunks[p.Ref.ID][p.Off+s.lo-p.At:])
				stored += int64(s.hi - s.lo)
			}
		})
		if !bytes.Equal(got, want) {
			t.Fatalf("round %d: visible renders differently: %v", round, ls)
		}
		if ls.storedBytes() != stored {
			t.Fatalf("round %d: storedBytes %d, counted %d", round, ls.storedBytes(), stored)
		}
		// settle drops only what nothing shows.
		settled, hidden := ls.settle()
		if len(settled)+len(hidden) != len(ls) || !bytes.Equal(render(settled, chunks), want) || settled.unsynced() {
			t.Fatalf("round %d: settle changed the content or kept unsynced flags: %v → %v", round, ls, settled)
		}
		// cut keeps the bytes before keep, and what it drops is whole.
		keep := r.IntN(ls.length() + 1)
		cut, dropped := ls.cut(keep)
		if cut.length() > keep || !bytes.Equal(render(cut, chunks), want[:min(keep, len(render(cut, chunks)))]) {
			t.Fatalf("round %d: cut at %d: %v", round, keep, cut)
		}
		if len(cut)+len(dropped) != len(ls) {
			t.Fatalf("round %d: cut lost pieces", round)
		}
		dec, err := decodeLayers(ls.encode())
		if err != nil || !reflect.DeepEqual(dec, ls) && !(len(ls) == 0 && len(dec) == 0) {
			t.Fatalf("round %d: round trip %v → %v, %v", round, ls, dec, err)
		}
	}
	// A single whole chunk keeps the version 1 encoding of older pools.
	ref := ChunkRef{ID: nodes.SumChunk([]byte("x")), Size: 1}
	if b := (layers{wholePiece(ref)}).encode(); !bytes.Equal(b, ref.encode()) {
		t.Fatal("a whole chunk is not encoded as a version 1 slot")
	}
}

// countingStore counts the bytes put, to measure write amplification.
type countingStore struct {
	nodes.Store
	mu  sync.Mutex
	put int64
}

func (c *countingStore) Put(id nodes.ChunkID, data []byte) error {
	c.mu.Lock()
	c.put += int64(len(data))
	c.mu.Unlock()
	return c.Store.Put(id, data)
}

// Small writes, each committed and synced alone, cost about their own
// size per copy, not a chunk: random 4 KiB writes into a file of whole
// chunks store at most twice their bytes per copy, merging included, and
// the file reads back right at every step.
func TestSmallWritesCostTheirSize(t *testing.T) {
	var mu sync.Mutex
	var counters []*countingStore
	tp := newTestPoolWith(t, 2, 2, MinChunkSize, Options{SyncInterval: time.Hour, WrapStore: func(_ DriveRecord, s nodes.Store) nodes.Store {
		c := &countingStore{Store: s}
		mu.Lock()
		counters = append(counters, c)
		mu.Unlock()
		return c
	}})
	put := func() (n int64) {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range counters {
			c.mu.Lock()
			n += c.put
			c.mu.Unlock()
		}
		return n
	}
	ctx := context.Background()
	size := 8 * MinChunkSize
	model := randBytes(1, size)
	tp.put("/f", model)
	n, _ := tp.Resolve("/f")
	f, err := tp.OpenFile(n.Ino)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close(ctx)
	r := rand.New(rand.NewPCG(3, 4))
	before := put()
	written := int64(0)
	for i := 0; i < 400; i++ {
		off := r.IntN(size/4096) * 4096
		b := randBytes(r.Uint64(), 4096)
		if _, err := f.WriteAt(ctx, b, int64(off)); err != nil {
			t.Fatal(err)
		}
		copy(model[off:], b)
		written += 4096
		if err := f.Fsync(ctx); err != nil {
			t.Fatal(err)
		}
		if i%50 == 49 {
			tp.mustEqual("/f", model)
		}
	}
	amp := float64(put()-before) / float64(written) / 2
	t.Logf("4 KiB random synced writes: %.2f bytes stored per byte written, per copy", amp)
	if amp > 2.1 {
		t.Fatalf("write amplification %.2f per copy, want at most 2", amp)
	}
	slots, _ := tp.fileSlots(n.Ino)
	for _, s := range slots {
		if len(s.Layers) > maxLayers {
			t.Fatalf("slot %d has %d layers", s.Idx, len(s.Layers))
		}
	}
	tp.mustEqual("/f", model)
	if err := f.Close(ctx); err != nil {
		t.Fatal(err)
	}
	tp.flushDeletes()
	if rep, err := tp.Fsck(ctx, false, nil); err != nil || len(rep.Problems) > 0 {
		t.Fatalf("fsck: %v %+v", err, rep.Problems)
	}
}

// Layers committed before their chunks are durable are dropped by the
// next open after a crash when no drive holds their chunk, so the file
// reads as before the lost writes; layers that did reach a drive stay.
func TestCrashRevertsLostLayers(t *testing.T) {
	onDisk(t) // a crash
	tp := newTestPoolWith(t, 2, 2, MinChunkSize, Options{SyncInterval: time.Hour})
	ctx := context.Background()
	old := randBytes(5, 2*MinChunkSize)
	tp.put("/f", old)
	n, _ := tp.Resolve("/f")
	f, err := tp.OpenFile(n.Ino)
	if err != nil {
		t.Fatal(err)
	}
	lost, kept := randBytes(6, 100), randBytes(7, 200)
	if _, err := f.WriteAt(ctx, lost, 10); err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(ctx, kept, MinChunkSize+10); err != nil {
		t.Fatal(err)
	}
	if err := f.Flush(ctx); err != nil { // committed, not synced
		t.Fatal(err)
	}
	slot0, _ := tp.slotAt(n.Ino, 0)
	if len(slot0) != 2 || !slot0[1].Unsynced {
		t.Fatalf("slot 0 after a lazy commit: %v", slot0)
	}
	// The power cut: the first write's chunk never reached a disk.
	for _, fs := range tp.faulty {
		if err := fs.Delete(slot0[1].Ref.ID); err != nil {
			t.Fatal(err)
		}
	}
	tp.crash()
	tp.open()
	want := append([]byte(nil), old...)
	copy(want[MinChunkSize+10:], kept)
	tp.mustEqual("/f", want)
	if rep, err := tp.Fsck(ctx, false, nil); err != nil || len(rep.Problems) > 0 {
		t.Fatalf("fsck after the crash: %v %+v", err, rep.Problems)
	}
}

// Concurrent fsyncs share sync rounds: each round syncs the drives and
// the metadata once for all the files committed before it.
func TestGroupCommit(t *testing.T) {
	tp := newTestPoolWith(t, 2, 2, MinChunkSize, Options{SyncInterval: time.Hour})
	ctx := context.Background()
	const writers, rounds = 8, 20
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	before := tp.metaSyncs()
	for w := 0; w < writers; w++ {
		n, err := tp.Mknod(RootIno, string(rune('a'+w)), syscall.S_IFREG|0o644, Caller{}, "")
		if err != nil {
			t.Fatal(err)
		}
		f, err := tp.OpenFile(n.Ino)
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer f.Close(ctx)
			for i := 0; i < rounds; i++ {
				if _, err := f.WriteAt(ctx, randBytes(uint64(w*100+i), 200), int64(i*200)); err != nil {
					errs <- err
					return
				}
				if err := f.Fsync(ctx); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	syncs := tp.metaSyncs() - before
	t.Logf("%d fsyncs took %d sync rounds", writers*rounds, syncs)
	if syncs >= writers*rounds {
		t.Fatalf("%d fsyncs took %d rounds: no round was shared", writers*rounds, syncs)
	}
}

// metaSyncs counts sync rounds that reached the metadata store.
func (tp *testPool) metaSyncs() int {
	g := &tp.Manager.syncs
	g.mu.Lock()
	defer g.mu.Unlock()
	return int(g.done)
}

// A buffer written in many separate ranges is stored as one chunk of the
// slot, not as more layers than a slot may have.
func TestManyRangesMerge(t *testing.T) {
	tp := newTestPoolWith(t, 2, 2, MinChunkSize, Options{SyncInterval: time.Hour})
	ctx := context.Background()
	n, f := tp.createOpen("f")
	model := make([]byte, MinChunkSize)
	for i := 0; i < 3*maxLayers; i++ {
		off := i * (MinChunkSize / (3 * maxLayers))
		model[off] = byte(i | 1)
		if _, err := f.WriteAt(ctx, model[off:off+1], int64(off)); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Close(ctx); err != nil {
		t.Fatal(err)
	}
	tp.reopen()
	ls, err := tp.slotAt(n.Ino, 0)
	if err != nil || len(ls) > maxLayers {
		t.Fatalf("slot: %d layers, %v", len(ls), err)
	}
	got := make([]byte, MinChunkSize)
	k, _ := tp.ReadAt(ctx, n.Ino, got, 0)
	if !bytes.Equal(got[:k], model[:k]) || k < (3*maxLayers-1)*(MinChunkSize/(3*maxLayers)) {
		t.Fatalf("read %d bytes, content differs", k)
	}
}

// chunkBuf's written ranges stay sorted, disjoint and apart, whatever the
// order of writes; in a recycled buffer, every byte from the first range
// to the end is written or zeroed, never left from before.
func TestChunkBufRanges(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 9))
	for round := 0; round < 500; round++ {
		storage := bytes.Repeat([]byte{poisonByte}, 4096)
		c := &chunkBuf{data: storage[:0]}
		written := make([]bool, 4096)
		for i := r.IntN(20); i >= 0; i-- {
			off, n := r.IntN(4000), r.IntN(200)
			c.WriteAt(bytes.Repeat([]byte{0x11}, n), off)
			for k := off; k < min(off+n, 4096); k++ {
				written[k] = true
			}
		}
		if len(c.ranges) > 0 && (c.lo != c.ranges[0].lo || c.Len() != c.ranges[len(c.ranges)-1].hi) {
			t.Fatalf("round %d: buffer [%d, %d) for ranges %v", round, c.lo, c.Len(), c.ranges)
		}
		for k := c.lo; k < c.Len(); k++ {
			if want := map[bool]byte{true: 0x11, false: 0}[written[k]]; storage[k] != want {
				t.Fatalf("round %d: byte %d is %#x, want %#x", round, k, storage[k], want)
			}
		}
		var want []span
		for k := 0; k < len(written); k++ {
			if written[k] && (k == 0 || !written[k-1]) {
				want = append(want, span{k, k})
			}
			if written[k] {
				want[len(want)-1].hi = k + 1
			}
		}
		if !reflect.DeepEqual(c.ranges, want) && !(len(want) == 0 && len(c.ranges) == 0) {
			t.Fatalf("round %d: ranges %v, want %v", round, c.ranges, want)
		}
	}
}

// simulateStaging applies writes to a slot the way staging and settling
// do, without storage, and returns the bytes stored and the most layers
// the slot had.
func simulateStaging(t *testing.T, writes []span) (stored int64, most int) {
	t.Helper()
	var ls layers
	id := 0
	for _, w := range writes {
		plan := planStage(ls, []span{w}, w.hi-w.lo)
		var p piece
		id++
		ref := ChunkRef{Size: 1}
		ref.ID[0], ref.ID[1] = byte(id), byte(id>>8)
		if plan.fold {
			p = piece{Ref: ref, At: plan.lo, Len: plan.hi - plan.lo}
		} else {
			p = piece{Ref: ref, At: w.lo, Len: w.hi - w.lo}
		}
		ref.Size = p.Len
		p.Ref = ref
		stored += int64(p.Len)
		ls, _ = append(ls, p).settle()
		most = max(most, len(ls))
	}
	return stored, most
}

// The staging plan keeps appends to a few dozen layers at a few times
// their bytes, random writes at most twice their bytes and maxLayers,
// and rewrites of the same place as one layer.
func TestPlanStage(t *testing.T) {
	var appends, random, same []span
	for i := 0; i < 5000; i++ {
		appends = append(appends, span{i * 200, i*200 + 200})
		same = append(same, span{4096, 8192})
	}
	r := rand.New(rand.NewPCG(5, 5))
	for i := 0; i < 2000; i++ {
		off := r.IntN(256) * 4096
		random = append(random, span{off, off + 4096})
	}
	// A slot written whole first, for the random writes.
	random = append([]span{{0, 1 << 20}}, random...)
	for _, c := range []struct {
		name      string
		writes    []span
		amp       float64
		maxLayers int
	}{
		{"appends of 200 bytes", appends, 6, 64},
		{"random 4 KiB writes", random, 2.6, maxLayers},
		{"the same 4 KiB again and again", same, 1, 2},
	} {
		written := int64(0)
		for _, w := range c.writes {
			written += int64(w.hi - w.lo)
		}
		stored, most := simulateStaging(t, c.writes)
		amp := float64(stored) / float64(written)
		t.Logf("%s: %.2f bytes stored per byte written, at most %d layers", c.name, amp, most)
		if amp > c.amp || most > c.maxLayers {
			t.Errorf("%s: %.2f bytes per byte (want ≤ %.1f), %d layers (want ≤ %d)", c.name, amp, c.amp, most, c.maxLayers)
		}
	}
}
