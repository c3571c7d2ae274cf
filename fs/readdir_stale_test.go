package fs

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// A name renamed away while a listing is in progress must not come back
// as a dentry from a later READDIRPLUS reply.
func TestListingKeepsRenamedNamesGone(t *testing.T) {
	tm := mountPool(t, 1, 1<<20)
	dir := tm.path("d")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 300; i++ {
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("a%03d", i)), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	f, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Readdirnames(5); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(dir, "a100"), filepath.Join(dir, "zzz")); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "a100")); err == nil {
		t.Fatal("a100 exists right after rename")
	}
	if _, err := f.Readdirnames(-1); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(filepath.Join(dir, "a100")); err == nil {
		t.Fatalf("a100 exists again after the listing went past it (%v)", st.Sys())
	}
}

// A write through a name replaced (rename over it) while a listing is in
// progress must reach the file that has the name now.
func TestListingDoesNotRedirectWrites(t *testing.T) {
	tm := mountPool(t, 1, 1<<20)
	dir := tm.path("d")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 300; i++ {
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("a%03d", i)), []byte("old"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "new"), []byte("new"), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Readdirnames(5); err != nil {
		t.Fatal(err)
	}
	// Someone (a reader, tail -f) has a100 open while an atomic save
	// replaces it with a new version.
	keep, err := os.Open(filepath.Join(dir, "a100"))
	if err != nil {
		t.Fatal(err)
	}
	defer keep.Close()
	if err := os.Rename(filepath.Join(dir, "new"), filepath.Join(dir, "a100")); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Readdirnames(-1); err != nil {
		t.Fatal(err)
	}
	// Append to a100 right after the listing.
	w, err := os.OpenFile(filepath.Join(dir, "a100"), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte("+appended")); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if _, err := tm.m.GetFile(t.Context(), "/d/a100", &b); err != nil {
		t.Fatal(err)
	}
	if b.String() != "new+appended" {
		t.Fatalf("a100 in the pool reads %q, want %q", b.String(), "new+appended")
	}
}
