package badgerkv

import (
	"context"
	"fmt"
	"math"
	"testing"

	badger "github.com/dgraph-io/badger/v4"

	"github.com/dhdfs/dhdfs/cluster/kv"
)

func put(t *testing.T, e *Engine, k, v string) {
	t.Helper()
	if err := e.Attempt(context.Background(), func(txn kv.Txn) error { return txn.Set([]byte(k), []byte(v)) }); err != nil {
		t.Fatal(err)
	}
}

func read(t *testing.T, e *Engine, k string) string {
	t.Helper()
	var v []byte
	if err := e.View(context.Background(), func(r kv.Reader) error {
		var err error
		v, err = r.Get([]byte(k))
		return err
	}); err != nil {
		t.Fatalf("get %s: %v", k, err)
	}
	return string(v)
}

// A store that Badger's own timestamps wrote (every pool's metadata before
// the engine handed them out) opens and carries on, and opens again in
// Badger's own mode afterwards.
func TestOpensStoreOfUnmanagedBadger(t *testing.T) {
	dir := t.TempDir()
	db, err := badger.Open(DefaultOptions(dir))
	if err != nil {
		t.Fatal(err)
	}
	for i := range 50 {
		if err := db.Update(func(txn *badger.Txn) error {
			return txn.Set([]byte("k"), []byte(fmt.Sprint(i)))
		}); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	e, err := Open(DefaultOptions(dir))
	if err != nil {
		t.Fatal(err)
	}
	if got := read(t, e, "k"); got != "49" {
		t.Fatalf("after reopening: k = %q, want 49", got)
	}
	put(t, e, "k", "50")
	if got := read(t, e, "k"); got != "50" {
		t.Fatalf("after a write: k = %q, want 50 (timestamps must continue past the store's)", got)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	db, err = badger.Open(DefaultOptions(dir))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.View(func(txn *badger.Txn) error {
		it, err := txn.Get([]byte("k"))
		if err != nil {
			return err
		}
		v, err := it.ValueCopy(nil)
		if string(v) != "50" {
			return fmt.Errorf("k = %q, want 50", v)
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
}

// Badger may drop replaced versions only below the oldest open view, and
// drops them once no view reads them.
func TestDiscardFollowsOpenViews(t *testing.T) {
	e, err := Open(DefaultOptions(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	put(t, e, "k", "old")
	inView := make(chan struct{})
	release := make(chan struct{})
	done := make(chan string)
	go func() {
		var v []byte
		_ = e.View(context.Background(), func(r kv.Reader) error {
			close(inView)
			<-release
			var err error
			v, err = r.Get([]byte("k"))
			return err
		})
		done <- string(v)
	}()
	<-inView
	at := e.committed.Load()
	for i := range 20 {
		put(t, e, "k", fmt.Sprint("new", i))
	}
	e.views.mu.Lock()
	set := e.views.set
	e.views.mu.Unlock()
	if set > at {
		t.Fatalf("discard timestamp %d passed an open view's %d", set, at)
	}
	// The versions the view reads survive a compaction of everything.
	if err := e.db.Flatten(1); err != nil {
		t.Fatal(err)
	}
	close(release)
	if got := <-done; got != "old" {
		t.Fatalf("the view read %q, want its snapshot's %q", got, "old")
	}
	put(t, e, "k", "last")
	e.views.mu.Lock()
	set = e.views.set
	e.views.mu.Unlock()
	if want := e.committed.Load(); set != want {
		t.Fatalf("with no view open the discard timestamp is %d, want the last commit's %d", set, want)
	}
}

// Old versions go when Badger compacts: the store does not keep every
// write of a key.
func TestReplacedVersionsAreDropped(t *testing.T) {
	dir := t.TempDir()
	// Two tables in level 0 are then enough for Flatten to compact.
	opts := DefaultOptions(dir).WithNumLevelZeroTables(1).WithNumLevelZeroTablesStall(3)
	e, err := Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 100 {
		put(t, e, "k", fmt.Sprint(i))
	}
	for _, k := range []string{"a", "b"} {
		if err := e.Close(); err != nil { // the memtable goes to a table
			t.Fatal(err)
		}
		if e, err = Open(opts); err != nil {
			t.Fatal(err)
		}
		put(t, e, k, "x")
	}
	defer e.Close()
	if err := e.db.Flatten(1); err != nil {
		t.Fatal(err)
	}
	versions := 0
	txn := e.db.NewTransactionAt(math.MaxUint64, false)
	defer txn.Discard()
	iopts := badger.DefaultIteratorOptions
	iopts.AllVersions = true
	it := txn.NewKeyIterator([]byte("k"), iopts)
	for it.Rewind(); it.Valid(); it.Next() {
		versions++
	}
	it.Close()
	if versions != 1 {
		t.Fatalf("%d versions of a key written 100 times kept after compaction, want 1", versions)
	}
	if got := read(t, e, "k"); got != "99" {
		t.Fatalf("k = %q, want 99", got)
	}
}
