package cluster

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := Open(filepath.Join(dir, "none"), Options{}); !errors.Is(err, ErrNoPool) {
		t.Fatalf("Open of uninitialised home: %v, want ErrNoPool", err)
	}
	home := filepath.Join(dir, "home")
	if _, err := Init(home, DefaultPoolConfig()); err != nil {
		t.Fatal(err)
	}
	if _, err := Init(home, DefaultPoolConfig()); !errors.Is(err, ErrPoolExists) {
		t.Fatalf("second Init: %v, want ErrPoolExists", err)
	}
	m, err := Open(home, Options{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = Open(home, Options{})
	if !errors.Is(err, ErrPoolInUse) || !strings.Contains(err.Error(), "pid "+strconv.Itoa(os.Getpid())) {
		t.Fatalf("second Open: %v, want ErrPoolInUse naming pid %d", err, os.Getpid())
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	m, err = Open(home, Options{})
	if err != nil {
		t.Fatalf("Open after Close: %v", err)
	}
	m.Close()
}

func TestInitValidates(t *testing.T) {
	tests := []struct {
		name string
		cfg  PoolConfig
	}{
		{"zero replicas", PoolConfig{Replicas: 0, ChunkSize: DefaultChunkSize}},
		{"too many replicas", PoolConfig{Replicas: MaxReplicas + 1, ChunkSize: DefaultChunkSize}},
		{"tiny chunks", PoolConfig{Replicas: 2, ChunkSize: 4096}},
		{"huge chunks", PoolConfig{Replicas: 2, ChunkSize: 1 << 30}},
		{"odd chunks", PoolConfig{Replicas: 2, ChunkSize: 3 << 20}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			home := filepath.Join(t.TempDir(), "home")
			if _, err := Init(home, tc.cfg); !errors.Is(err, ErrInvalid) {
				t.Fatalf("Init: %v, want ErrInvalid", err)
			}
			if _, err := os.Stat(filepath.Join(home, configFile)); err == nil {
				t.Fatal("a rejected Init left a pool behind")
			}
		})
	}
}

func TestAddDriveRejects(t *testing.T) {
	onDisk(t) // directories that cannot be drives
	tp := newTestPool(t, 2, 2)
	root := filepath.Dir(tp.home)
	file := filepath.Join(root, "plain-file")
	if err := os.WriteFile(file, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	inHome := filepath.Join(tp.home, "drive")
	os.Mkdir(inHome, 0o755)
	nested := filepath.Join(tp.paths[0], "sub")
	os.Mkdir(nested, 0o755)
	link := filepath.Join(root, "link-to-disk1")
	if err := os.Symlink(tp.paths[0], link); err != nil {
		t.Fatal(err)
	}

	other := newTestPool(t, 1, 1)
	fresh := filepath.Join(root, "fresh")
	os.Mkdir(fresh, 0o755)

	tests := []struct {
		name, path, drive, want string
	}{
		{"missing path", filepath.Join(root, "nope"), "", "no such directory"},
		{"regular file", file, "", "not a directory"},
		{"duplicate path", tp.paths[0], "", "already in the pool"},
		{"duplicate via symlink", link, "", "already in the pool"},
		{"inside home", inHome, "", "overlaps the pool's home"},
		{"home itself", tp.home, "", "overlaps the pool's home"},
		{"inside a drive", nested, "", "overlaps drive"},
		{"drive of another pool", other.paths[0], "", "belongs to another pool"},
		{"bad name", fresh, "bad/name", "drive name"},
		{"duplicate name", fresh, "d1", "already exists"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before, _ := tp.Drives()
			_, _, err := tp.AddDrive(tc.path, AddDriveOptions{Name: tc.drive})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("AddDrive(%s): %v, want an error containing %q", tc.path, err, tc.want)
			}
			if !errors.Is(err, ErrBadDrive) {
				t.Errorf("error %v does not wrap ErrBadDrive", err)
			}
			after, _ := tp.Drives()
			if len(after) != len(before) {
				t.Fatalf("rejected AddDrive changed the drive count from %d to %d", len(before), len(after))
			}
		})
	}
	if _, err := os.Stat(filepath.Join(fresh, "dhdfs-drive.json")); err == nil {
		t.Fatal("a rejected AddDrive wrote an identity file")
	}
	// A drive removed from a pool cannot be mistaken for a fresh one.
	if _, _, err := other.AddDrive(tp.paths[1], AddDriveOptions{}); err == nil {
		t.Fatal("added a drive of another pool")
	}
}

func TestAddDriveWarnsOnSharedDevice(t *testing.T) {
	onDisk(t) // drives on one filesystem
	tp := newTestPool(t, 1, 2)
	p := filepath.Join(filepath.Dir(tp.home), "same-disk")
	os.Mkdir(p, 0o755)
	info, warnings, err := tp.AddDrive(p, AddDriveOptions{Name: "second", Labels: map[string]string{"enclosure": "A"}})
	if err != nil {
		t.Fatal(err)
	}
	if info.Name != "second" || info.State != StateOnline || info.Labels["enclosure"] != "A" {
		t.Fatalf("unexpected drive info %+v", info)
	}
	if len(warnings) != 1 || !strings.Contains(warnings[0], "fail together") {
		t.Fatalf("warnings = %q, want one about a shared device", warnings)
	}
}

func TestRestartKeepsEverything(t *testing.T) {
	onDisk(t) // a restart
	tp := newTestPool(t, 3, 2)
	data := randBytes(1, 5*MinChunkSize+77)
	if _, err := tp.MkdirPath("/a/b", true, 0o755, Caller{}); err != nil {
		t.Fatal(err)
	}
	tp.put("/a/b/file", data)
	if _, err := tp.SetDriveOffline("d2", true); err != nil {
		t.Fatal(err)
	}
	before, _ := tp.Status()
	tp.reopen()
	tp.mustEqual("/a/b/file", data)
	drives, err := tp.Drives()
	if err != nil {
		t.Fatal(err)
	}
	if len(drives) != 3 || drives[1].State != StateOffline || drives[0].State != StateOnline {
		t.Fatalf("drives after restart: %+v", drives)
	}
	after, _ := tp.Status()
	if before.Files != after.Files || before.Chunks != after.Chunks || before.Copies != after.Copies {
		t.Fatalf("status changed across restart: %+v vs %+v", before, after)
	}
}

// DefaultOptions are valid, the zero Options too, and each option out of
// range is refused with ErrInvalid before the pool opens.
func TestOptionsValidate(t *testing.T) {
	if err := DefaultOptions().Validate(); err != nil {
		t.Fatalf("DefaultOptions: %v", err)
	}
	if err := (Options{}).Validate(); err != nil {
		t.Fatalf("zero Options: %v", err)
	}
	for name, change := range map[string]func(*Options){
		"negative sync interval": func(o *Options) { o.SyncInterval = -time.Second },
		"negative heal delay":    func(o *Options) { o.HealAfter = -time.Second },
		"negative write buffer":  func(o *Options) { o.WriteBufferBytes = -1 },
		"negative repair rate":   func(o *Options) { o.RepairRate = -1 },
		"negative writers":       func(o *Options) { o.WritesInFlight = -1 },
	} {
		o := DefaultOptions()
		change(&o)
		if err := o.Validate(); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: %v", name, err)
		}
	}
	tp := newTestPool(t, 1, 1)
	tp.Close()
	if m, err := Open(tp.home, Options{MirrorInterval: -time.Second}); !errors.Is(err, ErrInvalid) {
		if m != nil {
			m.Close()
		}
		t.Fatalf("Open with a negative mirror interval: %v", err)
	}
}

// Work spanning a whole file in transactions of a few items, as an engine
// with small transaction limits (etcd: 128 keys) has it, leaves the same
// state as in one: a big file written, truncated, removed and collected
// leaves fsck clean and nothing behind.
func TestSmallTransactionBatches(t *testing.T) {
	tp := newTestPool(t, 3, 2)
	tp.meta.batch = 2
	ctx := context.Background()
	data := randBytes(7, 21*MinChunkSize+100)
	n := tp.put("/big", data)
	tp.mustEqual("/big", data)
	size := int64(5 * MinChunkSize)
	if _, err := tp.SetAttr(ctx, n.Ino, SetAttrIn{Size: &size}); err != nil {
		t.Fatal(err)
	}
	tp.mustEqual("/big", data[:5*MinChunkSize])
	if err := tp.RemovePath("/big", false); err != nil {
		t.Fatal(err)
	}
	if _, err := tp.GC(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if rep, err := tp.Fsck(ctx, false, nil); err != nil || len(rep.Problems) != 0 {
		t.Fatalf("fsck: %v %s", err, problemKinds(rep))
	}
	if st := tp.mustStatus(); st.Chunks != 0 {
		t.Fatalf("%d chunks left after removing the only file", st.Chunks)
	}
}

// Whole-keyspace work paged in tiny pages (a page per view) gives the same
// status, and the healer and a recount still work.
func TestPagedScans(t *testing.T) {
	tp := newTestPool(t, 3, 2)
	tp.putFiles(4)
	want := tp.mustStatus()
	defer func(n int) { scanPage = n }(scanPage)
	scanPage = 2
	got := tp.mustStatus()
	if got.Files != want.Files || got.Chunks != want.Chunks || got.Copies != want.Copies || got.FileBytes != want.FileBytes || got.Dirs != want.Dirs {
		t.Fatalf("status in pages of 2: %+v, in one view: %+v", got, want)
	}
	tp.setOffline("d1", true)
	if rep, err := tp.Heal(context.Background(), nil); err != nil || rep.Checked != want.Chunks {
		t.Fatalf("heal in pages of 2: %+v %v", rep, err)
	}
	if n, err := tp.recountRefs(); err != nil || n != 0 {
		t.Fatalf("recount in pages of 2 found %d wrong counts: %v", n, err)
	}
}
