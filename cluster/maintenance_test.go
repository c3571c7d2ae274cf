package cluster

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/dhdfs/dhdfs/nodes"
)

func (tp *testPool) mustStatus() Status {
	tp.t.Helper()
	st, err := tp.Status()
	if err != nil {
		tp.t.Fatal(err)
	}
	return st
}

func (tp *testPool) putFiles(n int) map[string][]byte {
	files := map[string][]byte{}
	for i := 0; i < n; i++ {
		p := "/f" + string(rune('a'+i))
		files[p] = randBytes(uint64(500+i), (i+1)*MinChunkSize+i)
		tp.put(p, files[p])
	}
	return files
}

func TestHealAfterDriveLostForGood(t *testing.T) {
	tp := newTestPool(t, 4, 2)
	files := tp.putFiles(5)
	ctx := context.Background()
	d1, _ := tp.driveByName("d1")
	os.RemoveAll(d1.record().Path)
	tp.ProbeDrives()
	rep, err := tp.RemoveDrive("d1", false)
	if err == nil {
		t.Fatal("removed a drive holding chunks without --force")
	}
	rep, err = tp.RemoveDrive("d1", true)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Chunks == 0 || rep.UnderReplicated != rep.Chunks || rep.Lost != 0 || rep.Files == 0 {
		t.Fatalf("remove report %+v", rep)
	}
	if st := tp.mustStatus(); st.UnderReplicated != rep.UnderReplicated {
		t.Fatalf("status under-replicated %d, report %d", st.UnderReplicated, rep.UnderReplicated)
	}
	hr, err := tp.Heal(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if hr.Copied != rep.UnderReplicated {
		t.Fatalf("heal copied %d, want %d: %+v", hr.Copied, rep.UnderReplicated, hr)
	}
	if st := tp.mustStatus(); st.UnderReplicated != 0 || st.Copies != 2*st.Chunks {
		t.Fatalf("after heal: %+v", st)
	}
	// A second failure now loses nothing.
	if _, err := tp.SetDriveOffline("d2", true); err != nil {
		t.Fatal(err)
	}
	for p, data := range files {
		tp.mustEqual(p, data)
	}
}

func TestHealWaitsForGracePeriod(t *testing.T) {
	tp := newTestPool(t, 3, 2)
	files := tp.putFiles(3)
	ctx := context.Background()
	if _, err := tp.SetDriveOffline("d1", true); err != nil {
		t.Fatal(err)
	}
	hr, _ := tp.Heal(ctx, nil)
	if hr.Copied != 0 || hr.Waiting == 0 {
		t.Fatalf("heal within the grace period: %+v", hr)
	}
	// Past the grace period the copies are made elsewhere...
	tp.opts.HealAfter = time.Nanosecond
	hr, _ = tp.Heal(ctx, nil)
	if hr.Copied == 0 || tp.mustStatus().UnderReplicated != 0 {
		t.Fatalf("heal past the grace period: %+v", hr)
	}
	// ...and when the drive returns, its forgotten copies are deleted at
	// once, leaving gc nothing to find.
	if _, err := tp.SetDriveOffline("d1", false); err != nil {
		t.Fatal(err)
	}
	if n := tp.storedChunks()["d1"]; n != 0 {
		t.Fatalf("d1 still stores %d copies the healer forgot", n)
	}
	gr, err := tp.GC(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if gr.Orphans != 0 {
		t.Fatalf("gc removed %d orphans after d1 returned", gr.Orphans)
	}
	for p, data := range files {
		tp.mustEqual(p, data)
	}
}

// flipOnDisk flips a byte of data where it sits in a drive's packs (or
// value log).
func flipOnDisk(t *testing.T, dir string, data []byte) {
	t.Helper()
	needle := data[len(data)/2 : len(data)/2+64]
	matches, _ := filepath.Glob(filepath.Join(dir, "packs", "*.pack"))
	logs, _ := filepath.Glob(filepath.Join(dir, "chunks", "*.vlog"))
	matches = append(matches, logs...)
	for _, f := range matches {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if i := bytes.Index(b, needle); i >= 0 {
			fh, err := os.OpenFile(f, os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			fh.WriteAt([]byte{b[i] ^ 0xff}, int64(i))
			fh.Close()
			return
		}
	}
	t.Fatalf("chunk bytes not found in %s", dir)
}

func TestScrubRepairsFlippedBytes(t *testing.T) {
	onDisk(t) // flips bytes in a drive's files
	tp := newTestPool(t, 3, 2)
	data := randBytes(77, MinChunkSize)
	n := tp.put("/f", data)
	locs, _ := tp.ChunkLocations(n.Ino)
	d, _ := tp.driveByName(locs[0].Drives[0])
	tp.Close() // the value log is mapped; edit it with the pool closed
	flipOnDisk(t, d.record().Path, data)
	tp.open()
	tp.mustEqual("/f", data) // the good copy is used
	rep, err := tp.Scrub(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Corrupt != 1 || rep.Repaired != 1 || rep.Verified != 2 || rep.Drives != 3 {
		t.Fatalf("scrub report %+v", rep)
	}
	d, _ = tp.driveByName(locs[0].Drives[0])
	got, err := d.usable().Get(tp.sum(data), nil)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("copy after repair: %v", err)
	}
	drives, _ := tp.Drives()
	for _, di := range drives {
		if di.Verified == nil {
			t.Fatalf("drive %s has no last-verified time after a scrub", di.Name)
		}
	}
	if rep, _ := tp.Scrub(context.Background(), nil); rep.Corrupt != 0 {
		t.Fatalf("second scrub still finds corruption: %+v", rep)
	}
}

func TestReadTriggersRepairOfCorruptCopy(t *testing.T) {
	onDisk(t) // damages a drive's files
	tp := newTestPool(t, 2, 2)
	data := randBytes(78, MinChunkSize)
	n := tp.put("/f", data)
	locs, _ := tp.ChunkLocations(n.Ino)
	first := locs[0].Drives[0]
	d, _ := tp.driveByName(first)
	id := tp.sum(data)
	bad := append([]byte{}, data...)
	bad[10] ^= 1
	if err := d.usable().Put(id, bad); err != nil { // overwrite the stored copy
		t.Fatal(err)
	}
	tp.readFirst(first)
	tp.mustEqual("/f", data)
	if !tp.isBad(id, d.num) {
		t.Fatal("a corrupt copy found by a read was not reported")
	}
	hr, _ := tp.Heal(context.Background(), nil)
	if hr.Repaired != 1 {
		t.Fatalf("heal: %+v", hr)
	}
	if got, _ := d.usable().Get(id, nil); !bytes.Equal(got, data) {
		t.Fatal("the corrupt copy was not rewritten")
	}
}

func TestDrainThenRemove(t *testing.T) {
	tp := newTestPool(t, 3, 2)
	files := tp.putFiles(4)
	ctx := context.Background()
	var last Progress
	rep, err := tp.Drain(ctx, "d2", func(p Progress) { last = p })
	if err != nil {
		t.Fatal(err)
	}
	if rep.Chunks == 0 || last.Done != last.Total || last.Total != rep.Chunks {
		t.Fatalf("drain: %+v, last progress %+v", rep, last)
	}
	d2, _ := tp.driveByName("d2")
	if st, _ := d2.state(); st != StateDraining {
		t.Fatalf("drained drive is %s", st)
	}
	tp.put("/new", randBytes(79, 3*MinChunkSize))
	if ids, _ := tp.holdingsOf(d2.num); len(ids) != 0 {
		t.Fatalf("a draining drive holds %d chunks (new writes went to it?)", len(ids))
	}
	st := tp.mustStatus()
	if st.UnderReplicated != 0 || st.Copies != 2*st.Chunks {
		t.Fatalf("after drain: %+v", st)
	}
	path := d2.record().Path
	if _, err := tp.RemoveDrive("d2", false); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(path, nodes.IdentityFile)); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("a removed, drained drive keeps its identity file")
	}
	for p, data := range files {
		tp.mustEqual(p, data)
	}
}

// A drain with nowhere to put new copies keeps the drive's copies (it
// stays readable and removal still refuses), reports them stuck, and
// finishes once a drive is added.
func TestDrainWithoutRoomKeepsCopies(t *testing.T) {
	tp := newTestPool(t, 2, 2)
	files := tp.putFiles(3)
	d1, _ := tp.driveByName("d1")
	held, _ := tp.holdingsOf(d1.num)
	rep, err := tp.Drain(context.Background(), "d1", nil)
	if err == nil || rep.Stuck != int64(len(held)) || rep.Chunks != 0 {
		t.Fatalf("draining one of two drives at replicas 2: %+v %v", rep, err)
	}
	if after, _ := tp.holdingsOf(d1.num); len(after) != len(held) {
		t.Fatalf("the drain dropped %d of %d copies with nowhere to move them", len(held)-len(after), len(held))
	}
	if st := tp.mustStatus(); st.UnderReplicated != 0 {
		t.Fatalf("a drain left %d chunks under-replicated", st.UnderReplicated)
	}
	if _, err := tp.RemoveDrive("d1", false); err == nil {
		t.Fatal("a drive whose drain could not finish was removed")
	}
	p := filepath.Join(filepath.Dir(tp.home), "d3")
	os.Mkdir(p, 0o755)
	if _, _, err := tp.AddDrive(p, AddDriveOptions{}); err != nil {
		t.Fatal(err)
	}
	if rep, err := tp.Drain(context.Background(), "d1", nil); err != nil || rep.Chunks != int64(len(held)) {
		t.Fatalf("the drain again with a third drive: %+v %v", rep, err)
	}
	if st := tp.mustStatus(); st.UnderReplicated != 0 || st.Copies != 2*st.Chunks {
		t.Fatalf("after the drain: %+v", st)
	}
	for p, data := range files {
		tp.mustEqual(p, data)
	}
}

func TestReplace(t *testing.T) {
	tp := newTestPool(t, 3, 2)
	files := tp.putFiles(3)
	d1, _ := tp.driveByName("d1")
	before, _ := tp.holdingsOf(d1.num)
	np := filepath.Join(filepath.Dir(tp.home), "new")
	os.Mkdir(np, 0o755)
	if _, err := tp.Replace(context.Background(), "d1", np, AddDriveOptions{Name: "n1"}, nil); err != nil {
		t.Fatal(err)
	}
	nd, err := tp.driveByName("n1")
	if err != nil {
		t.Fatal(err)
	}
	after, _ := tp.holdingsOf(nd.num)
	if len(after) != len(before) {
		t.Fatalf("new drive holds %d chunks, old held %d", len(after), len(before))
	}
	if _, err := tp.driveByName("d1"); err == nil {
		t.Fatal("old drive still in the pool")
	}
	for p, data := range files {
		tp.mustEqual(p, data)
	}
}

func TestRebalanceEvensUsage(t *testing.T) {
	onDisk(t) // balances real filesystems' space
	tp := newTestPool(t, 2, 2)
	tp.putFiles(6)
	for _, name := range []string{"e3", "e4"} {
		p := filepath.Join(filepath.Dir(tp.home), name)
		os.Mkdir(p, 0o755)
		if _, _, err := tp.AddDrive(p, AddDriveOptions{Name: name}); err != nil {
			t.Fatal(err)
		}
	}
	before := tp.mustStatus()
	var last Progress
	rep, err := tp.Rebalance(context.Background(), 0.1, func(p Progress) { last = p })
	if err != nil {
		t.Fatal(err)
	}
	counts := map[string]int{}
	for _, d := range tp.driveList() {
		ids, _ := tp.holdingsOf(d.num)
		counts[d.record().Name] = len(ids)
	}
	total := 0
	for _, c := range counts {
		total += c
	}
	for name, c := range counts {
		if c < total/4*8/10 || c > total/4*12/10+1 {
			t.Fatalf("after rebalance %s holds %d of %d copies: %v (%+v)", name, c, total, counts, rep)
		}
	}
	after := tp.mustStatus()
	if after.Copies != before.Copies || after.UnderReplicated != 0 {
		t.Fatalf("rebalance changed redundancy: %d copies before, %d after", before.Copies, after.Copies)
	}
	// The progress line ends complete, at what moved.
	if last.Done != last.Total || last.Done != rep.Bytes || last.Done == 0 {
		t.Fatalf("last progress %+v after moving %d bytes", last, rep.Bytes)
	}
}

func TestReplicationFactorChanges(t *testing.T) {
	tp := newTestPool(t, 4, 2)
	n := tp.put("/f", randBytes(80, 3*MinChunkSize))
	ctx := context.Background()
	for _, r := range []string{"3", "1", "2"} {
		if err := tp.SetXattr(n.Ino, XattrReplicas, []byte(r), 0); err != nil {
			t.Fatal(err)
		}
		if _, err := tp.Heal(ctx, nil); err != nil {
			t.Fatal(err)
		}
		locs, _ := tp.ChunkLocations(n.Ino)
		for _, l := range locs {
			if len(l.Drives) != int(r[0]-'0') || l.Want != int(r[0]-'0') {
				t.Fatalf("replicas %s: chunk %d on %v (want %d)", r, l.Index, l.Drives, l.Want)
			}
		}
	}
}

func TestGCReclaimsSpace(t *testing.T) {
	tp := newTestPool(t, 2, 2)
	used := func() int64 {
		var total int64
		for _, d := range tp.driveList() {
			u, _ := d.usable().Usage()
			total += u.Used
		}
		return total
	}
	start := used()
	tp.put("/big", randBytes(81, 64<<20))
	full := used()
	if err := tp.RemovePath("/big", false); err != nil {
		t.Fatal(err)
	}
	if _, err := tp.GC(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	end := used()
	t.Logf("drives used %d MiB empty, %d MiB with 64 MiB ×2, %d MiB after rm and gc", start>>20, full>>20, end>>20)
	if end-start > (full-start)/10 {
		t.Fatalf("gc left %d MiB of %d", (end-start)>>20, (full-start)>>20)
	}
}

func TestCrashLeakedRefsRecounted(t *testing.T) {
	onDisk(t) // a crash
	tp := newTestPool(t, 2, 2)
	data := randBytes(82, MinChunkSize)
	// A write staged before a crash: the reference is taken, no file holds it.
	if _, err := tp.stageChunk(context.Background(), data, 2, 1, false); err != nil {
		t.Fatal(err)
	}
	// Simulate the crash: close without marking the pool clean.
	tp.crash()
	tp.open()
	if st := tp.mustStatus(); st.Chunks != 0 {
		t.Fatalf("after a crash the leaked chunk is still counted: %+v", st)
	}
	for name, c := range tp.storedChunks() {
		if c != 0 {
			t.Fatalf("drive %s still stores the leaked chunk", name)
		}
	}
}
