package cluster

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/dhdfs/dhdfs/cluster/kv"
	"github.com/dhdfs/dhdfs/nodes"
)

// Issue 12: copies written to a drive that went offline or failed were
// neither referenced nor collected, so fsck found orphan copies after a
// clean close. Each case drives one mechanism; every case then closes
// cleanly, reopens and wants fsck clean and every file intact.

// checkClean closes the pool cleanly, reopens it, and fails the test
// unless Close carried out every pending delete (all drives are usable),
// fsck finds nothing and every file reads back what was written.
func (tp *testPool) checkClean(files map[string][]byte) {
	tp.t.Helper()
	if err := tp.Close(); err != nil {
		tp.t.Fatal(err)
	}
	if n := countPendingKeys(tp.t, tp.home); n != 0 {
		tp.t.Errorf("%d pending deletes left after a clean close with every drive online", n)
	}
	tp.open()
	rep, err := tp.Fsck(context.Background(), false, nil)
	if err != nil {
		tp.t.Fatal(err)
	}
	for i, p := range rep.Problems {
		if i == 10 {
			tp.t.Errorf("... %d problems in all", len(rep.Problems))
			break
		}
		tp.t.Errorf("fsck: %s: %s", p.Kind, p.What)
	}
	for p, data := range files {
		tp.mustEqual(p, data)
	}
}

// countPendingKeys counts the pending deletes in the metadata of the
// closed pool in home.
func countPendingKeys(t testing.TB, home string) int {
	t.Helper()
	meta, err := openMeta(filepath.Join(home, metaDir), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer meta.close()
	n := 0
	err = meta.view(func(txn kv.Reader) error {
		return scan(txn, []byte{kPending}, true, func([]byte, []byte) error { n++; return nil })
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func (tp *testPool) mustPending() int64 {
	tp.t.Helper()
	n, err := tp.PendingDeletes()
	if err != nil {
		tp.t.Fatal(err)
	}
	return n
}

// overwriteAll writes new content into every file (seeded by round).
func (tp *testPool) overwriteAll(files map[string][]byte, round int) {
	tp.t.Helper()
	for p := range files {
		files[p] = randBytes(uint64(round)<<20|uint64(len(p))<<8|uint64(p[len(p)-1]), 3*MinChunkSize+round)
		tp.put(p, files[p])
	}
}

func (tp *testPool) setOffline(name string, offline bool) {
	tp.t.Helper()
	if _, err := tp.SetDriveOffline(name, offline); err != nil {
		tp.t.Fatal(err)
	}
}

// (a) A chunk collected while a holder is offline.
func TestOrphansCollectWhileOffline(t *testing.T) {
	tp := newTestPool(t, 4, 2)
	files := tp.putFiles(6)
	tp.setOffline("d2", true)
	tp.overwriteAll(files, 1)
	tp.setOffline("d2", false)
	tp.checkClean(files)
}

// (a) The same, but the drive comes back only after the pool was closed:
// the queue outlives the process.
func TestOrphansCollectWhileOfflineAcrossClose(t *testing.T) {
	onDisk(t) // a restart
	tp := newTestPool(t, 4, 2)
	files := tp.putFiles(6)
	tp.setOffline("d3", true)
	tp.overwriteAll(files, 1)
	tp.flushDeletes()
	if tp.mustPending() == 0 {
		t.Fatal("no delete queued for the offline drive")
	}
	tp.reopen()
	if tp.mustPending() == 0 {
		t.Fatal("the queue did not survive a close")
	}
	infos, err := tp.Drives()
	if err != nil {
		t.Fatal(err)
	}
	for _, info := range infos {
		if (info.PendingDeletes > 0) != (info.Name == "d3") {
			t.Fatalf("node list: %s has %d pending deletes", info.Name, info.PendingDeletes)
		}
	}
	tp.setOffline("d3", false)
	if n := tp.mustPending(); n != 0 {
		t.Fatalf("%d deletes still queued after node online", n)
	}
	tp.checkClean(files)
}

// (a) A chunk collected while a holder is failed; the drive is revived by
// the prober.
func TestOrphansCollectWhileFailed(t *testing.T) {
	tp := newTestPool(t, 4, 2)
	files := tp.putFiles(6)
	d1, _ := tp.driveByName("d1")
	tp.driveFailed(d1, fmt.Errorf("test: %w", syscall.EIO))
	tp.overwriteAll(files, 1)
	tp.ProbeDrives()
	if st, _ := d1.state(); st != StateOnline {
		t.Fatalf("d1 is %s after a probe", st)
	}
	tp.checkClean(files)
}

// (c) Heal forgets the copies of a drive down past HealAfter.
func TestOrphansHealForgetsDownDrive(t *testing.T) {
	tp := newTestPool(t, 4, 2)
	files := tp.putFiles(6)
	tp.setOffline("d4", true)
	tp.opts.HealAfter = time.Nanosecond
	if _, err := tp.Heal(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	tp.setOffline("d4", false)
	tp.checkClean(files)
}

// (b) and (d) A Put that times out lands later: the copy is on the drive
// but the write went elsewhere.
func TestOrphansLatePut(t *testing.T) {
	// The timeout is well above what a healthy drive takes on a loaded
	// machine with the race detector, and well below d2's latency.
	tp := newTestPoolWith(t, 4, 2, MinChunkSize, Options{DriveTimeout: 250 * time.Millisecond, CacheBytes: -1})
	files := tp.putFiles(3)
	tp.fault("d2", nodes.Faults{Latency: 1500 * time.Millisecond})
	tp.overwriteAll(files, 1)
	time.Sleep(3 * time.Second) // the late calls land
	tp.fault("d2", nodes.Faults{})
	tp.ProbeDrives()
	tp.checkClean(files)
}

// Offline, online and failures while files are overwritten from several
// goroutines, the healer forgetting and trimming copies as it goes.
func TestOrphansUnderChurn(t *testing.T) {
	tp := newTestPoolWith(t, 4, 2, MinChunkSize, Options{CacheBytes: -1, HealAfter: time.Nanosecond})
	files := tp.putFiles(8)
	var mu sync.Mutex // guards files
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for w := 0; w < 3; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(w), 1))
			for i := 0; ctx.Err() == nil; i++ {
				p := "/f" + string(rune('a'+r.IntN(8)))
				data := randBytes(uint64(w)<<32|uint64(i), (1+r.IntN(4))*MinChunkSize+r.IntN(1000))
				if r.IntN(8) == 0 {
					data = bytes.Repeat([]byte{byte(i % 3)}, MinChunkSize) // dedup: the same chunks again and again
				}
				mu.Lock() // one writer per file at a time, so files[p] is what it holds
				_, err := tp.PutFile(context.Background(), p, bytes.NewReader(data), 0o644, Caller{})
				if err == nil {
					files[p] = data
				}
				mu.Unlock()
				if err != nil {
					errs <- fmt.Errorf("put %s: %w", p, err)
					return
				}
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for ctx.Err() == nil {
			if _, err := tp.Heal(ctx, nil); err != nil && ctx.Err() == nil {
				errs <- err
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()
	r := rand.New(rand.NewPCG(7, 7))
	for round := 0; round < 24; round++ {
		name := fmt.Sprintf("d%d", 1+r.IntN(4))
		d, _ := tp.driveByName(name)
		switch round % 3 {
		case 0, 1:
			tp.setOffline(name, true)
			time.Sleep(time.Duration(10+r.IntN(30)) * time.Millisecond)
			tp.setOffline(name, false)
		case 2:
			tp.driveFailed(d, fmt.Errorf("test: %w", syscall.EIO))
			time.Sleep(time.Duration(10+r.IntN(30)) * time.Millisecond)
			tp.ProbeDrives()
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	tp.ProbeDrives()
	tp.opts.HealAfter = time.Hour // the heal below only tops up and trims
	if _, err := tp.Heal(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	tp.checkClean(files)
}

// A queued delete of a chunk that was written again and is held on that
// drive once more (the same content, content-addressed) must keep the
// copy: the record decides, under the chunk's stripe lock.
func TestPendingDeleteOfChunkHeldAgain(t *testing.T) {
	tp := newTestPool(t, 3, 2)
	files := tp.putFiles(3)
	var queued int
	for _, d := range tp.driveList() {
		ids, err := tp.holdingsOf(d.num)
		if err != nil {
			t.Fatal(err)
		}
		for _, id := range ids {
			if err := tp.meta.update(func(txn kv.Txn) error { return queueDelete(txn, d.num, id) }); err != nil {
				t.Fatal(err)
			}
			queued++
		}
	}
	if queued == 0 {
		t.Fatal("nothing held")
	}
	before := tp.storedChunks()
	n, err := tp.finishAllDeletes(context.Background())
	if err != nil || n != 0 {
		t.Fatalf("deleted %d held copies (%v)", n, err)
	}
	if got := tp.mustPending(); got != 0 {
		t.Fatalf("%d pending deletes of held copies left", got)
	}
	if after := tp.storedChunks(); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Fatalf("copies per drive %v, before %v", after, before)
	}
	tp.checkClean(files)
}

// The same content written again while a delete of it waits for a drive:
// the new copies live on other drives, and the old one still goes.
func TestPendingDeleteSameContentAgain(t *testing.T) {
	tp := newTestPool(t, 3, 2)
	// 24 chunks: each leaves d2 out one time in three, so with 4 all of
	// them did once in 81 runs and nothing was queued for it.
	data := randBytes(77, 24*MinChunkSize)
	tp.put("/a", data)
	tp.setOffline("d2", true)
	if err := tp.RemovePath("/a", false); err != nil {
		t.Fatal(err)
	}
	tp.flushDeletes()
	queued := tp.mustPending()
	tp.put("/b", data)
	tp.setOffline("d2", false)
	if queued == 0 || tp.mustPending() != 0 {
		t.Fatalf("queued %d, left %d", queued, tp.mustPending())
	}
	tp.checkClean(map[string][]byte{"/b": data})
}

// Deletes queued for a drive that is then removed are forgotten with it.
func TestPendingDeletesOfRemovedDrive(t *testing.T) {
	tp := newTestPool(t, 4, 2)
	files := tp.putFiles(6) // over 20 chunks: some surely on d4
	tp.setOffline("d4", true)
	tp.overwriteAll(files, 1)
	tp.flushDeletes()
	if tp.mustPending() == 0 {
		t.Fatal("no delete queued for the offline drive")
	}
	if _, err := tp.RemoveDrive("d4", true); err != nil {
		t.Fatal(err)
	}
	if _, err := tp.Heal(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	if n := tp.mustPending(); n != 0 {
		t.Fatalf("%d pending deletes of a removed drive", n)
	}
	tp.checkClean(files)
}

// gc and scrub carry out deletes still queued for usable drives (one the
// drive's return did not finish, say), and count them as orphans.
func TestGCAndScrubFinishPendingDeletes(t *testing.T) {
	for _, op := range []string{"gc", "scrub"} {
		t.Run(op, func(t *testing.T) {
			tp := newTestPool(t, 3, 2)
			files := tp.putFiles(2)
			d, _ := tp.driveByName("d2")
			stray := randBytes(99, MinChunkSize)
			id := nodes.SumChunk(stray)
			if err := d.usable().Put(id, stray); err != nil {
				t.Fatal(err)
			}
			if err := tp.meta.update(func(txn kv.Txn) error { return queueDelete(txn, d.num, id) }); err != nil {
				t.Fatal(err)
			}
			var orphans int64
			var err error
			if op == "gc" {
				var rep GCReport
				rep, err = tp.GC(context.Background(), nil)
				orphans = rep.Orphans
			} else {
				var rep ScrubReport
				rep, err = tp.Scrub(context.Background(), nil)
				orphans = rep.Orphans
			}
			if err != nil || orphans != 1 || tp.mustPending() != 0 {
				t.Fatalf("%s: %d orphans, %d pending left (%v)", op, orphans, tp.mustPending(), err)
			}
			if ok, _ := d.usable().Has(id); ok {
				t.Fatal("the queued copy is still there")
			}
			tp.checkClean(files)
		})
	}
}
