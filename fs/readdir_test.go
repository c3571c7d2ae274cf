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

// seekListing reads dir as a C program using telldir/seekdir does with
// glibc: getdents into a buffer of st_blksize bytes (32 KiB at least),
// noting the position before each entry, then seeking back to every
// noted position and reading a buffer there, which must start with the
// entry that followed the position the first time. It returns the names
// of the first pass, and the work the mount did for the seeking pass:
// entries fetched from the metadata plus lookups.
func seekListing(t *testing.T, tm *testMount, dir string) ([]string, int64) {
	t.Helper()
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		t.Fatal(err)
	}
	bufSize := max(32<<10, int(st.Blksize))
	type mark struct {
		off   int64
		first string
	}
	var names []string
	var marks []mark
	prev := int64(0)
	for {
		ents := getdents(t, fd, bufSize)
		if len(ents) == 0 {
			break
		}
		for _, e := range ents {
			if e.off == prev {
				t.Fatalf("%s has the offset of the entry before it, %d", e.name, e.off)
			}
			marks = append(marks, mark{prev, e.name}) // telldir, readdir
			names = append(names, e.name)
			prev = e.off
		}
	}
	work := func() int64 { return tm.fsys.dirScanned.Load() + tm.fsys.lookups.Load() }
	before := work()
	// Backwards, so that every seek really moves.
	for i := len(marks) - 1; i >= 0; i-- {
		if _, err := unix.Seek(fd, marks[i].off, unix.SEEK_SET); err != nil { // seekdir
			t.Fatal(err)
		}
		ents := getdents(t, fd, bufSize)
		if len(ents) == 0 || ents[0].name != marks[i].first {
			t.Fatalf("after seeking to %d: %d entries, want %s first", marks[i].off, len(ents), marks[i].first)
		}
	}
	return names, work() - before
}

// Reading a large directory in pieces and seeking to every entry lists
// every entry once, and costs work proportional to the entries: twice the
// entries, twice the work, not four times, as when each seekdir listed
// (and looked up) the rest of the directory.
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
	t.Logf("entries fetched and looked up while seeking: %d for 2,000 entries, %d for 4,000", workSmall, workLarge)
	if workSmall == 0 || float64(workLarge) > 2.5*float64(workSmall) {
		t.Fatalf("seeking through 4,000 entries cost %d entries fetched or looked up, 2,000 entries %d: not linear", workLarge, workSmall)
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
		// Every other round, a name the kernel has not seen yet: looking
		// it up makes it ask for the next entries with attributes. With
		// READDIRPLUS_AUTO it then switches between plain and plus
		// requests mid-listing, where go-fuse 2.12.1 loses entries.
		if round%2 == 1 {
			var st unix.Stat_t
			if err := unix.Stat(dir+"/"+want[2+(round*37)%(len(want)-2)], &st); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, name := range want {
		if seen[name] != 1 {
			t.Errorf("%s listed %d times", name, seen[name])
		}
	}
}
