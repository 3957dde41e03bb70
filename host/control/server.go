package control

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/vigil-run/vigil/host"
	cfgpkg "github.com/vigil-run/vigil/host/config"
	"github.com/vigil-run/vigil/host/process"
	"github.com/vigil-run/vigil/sdk"
)

// Server serves the control API of one host on a unix socket. Create it
// with [Listen]; stop it with [Server.Close]. Safe for concurrent use.
type Server struct {
	h      *host.Host
	path   string
	config string
	ln     net.Listener
	srv    *http.Server
	done   chan struct{}
	token  string // TCP: the bearer token every request must carry
	remove string // file removed by Close (the socket, or the token file)
	// stopping is closed by Close to end the event streams.
	stopping chan struct{}
	stopOnce sync.Once
}

// Listen creates the control socket at path (mode 0600) and serves h's
// control API on it in the background. config is the config file shown by
// status. A stale socket file (nobody listening) is replaced. It does not
// block. It returns an error wrapping [ErrHostRunning] when a live host
// already listens at path, or the listen error.
func Listen(path string, h *host.Host, config string) (*Server, error) {
	if _, err := os.Lstat(path); err == nil {
		c, err := net.DialTimeout("unix", path, time.Second)
		if err == nil {
			c.Close()
			return nil, fmt.Errorf("%w on control socket %s: stop it first, or give this one another socket with --control PATH", ErrHostRunning, path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("control socket %s: removing stale socket: %w", path, err)
		}
	}
	// The socket is created 0600 (umask 0177 for the one bind), so there is
	// no moment at which others could connect; the chmod below makes sure
	// of it whatever the umask did. Listen runs before any worker starts,
	// so no other file is being created meanwhile.
	old := syscall.Umask(0o177)
	ln, err := net.Listen("unix", path)
	syscall.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("control socket %s: %w", path, err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(true)
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("control socket %s: %w", path, err)
	}
	return serve(&Server{h: h, path: path, config: config, ln: ln, remove: path}), nil
}

// ListenTCP serves h's control API over HTTP on addr, for tools that
// cannot use a unix socket. addr must be a loopback host:port (see
// [config.LoopbackAddress]; port 0 picks one: see [Server.Path]). As the
// socket's mode 0600 restricts control to its owner, every request must
// carry "Authorization: Bearer TOKEN", where TOKEN is a random 256-bit
// value written to tokenPath (mode 0600, removed by Close; see
// [TokenPath]); a [Client] for "tcp://ADDR" reads it from there. It does
// not block. It returns the address error, an error writing the token, or
// the listen error.
func ListenTCP(addr, tokenPath string, h *host.Host, config string) (*Server, error) {
	if err := cfgpkg.LoopbackAddress(addr); err != nil {
		return nil, fmt.Errorf("control address: %w (the control API has no TLS: it serves loopback only)", err)
	}
	buf := make([]byte, 32)
	if _, err := rand.Read(buf); err != nil {
		return nil, err
	}
	token := hex.EncodeToString(buf)
	// A fresh file, never one planted in its place (O_EXCL, no symlink).
	if err := os.Remove(tokenPath); err != nil && !os.IsNotExist(err) {
		return nil, fmt.Errorf("control token file: %w", err)
	}
	f, err := os.OpenFile(tokenPath, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return nil, fmt.Errorf("control token file: %w", err)
	}
	_, err = f.WriteString(token + "\n")
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(tokenPath)
		return nil, fmt.Errorf("control token file: %w", err)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		os.Remove(tokenPath)
		return nil, fmt.Errorf("control address %s: %w", addr, err)
	}
	return serve(&Server{h: h, path: "tcp://" + ln.Addr().String(), config: config, ln: ln, token: token, remove: tokenPath}), nil
}

// serve routes the API and serves it on s.ln in the background.
func serve(s *Server) *Server {
	s.done, s.stopping = make(chan struct{}), make(chan struct{})
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/status", s.status)
	mux.HandleFunc("POST /v1/workers/{id}/{action}", s.action)
	mux.HandleFunc("GET /v1/workers/{id}/deadletters", s.deadLetters)
	mux.HandleFunc("POST /v1/workers/{id}/deadletters/{dl}/replay", s.replay)
	mux.HandleFunc("DELETE /v1/workers/{id}/deadletters/{dl}", s.discard)
	mux.HandleFunc("GET /v1/events", s.events)
	mux.HandleFunc("POST /v1/reload", s.reload)
	var handler http.Handler = mux
	if s.token != "" {
		want := []byte("Bearer " + s.token)
		handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), want) != 1 {
				writeErr(w, http.StatusUnauthorized, fmt.Errorf("%w: send \"Authorization: Bearer TOKEN\" with the token in the host's token file (%s)", ErrUnauthorized, s.remove))
				return
			}
			mux.ServeHTTP(w, r)
		})
	}
	s.srv = &http.Server{Handler: handler, ReadHeaderTimeout: 5 * time.Second}
	ln := s.ln
	go func() {
		defer close(s.done)
		_ = s.srv.Serve(ln)
	}()
	return s
}

// Path returns the socket path, or "tcp://HOST:PORT" for [ListenTCP].
func (s *Server) Path() string { return s.path }

// Close stops serving, waits up to 2 s for requests in progress, and
// removes the socket file. Event streams end at once. It blocks until the
// server goroutine ended.
func (s *Server) Close() error {
	s.stopOnce.Do(func() { close(s.stopping) })
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	err := s.srv.Shutdown(ctx)
	if err != nil {
		err = s.srv.Close()
	}
	<-s.done
	_ = os.Remove(s.remove)
	return err
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func writeErr(w http.ResponseWriter, code int, err error) {
	writeJSON(w, code, errorBody{Error: err.Error()})
}

// worker checks id names a worker; otherwise it answers 404 listing the
// known workers.
func (s *Server) worker(w http.ResponseWriter, id string) bool {
	if s.h.Worker(id) != nil {
		return true
	}
	writeErr(w, http.StatusNotFound, fmt.Errorf("%w: %q; known workers: %s", sdk.ErrWorkerNotFound, id, strings.Join(s.h.WorkerIDs(), ", ")))
	return false
}

// owner returns the supervisor that has id as a child.
func (s *Server) owner(id string) *sdk.Supervisor {
	for _, sup := range s.h.Supervisors() {
		if _, err := sup.FindChild(id); err == nil {
			return sup
		}
	}
	return nil
}

func (s *Server) status(w http.ResponseWriter, _ *http.Request) {
	st := Status{PID: os.Getpid(), Config: s.config}
	sups := map[string]*sdk.Supervisor{}
	for _, sup := range s.h.Supervisors() {
		sups[sup.Name()] = sup
	}
	root := s.h.Root()
	st.Nodes = append(st.Nodes, Node{Kind: KindSupervisor, ID: root.Name(), State: supState(root), Restarts: root.Stats().TotalRestarts})
	s.walk(&st, root, root.Name(), 1, sups)
	writeJSON(w, http.StatusOK, st)
}

func supState(sup *sdk.Supervisor) string {
	select {
	case <-sup.Done():
		return "stopped"
	default:
	}
	if sup.Stats().Uptime > 0 {
		return "running"
	}
	return "stopped"
}

func (s *Server) walk(st *Status, sup *sdk.Supervisor, path string, depth int, sups map[string]*sdk.Supervisor) {
	now := time.Now()
	for _, c := range sup.Stats().Children {
		n := Node{ID: c.ID, Supervisor: path, Depth: depth, State: c.State.String(), PID: c.PID, Restarts: c.Restarts}
		if c.LastError != nil {
			n.LastExit = c.LastError.Error()
		}
		if c.State == sdk.ChildRunning && !c.StartedAt.IsZero() {
			n.Uptime = Duration(now.Sub(c.StartedAt).Truncate(time.Millisecond))
		}
		pc := s.h.Worker(c.ID)
		if pc == nil {
			n.Kind = KindSupervisor
			n.PID = 0
			st.Nodes = append(st.Nodes, n)
			if nested := sups[c.ID]; nested != nil {
				s.walk(st, nested, path+"/"+c.ID, depth+1, sups)
			}
			continue
		}
		n.Kind = KindWorker
		if c.State != sdk.ChildRunning {
			n.PID = 0
		}
		if mb, ok := s.h.Mailbox(c.ID); ok {
			mb.SweepExpired() // nothing else may look at a stopped worker's queue
			ms := mb.Stats()
			n.Mailbox, n.InFlight, n.DeadLetters = ms.Len, ms.InFlight, ms.DeadLetters
		}
		if n.PID > 0 {
			n.RSSBytes = int64(process.RSS(n.PID))
		}
		n.Plugin = pc.Spec().Path
		if sum, err := process.Sum(n.Plugin); err == nil { // cached while the file is unchanged
			n.SHA256 = hex.EncodeToString(sum)
		}
		st.Nodes = append(st.Nodes, n)
	}
}

func (s *Server) action(w http.ResponseWriter, r *http.Request) {
	id, action := r.PathValue("id"), r.PathValue("action")
	switch action {
	case "send":
		s.send(w, r, id)
		return
	case "swap":
		if err := s.h.Swap(r.Context(), id); err != nil {
			code := http.StatusInternalServerError
			if errors.Is(err, sdk.ErrWorkerNotFound) {
				code = http.StatusNotFound
			}
			writeErr(w, code, fmt.Errorf("swap %s: %w", id, err))
			return
		}
		writeJSON(w, http.StatusOK, struct{}{})
		return
	}
	if !slices.Contains([]string{"start", "stop", "restart"}, action) {
		writeErr(w, http.StatusNotFound, fmt.Errorf("unknown action %q (start, stop, restart, send, swap)", action))
		return
	}
	if !s.worker(w, id) {
		return
	}
	sup := s.owner(id)
	if sup == nil {
		writeErr(w, http.StatusNotFound, fmt.Errorf("%w: %q has no supervisor", sdk.ErrWorkerNotFound, id))
		return
	}
	cs, _ := sup.FindChild(id)
	var err error
	switch action {
	case "stop":
		if cs.State == sdk.ChildStopped {
			writeErr(w, http.StatusConflict, fmt.Errorf("worker %q is already stopped", id))
			return
		}
		err = sup.TerminateChild(id)
	case "start":
		if cs.State == sdk.ChildRunning {
			writeErr(w, http.StatusConflict, fmt.Errorf("worker %q is already running (pid %d); use `vigil restart %s`", id, cs.PID, id))
			return
		}
		err = sup.RestartChild(id)
	case "restart":
		err = sup.RestartChild(id)
	}
	if err != nil {
		code := http.StatusInternalServerError
		if errors.Is(err, sdk.ErrNotStarted) {
			code = http.StatusConflict
		}
		writeErr(w, code, fmt.Errorf("%s %s: %w", action, id, err))
		return
	}
	writeJSON(w, http.StatusOK, struct{}{})
}

func (s *Server) send(w http.ResponseWriter, r *http.Request, id string) {
	if _, ok := s.h.Mailbox(id); !ok {
		names := s.h.MailboxNames()
		slices.Sort(names)
		writeErr(w, http.StatusNotFound, fmt.Errorf("%w: %q; known workers and pools: %s", sdk.ErrWorkerNotFound, id, strings.Join(names, ", ")))
		return
	}
	var req SendRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 64<<20)).Decode(&req); err != nil {
		writeErr(w, http.StatusBadRequest, fmt.Errorf("bad request: %w", err))
		return
	}
	b := sdk.Msg(req.Payload).From("vigil-cli").TTL(time.Duration(req.TTL))
	if req.Priority != "" {
		p, err := sdk.ParsePriority(req.Priority)
		if err != nil {
			writeErr(w, http.StatusBadRequest, err)
			return
		}
		b = b.Priority(p)
	}
	if req.ID != "" {
		b = b.ID(req.ID)
	}
	m, err := b.Build()
	if err != nil {
		writeErr(w, http.StatusBadRequest, err)
		return
	}
	if err := s.h.Send(r.Context(), id, m); err != nil {
		writeErr(w, http.StatusConflict, fmt.Errorf("send to %s: %w", id, err))
		return
	}
	writeJSON(w, http.StatusOK, SendResult{ID: m.ID()})
}

func (s *Server) mailbox(w http.ResponseWriter, id string) (*sdk.Mailbox, bool) {
	mb, ok := s.h.Mailbox(id)
	if !ok {
		names := s.h.MailboxNames()
		slices.Sort(names)
		writeErr(w, http.StatusNotFound, fmt.Errorf("%w: %q; known workers and pools: %s", sdk.ErrWorkerNotFound, id, strings.Join(names, ", ")))
	}
	return mb, ok
}

func (s *Server) deadLetters(w http.ResponseWriter, r *http.Request) {
	mb, ok := s.mailbox(w, r.PathValue("id"))
	if !ok {
		return
	}
	mb.SweepExpired() // list what has expired by now, even if nobody receives
	out := []DeadLetter{}
	for _, d := range mb.DeadLetters() {
		m := d.Message
		out = append(out, DeadLetter{ID: d.ID, MessageID: m.ID(), Sender: m.Sender(), Payload: m.PayloadString(),
			Priority: m.Priority().String(), Reason: d.Reason, Detail: d.Detail, Poison: d.Poison, Attempts: m.Attempts(), At: d.At})
	}
	writeJSON(w, http.StatusOK, out)
}

func dlCode(err error) int {
	switch {
	case errors.Is(err, sdk.ErrDeadLetterNotFound):
		return http.StatusNotFound
	case errors.Is(err, sdk.ErrPoisonMessage), errors.Is(err, sdk.ErrMailboxFull), errors.Is(err, sdk.ErrDuplicateMessage), errors.Is(err, sdk.ErrInboxClosed):
		return http.StatusConflict
	}
	return http.StatusInternalServerError
}

func (s *Server) replay(w http.ResponseWriter, r *http.Request) {
	mb, ok := s.mailbox(w, r.PathValue("id"))
	if !ok {
		return
	}
	if err := mb.Replay(r.PathValue("dl")); err != nil {
		writeErr(w, dlCode(err), err)
		return
	}
	writeJSON(w, http.StatusOK, struct{}{})
}

func (s *Server) discard(w http.ResponseWriter, r *http.Request) {
	mb, ok := s.mailbox(w, r.PathValue("id"))
	if !ok {
		return
	}
	if err := mb.Discard(r.PathValue("dl")); err != nil {
		writeErr(w, dlCode(err), err)
		return
	}
	writeJSON(w, http.StatusOK, struct{}{})
}

// eventBuffer is how many events a slow /v1/events reader may lag behind
// before events are dropped.
const eventBuffer = 256

// eventOf maps an sdk event to its JSON line.
func eventOf(e sdk.Event) Event {
	ev := Event{Time: e.Time, Kind: e.Kind.String(), Supervisor: e.Supervisor, Child: e.Child,
		PID: e.PID, Incarnation: e.Incarnation, Delay: Duration(e.Delay)}
	if e.Err != nil {
		ev.Error = e.Err.Error()
	}
	return ev
}

// events streams the host's lifecycle events as JSON lines until the
// client goes away, the host's Serve returns or the server closes. Lost
// events are reported as {"dropped": N} lines.
func (s *Server) events(w http.ResponseWriter, r *http.Request) {
	fl, ok := w.(http.Flusher)
	if !ok {
		writeErr(w, http.StatusInternalServerError, errors.New("streaming not supported"))
		return
	}
	sub := s.h.Subscribe(eventBuffer)
	defer sub.Close()
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	fl.Flush()
	enc := json.NewEncoder(w)
	dropped := func() error {
		if n := sub.TakeDropped(); n > 0 {
			return enc.Encode(Event{Dropped: n})
		}
		return nil
	}
	for {
		select {
		case <-r.Context().Done():
			return
		case <-s.stopping:
			_ = dropped()
			fl.Flush()
			return
		case e, ok := <-sub.Events():
			if err := dropped(); err != nil {
				return
			}
			if !ok {
				fl.Flush()
				return
			}
			if err := enc.Encode(eventOf(e)); err != nil {
				return
			}
			fl.Flush()
		}
	}
}

// isNoHost reports whether a dial error means nobody listens.
func isNoHost(err error) bool {
	return errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, os.ErrNotExist)
}

// reload re-reads the config file and applies it to the running host.
func (s *Server) reload(w http.ResponseWriter, r *http.Request) {
	app, err := cfgpkg.Load(s.config)
	if err != nil {
		var b strings.Builder
		_ = cfgpkg.Render(&b, err)
		writeErr(w, http.StatusBadRequest, fmt.Errorf("%s is not a valid app definition; nothing was changed:\n%s", s.config, strings.TrimRight(b.String(), "\n")))
		return
	}
	rep, err := s.h.Reload(r.Context(), app)
	switch {
	case rep == nil && errors.Is(err, host.ErrRestartRequired):
		writeErr(w, http.StatusConflict, err)
	case rep == nil:
		writeErr(w, http.StatusBadRequest, err)
	case err != nil:
		writeJSON(w, http.StatusOK, ReloadResult{Report: *rep, Error: err.Error()})
	default:
		writeJSON(w, http.StatusOK, ReloadResult{Report: *rep})
	}
}
