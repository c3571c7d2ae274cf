// Command benchfiles times small-file work in a directory, for
// scripts/bench.sh: create N files of SIZE bytes (unique random content),
// stat them all (as ls -l does), read them, delete them, make N
// directories, or append SIZE unique random bytes to DIR/append.log N times
// with an fsync after each (as a log or a database journal does). It prints
// operations per second. "salt DIR" appends 16 random bytes to every regular
// file under DIR, so a tree copied once more holds content never seen before,
// and prints how many files and bytes DIR then holds.
package main

import (
	"crypto/rand"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

func main() {
	n := flag.Int("n", 5000, "how many files or directories")
	size := flag.Int("size", 4096, "bytes per file")
	flag.Parse()
	if flag.NArg() != 2 {
		fmt.Fprintln(os.Stderr, "usage: benchfiles [-n N] [-size B] create|stat|read|delete|mkdir|append|salt DIR")
		os.Exit(2)
	}
	op, dir := flag.Arg(0), flag.Arg(1)
	buf := make([]byte, *size)
	if op == "append" {
		appendSync(filepath.Join(dir, "append.log"), *n, buf)
		return
	}
	if op == "salt" {
		salt(dir)
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

// salt appends 16 random bytes to every regular file under dir and prints
// the number of regular files and their total size.
func salt(dir string) {
	var files, bytes int64
	tail := make([]byte, 16)
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		rand.Read(tail)
		f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			return err
		}
		_, err = f.Write(tail)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
		fi, err := os.Stat(p)
		if err != nil {
			return err
		}
		files++
		bytes += fi.Size()
		return nil
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println(files, bytes)
}
