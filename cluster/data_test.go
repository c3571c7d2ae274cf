package cluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"syscall"
	"testing"

	"github.com/dhdfs/dhdfs/nodes"
)

func TestPutGetSizes(t *testing.T) {
	tp := newTestPool(t, 3, 2)
	cs := MinChunkSize
	for i, n := range []int{0, 1, cs - 1, cs, cs + 1, 5*cs + 123} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			data := randBytes(uint64(i+10), n)
			p := fmt.Sprintf("/f%d", n)
			ino := tp.put(p, data)
			if ino.Size != int64(n) {
				t.Fatalf("size = %d, want %d", ino.Size, n)
			}
			tp.mustEqual(p, data)
			locs, err := tp.ChunkLocations(ino.Ino)
			if err != nil {
				t.Fatal(err)
			}
			if want := (n + cs - 1) / cs; len(locs) != want {
				t.Fatalf("%d chunks, want %d", len(locs), want)
			}
			for _, l := range locs {
				if len(l.Drives) != 2 || l.Drives[0] == l.Drives[1] {
					t.Fatalf("chunk %d on drives %v, want 2 distinct", l.Index, l.Drives)
				}
			}
		})
	}
}

// The seed's scenario: 4 drives, replicas 2, write a file, take a drive
// holding its first chunk offline, read the file back identical.
func TestSeedScenario(t *testing.T) {
	tp := newTestPool(t, 4, 2)
	data := randBytes(2, 10*MinChunkSize+5)
	n := tp.put("/seed.bin", data)
	locs, err := tp.ChunkLocations(n.Ino)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tp.SetDriveOffline(locs[0].Drives[0], true); err != nil {
		t.Fatal(err)
	}
	tp.mustEqual("/seed.bin", data)
	// Both holders of the first chunk down: the read must fail, clearly.
	if _, err := tp.SetDriveOffline(locs[0].Drives[1], true); err != nil {
		t.Fatal(err)
	}
	if _, err := tp.GetFile(context.Background(), "/seed.bin", io.Discard); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("read with both replicas offline: %v, want ErrUnavailable", err)
	}
}

// Every failure kind of the first holder falls back to the second one.
func TestReadFallback(t *testing.T) {
	tests := []struct {
		name   string
		break_ func(tp *testPool, drive string, id nodes.ChunkID)
	}{
		{"offline", func(tp *testPool, drive string, _ nodes.ChunkID) {
			if _, err := tp.SetDriveOffline(drive, true); err != nil {
				tp.t.Fatal(err)
			}
		}},
		{"read error", func(tp *testPool, drive string, _ nodes.ChunkID) {
			tp.fault(drive, nodes.Faults{ReadErr: syscall.EIO})
		}},
		{"corrupt chunk", func(tp *testPool, drive string, _ nodes.ChunkID) {
			tp.fault(drive, nodes.Faults{Corrupt: true})
		}},
		{"chunk missing", func(tp *testPool, drive string, id nodes.ChunkID) {
			d, _ := tp.driveByName(drive)
			if err := d.usable().Delete(id); err != nil {
				tp.t.Fatal(err)
			}
		}},
		{"path gone", func(tp *testPool, drive string, _ nodes.ChunkID) {
			d, _ := tp.driveByName(drive)
			tp.fault(drive, nodes.Faults{ReadErr: syscall.ENOENT})
			if err := os.RemoveAll(d.record().Path); err != nil {
				tp.t.Fatal(err)
			}
		}},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tp := newTestPool(t, 3, 2)
			data := randBytes(uint64(100+i), 4*MinChunkSize)
			n := tp.put("/f", data)
			locs, _ := tp.ChunkLocations(n.Ino)
			id, _ := nodes.ParseChunkID(locs[0].ID)
			tc.break_(tp, locs[0].Drives[0], id)
			tp.readFirst(locs[0].Drives[0])
			tp.mustEqual("/f", data)
			buf := make([]byte, 100)
			if k, err := tp.ReadAt(context.Background(), n.Ino, buf, 10); err != nil || k != 100 || !bytes.Equal(buf, data[10:110]) {
				t.Fatalf("ReadAt after failure: %d, %v", k, err)
			}
		})
	}
}

func TestReadErrorMarksDriveFailed(t *testing.T) {
	tp := newTestPool(t, 2, 2)
	data := randBytes(5, MinChunkSize)
	n := tp.put("/f", data)
	locs, _ := tp.ChunkLocations(n.Ino)
	first := locs[0].Drives[0]
	tp.readFirst(first)
	tp.fault(first, nodes.Faults{ReadErr: syscall.EIO})
	tp.mustEqual("/f", data)
	d, _ := tp.driveByName(first)
	if st, _ := d.state(); st != StateFailed {
		t.Fatalf("drive state after I/O error = %s, want failed", st)
	}
}

func TestDegradedWrite(t *testing.T) {
	tp := newTestPool(t, 3, 2)
	for _, name := range []string{"d1", "d2"} {
		if _, err := tp.SetDriveOffline(name, true); err != nil {
			t.Fatal(err)
		}
	}
	data := randBytes(3, 3*MinChunkSize)
	tp.put("/degraded", data)
	tp.mustEqual("/degraded", data)
	st, err := tp.Status()
	if err != nil {
		t.Fatal(err)
	}
	if st.Chunks != 3 || st.UnderReplicated != 3 || st.Lost != 0 {
		t.Fatalf("status after degraded write: chunks %d under-replicated %d lost %d; want 3 3 0", st.Chunks, st.UnderReplicated, st.Lost)
	}
	if _, err := tp.SetDriveOffline("d3", true); err != nil {
		t.Fatal(err)
	}
	st, _ = tp.Status()
	if st.Lost != 3 {
		t.Fatalf("lost = %d with every holder offline, want 3", st.Lost)
	}
	_, err = tp.PutFile(context.Background(), "/none", bytes.NewReader(data), 0o644, Caller{})
	if !errors.Is(err, ErrNoDrives) {
		t.Fatalf("write with no drive online: %v, want ErrNoDrives", err)
	}
	if _, err := tp.Resolve("/none"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("failed put left a file behind: %v", err)
	}
}

func TestWriteFailsOverToAnotherDrive(t *testing.T) {
	tp := newTestPool(t, 3, 2)
	tp.fault("d1", nodes.Faults{WriteErr: syscall.EIO})
	// Placement picks two of three drives at random for each chunk: with
	// 24 chunks, d1 is left out of all of them once in 10^11 runs (with
	// 6, once in 729 runs, which a test run met).
	data := randBytes(4, 24*MinChunkSize)
	n := tp.put("/f", data)
	d, _ := tp.driveByName("d1")
	if st, _ := d.state(); st != StateFailed {
		t.Fatalf("drive that failed a write is %s, want failed", st)
	}
	locs, _ := tp.ChunkLocations(n.Ino)
	for _, l := range locs {
		if len(l.Drives) != 2 {
			t.Fatalf("chunk %d has %d copies, want 2 on the healthy drives", l.Index, len(l.Drives))
		}
		for _, dr := range l.Drives {
			if dr == "d1" {
				t.Fatalf("chunk %d recorded on the failed drive", l.Index)
			}
		}
	}
	tp.mustEqual("/f", data)
}

func TestNoSpace(t *testing.T) {
	tp := newTestPool(t, 2, 2)
	for _, name := range []string{"d1", "d2"} {
		tp.fault(name, nodes.Faults{WriteErr: fmt.Errorf("put: %w", syscall.ENOSPC)})
	}
	_, err := tp.PutFile(context.Background(), "/big", bytes.NewReader(randBytes(9, MinChunkSize)), 0o644, Caller{})
	if !errors.Is(err, ErrNoSpace) {
		t.Fatalf("write with every drive full: %v, want ErrNoSpace", err)
	}
	for _, d := range tp.driveList() {
		if st, _ := d.state(); st != StateOnline {
			t.Fatalf("a full drive was marked %s; it is only full", st)
		}
	}
}

func TestDedupAndRefcount(t *testing.T) {
	tp := newTestPool(t, 3, 2)
	data := randBytes(6, 4*MinChunkSize)
	tp.put("/a", data)
	first := tp.storedChunks()
	tp.put("/b", data)
	if got := tp.storedChunks(); fmt.Sprint(got) != fmt.Sprint(first) {
		t.Fatalf("a second copy of the same data stored more chunks: %v then %v", first, got)
	}
	st, _ := tp.Status()
	if st.Chunks != 4 || st.Copies != 8 {
		t.Fatalf("chunks %d copies %d, want 4 and 8", st.Chunks, st.Copies)
	}
	if err := tp.RemovePath("/a", false); err != nil {
		t.Fatal(err)
	}
	tp.mustEqual("/b", data)
	// Overwriting /b with new data frees the old chunks from every drive,
	// once the change is durable.
	tp.put("/b", randBytes(7, MinChunkSize))
	tp.flushDeletes()
	total := 0
	for _, n := range tp.storedChunks() {
		total += n
	}
	if total != 2 {
		t.Fatalf("%d chunk copies stored after overwrite, want 2", total)
	}
	if err := tp.RemovePath("/b", false); err != nil {
		t.Fatal(err)
	}
	tp.flushDeletes()
	for name, n := range tp.storedChunks() {
		if n != 0 {
			t.Fatalf("drive %s still holds %d chunks after every file was removed", name, n)
		}
	}
	st, _ = tp.Status()
	if st.Chunks != 0 || st.Files != 0 {
		t.Fatalf("status after removing everything: %+v", st)
	}
}

func TestInterruptedPutIsCollected(t *testing.T) {
	onDisk(t) // a crash
	tp := newTestPool(t, 2, 2)
	dir, _ := tp.GetAttr(RootIno)
	n, err := tp.newOrphan(dir, 0o644, Caller{})
	if err != nil {
		t.Fatal(err)
	}
	w := tp.newWriter(context.Background(), n.Ino, 2)
	if _, err := w.Write(randBytes(8, 3*MinChunkSize)); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Close(); err != nil {
		t.Fatal(err)
	}
	// The process dies before the file gets its name.
	tp.reopen()
	for name, c := range tp.storedChunks() {
		if c != 0 {
			t.Fatalf("drive %s holds %d chunks of an interrupted put", name, c)
		}
	}
	if _, err := tp.GetAttr(n.Ino); !errors.Is(err, ErrNotFound) {
		t.Fatalf("orphan inode survived reopen: %v", err)
	}
}

func TestFailedPutKeepsOldFile(t *testing.T) {
	tp := newTestPool(t, 2, 2)
	old := randBytes(11, 2*MinChunkSize)
	tp.put("/f", old)
	for _, name := range []string{"d1", "d2"} {
		tp.fault(name, nodes.Faults{WriteErr: syscall.EIO})
	}
	_, err := tp.PutFile(context.Background(), "/f", bytes.NewReader(randBytes(12, 2*MinChunkSize)), 0o644, Caller{})
	if err == nil {
		t.Fatal("put with every drive failing succeeded")
	}
	for _, name := range []string{"d1", "d2"} {
		tp.fault(name, nodes.Faults{})
		if _, err := tp.SetDriveOffline(name, false); err != nil {
			t.Fatal(err)
		}
	}
	tp.mustEqual("/f", old)
}

func TestSparseReadAndTruncate(t *testing.T) {
	tp := newTestPool(t, 2, 2)
	cs := int64(MinChunkSize)
	data := randBytes(13, int(3*cs))
	n := tp.put("/f", data)
	ctx := context.Background()
	// Shrink into the middle of chunk 1, then grow: the cut bytes read as zeros.
	if err := tp.truncate(ctx, n.Ino, cs+10); err != nil {
		t.Fatal(err)
	}
	if err := tp.truncate(ctx, n.Ino, 4*cs); err != nil {
		t.Fatal(err)
	}
	want := make([]byte, 4*cs)
	copy(want, data[:cs+10])
	tp.mustEqual("/f", want)
	got := make([]byte, 200)
	k, err := tp.ReadAt(ctx, n.Ino, got, cs)
	if err != nil || k != 200 || !bytes.Equal(got, want[cs:cs+200]) {
		t.Fatalf("ReadAt across the cut: %d %v", k, err)
	}
	k, err = tp.ReadAt(ctx, n.Ino, got, 4*cs-50)
	if k != 50 || err != io.EOF {
		t.Fatalf("ReadAt at the end: %d, %v; want 50, EOF", k, err)
	}
	// Cutting a slot changes its layers, not its chunk: the stored bytes
	// count what the file still shows.
	if a, _ := tp.GetAttr(n.Ino); a.Stored != cs+10 {
		t.Fatalf("after truncate the file stores %d bytes, want %d", a.Stored, cs+10)
	}
	if err := tp.truncate(ctx, n.Ino, 0); err != nil {
		t.Fatal(err)
	}
	if locs, _ := tp.ChunkLocations(n.Ino); len(locs) != 0 {
		t.Fatalf("truncate to 0 left %d chunks", len(locs))
	}
}

func TestConcurrentPutsAndGets(t *testing.T) {
	tp := newTestPool(t, 4, 2)
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < 4; i++ {
				data := randBytes(uint64(1000+w*10+i), (w+1)*MinChunkSize/2+i)
				p := fmt.Sprintf("/w%d-%d", w, i)
				if _, err := tp.PutFile(context.Background(), p, bytes.NewReader(data), 0o644, Caller{}); err != nil {
					errs <- err
					return
				}
				var buf bytes.Buffer
				if _, err := tp.GetFile(context.Background(), p, &buf); err != nil || !bytes.Equal(buf.Bytes(), data) {
					errs <- fmt.Errorf("%s read back wrong: %v", p, err)
					return
				}
			}
		}(w)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

func TestStatusFilesAtRisk(t *testing.T) {
	tp := newTestPool(t, 3, 2)
	tp.put("/a", randBytes(41, 3*MinChunkSize))
	tp.put("/b", randBytes(42, MinChunkSize))
	st, _ := tp.Status()
	for name, n := range st.AtRisk {
		if n != 0 {
			t.Fatalf("with every copy online, %s has %d files at risk", name, n)
		}
	}
	// Placement is random: take offline a drive that holds a copy.
	before, _ := tp.StatPath("/a", true)
	off := before.Chunks[0].Drives[0]
	if _, err := tp.SetDriveOffline(off, true); err != nil {
		t.Fatal(err)
	}
	st, _ = tp.Status()
	// Every chunk that had a copy on it now has one online copy left, on
	// another drive; the files holding such chunks are at risk there.
	locsA, _ := tp.StatPath("/a", true)
	locsB, _ := tp.StatPath("/b", true)
	want := map[string]map[string]bool{}
	for file, locs := range map[string][]ChunkLocation{"/a": locsA.Chunks, "/b": locsB.Chunks} {
		for _, l := range locs {
			if l.Online == 1 {
				for _, d := range l.Drives {
					if d != off {
						if want[d] == nil {
							want[d] = map[string]bool{}
						}
						want[d][file] = true
					}
				}
			}
		}
	}
	if len(want) == 0 {
		t.Fatalf("no chunk had a copy on %s: the test proves nothing", off)
	}
	for _, d := range []string{"d1", "d2", "d3"} {
		if d == off {
			continue
		}
		if st.AtRisk[d] != int64(len(want[d])) {
			t.Fatalf("at risk on %s = %d, want %d (%v)", d, st.AtRisk[d], len(want[d]), st.AtRisk)
		}
	}
	if _, ok := st.AtRisk[off]; ok {
		t.Fatal("an offline drive is listed as a risk")
	}
}

func TestProbeDetectsAndRevives(t *testing.T) {
	onDisk(t) // moves a drive's directory away
	tp := newTestPool(t, 2, 2)
	data := randBytes(43, 2*MinChunkSize)
	tp.put("/f", data)
	d, _ := tp.driveByName("d2")
	path := d.record().Path
	saved := path + ".saved"
	if err := os.Rename(path, saved); err != nil {
		t.Fatal(err)
	}
	tp.ProbeDrives()
	if st, reason := d.state(); st != StateFailed {
		t.Fatalf("drive whose directory vanished is %s (%v), want failed", st, reason)
	}
	tp.mustEqual("/f", data)
	if err := os.Rename(saved, path); err != nil {
		t.Fatal(err)
	}
	tp.ProbeDrives()
	if st, reason := d.state(); st != StateOnline {
		t.Fatalf("drive whose directory came back is %s (%v), want online", st, reason)
	}
	tp.fault("d1", nodes.Faults{ReadErr: syscall.EIO})
	tp.mustEqual("/f", data) // served by the revived d2
}

// Small reads fetch and verify only the blocks they need, and still fall
// back when a block is corrupt.
func TestReadBlocks(t *testing.T) {
	tp := newTestPool(t, 2, 2)
	data := randBytes(90, 3*MinChunkSize+500)
	n := tp.put("/f", data)
	locs, _ := tp.ChunkLocations(n.Ino)
	ctx := context.Background()
	tp.readFirst(locs[1].Drives[0])
	for _, corrupt := range []bool{true, false} {
		tp.fault(locs[1].Drives[0], nodes.Faults{Corrupt: corrupt})
		for _, r := range []struct{ off, n int }{{0, 1}, {MinChunkSize + 100, 4096}, {2*MinChunkSize - 10, 20}, {3 * MinChunkSize, 500}} {
			got := make([]byte, r.n)
			k, err := tp.ReadAt(ctx, n.Ino, got, int64(r.off))
			if err != nil && err != io.EOF || k != r.n || !bytes.Equal(got, data[r.off:r.off+r.n]) {
				t.Fatalf("corrupt=%v ReadAt(%d, %d): %d %v", corrupt, r.off, r.n, k, err)
			}
		}
	}
	id, _ := nodes.ParseChunkID(locs[1].ID)
	d, _ := tp.driveByName(locs[1].Drives[0])
	if !tp.isBad(id, d.num) {
		t.Fatal("a corrupt block was not reported")
	}
}
