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

// BenchmarkMailboxSameGoroutine is the uncontended cost of one Send plus
// one Receive of a prebuilt message with a TTL: the mailbox's own overhead
// (two clock reads included) and proof that it does not allocate.
func BenchmarkMailboxSameGoroutine(b *testing.B) {
	mb := NewMailbox(MailboxConfig{Capacity: benchCap})
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
	const chunk = 100_000
	for _, producers := range []int{1, 4} {
		for _, kind := range []string{"built", "prebuilt"} {
			name := map[int]string{1: "1p1c", 4: "4p1c"}[producers] + "/" + kind
			b.Run(name, func(b *testing.B) {
				mb, ch := newBenchMailbox(), make(chan *Message, benchCap)
				srcs := newSources(b, producers, kind == "prebuilt")
				viaMailbox := func() time.Duration { return transfer(chunk, srcs, mailboxSend(b, mb), mailboxRecv(b, mb)) }
				viaChan := func() time.Duration { return transfer(chunk, srcs, chanSend(ch), chanRecv(ch)) }
				viaMailbox() // warm-up: the rings grow once
				viaChan()
				var ours, base time.Duration
				b.ResetTimer()
				for i := 0; b.Loop(); i++ {
					if i%2 == 0 { // alternate which goes first
						ours += viaMailbox()
						base += viaChan()
					} else {
						base += viaChan()
						ours += viaMailbox()
					}
				}
				n := float64(b.N * chunk)
				b.ReportMetric(float64(ours.Nanoseconds())/n, "mailbox-ns/msg")
				b.ReportMetric(float64(base.Nanoseconds())/n, "chan-ns/msg")
				b.ReportMetric(float64(ours)/float64(base), "ratio")
			})
		}
	}
}
