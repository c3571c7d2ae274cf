package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// --home names the pool wherever it is given: before the command name,
// after it, between `node` and its subcommand, and it beats $DHDFS_HOME
// (which the env sets to pool A). Given twice, the one nearest the
// command wins. No command may touch the pool it was not pointed at.
func TestHomeFlagPosition(t *testing.T) {
	e := newEnv(t) // $DHDFS_HOME is pool A
	a, b := filepath.Join(e.dir, "home"), filepath.Join(e.dir, "B")
	e.ok("init")
	e.drives(1)
	e.ok("--home", b, "init")
	diskB := filepath.Join(e.dir, "diskB")
	if err := os.Mkdir(diskB, 0o755); err != nil {
		t.Fatal(err)
	}
	e.ok("--home", b, "node", "add", "--name", "b1", diskB)
	src := filepath.Join(e.dir, "src")
	randomFile(t, src, 1000, 3)
	e.ok("put", src, "/f")    // into A
	e.ok("put", src, "/both") // into A
	e.ok("--home", b, "put", src, "/both")

	ls := func(home string) string {
		t.Helper()
		return e.ok("ls", "--home", home)
	}
	poolID := func(args ...string) string {
		t.Helper()
		var st struct {
			PoolID string `json:"pool_id"`
		}
		if err := json.Unmarshal([]byte(e.ok(args...)), &st); err != nil {
			t.Fatal(err)
		}
		return st.PoolID
	}
	idA, idB := poolID("status", "--json"), poolID("status", "--json", "--home", b)
	if idA == idB {
		t.Fatal("pools A and B have the same id")
	}

	// Before the command name, after it, and for a subcommand.
	for _, args := range [][]string{
		{"--home", b, "put", src, "/g1"},
		{"put", "--home", b, src, "/g2"},
		{"--home", b, "mkdir", "/d1"},
		{"mkdir", "--home", b, "/d2"},
		{"--home=" + b, "mkdir", "/d3"},
		{"--home", a, "mkdir", "--home", b, "/d4"}, // the nearest wins
		{"--home", b, "rm", "/both"},
	} {
		e.ok(args...)
	}
	if got, want := ls(a), "both\nf\n"; got != want {
		t.Fatalf("pool A holds %q, want %q: a command pointed at B changed A", got, want)
	}
	if got, want := ls(b), "d1\nd2\nd3\nd4\ng1\ng2\n"; got != want {
		t.Fatalf("pool B holds %q, want %q", got, want)
	}
	if got := e.ok("--home", b, "ls"); got != ls(b) {
		t.Fatalf("--home before ls lists %q", got)
	}
	if got := e.ok("--home", b, "ls", "--home", a); got != ls(a) {
		t.Fatalf("ls --home A after --home B lists %q, want A's", got)
	}
	for _, args := range [][]string{
		{"--home", b, "status", "--json"},
		{"status", "--home", b, "--json"},
		{"--home", a, "status", "--json", "--home", b},
	} {
		if id := poolID(args...); id != idB {
			t.Fatalf("dhdfs %s: pool %s, want B (%s)", strings.Join(args, " "), id, idB)
		}
	}
	if id := poolID("--home", b, "status", "--json", "--home", a); id != idA {
		t.Fatalf("status --home A after --home B: pool %s, want A", id)
	}

	// Subcommands: node list at every position.
	for _, args := range [][]string{
		{"--home", b, "node", "list"},
		{"node", "--home", b, "list"},
		{"node", "list", "--home", b},
		{"--home", a, "node", "--home", b, "list"},
	} {
		if out := e.ok(args...); !strings.Contains(out, "\nb1 ") || strings.Contains(out, "\nd1 ") {
			t.Fatalf("dhdfs %s listed %q, want B's drive b1 only", strings.Join(args, " "), out)
		}
	}
	// Names begin lines; drive ids are random hex, which may hold "b1".
	if out := e.ok("node", "--home", b, "list", "--home", a); !strings.Contains(out, "\nd1 ") || strings.Contains(out, "\nb1 ") {
		t.Fatalf("node --home B list --home A listed %q, want A's drive d1", out)
	}
	e.ok("node", "--home", b, "offline", "b1")
	if out := e.ok("--home", b, "node", "list"); !strings.Contains(out, "offline") {
		t.Fatalf("node offline through --home did not reach B: %q", out)
	}
	if out := e.ok("node", "list"); strings.Contains(out, "offline") {
		t.Fatalf("node offline for B changed A: %q", out)
	}

	// -v before or after the command name logs; without it, nothing.
	for _, args := range [][]string{
		{"-v", "ls"},
		{"ls", "-v"},
		{"--verbose", "node", "list"},
		{"node", "-v", "list"},
		{"node", "list", "--verbose"},
	} {
		if _, errs, code := e.run(nil, args...); code != 0 || !strings.Contains(errs, "level=DEBUG") {
			t.Fatalf("dhdfs %s: exit %d, stderr %q; want debug logs", strings.Join(args, " "), code, errs)
		}
	}
	if _, errs, _ := e.run(nil, "ls"); errs != "" {
		t.Fatalf("ls without -v logged %q", errs)
	}
	if _, errs, _ := e.run(nil, "-v", "ls", "--verbose=false"); errs != "" {
		t.Fatalf("-v ls --verbose=false logged %q (the nearest should win)", errs)
	}

	_, errs, code := e.run(nil, "--home", "", "ls")
	if code != 2 || !strings.Contains(errs, "--home needs a directory") {
		t.Fatalf("--home '': exit %d, %q", code, errs)
	}
}
