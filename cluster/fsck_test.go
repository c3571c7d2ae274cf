package cluster

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/dhdfs/dhdfs/cluster/kv"
	"github.com/dhdfs/dhdfs/nodes"
)

// Each case breaks a healthy pool in one way; fsck must name the problem,
// --repair must fix it (or say it cannot), and a second fsck must then be
// clean but for what cannot be repaired.
func TestFsck(t *testing.T) {
	type fixture struct {
		*testPool
		a, b   Inode // /a (2 chunks) and /d/b (1 chunk)
		dataA  []byte
		chunkA nodes.ChunkID // first chunk of /a
	}
	meta := func(f *fixture, fn func(txn kv.Txn) error) {
		f.t.Helper()
		if err := f.meta.update(fn); err != nil {
			f.t.Fatal(err)
		}
	}
	holders := func(f *fixture, id nodes.ChunkID) []uint32 {
		rec, _, err := f.chunkRecordOf(id)
		if err != nil {
			f.t.Fatal(err)
		}
		return rec.Holders
	}
	tests := []struct {
		name       string
		kind       string // "" for a healthy pool
		repairable bool
		brk        func(f *fixture)
		after      func(f *fixture) // checks after repair
	}{
		{name: "healthy", brk: func(*fixture) {}},
		{name: "dangling entry", kind: ProblemDanglingEntry, repairable: true, brk: func(f *fixture) {
			meta(f, func(txn kv.Txn) error {
				return set(txn, dentryKey(RootIno, "ghost"), dentry{Ino: 9999, Type: 0o100000}.encode())
			})
		}},
		{name: "link count", kind: ProblemNlink, repairable: true, brk: func(f *fixture) {
			meta(f, editInode(f.a.Ino, func(i *Inode) { i.Nlink = 5 }))
		}},
		{name: "directory link count", kind: ProblemNlink, repairable: true, brk: func(f *fixture) {
			meta(f, editInode(RootIno, func(i *Inode) { i.Nlink = 7 }))
		}},
		{name: "lost inode", kind: ProblemLostInode, repairable: true, brk: func(f *fixture) {
			meta(f, func(txn kv.Txn) error { return del(txn, dentryKey(RootIno, "a")) })
		}, after: func(f *fixture) {
			f.mustEqual(fmt.Sprintf("/%s/#%d", LostFound, f.a.Ino), f.dataA)
		}},
		{name: "reference count", kind: ProblemRefcount, repairable: true, brk: func(f *fixture) {
			meta(f, editChunk(f.chunkA, func(r *chunkRecord, _ kv.Txn) error { r.Refs += 3; return nil }))
		}},
		{name: "stray slot", kind: ProblemStraySlot, repairable: true, brk: func(f *fixture) {
			meta(f, func(txn kv.Txn) error {
				return set(txn, fileChunkKey(f.a.Ino, 100), ChunkRef{ID: f.chunkA, Size: MinChunkSize}.encode())
			})
		}},
		{name: "stored bytes", kind: ProblemStoredBytes, repairable: true, brk: func(f *fixture) {
			meta(f, editInode(f.a.Ino, func(i *Inode) { i.Stored += 12345 }))
		}, after: func(f *fixture) {
			if n, _ := f.GetAttr(f.a.Ino); n.Stored != int64(len(f.dataA)) {
				f.t.Fatalf("stored bytes after repair: %d, want %d", n.Stored, len(f.dataA))
			}
		}},
		{name: "bytes past the end", kind: ProblemPastEnd, repairable: true, brk: func(f *fixture) {
			meta(f, editInode(f.a.Ino, func(i *Inode) { i.Size -= 100 }))
		}, after: func(f *fixture) {
			size := int64(len(f.dataA))
			if _, err := f.SetAttr(context.Background(), f.a.Ino, SetAttrIn{Size: &size}); err != nil {
				f.t.Fatal(err)
			}
			want := append(f.dataA[:len(f.dataA)-100:len(f.dataA)-100], make([]byte, 100)...)
			f.mustEqual("/a", want)
		}},
		{name: "inode count", kind: ProblemInodeCount, repairable: true, brk: func(f *fixture) {
			meta(f, func(txn kv.Txn) error { return addCount(txn, inodeCountKey, 40) })
		}},
		{name: "stale pending delete", kind: ProblemStaleDelete, repairable: true, brk: func(f *fixture) {
			meta(f, func(txn kv.Txn) error { return queueDelete(txn, 77, f.chunkA) })
		}},
		{name: "holding index", kind: ProblemHoldingIndex, repairable: true, brk: func(f *fixture) {
			meta(f, func(txn kv.Txn) error { return del(txn, holdingKey(holders(f, f.chunkA)[0], f.chunkA)) })
		}},
		{name: "missing copy", kind: ProblemMissingCopy, repairable: true, brk: func(f *fixture) {
			num := holders(f, f.chunkA)[0]
			if err := f.driveByNum(num).usable().Delete(f.chunkA); err != nil {
				f.t.Fatal(err)
			}
		}, after: func(f *fixture) {
			f.mustEqual("/a", f.dataA) // from the other copy
			if len(holders(f, f.chunkA)) != 1 {
				f.t.Fatal("the missing copy is still recorded")
			}
		}},
		{name: "orphan copy", kind: ProblemOrphanCopy, repairable: true, brk: func(f *fixture) {
			data := randBytes(99, 1000)
			if err := f.driveList()[0].usable().Put(nodes.SumChunk(data), data); err != nil {
				f.t.Fatal(err)
			}
		}},
		{name: "lost chunk", kind: ProblemLostChunk, brk: func(f *fixture) {
			for _, num := range holders(f, f.chunkA) {
				if err := f.driveByNum(num).usable().Delete(f.chunkA); err != nil {
					f.t.Fatal(err)
				}
			}
		}},
		{name: "corrupt inode record", kind: ProblemBadRecord, repairable: true, brk: func(f *fixture) {
			meta(f, func(txn kv.Txn) error { return set(txn, inoKey(kInode, f.b.Ino), []byte{1, 0xff}) })
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := &fixture{testPool: newTestPool(t, 3, 2)}
			f.dataA = randBytes(1, 2*MinChunkSize)
			f.a = f.put("/a", f.dataA)
			if _, err := f.MkdirPath("/d", false, 0o755, Caller{}); err != nil {
				t.Fatal(err)
			}
			f.b = f.put("/d/b", randBytes(2, 100))
			ref, _, err := f.chunkAt(f.a.Ino, 0)
			if err != nil {
				t.Fatal(err)
			}
			f.chunkA = ref.ID
			tc.brk(f)
			ctx := context.Background()
			rep, err := f.Fsck(ctx, false, nil)
			if err != nil {
				t.Fatal(err)
			}
			kinds := problemKinds(rep)
			if tc.kind == "" {
				if len(rep.Problems) != 0 {
					t.Fatalf("healthy pool: %v", kinds)
				}
				return
			}
			if !strings.Contains(kinds, tc.kind) || rep.Unrepaired() == 0 {
				t.Fatalf("found %q, want %q", kinds, tc.kind)
			}
			if rep, err = f.Fsck(ctx, true, nil); err != nil {
				t.Fatal(err)
			}
			rep, err = f.Fsck(ctx, false, nil)
			if err != nil {
				t.Fatal(err)
			}
			if left := problemKinds(rep); tc.repairable && left != "" {
				t.Fatalf("after repair: %s", left)
			} else if !tc.repairable && !strings.Contains(left, tc.kind) {
				t.Fatalf("after repair: %q, want %q still reported", left, tc.kind)
			}
			if tc.after != nil {
				tc.after(f)
			}
			f.reopen() // and the repaired pool opens
		})
	}
}

func problemKinds(rep FsckReport) string {
	var kinds []string
	for _, p := range rep.Problems {
		kinds = append(kinds, p.Kind+": "+p.What)
	}
	return strings.Join(kinds, "; ")
}
