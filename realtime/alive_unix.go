//go:build unix

package realtime

import (
	"errors"
	"net"
	"syscall"
)

// alive tells whether the client still holds a stream's connection: a
// non-blocking peek reads 0 bytes (end of stream) or fails once the
// client has closed it, and finds nothing to read (EAGAIN) while it is
// open. Nothing else reads the connection once the hub has it.
func alive(conn net.Conn) bool {
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return true
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return true
	}
	open := true
	_ = raw.Control(func(fd uintptr) {
		var b [1]byte
		n, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		switch {
		case err == nil && n == 0:
			open = false // the client closed it
		case err != nil && !errors.Is(err, syscall.EAGAIN) && !errors.Is(err, syscall.EINTR):
			open = false // reset, or otherwise broken
		}
	})
	return open
}
