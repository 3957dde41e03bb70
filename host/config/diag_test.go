package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
)

func TestRenderShowsPositionSnippetAndAdvice(t *testing.T) {
	dir := newFixture(t)
	src := "app \"a\" {\n\tstrategy = \"one_for_al\"\n  worker \"w\" {\n    plugin = \"bin/plugins/echo\"\n    pool = 0\n  }\n}\n"
	_, err := LoadBytes([]byte(src), filepath.Join(dir, "app.hcl"))
	if err == nil {
		t.Fatal("LoadBytes accepted a bad config")
	}
	file := filepath.Join(dir, "app.hcl")
	want := file + `:2:13: error: Unknown restart strategy
  2 | 	strategy = "one_for_al"
    | 	           ^^^^^^^^^^^^
  "one_for_al" is not a restart strategy. Use one of "one_for_one", "one_for_all" or "rest_for_one". Did you mean "one_for_all"?

` + file + `:5:12: error: Invalid pool size
  5 |     pool = 0
    |            ^
  pool = 0 would start no worker: pool must be at least 1. Leave pool out for a single worker named "w", or set the number of copies to run (at most 1000).

2 errors
`
	if got := Format(err); got != want {
		t.Errorf("Format =\n%s\nwant\n%s", got, want)
	}
}

// failingWriter fails every write.
type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

func TestRenderHandlesOtherInputs(t *testing.T) {
	dir := t.TempDir()
	onDisk := filepath.Join(dir, "disk.hcl")
	if err := os.WriteFile(onDisk, []byte("app \"x\" {\n  bad = 1\n}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	rangeAt := func(file string, line, col, byteOff, length int) *hcl.Range {
		return &hcl.Range{Filename: file,
			Start: hcl.Pos{Line: line, Column: col, Byte: byteOff},
			End:   hcl.Pos{Line: line, Column: col + length, Byte: byteOff + length}}
	}
	tests := map[string]struct {
		err  error
		want string
	}{
		"nil":             {nil, ""},
		"plain error":     {errors.New("boom"), "boom\n"},
		"wrapped diags":   {fmt.Errorf("loading: %w", hcl.Diagnostics{{Severity: hcl.DiagError, Summary: "S", Detail: "D"}}), "error: S\n  D\n"},
		"warning":         {hcl.Diagnostics{{Severity: hcl.DiagWarning, Summary: "W"}}, "warning: W\n"},
		"source on disk":  {hcl.Diagnostics{{Severity: hcl.DiagError, Summary: "S", Subject: rangeAt(onDisk, 2, 3, 12, 3)}}, onDisk + ":2:3: error: S\n  2 |   bad = 1\n    |   ^^^\n"},
		"no source":       {hcl.Diagnostics{{Severity: hcl.DiagError, Summary: "S", Subject: rangeAt(filepath.Join(dir, "gone.hcl"), 7, 1, 99, 1)}}, filepath.Join(dir, "gone.hcl") + ":7:1: error: S\n"},
		"range past file": {hcl.Diagnostics{{Severity: hcl.DiagError, Summary: "S", Subject: rangeAt(onDisk, 9, 1, 9999, 1)}}, onDisk + ":9:1: error: S\n"},
		"control characters": {
			finish(hcl.Diagnostics{{Severity: hcl.DiagError, Summary: "S", Subject: rangeAt("c.hcl", 1, 5, 4, 1)}}, "c.hcl", []byte("a\x1b[2Jb = 1\n")),
			"c.hcl:1:5: error: S\n  1 | a?[2Jb = 1\n    |     ^\n",
		},
		"multi-line subject": {
			finish(hcl.Diagnostics{{Severity: hcl.DiagError, Summary: "S", Subject: &hcl.Range{Filename: "m.hcl",
				Start: hcl.Pos{Line: 1, Column: 3, Byte: 2}, End: hcl.Pos{Line: 2, Column: 2, Byte: 6}}}}, "m.hcl", []byte("x = [\n1]\n")),
			"m.hcl:1:3: error: S\n  1 | x = [\n    |   ^^^\n",
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if got := Format(tc.err); got != tc.want {
				t.Errorf("Format = %q, want %q", got, tc.want)
			}
		})
	}
	if err := Render(failingWriter{}, errors.New("x")); err == nil {
		t.Error("Render did not return the write error")
	}
}

func TestLoadDiagnosticsKeepHCLExtras(t *testing.T) {
	dir := newFixture(t)
	_, diags := loadString(t, dir, "app \"a\" {\n  worker \"w\" {\n    plugin = upper(1, 2)\n  }\n}\n")
	if len(diags) == 0 {
		t.Fatal("no diagnostics")
	}
	for _, d := range diags {
		if _, ok := hcl.DiagnosticExtra[*sourceExtra](d); !ok {
			t.Errorf("diagnostic %q carries no source", d.Summary)
		}
	}
	if _, ok := hcl.DiagnosticExtra[hclsyntax.FunctionCallDiagExtra](diags[0]); !ok {
		t.Errorf("the function-call extra of %q was lost", diags[0].Summary)
	}
	if !strings.Contains(Format(diags), "upper(1, 2)") {
		t.Errorf("snippet missing:\n%s", Format(diags))
	}
}
