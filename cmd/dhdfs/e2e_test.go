package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dhdfs/dhdfs/cluster"
)

// These tests run the built binary as a user would.

var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "dhdfs-bin")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "dhdfs")
	if out, err := exec.Command("go", "build", "-o", binary, ".").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

type env struct {
	t    *testing.T
	dir  string
	home string
}

func newEnv(t *testing.T) *env {
	return &env{t: t, dir: t.TempDir(), home: ""}
}

// run runs dhdfs with args and stdin, returning stdout, stderr and the exit
// code.
func (e *env) run(stdin io.Reader, args ...string) (string, string, int) {
	e.t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Env = append(os.Environ(), "DHDFS_HOME="+filepath.Join(e.dir, "home"))
	cmd.Stdin = stdin
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		e.t.Fatalf("run dhdfs %v: %v", args, err)
	}
	return out.String(), errb.String(), code
}

// ok runs dhdfs and fails the test unless it succeeds.
func (e *env) ok(args ...string) string {
	e.t.Helper()
	out, errs, code := e.run(nil, args...)
	if code != 0 {
		e.t.Fatalf("dhdfs %s: exit %d: %s", strings.Join(args, " "), code, errs)
	}
	return out
}

// fails runs dhdfs and checks it exits non-zero with one line naming want.
func (e *env) fails(want string, args ...string) {
	e.t.Helper()
	_, errs, code := e.run(nil, args...)
	if code == 0 {
		e.t.Fatalf("dhdfs %s succeeded, want failure", strings.Join(args, " "))
	}
	if !strings.Contains(errs, want) || strings.Count(strings.TrimSpace(errs), "\n") != 0 || strings.Contains(errs, "panic") {
		e.t.Fatalf("dhdfs %s: stderr %q, want one line containing %q", strings.Join(args, " "), errs, want)
	}
}

func (e *env) drives(n int) []string {
	var out []string
	for i := 1; i <= n; i++ {
		p := filepath.Join(e.dir, fmt.Sprintf("disk%d", i))
		if err := os.Mkdir(p, 0o755); err != nil {
			e.t.Fatal(err)
		}
		e.ok("node", "add", "--name", fmt.Sprintf("d%d", i), p)
		out = append(out, p)
	}
	return out
}

func randomFile(t *testing.T, path string, n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 7))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return b
}

func TestSeedScenarioCLI(t *testing.T) {
	e := newEnv(t)
	e.ok("init", "--chunk-size", "64KiB")
	e.drives(4)
	src := filepath.Join(e.dir, "local.bin")
	data := randomFile(t, src, 1<<20+12345, 1)
	e.ok("mkdir", "/docs")
	e.ok("put", src, "/docs/")

	var st struct {
		Chunks []struct {
			Drives []string `json:"drives"`
		} `json:"chunks"`
		Size int64 `json:"size"`
	}
	if err := json.Unmarshal([]byte(e.ok("stat", "--json", "--chunks", "/docs/local.bin")), &st); err != nil {
		t.Fatal(err)
	}
	if st.Size != int64(len(data)) || len(st.Chunks) != 17 {
		t.Fatalf("stat: size %d, %d chunks; want %d and 17", st.Size, len(st.Chunks), len(data))
	}
	first := st.Chunks[0].Drives[0]
	e.ok("node", "offline", first)
	if !strings.Contains(e.ok("node", "list"), first) {
		t.Fatal("node list does not show the drive")
	}
	dst := filepath.Join(e.dir, "copy.bin")
	e.ok("get", "/docs/local.bin", dst)
	got, _ := os.ReadFile(dst)
	if !bytes.Equal(got, data) {
		t.Fatal("file read with a drive offline differs")
	}
	out, _, _ := e.run(nil, "get", "/docs/local.bin", "-")
	if out != string(data) {
		t.Fatal("get to stdout differs")
	}

	var status struct {
		Drives          map[string]int `json:"drives"`
		Files           int            `json:"files"`
		Chunks          int            `json:"chunks"`
		UnderReplicated int            `json:"under_replicated_chunks"`
		Lost            int            `json:"lost_chunks"`
	}
	if err := json.Unmarshal([]byte(e.ok("status", "--json")), &status); err != nil {
		t.Fatal(err)
	}
	if status.Drives["online"] != 3 || status.Drives["offline"] != 1 || status.Files != 1 || status.Chunks != 17 ||
		status.UnderReplicated == 0 || status.Lost != 0 {
		t.Fatalf("status: %+v", status)
	}
	e.ok("node", "online", first)
	if err := json.Unmarshal([]byte(e.ok("status", "--json")), &status); err != nil {
		t.Fatal(err)
	}
	if status.UnderReplicated != 0 {
		t.Fatalf("under-replicated after the drive returned: %d", status.UnderReplicated)
	}
}

func TestStdinAndListing(t *testing.T) {
	e := newEnv(t)
	e.ok("init")
	e.drives(2)
	_, errs, code := e.run(strings.NewReader("hello from stdin\n"), "put", "-", "/hello.txt")
	if code != 0 {
		t.Fatal(errs)
	}
	if out, _, _ := e.run(nil, "get", "/hello.txt", "-"); out != "hello from stdin\n" {
		t.Fatalf("got %q", out)
	}
	e.ok("mkdir", "-p", "/a/b/c")
	if out := e.ok("ls", "/"); out != "a\nhello.txt\n" {
		t.Fatalf("ls / = %q", out)
	}
	if out := e.ok("ls", "-l", "/hello.txt"); !strings.Contains(out, "-rw-r--r--") || !strings.Contains(out, " 17 ") {
		t.Fatalf("ls -l = %q", out)
	}
	e.fails("directory not empty", "rm", "/a")
	e.ok("rm", "-r", "/a")
	e.ok("rm", "/hello.txt")
	if out := e.ok("ls"); out != "" {
		t.Fatalf("ls after rm = %q", out)
	}
	var drives []map[string]any
	if err := json.Unmarshal([]byte(e.ok("node", "list", "--json")), &drives); err != nil || len(drives) != 2 {
		t.Fatalf("node list --json: %v, %d drives", err, len(drives))
	}
}

func TestBadInput(t *testing.T) {
	e := newEnv(t)
	e.fails("no pool here", "ls")
	e.fails("no pool here", "node", "add", e.dir)
	e.ok("init")
	e.fails("a pool already exists", "init")
	disks := e.drives(1)
	file := filepath.Join(e.dir, "file")
	os.WriteFile(file, nil, 0o644)
	other := newEnv(t)
	other.ok("init")
	otherDisk := other.drives(1)[0]

	tests := []struct {
		name string
		args []string
		want string
	}{
		{"missing path", []string{"node", "add", filepath.Join(e.dir, "nope")}, "no such directory"},
		{"regular file", []string{"node", "add", file}, "not a directory"},
		{"path in pool", []string{"node", "add", disks[0]}, "already in the pool"},
		{"path inside home", []string{"node", "add", filepath.Join(e.dir, "home")}, "overlaps the pool's home"},
		{"other pool's drive", []string{"node", "add", otherDisk}, "belongs to another pool"},
		{"unknown drive", []string{"node", "offline", "nosuch"}, "no such drive"},
		{"get missing file", []string{"get", "/missing", filepath.Join(e.dir, "out")}, "no such file or directory"},
		{"relative pool path", []string{"ls", "docs"}, "must start with '/' (did you mean /docs?)"},
		{"bad chunk size", []string{"--home", filepath.Join(e.dir, "h2"), "init", "--chunk-size", "3MiB"}, "power of two"},
		{"unknown hash", []string{"--home", filepath.Join(e.dir, "h2"), "init", "--hash", "md5"}, "want blake3 or sha256"},
		{"too few args", []string{"put", "x"}, "expected SRC and DST"},
		{"put a directory", []string{"put", e.dir, "/x"}, "is a directory"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// The drives' contents, not their filesystems' free space, which
			// other tests change meanwhile.
			drives := func() string {
				var list []cluster.DriveInfo
				if err := json.Unmarshal([]byte(e.ok("node", "list", "--json")), &list); err != nil {
					t.Fatal(err)
				}
				var b strings.Builder
				for _, d := range list {
					fmt.Fprintf(&b, "%s %s %s %d %d\n", d.Name, d.Path, d.State, d.Chunks, d.Used)
				}
				return b.String()
			}
			before := drives()
			e.fails(tc.want, tc.args...)
			if after := drives(); after != before {
				t.Fatalf("a failed command changed the drives:\n%s\n%s", before, after)
			}
		})
	}
	if _, err := os.Stat(filepath.Join(e.dir, "out")); err == nil {
		t.Fatal("a failed get left a file behind")
	}
}

// A second process on the same pool gets a clear message naming the first.
func TestPoolInUse(t *testing.T) {
	e := newEnv(t)
	e.ok("init")
	e.drives(2)
	cmd := exec.Command(binary, "put", "-", "/slow")
	cmd.Env = append(os.Environ(), "DHDFS_HOME="+filepath.Join(e.dir, "home"))
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	defer stdin.Close()
	// The put holds the pool once it has written its pid.
	for i := 0; i < 500; i++ {
		b, _ := os.ReadFile(filepath.Join(e.dir, "home", "lock"))
		if strings.TrimSpace(string(b)) == fmt.Sprint(cmd.Process.Pid) {
			break
		}
		syscall.Nanosleep(&syscall.Timespec{Nsec: 10e6}, nil)
	}
	e.fails(fmt.Sprintf("pool is in use by pid %d", cmd.Process.Pid), "ls")
	stdin.Write([]byte("done"))
	stdin.Close()
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	if out, _, _ := e.run(nil, "get", "/slow", "-"); out != "done" {
		t.Fatalf("got %q", out)
	}
}

// put and get stream: memory stays bounded whatever the file's size.
func TestStreamingMemoryBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("writes 512 MiB")
	}
	e := newEnv(t)
	e.ok("init")
	e.drives(3)
	const size = 512 << 20
	gen := func() io.Reader { return io.LimitReader(newPRNGReader(3), size) }
	cmd := exec.Command(binary, "put", "-", "/big")
	cmd.Env = append(os.Environ(), "DHDFS_HOME="+filepath.Join(e.dir, "home"))
	cmd.Stdin = gen()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	putAnon := watchAnon(cmd.Process.Pid)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("put: %v", err)
	}

	get := exec.Command(binary, "get", "/big", "-")
	get.Env = cmd.Env
	out, err := get.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := get.Start(); err != nil {
		t.Fatal(err)
	}
	getAnon := watchAnon(get.Process.Pid)
	same, cerr := sameStream(out, gen())
	if err := get.Wait(); err != nil || cerr != nil || !same {
		t.Fatalf("get: %v %v, identical %v", err, cerr, same)
	}
	pa, ga := <-putAnon, <-getAnon
	t.Logf("peak anonymous memory for a %d MiB file: put %d MiB, get %d MiB", size>>20, pa>>20, ga>>20)
	// Buffering the file would need more than its size. (Badger maps its
	// value logs, so file-backed RSS grows with the data; it is page cache
	// the kernel reclaims, and not counted here.)
	const limit = 200 << 20
	if pa == 0 || ga == 0 || pa > limit || ga > limit {
		t.Fatalf("peak RssAnon put %d MiB, get %d MiB: want between 0 and %d MiB", pa>>20, ga>>20, limit>>20)
	}
}

// watchAnon samples the RssAnon of pid until it exits and then sends the
// peak, in bytes.
func watchAnon(pid int) <-chan int64 {
	ch := make(chan int64, 1)
	go func() {
		var peak int64
		for {
			b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
			if err != nil || strings.Contains(string(b), "State:\tZ") {
				break
			}
			for _, line := range strings.Split(string(b), "\n") {
				var kb int64
				if _, err := fmt.Sscanf(line, "RssAnon: %d kB", &kb); err == nil {
					peak = max(peak, kb<<10)
				}
			}
			time.Sleep(20 * time.Millisecond)
		}
		ch <- peak
	}()
	return ch
}

// prngReader is a fast deterministic stream of unique-looking bytes.
type prngReader struct{ r *rand.ChaCha8 }

func newPRNGReader(seed byte) *prngReader {
	var s [32]byte
	s[0] = seed
	return &prngReader{rand.NewChaCha8(s)}
}

func (p *prngReader) Read(b []byte) (int, error) { return p.r.Read(b) }

func sameStream(a, b io.Reader) (bool, error) {
	ba, bb := make([]byte, 1<<20), make([]byte, 1<<20)
	for {
		na, ea := io.ReadFull(a, ba)
		nb, _ := io.ReadFull(b, bb)
		if na != nb || !bytes.Equal(ba[:na], bb[:nb]) {
			return false, nil
		}
		if ea == io.EOF || ea == io.ErrUnexpectedEOF {
			return true, nil
		}
		if ea != nil {
			return false, ea
		}
	}
}
