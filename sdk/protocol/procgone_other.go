//go:build !unix

package protocol

// processGone cannot tell on this platform; the parent-PID watch remains.
func processGone(int) bool { return false }
