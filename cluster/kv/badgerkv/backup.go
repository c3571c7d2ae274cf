package badgerkv

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/dgraph-io/badger/v4/pb"
	"google.golang.org/protobuf/proto"
)

// bitDelete is Badger's entry flag for a deletion (not exported), as its
// backups carry it.
const bitDelete = 1 << 0

// ReadBackup calls fn for each entry of a stream in the format of
// Badger's backups (DB.Backup; what dhdfs mirrored before its mirror
// became engine-neutral), in order: a key and its value, or a deletion.
// Every length is checked against the stream, which Badger's own loader
// trusts.
func ReadBackup(stream []byte, fn func(key, value []byte, deleted bool) error) error {
	for rest := stream; len(rest) > 0; {
		if len(rest) < 8 {
			return errors.New("backup ends inside a length")
		}
		n := binary.LittleEndian.Uint64(rest)
		if n > uint64(len(rest)-8) {
			return errors.New("backup entry overruns the stream")
		}
		var list pb.KVList
		if err := proto.Unmarshal(rest[8:8+n], &list); err != nil {
			return fmt.Errorf("backup entry: %w", err)
		}
		rest = rest[8+n:]
		for _, e := range list.Kv {
			if len(e.Key) == 0 {
				return errors.New("backup entry without a key")
			}
			del := len(e.Meta) > 0 && e.Meta[0]&bitDelete != 0
			if err := fn(e.Key, e.Value, del); err != nil {
				return err
			}
		}
	}
	return nil
}
