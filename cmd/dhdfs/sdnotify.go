package main

import (
	"fmt"
	"net"
	"os"
)

// sdNotify sends state to systemd's notification socket, as sd_notify(3)
// does, when systemd gave one ($NOTIFY_SOCKET; a name starting with '@'
// is in the abstract namespace). Without one it does nothing. A unit with
// Type=notify then counts the pool as started once it is mounted, not
// when the process starts, and shows STATUS in systemctl status.
func sdNotify(state string) error {
	path := os.Getenv("NOTIFY_SOCKET")
	if path == "" {
		return nil
	}
	if path[0] == '@' {
		path = "\x00" + path[1:]
	}
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return fmt.Errorf("notify systemd: %w", err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte(state)); err != nil {
		return fmt.Errorf("notify systemd: %w", err)
	}
	return nil
}
