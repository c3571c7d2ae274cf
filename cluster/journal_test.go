package cluster

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/dhdfs/dhdfs/nodes/dirdrive"
)

// copyDir copies dir to to with cp -a (the test owns both).
func copyDir(t *testing.T, dir, to string) {
	t.Helper()
	os.RemoveAll(to)
	if out, err := exec.Command("cp", "-a", dir, to).CombinedOutput(); err != nil {
		t.Fatalf("cp %s: %v: %s", dir, err, out)
	}
}

// A power cut after fsyncs that only the journals made durable: the
// metadata store and the drives' stores go back to what the last
// checkpoint synced, and the next open brings back every fsynced write
// from the journals: a new file and its name, overwrites, appends.
func TestJournalReplayAfterPowerLoss(t *testing.T) {
	onDisk(t) // copies the stores' files
	tp := newTestPoolWith(t, 3, 2, MinChunkSize, Options{SyncInterval: time.Hour})
	ctx := context.Background()
	old := randBytes(1, 3*MinChunkSize)
	tp.put("/a", old)
	if err := tp.Checkpoint(); err != nil {
		t.Fatal(err)
	}
	// What the disks hold at the checkpoint, taken with every write held.
	snap := t.TempDir()
	stores := map[string]string{filepath.Join(tp.home, metaDir): filepath.Join(snap, "meta")}
	for i, p := range tp.paths {
		for j, dir := range dirdrive.StoreDirs(p) {
			stores[dir] = filepath.Join(snap, fmt.Sprintf("%c%d", 'a'+i, j))
		}
	}
	tp.roundMu.Lock()
	tp.meta.writeMu.Lock()
	for from, to := range stores {
		copyDir(t, from, to)
	}
	tp.meta.writeMu.Unlock()
	tp.roundMu.Unlock()

	// Fsynced changes after it: only the journals hold them on disk.
	a, _ := tp.Resolve("/a")
	f, err := tp.OpenFile(a.Ino)
	if err != nil {
		t.Fatal(err)
	}
	want := append([]byte(nil), old...)
	for i, off := range []int{10, MinChunkSize + 5000, len(old) - 3, len(old) + 100} {
		b := randBytes(uint64(10+i), 300)
		if _, err := f.WriteAt(ctx, b, int64(off)); err != nil {
			t.Fatal(err)
		}
		if end := off + len(b); end > len(want) {
			want = append(want, make([]byte, end-len(want))...)
		}
		copy(want[off:], b)
		if err := f.Fsync(ctx); err != nil {
			t.Fatal(err)
		}
	}
	n, err := tp.Mknod(RootIno, "b", syscall.S_IFREG|0o644, Caller{}, "")
	if err != nil {
		t.Fatal(err)
	}
	g, err := tp.OpenFile(n.Ino)
	if err != nil {
		t.Fatal(err)
	}
	newData := randBytes(20, 5000)
	if _, err := g.WriteAt(ctx, newData, 0); err != nil {
		t.Fatal(err)
	}
	if err := g.Fsync(ctx); err != nil {
		t.Fatal(err)
	}
	if recs := tp.journalRecordCount(); recs == 0 {
		t.Fatal("the fsyncs wrote no journal record")
	}
	// The power cut: no Close, and the stores lose what was not synced.
	close(tp.done)
	tp.wg.Wait()
	tp.Manager.closeOnce.Do(func() {
		tp.closeStores()
		tp.meta.close()
		tp.lock.release()
	})
	for from, to := range stores {
		os.RemoveAll(from)
		copyDir(t, to, from)
	}
	tp.open()
	tp.mustEqual("/a", want)
	tp.mustEqual("/b", newData)
	if rep, err := tp.Fsck(ctx, false, nil); err != nil || len(rep.Problems) > 0 {
		t.Fatalf("fsck: %v %+v", err, rep.Problems)
	}
}

// journalRecordCount counts the records in the drives' journals.
func (tp *testPool) journalRecordCount() int {
	n := 0
	for _, d := range tp.driveList() {
		if jn := d.journalOf(); jn != nil {
			jn.Replay(func(uint64, []byte) error { n++; return nil })
		}
	}
	return n
}
