package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dhdfs/dhdfs/cluster/kv/etcdkv/etcdtest"
)

// A pool made with 'init --meta etcd://...' (a real 3-member etcd cluster
// on 127.0.0.1) mounts and serves files; the etcd leader stops in the
// middle of a workload of fsynced writes, and every write whose fsync
// returned reads back after a remount.
func TestMountOnEtcd(t *testing.T) {
	c := etcdtest.Start(t, 3)
	e := newEnv(t)
	url := c.URL("/dhdfs/e2e")
	e.ok("init", "--meta", url)
	e.fails("already holds data", "--home", filepath.Join(e.dir, "h2"), "init", "--meta", url)
	e.drives(3)
	mnt := e.mountDaemon()
	write := func(name string, n int) error {
		f, err := os.Create(filepath.Join(mnt, name))
		if err != nil {
			return err
		}
		defer f.Close()
		if _, err := f.Write(content(name, n)); err != nil {
			return err
		}
		return f.Sync()
	}
	var acked []string
	for i := 0; i < 60; i++ {
		if i == 30 {
			t.Logf("stopped etcd leader m%d", c.StopLeader(t))
		}
		name := fmt.Sprintf("f%02d", i)
		if err := write(name, 1000+i*7919); err != nil {
			t.Logf("write %s: %v", name, err)
			continue
		}
		acked = append(acked, name)
	}
	if len(acked) < 50 {
		t.Fatalf("only %d of 60 fsynced writes succeeded across an etcd leader change", len(acked))
	}
	e.ok("umount", mnt)
	if out := e.ok("status"); !strings.Contains(out, "healthy") {
		t.Fatalf("status after the leader change:\n%s", out)
	}
	mnt = e.mountDaemon()
	for _, name := range acked {
		i := 0
		fmt.Sscanf(name, "f%02d", &i)
		b, err := os.ReadFile(filepath.Join(mnt, name))
		if err != nil || string(b) != string(content(name, 1000+i*7919)) {
			t.Fatalf("%s, fsynced before the remount, reads back %d bytes: %v", name, len(b), err)
		}
	}
	e.ok("umount", mnt)
	if out := e.ok("fsck"); !strings.Contains(out, " 0 problems") {
		t.Fatalf("fsck:\n%s", out)
	}
}

// content is n bytes unique to name.
func content(name string, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = name[i%len(name)] ^ byte(i*131)
	}
	return b
}
