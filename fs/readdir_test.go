package fs

import (
	"fmt"
	"slices"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/dhdfs/dhdfs/cluster"
)

// fillDir creates n empty files in a new directory through the manager
// (faster than through the kernel; the kernel has cached none of them) and
// returns the directory's path and the names in listing order.
func fillDir(t *testing.T, tm *testMount, dir string, n int) (string, []string) {
	t.Helper()
	d, err := tm.m.Mknod(cluster.RootIno, dir, syscall.S_IFDIR|0o755, cluster.Caller{}, "")
	if err != nil {
		t.Fatal(err)
	}
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("file-%05d-with-a-longer-name", i)
		if _, err := tm.m.Mknod(d.Ino, names[i], syscall.S_IFREG|0o644, cluster.Caller{}, ""); err != nil {
			t.Fatal(err)
		}
	}
	slices.Sort(names)
	return tm.path(dir), append([]string{".", ".."}, names...)
}

// seekListing reads dir as a C program using telldir/seekdir would:
// getdents in small buffers, noting the offset before each buffer, then
// seeking back to every noted offset and reading one buffer there, which
// must start with the entry that followed the offset the first time. It
// returns the names of the first pass, and how many entries the mount
// fetched from the metadata for the seeking pass.
func seekListing(t *testing.T, tm *testMount, dir string) ([]string, int64) {
	t.Helper()
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	type mark struct {
		off   int64
		first string
	}
	var names []string
	var marks []mark
	for {
		off, err := unix.Seek(fd, 0, unix.SEEK_CUR) // telldir
		if err != nil {
			t.Fatal(err)
		}
		ents := getdents(t, fd, 512)
		if len(ents) == 0 {
			break
		}
		marks = append(marks, mark{off, ents[0].name})
		for i, e := range ents {
			names = append(names, e.name)
			if i > 0 && e.off == ents[i-1].off {
				t.Fatalf("entries %s and %s share offset %d", ents[i-1].name, e.name, e.off)
			}
		}
	}
	scanned := tm.fsys.dirScanned.Load()
	// Backwards, so that every seek really moves.
	for i := len(marks) - 1; i >= 0; i-- {
		if _, err := unix.Seek(fd, marks[i].off, unix.SEEK_SET); err != nil { // seekdir
			t.Fatal(err)
		}
		ents := getdents(t, fd, 512)
		if len(ents) == 0 || ents[0].name != marks[i].first {
			t.Fatalf("after seeking to %d: %v, want %s first", marks[i].off, ents, marks[i].first)
		}
	}
	return names, tm.fsys.dirScanned.Load() - scanned
}

// Reading a large directory in pieces and seeking around it lists every
// entry once, and costs work proportional to what is read: twice the
// entries, twice the entries fetched (not four times, as when each piece
// re-read the directory).
func TestReaddirSeekLinear(t *testing.T) {
	tm := mountPool(t, 2, cs)
	small, wantSmall := fillDir(t, tm, "small", 2000)
	large, wantLarge := fillDir(t, tm, "large", 4000)
	gotSmall, workSmall := seekListing(t, tm, small)
	gotLarge, workLarge := seekListing(t, tm, large)
	if !slices.Equal(gotSmall, wantSmall) || !slices.Equal(gotLarge, wantLarge) {
		t.Fatalf("listings differ from the directories: %d and %d entries, want %d and %d",
			len(gotSmall), len(gotLarge), len(wantSmall), len(wantLarge))
	}
	t.Logf("entries fetched while seeking: %d for 2,000 entries, %d for 4,000", workSmall, workLarge)
	if workSmall == 0 || float64(workLarge) > 2.5*float64(workSmall) {
		t.Fatalf("seeking through 4,000 entries fetched %d entries, 2,000 entries %d: not linear", workLarge, workSmall)
	}
	// A whole listing fetches each entry about once.
	before := tm.fsys.dirScanned.Load()
	fd, err := unix.Open(large, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	for len(getdents(t, fd, 1024)) > 0 {
	}
	if n := tm.fsys.dirScanned.Load() - before; n > 2*4000 {
		t.Fatalf("one listing of 4,000 entries fetched %d", n)
	}
}

// Entries created or removed while a directory is being read do not make
// the listing repeat or skip the entries that stay.
func TestReaddirWhileChanging(t *testing.T) {
	tm := mountPool(t, 2, cs)
	dir, want := fillDir(t, tm, "d", 600)
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	seen := map[string]int{}
	for round := 0; ; round++ {
		ents := getdents(t, fd, 512)
		if len(ents) == 0 {
			break
		}
		for _, e := range ents {
			seen[e.name]++
		}
		// Names before and after the current position come and go.
		for _, name := range []string{fmt.Sprintf("a-%d", round), fmt.Sprintf("z-%d", round)} {
			if err := unix.Mknod(dir+"/"+name, syscall.S_IFREG|0o644, 0); err != nil {
				t.Fatal(err)
			}
		}
		if round > 0 {
			unix.Unlink(fmt.Sprintf("%s/z-%d", dir, round-1))
		}
	}
	for _, name := range want {
		if seen[name] != 1 {
			t.Errorf("%s listed %d times", name, seen[name])
		}
	}
}
