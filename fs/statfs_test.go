package fs

import (
	"syscall"
	"testing"
)

// df's Avail is the space new chunks can use: the drives' filesystem
// (shared by the three drives here, so counted once) less the 64 MiB
// placement keeps free on it, divided by the replication factor; its
// free blocks still count the reserve, as ext4's count its reserved
// blocks.
func TestStatfsAvailLeavesTheReserve(t *testing.T) {
	tm := mountPool(t, 3, cs)
	var st, under syscall.Statfs_t
	if err := syscall.Statfs(tm.mnt, &st); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Statfs(tm.mnt+"/..", &under); err != nil {
		t.Fatal(err)
	}
	const reserve, replicas = 64 << 20, 2
	bs := uint64(st.Bsize)
	if st.Bavail > st.Bfree || st.Bfree > st.Blocks {
		t.Fatalf("statfs blocks %d, free %d, avail %d", st.Blocks, st.Bfree, st.Bavail)
	}
	if gap := (st.Bfree - st.Bavail) * bs; gap < reserve/replicas-2*bs || gap > reserve/replicas+2*bs {
		t.Fatalf("free - avail = %d bytes, want the reserve over the replicas, %d", gap, reserve/replicas)
	}
	// Other processes share the filesystem under the temp directory, so
	// its free space moves a little between the two calls.
	limit := (under.Bavail*uint64(under.Bsize) - reserve) / replicas
	if got := st.Bavail * bs; got > limit+limit/100 {
		t.Fatalf("df avail %d, more than the free space less the reserve over the replicas, %d", got, limit)
	}
	sp := tm.m.Space()
	if got, want := st.Bavail*bs, uint64(sp.Avail/replicas); got > want+want/100 || got+want/100 < want {
		t.Fatalf("df avail %d, pool space %+v", got, sp)
	}
}
