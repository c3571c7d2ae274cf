package cluster

import (
	"slices"
	"testing"
	"time"

	"github.com/dhdfs/dhdfs/nodes"
)

type fakeDrive struct {
	device  uint64
	free    int64
	offline bool
}

func fakeManager(drives []fakeDrive) *Manager {
	m := &Manager{drives: map[uint32]*drive{}}
	for i, f := range drives {
		num := uint32(i + 1)
		d := &drive{num: num, rec: DriveRecord{Num: num, Name: "d" + string(rune('1'+i)), Device: f.device, Offline: f.offline},
			store: nodes.NewMemStore(1 << 40)}
		d.free.Store(f.free)
		d.freeStamp.Store(time.Now().Add(time.Hour).UnixNano()) // never re-measure
		m.drives[num] = d
	}
	return m
}

func nums(ds []*drive) []uint32 {
	out := make([]uint32, len(ds))
	for i, d := range ds {
		out[i] = d.num
	}
	slices.Sort(out)
	return out
}

func TestPickDrives(t *testing.T) {
	const G = 1 << 30
	tests := []struct {
		name   string
		drives []fakeDrive
		n      int
		skip   []uint32
		used   []uint32
		want   []uint32
	}{
		{"most free first", []fakeDrive{{1, 10 * G, false}, {2, 50 * G, false}, {3, 30 * G, false}}, 2, nil, nil, []uint32{2, 3}},
		// Drives on one device share its free space, however it was
		// measured: one of the first two, and the other device.
		{"distinct devices before free space", []fakeDrive{{1, 50 * G, false}, {1, 40 * G, false}, {2, 10 * G, false}}, 2, nil, nil, nil},
		{"one device: still distinct drives", []fakeDrive{{1, 3 * G, false}, {1, 2 * G, false}, {1, G, false}}, 2, nil, nil, nil},
		{"offline excluded", []fakeDrive{{1, 50 * G, true}, {2, 10 * G, false}, {3, 10 * G, false}}, 2, nil, nil, []uint32{2, 3}},
		{"skip excluded", []fakeDrive{{1, 50 * G, false}, {2, 10 * G, false}, {3, 10 * G, false}}, 2, []uint32{1}, nil, []uint32{2, 3}},
		{"full drive excluded", []fakeDrive{{1, 1 << 20, false}, {2, 10 * G, false}}, 2, nil, nil, []uint32{2}},
		{"fewer drives than copies", []fakeDrive{{1, G, false}}, 3, nil, nil, []uint32{1}},
		{"avoid devices of existing copies", []fakeDrive{{1, 50 * G, false}, {1, 40 * G, false}, {2, 10 * G, false}}, 1, []uint32{1}, []uint32{1}, []uint32{3}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := fakeManager(tc.drives)
			skip := map[uint32]bool{}
			for _, s := range tc.skip {
				skip[s] = true
			}
			got := nums(m.pickDrives(tc.n, 1<<20, skip, tc.used))
			switch tc.name {
			case "distinct devices before free space":
				if len(got) != 2 || got[1] != 3 || got[0] == 3 {
					t.Fatalf("picked %v, want drive 3 and one of 1, 2", got)
				}
			case "one device: still distinct drives":
				if len(got) != 2 || got[0] == got[1] {
					t.Fatalf("picked %v, want two distinct drives", got)
				}
			default:
				if !slices.Equal(got, tc.want) {
					t.Fatalf("picked %v, want %v", got, tc.want)
				}
			}
		})
	}
}

// On one shared filesystem, successive picks even out usage and pair each
// drive with every other.
func TestPickDrivesSpreads(t *testing.T) {
	m := fakeManager([]fakeDrive{{1, 1 << 40, false}, {1, 1 << 40, false}, {1, 1 << 40, false}, {1, 1 << 40, false}})
	count := map[uint32]int{}
	partners := map[uint32]map[uint32]bool{}
	for i := 0; i < 400; i++ {
		ds := m.pickDrives(2, 1<<20, map[uint32]bool{}, nil)
		for _, d := range ds {
			count[d.num]++
			for _, o := range ds {
				if o != d {
					if partners[d.num] == nil {
						partners[d.num] = map[uint32]bool{}
					}
					partners[d.num][o.num] = true
				}
			}
		}
	}
	for num, c := range count {
		if c < 200-17 || c > 200+17 {
			t.Fatalf("drive %d got %d of 800 copies, want 200±17: %v", num, c, count)
		}
		if len(partners[num]) != 3 {
			t.Fatalf("drive %d shared chunks with %d other drives, want all 3", num, len(partners[num]))
		}
	}
}
