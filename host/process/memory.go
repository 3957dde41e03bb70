package process

import (
	"bytes"
	"os"
	"strconv"
	"sync"
	"time"
)

var pageSize = uint64(os.Getpagesize())

// RSS returns the resident set size, in bytes, of process pid, read from
// /proc/PID/statm (0 when pid ≤ 0, the process is gone or /proc cannot
// be read). It does not block beyond one small file read; safe for
// concurrent use. `vigil status` and the metrics show it per worker.
func RSS(pid int) uint64 {
	if pid <= 0 {
		return 0
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/statm")
	if err != nil {
		return 0
	}
	_, rest, _ := bytes.Cut(b, []byte(" "))
	pages, _, _ := bytes.Cut(rest, []byte(" "))
	n, err := strconv.ParseUint(string(pages), 10, 64)
	if err != nil {
		return 0
	}
	return n * pageSize
}

// groupRSS returns the summed resident set size, in bytes, of every process
// whose process group is pgid, read from /proc (0 if none is found).
// Every memory-limited worker asks about once a second; they share one
// scan of /proc at most every rssMaxAge instead of scanning once each.
func groupRSS(pgid int) uint64 {
	rssScan.Lock()
	defer rssScan.Unlock()
	if rssScan.by == nil || time.Since(rssScan.at) > rssMaxAge {
		rssScan.by, rssScan.at = scanGroupRSS(), time.Now()
	}
	return rssScan.by[pgid]
}

// rssMaxAge bounds how stale a shared /proc scan may be.
const rssMaxAge = 250 * time.Millisecond

var rssScan struct {
	sync.Mutex
	at time.Time
	by map[int]uint64 // process group → summed RSS in bytes
}

// scanGroupRSS sums the RSS of every process in /proc by process group.
// Processes that vanish during the scan are skipped.
func scanGroupRSS() map[int]uint64 {
	by := map[int]uint64{}
	d, err := os.Open("/proc")
	if err != nil {
		return by
	}
	defer d.Close()
	names, err := d.Readdirnames(-1)
	if err != nil {
		return by
	}
	for _, n := range names {
		if n == "" || n[0] < '0' || n[0] > '9' {
			continue
		}
		if pg, rss, ok := statPgrpRSS("/proc/" + n + "/stat"); ok {
			by[pg] += rss
		}
	}
	return by
}

// statPgrpRSS parses /proc/PID/stat: the process group (field 5) and the
// RSS in pages (field 24), returned in bytes.
func statPgrpRSS(path string) (pgrp int, rss uint64, ok bool) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, 0, false
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, 0, false
	}
	f := bytes.Fields(b[i+1:])
	// f[0] is field 3 (state); field k is f[k-3].
	if len(f) < 22 {
		return 0, 0, false
	}
	pg, err := strconv.Atoi(string(f[2]))
	if err != nil {
		return 0, 0, false
	}
	pages, err := strconv.ParseUint(string(f[21]), 10, 64)
	if err != nil {
		return 0, 0, false
	}
	return pg, pages * pageSize, true
}
