package main

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/dhdfs/dhdfs/cluster"
	"github.com/dhdfs/dhdfs/cluster/mountinfo"
	"github.com/dhdfs/dhdfs/fs"
)

func TestApplyMountOptions(t *testing.T) {
	tests := []struct {
		opts string
		want func(c *fs.Config)
		err  bool
	}{
		{"", func(c *fs.Config) {}, false},
		{"ro", func(c *fs.Config) { c.ReadOnly = true }, false},
		{"ro,rw", func(c *fs.Config) {}, false},
		{"noatime", func(c *fs.Config) { c.Atime = cluster.AtimeNever }, false},
		{"noatime,atime", func(c *fs.Config) {}, false},
		{"strictatime", func(c *fs.Config) { c.Atime = cluster.AtimeStrict }, false},
		{"strictatime,relatime", func(c *fs.Config) {}, false},
		{"nodiratime", func(c *fs.Config) { c.NoDirAtime = true }, false},
		{"nodiratime,diratime", func(c *fs.Config) {}, false},
		{"defaults,ro,noatime,nodiratime,allow_other,_netdev", func(c *fs.Config) {
			c.ReadOnly, c.Atime, c.NoDirAtime, c.AllowOther = true, cluster.AtimeNever, true, true
		}, false},
		{"lazytime", nil, true},
	}
	for _, tc := range tests {
		got, want := fs.DefaultConfig(), fs.DefaultConfig()
		err := applyMountOptions(&got, tc.opts)
		if (err != nil) != tc.err {
			t.Errorf("-o %s: error %v", tc.opts, err)
			continue
		}
		if tc.want != nil {
			tc.want(&want)
			if got != want {
				t.Errorf("-o %s: %+v, want %+v", tc.opts, got, want)
			}
		}
	}
}

// procMountOptions returns the options /proc/mounts shows for dir.
func procMountOptions(t *testing.T, dir string) []string {
	t.Helper()
	mounts, err := mountinfo.Read()
	if err != nil {
		t.Fatal(err)
	}
	m, ok := mountinfo.At(mounts, dir)
	if !ok {
		t.Fatalf("%s is not mounted", dir)
	}
	return m.Options
}

// Mount options from the command line and from mount(8) through the
// helper reach the kernel (/proc/mounts) and the mount's behaviour.
func TestMountOptionsLive(t *testing.T) {
	e := newEnv(t)
	e.ok("init")
	e.drives(2)
	src := filepath.Join(e.dir, "src")
	if err := os.WriteFile(src, []byte("content"), 0o644); err != nil {
		t.Fatal(err)
	}
	e.ok("put", src, "/f")

	// dhdfs mount -o ro,noatime
	mnt := e.mountDaemon("-o", "ro,noatime")
	opts := procMountOptions(t, mnt)
	if !slices.Contains(opts, "ro") || !slices.Contains(opts, "noatime") {
		t.Fatalf("mount -o ro,noatime: /proc/mounts says %v", opts)
	}
	var before syscall.Stat_t
	if err := syscall.Stat(filepath.Join(mnt, "f"), &before); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(mnt, "f")); err != nil || string(b) != "content" {
		t.Fatalf("read on a read-only mount: %q %v", b, err)
	}
	if err := os.WriteFile(filepath.Join(mnt, "g"), nil, 0o644); !errors.Is(err, syscall.EROFS) {
		t.Fatalf("create on a read-only mount: %v", err)
	}
	// The commands are held to it too, not only programs on the mount.
	src = filepath.Join(e.dir, "src")
	if err := os.WriteFile(src, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	e.fails("mounted read-only", "put", src, "/g")
	e.fails("mounted read-only", "mkdir", "/d")
	e.fails("mounted read-only", "rm", "/f")
	if out := e.ok("get", "/f", "-"); out != "content" {
		t.Fatalf("get from a read-only mount: %q", out)
	}
	e.ok("umount", mnt)
	var after syscall.Stat_t
	e.mountDaemon()
	if err := syscall.Stat(filepath.Join(mnt, "f"), &after); err != nil {
		t.Fatal(err)
	}
	if after.Atim != before.Atim {
		t.Fatalf("noatime: a read moved the access time")
	}
	if opts := procMountOptions(t, mnt); !slices.Contains(opts, "rw") || !slices.Contains(opts, "relatime") {
		t.Fatalf("default mount: /proc/mounts says %v", opts)
	}
	e.ok("umount", mnt)

	// mount(8) → mount.fuse.dhdfs HOME DIR -o rw,nodiratime,strictatime
	bin := t.TempDir()
	e.ok("install-helper", "--dir", bin)
	out, err := exec.Command(filepath.Join(bin, helperName), filepath.Join(e.dir, "home"), mnt, "-o", "rw,nodiratime,strictatime").CombinedOutput()
	if err != nil {
		t.Fatalf("helper: %v %s", err, out)
	}
	pid := e.mountPid()
	t.Cleanup(func() {
		if mounted(mnt) {
			if syscall.Unmount(mnt, 0) != nil {
				syscall.Unmount(mnt, syscall.MNT_DETACH)
			}
		}
		// Wait for the mount process, and never leave it behind.
		for i := 0; i < 500 && pidAlive(pid); i++ {
			time.Sleep(20 * time.Millisecond)
		}
		if pidAlive(pid) {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	})
	opts = procMountOptions(t, mnt)
	if !slices.Contains(opts, "rw") || !slices.Contains(opts, "nodiratime") || slices.Contains(opts, "relatime") {
		t.Fatalf("helper -o rw,nodiratime,strictatime: /proc/mounts says %v", opts)
	}
	// strictatime: every open for reading renews the access time.
	stat := func() syscall.Timespec {
		var st syscall.Stat_t
		if err := syscall.Stat(filepath.Join(mnt, "f"), &st); err != nil {
			t.Fatal(err)
		}
		return st.Atim
	}
	os.ReadFile(filepath.Join(mnt, "f"))
	a := stat()
	time.Sleep(1100 * time.Millisecond) // past the kernel's attribute cache
	os.ReadFile(filepath.Join(mnt, "f"))
	if b := stat(); b == a {
		t.Fatalf("strictatime: a second read left the access time at %v", a)
	}
	e.ok("umount", mnt)
}
