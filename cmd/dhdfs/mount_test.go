package main

import (
	"bytes"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dhdfs/dhdfs/fs"
)

func (e *env) mountDir() string {
	mnt := filepath.Join(e.dir, "mnt")
	if err := os.MkdirAll(mnt, 0o755); err != nil {
		e.t.Fatal(err)
	}
	return mnt
}

// mounted reports whether dir is in /proc/mounts.
func mounted(dir string) bool {
	b, _ := os.ReadFile("/proc/mounts")
	return strings.Contains(string(b), " "+dir+" ")
}

// mountPid returns the pid of the process holding the pool: the mount.
func (e *env) mountPid() int {
	e.t.Helper()
	first, _, _ := strings.Cut(readFile(e.t, filepath.Join(e.dir, "home", "lock")), "\n") // then the mount point
	pid, err := strconv.Atoi(strings.TrimSpace(first))
	if err != nil {
		e.t.Fatalf("mount pid: %v", err)
	}
	return pid
}

// mountDaemon mounts the env's pool at its mount dir and registers an
// unmount that runs even if the test fails.
func (e *env) mountDaemon(args ...string) string {
	mnt := e.mountDir()
	e.mountDaemonAt(mnt, args...)
	return mnt
}

// mountDaemonAt mounts the env's pool at mnt with mount --daemon and args,
// registers its unmount, and returns the mount process's pid.
func (e *env) mountDaemonAt(mnt string, args ...string) int {
	e.t.Helper()
	e.ok(append(append([]string{"mount", "--daemon"}, args...), mnt)...)
	pid := e.mountPid()
	e.t.Cleanup(func() {
		if mounted(mnt) {
			syscall.Unmount(mnt, syscall.MNT_DETACH)
		}
		// The mount process writes to home and the drives until it exits:
		// wait, so that removing the test's directories does not race it.
		for i := 0; i < 500 && pid > 0 && pidAlive(pid); i++ {
			time.Sleep(20 * time.Millisecond)
		}
	})
	if !mounted(mnt) {
		e.t.Fatalf("%s is not mounted after mount --daemon", mnt)
	}
	return pid
}

func TestMountDaemonCopyUmount(t *testing.T) {
	e := newEnv(t)
	e.ok("init", "--chunk-size", "64KiB")
	e.drives(4)
	mnt := e.mountDaemon()
	src := filepath.Join(e.dir, "src.bin")
	data := randomFile(t, src, 3<<20+7, 11)
	run := func(name string, args ...string) string {
		t.Helper()
		out, err := exec.Command(name, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("%s %v: %v\n%s", name, args, err, out)
		}
		return string(out)
	}
	run("mkdir", filepath.Join(mnt, "docs"))
	run("cp", src, filepath.Join(mnt, "docs/a.bin"))
	run("cmp", src, filepath.Join(mnt, "docs/a.bin"))
	if out := run("cat", filepath.Join(mnt, "docs/a.bin")); out != string(data) {
		t.Fatal("cat through the mount differs")
	}
	if out := run("df", "-P", mnt); !strings.Contains(out, "dhdfs:") {
		t.Fatalf("df: %q", out)
	}
	if ra, err := fs.ReadAhead(mnt); os.Geteuid() == 0 && (err != nil || ra != fs.DefaultReadAhead) {
		t.Fatalf("read-ahead of the mount = %d, %v; want %d", ra, err, fs.DefaultReadAhead)
	}
	e.fails("already mounted", "mount", "--daemon", filepath.Join(e.dir, "mnt2-missing"))
	e.ok("umount", mnt)
	if mounted(mnt) {
		t.Fatal("still mounted after dhdfs umount")
	}
	// Unmounted, the pool is the CLI's again, with the file in it.
	if out := e.ok("ls", "/docs"); out != "a.bin\n" {
		t.Fatalf("ls after umount: %q", out)
	}
	// The seed's scenario through the mount: a drive holding the first
	// chunk offline, the file still reads back identical.
	first := strings.Fields(strings.Split(e.ok("stat", "--chunks", "/docs/a.bin"), "\n")[8])[4]
	e.ok("node", "offline", strings.Split(first, ",")[0])
	mnt = e.mountDaemon("-o", "read_ahead=2MiB")
	if ra, err := fs.ReadAhead(mnt); os.Geteuid() == 0 && (err != nil || ra != 2<<20) {
		t.Fatalf("read-ahead with -o read_ahead=2MiB = %d, %v", ra, err)
	}
	run("cmp", src, filepath.Join(mnt, "docs/a.bin"))
	e.ok("umount", mnt)
}

func TestMountErrors(t *testing.T) {
	e := newEnv(t)
	e.ok("init")
	e.drives(2)
	full := filepath.Join(e.dir, "full")
	os.MkdirAll(full, 0o755)
	os.WriteFile(filepath.Join(full, "x"), nil, 0o644)
	e.fails("is not empty", "mount", full)
	e.fails("no such file or directory", "mount", filepath.Join(e.dir, "missing"))
	e.fails("expected one mount point DIR", "mount")
	e.fails("unknown mount option", "mount", "-o", "bogus", e.mountDir())
	e.fails("--read-ahead: size \"lots\"", "mount", "--read-ahead", "lots", e.mountDir())
	e.fails("--read-ahead: 1GiB is more than the 64 MiB allowed", "mount", "--read-ahead", "1GiB", e.mountDir())
	e.fails("read_ahead: size \"-1\"", "mount", "-o", "read_ahead=-1", e.mountDir())
	e.fails("not a mounted dhdfs pool", "umount", e.dir)
	mnt := e.mountDaemon()
	e.fails("pool is in use by pid", "mount", filepath.Join(e.dir, "other"))
	// A file held open keeps the mount busy; umount says so and leaves it.
	f, err := os.Open(mnt)
	if err != nil {
		t.Fatal(err)
	}
	e.fails("is busy", "umount", mnt)
	f.Close()
	e.ok("umount", mnt)
}

// mountForeground starts 'dhdfs mount mnt' in the foreground with env
// added, and registers its unmount and kill; stderr collects its output.
func (e *env) mountForeground(mnt string, env ...string) (*exec.Cmd, *bytes.Buffer) {
	e.t.Helper()
	cmd := exec.Command(binary, "mount", mnt)
	cmd.Env = append(append(os.Environ(), "DHDFS_HOME="+filepath.Join(e.dir, "home")), env...)
	stderr := &bytes.Buffer{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() {
		if mounted(mnt) {
			syscall.Unmount(mnt, syscall.MNT_DETACH)
		}
		cmd.Process.Kill()
	})
	return cmd, stderr
}

// SIGTERM and Ctrl-C unmount cleanly and flush what was written.
func TestMountSignals(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		t.Run(sig.String(), func(t *testing.T) {
			e := newEnv(t)
			e.ok("init")
			e.drives(2)
			mnt := e.mountDir()
			cmd, stderr := e.mountForeground(mnt)
			for i := 0; !mounted(mnt); i++ {
				if i == 200 {
					t.Fatalf("not mounted: %s", stderr.String())
				}
				time.Sleep(20 * time.Millisecond)
			}
			if err := os.WriteFile(filepath.Join(mnt, "f"), []byte("flushed"), 0o644); err != nil {
				t.Fatal(err)
			}
			cmd.Process.Signal(sig)
			if err := cmd.Wait(); err != nil {
				t.Fatalf("mount exited with %v: %s", err, stderr.String())
			}
			if mounted(mnt) {
				t.Fatal("stale mount left behind")
			}
			if out, _, _ := e.run(nil, "get", "/f", "-"); out != "flushed" {
				t.Fatalf("after %v: %q", sig, out)
			}
		})
	}
}

func TestHelperArgs(t *testing.T) {
	tests := []struct {
		in   []string
		want []string
		err  bool
	}{
		{[]string{"/var/lib/dhdfs", "/mnt/pool"}, []string{"dhdfs", "mount", "--daemon", "--home", "/var/lib/dhdfs", "/mnt/pool"}, false},
		{[]string{"/h", "/m", "-o", "rw,allow_other"}, []string{"dhdfs", "mount", "--daemon", "--home", "/h", "-o", "rw,allow_other", "/m"}, false},
		{[]string{"/h", "/m", "-n", "-orw"}, []string{"dhdfs", "mount", "--daemon", "--home", "/h", "-o", "rw", "/m"}, false},
		{[]string{"/h"}, nil, true},
		{[]string{"/h", "/m", "-x"}, nil, true},
	}
	for _, tc := range tests {
		got, err := helperArgs(tc.in)
		if (err != nil) != tc.err || !slices.Equal(got, tc.want) {
			t.Errorf("helperArgs(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

// mount(8) with an fstab-style call goes through the helper.
func TestMountHelper(t *testing.T) {
	e := newEnv(t)
	e.ok("init")
	e.drives(2)
	bin := t.TempDir()
	e.ok("install-helper", "--dir", bin)
	mnt := e.mountDir()
	out, err := exec.Command(filepath.Join(bin, "mount.fuse.dhdfs"), filepath.Join(e.dir, "home"), mnt, "-o", "rw,noauto").CombinedOutput()
	if err != nil {
		t.Fatalf("helper: %v %s", err, out)
	}
	t.Cleanup(func() {
		if mounted(mnt) {
			syscall.Unmount(mnt, syscall.MNT_DETACH)
		}
	})
	if !mounted(mnt) {
		t.Fatal("helper did not mount")
	}
	e.ok("umount", mnt)
}

// Under systemd (Type=notify) the mount says READY=1 once it is mounted,
// and STOPPING=1 when it starts to unmount: here to a fake NOTIFY_SOCKET.
func TestMountNotifiesSystemd(t *testing.T) {
	e := newEnv(t)
	e.ok("init")
	e.drives(1)
	mnt := e.mountDir()
	sock := filepath.Join(e.dir, "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	cmd, stderr := e.mountForeground(mnt, "NOTIFY_SOCKET="+sock)
	next := func() string {
		t.Helper()
		conn.SetReadDeadline(time.Now().Add(20 * time.Second))
		buf := make([]byte, 4096)
		n, err := conn.Read(buf)
		if err != nil {
			t.Fatalf("no notification: %v (mount: %s)", err, stderr.String())
		}
		return string(buf[:n])
	}
	ready := next()
	if !strings.Contains(ready, "READY=1") || !strings.Contains(ready, "MAINPID="+strconv.Itoa(cmd.Process.Pid)) {
		t.Fatalf("first notification %q, want READY=1 and MAINPID", ready)
	}
	if !mounted(mnt) {
		t.Fatal("READY=1 before the mount was there")
	}
	cmd.Process.Signal(syscall.SIGTERM)
	if got := next(); !strings.Contains(got, "STOPPING=1") {
		t.Fatalf("notification at SIGTERM %q, want STOPPING=1", got)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("mount exited with %v: %s", err, stderr.String())
	}
}

// status says whether the pool is mounted, where and by which process.
func TestStatusSaysWhereMounted(t *testing.T) {
	e := newEnv(t)
	e.ok("init")
	e.drives(1)
	if out := e.ok("status"); !strings.Contains(out, "Mounted:   no\n") {
		t.Fatalf("status of an unmounted pool: %q", out)
	}
	mnt := e.mountDaemon()
	pid := e.mountPid()
	if out := e.ok("status"); !strings.Contains(out, "Mounted:   at "+mnt+" by pid "+strconv.Itoa(pid)+"\n") {
		t.Fatalf("status of a mounted pool (pid %d at %s): %q", pid, mnt, out)
	}
	if out := e.ok("status", "--json"); !strings.Contains(out, `"mount": {`) || !strings.Contains(out, `"pid": `+strconv.Itoa(pid)) {
		t.Fatalf("status --json of a mounted pool: %q", out)
	}
	e.ok("umount", mnt)
	if out := e.ok("status", "--json"); !strings.Contains(out, `"mount": null`) {
		t.Fatalf("status --json after umount: %q", out)
	}
}

// mount --daemon passes every flag given to the process that serves the
// mount (it once dropped --read-ahead).
func TestDaemonKeepsFlags(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("setting the read-ahead needs root")
	}
	e := newEnv(t)
	e.ok("init")
	e.drives(1)
	mnt := e.mountDaemon("--read-ahead", "2MiB", "-o", "noatime")
	dev, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	var majmin string
	for _, line := range strings.Split(string(dev), "\n") {
		if f := strings.Fields(line); len(f) > 4 && f[4] == mnt {
			majmin = f[2]
		}
	}
	if got := strings.TrimSpace(readFile(t, "/sys/class/bdi/"+majmin+"/read_ahead_kb")); got != "2048" {
		t.Fatalf("read-ahead of the daemon's mount: %s KiB, want 2048", got)
	}
	b, _ := os.ReadFile("/proc/mounts")
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 3 && f[1] == mnt && !strings.Contains(f[3], "noatime") {
			t.Fatalf("the daemon's mount lost -o noatime: %s", line)
		}
	}
}
