package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dhdfs/dhdfs/cluster"
)

// usage runs dhdfs and checks it exits with status 2 and one line of
// stderr containing every string of want.
func (e *env) usage(args []string, want ...string) {
	e.t.Helper()
	out, errs, code := e.run(nil, args...)
	if code != 2 {
		e.t.Fatalf("dhdfs %s: exit %d, want 2 (stderr %q)", strings.Join(args, " "), code, errs)
	}
	if out != "" || strings.Count(strings.TrimSpace(errs), "\n") != 0 {
		e.t.Fatalf("dhdfs %s: want one line on stderr and nothing on stdout, got %q and %q", strings.Join(args, " "), errs, out)
	}
	for _, w := range want {
		if !strings.Contains(errs, w) {
			e.t.Fatalf("dhdfs %s: stderr %q, want %q in it", strings.Join(args, " "), errs, w)
		}
	}
}

// Usage errors are one line with a hint and exit status 2, with a
// suggestion for a mistyped command or flag.
func TestUsageErrors(t *testing.T) {
	e := newEnv(t)
	e.usage([]string{"moutn"}, `"moutn" is not a command of dhdfs`, "did you mean 'dhdfs mount'?", "dhdfs --help")
	e.usage([]string{"bogus"}, `"bogus" is not a command of dhdfs`)
	// Values out of range are usage errors too, before anything runs.
	e.usage([]string{"mkdir", "docs"}, `pool path "docs" must start with '/'`, "did you mean /docs?")
	e.usage([]string{"init", "--replicas", "0"}, "replicas 0 out of range")
	e.usage([]string{"init", "--chunk-size", "3MiB"}, "not a power of two")
	e.usage([]string{"mount", "--daemon", "--cache-size", "48XB", e.dir}, "--cache-size 48XB")
	e.usage([]string{"mount", "--log-level", "verbose", e.dir}, "--log-level")
	e.usage([]string{"node", "ad", "/x"}, `"ad" is not a command of dhdfs node`, "did you mean 'dhdfs node add'?")
	e.usage([]string{"node", "rmove", "d1"}, "did you mean 'dhdfs node remove'?")
	e.usage([]string{"mount", "--daemn", "/x"}, "mount: no flag --daemn; did you mean --daemon?", "see 'dhdfs mount --help'")
	e.usage([]string{"node", "add", "--labl", "x", "/x"}, "node add: no flag --labl; did you mean --label?", "see 'dhdfs node add --help'")
	e.usage([]string{"ls", "--bogus"}, "ls: no flag --bogus")
	e.usage([]string{"ls", "-lzh"}, "ls: no flag -z (in -lz)")
	e.usage([]string{"init", "--meta", "mem://x"}, "--meta mem://x would live only in this process's memory")
	e.usage([]string{"node", "add", "mem://d1"}, "a drive mem://d1 would live only in this process's memory")
	e.usage([]string{"node", "replace", "d1", "mem://d9"}, "a drive mem://d9 would live only")
	e.usage([]string{"--home"}, "--home needs a value")
	e.usage([]string{"mount", "--cache-size"}, "mount: --cache-size needs a value")
	e.usage([]string{"ls", "/a", "/b"}, "ls: expected at most one PATH")
	e.usage([]string{"completion", "tcsh"}, `no completion for "tcsh"`)
	e.usage([]string{"help", "nosuch"}, `"nosuch" is not a command of dhdfs`)
}

// --version, version and help CMD answer; the completion scripts are
// valid shell, and the completions name the commands.
func TestVersionHelpCompletion(t *testing.T) {
	e := newEnv(t)
	if out := e.ok("--version"); !strings.HasPrefix(out, "dhdfs version ") {
		t.Fatalf("--version: %q", out)
	}
	if out := e.ok("version"); !strings.HasPrefix(out, "dhdfs ") || !strings.Contains(out, "go1.") {
		t.Fatalf("version: %q", out)
	}
	for _, args := range [][]string{{"help", "ls"}, {"ls", "--help"}, {"help", "node", "add"}, {"node", "help", "add"}} {
		out := e.ok(args...)
		if !strings.Contains(out, "USAGE:") || !strings.Contains(out, "dhdfs ") {
			t.Fatalf("dhdfs %s: %q", strings.Join(args, " "), out)
		}
	}
	if out := e.ok("help", "node", "add"); !strings.Contains(out, "node add") {
		t.Fatalf("help node add: %q", out)
	}
	if out := e.ok(); !strings.Contains(out, "COMMANDS:") {
		t.Fatalf("dhdfs alone: %q", out)
	}
	if out := e.ok("--generate-bash-completion"); !strings.Contains(out, "mount") || !strings.Contains(out, "node") {
		t.Fatalf("completions: %q", out)
	}
	if out := e.ok("node", "--generate-bash-completion"); !strings.Contains(out, "add") || !strings.Contains(out, "replace") {
		t.Fatalf("node completions: %q", out)
	}
	for shell, check := range map[string][]string{"bash": {"bash", "-n"}, "zsh": {"zsh", "-n"}, "fish": {"fish", "--no-execute"}} {
		script := e.ok("completion", shell)
		if !strings.Contains(script, "dhdfs") {
			t.Fatalf("%s completion: %q", shell, script)
		}
		if _, err := exec.LookPath(check[0]); err != nil {
			continue // the script is checked where the shell is installed
		}
		f := filepath.Join(e.dir, "completion."+shell)
		if err := os.WriteFile(f, []byte(script), 0o644); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command(check[0], append(check[1:], f)...).CombinedOutput(); err != nil {
			t.Fatalf("%s completion does not parse: %v: %s", shell, err, out)
		}
	}
	// bash: the script, sourced, completes "dhdfs mo" to mount.
	if _, err := exec.LookPath("bash"); err == nil {
		script := e.ok("completion", "bash")
		prog := script + `
COMP_WORDS=(` + binary + ` mo); COMP_CWORD=1; _dhdfs_complete; echo "${COMPREPLY[@]}"`
		out, err := exec.Command("bash", "-c", prog).CombinedOutput()
		if err != nil || strings.TrimSpace(string(out)) != "mount" {
			t.Fatalf("bash completion of 'dhdfs mo': %q, %v", out, err)
		}
	}
}

// Flags may follow a command's arguments, as GNU tools allow; after "--"
// everything is an argument.
func TestFlagsAfterArguments(t *testing.T) {
	e := newEnv(t)
	e.ok("init")
	e.drives(1)
	e.ok("mkdir", "/a/b", "-p")
	e.ok("mkdir", "/c", "--home", filepath.Join(e.dir, "home"))
	if out := e.ok("ls", "/", "-l"); !strings.Contains(out, "drwx") || !strings.Contains(out, " a") || !strings.Contains(out, " c") {
		t.Fatalf("ls / -l: %q", out)
	}
	e.fails("rm -r removes it", "rm", "/a")
	e.ok("rm", "/a", "-r")
	if out := e.ok("ls", "/"); strings.Contains(out, "a") {
		t.Fatalf("/a left after rm /a -r: %q", out)
	}
	// After "--", "-r" is a name, not a flag.
	src := filepath.Join(e.dir, "src")
	randomFile(t, src, 100, 1)
	e.ok("put", src, "--", "/-r")
	if out := e.ok("ls", "--", "/"); !strings.Contains(out, "-r") {
		t.Fatalf("ls after put /-r: %q", out)
	}
	e.ok("rm", "--", "/-r")
}

// Off a terminal, long operations write lines that carry their unit, the
// data moved and its rate, and a closing line with the totals.
func TestProgressLines(t *testing.T) {
	for _, c := range []struct {
		pr   cluster.Progress
		want string
	}{
		{cluster.Progress{Op: "heal", Done: 3, Total: 40, Unit: cluster.UnitChunks, Bytes: 3 << 20}, "3 of 40 chunks, 3 MiB (1.5 MiB/s)"},
		{cluster.Progress{Op: "rebalance", Done: 1 << 20, Total: 4 << 20, Unit: cluster.UnitBytes, Bytes: 1 << 20}, "1 MiB of 4 MiB (0.5 MiB/s)"},
		{cluster.Progress{Op: "gc", Done: 1, Total: 3, Unit: cluster.UnitDrives}, "1 of 3 drives"},
	} {
		if got := progressLine(c.pr, 2*time.Second); got != c.want {
			t.Errorf("progressLine(%+v) = %q, want %q", c.pr, got, c.want)
		}
	}
	e := newEnv(t)
	e.poolWithFile(3, 3<<20, "/f")
	_, errs, code := e.run(nil, "node", "drain", "d1")
	if code != 0 {
		t.Fatalf("drain: exit %d: %s", code, errs)
	}
	last := strings.Split(strings.TrimSpace(errs), "\n")
	if !strings.HasPrefix(last[len(last)-1], "drain d1: finished, ") || !strings.Contains(errs, " chunks") {
		t.Fatalf("drain's progress lines: %q", errs)
	}
}

// Errors name the real cause: a mistyped home under mount --daemon is "no
// pool", not a log file that cannot be opened; a home of another user is
// "permission denied" on the home, not on the mount's socket.
func TestErrorsNameTheCause(t *testing.T) {
	e := newEnv(t)
	missing := filepath.Join(e.dir, "nosuch")
	e.fails("no pool here", "--home", missing, "mount", "--daemon", e.mountDir())
	e.fails("no pool here", "--home", missing, "status")
	if os.Geteuid() != 0 {
		t.Skip("running as another user needs root")
	}
	e.ok("init")
	home := filepath.Join(e.dir, "home")
	for _, d := range []string{filepath.Dir(e.dir), e.dir} { // t.TempDir's are 0700
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	bin := filepath.Join(e.dir, "dhdfs") // where nobody may run it
	data, err := os.ReadFile(binary)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"status"}, {"ls", "/"}, {"node", "list"}} {
		cmd := exec.Command(bin, append([]string{"--home", home}, args...)...)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		out, err := cmd.CombinedOutput()
		if err == nil || !strings.Contains(string(out), "pool home "+home+": permission denied") || strings.Contains(string(out), "socket") {
			t.Fatalf("dhdfs %s as nobody on root's home: %v: %s", strings.Join(args, " "), err, out)
		}
	}
}

// ls -l shows owners and groups by name as ls does (numbers with -n), and
// sizes in binary units with --human-readable.
func TestLsLong(t *testing.T) {
	e := newEnv(t)
	e.poolWithFile(1, 3<<20, "/f")
	uid := strconv.Itoa(os.Geteuid())
	name := uid
	if u, err := user.LookupId(uid); err == nil {
		name = u.Username
	}
	fields := func(args ...string) []string {
		t.Helper()
		return strings.Fields(e.ok(args...))
	}
	if f := fields("ls", "-l", "/"); len(f) < 7 || f[2] != name || f[4] != "3145728" {
		t.Fatalf("ls -l: %q, want owner %s and size 3145728", f, name)
	}
	if f := fields("ls", "-ln", "/"); len(f) < 7 || f[2] != uid {
		t.Fatalf("ls -ln: %q, want owner %s", f, uid)
	}
	// -h is --human-readable to ls, as to ls(1), alone or in a group.
	for _, args := range [][]string{{"-l", "--human-readable", "/"}, {"-lh", "/"}, {"/", "-hl"}, {"-l", "-h"}, {"-lnh"}} {
		if f := fields(append([]string{"ls"}, args...)...); len(f) < 8 || f[4] != "3" || f[5] != "MiB" {
			t.Fatalf("ls %s: %q, want 3 MiB", strings.Join(args, " "), f)
		}
	}
	if out := e.ok("ls", "--help"); !strings.Contains(out, "USAGE") {
		t.Fatalf("ls --help: %q", out)
	}
}

// stat --chunks marks the copies on drives that are not online.
func TestStatMarksOfflineCopies(t *testing.T) {
	e := newEnv(t)
	e.poolWithFile(2, 100, "/f")
	if out := e.ok("stat", "--chunks", "/f"); strings.Contains(out, "(") && strings.Contains(out, "offline") {
		t.Fatalf("stat with every drive online: %q", out)
	}
	e.ok("node", "offline", "d1")
	out := e.ok("stat", "--chunks", "/f")
	if !strings.Contains(out, "d1(offline)") || !strings.Contains(out, "1/2") {
		t.Fatalf("stat with d1 offline: %q", out)
	}
	if js := e.ok("stat", "--chunks", "--json", "/f"); !strings.Contains(js, `"offline"`) {
		t.Fatalf("stat --json with d1 offline: %q", js)
	}
	// status counts copies and bytes on the same drives.
	if out := e.ok("status"); !strings.Contains(out, "2 copies, 1 of them on online drives") {
		t.Fatalf("status with d1 offline: %q", out)
	}
}

// Sizes read as dd reads them: K, M, KiB, MiB... in powers of 1024, as
// dhdfs prints them; KB, MB... in powers of 1000.
func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{"512": 512, "4KiB": 4 << 10, "4k": 4 << 10, "4KB": 4000,
		"1MiB": 1 << 20, "1M": 1 << 20, "1MB": 1e6, "2GiB": 2 << 30, "2GB": 2e9, "1TiB": 1 << 40, " 8 MiB ": 8 << 20} {
		if got, err := parseSize(in); err != nil || got != want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "MiB", "-1", "1.5MiB", "1XB", "9999999999TiB"} {
		if got, err := parseSize(in); err == nil {
			t.Errorf("parseSize(%q) = %d, want an error", in, got)
		}
	}
}

// poolWithFile makes the env's pool with n drives and puts a file of size
// random bytes at pool path p.
func (e *env) poolWithFile(n, size int, p string) {
	e.t.Helper()
	e.ok("init")
	e.drives(n)
	src := filepath.Join(e.dir, "src")
	randomFile(e.t, src, size, uint64(size))
	e.ok("put", src, p)
}

// A drive's reserve is set at node add and changed with node set, also
// through a running mount; node list and status count it, and sizes too
// small to leave a store room to compact are usage errors.
func TestNodeReserve(t *testing.T) {
	e := newEnv(t)
	e.ok("init")
	disk := filepath.Join(e.dir, "disk1")
	if err := os.Mkdir(disk, 0o755); err != nil {
		t.Fatal(err)
	}
	e.usage([]string{"node", "add", "--reserve", "1MiB", disk}, "--reserve 1MiB: at least 16MiB")
	e.usage([]string{"node", "add", "--reserve", "lots", disk}, "--reserve lots")
	e.ok("node", "add", "--reserve", "100MiB", disk)
	reserves := func() map[string]int64 {
		var drives []cluster.DriveInfo
		if err := json.Unmarshal([]byte(e.ok("node", "list", "--json")), &drives); err != nil {
			t.Fatal(err)
		}
		out := map[string]int64{}
		for _, d := range drives {
			out[d.Name] = d.Reserve
		}
		return out
	}
	if r := reserves(); r["d1"] != 100<<20 {
		t.Fatalf("node add --reserve 100MiB: %v", r)
	}
	if list := e.ok("node", "list"); !strings.Contains(list, "RESERVE") || !strings.Contains(list, "100 MiB") {
		t.Fatalf("node list does not show the reserve:\n%s", list)
	}
	free := func() int64 {
		var st cluster.Status
		if err := json.Unmarshal([]byte(e.ok("status", "--json")), &st); err != nil {
			t.Fatal(err)
		}
		return st.RawFree
	}
	before := free()
	mnt := e.mountDaemon()
	if out := e.ok("node", "set", "d1", "--reserve", "1GiB"); !strings.Contains(out, "keeps 1 GiB free") {
		t.Fatalf("node set through the mount: %q", out)
	}
	e.ok("umount", mnt)
	if r := reserves(); r["d1"] != 1<<30 {
		t.Fatalf("after node set --reserve 1GiB and a restart: %v", r)
	}
	// Other processes write to the temp filesystem meanwhile: allow 100 MiB.
	if after := free(); after > before-(1<<30-100<<20)+100<<20 {
		t.Fatalf("raw free %d before, %d after raising the reserve by 924 MiB", before, after)
	}
	e.usage([]string{"node", "set", "d1"}, "nothing to change")
	e.usage([]string{"node", "set", "d1", "--reserve", "0"}, "at least 16MiB")
	e.fails("no such drive", "node", "set", "d9", "--reserve", "1GiB")
}

// Mistakes of the first hour get errors that name them: a mount point
// inside home, a local directory that does not exist for get.
func TestMistakesNamed(t *testing.T) {
	e := newEnv(t)
	e.poolWithFile(1, 100, "/f")
	inHome := filepath.Join(e.dir, "home", "mnt")
	if err := os.Mkdir(inHome, 0o755); err != nil {
		t.Fatal(err)
	}
	e.fails("inside the pool's home", "mount", "--daemon", inHome)
	missing := filepath.Join(e.dir, "nodir")
	e.fails(missing+": no such file or directory", "get", "/f", filepath.Join(missing, "x"))

	// A mount whose process was killed: mounting there again says how to
	// detach it, and dhdfs umount does.
	mnt := e.mountDaemon()
	pid := e.mountPid()
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 100 && pidAlive(pid); i++ {
		time.Sleep(20 * time.Millisecond)
	}
	e.fails("dhdfs umount "+mnt, "mount", "--daemon", mnt)
	e.ok("umount", mnt)
	e.mountDaemonAt(mnt)
	e.ok("umount", mnt)
}
