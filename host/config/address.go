package config

import (
	"fmt"
	"net"
	"strconv"
)

// LoopbackAddress checks that addr is host:port with a loopback host
// (127.0.0.0/8, ::1 or "localhost") and a port in 0…65535, as every TCP
// endpoint of the host must be: the control API and the metrics are not
// meant for the network. The error says what is wrong.
func LoopbackAddress(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%q is not host:port (%v); use e.g. 127.0.0.1:9102", addr, err)
	}
	if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
		return fmt.Errorf("%q: port %q is not a number from 0 to 65535", addr, port)
	}
	if host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("%q is not a loopback address: use 127.0.0.1:%s, [::1]:%s or localhost:%s", addr, port, port, port)
	}
	return nil
}
