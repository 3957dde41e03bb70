package protocol

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	plugin "github.com/hashicorp/go-plugin"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/vigil-run/vigil/sdk/protocol/internal/pb"
)

// Direct replies. A worker→worker call crosses the host twice: the
// request goes caller → host → callee (it is queued in the callee's
// host-side mailbox), and the reply callee → host → caller. The reply needs
// no mailbox (it goes straight to the waiting call), so it may skip the
// host: a plugin that makes calls listens on a unix socket
// ([ListenReplies]) in the private socket directory go-plugin gave it, and
// announces the address once on its mailbox stream ([Up.ReplyAddr]). The
// host passes that address on with the requests of that incarnation
// ([Envelope.ReplyVia], which only the host sets), and the plugin that
// answers writes the reply there ([ReplyDialer]): one process
// hop less per round trip. Whatever fails (no address, a refused dial, a
// broken connection) falls back on the route through the host, which
// always works.
//
// On the socket, each frame is a varint length and a pb.Envelope.

// replySocketName is the socket's file name in the plugin's socket
// directory.
const replySocketName = "vigil-reply"

// ValidReplyAddr reports whether addr has the shape of a reply address a
// plugin of this SDK announces: an absolute, clean path (no "..", no NUL,
// which the kernel would cut the path at) to a file named as
// [ListenReplies] names it, short enough for a socket. The host passes on
// no other address (and checks more: see the host's bridge), and the
// answering plugin checks it again before dialling. It is a guard against
// mistakes, not against a hostile plugin, which runs with the host's user
// and can reach any socket that user can anyway.
func ValidReplyAddr(addr string) bool {
	return filepath.IsAbs(addr) && filepath.Clean(addr) == addr && !strings.ContainsRune(addr, 0) &&
		filepath.Base(addr) == replySocketName && len(addr) <= maxSocketPath
}

// maxSocketPath bounds a unix socket path (108 bytes with the NUL on
// Linux, 104 on the BSDs).
const maxSocketPath = 103

// replyWriteTimeout bounds one reply write: a caller that stopped reading
// for that long is treated as gone (the reply then goes through the host).
const replyWriteTimeout = time.Second

// replyDialTimeout bounds a dial of a caller's reply socket.
const replyDialTimeout = time.Second

// maxKeptBuffer bounds the frame buffer a reply connection keeps between
// frames (on either side); larger frames get a buffer of their own.
const maxKeptBuffer = 64 << 10

// ErrReplyAddr is returned by [ListenReplies] when no usable socket path
// exists (no writable socket directory, or a path too long).
var ErrReplyAddr = errors.New("vigil: no usable reply socket path")

// ReplyListener takes direct replies to this plugin's calls. Safe for
// concurrent use.
type ReplyListener struct {
	ln     net.Listener
	addr   string
	rmDir  string // a directory ListenReplies created, removed by Close
	handle func(*Envelope)

	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
	wg     sync.WaitGroup
}

// ListenReplies listens for direct replies on a unix socket in the socket
// directory go-plugin gave this plugin (a private directory the host
// removes when the incarnation ends), or, when the plugin runs without
// one, in a new private temporary directory that Close removes. It serves
// connections in the background: handle is called for each reply, from
// one goroutine per connection (so concurrently), and must not keep the
// envelope's slices beyond the call. It does not block; it returns an
// error wrapping [ErrReplyAddr] or the listener's error.
func ListenReplies(handle func(*Envelope)) (*ReplyListener, error) {
	dir, rmDir := os.Getenv(plugin.EnvUnixSocketDir), ""
	if dir == "" {
		d, err := os.MkdirTemp("", "vigil-r")
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrReplyAddr, err)
		}
		dir, rmDir = d, d
	}
	path := filepath.Join(dir, replySocketName)
	fail := func(err error) (*ReplyListener, error) {
		if rmDir != "" {
			_ = os.RemoveAll(rmDir)
		}
		return nil, err
	}
	if len(path) > maxSocketPath {
		return fail(fmt.Errorf("%w: %s is %d bytes long (max %d)", ErrReplyAddr, path, len(path), maxSocketPath))
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return fail(err)
	}
	l := &ReplyListener{ln: ln, addr: path, rmDir: rmDir, handle: handle, conns: map[net.Conn]struct{}{}}
	l.wg.Add(1)
	go l.accept()
	return l, nil
}

// Addr returns the address to announce in [Up.ReplyAddr].
func (l *ReplyListener) Addr() string { return l.addr }

func (l *ReplyListener) accept() {
	defer l.wg.Done()
	for {
		c, err := l.ln.Accept()
		if err != nil {
			// Closed, or failing (e.g. out of file descriptors): stop
			// listening for good, which also removes the socket file, so
			// that dials fail and repliers go through the host rather than
			// writing into a backlog nobody accepts.
			_ = l.ln.Close()
			return
		}
		l.mu.Lock()
		if l.closed {
			l.mu.Unlock()
			_ = c.Close()
			return
		}
		l.conns[c] = struct{}{}
		l.wg.Add(1)
		l.mu.Unlock()
		go l.serve(c)
	}
}

// serve reads the frames of one connection until it ends or a frame is
// malformed.
func (l *ReplyListener) serve(c net.Conn) {
	defer l.wg.Done()
	defer func() {
		l.mu.Lock()
		delete(l.conns, c)
		l.mu.Unlock()
		_ = c.Close()
	}()
	r := bufio.NewReader(c)
	small := make([]byte, 0, maxKeptBuffer)
	for {
		n, err := binary.ReadUvarint(r)
		if err != nil || n > MaxMessageSize {
			return
		}
		var buf []byte
		if n <= maxKeptBuffer {
			buf = small[:n]
			if _, err := io.ReadFull(r, buf); err != nil {
				return
			}
		} else {
			// A large frame: memory grows with the bytes that arrive, not
			// with the length claimed, and is not kept.
			if buf, err = io.ReadAll(io.LimitReader(r, int64(n))); err != nil || uint64(len(buf)) != n {
				return
			}
		}
		var p pb.Envelope
		if err := proto.Unmarshal(buf, &p); err != nil {
			return
		}
		e := envFromPB(&p)
		l.handle(&e)
	}
}

// Close stops listening, closes every connection, waits for their
// handlers to return and removes what ListenReplies created. Idempotent.
func (l *ReplyListener) Close() {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return
	}
	l.closed = true
	_ = l.ln.Close()
	for c := range l.conns {
		_ = c.Close()
	}
	l.mu.Unlock()
	l.wg.Wait()
	if l.rmDir != "" {
		_ = os.RemoveAll(l.rmDir)
	}
}

// ReplyDialer writes direct replies to callers' reply sockets, keeping one
// connection per address (dropped when the caller closes it, or on any
// error). Safe for concurrent use; the zero value is ready.
type ReplyDialer struct {
	mu     sync.Mutex
	conns  map[string]*replyConn
	closed bool
}

type replyConn struct {
	mu     sync.Mutex // one frame at a time
	c      net.Conn
	buf    []byte
	broken bool // a write failed, perhaps midway: no frame may follow
}

// errBrokenReplyConn is returned for a send on a connection whose last
// write failed.
var errBrokenReplyConn = errors.New("vigil: reply connection broken")

// Send writes e as one frame to the reply socket at addr, dialling it
// first if needed. It returns at once when the caller reads; otherwise it
// blocks for at most about two seconds (a dial and a write, each bounded).
// On error the reply was not delivered, or only partly, which the caller's
// listener discards (the connection is closed before any other frame can
// follow the partial one): send it through the host instead.
func (d *ReplyDialer) Send(addr string, e *Envelope) error {
	rc, err := d.conn(addr)
	if err != nil {
		return err
	}
	rc.mu.Lock()
	if rc.broken {
		rc.mu.Unlock()
		return errBrokenReplyConn
	}
	// The frame: a length, then the envelope, marshalled in place after
	// room for the longest length.
	var zeros [binary.MaxVarintLen64]byte
	const room = len(zeros)
	b, err := proto.MarshalOptions{}.MarshalAppend(append(rc.buf[:0], zeros[:]...), envToPB(e))
	if err != nil {
		rc.mu.Unlock()
		return err
	}
	n := len(b) - room
	start := room - protowire.SizeVarint(uint64(n))
	protowire.AppendVarint(b[start:start], uint64(n))
	_ = rc.c.SetWriteDeadline(time.Now().Add(replyWriteTimeout))
	_, err = rc.c.Write(b[start:])
	if err != nil {
		rc.broken = true
		_ = rc.c.Close() // before unlocking: nothing may follow a partial frame
	}
	rc.buf = b[:0]
	if cap(rc.buf) > maxKeptBuffer {
		rc.buf = nil // keep no large buffer per caller
	}
	rc.mu.Unlock()
	if err != nil {
		d.drop(addr, rc)
		return err
	}
	return nil
}

// conn returns the connection to addr, dialling it if there is none (not
// under d.mu: a slow dial holds up no send to another caller).
func (d *ReplyDialer) conn(addr string) (*replyConn, error) {
	d.mu.Lock()
	rc, ok := d.conns[addr]
	closed := d.closed
	d.mu.Unlock()
	switch {
	case closed:
		return nil, net.ErrClosed
	case ok:
		return rc, nil
	}
	c, err := net.DialTimeout("unix", addr, replyDialTimeout)
	if err != nil {
		return nil, err
	}
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		_ = c.Close()
		return nil, net.ErrClosed
	}
	if other, ok := d.conns[addr]; ok { // dialled meanwhile by another send
		d.mu.Unlock()
		_ = c.Close()
		return other, nil
	}
	rc = &replyConn{c: c}
	if d.conns == nil {
		d.conns = map[string]*replyConn{}
	}
	d.conns[addr] = rc
	d.mu.Unlock()
	// The caller never writes: a read returns when it closed the
	// connection (it exited), and the entry goes.
	go func() {
		_, _ = io.Copy(io.Discard, c)
		d.drop(addr, rc)
	}()
	return rc, nil
}

// drop forgets rc (if it is still addr's connection) and closes it.
func (d *ReplyDialer) drop(addr string, rc *replyConn) {
	d.mu.Lock()
	if d.conns[addr] == rc {
		delete(d.conns, addr)
	}
	d.mu.Unlock()
	_ = rc.c.Close()
}

// Close closes every connection; later Sends fail. Idempotent.
func (d *ReplyDialer) Close() {
	d.mu.Lock()
	d.closed = true
	conns := d.conns
	d.conns = nil
	d.mu.Unlock()
	for _, rc := range conns {
		_ = rc.c.Close()
	}
}
