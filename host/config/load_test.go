package config

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/vigil-run/vigil/sdk"
)

// stripRanges checks that every range in the tree names file and starts on
// the expected line (lines maps a node name to it, when listed) and zeroes
// the ranges so trees can be compared with reflect.DeepEqual.
func stripRanges(t *testing.T, s *Supervisor, file string, lines map[string]int) {
	t.Helper()
	check := func(name string, r *hcl.Range) {
		t.Helper()
		if r.Filename != file {
			t.Errorf("%s: range file = %q, want %q", name, r.Filename, file)
		}
		if want, ok := lines[name]; ok && r.Start.Line != want {
			t.Errorf("%s: range starts on line %d, want %d", name, r.Start.Line, want)
		}
		*r = hcl.Range{}
	}
	check(s.Name, &s.Range)
	for _, c := range s.Children {
		switch {
		case c.Worker != nil && c.Supervisor == nil:
			check(c.Worker.Name, &c.Worker.Range)
		case c.Supervisor != nil && c.Worker == nil:
			stripRanges(t, c.Supervisor, file, lines)
		default:
			t.Errorf("child of %s has %v worker and %v supervisor, want exactly one", s.Name, c.Worker != nil, c.Supervisor != nil)
		}
	}
}

// mustHex decodes a hex string or panics.
func mustHex(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}

// jsonEqual reports whether a and b hold the same JSON value.
func jsonEqual(t *testing.T, got []byte, want string) {
	t.Helper()
	var g, w any
	if err := json.Unmarshal(got, &g); err != nil {
		t.Fatalf("config JSON %s does not decode: %v", got, err)
	}
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatalf("bad test JSON %s: %v", want, err)
	}
	if !reflect.DeepEqual(g, w) {
		t.Errorf("config JSON = %s, want %s", got, want)
	}
}

func TestLoadDecodesTheFullExampleIntoTheExpectedTree(t *testing.T) {
	dir := newFixture(t)
	src, err := os.ReadFile(filepath.Join("testdata", "full.hcl"))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "app.hcl")
	if err := os.WriteFile(path, src, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("VIGIL_TEST_FOO", "foo")
	t.Setenv("VIGIL_TEST_UNSET", "")
	os.Unsetenv("VIGIL_TEST_UNSET") // restored by t.Setenv's cleanup

	app, err := Load(path)
	if err != nil {
		t.Fatalf("Load: %s", Format(err))
	}

	workers := app.Workers()
	configs := map[string][]byte{}
	for _, w := range workers {
		configs[w.Name] = w.Config
		w.Config = nil
	}
	jsonEqual(t, configs["echo"], `{"greeting":"hi foo","interval":"1s","nested":{"a":1,"b":[true,null,2.5]},
		"list":["a","b"],"biggest":9,"joined":"x-y","missing":"fallback"}`)
	for _, name := range []string{"db", "cache", "db_replica", "last"} {
		if string(configs[name]) != "{}" {
			t.Errorf("worker %s: config = %s, want {} for an absent block", name, configs[name])
		}
	}
	stripRanges(t, app.Root, path, map[string]int{"demo": 2, "echo": 10, "backend": 51, "db": 56, "inner": 58, "cache": 59, "db_replica": 65, "last": 68})

	dev := sdk.PresetDevelopment.Values()
	plugin := func(name string) string { return filepath.Join(dir, "bin", "plugins", name) }
	defaultMailbox := Mailbox{Capacity: dev.MailboxCapacity, PriorityQueues: true, DeadLetter: true,
		MaxMessageSize: 1 << 20, MaxDeliveryAttempts: 5}
	simple := func(name, bin string) *Worker {
		return &Worker{Name: name, IDs: []string{name}, Plugin: plugin(bin), Restart: sdk.Permanent,
			ShutdownTimeout: dev.ShutdownTimeout, StartTimeout: 10 * time.Second, Priority: sdk.ProcessNormal,
			Backoff: Backoff{Min: dev.BackoffMin, Max: dev.BackoffMax, Jitter: DefaultBackoffJitter}, Mailbox: defaultMailbox}
	}
	cache := simple("cache", "flaky")
	cache.HealthCheck = &HealthCheck{Interval: dev.HealthCheckInterval, Timeout: time.Second, Failures: 3}
	last := simple("last", "flaky")
	last.Backoff = Backoff{Min: 3 * time.Second, Max: 3 * time.Second, Jitter: 0.5} // max follows a larger min

	want := &App{
		Name: "demo", File: path, Preset: sdk.PresetDevelopment, LogLevel: "info", Metrics: "127.0.0.1:9102",
		Root: &Supervisor{Name: "demo", Strategy: sdk.OneForAll, MaxRestarts: 5, MaxSeconds: 30, Children: []Node{
			{Worker: &Worker{
				Name: "echo", Pool: 3, IDs: []string{"echo_0", "echo_1", "echo_2"}, Plugin: plugin("echo"),
				Args: []string{"-x", "--port=8080"}, Env: map[string]string{"FOO": "foo", "BAR": "baz", "N": "3"},
				Restart: sdk.Transient, ShutdownTimeout: 5 * time.Second, StartTimeout: 90 * time.Second,
				Priority: sdk.ProcessHigh, MaxMemory: 256 << 20,
				SHA256:      mustHex("ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12"),
				Watch:       true,
				HealthCheck: &HealthCheck{Interval: 2 * time.Second, Timeout: 500 * time.Millisecond, Failures: 4},
				Backoff:     Backoff{Min: 200 * time.Millisecond, Max: 20 * time.Second, Jitter: DefaultBackoffJitter},
				Mailbox: Mailbox{Capacity: 64, PriorityQueues: false, DeadLetter: false, DefaultTTL: 30 * time.Second,
					MaxMessageSize: 2 << 20, MaxDeliveryAttempts: 7},
			}},
			{Supervisor: &Supervisor{Name: "backend", Strategy: sdk.RestForOne, MaxRestarts: 3, MaxSeconds: 10, Children: []Node{
				{Worker: simple("db", "ticker")},
				{Supervisor: &Supervisor{Name: "inner", Strategy: sdk.OneForOne, MaxRestarts: dev.MaxRestarts,
					MaxSeconds: dev.MaxSeconds, Children: []Node{{Worker: cache}}}},
				{Worker: simple("db_replica", "ticker")},
			}}},
			{Worker: last},
		}},
	}
	if !reflect.DeepEqual(app, want) {
		t.Errorf("app = %s\nwant %s", dumpApp(app), dumpApp(want))
	}
}

// dumpApp formats an app tree for failure messages.
func dumpApp(a *App) string {
	var b strings.Builder
	fmt.Fprintf(&b, "App{%s %s %s %s %s}", a.Name, a.File, a.Preset, a.LogLevel, a.Metrics)
	var walk func(s *Supervisor, indent string)
	walk = func(s *Supervisor, indent string) {
		fmt.Fprintf(&b, "\n%ssupervisor %+v", indent, *s)
		for _, c := range s.Children {
			if c.Worker != nil {
				fmt.Fprintf(&b, "\n%s  worker %+v hc=%+v", indent, *c.Worker, c.Worker.HealthCheck)
			}
			if c.Supervisor != nil {
				walk(c.Supervisor, indent+"  ")
			}
		}
	}
	if a.Root != nil {
		walk(a.Root, "")
	}
	return b.String()
}

func TestLoadFillsDefaultsFromThePreset(t *testing.T) {
	dir := newFixture(t)
	for _, preset := range []sdk.Preset{sdk.PresetProduction, sdk.PresetDevelopment, sdk.PresetHighAvailability, sdk.PresetTesting} {
		t.Run(preset.String(), func(t *testing.T) {
			presetLine := fmt.Sprintf("preset = %q", preset.String())
			if preset == sdk.PresetProduction {
				presetLine = "# no preset: production"
			}
			app, diags := loadString(t, dir, fmt.Sprintf(`app "a" {
  %s
  worker "w" {
    plugin = "bin/plugins/echo"
    health_check {}
  }
}
`, presetLine))
			if diags != nil {
				t.Fatalf("unexpected diagnostics:%s", dumpDiags(diags))
			}
			pv := preset.Values()
			w := app.Workers()[0]
			checks := []struct {
				name      string
				got, want any
			}{
				{"preset", app.Preset, preset},
				{"log level", app.LogLevel, pv.LogLevel},
				{"strategy", app.Root.Strategy, sdk.OneForOne},
				{"max_restarts", app.Root.MaxRestarts, pv.MaxRestarts},
				{"max_seconds", app.Root.MaxSeconds, pv.MaxSeconds},
				{"shutdown_timeout", w.ShutdownTimeout, pv.ShutdownTimeout},
				{"start_timeout", w.StartTimeout, DefaultStartTimeout},
				{"health interval", w.HealthCheck.Interval, pv.HealthCheckInterval},
				{"health timeout", w.HealthCheck.Timeout, min(pv.HealthCheckInterval, time.Second)},
				{"health failures", w.HealthCheck.Failures, 3},
				{"backoff", w.Backoff, Backoff{Min: pv.BackoffMin, Max: pv.BackoffMax, Jitter: DefaultBackoffJitter}},
				{"mailbox", w.Mailbox, Mailbox{Capacity: pv.MailboxCapacity, PriorityQueues: true, DeadLetter: true, MaxMessageSize: 1 << 20, MaxDeliveryAttempts: 5}},
				{"restart", w.Restart, sdk.Permanent},
				{"priority", w.Priority, sdk.ProcessNormal},
				{"max_memory", w.MaxMemory, uint64(0)},
				{"pool", w.Pool, 0},
				{"ids", w.IDs, []string{"w"}},
				{"sha256", w.SHA256 == nil, true},
				{"watch", w.Watch, false},
				{"metrics", app.Metrics, ""},
				{"config", string(w.Config), "{}"},
			}
			for _, c := range checks {
				if !reflect.DeepEqual(c.got, c.want) {
					t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
				}
			}
		})
	}
}

func TestLoadTreatsNullAsAbsent(t *testing.T) {
	dir := newFixture(t)
	app, diags := loadString(t, dir, `app "a" {
  max_restarts = null
  worker "w" {
    plugin  = "bin/plugins/echo"
    restart = null
    pool    = null
  }
}
`)
	if diags != nil {
		t.Fatalf("unexpected diagnostics:%s", dumpDiags(diags))
	}
	if got, want := app.Root.MaxRestarts, sdk.PresetProduction.Values().MaxRestarts; got != want {
		t.Errorf("max_restarts = %d, want the default %d", got, want)
	}
	if w := app.Workers()[0]; w.Pool != 0 || w.Restart != sdk.Permanent {
		t.Errorf("worker = pool %d restart %s, want the defaults", w.Pool, w.Restart)
	}
}

func TestLoadKeepsSupervisorsAndWorkersInFileOrder(t *testing.T) {
	dir := newFixture(t)
	app, diags := loadString(t, dir, `app "a" {
  supervisor "s1" {
    worker "a" { plugin = "bin/plugins/echo" }
  }
  worker "b" { plugin = "bin/plugins/echo" }
  supervisor "s2" {
    supervisor "s3" {
      worker "c" { plugin = "bin/plugins/echo" }
    }
    worker "d" { plugin = "bin/plugins/echo" }
  }
  worker "e" { plugin = "bin/plugins/echo" }
}
`)
	if diags != nil {
		t.Fatalf("unexpected diagnostics:%s", dumpDiags(diags))
	}
	var order []string
	var walk func(s *Supervisor)
	walk = func(s *Supervisor) {
		for _, c := range s.Children {
			if c.Worker != nil {
				order = append(order, "w:"+c.Worker.Name)
			} else {
				order = append(order, "s:"+c.Supervisor.Name)
				walk(c.Supervisor)
			}
		}
	}
	walk(app.Root)
	want := []string{"s:s1", "w:a", "w:b", "s:s2", "s:s3", "w:c", "w:d", "w:e"}
	if !reflect.DeepEqual(order, want) {
		t.Errorf("order = %v, want %v", order, want)
	}
}

func TestLoadReportsAMissingConfigFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "nope.hcl")
	app, err := Load(path)
	if app != nil || err == nil {
		t.Fatalf("Load = %v, %v; want nil and an error", app, err)
	}
	diags, ok := err.(hcl.Diagnostics)
	if !ok || len(diags) != 1 {
		t.Fatalf("error = %T %v, want one hcl.Diagnostic", err, err)
	}
	d := diags[0]
	if d.Subject == nil || d.Subject.Filename != path || d.Subject.Start.Line != 1 || !hasPhrase(d, "Cannot read config file") || !hasPhrase(d, "no such file") {
		t.Errorf("diagnostic = %s", dumpDiags(diags))
	}
	if out := Format(err); !strings.Contains(out, path+":1:1: error: Cannot read config file") {
		t.Errorf("Format = %q", out)
	}
}

func TestLoadResolvesPluginPathsAgainstTheConfigFile(t *testing.T) {
	dir := newFixture(t)
	sub := filepath.Join(dir, "conf")
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	abs := filepath.Join(dir, "bin", "plugins", "ticker")
	src := fmt.Sprintf(`app "a" {
  worker "rel" { plugin = "../bin/plugins/echo" }
  worker "abs" { plugin = %q }
}
`, abs)
	app, err := LoadBytes([]byte(src), filepath.Join(sub, "app.hcl"))
	if err != nil {
		t.Fatalf("LoadBytes: %s", Format(err))
	}
	ws := app.Workers()
	if got, want := ws[0].Plugin, filepath.Join(dir, "bin", "plugins", "echo"); got != want {
		t.Errorf("relative plugin = %s, want %s", got, want)
	}
	if ws[1].Plugin != abs {
		t.Errorf("absolute plugin = %s, want %s", ws[1].Plugin, abs)
	}
}

func TestLoadBytesReportsEveryProblemAtOnce(t *testing.T) {
	dir := newFixture(t)
	src, want := markers(`app "a" {
  strategy = ‸"all_for_one"
  worker "w" {
    plugin = ‸"bin/plugins/missing"
    shutdown_timeout = ‸"-1s"
    pool = ‸0
  }
  supervisor "s" {
    worker ‸"w" { plugin = "bin/plugins/echo" }
    worker "x" {
      plugin = "bin/plugins/echo"
      ‸colour = "blue"
    }
  }
}
`)
	phrases := []string{"Unknown restart strategy", "Plugin binary not found", "Negative duration", "Invalid pool size", `Duplicate ID "w"`, "Unsupported argument"}
	_, diags := loadString(t, dir, src)
	if len(diags) != len(want) {
		t.Fatalf("got %d diagnostics, want %d:%s", len(diags), len(want), dumpDiags(diags))
	}
	for i, d := range diags {
		if d.Subject.Start.Line != want[i].line || d.Subject.Start.Column != want[i].col || !hasPhrase(d, phrases[i]) {
			t.Errorf("diagnostic %d = %s, want %d:%d %q", i, dumpDiags(diags[i:i+1]), want[i].line, want[i].col, phrases[i])
		}
	}
	out := Format(diags)
	if !strings.HasSuffix(out, "\n6 errors\n") {
		t.Errorf("Format does not end with the count:\n%s", out)
	}
}

func TestLoadBytesGivesTheSameResultForTheSameInput(t *testing.T) {
	dir := newFixture(t)
	src := `app "a" {
  worker "w" {
    plugin = "bin/plugins/noexec"
    restart = "sometimes"
    priority = "urgent"
    max_memory = "lots"
  }
}
`
	first := Format(func() error { _, err := LoadBytes([]byte(src), filepath.Join(dir, "app.hcl")); return err }())
	for range 5 {
		_, err := LoadBytes([]byte(src), filepath.Join(dir, "app.hcl"))
		if got := Format(err); got != first {
			t.Fatalf("output differs between runs:\n%s\n---\n%s", first, got)
		}
	}
	if !bytes.Contains([]byte(first), []byte("4 errors")) {
		t.Errorf("want 4 errors, got:\n%s", first)
	}
}
