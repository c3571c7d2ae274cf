package cluster

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"reflect"
	"testing"

	"github.com/dhdfs/dhdfs/nodes"
)

func TestRecordRoundTrips(t *testing.T) {
	in := Inode{Ino: 7, Mode: 0o100644, Uid: 1, Gid: 2, Nlink: 3, Size: 1 << 40, Atime: -5, Mtime: 6, Ctime: 7, Replicas: 3, Parent: 9, Target: "x/y",
		Rdev: 0x80103, Btime: 1 << 60, Stored: 5 << 30}
	out, err := decodeInode(7, in.encode())
	if err != nil || !reflect.DeepEqual(in, out) {
		t.Fatalf("inode: %+v, %v", out, err)
	}
	// A version 1 record (before Rdev, Btime and Stored) still decodes,
	// with its stored bytes unknown.
	v1 := in.encode()
	v1[0] = recordVersion
	v1 = v1[:len(v1)-len(binary.AppendUvarint(nil, uint64(in.Rdev)))-len(binary.AppendVarint(nil, in.Btime))-len(binary.AppendVarint(nil, in.Stored))]
	old, err := decodeInode(7, v1)
	want := in
	want.Rdev, want.Btime, want.Stored = 0, 0, -1
	if err != nil || !reflect.DeepEqual(old, want) {
		t.Fatalf("version 1 inode: %+v, %v", old, err)
	}
	e := dentry{Ino: 1 << 50, Type: 0o40000}
	if got, err := decodeDentry(e.encode()); err != nil || got != e {
		t.Fatalf("dentry: %+v, %v", got, err)
	}
	r := ChunkRef{ID: nodes.SumChunk([]byte("a")), Size: 12345}
	if got, err := decodeChunkRef(r.encode()); err != nil || got != r {
		t.Fatalf("chunk ref: %+v, %v", got, err)
	}
	c := chunkRecord{Size: 1 << 20, Refs: 9, Want: 2, Holders: []uint32{1, 4, 1 << 31}, Sums: blockSums(make([]byte, 1<<20))}
	if got, err := decodeChunkRecord(c.encode()); err != nil || !reflect.DeepEqual(got, c) {
		t.Fatalf("chunk record: %+v, %v", got, err)
	}
}

// Every truncation of a valid record, and some garbage, is rejected with an
// error rather than a panic or a wrong value.
func TestRecordDecodersRejectBadInput(t *testing.T) {
	valid := map[string][]byte{
		"inode":  (&Inode{Mode: 0o100644, Target: "abc"}).encode(),
		"dentry": dentry{Ino: 5, Type: 0o100000}.encode(),
		"ref":    ChunkRef{Size: 5}.encode(),
		"chunk":  (&chunkRecord{Size: 5, Refs: 1, Want: 2, Holders: []uint32{1, 2}}).encode(),
	}
	decode := map[string]func([]byte) error{
		"inode":  func(b []byte) error { _, err := decodeInode(1, b); return err },
		"dentry": func(b []byte) error { _, err := decodeDentry(b); return err },
		"ref":    func(b []byte) error { _, err := decodeChunkRef(b); return err },
		"chunk":  func(b []byte) error { _, err := decodeChunkRecord(b); return err },
	}
	for name, b := range valid {
		for i := 0; i < len(b); i++ {
			if err := decode[name](b[:i]); !errors.Is(err, errCorrupt) {
				t.Errorf("%s truncated to %d bytes: %v, want errCorrupt", name, i, err)
			}
		}
		if err := decode[name](append(b, 0)); !errors.Is(err, errCorrupt) {
			t.Errorf("%s with a trailing byte: %v", name, err)
		}
		bad := append([]byte{99}, b[1:]...)
		if err := decode[name](bad); !errors.Is(err, errCorrupt) {
			t.Errorf("%s with a wrong version: %v", name, err)
		}
	}
}

func FuzzDecoders(f *testing.F) {
	f.Add((&Inode{Mode: 0o100644, Target: "abc"}).encode())
	f.Add((&chunkRecord{Size: 5, Refs: 1, Want: 2, Holders: []uint32{1, 2}}).encode())
	f.Add(encodeSegment(binary.LittleEndian.AppendUint64(nil, 0)))
	f.Add(encodeSegment(binary.LittleEndian.AppendUint64(nil, 3)))
	f.Add([]byte(`{"format":1,"pool_id":"x","replicas":2,"chunk_size":1048576}`))
	f.Add(layers{{Ref: ChunkRef{ID: nodes.SumChunk([]byte("ab")), Size: 2}, Off: 1, At: 7, Len: 1, Unsynced: true}, {At: 3, Len: 9}}.encode())
	f.Fuzz(func(t *testing.T, b []byte) {
		if ls, err := decodeLayers(b); err == nil {
			// What decodes is a slot every operation can work on.
			ls.storedBytes()
			ls.settle()
			ls.cut(ls.length() / 2)
			if again, err := decodeLayers(ls.encode()); err != nil || !again.equal(ls) && len(ls) > 0 {
				t.Fatalf("%v re-encoded decodes as %v, %v", ls, again, err)
			}
		}
		decodeInode(1, b)
		decodeDentry(b)
		decodeChunkRef(b)
		decodeChunkRecord(b)
		decodeDriveRecord(b)
		_ = decodeSegment(b, func(metaBatch) error { return nil })
		// The JSON files: pool config, drive identity, mirror state.
		var cfg PoolConfig
		if json.Unmarshal(b, &cfg) == nil {
			_ = cfg.Validate()
		}
		var id nodes.Identity
		_ = json.Unmarshal(b, &id)
		var mr mirrorRecord
		_ = json.Unmarshal(b, &mr)
	})
}
