package sdk

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"testing"
	"time"
)

// FuzzMailboxModel drives a mailbox with a random sequence of operations
// (sends with explicit, generated and colliding IDs, priorities, TTLs and
// lifecycle signals; receives; fetch/ack/nack; consumer release; clock
// steps; sweeps; replays; discards; close) and checks every result, the
// dead letters and the statistics against a simple reference model. The
// committed corpus in testdata/fuzz makes plain `go test` run it.
func FuzzMailboxModel(f *testing.F) {
	f.Add([]byte("\x00\x01\x02\x03\x00\x02\x01\x04\x02\x00\x03\x05\x06\x02\x02\x02"))
	f.Add([]byte("\x01\x00\x01\x01\x01\x02\x0c\x00\x03\x01\x05\x00\x03\x00\x05\x00\x03\x00\x05\x00\x07\x00\x08\x00"))
	f.Fuzz(func(t *testing.T, ops []byte) {
		if len(ops) > 4000 {
			ops = ops[:4000]
		}
		newModelRun(t).run(ops)
	})
}

// modelMsg is the model's view of one *Message.
type modelMsg struct {
	m         *Message
	ttl       int64
	deadline  int64
	attempts  int
	prio      int
	lifecycle bool
}

type modelFlight struct {
	mm       *modelMsg
	consumer string
	seq      int
}

type modelDead struct {
	id     string
	mm     *modelMsg
	reason string
	poison bool
}

type modelRun struct {
	t   *testing.T
	mb  *Mailbox
	fc  *mbClock
	cfg MailboxConfig

	// model state
	queue    [numPriorities][]*modelMsg
	inflight map[string]modelFlight
	dead     []modelDead
	closed   bool
	seq, dls int
	st       MailboxStats
	objs     map[*Message]*modelMsg

	generated []*Message // a few generated-ID messages, re-sent to provoke duplicates
	explicitN int
}

func newModelRun(t *testing.T) *modelRun {
	cfg := MailboxConfig{Capacity: 4, DeadLetterCapacity: 3, DefaultTTL: 3 * time.Second, MaxDeliveryAttempts: 3}
	mb, fc := newMbTest(t, cfg)
	r := &modelRun{t: t, mb: mb, fc: fc, cfg: cfg, inflight: map[string]modelFlight{}, objs: map[*Message]*modelMsg{}}
	for range 3 {
		r.generated = append(r.generated, Msg("gen").MustBuild())
	}
	return r
}

func (r *modelRun) obj(m *Message) *modelMsg {
	mm := r.objs[m]
	if mm == nil {
		mm = &modelMsg{m: m, ttl: int64(m.ttl), deadline: m.deadline.Load(), prio: m.priority.index(), lifecycle: m.signal.IsLifecycle()}
		r.objs[m] = mm
	}
	return mm
}

func (r *modelRun) now() int64 { return r.fc.now() }

func (r *modelRun) expired(mm *modelMsg) bool { return mm.deadline != 0 && r.now() >= mm.deadline }

func (r *modelRun) qlen() int {
	n := 0
	for _, q := range r.queue {
		n += len(q)
	}
	return n
}

func (r *modelRun) held(id string) bool {
	if _, ok := r.inflight[id]; ok {
		return true
	}
	for _, q := range r.queue {
		for _, mm := range q {
			if mm.m.id == id {
				return true
			}
		}
	}
	return false
}

func (r *modelRun) deadLetter(mm *modelMsg, reason string, poison bool) {
	r.dls++
	if len(r.dead) >= r.cfg.DeadLetterCapacity {
		r.dead = r.dead[1:]
		r.st.MessagesDropped++
	}
	r.dead = append(r.dead, modelDead{id: "dl-" + strconv.Itoa(r.dls), mm: mm, reason: reason, poison: poison})
	r.st.DeadLettered++
}

func (r *modelRun) sweep() {
	for p := range r.queue {
		keep := r.queue[p][:0]
		for _, mm := range r.queue[p] {
			if r.expired(mm) {
				r.st.MessagesExpired++
				r.deadLetter(mm, ReasonExpired, false)
			} else {
				keep = append(keep, mm)
			}
		}
		r.queue[p] = keep
	}
}

func (r *modelRun) push(mm *modelMsg, front bool) {
	if front {
		r.queue[mm.prio] = append([]*modelMsg{mm}, r.queue[mm.prio]...)
	} else {
		r.queue[mm.prio] = append(r.queue[mm.prio], mm)
	}
	if n := r.qlen(); n > r.st.PeakUsage {
		r.st.PeakUsage = n
	}
}

// send is the model of Mailbox.Send.
func (r *modelRun) send(m *Message) error {
	mm := r.obj(m)
	d := mm.deadline
	if d == 0 && r.cfg.DefaultTTL > 0 {
		d = r.now() + int64(r.cfg.DefaultTTL)
	} else if d != 0 && r.now() >= d {
		r.st.MessagesRejected++
		return ErrMessageExpired
	}
	if r.closed {
		r.st.MessagesRejected++
		return ErrInboxClosed
	}
	if r.qlen() >= r.cfg.Capacity && !mm.lifecycle {
		r.sweep()
		if r.qlen() >= r.cfg.Capacity {
			r.st.MessagesRejected++
			return ErrMailboxFull
		}
	}
	if r.held(m.id) {
		r.st.MessagesRejected++
		return ErrDuplicateMessage
	}
	mm.deadline = d
	r.push(mm, false)
	r.st.MessagesSent++
	return nil
}

// pop is the model of a receive: the next unexpired message, or nil.
func (r *modelRun) pop() *modelMsg {
	for p := range r.queue {
		for len(r.queue[p]) > 0 {
			mm := r.queue[p][0]
			r.queue[p] = r.queue[p][1:]
			if r.expired(mm) {
				r.st.MessagesExpired++
				r.deadLetter(mm, ReasonExpired, false)
				continue
			}
			mm.attempts++
			r.st.MessagesReceived++
			return mm
		}
	}
	return nil
}

func (r *modelRun) nack(f modelFlight, reason string) {
	mm := f.mm
	delete(r.inflight, mm.m.id)
	r.st.MessagesNacked++
	switch {
	case mm.attempts >= r.cfg.MaxDeliveryAttempts:
		r.st.PoisonMessages++
		r.deadLetter(mm, ReasonMaxAttempts, true)
	case r.expired(mm):
		r.st.MessagesExpired++
		r.deadLetter(mm, ReasonExpired, false)
	default:
		r.push(mm, true)
	}
}

func (r *modelRun) replay(id string) error {
	i := slices.IndexFunc(r.dead, func(d modelDead) bool { return d.id == id })
	if i < 0 {
		return ErrDeadLetterNotFound
	}
	e := r.dead[i]
	var err error
	switch {
	case e.poison:
		err = ErrPoisonMessage
	case r.closed:
		err = ErrInboxClosed
	case r.qlen() >= r.cfg.Capacity && !e.mm.lifecycle:
		r.sweep()
		if i = slices.IndexFunc(r.dead, func(d modelDead) bool { return d.id == id }); i < 0 {
			err = ErrDeadLetterNotFound
		}
	}
	if err == nil && r.qlen() >= r.cfg.Capacity && !e.mm.lifecycle {
		err = ErrMailboxFull
	}
	if err == nil && r.held(e.mm.m.id) {
		err = ErrDuplicateMessage
	}
	if err != nil {
		r.st.MessagesRejected++
		return err
	}
	r.dead = slices.Delete(r.dead, i, i+1)
	ttl := e.mm.ttl
	if ttl == 0 {
		ttl = int64(r.cfg.DefaultTTL)
	}
	e.mm.deadline = 0
	if ttl > 0 {
		e.mm.deadline = r.now() + ttl
	}
	e.mm.attempts = 0
	r.push(e.mm, false)
	r.st.DeadLettersReplayed++
	return nil
}

func (r *modelRun) check(op string, got, want error) {
	r.t.Helper()
	if (want == nil) != (got == nil) || (want != nil && !errors.Is(got, want)) {
		r.t.Fatalf("%s: got error %v, model says %v", op, got, want)
	}
}

func (r *modelRun) checkMsg(op string, got *Message, want *modelMsg) {
	r.t.Helper()
	if (want == nil) != (got == nil) || (want != nil && got != want.m) {
		r.t.Fatalf("%s: got message %v, model says %v", op, got, want)
	}
	if want != nil && got.Attempts() != want.attempts {
		r.t.Fatalf("%s: attempts %d, model %d", op, got.Attempts(), want.attempts)
	}
}

func (r *modelRun) run(ops []byte) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // fetches never block: they deliver or return ctx.Err()
	consumers := []string{"w1", "w2"}
	arg := func(i int) int {
		if i < len(ops) {
			return int(ops[i])
		}
		return 0
	}
	for i := 0; i < len(ops); i += 3 {
		a, b := arg(i+1), arg(i+2)
		var op string
		switch ops[i] % 14 {
		case 0, 1: // send a new message with an explicit ID from a small set
			r.explicitN++
			ttl := []time.Duration{0, 0, time.Second, 5 * time.Second}[a%4]
			sig := SignalNone
			if b&0x80 != 0 {
				sig = SignalShutdown
			}
			m, err := NewMessage("m"+strconv.Itoa(b%6), "", []byte(strconv.Itoa(r.explicitN)), sig, Priority(a/4%numPriorities-2), 0)
			if err != nil {
				r.t.Fatal(err)
			}
			r.fc.set(m, ttl)
			if ttl == 0 {
				m.deadline.Store(0)
			}
			op = fmt.Sprintf("Send(%s ttl %v %v)", m.id, ttl, sig)
			want := r.send(m)
			r.check(op, r.mb.Send(m), want)
		case 2: // re-send a generated message (same pointer: maybe a duplicate)
			m := r.generated[a%len(r.generated)]
			op = "Send(generated " + m.id + ")"
			want := r.send(m)
			r.check(op, r.mb.Send(m), want)
		case 3: // explicit message carrying a generated message's ID
			g := r.generated[a%len(r.generated)]
			m, _ := NewMessage(g.id, "", nil, SignalNone, PriorityNormal, 0)
			op = "Send(explicit " + m.id + ")"
			want := r.send(m)
			r.check(op, r.mb.Send(m), want)
		case 4, 5:
			op = "Receive"
			got, err := r.mb.Receive()
			want := r.pop()
			var wantErr error
			if want == nil {
				wantErr = ErrEmptyMailbox
				if r.closed {
					wantErr = ErrInboxClosed
				}
			}
			r.check(op, err, wantErr)
			r.checkMsg(op, got, want)
		case 6:
			c := consumers[a%2]
			op = "FetchAs(" + c + ")"
			got, err := r.mb.FetchAs(ctx, c)
			want := r.pop()
			var wantErr error
			if want == nil {
				wantErr = context.Canceled
				if r.closed {
					wantErr = ErrInboxClosed
				}
			} else {
				r.seq++
				r.inflight[want.m.id] = modelFlight{mm: want, consumer: c, seq: r.seq}
			}
			r.check(op, err, wantErr)
			r.checkMsg(op, got, want)
		case 7, 8: // ack or nack an ID (maybe not in flight)
			id := r.pickID(a)
			if ops[i]%14 == 7 {
				op = "Ack(" + id + ")"
				var want error = ErrNotInFlight
				if _, ok := r.inflight[id]; ok {
					delete(r.inflight, id)
					r.st.MessagesAcked++
					want = nil
				}
				r.check(op, r.mb.Ack(id), want)
			} else {
				op = "Nack(" + id + ")"
				var want error = ErrNotInFlight
				if f, ok := r.inflight[id]; ok {
					r.nack(f, "fuzz")
					want = nil
				}
				r.check(op, r.mb.Nack(id, "fuzz"), want)
			}
		case 9:
			c := consumers[a%2]
			op = "ReleaseConsumer(" + c + ")"
			var fs []modelFlight
			for _, f := range r.inflight {
				if f.consumer == c {
					fs = append(fs, f)
				}
			}
			slices.SortFunc(fs, func(x, y modelFlight) int { return y.seq - x.seq })
			for _, f := range fs {
				r.nack(f, "released")
			}
			if n := r.mb.ReleaseConsumer(c, "released"); n != len(fs) {
				r.t.Fatalf("%s = %d, model %d", op, n, len(fs))
			}
		case 10:
			op = fmt.Sprintf("advance %ds", a%3)
			r.fc.advance(time.Duration(a%3) * time.Second)
		case 11:
			op = "SweepExpired"
			before := r.st.MessagesExpired
			r.sweep()
			if n := r.mb.SweepExpired(); uint64(n) != r.st.MessagesExpired-before {
				r.t.Fatalf("SweepExpired = %d, model %d", n, r.st.MessagesExpired-before)
			}
		case 12:
			id := "dl-404"
			if len(r.dead) > 0 && a%4 != 0 {
				id = r.dead[a%len(r.dead)].id
			}
			if b%2 == 0 {
				op = "Replay(" + id + ")"
				want := r.replay(id)
				r.check(op, r.mb.Replay(id), want)
			} else {
				op = "Discard(" + id + ")"
				var want error = ErrDeadLetterNotFound
				if j := slices.IndexFunc(r.dead, func(d modelDead) bool { return d.id == id }); j >= 0 {
					r.dead = slices.Delete(r.dead, j, j+1)
					r.st.DeadLettersDiscarded++
					want = nil
				}
				r.check(op, r.mb.Discard(id), want)
			}
		case 13:
			if a%8 != 0 {
				continue
			}
			op = "Close"
			r.closed = true
			r.mb.Close()
		}
		r.compare(op)
	}
}

// pickID chooses an ID that may or may not be in flight.
func (r *modelRun) pickID(a int) string {
	ids := make([]string, 0, len(r.inflight)+1)
	for id := range r.inflight {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	ids = append(ids, "m"+strconv.Itoa(a%6))
	return ids[a%len(ids)]
}

// compare checks the mailbox's observable state against the model.
func (r *modelRun) compare(op string) {
	r.t.Helper()
	got := r.mb.Stats()
	want := r.st
	want.Len, want.InFlight, want.DeadLetters, want.Capacity = r.qlen(), len(r.inflight), len(r.dead), r.cfg.Capacity
	size := 0
	for _, q := range r.queue {
		for _, mm := range q {
			size += mm.m.Size()
		}
	}
	for _, f := range r.inflight {
		size += f.mm.m.Size()
	}
	want.TotalSizeBytes = size
	if got != want {
		r.t.Fatalf("after %s:\n stats %+v\n model %+v", op, got, want)
	}
	dls := r.mb.DeadLetters()
	if len(dls) != len(r.dead) {
		r.t.Fatalf("after %s: %d dead letters, model %d", op, len(dls), len(r.dead))
	}
	for i, d := range dls {
		w := r.dead[i]
		if d.ID != w.id || d.Message != w.mm.m || d.Reason != w.reason || d.Poison != w.poison {
			r.t.Fatalf("after %s: dead letter %d = %+v, model %+v", op, i, d, w)
		}
	}
	for _, mm := range r.objs {
		if mm.m.deadline.Load() != mm.deadline || mm.m.Attempts() != mm.attempts {
			r.t.Fatalf("after %s: message %s deadline %d attempts %d, model %d %d",
				op, mm.m.id, mm.m.deadline.Load(), mm.m.Attempts(), mm.deadline, mm.attempts)
		}
	}
}
