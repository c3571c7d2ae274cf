package main

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/dhdfs/dhdfs/cluster/kv/etcdkv/etcdtest"
)

// crashFile is what a crash may leave of one path: the content its last
// completed fsync made durable, and the contents an operation in flight
// at the kill may have left instead.
type crashFile struct {
	settled string   // sha256 of the content; "" for absent
	pending []string // possible instead while an operation runs
}

func sum(b []byte) string {
	h := sha256.Sum256(b)
	return string(h[:])
}

// crashWorker runs a workload of fsynced replaces, in-place overwrites
// and deletes on its own files, plus unsynced scratch writes, until an
// operation fails (the mount was killed).
type crashWorker struct {
	dir   string
	rng   *rand.Rand
	mu    sync.Mutex
	files map[string]*crashFile // by name in dir
	data  map[string][]byte     // settled content, to patch in place
	ops   int
}

func (w *crashWorker) begin(name string, possible string) {
	w.mu.Lock()
	f := w.files[name]
	f.pending = append(f.pending, possible)
	w.mu.Unlock()
}

func (w *crashWorker) settle(name string, data []byte, present bool) {
	w.mu.Lock()
	f := w.files[name]
	f.settled, f.pending = "", nil
	delete(w.data, name)
	if present {
		f.settled = sum(data)
		w.data[name] = data
	}
	w.mu.Unlock()
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

func writeSynced(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// step runs one random operation; an error means the mount is gone.
func (w *crashWorker) step() error {
	w.ops++
	name := fmt.Sprintf("f%d", w.rng.IntN(8))
	path := filepath.Join(w.dir, name)
	w.mu.Lock()
	old, exists := w.data[name]
	w.mu.Unlock()
	switch op := w.rng.IntN(10); {
	case op < 4: // replace: write a temporary file, fsync, rename over, fsync the directory
		data := make([]byte, w.rng.IntN(300<<10))
		for i := range data {
			data[i] = byte(w.rng.Uint32())
		}
		tmp := filepath.Join(w.dir, fmt.Sprintf(".tmp%d", w.ops))
		if err := writeSynced(tmp, data); err != nil {
			return err
		}
		w.begin(name, sum(data))
		if err := os.Rename(tmp, path); err != nil {
			return err
		}
		if err := syncDir(w.dir); err != nil {
			return err
		}
		w.settle(name, data, true)
	case op < 6 && exists && len(old) > 0: // overwrite in place, within one chunk, fsync
		off := w.rng.IntN(len(old))
		n := min(1+w.rng.IntN(64<<10), len(old)-off, 64<<10-off%(64<<10))
		patch := make([]byte, n)
		for i := range patch {
			patch[i] = byte(w.rng.Uint32())
		}
		data := bytes.Clone(old)
		copy(data[off:], patch)
		w.begin(name, sum(data))
		f, err := os.OpenFile(path, os.O_WRONLY, 0)
		if err != nil {
			return err
		}
		_, err = f.WriteAt(patch, int64(off))
		if err == nil {
			err = f.Sync()
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
		w.settle(name, data, true)
	case op < 7 && exists: // delete, fsync the directory
		w.begin(name, "")
		if err := os.Remove(path); err != nil {
			return err
		}
		if err := syncDir(w.dir); err != nil {
			return err
		}
		w.settle(name, nil, false)
	default: // unsynced scratch write: must stay readable, content not promised
		data := make([]byte, w.rng.IntN(200<<10))
		for i := range data {
			data[i] = byte(w.rng.Uint32())
		}
		return os.WriteFile(filepath.Join(w.dir, fmt.Sprintf("scratch%d", w.rng.IntN(4))), data, 0o644)
	}
	return nil
}

// TestCrashRecovery kills the mount with SIGKILL at a random moment of a
// heavy workload, once per seed, and checks after each restart that fsck
// is clean, that every fsynced file is intact byte for byte, and that
// every file reads. DHDFS_CRASH_SEEDS=N runs N seeds instead of 6.
func TestCrashRecovery(t *testing.T) {
	seeds := 6
	if v, err := strconv.Atoi(os.Getenv("DHDFS_CRASH_SEEDS")); err == nil && v > 0 {
		seeds = v
	}
	e := newEnv(t)
	e.ok("init", "--chunk-size", "64KiB")
	crashSeeds(t, e, seeds, nil)
}

// TestCrashRecoveryOnEtcd is TestCrashRecovery on a pool whose metadata
// lives in etcd (a real 3-member cluster on 127.0.0.1), whose leader also
// stops in the second round.
func TestCrashRecoveryOnEtcd(t *testing.T) {
	c := etcdtest.Start(t, 3)
	e := newEnv(t)
	e.ok("init", "--chunk-size", "64KiB", "--meta", c.URL("/dhdfs/crash"))
	crashSeeds(t, e, 3, func(seed uint64) {
		if seed == 2 {
			t.Logf("stopped etcd leader m%d", c.StopLeader(t))
		}
	})
}

// crashSeeds runs a round of TestCrashRecovery per seed on e's pool;
// during calls midway through each round's workload, if set.
func crashSeeds(t *testing.T, e *env, seeds int, during func(seed uint64)) {
	e.drives(3)
	mnt := e.mountDir()
	var workers []*crashWorker
	for seed := uint64(1); seed <= uint64(seeds); seed++ {
		rng := rand.New(rand.NewPCG(seed, 0xc7a5))
		e.mountDaemon()
		pid := e.mountPid()
		// Each round adds workers and keeps the earlier ones' files: a
		// crash must not harm what was synced in an earlier round either.
		for i := 0; i < 2; i++ {
			w := &crashWorker{dir: filepath.Join(mnt, fmt.Sprintf("s%d-w%d", seed, i)),
				rng: rand.New(rand.NewPCG(seed, uint64(i))), files: map[string]*crashFile{}, data: map[string][]byte{}}
			for k := 0; k < 8; k++ {
				w.files[fmt.Sprintf("f%d", k)] = &crashFile{}
			}
			if err := os.Mkdir(w.dir, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := syncDir(mnt); err != nil {
				t.Fatal(err)
			}
			workers = append(workers, w)
		}
		var wg sync.WaitGroup
		for _, w := range workers[len(workers)-2:] {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for w.step() == nil {
				}
			}()
		}
		wait := time.Duration(150+rng.IntN(500)) * time.Millisecond
		time.Sleep(wait / 2)
		if during != nil {
			during(seed)
		}
		time.Sleep(wait / 2)
		killMount(t, pid, mnt)
		wg.Wait()
		out := e.ok("fsck")
		if !strings.Contains(out, ": 0 problems") {
			t.Fatalf("seed %d: fsck after the crash:\n%s", seed, out)
		}
		e.mountDaemon()
		ops := 0
		for _, w := range workers {
			ops += w.ops
			for name, f := range w.files {
				got := ""
				if b, err := os.ReadFile(filepath.Join(w.dir, name)); err == nil {
					got = sum(b)
				} else if !os.IsNotExist(err) {
					t.Fatalf("seed %d: %s/%s: %v", seed, w.dir, name, err)
				}
				if got != f.settled && !contains(f.pending, got) {
					t.Fatalf("seed %d: %s/%s is neither what its last fsync made durable nor what the operation in flight wrote", seed, w.dir, name)
				}
				// What the crash left is what later rounds build on.
				if b, err := os.ReadFile(filepath.Join(w.dir, name)); err == nil {
					w.settle(name, b, true)
				} else {
					w.settle(name, nil, false)
				}
			}
		}
		readAll(t, mnt)
		e.ok("umount", mnt)
		t.Logf("seed %d: killed after %d operations in all; fsck clean, synced files intact", seed, ops)
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// killMount kills the mount process with SIGKILL, detaches its dead
// mount and waits until the process is gone.
func killMount(t *testing.T, pid int, mnt string) {
	t.Helper()
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Unmount(mnt, syscall.MNT_DETACH); err != nil {
		t.Fatalf("unmount the dead mount: %v", err)
	}
	for i := 0; i < 100 && pidAlive(pid); i++ {
		time.Sleep(20 * time.Millisecond)
	}
}

func pidAlive(pid int) bool { return syscall.Kill(pid, 0) == nil }

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// readAll reads every file under dir: no chunk may be missing.
func readAll(t *testing.T, dir string) {
	t.Helper()
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		_, err = os.ReadFile(p)
		return err
	})
	if err != nil {
		t.Fatalf("read back after the crash: %v", err)
	}
}

// TestLoseHome kills the mount and deletes home; recover rebuilds it from
// one drive with every change older than the mirror interval, and after a
// clean unmount with every change.
func TestLoseHome(t *testing.T) {
	e := newEnv(t)
	e.ok("init", "--chunk-size", "64KiB")
	disks := e.drives(3)
	home := filepath.Join(e.dir, "home")
	mnt := e.mountDaemon("--mirror-every", "300ms")
	pid := e.mountPid()
	old := randomFile(t, filepath.Join(e.dir, "old.bin"), 200<<10, 1)
	if err := writeSynced(filepath.Join(mnt, "old.bin"), old); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(mnt, "dir"), 0o755); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second) // three mirror intervals
	late := randomFile(t, filepath.Join(e.dir, "late.bin"), 100<<10, 2)
	if err := writeSynced(filepath.Join(mnt, "late.bin"), late); err != nil {
		t.Fatal(err)
	}
	killMount(t, pid, mnt)
	if err := os.RemoveAll(home); err != nil {
		t.Fatal(err)
	}
	e.fails("no pool", "ls", "/")

	out := e.ok("recover", "--from", disks[1], "--home", home)
	if !strings.Contains(out, "Rebuilt pool") || !strings.Contains(out, "0 left") {
		t.Fatalf("recover: %s", out)
	}
	e.fails("a pool already exists here", "recover", "--from", disks[2], "--home", home)
	e.mountDaemon()
	if got, err := os.ReadFile(filepath.Join(mnt, "old.bin")); err != nil || !bytes.Equal(got, old) {
		t.Fatalf("old.bin after recover: %v", err)
	}
	if st, err := os.Stat(filepath.Join(mnt, "dir")); err != nil || !st.IsDir() {
		t.Fatalf("dir after recover: %v", err)
	}
	// late.bin came within the last interval: it may be lost, never torn.
	if got, err := os.ReadFile(filepath.Join(mnt, "late.bin")); err == nil && !bytes.Equal(got, late) {
		t.Fatal("late.bin is torn")
	}
	again := randomFile(t, filepath.Join(e.dir, "again.bin"), 70<<10, 3)
	if err := os.WriteFile(filepath.Join(mnt, "again.bin"), again, 0o644); err != nil {
		t.Fatal(err)
	}
	e.ok("umount", mnt)

	// After a clean unmount nothing is lost.
	if err := os.RemoveAll(home); err != nil {
		t.Fatal(err)
	}
	e.ok("recover", "--from", disks[2], "--home", home)
	if got := e.ok("get", "/again.bin", "-"); got != string(again) {
		t.Fatal("again.bin lost after a clean unmount")
	}
	if out := e.ok("fsck"); !strings.Contains(out, ": 0 problems") {
		t.Fatalf("fsck: %s", out)
	}
}
