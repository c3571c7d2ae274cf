package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dhdfs/dhdfs/cluster/control"
)

// asNobody runs a command as the unprivileged user nobody.
func asNobody(t *testing.T, args ...string) (string, error) {
	t.Helper()
	out, err := exec.Command("setpriv", append([]string{"--reuid=65534", "--regid=65534", "--clear-groups", "--"}, args...)...).CombinedOutput()
	return string(out), err
}

func TestSecurity(t *testing.T) {
	if _, err := exec.LookPath("setpriv"); err != nil {
		t.Skip("setpriv (util-linux) not installed")
	}
	e := newEnv(t)
	e.ok("init")
	e.drives(2)
	home := filepath.Join(e.dir, "home")
	// Other users may reach the test's directories, not the pool's home.
	for _, d := range []string{filepath.Dir(e.dir), e.dir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}

	t.Run("home open to others", func(t *testing.T) {
		if err := os.Chmod(home, 0o755); err != nil {
			t.Fatal(err)
		}
		defer os.Chmod(home, 0o700)
		e.fails("chmod 700 ", "mount", "--daemon", e.mountDir())
	})

	mnt := e.mountDaemon()
	if err := os.Mkdir(filepath.Join(mnt, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Run("drive paths", func(t *testing.T) {
		for _, link := range []struct{ name, target, want string }{
			{"into-mount", filepath.Join(mnt, "sub"), "inside the dhdfs mount"},
			{"into-home", home, "overlaps the pool's home"},
		} {
			p := filepath.Join(e.dir, link.name)
			if err := os.Symlink(link.target, p); err != nil {
				t.Fatal(err)
			}
			e.fails(link.want, "node", "add", p)
			e.fails(link.want, "node", "add", link.target)
		}
		if st, err := os.Stat(control.SocketPath(home)); err != nil || st.Mode().Perm() != 0o600 {
			t.Fatalf("control socket: %v %v", st.Mode(), err)
		}
	})

	t.Run("without allow_other", func(t *testing.T) {
		if out, err := asNobody(t, "ls", mnt); err == nil {
			t.Fatalf("another user listed the mount: %s", out)
		}
	})
	e.ok("umount", mnt)

	t.Run("allow_other keeps permission checks", func(t *testing.T) {
		mnt := e.mountDaemon("--allow-other")
		if err := os.WriteFile(filepath.Join(mnt, "private"), []byte("secret"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(mnt, "public"), []byte("hello"), 0o644); err != nil {
			t.Fatal(err)
		}
		if out, err := asNobody(t, "cat", filepath.Join(mnt, "public")); err != nil || out != "hello" {
			t.Fatalf("reading a public file: %q %v", out, err)
		}
		if out, err := asNobody(t, "cat", filepath.Join(mnt, "private")); err == nil || !strings.Contains(out, "Permission denied") {
			t.Fatalf("another user read a 0600 file: %q %v", out, err)
		}
		if out, err := asNobody(t, "touch", filepath.Join(mnt, "sub", "x")); err == nil {
			t.Fatalf("another user wrote into root's 0755 directory: %q", out)
		}
		e.ok("umount", mnt)
	})
}

// A mount --daemon that fusermount3 refuses prints fusermount3's own reason,
// not only that the mount process exited: the daemon's stderr is /dev/null.
func TestDaemonPassesFusermountMessage(t *testing.T) {
	if _, err := exec.LookPath("setpriv"); err != nil {
		t.Skip("setpriv (util-linux) not installed")
	}
	if _, err := exec.LookPath("fusermount3"); err != nil {
		t.Skip("fusermount3 not installed")
	}
	dir := t.TempDir()
	if err := os.Chmod(filepath.Dir(dir), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(dir, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "dhdfs") // where nobody may run it
	data, err := os.ReadFile(binary)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	home, drive := filepath.Join(dir, "home"), filepath.Join(dir, "d1")
	// root's, so fusermount3 refuses it to nobody whatever /dev/fuse allows
	mnt := filepath.Join(dir, "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"mkdir", drive}, {bin, "--home", home, "init"}, {bin, "--home", home, "node", "add", drive}} {
		if out, err := asNobody(t, args...); err != nil {
			t.Fatalf("%s: %v: %s", args, err, out)
		}
	}
	out, err := asNobody(t, bin, "--home", home, "mount", "--daemon", mnt)
	if err == nil {
		exec.Command("umount", mnt).Run()
		t.Fatalf("nobody mounted on root's directory: %s", out)
	}
	if lines := strings.Split(strings.TrimSpace(out), "\n"); len(lines) != 1 || !strings.Contains(out, "fusermount3: ") {
		t.Fatalf("want fusermount3's reason on one line, got %q", out)
	}
	if log, _ := os.ReadFile(filepath.Join(home, "mount.log")); !strings.Contains(string(log), "fusermount3: ") {
		t.Fatalf("mount.log lacks fusermount3's reason:\n%s", log)
	}
}
