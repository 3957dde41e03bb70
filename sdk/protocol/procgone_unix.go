//go:build unix

package protocol

import (
	"errors"
	"syscall"
)

// processGone reports whether no process has the given PID.
func processGone(pid int) bool {
	return errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
}
