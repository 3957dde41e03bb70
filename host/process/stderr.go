package process

import (
	"bytes"
	"sync"
)

const (
	stderrLines   = 20  // lines kept for the exit reason
	stderrLineMax = 512 // bytes kept per line
)

// ring is an io.Writer that keeps the last stderrLines lines written to it.
// go-plugin writes each raw stderr line followed by "\n" to it.
type ring struct {
	mu    sync.Mutex
	lines []string
	next  int
	full  bool
	cur   []byte
}

func newRing() *ring { return &ring{lines: make([]string, stderrLines)} }

func (r *ring) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			r.appendCur(p)
			break
		}
		r.appendCur(p[:i])
		r.push(string(r.cur))
		r.cur = r.cur[:0]
		p = p[i+1:]
	}
	return n, nil
}

func (r *ring) appendCur(p []byte) {
	if room := stderrLineMax - len(r.cur); room > 0 {
		if len(p) > room {
			p = p[:room]
		}
		r.cur = append(r.cur, p...)
	}
}

func (r *ring) push(s string) {
	if s == "" {
		return
	}
	r.lines[r.next] = s
	r.next = (r.next + 1) % len(r.lines)
	if r.next == 0 {
		r.full = true
	}
}

// Lines returns the kept lines, oldest first.
func (r *ring) Lines() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	if r.full {
		out = append(out, r.lines[r.next:]...)
	}
	out = append(out, r.lines[:r.next]...)
	if len(r.cur) > 0 {
		out = append(out, string(r.cur))
	}
	return out
}
