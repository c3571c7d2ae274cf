package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// plainUmount unmounts dir the way a user does without dhdfs: umount(8),
// or fusermount3 -u without root. It returns once the kernel has
// unmounted it, while the mount process may still be finishing.
func plainUmount(t *testing.T, dir string) {
	t.Helper()
	cmd := exec.Command("umount", dir)
	if os.Geteuid() != 0 {
		cmd = exec.Command(fusermount(), "-u", dir)
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%v: %v\n%s", cmd.Args, err, out)
	}
}

// mountSlow mounts the env's pool with a slow drive, so that the mount
// process takes a while to finish after an unmount (its final sync waits
// for the drive). It returns the mount's pid.
func (e *env) mountSlow(mnt string) int {
	e.t.Helper()
	return e.mountDaemonAt(mnt, "--debug-faults", "d1:latency=300ms")
}

// Mounting again right after a plain umount succeeds: the new mount waits
// for the old process, which still holds the pool while it finishes, and
// says so once. A pool that is really mounted is still refused at once.
func TestMountAfterPlainUmount(t *testing.T) {
	e := newEnv(t)
	e.ok("init", "--chunk-size", "64KiB")
	e.drives(2)
	mnt := e.mountDir()
	home := filepath.Join(e.dir, "home")
	pid := e.mountSlow(mnt)

	// Really mounted: refused at once, as before.
	start := time.Now()
	e.fails(fmt.Sprintf("pool is in use by pid %d", pid), "mount", "--daemon", filepath.Join(e.dir, "mnt2"))
	e.fails(fmt.Sprintf("pool is in use by pid %d", pid), "fsck")
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("refusing a mounted pool took %v", d)
	}

	files := map[string][]byte{}
	raced := 0
	for round := range 5 {
		name := fmt.Sprintf("f%d", round)
		files[name] = bytes.Repeat([]byte{byte(round)}, 200000+round)
		if err := os.WriteFile(filepath.Join(mnt, name), files[name], 0o644); err != nil {
			t.Fatal(err)
		}
		plainUmount(t, mnt)
		if pidAlive(pid) {
			raced++ // the old mount still finishing: the case at hand
		}
		pid = e.mountSlow(mnt) // at once
		for n, want := range files {
			if got, err := os.ReadFile(filepath.Join(mnt, n)); err != nil || !bytes.Equal(got, want) {
				t.Fatalf("round %d: %s after remounting: %v, %d bytes", round, n, err, len(got))
			}
		}
	}
	if raced == 0 {
		t.Fatal("the old mount had always exited before the new one started: the wait was never exercised")
	}
	if log := readFile(t, filepath.Join(home, "mount.log")); !strings.Contains(log, "is finishing: waiting for it") {
		t.Fatalf("mount.log does not say the new mount waited:\n%s", log)
	}

	// Other commands wait too.
	plainUmount(t, mnt)
	if out := e.ok("ls"); out != "f0\nf1\nf2\nf3\nf4\n" {
		t.Fatalf("ls right after umount: %q", out)
	}
	e.ok("fsck")
}
