package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func (e *env) statusJSON() (st struct {
	Drives          map[string]int `json:"drives"`
	Chunks          int            `json:"chunks"`
	Copies          int            `json:"copies"`
	UnderReplicated int            `json:"under_replicated_chunks"`
	Lost            int            `json:"lost_chunks"`
}) {
	e.t.Helper()
	if err := json.Unmarshal([]byte(e.ok("status", "--json")), &st); err != nil {
		e.t.Fatal(err)
	}
	return st
}

// Lose a drive for good under a mounted pool, remove it, heal, and then
// survive a second failure.
func TestLoseDriveRemoveHeal(t *testing.T) {
	e := newEnv(t)
	e.ok("init", "--chunk-size", "64KiB")
	disks := e.drives(4)
	mnt := e.mountDaemon("--probe-every", "100ms", "--heal-every", "1h")
	files := map[string][]byte{}
	for i := 0; i < 4; i++ {
		name := fmt.Sprintf("f%d", i)
		files[name] = randomFile(t, filepath.Join(e.dir, name), (i+1)*300000, uint64(30+i))
		if out, err := exec.Command("cp", filepath.Join(e.dir, name), filepath.Join(mnt, name)).CombinedOutput(); err != nil {
			t.Fatalf("cp: %v %s", err, out)
		}
	}
	os.RemoveAll(disks[0]) // d1's disk dies
	for i := 0; ; i++ {
		if strings.Contains(e.ok("node", "list"), "failed") {
			break
		}
		if i == 100 {
			t.Fatal("d1 never became failed")
		}
		time.Sleep(50 * time.Millisecond)
	}
	e.fails("drain it first", "node", "remove", "d1")
	out := e.ok("node", "remove", "--force", "d1")
	if !strings.Contains(out, "under-replicated") {
		t.Fatalf("node remove --force says %q", out)
	}
	if st := e.statusJSON(); st.UnderReplicated == 0 {
		t.Fatalf("nothing under-replicated after losing a drive: %+v", st)
	}
	out = e.ok("heal")
	if !strings.Contains(out, "copies made") {
		t.Fatalf("heal says %q", out)
	}
	if st := e.statusJSON(); st.UnderReplicated != 0 || st.Copies != 2*st.Chunks {
		t.Fatalf("after heal: %+v", st)
	}
	e.ok("node", "offline", "d2")
	for name, data := range files {
		got, err := readUncached(filepath.Join(mnt, name))
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("%s with d1 gone and d2 offline: %v", name, err)
		}
	}
	e.ok("umount", mnt)
}

func TestDrainRemoveRebalanceCLI(t *testing.T) {
	e := newEnv(t)
	e.ok("init", "--chunk-size", "64KiB")
	e.drives(3)
	for i := 0; i < 3; i++ {
		src := filepath.Join(e.dir, fmt.Sprint("src", i))
		randomFile(t, src, 500000, uint64(40+i))
		e.ok("put", src, fmt.Sprintf("/f%d", i))
	}
	_, stderr, code := e.run(nil, "node", "drain", "d2")
	if code != 0 || !strings.Contains(stderr, "drain d2:") {
		t.Fatalf("drain: exit %d, stderr %q (want progress lines when not on a terminal)", code, stderr)
	}
	if !strings.Contains(e.ok("node", "list"), "draining") {
		t.Fatal("node list does not show d2 draining")
	}
	e.ok("node", "remove", "d2")
	if st := e.statusJSON(); st.UnderReplicated != 0 || st.Drives["online"] != 2 {
		t.Fatalf("after drain and remove: %+v", st)
	}
	// A fresh drive, then rebalance: it takes its share.
	d4 := filepath.Join(e.dir, "disk4")
	os.Mkdir(d4, 0o755)
	e.ok("node", "add", "--name", "d4", d4)
	e.ok("rebalance")
	var drives []struct {
		Name   string `json:"name"`
		Chunks int    `json:"chunks"`
	}
	json.Unmarshal([]byte(e.ok("node", "list", "--json")), &drives)
	for _, d := range drives { // 48 copies over 3 drives: 16 each, give or take
		if d.Chunks < 13 || d.Chunks > 19 {
			t.Fatalf("after rebalance %s holds %d chunks: %+v", d.Name, d.Chunks, drives)
		}
	}
	for i := 0; i < 3; i++ {
		out, _, _ := e.run(nil, "get", fmt.Sprintf("/f%d", i), "-")
		want, _ := os.ReadFile(filepath.Join(e.dir, fmt.Sprint("src", i)))
		if out != string(want) {
			t.Fatalf("/f%d changed", i)
		}
	}
}

func TestScrubCLI(t *testing.T) {
	e := newEnv(t)
	e.ok("init", "--chunk-size", "64KiB")
	disks := e.drives(2)
	src := filepath.Join(e.dir, "src")
	data := randomFile(t, src, 65536, 50)
	e.ok("put", src, "/f")
	// Flip a byte of the chunk where it sits in d1's packs.
	matches, _ := filepath.Glob(filepath.Join(disks[0], "packs", "*.pack"))
	flipped := false
	for _, f := range matches {
		b, _ := os.ReadFile(f)
		if i := bytes.Index(b, data[1000:1064]); i >= 0 {
			b[i] ^= 0xff
			os.WriteFile(f, b, 0o644)
			flipped = true
		}
	}
	if !flipped {
		t.Fatal("chunk not found in d1's packs")
	}
	if out, _, _ := e.run(nil, "get", "/f", "-"); out != string(data) {
		t.Fatal("read with a corrupt copy returned wrong data")
	}
	out := e.ok("scrub")
	if !strings.Contains(out, "1 corrupt") || !strings.Contains(out, "1 repaired") {
		t.Fatalf("scrub says %q", out)
	}
	if out := e.ok("scrub"); !strings.Contains(out, "0 corrupt") {
		t.Fatalf("second scrub says %q", out)
	}
	if strings.Contains(e.ok("node", "list"), "never") {
		t.Fatal("node list shows a drive never verified after a scrub")
	}
}

func dirBytes(t *testing.T, dirs ...string) int64 {
	var total int64
	for _, d := range dirs {
		filepath.Walk(d, func(_ string, info os.FileInfo, err error) error {
			if err == nil && !info.IsDir() {
				total += info.Sys().(*syscall.Stat_t).Blocks * 512 // allocated, not apparent: value logs are sparse
			}
			return nil
		})
	}
	return total
}

// Write 1 GiB through the mount, delete it, gc: the drives shrink back.
func TestGCReclaimsGiB(t *testing.T) {
	if testing.Short() {
		t.Skip("writes 2 GiB")
	}
	e := newEnv(t)
	e.ok("init")
	disks := e.drives(2)
	mnt := e.mountDaemon()
	start := dirBytes(t, disks...)
	f, err := os.Create(filepath.Join(mnt, "big"))
	if err != nil {
		t.Fatal(err)
	}
	gen := newPRNGReader(9)
	buf := make([]byte, 1<<20)
	for i := 0; i < 1024; i++ {
		gen.Read(buf)
		if _, err := f.Write(buf); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	full := dirBytes(t, disks...)
	os.Remove(filepath.Join(mnt, "big"))
	// The kernel forgets the unlinked inode asynchronously; then its chunks go.
	for i := 0; e.statusJSON().Chunks != 0; i++ {
		if i == 600 {
			t.Fatal("the deleted file's chunks were never released")
		}
		time.Sleep(50 * time.Millisecond)
	}
	out := e.ok("gc")
	end := dirBytes(t, disks...)
	t.Logf("drives: %d MiB empty, %d MiB with 1 GiB ×2, %d MiB after rm and gc (%s)", start>>20, full>>20, end>>20, strings.TrimSpace(out))
	if end-start > 64<<20 {
		t.Fatalf("gc left %d MiB on the drives", (end-start)>>20)
	}
	e.ok("umount", mnt)
}

// The mount heals by itself once a drive has been away past --heal-after.
func TestBackgroundHeal(t *testing.T) {
	e := newEnv(t)
	e.ok("init", "--chunk-size", "64KiB")
	e.drives(3)
	mnt := e.mountDaemon("--heal-every", "200ms", "--heal-after", "1s")
	data := randomFile(t, filepath.Join(e.dir, "src"), 1<<20, 60)
	if err := os.WriteFile(filepath.Join(mnt, "f"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	e.ok("node", "offline", "d1")
	if st := e.statusJSON(); st.UnderReplicated == 0 {
		t.Fatalf("nothing under-replicated right after d1 went offline: %+v", st)
	}
	for i := 0; e.statusJSON().UnderReplicated != 0; i++ {
		if i == 100 {
			t.Fatalf("the mount never healed: %+v", e.statusJSON())
		}
		time.Sleep(100 * time.Millisecond)
	}
	e.ok("node", "offline", "d2") // a second failure, after healing: still readable
	if got, err := readUncached(filepath.Join(mnt, "f")); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read after healing and a second failure: %v", err)
	}
	e.ok("umount", mnt)
}
