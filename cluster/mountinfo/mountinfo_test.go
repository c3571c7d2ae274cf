package mountinfo

import (
	"os"
	"reflect"
	"testing"
)

const sample = `22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
25 22 0:21 / /proc rw,nosuid - proc proc rw
40 22 0:45 / /mnt/my\040pool rw,nosuid,nodev,relatime shared:30 - fuse.dhdfs dhdfs:/var/lib/dhdfs rw,user_id=0,group_id=0
41 40 0:46 / /mnt/my\040pool/inner rw - fuse.rawBridge loopback rw
42 22 0:47 / /mnt/my\040pool rw - fuse.dhdfs dhdfs:/other rw
garbage line
43 22 0:48 / /no-separator rw tmpfs tmpfs rw
44 22 nodev / /bad-device rw - tmpfs tmpfs rw
45 22 0:49 / /back\134slash rw - tmpfs tmpfs rw
`

func TestParse(t *testing.T) {
	got := Parse(sample)
	want := []Mount{
		{"254:0", "/", "ext4", []string{"rw", "relatime", "rw"}},
		{"0:21", "/proc", "proc", []string{"rw", "nosuid", "rw"}},
		{"0:45", "/mnt/my pool", "fuse.dhdfs", []string{"rw", "nosuid", "nodev", "relatime", "rw", "user_id=0", "group_id=0"}},
		{"0:46", "/mnt/my pool/inner", "fuse.rawBridge", []string{"rw", "rw"}},
		{"0:47", "/mnt/my pool", "fuse.dhdfs", []string{"rw", "rw"}},
		{"0:49", `/back\slash`, "tmpfs", []string{"rw", "rw"}},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d mounts %+v, want %d", len(got), got, len(want))
	}
	for i := range want {
		if !reflect.DeepEqual(got[i], want[i]) {
			t.Errorf("mount %d: got %+v, want %+v", i, got[i], want[i])
		}
	}
	if m, ok := At(got, "/mnt/my pool"); !ok || m.Device != "0:47" {
		t.Errorf("At: %+v, %v; want the later of two stacked mounts", m, ok)
	}
	if _, ok := At(got, "/mnt"); ok {
		t.Error("At found a mount where there is none")
	}
}

func TestInnermost(t *testing.T) {
	mounts := Parse(sample)
	for _, tc := range []struct {
		path, device string
		ok           bool
	}{
		{"/", "254:0", true},
		{"/home/user", "254:0", true},
		{"/proc/self", "0:21", true},
		{"/procfs", "254:0", true},     // a prefix of the name is not a parent
		{"/mnt/my pool", "0:47", true}, // the later mount over the same point wins
		{"/mnt/my pool/a/b", "0:47", true},
		{"/mnt/my pool/inner/x", "0:47", true}, // 0:46 is hidden by 0:47
		{"relative", "", false},
	} {
		m, ok := Innermost(mounts, tc.path)
		if ok != tc.ok || m.Device != tc.device {
			t.Errorf("Innermost(%q) = %+v, %v; want device %q, %v", tc.path, m, ok, tc.device, tc.ok)
		}
	}
}

func TestInnermostOverMountedParent(t *testing.T) {
	// A mount below another stays visible when nothing covers it later.
	mounts := Parse(`1 0 8:1 / / rw - ext4 /dev/sda rw
2 1 0:40 / /mnt rw - tmpfs tmpfs rw
3 2 0:41 / /mnt/pool rw - fuse.dhdfs dhdfs:/h rw
`)
	if m, ok := Innermost(mounts, "/mnt/pool/file"); !ok || m.Device != "0:41" {
		t.Fatalf("got %+v, %v; want 0:41", m, ok)
	}
}

func TestRead(t *testing.T) {
	if _, err := os.Stat("/proc/self/mountinfo"); err != nil {
		t.Skip("no /proc/self/mountinfo here")
	}
	mounts, err := Read()
	if err != nil {
		t.Fatal(err)
	}
	if m, ok := Innermost(mounts, "/"); !ok || m.MountPoint != "/" {
		t.Fatalf("the root mount is missing from %d mounts: %+v", len(mounts), m)
	}
}
