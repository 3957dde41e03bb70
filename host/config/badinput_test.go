package config

import (
	"path/filepath"
	"strings"
	"testing"
)

// TestLoadRejectsBadInput is the config part of the bad-input matrix: each
// row is a config with one or more problems, marked with ‸ where the
// diagnostic must point (file:line:col), and a key phrase of each message in
// file order. Every row must produce exactly those diagnostics.
func TestLoadRejectsBadInput(t *testing.T) {
	dir := newFixture(t)
	// w wraps worker attributes in a valid app with a single worker "w".
	w := func(body string) string {
		return "app \"a\" {\n  worker \"w\" {\n" + body + "\n  }\n}\n"
	}
	// p is a valid plugin line.
	const p = `    plugin = "bin/plugins/echo"` + "\n"
	tests := map[string]struct {
		src     string
		phrases []string
	}{
		// Syntax and schema.
		"syntax error":               {"app \"a\" {\n  max_restarts = 3 +‸\n}\n", []string{"Invalid expression"}},
		"unclosed block":             {"app \"a\" {\n  worker \"w\" ‸{\n", []string{"Unclosed configuration block"}},
		"empty file":                 {"‸", []string{"Missing app block"}},
		"two app blocks":             {"app \"a\" {}\n‸app \"b\" {}\n", []string{"Duplicate app block"}},
		"unknown top-level block":    {"app \"a\" {}\n‸job \"x\" {}\n", []string{`Blocks of type "job" are not expected here`}},
		"app without a name":         {"app ‸{}\n", []string{"Missing name for app"}},
		"unknown app attribute":      {"app \"a\" {\n  ‸stratgy = \"one_for_all\"\n}\n", []string{`Did you mean "strategy"?`}},
		"unknown worker attribute":   {w(p + "    ‸restarts = \"permanent\""), []string{`An argument named "restarts" is not expected here. Did you mean "restart"?`}},
		"unknown worker block":       {w(p + "    ‸healthcheck {}"), []string{`Did you mean "health_check"?`}},
		"preset in a supervisor":     {"app \"a\" {\n  supervisor \"s\" {\n    ‸preset = \"testing\"\n  }\n}\n", []string{`An argument named "preset" is not expected here`}},
		"unknown mailbox attribute":  {w(p + "    mailbox {\n      ‸size = 3\n    }"), []string{`An argument named "size" is not expected here`}},
		"duplicate backoff block":    {w(p + "    backoff {}\n    ‸backoff {}"), []string{"Duplicate backoff block"}},
		"block inside config":        {w(p + "    config {\n      ‸inner {}\n    }"), []string{`Unexpected "inner" block`}},
		"missing plugin":             {"app \"a\" {\n  ‸worker \"w\" {}\n}\n", []string{`Missing required argument "plugin"`}},
		"unknown function":           {w(p + "    env = { A = ‸getenv(\"X\") }"), []string{"Call to unknown function"}},
		"variable reference":         {w(p + "    restart = ‸permanent"), []string{"Variables not allowed"}},
		"format width too large":     {w(p + "    config {\n      x = format(\"‸%999999999s\", \"a\")\n    }"), []string{"too large"}},
		"invalid worker name":        {"app \"a\" {\n  worker ‸\"my worker\" {\n" + p + "  }\n}\n", []string{"Invalid worker name"}},
		"invalid env variable name":  {w(p + "    env = ‸{ \"A=B\" = \"x\" }"), []string{"Invalid environment variable"}},
		"config value not JSONable":  {w(p + "    config {\n      x = ‸1 / 0\n    }"), []string{"cannot serialize infinity"}},
		"too many arguments for env": {w(p + "    env = { A = env(\"X\", \"d\", \"‸e\") }"), []string{"at most one default"}},

		// Wrong types.
		"pool is a string":             {w(p + "    pool = ‸\"four\""), []string{`Wrong type for "pool"`, "a number is required"}},
		"pool is a fraction":           {w(p + "    pool = ‸1.5"), []string{`Invalid value for "pool"`, "whole number"}},
		"args is a string":             {w(p + "    args = ‸\"-x\""), []string{`Wrong type for "args"`, "list of strings"}},
		"env is a list":                {w(p + "    env = ‸[\"A=B\"]"), []string{`Wrong type for "env"`, "object of strings"}},
		"plugin is a list":             {w("    plugin = ‸[\"bin/plugins/echo\"]"), []string{`Wrong type for "plugin"`, "string required"}},
		"priority_queues is a string":  {w(p + "    mailbox {\n      priority_queues = ‸\"maybe\"\n    }"), []string{`Wrong type for "priority_queues"`, "true or false"}},
		"max_restarts is a bool":       {"app \"a\" {\n  max_restarts = ‸true\n}\n", []string{`Wrong type for "max_restarts"`}},
		"watch is a string":            {w(p + "    watch = ‸\"yes\""), []string{`Wrong type for "watch"`, "true or false"}},
		"metrics on every interface":   {"app \"a\" {\n  metrics = ‸\"0.0.0.0:9102\"\n}\n", []string{"Invalid metrics address", "not a loopback address", "127.0.0.1:9102"}},
		"metrics without a port":       {"app \"a\" {\n  metrics = ‸\"127.0.0.1\"\n}\n", []string{"Invalid metrics address", "is not host:port"}},
		"env value is an object":       {w(p + "    env = ‸{ A = { B = 1 } }"), []string{`Wrong type for "env"`}},
		"config is a single attribute": {w(p + "    ‸config = { a = 1 }"), []string{`An argument named "config" is not expected here`}},

		// Duplicate IDs.
		"duplicate worker names":            {"app \"a\" {\n  worker \"w\" {\n" + p + "  }\n  worker ‸\"w\" {\n" + p + "  }\n}\n", []string{`Duplicate ID "w"`}},
		"duplicate across supervisors":      {"app \"a\" {\n  supervisor \"s\" {\n    worker \"w\" { plugin = \"bin/plugins/echo\" }\n  }\n  supervisor \"t\" {\n    worker ‸\"w\" { plugin = \"bin/plugins/echo\" }\n  }\n}\n", []string{`Duplicate ID "w"`, `worker "w" (at `}},
		"pool ID collides with a worker":    {"app \"a\" {\n  worker \"echo\" {\n" + p + "    pool = 2\n  }\n  worker ‸\"echo_1\" {\n" + p + "  }\n}\n", []string{`Duplicate ID "echo_1"`, `pool "echo" (IDs echo_0 … echo_1)`}},
		"worker collides with a pool ID":    {"app \"a\" {\n  worker \"echo_0\" {\n" + p + "  }\n  worker ‸\"echo\" {\n" + p + "    pool = 2\n  }\n}\n", []string{`Duplicate ID "echo_0"`}},
		"pool name collides with a pool ID": {"app \"a\" {\n  worker \"a\" {\n" + p + "    pool = 12\n  }\n  worker ‸\"a_1\" {\n" + p + "    pool = 1\n  }\n}\n", []string{`Duplicate ID "a_1"`, `pool "a" (IDs a_0 … a_11)`}},
		"supervisor collides with worker":   {"app \"a\" {\n  worker \"x\" {\n" + p + "  }\n  supervisor ‸\"x\" {}\n}\n", []string{`Duplicate ID "x"`, `supervisor "x" uses the ID`}},

		// Numbers out of range.
		"pool = 0":                  {w(p + "    pool = ‸0"), []string{"Invalid pool size", "at least 1"}},
		"pool is negative":          {w(p + "    pool = ‸-3"), []string{"Invalid pool size"}},
		"pool is too large":         {w(p + "    pool = ‸100000"), []string{"at most 1000"}},
		"negative max_restarts":     {"app \"a\" {\n  max_restarts = ‸-1\n}\n", []string{"max_restarts must be at least 0"}},
		"zero max_seconds":          {"app \"a\" {\n  supervisor \"s\" {\n    max_seconds = ‸0\n  }\n}\n", []string{"max_seconds must be at least 1"}},
		"zero health failures":      {w(p + "    health_check {\n      failures = ‸0\n    }"), []string{"failures must be at least 1"}},
		"zero mailbox capacity":     {w(p + "    mailbox {\n      capacity = ‸0\n    }"), []string{"capacity must be at least 1"}},
		"zero delivery attempts":    {w(p + "    mailbox {\n      max_delivery_attempts = ‸0\n    }"), []string{"max_delivery_attempts must be at least 1"}},
		"huge mailbox capacity":     {w(p + "    mailbox {\n      capacity = ‸1e9\n    }"), []string{"capacity must be at most 1000000"}},
		"huge number literal":       {"app \"a\" {\n  log_level = \"${‸1e9999999}\"\n}\n", []string{"Number out of range"}},
		"infinite number literal":   {"app \"a\" {\n  max_seconds = ‸1e999999999\n}\n", []string{"Number out of range"}},
		"number in a string":        {w(p + "    config {\n      x = \"${tonumber(\"‸1e-99999\")}\"\n    }"), []string{"Number out of range"}},
		"tiny number literal":       {w(p + "    config {\n      x = ‸1e-9999999\n    }"), []string{"Number out of range"}},
		"number too large for int":  {"app \"a\" {\n  max_restarts = ‸1e30\n}\n", []string{`Invalid value for "max_restarts"`}},
		"backoff min above max":     {w(p + "    backoff {\n      min = ‸\"2s\"\n      max = \"1s\"\n    }"), []string{"min (2s) must not exceed max (1s)"}},
		"backoff jitter above 1":    {w(p + "    backoff {\n      jitter = ‸1.5\n    }"), []string{"use a number from 0 to 1 (got 1.5)"}},
		"health timeout > interval": {w(p + "    health_check {\n      interval = \"1s\"\n      timeout = ‸\"2s\"\n    }"), []string{"must not exceed the interval"}},

		// Durations and sizes.
		"negative duration":           {w(p + "    shutdown_timeout = ‸\"-5s\""), []string{`Negative duration for "shutdown_timeout"`, `"-5s" is negative`}},
		"negative backoff":            {w(p + "    backoff {\n      min = ‸\"-1ms\"\n    }"), []string{`Negative duration for "min"`}},
		"negative ttl":                {w(p + "    mailbox {\n      default_ttl = ‸\"-30s\"\n    }"), []string{`Negative duration for "default_ttl"`}},
		"zero start timeout":          {w(p + "    start_timeout = ‸\"0s\""), []string{`start_timeout must be greater than zero`}},
		"malformed duration":          {w(p + "    shutdown_timeout = ‸\"5 seconds\""), []string{`Invalid duration for "shutdown_timeout"`, `durations look like "5s" or "200ms"`}},
		"duration without unit":       {w(p + "    health_check {\n      interval = ‸5\n    }"), []string{`A bare number has no unit: write "5s"`}},
		"malformed size":              {w(p + "    max_memory = ‸\"256 megs\""), []string{`Invalid size for "max_memory"`, `sizes look like "256MiB"`}},
		"fractional bytes":            {w(p + "    mailbox {\n      max_message_size = ‸\"1.5B\"\n    }"), []string{`Invalid size for "max_message_size"`}},
		"zero max_memory":             {w(p + "    max_memory = ‸\"0MiB\""), []string{"leave max_memory out for no limit"}},
		"size overflows":              {w(p + "    max_memory = ‸\"99999999999TiB\""), []string{`Invalid size for "max_memory"`}},
		"duration with unknown units": {w(p + "    start_timeout = ‸\"10 sec\""), []string{`Invalid duration for "start_timeout"`}},

		// The plugin binary.
		"missing plugin file":     {w("    plugin = ‸\"bin/plugins/nope\""), []string{"Plugin binary not found", filepath.Join(dir, "bin/plugins/nope") + " does not exist: build it with `make plugins` or fix the path"}},
		"directory, not a file":   {w("    plugin = ‸\"bin/plugins/dir\""), []string{"Plugin path is a directory", filepath.Join(dir, "bin/plugins/dir") + " is a directory"}},
		"non-executable file":     {w("    plugin = ‸\"bin/plugins/noexec\""), []string{"Plugin binary is not executable", "chmod +x " + filepath.Join(dir, "bin/plugins/noexec")}},
		"empty plugin path":       {w("    plugin = ‸\"\""), []string{"Empty plugin path"}},
		"plugin is not a regular": {w("    plugin = ‸\"/dev/null\""), []string{"Plugin path is not a regular file", "/dev/null is a device"}},
		"sha256 too short":        {w(p + "    sha256 = ‸\"ab12\""), []string{"Invalid sha256", "64 hexadecimal characters (got 4 characters)"}},
		"sha256 not hex":          {w(p + "    sha256 = ‸\"" + strings.Repeat("zz", 32) + "\""), []string{"Invalid sha256", "sha256sum"}},

		// Enums.
		"unknown preset":     {"app \"a\" {\n  preset = ‸\"prod\"\n}\n", []string{"Unknown preset", `"production", "development", "high_availability" or "testing"`}},
		"unknown log level":  {"app \"a\" {\n  log_level = ‸\"verbose\"\n}\n", []string{"Unknown log level", `"trace", "debug", "info", "warn" or "error"`}},
		"unknown strategy":   {"app \"a\" {\n  supervisor \"s\" {\n    strategy = ‸\"one_for_al\"\n  }\n}\n", []string{"Unknown restart strategy", `Did you mean "one_for_all"?`}},
		"unknown restart":    {w(p + "    restart = ‸\"always\""), []string{"Unknown restart type", `"permanent", "transient" or "temporary"`}},
		"unknown priority":   {w(p + "    priority = ‸\"hihg\""), []string{"Unknown priority", `Did you mean "high"?`}},
		"case matters":       {w(p + "    restart = ‸\"Permanent\""), []string{"Unknown restart type", `Did you mean "permanent"?`}},
		"enum from function": {w(p + "    restart = ‸upper(\"permanent\")"), []string{`"PERMANENT" is not a restart type`}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			src, want := markers(tc.src)
			if len(want) != 1 {
				t.Fatalf("bad test: %d markers, want 1", len(want))
			}
			_, diags := loadString(t, dir, src)
			if len(diags) != 1 {
				t.Fatalf("got %d diagnostics, want 1:%s", len(diags), dumpDiags(diags))
			}
			d := diags[0]
			if d.Subject == nil {
				t.Fatalf("diagnostic without a range:%s", dumpDiags(diags))
			}
			if got, wantFile := d.Subject.Filename, filepath.Join(dir, "app.hcl"); got != wantFile {
				t.Errorf("file = %s, want %s", got, wantFile)
			}
			if d.Subject.Start.Line != want[0].line || d.Subject.Start.Column != want[0].col {
				t.Errorf("position = %d:%d, want %d:%d:%s", d.Subject.Start.Line, d.Subject.Start.Column, want[0].line, want[0].col, dumpDiags(diags))
			}
			for _, phrase := range tc.phrases {
				if !hasPhrase(d, phrase) {
					t.Errorf("message lacks %q:%s", phrase, dumpDiags(diags))
				}
			}
		})
	}
}
