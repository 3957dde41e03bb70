package sdk

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

// Benchmarks compare the mailbox with a buffered Go channel of the same
// capacity carrying the same *Message values, in the same run. Report the
// ratio mailbox/channel of ns/op (see README "Performance").
//
//   - SendRecv/*/built: every op builds a fresh message (priority cycling
//     through all five, TTL one minute, i.e. a clock read per build) and
//     passes it from producer(s) to one consumer. Building costs 1 alloc in
//     both variants; the mailbox itself adds none.
//   - SendRecv/*/prebuilt: the same with messages built before the timer
//     and recycled (see recycler), so the numbers are the transport alone:
//     0 allocs from the mailbox.
//   - PingPong: one message bounced between two goroutines through two
//     inboxes vs two channels: wake-up latency, 0 allocs.

const benchCap = 1000

var benchPayload = []byte("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef") // 64 bytes

func benchBuild(b *testing.B, i int) *Message {
	m, err := Msg(benchPayload).From("bench").Priority(Priority(i%numPriorities - 2)).TTL(time.Minute).Build()
	if err != nil {
		b.Fatal(err)
	}
	return m
}

// recycler hands out prebuilt messages in a cycle, touching none of them
// (so the producer side of both variants reads nothing from a message).
// The mailbox may still hold a message when its turn comes again (a low
// priority can wait long behind higher ones): its send then fails with
// ErrDuplicateMessage and replace swaps in a fresh message, which shows in
// allocs/op and counts in the mailbox's time.
type recycler struct {
	ms []*Message
	i  int
}

func newRecycler(b *testing.B, n int) *recycler {
	r := &recycler{ms: make([]*Message, n)}
	for i := range r.ms {
		r.ms[i] = benchBuild(b, i)
	}
	return r
}

func (r *recycler) next() *Message {
	m := r.ms[r.i]
	if r.i++; r.i == len(r.ms) {
		r.i = 0
	}
	return m
}

// replace swaps a fresh message in for the one next() returned last.
func (r *recycler) replace(b *testing.B) *Message {
	j := (r.i + len(r.ms) - 1) % len(r.ms)
	r.ms[j] = benchBuild(b, j)
	return r.ms[j]
}

// source is one producer's supply of messages: the i-th send's message,
// and a replacement for a message the mailbox still holds.
type source struct {
	next    func(i int) *Message
	replace func() *Message
}

func newSource(b *testing.B, prebuilt bool) source {
	if !prebuilt {
		return source{next: func(i int) *Message { return benchBuild(b, i) }}
	}
	r := newRecycler(b, 4*benchCap)
	return source{next: func(int) *Message { return r.next() }, replace: func() *Message { return r.replace(b) }}
}

// newSources returns one source per producer; build them before the
// timer starts.
func newSources(b *testing.B, producers int, prebuilt bool) []source {
	srcs := make([]source, producers)
	for p := range srcs {
		srcs[p] = newSource(b, prebuilt)
	}
	return srcs
}

// runProducers starts one goroutine per source, sharing total sends.
func runProducers(total int, srcs []source, send func(i int, src source)) *sync.WaitGroup {
	var wg sync.WaitGroup
	producers := len(srcs)
	for p, src := range srcs {
		n := total / producers
		if p == 0 {
			n += total % producers
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range n {
				send(i, src)
			}
		}()
	}
	return &wg
}

// sink keeps consumers honest: both variants read each message's payload.
var sink int

// The two transports under test, each as a send for runProducers and a
// receive.

func newBenchMailbox() *Mailbox {
	return NewMailbox(MailboxConfig{Capacity: benchCap, DefaultTTL: time.Minute})
}

func mailboxSend(b *testing.B, mb *Mailbox) func(i int, src source) {
	return func(i int, src source) {
		err := mb.SendContext(context.Background(), src.next(i))
		if err != nil && src.replace != nil && errors.Is(err, ErrDuplicateMessage) {
			err = mb.SendContext(context.Background(), src.replace())
		}
		if err != nil {
			b.Error(err)
		}
	}
}

func mailboxRecv(b *testing.B, mb *Mailbox) func() *Message {
	return func() *Message {
		m, err := mb.ReceiveContext(context.Background())
		if err != nil {
			b.Fatal(err)
		}
		return m
	}
}

func chanSend(ch chan *Message) func(i int, src source) {
	return func(i int, src source) { ch <- src.next(i) }
}

func chanRecv(ch chan *Message) func() *Message { return func() *Message { return <-ch } }

// transfer passes n messages from srcs' producers to one consumer and
// returns how long that took.
func transfer(n int, srcs []source, send func(int, source), recv func() *Message) time.Duration {
	begin := time.Now()
	wg := runProducers(n, srcs, send)
	total := 0
	for range n {
		total += len(recv().Payload())
	}
	sink = total
	wg.Wait()
	return time.Since(begin)
}

func benchTransfer(b *testing.B, producers int, prebuilt bool, send func(int, source), recv func() *Message) {
	srcs := newSources(b, producers, prebuilt)
	b.ReportAllocs()
	b.ResetTimer()
	transfer(b.N, srcs, send, recv)
}

func benchMailbox(b *testing.B, producers int, prebuilt bool) {
	mb := newBenchMailbox()
	benchTransfer(b, producers, prebuilt, mailboxSend(b, mb), mailboxRecv(b, mb))
}

func benchChan(b *testing.B, producers int, prebuilt bool) {
	ch := make(chan *Message, benchCap)
	benchTransfer(b, producers, prebuilt, chanSend(ch), chanRecv(ch))
}

func BenchmarkSendRecv(b *testing.B) {
	for _, producers := range []int{1, 4} {
		for _, kind := range []string{"built", "prebuilt"} {
			name := map[int]string{1: "1p1c", 4: "4p1c"}[producers] + "/" + kind
			prebuilt := kind == "prebuilt"
			b.Run(name+"/mailbox", func(b *testing.B) { benchMailbox(b, producers, prebuilt) })
			b.Run(name+"/chan", func(b *testing.B) { benchChan(b, producers, prebuilt) })
		}
	}
}

func BenchmarkPingPong(b *testing.B) {
	b.Run("inbox", func(b *testing.B) {
		ping, pong := NewInbox(MailboxConfig{Capacity: benchCap}), NewInbox(MailboxConfig{Capacity: benchCap})
		m := benchBuild(b, 2)
		done := make(chan struct{})
		go func() {
			defer close(done)
			for {
				m, err := ping.Recv()
				if err != nil {
					return
				}
				if err := pong.SendMessage(m); err != nil {
					b.Error(err)
					return
				}
			}
		}()
		b.ReportAllocs()
		b.ResetTimer()
		for range b.N {
			if err := ping.SendMessage(m); err != nil {
				b.Fatal(err)
			}
			var err error
			if m, err = pong.Recv(); err != nil {
				b.Fatal(err)
			}
		}
		b.StopTimer()
		ping.Close()
		<-done
	})
	b.Run("chan", func(b *testing.B) {
		ping, pong := make(chan *Message, benchCap), make(chan *Message, benchCap)
		m := benchBuild(b, 2)
		done := make(chan struct{})
		go func() {
			defer close(done)
			for m := range ping {
				pong <- m
			}
		}()
		b.ReportAllocs()
		b.ResetTimer()
		for range b.N {
			ping <- m
			m = <-pong
		}
		b.StopTimer()
		close(ping)
		<-done
	})
}

// BenchmarkSameGoroutine is the uncontended cost of one send plus one
// receive of a prebuilt message with a TTL, on one goroutine: the mailbox's
// own work (two clock reads included, and proof that it does not allocate)
// against a buffered channel's and the featureless ring's of
// BenchmarkRingVsChan.
func BenchmarkSameGoroutine(b *testing.B) {
	b.Run("mailbox", func(b *testing.B) {
		mb := newBenchMailbox()
		m := benchBuild(b, 0)
		b.ReportAllocs()
		for range b.N {
			if err := mb.Send(m); err != nil {
				b.Fatal(err)
			}
			if _, err := mb.Receive(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("chan", func(b *testing.B) {
		ch := make(chan *Message, benchCap)
		m := benchBuild(b, 0)
		b.ReportAllocs()
		for range b.N {
			ch <- m
			m = <-ch
		}
	})
	b.Run("ring", func(b *testing.B) {
		r := newCondRing(benchCap)
		m := benchBuild(b, 0)
		b.ReportAllocs()
		for range b.N {
			r.send(m)
			m = r.recv()
		}
	})
}

// BenchmarkBuild is the cost of building one message with every option.
func BenchmarkBuild(b *testing.B) {
	b.ReportAllocs()
	for i := range b.N {
		benchBuild(b, i)
	}
}

// BenchmarkMailboxVsChan runs the SendRecv comparisons paired: each
// iteration passes a chunk of messages through the mailbox, then the same
// through the channel, so both see the same machine state (a run of
// BenchmarkSendRecv measures one, then the other, seconds apart), and
// reports both costs per message and their ratio. Run it with
// -benchtime=Nx.
func BenchmarkMailboxVsChan(b *testing.B) {
	pairedShapes(b, "mailbox", func(b *testing.B) (func(int, source), func() *Message) {
		mb := newBenchMailbox()
		return mailboxSend(b, mb), mailboxRecv(b, mb)
	})
}

// BenchmarkRingVsChan is BenchmarkMailboxVsChan with a featureless queue in
// the mailbox's place: a slice ring under a sync.Mutex with two sync.Conds
// (not full, not empty), no priorities, TTL, duplicate detection or
// counters. It measures, in the same harness, the premise of the mailbox's
// target (such a ring is much faster than a channel): how far below the
// channel a queue can get here before any feature costs anything.
func BenchmarkRingVsChan(b *testing.B) {
	pairedShapes(b, "ring", func(*testing.B) (func(int, source), func() *Message) {
		r := newCondRing(benchCap)
		return func(i int, src source) { r.send(src.next(i)) }, r.recv
	})
}

// pairedShapes runs the four SendRecv shapes (1 or 4 producers, built or
// prebuilt messages) for a queue made by newQueue, alternating chunks of
// messages through it and through a buffered channel of the same capacity,
// and reports "<ours>-ns/msg", "chan-ns/msg" and their ratio.
func pairedShapes(b *testing.B, ours string, newQueue func(*testing.B) (send func(int, source), recv func() *Message)) {
	const chunk = 100_000
	for _, producers := range []int{1, 4} {
		for _, kind := range []string{"built", "prebuilt"} {
			name := map[int]string{1: "1p1c", 4: "4p1c"}[producers] + "/" + kind
			b.Run(name, func(b *testing.B) {
				send, recv := newQueue(b)
				ch := make(chan *Message, benchCap)
				srcs := newSources(b, producers, kind == "prebuilt")
				viaQueue := func() time.Duration { return transfer(chunk, srcs, send, recv) }
				viaChan := func() time.Duration { return transfer(chunk, srcs, chanSend(ch), chanRecv(ch)) }
				viaQueue() // warm-up: rings grow once
				viaChan()
				var t, base time.Duration
				b.ResetTimer()
				for i := 0; b.Loop(); i++ {
					if i%2 == 0 { // alternate which goes first
						t += viaQueue()
						base += viaChan()
					} else {
						base += viaChan()
						t += viaQueue()
					}
				}
				n := float64(b.N * chunk)
				b.ReportMetric(float64(t.Nanoseconds())/n, ours+"-ns/msg")
				b.ReportMetric(float64(base.Nanoseconds())/n, "chan-ns/msg")
				b.ReportMetric(float64(t)/float64(base), "ratio")
			})
		}
	}
}

// condRing is the featureless baseline queue of BenchmarkRingVsChan: a
// bounded FIFO under one mutex, senders waiting on notFull and receivers on
// notEmpty.
type condRing struct {
	mu                sync.Mutex
	notFull, notEmpty sync.Cond
	buf               []*Message
	head, n           int
}

func newCondRing(capacity int) *condRing {
	r := &condRing{buf: make([]*Message, capacity)}
	r.notFull.L, r.notEmpty.L = &r.mu, &r.mu
	return r
}

func (r *condRing) send(m *Message) {
	r.mu.Lock()
	for r.n == len(r.buf) {
		r.notFull.Wait()
	}
	r.buf[(r.head+r.n)%len(r.buf)] = m
	r.n++
	r.mu.Unlock()
	r.notEmpty.Signal()
}

func (r *condRing) recv() *Message {
	r.mu.Lock()
	for r.n == 0 {
		r.notEmpty.Wait()
	}
	m := r.buf[r.head]
	r.buf[r.head] = nil
	r.head = (r.head + 1) % len(r.buf)
	r.n--
	r.mu.Unlock()
	r.notFull.Signal()
	return m
}
