package protocol

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"
)

var errTestFull = errors.New("vigil: test mailbox full")

func init() { RegisterSentinels(errTestFull) }

func TestMailboxFramesRoundTrip(t *testing.T) {
	env := Envelope{
		ID: "m-1", Sender: "a", Payload: []byte("hello"), CorrelationID: "c", ReplyTo: "b",
		Priority: -1, Signal: 2, TTL: time.Second, Remaining: 500 * time.Millisecond, Attempts: 3,
	}
	tests := map[string]struct{ down *Down }{
		"deliveries":  {&Down{Deliveries: []Delivery{{Tag: 7, Msg: env}, {Reply: true, Msg: env}}}},
		"results":     {&Down{Results: []SendResult{{Seq: 1}}}},
		"stats":       {&Down{Stats: []StatsResult{{Seq: 2, Stats: []byte(`{"Len":1}`)}}}},
		"acks wanted": {&Down{Deliveries: []Delivery{{Tag: 8, Msg: env}}, AcksWanted: true}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if got := downFromPB(downToPB(tc.down)); !reflect.DeepEqual(got, tc.down) {
				t.Fatalf("round trip:\n got %+v\nwant %+v", got, tc.down)
			}
		})
	}
	up := &Up{
		Acks: []uint64{1, 2}, Nacks: []Nack{{Tag: 3, Reason: "r"}}, Stats: []uint64{4}, Credits: 9,
		Sends: []SendRequest{{Seq: 5, To: "x", Kind: SendBroadcast, Msg: env, ErrorsOnly: true}},
	}
	if got := upFromPB(upToPB(up)); !reflect.DeepEqual(got, up) {
		t.Fatalf("up round trip:\n got %+v\nwant %+v", got, up)
	}
	if (&Up{}).Empty() == false || up.Empty() {
		t.Fatal("Empty is wrong")
	}
}

func TestStartCPUProfileWritesAProfile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cpu.prof")
	stop, err := startCPUProfile(path)
	if err != nil {
		t.Fatal(err)
	}
	stop()
	if fi, err := os.Stat(path); err != nil || fi.Size() == 0 {
		t.Fatalf("no profile written: %v", err)
	}
	if _, err := startCPUProfile(filepath.Join(t.TempDir(), "no", "such", "dir")); err == nil {
		t.Fatal("a profile in a missing directory did not fail")
	}
}

func TestMailboxErrorsKeepSentinels(t *testing.T) {
	wrapped := errors.Join(errors.New("context"), errTestFull)
	d := downFromPB(downToPB(&Down{Results: []SendResult{{Seq: 1, Err: wrapped}}}))
	err := d.Results[0].Err
	if !errors.Is(err, errTestFull) || err.Error() != wrapped.Error() {
		t.Fatalf("got %v (%T), want an error wrapping errTestFull with the same text", err, err)
	}
	if d := downFromPB(downToPB(&Down{Results: []SendResult{{Seq: 1}}})); d.Results[0].Err != nil {
		t.Fatalf("success became %v", d.Results[0].Err)
	}
}
