// Command benchfiles times small-file work in a directory, for
// scripts/bench.sh: create N files of SIZE bytes (unique random content),
// stat them all (as ls -l does), read them, delete them, make N
// directories, or append SIZE unique random bytes to DIR/append.log N times
// with an fsync after each (as a log or a database journal does). It prints
// operations per second.
package main

import (
	"crypto/rand"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

func main() {
	n := flag.Int("n", 5000, "how many files or directories")
	size := flag.Int("size", 4096, "bytes per file")
	flag.Parse()
	if flag.NArg() != 2 {
		fmt.Fprintln(os.Stderr, "usage: benchfiles [-n N] [-size B] create|stat|read|delete|mkdir|append DIR")
		os.Exit(2)
	}
	op, dir := flag.Arg(0), flag.Arg(1)
	buf := make([]byte, *size)
	if op == "append" {
		appendSync(filepath.Join(dir, "append.log"), *n, buf)
		return
	}
	start := time.Now()
	for i := 0; i < *n; i++ {
		p := filepath.Join(dir, fmt.Sprintf("f%06d", i))
		var err error
		switch op {
		case "create":
			rand.Read(buf) // unique content: no deduplication
			err = os.WriteFile(p, buf, 0o644)
		case "stat":
			_, err = os.Lstat(p)
		case "read":
			_, err = os.ReadFile(p)
		case "delete":
			err = os.Remove(p)
		case "mkdir":
			err = os.Mkdir(filepath.Join(dir, fmt.Sprintf("d%06d", i)), 0o755)
		default:
			err = fmt.Errorf("unknown operation %q", op)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
	fmt.Printf("%.0f\n", float64(*n)/time.Since(start).Seconds())
}

// appendSync appends len(buf) fresh random bytes to path n times, syncing
// the file after each, and prints appends per second (open and close
// included).
func appendSync(path string, n int, buf []byte) {
	start := time.Now()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	for i := 0; err == nil && i < n; i++ {
		rand.Read(buf) // unique content: no deduplication
		if _, err = f.Write(buf); err == nil {
			err = f.Sync()
		}
	}
	if f != nil {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Printf("%.0f\n", float64(n)/time.Since(start).Seconds())
}
