// Command benchtable turns the output of `go test -bench` into the one
// Markdown table of the README's Performance section: each row sets one of
// our measurements against its baseline from the same run, with the ratio,
// the target and whether the target is met.
//
// Usage:
//
//	go test -run '^$' -bench . -count 5 ./... | benchtable [-o bench.md]
//	benchtable [-o bench.md] bench.txt [more.txt ...]
//
// It reads the named files (or standard input), groups the repeated runs of
// each benchmark (-count N) and takes medians of every reported metric
// (ns/op and the b.ReportMetric units alike). A ratio is the median of the
// benchmark's own same-loop ratio metric where it reports one, otherwise
// the ratio of the two medians. Rows without data say so; nothing is
// invented. The table goes to standard output and, with -o, to a file.
//
// The exit status is 1 when the input shows a failed test or benchmark
// ("FAIL" or "--- FAIL" lines) or holds no benchmark result at all, 2 on
// bad usage or unreadable input; a target that is not met is reported in
// the table, not in the exit status.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
)

// samples holds every value reported for each benchmark and unit:
// samples[name][unit] lists one value per run, in input order.
type samples map[string]map[string][]float64

// parsed is what parse found in go test output.
type parsed struct {
	samples samples
	failed  []string // "FAIL" / "--- FAIL" lines, verbatim
}

// parse reads go test -bench output. Benchmark names lose their
// -GOMAXPROCS suffix, so runs with the same name group together.
func parse(r io.Reader) (parsed, error) {
	p := parsed{samples: samples{}}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(line, "FAIL") || strings.HasPrefix(line, "--- FAIL") || strings.HasPrefix(line, "panic:") {
			p.failed = append(p.failed, line)
			continue
		}
		name, metrics, ok := parseLine(line)
		if !ok {
			continue
		}
		m := p.samples[name]
		if m == nil {
			m = map[string][]float64{}
			p.samples[name] = m
		}
		for unit, v := range metrics {
			m[unit] = append(m[unit], v)
		}
	}
	return p, sc.Err()
}

// parseLine parses one result line, "BenchmarkX/sub-2  100  12.5 ns/op
// 3 B/op ...", into the name without its -N suffix and its metrics.
func parseLine(line string) (string, map[string]float64, bool) {
	f := strings.Fields(line)
	if len(f) < 4 || !strings.HasPrefix(f[0], "Benchmark") || len(f)%2 != 0 {
		return "", nil, false
	}
	if _, err := strconv.ParseInt(f[1], 10, 64); err != nil {
		return "", nil, false
	}
	name := f[0]
	if i := strings.LastIndexByte(name, '-'); i > 0 {
		if _, err := strconv.Atoi(name[i+1:]); err == nil {
			name = name[:i]
		}
	}
	metrics := map[string]float64{}
	for i := 2; i+1 < len(f); i += 2 {
		v, err := strconv.ParseFloat(f[i], 64)
		if err != nil {
			return "", nil, false
		}
		metrics[f[i+1]] = v
	}
	return name, metrics, true
}

// median returns the median of vs (the mean of the two middle values for
// an even count) and false for an empty slice. vs is not modified.
func median(vs []float64) (float64, bool) {
	if len(vs) == 0 {
		return 0, false
	}
	s := slices.Clone(vs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2], true
	}
	return (s[n/2-1] + s[n/2]) / 2, true
}

// metric names one reported value: a benchmark and a unit.
type metric struct {
	bench, unit string
}

// stat is the median of one metric over its runs.
type stat struct {
	value float64
	runs  int
	ok    bool
}

func (s samples) stat(m metric) stat {
	if m.bench == "" {
		return stat{}
	}
	vs := s[m.bench][m.unit]
	v, ok := median(vs)
	return stat{value: v, runs: len(vs), ok: ok}
}

// target is the ratio a row must meet: at most (or, with atLeast, at least)
// limit. The zero value means the row has no target.
type target struct {
	limit   float64
	atLeast bool
}

func (t target) String() string {
	switch {
	case t.limit == 0:
		return "—"
	case t.atLeast:
		return "≥ " + strconv.FormatFloat(t.limit, 'f', -1, 64)
	default:
		return "≤ " + strconv.FormatFloat(t.limit, 'f', -1, 64)
	}
}

func (t target) met(ratio float64) bool {
	if t.atLeast {
		return ratio >= t.limit
	}
	return ratio <= t.limit
}

// row is one line of the table.
type row struct {
	label      string
	ours, base metric
	ratio      metric // a same-loop ratio the benchmark reports; else ours/base medians
	format     func(float64) string
	baseLabel  string // what the baseline is, printed before its value
	target     target
}

func ns(v float64) string   { return strconv.FormatFloat(v, 'f', 0, 64) + " ns" }
func µs(v float64) string   { return strconv.FormatFloat(v, 'f', 0, 64) + " µs" }
func ms(v float64) string   { return strconv.FormatFloat(v, 'f', 2, 64) + " ms" }
func kib(v float64) string  { return strconv.FormatFloat(v, 'f', 0, 64) + " KiB" }
func kmsg(v float64) string { return strconv.FormatFloat(v/1000, 'f', 0, 64) + " k msg/s" }

// rows are the table's rows, in order. Targets come from the issues.
var rows = []row{
	mailboxRow("1p1c", "built", false),
	mailboxRow("1p1c", "prebuilt", false),
	mailboxRow("4p1c", "built", false),
	mailboxRow("4p1c", "prebuilt", false),
	mailboxRow("1p1c", "built", true),
	mailboxRow("1p1c", "prebuilt", true),
	mailboxRow("4p1c", "built", true),
	mailboxRow("4p1c", "prebuilt", true),
	ringRow("1p1c", "built"),
	ringRow("1p1c", "prebuilt"),
	ringRow("4p1c", "built"),
	ringRow("4p1c", "prebuilt"),
	{
		label:     "mailbox Send+Receive on one goroutine, prebuilt message (no contention)",
		ours:      metric{"BenchmarkSameGoroutine/mailbox", "ns/op"},
		base:      metric{"BenchmarkSameGoroutine/chan", "ns/op"},
		baseLabel: "buffered channel",
		format:    ns,
	},
	{
		label:     "featureless mutex+cond ring, send+receive on one goroutine",
		ours:      metric{"BenchmarkSameGoroutine/ring", "ns/op"},
		base:      metric{"BenchmarkSameGoroutine/chan", "ns/op"},
		baseLabel: "buffered channel",
		format:    ns,
	},
	{
		label:     "ping-pong between two goroutines: two inboxes",
		ours:      metric{"BenchmarkPingPong/inbox", "ns/op"},
		base:      metric{"BenchmarkPingPong/chan", "ns/op"},
		baseLabel: "two channels",
		format:    ns,
		target:    target{limit: 1.0},
	},
	{
		label:     "bridge throughput host → worker (64-byte messages)",
		ours:      metric{"BenchmarkBridgeVsRaw/throughput", "ours-msgs/s"},
		base:      metric{"BenchmarkBridgeVsRaw/throughput", "raw64-msgs/s"},
		ratio:     metric{"BenchmarkBridgeVsRaw/throughput", "ratio-vs-raw64"},
		baseLabel: "raw go-plugin stream, 64/frame",
		format:    kmsg,
		target:    target{limit: 0.5, atLeast: true},
	},
	{
		label:     "worker → worker request/reply, p50",
		ours:      metric{"BenchmarkBridgeVsRaw/roundtrip", "ours-p50-µs"},
		base:      metric{"BenchmarkBridgeVsRaw/roundtrip", "raw-p50-µs"},
		ratio:     metric{"BenchmarkBridgeVsRaw/roundtrip", "ratio-p50"},
		baseLabel: "raw ping-pong",
		format:    µs,
		target:    target{limit: 2.0},
	},
	{
		label:     "`kill -9` of a plugin worker → replacement serving, p50",
		ours:      metric{"BenchmarkCrashToServing", "p50-ms"},
		base:      metric{"BenchmarkCrashToServing", "bare-p50-ms"},
		ratio:     metric{"BenchmarkCrashToServing", "x-bare-p50"},
		baseLabel: "bare go-plugin relaunch",
		format:    ms,
		target:    target{limit: 1.3},
	},
	{
		label:  "in-process restart: child fails → replacement running",
		ours:   metric{"BenchmarkRestartLatency", "ns/op"},
		format: func(v float64) string { return µs(v / 1000) },
	},
	{
		label:     "hot-swap pause under load (longest gap between completions), p50",
		ours:      metric{"BenchmarkSwapPause", "swap-gap-p50-ms"},
		base:      metric{"BenchmarkSwapPause", "crash-gap-p50-ms"},
		ratio:     metric{"BenchmarkSwapPause", "ratio-p50"},
		baseLabel: "crash restart under the same load",
		format:    ms,
		target:    target{limit: 2.0},
	},
	memory(1),
	memory(50),
	memory(200),
}

// mailboxRow is a mailbox-versus-channel row: from BenchmarkSendRecv
// (mailbox and channel in separate runs), or, paired, from
// BenchmarkMailboxVsChan (alternating in one loop, with its own ratio).
func mailboxRow(shape, kind string, paired bool) row {
	producers := map[string]string{"1p1c": "1 producer", "4p1c": "4 producers"}[shape]
	r := row{baseLabel: "buffered channel", format: ns, target: target{limit: 1.0}}
	if paired {
		name := "BenchmarkMailboxVsChan/" + shape + "/" + kind
		r.ours, r.base, r.ratio = metric{name, "mailbox-ns/msg"}, metric{name, "chan-ns/msg"}, metric{name, "ratio"}
		r.label = fmt.Sprintf("mailbox send+receive, %s/1 consumer, %s (alternating in one loop)", producers, kind)
		return r
	}
	prefix := "BenchmarkSendRecv/" + shape + "/" + kind + "/"
	r.ours, r.base = metric{prefix + "mailbox", "ns/op"}, metric{prefix + "chan", "ns/op"}
	r.label = fmt.Sprintf("mailbox send+receive, %s/1 consumer, %s (separate runs)", producers, kind)
	return r
}

// ringRow is a row of BenchmarkRingVsChan: a featureless mutex+cond ring
// against the channel in the mailbox rows' harness. It has no target: it
// shows how far below the channel any queue gets in that harness.
func ringRow(shape, kind string) row {
	producers := map[string]string{"1p1c": "1 producer", "4p1c": "4 producers"}[shape]
	name := "BenchmarkRingVsChan/" + shape + "/" + kind
	return row{
		label:     fmt.Sprintf("featureless mutex+cond ring (no priorities, TTL, duplicate detection, counters), %s/1 consumer, %s (alternating in one loop)", producers, kind),
		ours:      metric{name, "ring-ns/msg"},
		base:      metric{name, "chan-ns/msg"},
		ratio:     metric{name, "ratio"},
		baseLabel: "buffered channel",
		format:    ns,
	}
}

func memory(workers int) row {
	label := fmt.Sprintf("host RSS per plugin worker, %d workers", workers)
	if workers == 1 {
		label = "host RSS per plugin worker, 1 worker"
	}
	return row{
		label:  label,
		ours:   metric{fmt.Sprintf("BenchmarkHostMemoryPerWorker/workers=%d", workers), "host-KiB/worker"},
		format: kib,
	}
}

// cells computes a row's cells: ours, baseline, ratio, target, verdict.
func (r row) cells(s samples) [5]string {
	ours, base := s.stat(r.ours), s.stat(r.base)
	c := [5]string{"no data", "—", "—", r.target.String(), "—"}
	if ours.ok {
		c[0] = fmt.Sprintf("%s (n=%d)", r.format(ours.value), ours.runs)
	}
	if r.base.bench != "" {
		c[1] = r.baseLabel + ": no data"
		if base.ok {
			c[1] = fmt.Sprintf("%s: %s (n=%d)", r.baseLabel, r.format(base.value), base.runs)
		}
	}
	ratio := stat{}
	switch {
	case r.ratio.bench != "":
		ratio = s.stat(r.ratio)
	case ours.ok && base.ok && base.value != 0:
		ratio = stat{value: ours.value / base.value, ok: true}
	}
	if ratio.ok {
		c[2] = strconv.FormatFloat(ratio.value, 'f', 2, 64)
	}
	if r.target.limit != 0 {
		switch {
		case !ratio.ok:
			c[4] = "no data"
		case r.target.met(ratio.value):
			c[4] = "pass"
		default:
			c[4] = "**fail**"
		}
	}
	return c
}

// table renders the Markdown table for s.
func table(s samples) string {
	var b strings.Builder
	b.WriteString("| row | ours | baseline (same run) | ratio | target | pass/fail |\n")
	b.WriteString("|---|---|---|---|---|---|\n")
	for _, r := range rows {
		c := r.cells(s)
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s |\n", r.label, c[0], c[1], c[2], c[3], c[4])
	}
	return b.String()
}

func main() {
	out := flag.String("o", "", "also write the table to this `file`")
	flag.Usage = func() {
		fmt.Fprintln(flag.CommandLine.Output(), "usage: benchtable [-o file] [go-test-bench-output ...]")
		flag.PrintDefaults()
	}
	flag.Parse()
	os.Exit(run(flag.Args(), os.Stdin, os.Stdout, os.Stderr, *out))
}

// run is main without the process: it reads the files (or stdin), prints
// the table to stdout, writes it to out if set, and returns the exit code.
func run(files []string, stdin io.Reader, stdout, stderr io.Writer, out string) int {
	var readers []io.Reader
	for _, name := range files {
		f, err := os.Open(name)
		if err != nil {
			fmt.Fprintln(stderr, "benchtable:", err)
			return 2
		}
		defer f.Close()
		readers = append(readers, f)
	}
	if len(readers) == 0 {
		readers = append(readers, stdin)
	}
	p, err := parse(io.MultiReader(readers...))
	if err != nil {
		fmt.Fprintln(stderr, "benchtable: reading input:", err)
		return 2
	}
	t := table(p.samples)
	fmt.Fprint(stdout, t)
	if out != "" {
		if err := os.WriteFile(out, []byte(t), 0o644); err != nil {
			fmt.Fprintln(stderr, "benchtable:", err)
			return 2
		}
	}
	switch {
	case len(p.failed) > 0:
		fmt.Fprintf(stderr, "benchtable: the input shows %d failure line(s), first: %s\n", len(p.failed), p.failed[0])
		return 1
	case len(p.samples) == 0:
		fmt.Fprintln(stderr, "benchtable: no benchmark results in the input")
		return 1
	}
	return 0
}
