package cluster

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// metaImages builds a small real pool and returns two copies of its home:
// one after a clean close, and one left by a process killed after a
// sync (a write-ahead log to replay, no clean mark). The drives are
// deleted, so that opening an image touches nothing shared.
func metaImages(tb testing.TB) (crash, clean string) {
	tb.Helper()
	tp := newTestPoolTB(tb, 3, 2, MinChunkSize)
	for round := range 4 {
		if _, err := tp.MkdirPath(fmt.Sprintf("/d%d", round), false, 0o755, Caller{}); err != nil {
			tb.Fatal(err)
		}
		for i := range 5 {
			tp.put(fmt.Sprintf("/d%d/f%d", round, i), randBytes(uint64(round*10+i), 1000+i*40000))
		}
		if err := tp.RemovePath(fmt.Sprintf("/d%d/f0", round), false); err != nil {
			tb.Fatal(err)
		}
		tp.reopen() // each close flushes a table
	}
	tp.put("/last", randBytes(99, 5000))
	if err := tp.Close(); err != nil {
		tb.Fatal(err)
	}
	root := tb.TempDir()
	crash, clean = filepath.Join(root, "crash"), filepath.Join(root, "clean")
	copyHome(tb, tp.home, clean)
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashImageHelper$", "-test.count=1")
	cmd.Env = append(os.Environ(), crashHomeEnv+"="+tp.home)
	if out, err := cmd.CombinedOutput(); !strings.Contains(fmt.Sprint(err), "killed") {
		tb.Fatalf("crash helper: %v\n%s", err, out)
	}
	copyHome(tb, tp.home, crash)
	for _, p := range tp.paths {
		if err := os.RemoveAll(p); err != nil {
			tb.Fatal(err)
		}
	}
	return crash, clean
}

const crashHomeEnv = "DHDFS_TEST_CRASH_HOME"

// TestCrashImageHelper, run by metaImages in a child process, changes the
// pool, syncs and dies as in a crash.
func TestCrashImageHelper(t *testing.T) {
	home := os.Getenv(crashHomeEnv)
	if home == "" {
		t.Skip("run by metaImages")
	}
	m, err := Open(home, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		if _, err := m.PutFile(context.Background(), fmt.Sprintf("/crash%d", i), bytes.NewReader(randBytes(uint64(i), 3000)), 0o644, Caller{}); err != nil {
			t.Fatal(err)
		}
	}
	if err := m.RemovePath("/d1/f2", false); err != nil {
		t.Fatal(err)
	}
	if err := m.Sync(); err != nil {
		t.Fatal(err)
	}
	syscall.Kill(os.Getpid(), syscall.SIGKILL)
}

// copyHome copies a pool's home (config and meta store) to dst, keeping
// the holes of Badger's preallocated logs.
func copyHome(tb testing.TB, src, dst string) {
	tb.Helper()
	for _, dir := range []string{"", metaDir} {
		if err := os.MkdirAll(filepath.Join(dst, dir), 0o700); err != nil {
			tb.Fatal(err)
		}
		entries, err := os.ReadDir(filepath.Join(src, dir))
		if err != nil {
			tb.Fatal(err)
		}
		for _, e := range entries {
			if !e.Type().IsRegular() || e.Name() == lockFile {
				continue
			}
			if err := copySparse(filepath.Join(src, dir, e.Name()), filepath.Join(dst, dir, e.Name())); err != nil {
				tb.Fatal(err)
			}
		}
	}
}

func copySparse(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	st, err := in.Stat()
	if err != nil {
		return err
	}
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	defer out.Close()
	buf := make([]byte, 1<<16)
	for off := int64(0); off < st.Size(); {
		data, err := unix.Seek(int(in.Fd()), off, unix.SEEK_DATA)
		if err != nil {
			break // only holes left (ENXIO)
		}
		hole, err := unix.Seek(int(in.Fd()), data, unix.SEEK_HOLE)
		if err != nil {
			return err
		}
		for off = data; off < hole; {
			n, err := in.ReadAt(buf[:min(int64(len(buf)), hole-off)], off)
			if n > 0 && !allZero(buf[:n]) {
				if _, err := out.WriteAt(buf[:n], off); err != nil {
					return err
				}
			}
			off += int64(n)
			if err != nil {
				return err
			}
		}
	}
	return out.Truncate(st.Size())
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// metaFiles lists the meta store's files in home, by name.
func metaFiles(tb testing.TB, home string) []string {
	tb.Helper()
	entries, err := os.ReadDir(filepath.Join(home, metaDir))
	if err != nil {
		tb.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

// flip XORs mask into the byte at off (modulo the file's size) of a
// meta file.
func flip(tb testing.TB, home, name string, off uint64, mask byte) {
	tb.Helper()
	f, err := os.OpenFile(filepath.Join(home, metaDir, name), os.O_RDWR, 0)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil || st.Size() == 0 {
		return
	}
	if mask == 0 {
		mask = 1
	}
	at := int64(off % uint64(st.Size()))
	b := []byte{0}
	if _, err := f.ReadAt(b, at); err != nil {
		tb.Fatal(err)
	}
	b[0] ^= mask
	if _, err := f.WriteAt(b, at); err != nil {
		tb.Fatal(err)
	}
}

// useDamaged opens the pool in home and uses it as status, ls and fsck
// do. Any outcome but a panic (or Badger's log.Fatal, which ends the test
// binary) is acceptable; an error must be one line. It returns Open's
// error.
func useDamaged(t *testing.T, home string) error {
	t.Helper()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	m, err := Open(home, Options{Logger: quiet})
	if err != nil {
		if strings.Contains(err.Error(), "\n") {
			t.Fatalf("Open: a multi-line error: %q", err)
		}
		return err
	}
	_, _ = m.Status()
	_, _ = m.List("/")
	_, _ = m.StatPath("/last", true)
	_, _ = m.Fsck(context.Background(), false, nil)
	_ = m.Close()
	return nil
}

// Damage anywhere in home's meta store is reported as an error, never a
// panic; damage to a table is always noticed. Many seeds, each flipping
// a few bits in a fresh copy of a clean or a crashed store
// (DHDFS_DAMAGE_SEEDS=N for more).
func TestOpenDamagedMeta(t *testing.T) {
	onDisk(t) // damages the Badger metadata store
	crash, clean := metaImages(t)
	seeds := 60
	if testing.Short() {
		seeds = 15
	}
	if n, err := strconv.Atoi(os.Getenv("DHDFS_DAMAGE_SEEDS")); err == nil {
		seeds = n
	}
	for seed := range uint64(seeds) {
		r := rand.New(rand.NewPCG(seed, 11))
		image := clean
		if seed%3 == 2 {
			image = crash
		}
		home := filepath.Join(t.TempDir(), "home")
		copyHome(t, image, home)
		files := metaFiles(t, home)
		tables := slices.DeleteFunc(slices.Clone(files), func(n string) bool { return !strings.HasSuffix(n, ".sst") })
		onlyTables := seed%2 == 0 // else any file: MANIFEST, logs, DISCARD, KEYREGISTRY
		n := 1 + r.IntN(4)
		var what []string
		for range n {
			name := files[r.IntN(len(files))]
			if onlyTables {
				name = tables[r.IntN(len(tables))]
			}
			off := r.Uint64()
			if r.IntN(2) == 0 {
				off %= 1 << 12 // where a preallocated log holds its entries
			}
			flip(t, home, name, off, byte(1<<r.IntN(8)))
			what = append(what, name)
		}
		err := useDamaged(t, home)
		t.Logf("seed %d, %v: %v", seed, what, err)
		if onlyTables && image == clean && !errors.Is(err, ErrMetaDamaged) {
			t.Errorf("seed %d: flipped bits in %v: Open = %v, want ErrMetaDamaged", seed, what, err)
		}
	}
}

// Whole files lost or cut short.
func TestOpenTruncatedMeta(t *testing.T) {
	onDisk(t) // truncates the Badger metadata store
	_, clean := metaImages(t)
	files := metaFiles(t, clean)
	for _, name := range files {
		for _, cut := range []string{"missing", "empty", "half"} {
			if name == "DISCARD" && cut != "half" {
				continue // Badger recreates it: not damage
			}
			t.Run(name+"/"+cut, func(t *testing.T) {
				home := filepath.Join(t.TempDir(), "home")
				copyHome(t, clean, home)
				path := filepath.Join(home, metaDir, name)
				var err error
				switch cut {
				case "missing":
					err = os.Remove(path)
				case "empty":
					err = os.Truncate(path, 0)
				case "half":
					var st os.FileInfo
					if st, err = os.Stat(path); err == nil {
						err = os.Truncate(path, st.Size()/2)
					}
				}
				if err != nil {
					t.Fatal(err)
				}
				err = useDamaged(t, home)
				// A MANIFEST cut short looks to Badger like one whose last
				// append a crash interrupted: it opens what the rest names.
				noticed := strings.HasSuffix(name, ".sst") || name == "MANIFEST" && cut != "half"
				if noticed && !errors.Is(err, ErrMetaDamaged) {
					t.Errorf("Open = %v, want ErrMetaDamaged", err)
				}
			})
		}
	}
}

// FuzzOpenDamagedMeta flips bytes at fuzzed offsets of fuzzed files in a
// copy of a small real meta store; opening it and using it as status and
// fsck do must return errors, never panic. flips is read in groups of 6
// bytes: file, offset (4 bytes), mask.
func FuzzOpenDamagedMeta(f *testing.F) {
	onDisk(f) // damages the Badger metadata store
	crash, clean := metaImages(f)
	f.Add(false, []byte{0, 0, 0, 0, 0, 1})
	f.Add(false, []byte{1, 200, 0, 0, 0, 0x80})
	f.Add(true, []byte{2, 10, 1, 0, 0, 4, 3, 0, 0, 0, 0, 0xff})
	f.Add(false, binary.LittleEndian.AppendUint32([]byte{5}, 0xffffffff))
	f.Fuzz(func(t *testing.T, crashed bool, flips []byte) {
		image := clean
		if crashed {
			image = crash
		}
		home := filepath.Join(t.TempDir(), "home")
		copyHome(t, image, home)
		files := metaFiles(t, home)
		for ; len(flips) >= 6; flips = flips[6:] {
			name := files[int(flips[0])%len(files)]
			flip(t, home, name, uint64(binary.LittleEndian.Uint32(flips[1:5])), flips[5])
		}
		useDamaged(t, home)
	})
}
