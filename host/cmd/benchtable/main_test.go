package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fixture is go test -bench output with repeated runs (-count 3 and 2),
// noise lines, and the units the project's benchmarks report.
const fixture = `goos: linux
goarch: amd64
pkg: github.com/vigil-run/vigil/sdk
cpu: AMD EPYC
BenchmarkSendRecv/1p1c/built/mailbox-2   	 3000000	       300.0 ns/op	      96 B/op	       1 allocs/op
BenchmarkSendRecv/1p1c/built/mailbox-2   	 3000000	       900.0 ns/op	      96 B/op	       1 allocs/op
BenchmarkSendRecv/1p1c/built/mailbox-2   	 3000000	       400.0 ns/op	      96 B/op	       1 allocs/op
BenchmarkSendRecv/1p1c/built/chan-2      	 3000000	       200.0 ns/op	      96 B/op	       1 allocs/op
BenchmarkSendRecv/1p1c/built/chan-2      	 3000000	       100.0 ns/op	      96 B/op	       1 allocs/op
BenchmarkSendRecv/1p1c/built/chan-2      	 3000000	       500.0 ns/op	      96 B/op	       1 allocs/op
BenchmarkPingPong/inbox-2 	 2000000	       400 ns/op
BenchmarkPingPong/inbox-2 	 2000000	       600 ns/op
BenchmarkPingPong/chan-2  	 2000000	       500 ns/op
BenchmarkPingPong/chan-2  	 2000000	       500 ns/op
PASS
ok  	github.com/vigil-run/vigil/sdk	9.1s
pkg: github.com/vigil-run/vigil/host
BenchmarkBridgeVsRaw/throughput-2 	       6	 400000000 ns/op	    200000 ours-msgs/s	    600000 raw64-msgs/s	    0.30 ratio-vs-raw64
BenchmarkBridgeVsRaw/throughput-2 	       6	 400000000 ns/op	    220000 ours-msgs/s	    400000 raw64-msgs/s	    0.55 ratio-vs-raw64
BenchmarkBridgeVsRaw/throughput-2 	       6	 400000000 ns/op	    210000 ours-msgs/s	    500000 raw64-msgs/s	    0.42 ratio-vs-raw64
BenchmarkCrashToServing-2 	     100	  12000000 ns/op	        12.00 p50-ms	        10.00 bare-p50-ms	         1.20 x-bare-p50
BenchmarkSwapPause-2 	      10	 559172017 ns/op	        24.78 crash-gap-p50-ms	         0.3161 ratio-p50	        21.71 swap-gap-max-ms	         7.833 swap-gap-p50-ms
BenchmarkHostMemoryPerWorker/workers=50-2 	       1	 850000000 ns/op	        20.02 goroutines/worker	       156.2 host-KiB/worker
`

func TestParseLine(t *testing.T) {
	tests := map[string]struct {
		line    string
		name    string
		metrics map[string]float64
		ok      bool
	}{
		"ns/op and benchmem": {
			line:    "BenchmarkSendRecv/1p1c/built/chan-2   3000000   200.5 ns/op   96 B/op   1 allocs/op",
			name:    "BenchmarkSendRecv/1p1c/built/chan",
			metrics: map[string]float64{"ns/op": 200.5, "B/op": 96, "allocs/op": 1},
			ok:      true,
		},
		"custom units": {
			line:    "BenchmarkCrashToServing-8 100 1 ns/op 12.5 p50-ms 1.2 x-bare-p50",
			name:    "BenchmarkCrashToServing",
			metrics: map[string]float64{"ns/op": 1, "p50-ms": 12.5, "x-bare-p50": 1.2},
			ok:      true,
		},
		"no procs suffix, dash in sub-name kept": {
			line:    "BenchmarkX/a-b 10 5 ns/op",
			name:    "BenchmarkX/a-b",
			metrics: map[string]float64{"ns/op": 5},
			ok:      true,
		},
		"header":           {line: "pkg: github.com/vigil-run/vigil/sdk"},
		"name only (-v)":   {line: "BenchmarkPingPong"},
		"log line":         {line: "BenchmarkX-2 some words here"},
		"odd field count":  {line: "BenchmarkX-2 10 5 ns/op 7"},
		"bad value":        {line: "BenchmarkX-2 10 fast ns/op"},
		"not a benchmark":  {line: "ok  github.com/vigil-run/vigil/sdk 9.1s"},
		"iterations wrong": {line: "BenchmarkX-2 ten 5 ns/op"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got, metrics, ok := parseLine(tc.line)
			if ok != tc.ok || got != tc.name {
				t.Fatalf("parseLine(%q) = %q, ok %v; want %q, ok %v", tc.line, got, ok, tc.name, tc.ok)
			}
			if len(metrics) != len(tc.metrics) {
				t.Fatalf("metrics = %v, want %v", metrics, tc.metrics)
			}
			for u, v := range tc.metrics {
				if metrics[u] != v {
					t.Errorf("metrics[%q] = %v, want %v", u, metrics[u], v)
				}
			}
		})
	}
}

func TestMedian(t *testing.T) {
	tests := map[string]struct {
		in   []float64
		want float64
		ok   bool
	}{
		"empty":      {in: nil, ok: false},
		"one":        {in: []float64{7}, want: 7, ok: true},
		"odd":        {in: []float64{9, 1, 5}, want: 5, ok: true},
		"even":       {in: []float64{4, 1, 3, 2}, want: 2.5, ok: true},
		"outlier":    {in: []float64{300, 900, 400}, want: 400, ok: true},
		"duplicates": {in: []float64{2, 2, 9, 2}, want: 2, ok: true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			in := append([]float64(nil), tc.in...)
			got, ok := median(in)
			if got != tc.want || ok != tc.ok {
				t.Fatalf("median(%v) = %v, %v; want %v, %v", tc.in, got, ok, tc.want, tc.ok)
			}
			for i := range in {
				if in[i] != tc.in[i] {
					t.Fatalf("median modified its input: %v, was %v", in, tc.in)
				}
			}
		})
	}
}

func TestParseGroupsRuns(t *testing.T) {
	p, err := parse(strings.NewReader(fixture))
	if err != nil {
		t.Fatal(err)
	}
	if len(p.failed) != 0 {
		t.Errorf("failed = %q, want none", p.failed)
	}
	got := p.samples["BenchmarkSendRecv/1p1c/built/mailbox"]["ns/op"]
	want := []float64{300, 900, 400}
	if len(got) != len(want) {
		t.Fatalf("mailbox ns/op runs = %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("mailbox ns/op runs = %v, want %v", got, want)
		}
	}
}

// rowCells finds the table row whose label starts with prefix and returns
// its cells after the label.
func rowCells(t *testing.T, table, prefix string) []string {
	t.Helper()
	for line := range strings.SplitSeq(table, "\n") {
		if strings.HasPrefix(line, "| "+prefix) {
			f := strings.Split(strings.Trim(line, "|"), "|")
			for i := range f {
				f[i] = strings.TrimSpace(f[i])
			}
			return f[1:]
		}
	}
	t.Fatalf("no row starting %q in\n%s", prefix, table)
	return nil
}

func TestTable(t *testing.T) {
	p, err := parse(strings.NewReader(fixture))
	if err != nil {
		t.Fatal(err)
	}
	tab := table(p.samples)
	tests := map[string]struct {
		prefix string
		want   []string // ours, baseline, ratio, target, pass/fail
	}{
		"ratio of medians, fail": {
			prefix: "mailbox send+receive, 1 producer/1 consumer, built",
			want:   []string{"400 ns (n=3)", "buffered channel: 200 ns (n=3)", "2.00", "≤ 1", "**fail**"},
		},
		"no data for a row not in the input": {
			prefix: "mailbox send+receive, 4 producers/1 consumer, prebuilt",
			want:   []string{"no data", "buffered channel: no data", "—", "≤ 1", "no data"},
		},
		"even count, pass": {
			prefix: "ping-pong",
			want:   []string{"500 ns (n=2)", "two channels: 500 ns (n=2)", "1.00", "≤ 1", "pass"},
		},
		"same-loop ratio median, at least": {
			prefix: "bridge throughput",
			want:   []string{"210 k msg/s (n=3)", "raw go-plugin stream, 64/frame: 500 k msg/s (n=3)", "0.42", "≥ 0.5", "**fail**"},
		},
		"crash to serving": {
			prefix: "`kill -9`",
			want:   []string{"12.00 ms (n=1)", "bare go-plugin relaunch: 10.00 ms (n=1)", "1.20", "≤ 1.3", "pass"},
		},
		"informational row": {
			prefix: "host RSS per plugin worker, 50 workers",
			want:   []string{"156 KiB (n=1)", "—", "—", "—", "—"},
		},
		"hot-swap pause": {
			prefix: "hot-swap pause",
			want:   []string{"7.83 ms (n=1)", "crash restart under the same load: 24.78 ms (n=1)", "0.32", "≤ 2", "pass"},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got := rowCells(t, tab, tc.prefix)
			if strings.Join(got, " | ") != strings.Join(tc.want, " | ") {
				t.Errorf("row %q:\n got %q\nwant %q", tc.prefix, got, tc.want)
			}
		})
	}
	if n := strings.Count(tab, "\n"); n != len(rows)+2 {
		t.Errorf("table has %d lines, want %d (header, rule, %d rows)", n, len(rows)+2, len(rows))
	}
}

func TestRun(t *testing.T) {
	tests := map[string]struct {
		input string
		code  int
	}{
		"ok":         {input: fixture, code: 0},
		"test fails": {input: fixture + "--- FAIL: BenchmarkCrashToServing\nFAIL\tgithub.com/vigil-run/vigil/host/process\t1.0s\n", code: 1},
		"no results": {input: "PASS\nok  \tgithub.com/vigil-run/vigil/sdk\t0.1s\n", code: 1},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			in := filepath.Join(dir, "bench.txt")
			if err := os.WriteFile(in, []byte(tc.input), 0o644); err != nil {
				t.Fatal(err)
			}
			out := filepath.Join(dir, "bench.md")
			var stdout, stderr bytes.Buffer
			if code := run([]string{in}, strings.NewReader(""), &stdout, &stderr, out); code != tc.code {
				t.Fatalf("run = %d, want %d; stderr: %s", code, tc.code, stderr.String())
			}
			written, err := os.ReadFile(out)
			if err != nil {
				t.Fatal(err)
			}
			if string(written) != stdout.String() || !strings.HasPrefix(stdout.String(), "| row |") {
				t.Errorf("stdout and %s differ or are not the table:\nstdout:\n%s\nfile:\n%s", out, stdout.String(), written)
			}
			var fromStdin bytes.Buffer
			if code := run(nil, strings.NewReader(tc.input), &fromStdin, &stderr, ""); code != tc.code || fromStdin.String() != stdout.String() {
				t.Errorf("from stdin: code %d, want %d; same table: %v", code, tc.code, fromStdin.String() == stdout.String())
			}
		})
	}
	t.Run("missing file", func(t *testing.T) {
		var stdout, stderr bytes.Buffer
		if code := run([]string{filepath.Join(t.TempDir(), "nope.txt")}, nil, &stdout, &stderr, ""); code != 2 {
			t.Fatalf("run = %d, want 2", code)
		}
	})
}
