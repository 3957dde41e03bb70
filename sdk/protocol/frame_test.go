package protocol

import "testing"

func TestFitFrame(t *testing.T) {
	env := func(payload int) Envelope { return Envelope{Payload: make([]byte, payload)} }
	tests := map[string]struct {
		payloads []int
		want     int
	}{
		"empty":                        {nil, 0},
		"small ones all fit":           {[]int{10, 10, 10}, 3},
		"cut before the budget":        {[]int{600 << 10, 600 << 10, 10}, 1},
		"a large one travels alone":    {[]int{5 << 20, 10}, 1},
		"exactly the budget fits":      {[]int{MaxFrameBytes/2 - 48, MaxFrameBytes/2 - 48, 1}, 2},
		"small ones up to a large one": {[]int{10, 10, 5 << 20}, 2},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			var items []Delivery
			for _, p := range tt.payloads {
				items = append(items, Delivery{Msg: env(p)})
			}
			if got := FitFrame(items, func(d *Delivery) *Envelope { return &d.Msg }); got != tt.want {
				t.Fatalf("FitFrame = %d, want %d", got, tt.want)
			}
		})
	}
}
