package main

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// sqlitePayload is the content of row seq: 1 to 1500 bytes, or now and
// then 2,000 to 9,000 (overflow pages), the same for every run.
func sqlitePayload(seq int) []byte {
	rng := rand.New(rand.NewPCG(uint64(seq), 0x5117e))
	n := 1 + rng.IntN(1500)
	if rng.IntN(10) == 0 {
		n = 2000 + rng.IntN(7000)
	}
	return randomBytes(rng, n)
}

// sqliteTxn is one transaction the writer sent: rows first to last of t.
type sqliteTxn struct{ id, first, last int }

// sqliteDB is what the test knows of one database across its rounds.
type sqliteDB struct {
	path    string
	wal     bool
	txns    []sqliteTxn // every transaction sent, by id - 1
	settled int         // transactions present after the last check
}

// sqliteRound is one sqlite3 shell on the mounted database, fed one
// transaction at a time until it fails (the mount was killed); acked is
// the id of the last transaction whose COMMIT returned.
type sqliteRound struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	acks   chan int
	first  chan struct{} // closed at the first acknowledgement
	stderr bytes.Buffer
	done   chan struct{}
	mu     sync.Mutex
	acked  int // last transaction whose COMMIT returned
	sent   int
	err    error
}

// sqliteSetup is what every connection runs first. Rollback journal mode
// uses synchronous=EXTRA: a transaction commits when its journal is
// unlinked, and only EXTRA makes SQLite fsync the directory after that
// (with FULL a crash may bring the journal back and roll the last
// commit back, as SQLite documents). WAL commits are fsynced with FULL.
// Checkpoints run every 50 pages so that some land between kills.
func sqliteSetup(wal bool) string {
	s := "PRAGMA busy_timeout=10000;\n"
	if wal {
		s += "PRAGMA journal_mode=WAL;\nPRAGMA synchronous=FULL;\nPRAGMA wal_autocheckpoint=50;\n"
	} else {
		s += "PRAGMA journal_mode=DELETE;\nPRAGMA synchronous=EXTRA;\n"
	}
	return s + `CREATE TABLE IF NOT EXISTS t(seq INTEGER PRIMARY KEY, txn INTEGER NOT NULL, data BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS t_txn ON t(txn);
CREATE TABLE IF NOT EXISTS txns(id INTEGER PRIMARY KEY, first INTEGER NOT NULL, last INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS churn(k INTEGER, v BLOB);
CREATE INDEX IF NOT EXISTS churn_k ON churn(k);
SELECT 'ready';
`
}

// txnSQL is the statements of transaction txn, then the line that
// acknowledges its COMMIT: with -bail the shell stops at the first error,
// so the acknowledgement prints only when COMMIT succeeded.
func (db *sqliteDB) txnSQL(rng *rand.Rand, txn sqliteTxn) string {
	var b strings.Builder
	b.WriteString("BEGIN;\n")
	for seq := txn.first; seq <= txn.last; seq++ {
		fmt.Fprintf(&b, "INSERT INTO t VALUES(%d, %d, X'%s');\n", seq, txn.id, hex.EncodeToString(sqlitePayload(seq)))
	}
	fmt.Fprintf(&b, "INSERT INTO txns VALUES(%d, %d, %d);\n", txn.id, txn.first, txn.last)
	// Churn: rows inserted, updated and deleted all over the file, so
	// that pages are freed and reused.
	for range 1 + rng.IntN(3) {
		fmt.Fprintf(&b, "INSERT INTO churn VALUES(%d, randomblob(%d));\n", rng.IntN(1000), rng.IntN(3000))
	}
	fmt.Fprintf(&b, "UPDATE churn SET v = randomblob(%d) WHERE k = %d;\n", rng.IntN(2000), rng.IntN(1000))
	if rng.IntN(2) == 0 {
		b.WriteString("DELETE FROM churn WHERE rowid IN (SELECT rowid FROM churn ORDER BY random() LIMIT 2);\n")
	}
	fmt.Fprintf(&b, "COMMIT;\nSELECT 'ack', %d;\n", txn.id)
	if rng.IntN(60) == 0 { // rewrites every page
		b.WriteString("VACUUM;\n")
	}
	return b.String()
}

func startSQLite(t *testing.T, db *sqliteDB) *sqliteRound {
	t.Helper()
	r := &sqliteRound{cmd: exec.Command("sqlite3", "-bail", "-batch", db.path), acks: make(chan int, 1),
		first: make(chan struct{}), done: make(chan struct{})}
	r.cmd.Stderr = &r.stderr
	var err error
	if r.stdin, err = r.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	stdout, err := r.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ready := make(chan struct{})
	go func() {
		defer close(r.acks)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			line := sc.Text()
			if line == "ready" {
				close(ready)
				continue
			}
			if id, ok := strings.CutPrefix(line, "ack|"); ok {
				n, err := strconv.Atoi(id)
				if err != nil {
					panic(line)
				}
				r.mu.Lock()
				if r.acked == 0 {
					close(r.first)
				}
				r.acked = n
				r.mu.Unlock()
				r.acks <- n
			}
		}
	}()
	if _, err := io.WriteString(r.stdin, sqliteSetup(db.wal)); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ready:
	case <-time.After(30 * time.Second):
		r.cmd.Process.Kill()
		r.cmd.Wait()
		t.Fatalf("sqlite3 did not set up the database: %s", r.stderr.String())
	}
	return r
}

// run sends transactions one at a time, each once the previous one was
// acknowledged, until the shell fails.
func (r *sqliteRound) run(db *sqliteDB, rng *rand.Rand) {
	defer close(r.done)
	defer r.stdin.Close()
	for {
		id := len(db.txns) + 1
		first := 1
		if len(db.txns) > 0 {
			first = db.txns[len(db.txns)-1].last + 1
		}
		txn := sqliteTxn{id: id, first: first, last: first + rng.IntN(4)}
		db.txns = append(db.txns, txn)
		r.mu.Lock()
		r.sent = id
		r.mu.Unlock()
		if _, err := io.WriteString(r.stdin, db.txnSQL(rng, txn)); err != nil {
			r.err = err
			return
		}
		n, ok := <-r.acks
		if !ok {
			r.err = errors.New("sqlite3 exited")
			return
		}
		if n != id {
			r.err = fmt.Errorf("acknowledged %d, want %d", n, id)
			return
		}
	}
}

// sqliteQuery runs one sqlite3 shell on the database and returns its
// output lines.
func sqliteQuery(t *testing.T, db string, sql string) []string {
	t.Helper()
	cmd := exec.Command("sqlite3", "-bail", "-batch", db)
	cmd.Stdin = strings.NewReader(sql)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("sqlite3 %q: %v: %s", sql, err, errb.String())
	}
	return strings.Split(strings.TrimRight(out.String(), "\n"), "\n")
}

// check opens the database after a kill: integrity_check says ok, every
// transaction acknowledged is there, whole, and nothing else but possibly
// the one in flight, and every row holds what was inserted.
func (db *sqliteDB) check(t *testing.T, round, acked, sent int) {
	t.Helper()
	if got := sqliteQuery(t, db.path, "PRAGMA integrity_check;"); len(got) != 1 || got[0] != "ok" {
		t.Fatalf("round %d: integrity_check after the kill:\n%s", round, strings.Join(got, "\n"))
	}
	mode := sqliteQuery(t, db.path, "PRAGMA journal_mode;")
	if want := map[bool]string{true: "wal", false: "delete"}[db.wal]; len(mode) != 1 || mode[0] != want {
		t.Fatalf("round %d: journal_mode %q, want %s", round, mode, want)
	}
	// The ledger: transactions 1 to n, each as sent.
	lines := sqliteQuery(t, db.path, "SELECT id, first, last FROM txns ORDER BY id;")
	if lines[0] == "" {
		lines = nil
	}
	n := len(lines)
	if n < acked || n > sent {
		t.Fatalf("round %d: %d transactions in the database; %d were acknowledged (COMMIT returned) and %d sent", round, n, acked, sent)
	}
	for i, line := range lines {
		want := db.txns[i]
		if line != fmt.Sprintf("%d|%d|%d", want.id, want.first, want.last) {
			t.Fatalf("round %d: ledger row %d is %q, want %d|%d|%d", round, i+1, line, want.id, want.first, want.last)
		}
	}
	// The rows: exactly those of transactions 1 to n, with their data.
	last := 0
	if n > 0 {
		last = db.txns[n-1].last
	}
	rows := sqliteQuery(t, db.path, "SELECT seq, txn, hex(data) FROM t ORDER BY seq;")
	if rows[0] == "" {
		rows = nil
	}
	if len(rows) != last {
		t.Fatalf("round %d: %d rows, want %d (rows 1 to %d of transactions 1 to %d)", round, len(rows), last, last, n)
	}
	txn := 0
	for i, row := range rows {
		seq := i + 1
		for db.txns[txn].last < seq {
			txn++
		}
		want := fmt.Sprintf("%d|%d|%s", seq, db.txns[txn].id, strings.ToUpper(hex.EncodeToString(sqlitePayload(seq))))
		if row != want {
			t.Fatalf("round %d: row %d differs from what transaction %d inserted: got %.80q…, want %.80q…", round, seq, db.txns[txn].id, row, want)
		}
	}
	// What the kill left is what the next round continues.
	db.txns = db.txns[:n]
	db.settled = n
}

// TestSQLiteCrash runs an SQLite database on the mount, in rollback
// journal (DELETE) and WAL mode, and kills the mount with SIGKILL in the
// middle of a stream of transactions, 5 times per mode
// (DHDFS_CRASH_SEEDS=N: N times). After each kill fsck finds no problem
// and no under-replicated chunk, PRAGMA integrity_check says ok, every
// transaction whose COMMIT returned is there, and the database holds
// exactly transactions 1 to n, whole, with the rows they inserted: n is
// at least the last acknowledged and at most the one in flight.
func TestSQLiteCrash(t *testing.T) {
	if _, err := exec.LookPath("sqlite3"); err != nil {
		t.Skip("sqlite3 is not installed (apt-get install sqlite3)")
	}
	rounds := crashRounds(5)
	for _, mode := range []string{"delete", "wal"} {
		t.Run(mode, func(t *testing.T) {
			e := newEnv(t)
			e.ok("init", "--chunk-size", "64KiB")
			e.drives(3)
			mnt := e.mountDir()
			db := &sqliteDB{path: filepath.Join(mnt, "db.sqlite"), wal: mode == "wal"}
			start := time.Now()
			for round := 1; round <= rounds; round++ {
				rng := rand.New(rand.NewPCG(uint64(round), 0x5117e))
				e.mountDaemon()
				pid := e.mountPid()
				before := len(db.txns)
				r := startSQLite(t, db)
				go r.run(db, rand.New(rand.NewPCG(uint64(round), 1))) // its own: rng is this goroutine's
				// Kill at a random moment once the workload runs.
				select {
				case <-r.first:
				case <-time.After(30 * time.Second):
				}
				time.Sleep(time.Duration(200+rng.IntN(1500)) * time.Millisecond)
				select {
				case <-r.done: // the shell must fail because of the kill, not before
					r.cmd.Wait()
					t.Fatalf("round %d: sqlite3 stopped before the kill: %v: %s", round, r.err, r.stderr.String())
				default:
				}
				killMount(t, pid, mnt)
				select {
				case <-r.done:
				case <-time.After(30 * time.Second):
					r.cmd.Process.Kill()
					<-r.done
				}
				r.cmd.Wait()
				r.mu.Lock()
				acked, sent := r.acked, r.sent
				r.mu.Unlock()
				if acked <= before {
					t.Fatalf("round %d: no transaction committed before the kill: %v, %s", round, r.err, r.stderr.String())
				}
				fsckClean(t, e, round)
				e.mountDaemon()
				db.check(t, round, acked, sent)
				e.ok("umount", mnt)
				t.Logf("round %d: killed after %d commits (%d acknowledged in all, %d in the database), sqlite3: %s",
					round, acked-before, acked, db.settled, strings.TrimSpace(r.stderr.String()))
			}
			t.Logf("%d rounds in %v", rounds, time.Since(start).Round(time.Millisecond))
		})
	}
}
