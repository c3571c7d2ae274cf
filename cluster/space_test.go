package cluster

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/dhdfs/dhdfs/nodes"
)

// statfs (Capacity and Space) counts each filesystem once, and only the
// space placement would use: free space less the reserve; status agrees.
func TestSpaceCountsWhatWritesCanUse(t *testing.T) {
	onDisk(t) // filesystem space
	check := func(t *testing.T, tp *testPool) {
		sp := tp.Space()
		var frees []int64
		devs := map[string]bool{}
		var sumFree, sumAvail int64
		for _, d := range tp.driveList() {
			rec := d.record()
			if devs[rec.domain()] {
				continue
			}
			devs[rec.domain()] = true
			free, _, err := nodes.FilesystemSpace(rec.Path)
			if err != nil {
				t.Fatal(err)
			}
			frees = append(frees, free)
			sumFree += free
			sumAvail += max(free-DefaultReserve, 0)
		}
		// Free space moves a little between measurements (other processes
		// share the filesystem of temp directories): allow 1%.
		slack := sumFree/100 + 1<<20
		if sp.Avail > sumAvail+slack {
			t.Fatalf("Avail %s is more than the free space less the reserves, %s (filesystems %v)", mib(sp.Avail), mib(sumAvail), frees)
		}
		if sp.Avail < sumAvail-slack || sp.Free < sp.Avail {
			t.Fatalf("Space %+v, want Avail about %s", sp, mib(sumAvail))
		}
		if _, avail := tp.Capacity(); avail > sumAvail+slack {
			t.Fatalf("Capacity avail %s, more than %s", mib(avail), mib(sumAvail))
		}
		st := tp.mustStatus()
		if st.UsableFree > (sumAvail+slack)/int64(tp.Config().Replicas) || st.UsableFree*int64(tp.Config().Replicas) < sumAvail-slack {
			t.Fatalf("status usable free %s, df avail %s", mib(st.UsableFree), mib(sumAvail/int64(tp.Config().Replicas)))
		}
		t.Logf("%d filesystems: free %s, avail %s; status usable %s", len(devs), mib(sp.Free), mib(sp.Avail), mib(st.UsableFree))
	}
	t.Run("one filesystem", func(t *testing.T) {
		// Three drives on one filesystem: its reserve counts once.
		check(t, newTestPool(t, 3, 2))
	})
	t.Run("three filesystems", func(t *testing.T) {
		tp := newTmpfsPool(t, 3, 2, 1<<20, 128<<20, Options{})
		check(t, tp)
		// A draining drive takes no new chunks: its space is not available.
		d, err := tp.driveByName("d1")
		if err != nil {
			t.Fatal(err)
		}
		before := tp.Space()
		if err := tp.updateDriveRecord(d, func(r *DriveRecord) { r.Draining = true }); err != nil {
			t.Fatal(err)
		}
		after := tp.Space()
		if after.Total != before.Total || after.Avail > before.Avail-before.Avail/4 {
			t.Fatalf("draining d1: %+v before, %+v after", before, after)
		}
		// A running reclaim's hold is not available either.
		if err := tp.updateDriveRecord(d, func(r *DriveRecord) { r.Draining = false }); err != nil {
			t.Fatal(err)
		}
		tp.rc = &reclaimer{held: map[uint32]int64{d.num: 8 << 20}}
		defer func() { tp.rc = nil }()
		if held := tp.Space(); held.Avail > before.Avail-8<<20+1<<20 {
			t.Fatalf("a reclaim holding 8 MiB: %+v, was %+v", held, before)
		}
	})
}

// status counts the space deletes left dead in the stores, and gc (the
// explicit, do-it-all-now reclaim) gives it back, with the reclaimer off.
func TestStatusDeadAndGC(t *testing.T) {
	onDisk(t) // dead space in the drives' files
	smallUnits(t, 4<<20)
	tp := newTestPool(t, 3, 2)
	data := randBytes(1, 24<<20)
	tp.put("/keep", randBytes(2, 2<<20))
	tp.put("/big", data)
	before := tp.mustStatus()
	if err := tp.RemovePath("/big", false); err != nil {
		t.Fatal(err)
	}
	st := tp.mustStatus()
	if st.StoreDead < before.StoreDead+2*int64(len(data))*9/10 {
		t.Fatalf("status: %s dead before deleting %s (2 copies), %s after", mib(before.StoreDead), mib(int64(len(data))), mib(st.StoreDead))
	}
	rep, err := tp.GC(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	after := tp.mustStatus()
	t.Logf("dead: %s, after deleting: %s, after gc: %s (drives %s to %s)", mib(before.StoreDead), mib(st.StoreDead), mib(after.StoreDead), mib(rep.UsedBefore), mib(rep.UsedAfter))
	if after.StoreDead > before.StoreDead+4<<20 || rep.UsedAfter > rep.UsedBefore-2*int64(len(data))*9/10 {
		t.Fatalf("gc left %s dead (%+v)", mib(after.StoreDead), rep)
	}
	tp.mustEqual("/keep", randBytes(2, 2<<20))
}

// node add warns about a drive whose filesystem has little room beyond
// the reserve dhdfs leaves free, and not about one that has room.
func TestAddDriveWarnsWhenSmall(t *testing.T) {
	tp := newTmpfsPool(t, 1, 1, MinChunkSize, 512<<20, Options{})
	small := mountTmpfs(t, filepath.Join(t.TempDir(), "small"), 96<<20)
	_, warnings, err := tp.AddDrive(small, AddDriveOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(warnings, func(w string) bool { return strings.Contains(w, "MiB free on it") }) {
		t.Fatalf("no warning for a 96 MiB drive: %q", warnings)
	}
	big := mountTmpfs(t, filepath.Join(t.TempDir(), "big"), 512<<20)
	_, warnings, err = tp.AddDrive(big, AddDriveOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if slices.ContainsFunc(warnings, func(w string) bool { return strings.Contains(w, "MiB free on it") }) {
		t.Fatalf("a warning for a 512 MiB drive: %q", warnings)
	}
}

// A drive's reserve is a setting: placement, statfs and status count it,
// it survives a restart, a replacing drive inherits it, and too small a
// reserve is refused.
func TestDriveReserve(t *testing.T) {
	tp := newTmpfsPool(t, 3, 1, 1<<20, 128<<20, Options{})
	if _, err := tp.SetDriveReserve("d1", MinReserve-1); !errors.Is(err, ErrInvalid) {
		t.Fatalf("a reserve below the minimum: %v", err)
	}
	if _, _, err := tp.AddDrive(t.TempDir(), AddDriveOptions{Reserve: 1 << 20}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("node add with a 1 MiB reserve: %v", err)
	}
	before := tp.Space()
	info, err := tp.SetDriveReserve("d1", 128<<20)
	if err != nil || info.Reserve != 128<<20 {
		t.Fatalf("SetDriveReserve: %+v %v", info, err)
	}
	// d1's free space beyond 64 MiB is no longer available.
	if after := tp.Space(); after.Avail > before.Avail-60<<20 {
		t.Fatalf("a reserve the size of the drive: avail %s, was %s", mib(after.Avail), mib(before.Avail))
	}
	tp.put("/f", randBytes(3, 24<<20))
	if n := tp.storedChunks()["d1"]; n != 0 {
		t.Fatalf("%d chunks placed on d1, which has no room beyond its reserve", n)
	}
	tp.reopen()
	d, err := tp.driveByName("d1")
	if err != nil || d.reserve() != 128<<20 {
		t.Fatalf("after a restart d1 keeps %v free (%v)", d.reserve(), err)
	}
	if _, err := tp.Replace(context.Background(), "d1", mountTmpfs(t, filepath.Join(t.TempDir(), "new"), 128<<20), AddDriveOptions{Name: "n1"}, nil); err != nil {
		t.Fatal(err)
	}
	if d, err := tp.driveByName("n1"); err != nil || d.reserve() != 128<<20 {
		t.Fatalf("the drive replacing d1 keeps %v free, not d1's 128 MiB (%v)", d.reserve(), err)
	}
	tp.mustEqual("/f", randBytes(3, 24<<20))
}

// Rebalance moves nothing onto a drive with no room beyond its reserve.
func TestRebalanceKeepsReserve(t *testing.T) {
	tp := newTmpfsPool(t, 2, 2, 1<<20, 128<<20, Options{})
	tp.put("/f", randBytes(4, 8<<20))
	np := mountTmpfs(t, filepath.Join(t.TempDir(), "full"), 128<<20)
	if _, _, err := tp.AddDrive(np, AddDriveOptions{Name: "full", Reserve: 128 << 20}); err != nil {
		t.Fatal(err)
	}
	if _, err := tp.Rebalance(context.Background(), 0, nil); err != nil {
		t.Fatal(err)
	}
	if n := tp.storedChunks()["full"]; n != 0 {
		t.Fatalf("rebalance put %d chunks on a drive with no room beyond its reserve", n)
	}
}
