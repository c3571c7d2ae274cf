package cluster

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/dhdfs/dhdfs/cluster/kv"
	"github.com/dhdfs/dhdfs/nodes"
	"github.com/dhdfs/dhdfs/nodes/dirdrive"
)

// smallUnits makes the drives opened during the test write value-log
// files of size bytes, as on a small drive, instead of the 256 MiB a
// temp directory's big filesystem gets.
func smallUnits(t *testing.T, size int64) {
	old := dirdrive.DefaultValueLogFileSize
	dirdrive.DefaultValueLogFileSize = size
	t.Cleanup(func() { dirdrive.DefaultValueLogFileSize = old })
}

// newTmpfsPool is newTestPoolWith on drives that are each a tmpfs of
// size bytes, so that they fill up and free space for real. It needs
// root, and skips otherwise.
func newTmpfsPool(t *testing.T, drives, replicas, chunkSize int, size int64, opts Options) *testPool {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("mounting a tmpfs for each drive needs root")
	}
	root := t.TempDir()
	var paths []string
	for i := 0; i < drives; i++ {
		// Registered before the pool opens, so unmounted after it closes.
		paths = append(paths, mountTmpfs(t, filepath.Join(root, fmt.Sprintf("disk%d", i+1)), size))
	}
	tp := &testPool{t: t, home: filepath.Join(root, "home"), faulty: map[string]*nodes.Faulty{}, openOpts: opts}
	cfg := DefaultPoolConfig()
	cfg.Replicas = replicas
	cfg.ChunkSize = chunkSize
	if _, err := Init(tp.home, cfg); err != nil {
		t.Fatal(err)
	}
	tp.open()
	for _, p := range paths {
		if _, _, err := tp.AddDrive(p, AddDriveOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	tp.paths = paths
	return tp
}

// mountTmpfs makes dir a tmpfs of size bytes until the test ends, and
// returns dir; it skips the test where mounting is not allowed.
func mountTmpfs(t *testing.T, dir string, size int64) string {
	t.Helper()
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, fmt.Sprintf("size=%d,mode=0755", size)); err != nil {
		t.Skipf("mount tmpfs: %v", err)
	}
	t.Cleanup(func() {
		// Busy when mounted after the pool opened (its close runs later):
		// detached then, freed when the pool lets go.
		err := syscall.Unmount(dir, 0)
		if errors.Is(err, syscall.EBUSY) {
			err = syscall.Unmount(dir, syscall.MNT_DETACH)
		}
		if err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	return dir
}

// driveSpace is one drive's space as the pool sees it.
type driveSpace struct {
	name       string
	used, live int64 // the store's size; the copies the metadata says it holds
	unit       int64
	free       int64 // its filesystem's
}

// drivesSpace measures every online drive. live comes from the chunk
// records, not from the store's own count.
func (tp *testPool) drivesSpace() []driveSpace {
	tp.t.Helper()
	var out []driveSpace
	for _, d := range tp.driveList() {
		s := d.usable()
		if s == nil {
			continue
		}
		u, err := s.Usage()
		if err != nil {
			tp.t.Fatal(err)
		}
		ids, err := tp.holdingsOf(d.num)
		if err != nil {
			tp.t.Fatal(err)
		}
		ds := driveSpace{name: d.record().Name, used: u.Used, free: u.Free}
		for _, id := range ids {
			rec, ok, err := tp.chunkRecordOf(id)
			if err != nil {
				tp.t.Fatal(err)
			}
			if ok {
				ds.live += int64(rec.Size)
			}
		}
		if tp.rc != nil {
			if rs := tp.rc.storeFor(d); rs != nil {
				if sp, err := rs.Space(); err == nil {
					ds.unit = sp.Unit
				}
			}
		}
		out = append(out, ds)
	}
	return out
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

// Files overwritten again and again leave the drives many times the size
// of the live data; with the reclaimer on, the drives come back near it
// without anyone calling gc.
func TestReclaimAfterOverwrites(t *testing.T) {
	onDisk(t) // space the store gives back to its filesystem
	const unit, chunk = 4 << 20, 256 << 10
	smallUnits(t, unit)
	// Checkpoints every 100 ms, as a mount's --sync-every does every 5 s:
	// overwritten chunks leave the drives once their release is durable.
	tp := newTestPoolWith(t, 3, 2, chunk, Options{ReclaimInterval: 100 * time.Millisecond, ReclaimThreshold: 4 << 20,
		SyncInterval: 100 * time.Millisecond})
	const files, size, rounds = 6, 2 << 20, 25 // 12 MiB live, 300 MiB written (600 MiB of copies)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var peak atomic.Int64
	wg.Add(1)
	go func() {
		defer wg.Done()
		for ctx.Err() == nil {
			var used int64
			for _, d := range tp.driveList() {
				if s := d.usable(); s != nil {
					if u, err := s.Usage(); err == nil {
						used += u.Used
					}
				}
			}
			if used > peak.Load() {
				peak.Store(used)
			}
			sleepCtx(ctx, 200*time.Millisecond)
		}
	}()
	start := time.Now()
	want := map[string][]byte{}
	for r := 0; r < rounds; r++ {
		for f := 0; f < files; f++ {
			p := fmt.Sprintf("/f%d", f)
			data := randBytes(uint64(r*files+f), size)
			tp.put(p, data)
			want[p] = data
		}
	}
	wrote := time.Since(start)
	// Without reclaiming, the drives would hold every copy ever written.
	var written int64
	for _, d := range tp.driveList() {
		written += d.written.Load()
	}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		var used, live, limit int64
		ok := true
		var report string
		for _, ds := range tp.drivesSpace() {
			// What the policy leaves: files less than half dead (at most
			// as many dead bytes as live ones), the file being written (a
			// unit and a chunk), Badger's tables and logs (a few MiB), and
			// dead bytes below the threshold, max(4 MiB, a quarter of
			// the store).
			kept := 2*ds.live + ds.unit + chunk + 4<<20
			l := max(kept*4/3, kept+4<<20)
			ok = ok && ds.unit == unit && ds.used <= l
			used += ds.used
			live += ds.live
			limit += l
			report += fmt.Sprintf(" %s %s/%s", ds.name, mib(ds.used), mib(ds.live))
		}
		if ok {
			t.Logf("wrote %s of copies in %v; drives (used/live):%s; %s used for %s live (limit %s), peak %s; %+v after %v",
				mib(written), wrote.Round(time.Millisecond), report, mib(used), mib(live), mib(limit), mib(peak.Load()), tp.ReclaimStats(),
				time.Since(start).Round(time.Millisecond))
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the drives still hold %s for %s live (limit %s):%s; %+v", mib(used), mib(live), mib(limit), report, tp.ReclaimStats())
		}
		time.Sleep(200 * time.Millisecond)
	}
	cancel()
	wg.Wait()
	if tp.ReclaimStats().Passes == 0 {
		t.Fatal("the reclaimer never ran")
	}
	for p, data := range want {
		tp.mustEqual(p, data)
	}
	if err := tp.Close(); err != nil {
		t.Fatal(err)
	}
	tp.openOpts.ReclaimInterval = 0
	tp.open()
	rep, err := tp.Fsck(context.Background(), false, nil)
	if err != nil || len(rep.Problems) != 0 {
		t.Fatalf("fsck after reclaiming: %v, %+v", err, rep.Problems)
	}
}

// fillUntilFull writes files of size bytes until the pool answers ENOSPC,
// and returns their paths and contents.
func fillUntilFull(tp *testPool, size int) ([]string, map[string][]byte) {
	tp.t.Helper()
	want := map[string][]byte{}
	var paths []string
	for i := 0; ; i++ {
		if i == 40 {
			tp.t.Fatal("the pool never filled")
		}
		p := fmt.Sprintf("/fill%d", i)
		data := randBytes(uint64(1000+i), size)
		_, err := tp.PutFile(context.Background(), p, bytes.NewReader(data), 0o644, Caller{})
		if errors.Is(err, ErrNoSpace) {
			return paths, want
		}
		if err != nil {
			tp.t.Fatalf("put %s: %v", p, err)
		}
		paths = append(paths, p)
		want[p] = data
	}
}

// After the pool filled up and a write failed with ENOSPC, deleting a
// file makes room for a new file of its size within seconds, without
// gc: placement tells the reclaimer the drives are short, and it
// reclaims them as soon as the delete left dead space. Without the
// reclaimer the same write keeps failing until gc.
func TestReclaimWhenFull(t *testing.T) {
	const size = 32 << 20
	scenario := func(t *testing.T, reclaim bool) {
		var opts Options
		if reclaim {
			opts.ReclaimInterval = 10 * time.Second // only the urgent path can act in time
		}
		if os.Getenv("DHDFS_DEBUG_LOG") != "" {
			opts.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
		}
		// 3 drives of 256 MiB: value-log files of 16 MiB, 64 MiB reserved.
		tp := newTmpfsPool(t, 3, 2, 1<<20, 256<<20, opts)
		paths, want := fillUntilFull(tp, size)
		t.Logf("%d files of %s fit", len(paths), mib(size))
		var report string
		for _, ds := range tp.drivesSpace() {
			report += fmt.Sprintf(" %s used %s free %s;", ds.name, mib(ds.used), mib(ds.free))
		}
		t.Logf("full:%s df avail %s", report, mib(tp.Space().Avail/2))
		if avail := tp.Space().Avail / 2; avail >= size {
			t.Fatalf("df shows %s available when a write of %s failed", mib(avail), mib(size))
		}
		// A little smaller than the file deleted: packs pad large chunks
		// (up to 4 KiB each), journals grow ahead 1 MiB at a time, and
		// every drive takes the metadata mirror's segments, so a file of
		// exactly the deleted size may need a few MiB more than the delete
		// gave back on a pool filled to its reserve. With 2 MiB less (1.3
		// MiB a drive to spare) a loaded CI machine once went a minute
		// without the write fitting; 4 MiB less leaves 2.7 MiB a drive.
		data := randBytes(99, size-4<<20)
		victim := paths[len(paths)/2]
		if err := tp.RemovePath(victim, false); err != nil {
			t.Fatal(err)
		}
		delete(want, victim)
		deleted := time.Now()
		// Each failed try leaves the chunks it wrote as dead space for the
		// reclaimer to give back again: tries a second apart, and time
		// for a loaded machine running the race detector.
		wait := 60 * time.Second
		if !reclaim {
			wait = 3 * time.Second
		}
		var err error
		tries := 0
		for {
			tries++
			_, err = tp.PutFile(context.Background(), "/new", bytes.NewReader(data), 0o644, Caller{})
			if !errors.Is(err, ErrNoSpace) || time.Since(deleted) > wait {
				break
			}
			time.Sleep(time.Second)
		}
		report = ""
		for _, ds := range tp.drivesSpace() {
			report += fmt.Sprintf(" %s used %s free %s;", ds.name, mib(ds.used), mib(ds.free))
		}
		if !reclaim {
			if !errors.Is(err, ErrNoSpace) {
				t.Fatalf("without the reclaimer, a write after the delete: %v", err)
			}
			t.Logf("without the reclaimer: still ENOSPC %v after the delete (%d tries):%s", time.Since(deleted).Round(time.Millisecond), tries, report)
			// gc gives back what it can; whether the file then fits
			// depends on how the deleted file's copies fell in the
			// value-log files (gc rewrites those at least half dead).
			rep, err := tp.GC(context.Background(), nil)
			if err != nil {
				t.Fatal(err)
			}
			_, err = tp.PutFile(context.Background(), "/new", bytes.NewReader(data), 0o644, Caller{})
			t.Logf("after gc (%s to %s on the drives), the write: %v", mib(rep.UsedBefore), mib(rep.UsedAfter), err)
			return
		}
		if err != nil {
			t.Fatalf("the write still fails %v after deleting %s: %v; drives:%s %+v", wait, mib(size), err, report, tp.ReclaimStats())
		}
		t.Logf("with the reclaimer: a new %s file fit %v after the delete (%d tries):%s %+v",
			mib(size), time.Since(deleted).Round(time.Millisecond), tries, report, tp.ReclaimStats())
		want["/new"] = data
		for p, data := range want {
			tp.mustEqual(p, data)
		}
	}
	t.Run("reclaimer", func(t *testing.T) { scenario(t, true) })
	t.Run("control", func(t *testing.T) { scenario(t, false) })
}

// The reclaimer stops with the pool, also in the middle of a pass.
func TestReclaimerStopsAtClose(t *testing.T) {
	smallUnits(t, 1<<20)
	tp := newTestPoolWith(t, 2, 1, 256<<10, Options{ReclaimInterval: 10 * time.Millisecond, ReclaimThreshold: 1})
	for i := 0; i < 20; i++ {
		tp.put("/f", randBytes(uint64(i), 1<<20))
	}
	done := make(chan error, 1)
	go func() { done <- tp.Close() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Close did not return")
	}
}

// A placement that found no room waits for one look at the drives, not
// for a timeout, when there is nothing to reclaim; and not at all without
// a reclaimer or after Close.
func TestWaitReclaimReturns(t *testing.T) {
	tp := newTestPoolWith(t, 2, 1, 256<<10, Options{ReclaimInterval: time.Hour})
	tp.put("/f", randBytes(1, 1<<20))
	for _, d := range tp.driveList() {
		tp.kickReclaim(d.num) // as placement does for a full drive
	}
	start := time.Now()
	if tp.waitReclaim() {
		t.Fatal("waitReclaim reports a reclaim with nothing dead")
	}
	if took := time.Since(start); took > reclaimWait/2 {
		t.Fatalf("waitReclaim took %v", took)
	}
	if err := tp.Close(); err != nil {
		t.Fatal(err)
	}
	if tp.waitReclaim() {
		t.Fatal("waitReclaim after Close")
	}
	off := newTestPool(t, 2, 1)
	if off.rc != nil || off.waitReclaim() {
		t.Fatal("a pool without a reclaimer waits for one")
	}
}

// A reclaim pass gives way to fsyncs: it works in short bursts while they
// go on, waits for them to pause (or for paceWait), and never waits once
// they have stopped or the pass is cancelled.
func TestReclaimYieldsToSyncs(t *testing.T) {
	m := &Manager{}
	p := &syncPacer{m: m}
	ctx := context.Background()
	took := func() time.Duration {
		t0 := time.Now()
		if err := p.pace(ctx); err != nil {
			t.Fatal(err)
		}
		return time.Since(t0)
	}
	if d := took(); d > syncQuiet {
		t.Fatalf("paced %v with no fsync ever", d)
	}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() { // an fsync every millisecond
		defer close(done)
		for {
			m.syncAt.Store(time.Now().UnixNano())
			select {
			case <-stop:
				return
			case <-time.After(time.Millisecond):
			}
		}
	}()
	time.Sleep(5 * time.Millisecond)
	// The burst: calls go through until paceBurst has passed, then one waits
	// out paceWait, since the fsyncs never pause.
	var waited time.Duration
	for start := time.Now(); time.Since(start) < 10*paceBurst && waited == 0; {
		if d := took(); d >= paceWait/2 {
			waited = d
		}
	}
	if waited == 0 {
		t.Fatalf("no pause in %v of work among fsyncs", 10*paceBurst)
	}
	if waited > 20*paceWait {
		t.Fatalf("paused %v among fsyncs, more than paceWait (%v) allows", waited, paceWait)
	}
	// A write waiting for room: no pause, fsyncs or not.
	var waiting atomic.Int64
	p.waiting = &waiting
	waiting.Store(1)
	for range 5 {
		p.burst = time.Now().Add(-time.Second)
		if d := took(); d >= paceWait/2 {
			t.Fatalf("paused %v while a write waits for room", d)
		}
	}
	waiting.Store(0)
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	p.burst = time.Now().Add(-time.Second)
	if err := p.pace(cctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("pace after cancel: %v", err)
	}
	close(stop)
	<-done
	time.Sleep(syncQuiet)
	if d := took(); d > syncQuiet {
		t.Fatalf("paced %v after the fsyncs stopped", d)
	}
}

// markerKeys returns the unsettled markers in the metadata.
func markerKeys(t *testing.T, tp *testPool) map[slotAddr]uint64 {
	t.Helper()
	out := map[slotAddr]uint64{}
	err := tp.meta.view(func(txn kv.Reader) error {
		return scan(txn, []byte{kUnsettled}, false, func(k, v []byte) error {
			out[slotAddr{Ino(binary.BigEndian.Uint64(k[1:9])), int64(binary.BigEndian.Uint64(k[9:17]))}] = binary.BigEndian.Uint64(v)
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// A slot that settles with nothing to drop keeps its marker a while (it
// goes with the next settle that has work), a queued deletion never
// removes the marker of a later commit, and settleAll leaves none.
func TestSettleDefersMarkers(t *testing.T) {
	tp := newTestPool(t, 2, 2)
	n, err := tp.Make(RootIno, "log", NodeSpec{Mode: 0o644}, Caller{})
	if err != nil {
		t.Fatal(err)
	}
	f, err := tp.OpenFile(n.Ino)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close(context.Background())
	ctx := context.Background()
	var want []byte
	appendSync := func() {
		t.Helper()
		b := bytes.Repeat([]byte{byte(len(want))}, 200)
		if _, err := f.WriteAt(ctx, b, int64(len(want))); err != nil {
			t.Fatal(err)
		}
		want = append(want, b...)
		if err := f.Fsync(ctx); err != nil {
			t.Fatal(err)
		}
	}
	slot := slotAddr{n.Ino, 0}
	appendSync()
	tp.settleNow()
	first, ok := markerKeys(t, tp)[slot]
	if !ok {
		t.Fatal("the marker of an append that settled with nothing to drop went at once")
	}
	// A later commit re-marks the slot; the queued deletion (of the first
	// epoch) must leave its marker alone. Committed without a sync round,
	// so that the settler has no reason to settle it meanwhile.
	b := bytes.Repeat([]byte{9}, 200)
	if _, err := f.WriteAt(ctx, b, int64(len(want))); err != nil {
		t.Fatal(err)
	}
	want = append(want, b...)
	f.mu.Lock()
	err = f.drain(ctx, false)
	if err == nil {
		err = f.commit(false)
	}
	f.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	later := markerKeys(t, tp)[slot]
	if later <= first {
		t.Fatalf("marker epoch %d after a second commit, was %d", later, first)
	}
	if err := tp.settleSlots([]settleItem{{slot, first}}); err != nil {
		t.Fatal(err)
	}
	if got, ok := markerKeys(t, tp)[slot]; !ok || got != later {
		t.Fatalf("settling epoch %d removed the marker of epoch %d (now %d, %v)", first, later, got, ok)
	}
	for i := 0; i < 3*tierWidth; i++ { // folds: settles with work
		appendSync()
	}
	tp.flushDeletes()
	if ms := markerKeys(t, tp); len(ms) != 0 {
		t.Fatalf("markers left after settleAll: %v", ms)
	}
	got := make([]byte, len(want))
	if _, err := f.ReadAt(ctx, got, 0); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("read back after settling: %v", err)
	}
}

// Files written side by side share the drives' packs: with six of them
// each pack is about a sixth each file's, so deleting one leaves every
// pack only a sixth dead, under the share an urgent pass rewrites. A
// write that then finds no room must still get the deleted file's space
// back (as gc would give it), not fail until an explicit gc.
func TestReclaimWhenFullOfInterleavedFiles(t *testing.T) {
	const files = 6
	opts := Options{ReclaimInterval: time.Hour} // only the urgent path acts
	tp := newTmpfsPool(t, 3, 2, 1<<20, 256<<20, opts)
	ctx := context.Background()
	open := make([]*File, files)
	for i := range open {
		_, open[i] = tp.createOpen(fmt.Sprintf("f%d", i))
	}
	var size int64 // what every file holds
fill:
	for off := int64(0); ; off += 1 << 20 {
		if off > 400<<20 {
			t.Fatal("the pool never filled")
		}
		for i, f := range open {
			if _, err := f.WriteAt(ctx, randBytes(uint64(off)+uint64(i)<<40, 1<<20), off); err != nil {
				t.Fatal(err)
			}
			if err := f.Flush(ctx); err != nil {
				if !errors.Is(err, ErrNoSpace) {
					t.Fatalf("flush: %v", err)
				}
				break fill
			}
		}
		size = off + 1<<20
	}
	for _, f := range open {
		_ = f.Close(ctx) // the last chunk found no room
	}
	var report string
	for _, ds := range tp.drivesSpace() {
		report += fmt.Sprintf(" %s used %s free %s;", ds.name, mib(ds.used), mib(ds.free))
	}
	t.Logf("full after %d files of %s:%s", files, mib(size), report)
	if err := tp.RemovePath("/f2", false); err != nil {
		t.Fatal(err)
	}
	data := randBytes(99, int(size)-4<<20)
	deleted := time.Now()
	var err error
	tries := 0
	for {
		tries++
		_, err = tp.PutFile(ctx, "/new", bytes.NewReader(data), 0o644, Caller{})
		if !errors.Is(err, ErrNoSpace) || time.Since(deleted) > 60*time.Second {
			break
		}
		time.Sleep(time.Second)
	}
	report = ""
	for _, ds := range tp.drivesSpace() {
		report += fmt.Sprintf(" %s used %s free %s;", ds.name, mib(ds.used), mib(ds.free))
	}
	if err != nil {
		t.Fatalf("the write still fails %v after deleting %s: %v; drives:%s %+v",
			time.Since(deleted).Round(time.Second), mib(size), err, report, tp.ReclaimStats())
	}
	t.Logf("a new %s file fit %v after the delete (%d tries):%s %+v", mib(int64(len(data))),
		time.Since(deleted).Round(time.Millisecond), tries, report, tp.ReclaimStats())
	tp.mustEqual("/new", data)
}
