package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// readUncached reads path past every cache: the kernel's page cache is
// dropped for the file first, and the mount runs with no chunk cache, so
// each read reaches the drives.
func readUncached(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if err := unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED); err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	_, err = buf.ReadFrom(f)
	return buf.Bytes(), err
}

// The seed's "unplug" scenario, live: a reader reads a file through the
// mount in a loop while drives go offline and online through the CLI.
func TestLiveOfflineOnlineWhileReading(t *testing.T) {
	e := newEnv(t)
	e.ok("init", "--chunk-size", "64KiB")
	e.drives(4)
	mnt := e.mountDaemon("--cache-size", "0")
	src := filepath.Join(e.dir, "src")
	data := randomFile(t, src, 2<<20+333, 21)
	if err := os.WriteFile(filepath.Join(mnt, "f"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	var reads, failures atomic.Int64
	var firstErr atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			got, err := readUncached(filepath.Join(mnt, "f"))
			reads.Add(1)
			if err != nil || !bytes.Equal(got, data) {
				failures.Add(1)
				firstErr.CompareAndSwap(nil, fmt.Sprintf("read %d: %v, %d bytes", reads.Load(), err, len(got)))
			}
		}
	}()
	for round := 0; round < 3; round++ {
		for _, d := range []string{"d1", "d2", "d3", "d4"} {
			if out := e.ok("node", "offline", d); !strings.Contains(out, "is offline") {
				t.Fatalf("node offline: %q", out)
			}
			time.Sleep(30 * time.Millisecond)
			e.ok("node", "online", d)
		}
	}
	close(stop)
	wg.Wait()
	if reads.Load() < 5 || failures.Load() != 0 {
		t.Fatalf("%d reads, %d failed (first: %v)", reads.Load(), failures.Load(), firstErr.Load())
	}
	t.Logf("%d uncached reads, all identical, while drives went offline and online 12 times", reads.Load())
	e.ok("umount", mnt)
}

func TestLiveAdmin(t *testing.T) {
	e := newEnv(t)
	e.ok("init", "--chunk-size", "64KiB")
	e.drives(3)
	src := filepath.Join(e.dir, "src")
	data := randomFile(t, src, 1<<20, 22)
	e.ok("mkdir", "/docs")
	e.ok("put", src, "/docs/a")
	lsBefore := e.ok("ls", "-l", "/docs")
	statBefore := e.ok("stat", "--chunks", "/docs/a")

	mnt := e.mountDaemon("--probe-every", "100ms")
	// The same output through the mount as without it.
	if got := e.ok("ls", "-l", "/docs"); got != lsBefore {
		t.Fatalf("ls -l differs when mounted:\n%s\nvs\n%s", got, lsBefore)
	}
	if got := e.ok("stat", "--chunks", "/docs/a"); got != statBefore {
		t.Fatalf("stat differs when mounted:\n%s\nvs\n%s", got, statBefore)
	}
	// put, get and rm work live and the mount sees their effect.
	e.ok("put", src, "/docs/b")
	if got, err := os.ReadFile(filepath.Join(mnt, "docs/b")); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("file put through the CLI, read through the mount: %v", err)
	}
	os.WriteFile(filepath.Join(mnt, "docs/c"), []byte("via mount"), 0o644)
	if out, _, _ := e.run(nil, "get", "/docs/c", "-"); out != "via mount" {
		t.Fatalf("get of a file written through the mount: %q", out)
	}
	e.ok("rm", "/docs/b")
	if _, err := os.Stat(filepath.Join(mnt, "docs/b")); !os.IsNotExist(err) {
		t.Fatalf("removed through the CLI, still in the mount: %v", err)
	}

	// A drive added live takes new chunks at once.
	d4 := filepath.Join(e.dir, "disk4")
	os.Mkdir(d4, 0o755)
	e.ok("node", "add", "--name", "d4", d4)
	fresh := randomFile(t, filepath.Join(e.dir, "fresh"), 2<<20, 23)
	if err := os.WriteFile(filepath.Join(mnt, "fresh"), fresh, 0o644); err != nil {
		t.Fatal(err)
	}
	var drives []struct {
		Name   string `json:"name"`
		State  string `json:"state"`
		Chunks int    `json:"chunks"`
		Reason string `json:"reason"`
	}
	json.Unmarshal([]byte(e.ok("node", "list", "--json")), &drives)
	if len(drives) != 4 || drives[3].Name != "d4" || drives[3].Chunks == 0 {
		t.Fatalf("after a live add and a write: %+v", drives)
	}

	// status --json
	var st struct {
		Drives          map[string]int   `json:"drives"`
		Files           int              `json:"files"`
		Dirs            int              `json:"directories"`
		Chunks          int              `json:"chunks"`
		UnderReplicated int              `json:"under_replicated_chunks"`
		Lost            int              `json:"lost_chunks"`
		AtRisk          map[string]int64 `json:"files_at_risk_by_drive"`
		UsableFree      int64            `json:"usable_free_bytes"`
	}
	if err := json.Unmarshal([]byte(e.ok("status", "--json")), &st); err != nil {
		t.Fatal(err)
	}
	if st.Drives["online"] != 4 || st.Files != 3 || st.Dirs != 2 || st.Chunks != 16+32+1 ||
		st.UnderReplicated != 0 || st.Lost != 0 || len(st.AtRisk) != 4 || st.UsableFree <= 0 {
		t.Fatalf("status --json: %+v", st)
	}

	// A drive whose directory disappears is marked failed on its own...
	moved := d4 + ".gone"
	os.Rename(d4, moved)
	waitState := func(want string) {
		t.Helper()
		for i := 0; i < 100; i++ {
			json.Unmarshal([]byte(e.ok("node", "list", "--json")), &drives)
			if drives[3].State == want {
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
		t.Fatalf("d4 is %s (%s), want %s", drives[3].State, drives[3].Reason, want)
	}
	waitState("failed")
	if got, err := readUncached(filepath.Join(mnt, "fresh")); err != nil || !bytes.Equal(got, fresh) {
		t.Fatalf("read with d4 failed: %v", err)
	}
	if err := json.Unmarshal([]byte(e.ok("status", "--json")), &st); err != nil || st.Drives["failed"] != 1 {
		t.Fatalf("status with d4 failed: %+v %v", st, err)
	}
	// ...and comes back when its directory does.
	os.Rename(moved, d4)
	waitState("online")
	e.ok("umount", mnt)
}

func TestMetrics(t *testing.T) {
	e := newEnv(t)
	e.ok("init")
	e.drives(2)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	mnt := e.mountDaemon("--metrics", addr)
	os.WriteFile(filepath.Join(mnt, "f"), []byte("measured"), 0o644)
	if _, err := readUncached(filepath.Join(mnt, "f")); err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		`dhdfs_drive_bytes_total{direction="write",drive="d1"}`,
		`dhdfs_drive_op_seconds_bucket{drive="d2",op="put"`,
		`dhdfs_drive_state{drive="d1",state="online"} 1`,
		`dhdfs_fuse_ops_total{op="write",result="ok"}`,
		`dhdfs_fuse_op_seconds_count{op="lookup"}`,
		`dhdfs_chunks_under_replicated 0`,
		// At zero before the first error, for alerts and dashboards.
		`dhdfs_drive_errors_total{drive="d1",op="put"} 0`,
		`dhdfs_fuse_ops_total{op="read",result="EIO"} 0`,
		`dhdfs_drive_free_bytes{drive="d2"}`,
		`dhdfs_drive_used_bytes{drive="d1"}`,
		`dhdfs_drive_size_bytes{drive="d1"}`,
		`dhdfs_pool_avail_bytes`,
		`dhdfs_build_info{goversion="go`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	// Every metric the shipped dashboard and alert rules name exists.
	exposed := map[string]bool{}
	for _, line := range strings.Split(string(body), "\n") {
		if name, _, ok := strings.Cut(strings.TrimSpace(line), "{"); ok && !strings.HasPrefix(line, "#") {
			exposed[name] = true
		} else if f := strings.Fields(line); len(f) == 2 && !strings.HasPrefix(line, "#") {
			exposed[f[0]] = true
		}
	}
	metricName := regexp.MustCompile(`\bdhdfs_[a-z_]+\b`)
	for _, f := range []string{"../../docs/grafana/dhdfs.json", "../../docs/prometheus/dhdfs-alerts.yml"} {
		text := readFile(t, f)
		if strings.HasSuffix(f, ".json") {
			var dash map[string]any
			if err := json.Unmarshal([]byte(text), &dash); err != nil {
				t.Fatalf("%s: %v", f, err)
			}
		}
		names := metricName.FindAllString(text, -1)
		if len(names) < 5 {
			t.Fatalf("%s names %d metrics", f, len(names))
		}
		for _, n := range names {
			if !exposed[n] && n != "dhdfs_" {
				t.Errorf("%s names %s, which the mount does not export", f, n)
			}
		}
	}
	if promtool, err := exec.LookPath("promtool"); err == nil {
		if out, err := exec.Command(promtool, "check", "rules", "../../docs/prometheus/dhdfs-alerts.yml").CombinedOutput(); err != nil {
			t.Errorf("promtool check rules: %v: %s", err, out)
		}
	}
	e.ok("umount", mnt)
}
