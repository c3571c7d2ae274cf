package fs

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/dhdfs/dhdfs/cluster"
	"github.com/dhdfs/dhdfs/nodes"
	"github.com/dhdfs/dhdfs/nodes/dirdrive"
)

// testMount is a pool of real Badger drives mounted in a temp dir. The
// mount is always unmounted, even when the test fails.
type testMount struct {
	t      *testing.T
	mnt    string
	m      *cluster.Manager
	srv    *fuse.Server
	fsys   *FS
	faulty map[string]*nodes.Faulty
}

func mountPool(t *testing.T, drives int, chunkSize int) *testMount {
	t.Helper()
	return mountPoolWith(t, drives, chunkSize, func(*Config) {})
}

// mountPoolWith mounts with the default Config changed by edit.
func mountPoolWith(t *testing.T, drives int, chunkSize int, edit func(*Config)) *testMount {
	t.Helper()
	return mountPoolOpts(t, drives, chunkSize, func(*cluster.Options) {}, edit)
}

// mountPoolOpts also changes the pool's Options: by default freed write
// buffers are poisoned, so that bytes no write produced show at once.
func mountPoolOpts(t *testing.T, drives int, chunkSize int, pool func(*cluster.Options), edit func(*Config)) *testMount {
	t.Helper()
	root := t.TempDir()
	home := filepath.Join(root, "home")
	cfg := cluster.DefaultPoolConfig()
	cfg.ChunkSize = chunkSize
	if _, err := cluster.Init(home, cfg); err != nil {
		t.Fatal(err)
	}
	tm := &testMount{t: t, faulty: map[string]*nodes.Faulty{}}
	// Closes commit lazily, as with dhdfs mount, with a busy background syncer.
	opts := cluster.Options{SyncInterval: 200 * time.Millisecond, PoisonBuffers: true, WrapStore: func(rec cluster.DriveRecord, s nodes.Store) nodes.Store {
		f := nodes.NewFaulty(s)
		tm.faulty[rec.Name] = f
		return f
	}}
	pool(&opts)
	m, err := cluster.Open(home, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	for i := 1; i <= drives; i++ {
		p := filepath.Join(root, fmt.Sprintf("disk%d", i))
		if err := os.Mkdir(p, 0o755); err != nil {
			t.Fatal(err)
		}
		if _, _, err := m.AddDrive(p, cluster.AddDriveOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	mnt := filepath.Join(root, "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	cfgm := DefaultConfig()
	cfgm.Debug = os.Getenv("DHDFS_FUSE_DEBUG") != ""
	edit(&cfgm)
	srv, fsys, err := mount(mnt, ManagerPool(m), cfgm)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unmount(t, srv) })
	tm.mnt, tm.m, tm.srv, tm.fsys = mnt, m, srv, fsys
	return tm
}

// unmount retries while the kernel still has files open.
func unmount(t *testing.T, srv *fuse.Server) {
	var err error
	for i := 0; i < 50; i++ {
		if err = srv.Unmount(); err == nil {
			srv.Wait()
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Errorf("unmount: %v", err)
}

func (tm *testMount) path(name string) string { return filepath.Join(tm.mnt, name) }

func init() {
	// Tests remove drive directories; Badger cannot flush those on close.
	dirdrive.CloseTimeout = time.Second
}
