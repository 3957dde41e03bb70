package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
)

// newFixture returns a directory holding fake plugin binaries: executable
// bin/plugins/{echo,ticker,flaky}, a non-executable bin/plugins/noexec and a
// directory bin/plugins/dir.
func newFixture(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	plugins := filepath.Join(dir, "bin", "plugins")
	if err := os.MkdirAll(filepath.Join(plugins, "dir"), 0o755); err != nil {
		t.Fatal(err)
	}
	for name, mode := range map[string]os.FileMode{"echo": 0o755, "ticker": 0o755, "flaky": 0o700, "noexec": 0o644} {
		if err := os.WriteFile(filepath.Join(plugins, name), []byte("#!/bin/sh\nexit 0\n"), mode); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// loadString loads src as dir/app.hcl and returns the app or the
// diagnostics (failing the test if the error is anything else).
func loadString(t *testing.T, dir, src string) (*App, hcl.Diagnostics) {
	t.Helper()
	app, err := LoadBytes([]byte(src), filepath.Join(dir, "app.hcl"))
	if err == nil {
		if app == nil {
			t.Fatal("LoadBytes returned neither an app nor an error")
		}
		return app, nil
	}
	if app != nil {
		t.Errorf("LoadBytes returned an app together with an error")
	}
	var diags hcl.Diagnostics
	if !errors.As(err, &diags) {
		t.Fatalf("LoadBytes error is %T (%v), want hcl.Diagnostics", err, err)
	}
	return nil, diags
}

// marker marks an expected diagnostic position in test sources.
const marker = "‸"

// pos is a line and column, 1-based.
type pos struct{ line, col int }

// markers strips every marker from src and returns the clean source and the
// marked positions in order. Sources must not contain tabs; columns count
// runes, like hcl's for plain text.
func markers(src string) (string, []pos) {
	var clean strings.Builder
	var out []pos
	line, col := 1, 1
	for rest := src; rest != ""; {
		if strings.HasPrefix(rest, marker) {
			out = append(out, pos{line, col})
			rest = rest[len(marker):]
			continue
		}
		r := []rune(rest)[0]
		clean.WriteRune(r)
		rest = rest[len(string(r)):]
		if r == '\n' {
			line, col = line+1, 1
		} else {
			col++
		}
	}
	return clean.String(), out
}

// hasPhrase reports whether d's summary or detail contains phrase.
func hasPhrase(d *hcl.Diagnostic, phrase string) bool {
	return strings.Contains(d.Summary+"\n"+d.Detail, phrase)
}

// dumpDiags formats diags for failure messages.
func dumpDiags(diags hcl.Diagnostics) string {
	var b strings.Builder
	for _, d := range diags {
		b.WriteString("\n\t")
		if d.Subject != nil {
			b.WriteString(shortRange(*d.Subject) + ": ")
		}
		b.WriteString(d.Summary + " — " + d.Detail)
	}
	return b.String()
}
