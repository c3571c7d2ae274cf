package fs

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/dhdfs/dhdfs/cluster"
)

// step is one operation of a scripted sequence on one file.
type step func(t *testing.T, f *os.File)

func pwrite(b byte, n int, off int64) step {
	return func(t *testing.T, f *os.File) {
		t.Helper()
		if _, err := f.WriteAt(bytes.Repeat([]byte{b}, n), off); err != nil {
			t.Fatal(err)
		}
	}
}

func ftruncate(size int64) step {
	return func(t *testing.T, f *os.File) {
		t.Helper()
		if err := f.Truncate(size); err != nil {
			t.Fatal(err)
		}
	}
}

func fallocate(mode uint32, off, n int64) step {
	return func(t *testing.T, f *os.File) {
		t.Helper()
		if err := unix.Fallocate(int(f.Fd()), mode, off, n); err != nil {
			t.Fatal(err)
		}
	}
}

func copyRange(off, n, to int64) step {
	return func(t *testing.T, f *os.File) {
		t.Helper()
		in, out := off, to
		if _, err := unix.CopyFileRange(int(f.Fd()), &in, int(f.Fd()), &out, int(n), 0); err != nil {
			t.Fatal(err)
		}
	}
}

// readAll reads p whole three ways: through f, through a new descriptor,
// and with the kernel's cache of it dropped first.
func readAll(t *testing.T, f *os.File, p string) [][]byte {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &st); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, st.Size)
	if _, err := f.ReadAt(b, 0); err != nil {
		t.Fatal(err)
	}
	fresh := mustRead(t, p)
	g, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if err := unix.Fadvise(int(g.Fd()), 0, 0, unix.FADV_DONTNEED); err != nil {
		t.Fatal(err)
	}
	uncached := make([]byte, st.Size)
	if _, err := g.ReadAt(uncached, 0); err != nil {
		t.Fatal(err)
	}
	return [][]byte{b, fresh, uncached}
}

// TestDeletedDataNeverLeaks is the regression test for issue 12's worst
// finding: a file written and deleted by one process appeared, byte for
// byte, in the hole of the next file another process wrote, because a
// recycled write buffer was lengthened without zeroing the hole. Buffers
// are not poisoned here, as in a real mount.
func TestDeletedDataNeverLeaks(t *testing.T) {
	tm := mountPoolOpts(t, 3, 1<<20, func(o *cluster.Options) { o.PoisonBuffers = false }, func(*Config) {})
	secret := bytes.Repeat([]byte("SECRET!!"), 40000)
	for round := 0; round < 8; round++ {
		if err := os.WriteFile(tm.path("other.bin"), secret, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Remove(tm.path("other.bin")); err != nil {
			t.Fatal(err)
		}
		p := tm.path("new.bin")
		f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		pwrite('A', 0xffd6, 0x16de2)(t, f)
		pwrite('B', 0x97ff, 0x2eb98)(t, f) // past the end: a hole before it
		want := make([]byte, 0x2eb98+0x97ff)
		copy(want[0x16de2:], bytes.Repeat([]byte{'A'}, 0xffd6))
		copy(want[0x2eb98:], bytes.Repeat([]byte{'B'}, 0x97ff))
		for _, got := range readAll(t, f, p) {
			if bytes.Contains(got, []byte("SECRET")) {
				t.Fatalf("round %d: a deleted file's data is in the new file's hole", round)
			}
			compare(t, "new file", got, want)
		}
		f.Close()
		os.Remove(p)
	}
}

// TestHoleSequences replays the other sequences fsx found (issue 12), each
// against what ext4 gives, through the same descriptor, a new one, and
// with the page cache dropped.
func TestHoleSequences(t *testing.T) {
	const keep = unix.FALLOC_FL_KEEP_SIZE
	cases := []struct {
		name  string
		steps []step
		want  func() []byte
	}{
		{"copy_file_range after truncate and write", []step{
			pwrite(1, 0xe7a1, 0x13b51), ftruncate(0x16e50), pwrite(2, 0xde9, 0x15d85), copyRange(0x40e1, 0xaab2, 0x2dd91),
		}, func() []byte {
			b := make([]byte, 0x2dd91+0xaab2)
			copy(b[0x13b51:0x16e50], bytes.Repeat([]byte{1}, 0x16e50-0x13b51))
			copy(b[0x15d85:], bytes.Repeat([]byte{2}, 0xde9))
			copy(b[0x2dd91:], b[0x40e1:0x40e1+0xaab2])
			return b
		}},
		{"fallocate beyond the end, then writes", []step{
			pwrite(1, 0x41a, 0), fallocate(keep, 0x13a7e, 0x98e2), fallocate(0, 0xd198, 0x833d),
			pwrite(2, 0xa18d, 0x17fc7), pwrite(3, 0x115d, 0x1030f), pwrite(4, 0x1f63, 0x37730),
		}, func() []byte {
			b := make([]byte, 0x37730+0x1f63)
			copy(b, bytes.Repeat([]byte{1}, 0x41a))
			copy(b[0x17fc7:], bytes.Repeat([]byte{2}, 0xa18d))
			copy(b[0x1030f:], bytes.Repeat([]byte{3}, 0x115d))
			copy(b[0x37730:], bytes.Repeat([]byte{4}, 0x1f63))
			return b
		}},
		{"truncate, a write across the new end, then an extension", []step{
			pwrite(0xaa, 65536, 0), ftruncate(10000), pwrite(0xbb, 15000, 5000), pwrite(0xcc, 100, 100000),
		}, func() []byte {
			b := make([]byte, 100100)
			copy(b, bytes.Repeat([]byte{0xaa}, 10000))
			copy(b[5000:], bytes.Repeat([]byte{0xbb}, 15000))
			copy(b[100000:], bytes.Repeat([]byte{0xcc}, 100))
			return b
		}},
		{"punch a hole across chunks, then extend", []step{
			pwrite(7, 3*cs+100, 0), fallocate(unix.FALLOC_FL_PUNCH_HOLE|keep, cs/2, 2*cs), pwrite(8, 10, 5*cs),
		}, func() []byte {
			b := make([]byte, 5*cs+10)
			copy(b, bytes.Repeat([]byte{7}, 3*cs+100))
			clear(b[cs/2 : cs/2+2*cs])
			copy(b[5*cs:], bytes.Repeat([]byte{8}, 10))
			return b
		}},
		{"zero a range past the end", []step{
			pwrite(9, cs+1, 0), fallocate(unix.FALLOC_FL_ZERO_RANGE, cs-3, 3*cs),
		}, func() []byte {
			b := make([]byte, 4*cs-3)
			copy(b, bytes.Repeat([]byte{9}, cs-3))
			return b
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for _, sync := range []bool{false, true} {
				tm := mountPool(t, 3, cs)
				p := tm.path("f")
				f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE, 0o644)
				if err != nil {
					t.Fatal(err)
				}
				for _, s := range c.steps {
					s(t, f)
					if sync {
						if err := f.Sync(); err != nil {
							t.Fatal(err)
						}
					}
				}
				for _, got := range readAll(t, f, p) {
					compare(t, c.name, got, c.want())
				}
				f.Close()
			}
		})
	}
}

// TestSparseFiles: st_blocks counts what is stored, punching holes gives
// space back, SEEK_DATA/SEEK_HOLE find the stored chunks, and fallocate
// of more than the pool holds fails with ENOSPC.
func TestSparseFiles(t *testing.T) {
	tm := mountPool(t, 3, cs)
	p := tm.path("sparse")
	if out, err := exec.Command("truncate", "-s", "1G", p).CombinedOutput(); err != nil {
		t.Fatalf("truncate: %v: %s", err, out)
	}
	out, err := exec.Command("du", "-B1", p).Output()
	if err != nil || !strings.HasPrefix(string(out), "0\t") {
		t.Fatalf("du of a 1 GiB hole: %q, %v; want 0", out, err)
	}
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(randData(1, 4*cs), 10*cs); err != nil {
		t.Fatal(err)
	}
	blocks := func() int64 {
		t.Helper()
		var st syscall.Stat_t
		if err := syscall.Fstat(int(f.Fd()), &st); err != nil {
			t.Fatal(err)
		}
		return st.Blocks * 512
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	if got := blocks(); got != 4*cs {
		t.Fatalf("st_blocks after writing 4 chunks: %d bytes, want %d", got, 4*cs)
	}
	for _, c := range []struct {
		whence   int
		off, pos int64
	}{
		{unix.SEEK_DATA, 0, 10 * cs}, {unix.SEEK_DATA, 11*cs + 5, 11*cs + 5}, {unix.SEEK_HOLE, 10 * cs, 14 * cs},
		{unix.SEEK_HOLE, 0, 0}, {unix.SEEK_HOLE, 20 * cs, 20 * cs},
	} {
		pos, err := unix.Seek(int(f.Fd()), c.off, c.whence)
		if err != nil || pos != c.pos {
			t.Errorf("lseek(%d, whence %d) = %d, %v; want %d", c.off, c.whence, pos, err, c.pos)
		}
	}
	if _, err := unix.Seek(int(f.Fd()), 15*cs, unix.SEEK_DATA); !errors.Is(err, unix.ENXIO) {
		t.Errorf("SEEK_DATA past the last data: %v, want ENXIO", err)
	}
	// Punching two whole chunks frees them; a partial punch zeroes.
	if err := unix.Fallocate(int(f.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, 11*cs, 2*cs+7); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	if got := blocks(); got != 2*cs {
		t.Fatalf("st_blocks after punching 2 of 4 chunks: %d bytes, want %d", got, 2*cs)
	}
	got := make([]byte, 4*cs)
	if _, err := f.ReadAt(got, 10*cs); err != nil {
		t.Fatal(err)
	}
	want := randData(1, 4*cs)
	clear(want[cs : 3*cs+7])
	compare(t, "after punching", got, want)
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &st); err != nil || st.Size != 1<<30 {
		t.Fatalf("size after punching: %d, %v", st.Size, err)
	}
	if err := unix.Fallocate(int(f.Fd()), 0, 0, 1<<50); !errors.Is(err, unix.ENOSPC) {
		t.Fatalf("fallocate of 1 PiB: %v, want ENOSPC", err)
	}
	if err := unix.Fallocate(int(f.Fd()), unix.FALLOC_FL_COLLAPSE_RANGE, 0, cs); !errors.Is(err, unix.EOPNOTSUPP) {
		t.Fatalf("collapse range: %v, want EOPNOTSUPP", err)
	}
}
