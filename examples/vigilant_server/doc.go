// Package vigilantserver is the vigilant_server example: a TCP
// line-protocol server built as supervised Vigil workers (a server worker
// and a pool of handler workers reached by request/reply). The workers are
// the commands in ./server and ./handler, the app definition is
// config.hcl, the load generator is ./loadgen (command ./cmd/loadgen).
// This package holds only the end-to-end tests, which build the vigil
// binary and both plugins and run them as real processes; see README.md.
package vigilantserver
