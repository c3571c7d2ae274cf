package cluster

import "golang.org/x/sys/unix"

func unixAccessRW(path string) error {
	return unix.Access(path, unix.R_OK|unix.W_OK|unix.X_OK)
}
