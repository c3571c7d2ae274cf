package dirdrive

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"

	badger "github.com/dgraph-io/badger/v4"
	"golang.org/x/sys/unix"
	"lukechampine.com/blake3"

	"github.com/dhdfs/dhdfs/nodes"
)

// randChunk returns n random bytes that differ for every seed, and their id.
func randChunk(seed uint64, n int) (nodes.ChunkID, []byte) {
	r := rand.New(rand.NewPCG(seed, 7))
	b := make([]byte, n)
	for i := 0; i+8 <= n; i += 8 {
		v := r.Uint64()
		for j := 0; j < 8; j++ {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	return nodes.SumChunk(b), b
}

func openTest(t *testing.T, dir string, unit int64) *BadgerStore {
	t.Helper()
	s, err := OpenBadger(dir, nodes.Options{ValueLogFileSize: unit})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func mustPut(t *testing.T, s nodes.Store, id nodes.ChunkID, data []byte) {
	t.Helper()
	if err := s.Put(id, data); err != nil {
		t.Fatal(err)
	}
}

// packFiles returns the sizes of the pack files in dir, by number.
func packFiles(t *testing.T, dir string) map[uint32]int64 {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(dir, packDir))
	if err != nil {
		t.Fatal(err)
	}
	out := map[uint32]int64{}
	for _, e := range ents {
		n, err := strconv.ParseUint(strings.TrimSuffix(e.Name(), packSuffix), 10, 32)
		if err != nil {
			t.Fatalf("stray file %s in packs", e.Name())
		}
		info, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		out[uint32(n)] = info.Size()
	}
	return out
}

// checkChunks fails unless every chunk Iterate reports reads back whole,
// with its size and id, and returns how many there are. Chunks in Badger's
// value log (drives written before packs) are listed with sizes Badger
// estimates, a few bytes off.
func checkChunks(t *testing.T, s nodes.Store) int {
	t.Helper()
	n := 0
	err := s.Iterate(func(id nodes.ChunkID, size int64) error {
		n++
		b, err := s.Get(id, nil)
		if err != nil {
			return fmt.Errorf("chunk %s listed but unreadable: %w", id.Short(), err)
		}
		if d := int64(len(b)) - size; d < -8 || d > 8 || nodes.SumChunk(b) != id {
			return fmt.Errorf("chunk %s: %d bytes (listed %d) that do not match its id", id.Short(), len(b), size)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// checkCounts fails unless the store's live counters equal a fresh count.
func checkCounts(t *testing.T, s *BadgerStore) {
	t.Helper()
	if _, err := s.Space(); err != nil { // counts them if not yet
		t.Fatal(err)
	}
	live := s.live.Load()
	perPack := map[uint32]int64{}
	for _, p := range s.packs.list() {
		perPack[p.num] = p.live.Load()
	}
	s.liveKnown.Store(false)
	if err := s.countLive(); err != nil {
		t.Fatal(err)
	}
	if got := s.live.Load(); got != live {
		t.Errorf("live counter %d, count %d", live, got)
	}
	for _, p := range s.packs.list() {
		if got := p.live.Load(); got != perPack[p.num] {
			t.Errorf("pack %d: live counter %d, count %d", p.num, perPack[p.num], got)
		}
	}
}

// Packs end at the unit; a chunk bigger than the unit gets a pack of its
// own; after a clean close the last pack takes writes again.
func TestPackRollover(t *testing.T) {
	dir := t.TempDir()
	const unit = 1 << 20
	s := openTest(t, dir, unit)
	for i := 0; i < 10; i++ { // three entries of 300 KiB fit in a unit
		id, data := randChunk(uint64(i), 300<<10)
		mustPut(t, s, id, data)
	}
	big, bigData := randChunk(99, 3<<20/2)
	mustPut(t, s, big, bigData)
	files := packFiles(t, dir)
	// Chunks this large are written with O_DIRECT: each entry's data
	// starts at a multiple of directAlign, after a padding entry.
	three := directEnd(directEnd(directEnd(0, 300<<10), 300<<10), 300<<10)
	want := map[uint32]int64{1: three, 2: three, 3: three, 4: directEnd(0, 300<<10), 5: directEnd(0, 3<<20/2)}
	if fmt.Sprint(files) != fmt.Sprint(want) {
		t.Fatalf("pack files %v, want %v", files, want)
	}
	if n := checkChunks(t, s); n != 11 {
		t.Fatalf("%d chunks, want 11", n)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// Pack 5 is over the unit: the next write starts pack 6.
	s = openTest(t, dir, unit)
	id, data := randChunk(100, 2000)
	mustPut(t, s, id, data)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if files := packFiles(t, dir); len(files) != 6 || files[6] != packHeaderSize+2000 {
		t.Fatalf("after reopening: packs %v", files)
	}
	// Pack 6 has room: it takes the next write.
	s = openTest(t, dir, unit)
	id, data = randChunk(101, 5000)
	mustPut(t, s, id, data)
	mustPut(t, s, big, bigData) // replaced: a new entry, the old one dead
	if files := packFiles(t, dir); len(files) != 7 || files[6] != 2*packHeaderSize+2000+5000 || files[7] != directEnd(0, 3<<20/2) {
		t.Fatalf("after reopening cleanly: packs %v", files)
	}
	if n := checkChunks(t, s); n != 13 {
		t.Fatalf("%d chunks, want 13", n)
	}
	checkCounts(t, s)
}

// directEnd returns where an entry of size bytes written with O_DIRECT
// at start ends: its data starts at the next multiple of directAlign
// that leaves room for its header, and for a padding entry's when there
// is a gap.
func directEnd(start, size int64) int64 {
	data := (start + packHeaderSize + directAlign - 1) / directAlign * directAlign
	if gap := data - packHeaderSize - start; gap > 0 && gap < packHeaderSize {
		data += directAlign
	}
	return data + size
}

// readChars returns the bytes this process read with read system calls.
func readChars(t *testing.T) int64 {
	t.Helper()
	b, err := os.ReadFile("/proc/self/io")
	if err != nil {
		t.Skip(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "rchar: "); ok {
			n, _ := strconv.ParseInt(v, 10, 64)
			return n
		}
	}
	t.Skip("no rchar in /proc/self/io")
	return 0
}

// GetRange of a packed chunk reads the range, not the chunk.
func TestPackGetRangeReadsRange(t *testing.T) {
	s := openTest(t, t.TempDir(), 16<<20)
	id, data := randChunk(1, 8<<20)
	mustPut(t, s, id, data)
	// The least over a few tries: other reads in the process add noise.
	read := func(off, n int) int64 {
		least := int64(math.MaxInt64)
		for i := 0; i < 5; i++ {
			before := readChars(t)
			got, err := s.GetRange(id, off, n, nil)
			if err != nil || !bytes.Equal(got, data[off:min(off+n, len(data))]) {
				t.Fatalf("GetRange(%d, %d): %v", off, n, err)
			}
			least = min(least, readChars(t)-before)
		}
		return least
	}
	if whole := read(0, len(data)); whole < int64(len(data)) {
		t.Skipf("reading %d bytes counted %d: rchar does not count pack reads here", len(data), whole)
	}
	if n := read(5<<20+123, 4096); n > 64<<10 {
		t.Fatalf("GetRange of 4 KiB read %d bytes", n)
	}
}

// writeLegacy writes chunks as stores did before packs: in Badger, under
// UserMeta 0, large ones going to its value log.
func writeLegacy(t *testing.T, dir string, unit int64, chunks map[nodes.ChunkID][]byte) {
	t.Helper()
	db, err := badger.Open(badgerOptions(filepath.Join(dir, storeDir), nodes.Options{}, unit))
	if err != nil {
		t.Fatal(err)
	}
	for id, data := range chunks {
		if err := db.Update(func(txn *badger.Txn) error { return txn.Set(chunkKey(id), data) }); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
}

// A drive written before packs keeps working: its chunks read, list,
// delete and get replaced; new chunks go to packs; Reclaim gives back
// the space of deleted ones in Badger's value log.
func TestBadgerLegacyChunks(t *testing.T) {
	dir := t.TempDir()
	const unit = 1 << 20
	old := map[nodes.ChunkID][]byte{}
	var ids []nodes.ChunkID
	for i := 0; i < 64; i++ { // 4 MiB in the value log
		id, data := randChunk(uint64(i), 64<<10)
		old[id] = data
		ids = append(ids, id)
	}
	small, smallData := randChunk(1000, 100)
	old[small] = smallData
	writeLegacy(t, dir, unit, old)

	s := openTest(t, dir, unit)
	if !s.hasLegacy() {
		t.Fatal("the value log holding old chunks is not seen as such")
	}
	if n := checkChunks(t, s); n != len(old) {
		t.Fatalf("%d chunks listed, want %d", n, len(old))
	}
	if got, err := s.GetRange(ids[0], 1000, 10, nil); err != nil || !bytes.Equal(got, old[ids[0]][1000:1010]) {
		t.Fatalf("GetRange of an old chunk: %v", err)
	}
	for i := 0; i < 40; i++ {
		if err := s.Delete(ids[i]); err != nil {
			t.Fatal(err)
		}
		delete(old, ids[i])
	}
	// Replaced: the new copy goes to a pack.
	mustPut(t, s, ids[50], old[ids[50]])
	for i := 0; i < 8; i++ {
		id, data := randChunk(uint64(2000+i), 64<<10)
		mustPut(t, s, id, data)
		old[id] = data
	}
	if len(packFiles(t, dir)) == 0 {
		t.Fatal("new chunks did not go to a pack")
	}
	sp, err := s.Space()
	if err != nil {
		t.Fatal(err)
	}
	var want int64
	for _, data := range old {
		want += int64(len(data))
	}
	if d := sp.Live - want; d < -1000 || d > 1000 { // Badger's estimates
		t.Fatalf("Space.Live = %d, want %d", sp.Live, want)
	}
	if err := s.CollectGarbage(); err != nil {
		t.Fatal(err)
	}
	after, err := s.Space()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("used %d KiB, %d KiB after gc, %d KiB live", sp.Used>>10, after.Used>>10, after.Live>>10)
	if after.Used >= sp.Used-unit {
		t.Fatalf("gc gave back %d of %d bytes", sp.Used-after.Used, sp.Used)
	}
	for id, data := range old {
		if got, err := s.Get(id, nil); err != nil || !bytes.Equal(got, data) {
			t.Fatalf("chunk %s after gc: %v", id.Short(), err)
		}
	}
	if n := checkChunks(t, s); n != len(old) {
		t.Fatalf("%d chunks listed after gc, want %d", n, len(old))
	}
	checkCounts(t, s)
}

// crash closes the store as a crash would leave it: nothing synced and no
// clean flag. Badger's index survives whole (its close writes it out):
// the worst case, where locations outlive the bytes they point at.
func (s *BadgerStore) crash() {
	s.closed.Store(true)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.db.Close()
	s.packs.close()
}

// After a crash every chunk Put before the last Sync reads back, and
// every other chunk either reads back or is missing: never wrong bytes,
// whatever happened to the packs' tails.
func TestBadgerCrashRecovery(t *testing.T) {
	dir := t.TempDir()
	const unit = 1 << 20
	s := openTest(t, dir, unit)
	chunks := map[nodes.ChunkID][]byte{}
	var synced, unsynced []nodes.ChunkID
	for i := 0; i < 20; i++ { // packs 1 and 2
		id, data := randChunk(uint64(i), 100<<10)
		mustPut(t, s, id, data)
		chunks[id] = data
		synced = append(synced, id)
	}
	small, smallData := randChunk(500, 10)
	mustPut(t, s, small, smallData)
	chunks[small] = smallData
	synced = append(synced, small)
	if err := s.Sync(); err != nil {
		t.Fatal(err)
	}
	locs := map[nodes.ChunkID]packLoc{}
	for i := 20; i < 55; i++ { // the rest of pack 2, packs 3 to 6
		id, data := randChunk(uint64(i), 100<<10)
		mustPut(t, s, id, data)
		chunks[id] = data
		unsynced = append(unsynced, id)
		s.db.View(func(txn *badger.Txn) error {
			st, err := getStored(txn, id)
			locs[id] = st.loc
			return err
		})
	}
	s.crash()

	// The damage: the last pack never reached the disk; the one before
	// it ends in the middle of an entry; a byte of data and a byte of a
	// header flipped after the sync point.
	files := packFiles(t, dir)
	last := uint32(len(files))
	if last != 6 {
		t.Fatalf("packs %v, want 6", files)
	}
	os.Remove(filepath.Join(dir, packDir, packName(last)))
	os.Truncate(filepath.Join(dir, packDir, packName(last-1)), files[last-1]-5000)
	flip := func(id nodes.ChunkID, at int64) {
		l := locs[id]
		f, err := os.OpenFile(filepath.Join(dir, packDir, packName(l.pack)), os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		b := make([]byte, 1)
		f.ReadAt(b, l.off+at)
		b[0] ^= 0x10
		f.WriteAt(b, l.off+at)
	}
	damaged := map[nodes.ChunkID]bool{}
	flip(unsynced[0], packHeaderSize+777) // in pack 2, past the sync point
	damaged[unsynced[0]] = true
	flip(unsynced[12], 9) // a header, in pack 3
	damaged[unsynced[12]] = true
	for _, id := range unsynced {
		if l := locs[id]; l.pack == last || l.pack == last-1 && l.off+l.entrySize() > files[last-1]-5000 {
			damaged[id] = true
		}
	}

	s = openTest(t, dir, unit)
	for _, id := range synced {
		if got, err := s.Get(id, nil); err != nil || !bytes.Equal(got, chunks[id]) {
			t.Fatalf("synced chunk %s after the crash: %v", id.Short(), err)
		}
	}
	kept := 0
	for _, id := range unsynced {
		got, err := s.Get(id, nil)
		has, herr := s.Has(id)
		switch {
		case herr != nil:
			t.Fatal(herr)
		case damaged[id] && (has || !errors.Is(err, nodes.ErrNotFound)):
			t.Fatalf("damaged chunk %s (at %+v): Has %v, Get %v", id.Short(), locs[id], has, err)
		case !damaged[id] && (err != nil || !bytes.Equal(got, chunks[id])):
			// The process died, not the machine: the page cache kept these.
			t.Fatalf("intact chunk %s (at %+v) after the crash: %v", id.Short(), locs[id], err)
		case !damaged[id]:
			kept++
		}
	}
	t.Logf("%d unsynced chunks: %d kept, %d dropped", len(unsynced), kept, len(unsynced)-kept)
	if n := checkChunks(t, s); n != len(synced)+kept {
		t.Fatalf("%d chunks listed, want %d", n, len(synced)+kept)
	}
	checkCounts(t, s)

	// The store goes on: writes, and a gc that reads the damaged packs
	// through (a torn header ends pack 3's scan early: the index finds
	// the rest).
	for i := 100; i < 110; i++ {
		id, data := randChunk(uint64(i), 100<<10)
		mustPut(t, s, id, data)
		chunks[id] = data
	}
	if err := s.CollectGarbage(); err != nil {
		t.Fatal(err)
	}
	if n := checkChunks(t, s); n != len(synced)+kept+10 {
		t.Fatalf("%d chunks listed after gc, want %d", n, len(synced)+kept+10)
	}
	checkCounts(t, s)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openTest(t, dir, unit)
	if n := checkChunks(t, s); n != len(synced)+kept+10 {
		t.Fatalf("%d chunks listed after reopening, want %d", n, len(synced)+kept+10)
	}
}

// Reclaim moves live chunks out of mostly dead packs while Puts (new
// chunks and replacements), Gets and Deletes run; every chunk reads back
// right, and the live counts stay exact.
func TestBadgerReclaimPacksConcurrent(t *testing.T) {
	dir := t.TempDir()
	const unit, size = 1 << 20, 64 << 10
	s := openTest(t, dir, unit)
	var mu sync.Mutex
	keep := map[nodes.ChunkID][]byte{}
	for i := 0; i < 256; i++ { // 16 MiB, a quarter kept
		id, data := randChunk(uint64(i), size)
		mustPut(t, s, id, data)
		if i%4 == 0 {
			keep[id] = data
		} else if err := s.Delete(id); err != nil {
			t.Fatal(err)
		}
	}
	var kept []nodes.ChunkID
	for id := range keep {
		kept = append(kept, id)
	}
	before, err := s.Space()
	if err != nil {
		t.Fatal(err)
	}
	// A fixed amount of work: writers that never stop would keep making
	// dead packs as fast as Reclaim frees them.
	const ops = 200
	var stop, writing atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	work := func(n int, fn func(i int) error) {
		wg.Add(1)
		writing.Add(1)
		go func() {
			defer wg.Done()
			defer writing.Add(-1)
			for i := 0; i < n && stop.Load() == 0; i++ {
				if err := fn(i); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	work(ops, func(i int) error { // new chunks, deleted again
		id, data := randChunk(uint64(10000+i), size)
		if err := s.Put(id, data); err != nil {
			return err
		}
		return s.Delete(id)
	})
	work(ops, func(i int) error { // replacements of kept chunks
		id := kept[i%len(kept)]
		mu.Lock()
		data := keep[id]
		mu.Unlock()
		return s.Put(id, data)
	})
	work(math.MaxInt, func(i int) error {
		id := kept[(i*7)%len(kept)]
		got, err := s.Get(id, nil)
		if err != nil {
			return err
		}
		if nodes.SumChunk(got) != id {
			return fmt.Errorf("chunk %s read back wrong during Reclaim", id.Short())
		}
		return nil
	})
	rounds := 0
	for done := false; !done; {
		done = writing.Load() == 1 // only the reader left: a last pass
		res, err := s.Reclaim(context.Background(), nodes.ReclaimOptions{MinDead: 0.3, Rotate: true})
		if err != nil {
			t.Fatal(err)
		}
		rounds += res.Rounds
	}
	stop.Store(1)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("a call during Reclaim: %v", err)
	}
	after, err := s.Space()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("used %d KiB, %d KiB after %d rounds, live %d KiB", before.Used>>10, after.Used>>10, rounds, after.Live>>10)
	if rounds == 0 || after.Used > before.Used/2 {
		t.Fatalf("%d rounds left %d of %d bytes", rounds, after.Used, before.Used)
	}
	for id, data := range keep {
		if got, err := s.Get(id, nil); err != nil || !bytes.Equal(got, data) {
			t.Fatalf("kept chunk %s: %v", id.Short(), err)
		}
	}
	if n := checkChunks(t, s); n != len(keep) {
		t.Fatalf("%d chunks listed, want %d", n, len(keep))
	}
	if after.Live != int64(len(keep))*size {
		t.Fatalf("Space.Live = %d, want %d", after.Live, len(keep)*size)
	}
	checkCounts(t, s)
}

// cpuTime returns the CPU time of the process so far.
func cpuTime(b *testing.B) int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}

// BenchmarkPut1MiB compares the CPU time of writing 1 MiB chunks to
// packs with writing them to Badger's value log as before (cpu-ns/op:
// the whole process's, Badger's goroutines included; a Sync every 64).
func BenchmarkPut1MiB(b *testing.B) {
	for _, layout := range []string{"packs", "valuelog"} {
		b.Run(layout, func(b *testing.B) {
			s, err := OpenBadger(b.TempDir(), nodes.Options{ValueLogFileSize: 256 << 20})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			if layout == "valuelog" {
				s.inline = math.MaxInt
			}
			const n = 64
			var data [n][]byte
			for i := range data {
				_, data[i] = randChunk(uint64(i), 1<<20)
			}
			b.SetBytes(1 << 20)
			b.ResetTimer()
			start := cpuTime(b)
			for i := 0; i < b.N; i++ {
				// A new id each time, not the data's hash: the store does
				// not check, and hashing would only add the same to both.
				var id nodes.ChunkID
				binary.LittleEndian.PutUint64(id[:], uint64(i))
				if err := s.Put(id, data[i%n]); err != nil {
					b.Fatal(err)
				}
				if i%n == n-1 {
					if err := s.Sync(); err != nil {
						b.Fatal(err)
					}
				}
			}
			if err := s.Sync(); err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(cpuTime(b)-start)/float64(b.N), "cpu-ns/op")
		})
	}
}

// A power cut, taken as a copy of the store while it runs (Badger's files
// as the page cache holds them) whose packs then lose everything written
// after the last Sync: the chunks synced read back, the others are
// missing, none reads wrong.
func TestBadgerCopiedWhileOpen(t *testing.T) {
	dir := t.TempDir()
	const unit = 1 << 20
	s := openTest(t, dir, unit)
	chunks := map[nodes.ChunkID][]byte{}
	var ids []nodes.ChunkID
	for i := 0; i < 30; i++ {
		id, data := randChunk(uint64(i), 50<<10)
		mustPut(t, s, id, data)
		chunks[id] = data
		ids = append(ids, id)
	}
	if err := s.Sync(); err != nil {
		t.Fatal(err)
	}
	synced := packFiles(t, dir)
	for i := 30; i < 60; i++ {
		id, data := randChunk(uint64(i), 50<<10)
		mustPut(t, s, id, data)
		chunks[id] = data
		ids = append(ids, id)
	}
	cp := t.TempDir()
	if err := os.CopyFS(cp, os.DirFS(dir)); err != nil {
		t.Fatal(err)
	}
	for num := range packFiles(t, cp) {
		path := filepath.Join(cp, packDir, packName(num))
		if err := os.Truncate(path, synced[num]); err != nil { // 0 for packs made since
			t.Fatal(err)
		}
	}
	c := openTest(t, cp, unit)
	for i, id := range ids {
		got, err := c.Get(id, nil)
		switch {
		case err == nil && !bytes.Equal(got, chunks[id]):
			t.Fatalf("chunk %d read back wrong", i)
		case i < 30 && err != nil:
			t.Fatalf("synced chunk %d: %v", i, err)
		case i >= 30 && !errors.Is(err, nodes.ErrNotFound):
			t.Fatalf("chunk %d written after the sync: %v, want not found", i, err)
		}
	}
	if n := checkChunks(t, c); n != 30 {
		t.Fatalf("%d chunks listed, want 30", n)
	}
	checkCounts(t, c)
}

// Large chunks are written with O_DIRECT where the filesystem takes it:
// their data starts aligned, behind padding entries, whatever their size
// and whatever smaller entries came before; they read back, survive a
// crash of the process, and Reclaim steps over the padding. Unaligned
// buffers, and a filesystem that refuses O_DIRECT, take the page cache.
func TestPackDirectWrites(t *testing.T) {
	dir := t.TempDir()
	const unit = 4 << 20
	s := openTest(t, dir, unit)
	var fs syscall.Statfs_t
	if err := syscall.Statfs(dir, &fs); err != nil {
		t.Fatal(err)
	}
	// Where O_DIRECT is known to work, it must be used.
	mustDirect := fs.Type == unix.EXT4_SUPER_MAGIC || fs.Type == unix.XFS_SUPER_MAGIC
	chunks := map[nodes.ChunkID][]byte{}
	direct := map[nodes.ChunkID]bool{}
	put := func(seed uint64, n int, offset bool) {
		t.Helper()
		id, data := randChunk(seed, n)
		if offset { // the same bytes, at an address that is not aligned
			b := make([]byte, n+1)
			copy(b[1:], data)
			data = b[1:]
		}
		mustPut(t, s, id, data)
		chunks[id] = data
		direct[id] = n >= directMin && !offset
	}
	sizes := []int{1 << 20, 10, 1<<20 - 100, 300<<10 + 1, 5000, directMin, 1 << 20, 3 << 20, 777}
	for i, n := range sizes {
		put(uint64(i), n, false)
	}
	put(50, 512<<10, true)
	checkLayout := func() {
		t.Helper()
		for id, data := range chunks {
			var st stored
			if err := s.db.View(func(txn *badger.Txn) error {
				var err error
				st, err = getStored(txn, id)
				return err
			}); err != nil {
				t.Fatal(err)
			}
			aligned := (st.loc.off+packHeaderSize)%directAlign == 0
			if mustDirect && direct[id] && !aligned {
				t.Fatalf("chunk of %d bytes at %+v: data not aligned", len(data), st.loc)
			}
			if got, err := s.Get(id, nil); err != nil || !bytes.Equal(got, data) {
				t.Fatalf("chunk of %d bytes at %+v: %v", len(data), st.loc, err)
			}
		}
	}
	checkLayout()
	noDirect := s.packs.noDirect.Load()
	if mustDirect && noDirect {
		t.Fatal("O_DIRECT refused on ext4 or XFS")
	}
	t.Logf("filesystem %#x, O_DIRECT used: %v", fs.Type, !noDirect)

	// A crash of the process loses nothing written: O_DIRECT data is on
	// the disk already, the rest in the page cache.
	s.crash()
	s = openTest(t, dir, unit)
	checkLayout()
	if n := checkChunks(t, s); n != len(chunks) {
		t.Fatalf("%d chunks after the crash, want %d", n, len(chunks))
	}
	checkCounts(t, s)

	// Reclaim rewrites the packs, padding and all.
	i := 0
	for id := range chunks {
		if i++; i%2 == 0 {
			if err := s.Delete(id); err != nil {
				t.Fatal(err)
			}
			delete(chunks, id)
		}
	}
	if err := s.CollectGarbage(); err != nil {
		t.Fatal(err)
	}
	checkLayout()
	if n := checkChunks(t, s); n != len(chunks) {
		t.Fatalf("%d chunks after reclaim, want %d", n, len(chunks))
	}
	checkCounts(t, s)

	// Without O_DIRECT every write goes through the page cache.
	s.packs.noDirect.Store(true)
	put(60, 1<<20, false)
	direct = map[nodes.ChunkID]bool{}
	checkLayout()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openTest(t, dir, unit)
	checkLayout()
}

// The serial BLAKE3 gives the library's hash for every length: within a
// chunk, at chunk and group boundaries, and for chunks of every size the
// pool makes.
func TestBlake3Serial(t *testing.T) {
	_, data := randChunk(5, 3<<20+777)
	sizes := []int{0, 1, 1023, 1024, 1025, 2048, 16 << 10, 16<<10 + 1, 17 << 10, 32<<10 - 1, 100000, 1 << 20, 1<<20 + 1, 3 << 20, 3<<20 + 777}
	r := rand.New(rand.NewPCG(5, 5))
	for range 200 {
		sizes = append(sizes, r.IntN(len(data)))
	}
	for _, n := range sizes {
		if got, want := nodes.BLAKE3.Sum(data[:n]), nodes.ChunkID(blake3.Sum256(data[:n])); got != want {
			t.Fatalf("%d bytes: %s, want %s", n, got.Short(), want.Short())
		}
	}
}
