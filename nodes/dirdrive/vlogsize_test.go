package dirdrive

import "testing"

func TestValueLogFileSize(t *testing.T) {
	for _, tc := range []struct{ total, want int64 }{
		{0, 16 << 20},
		{256 << 20, 16 << 20},
		{4 << 30, 64 << 20},
		{(4 << 30) + 12345, 64 << 20},
		{16 << 30, 256 << 20},
		{4 << 40, 256 << 20},
	} {
		if got := valueLogFileSize(tc.total); got != tc.want {
			t.Errorf("valueLogFileSize(%d) = %d, want %d", tc.total, got, tc.want)
		}
	}
}
