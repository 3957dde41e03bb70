package config

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/hashicorp/hcl/v2"
)

// sourceExtra rides in hcl.Diagnostic.Extra of every diagnostic [Load]
// returns: it carries the source text the diagnostic points into, so that
// [Render] can show a snippet even for a config that never was a file
// ([LoadBytes]). It unwraps to whatever Extra the diagnostic had before, as
// hcl.DiagnosticExtra expects.
type sourceExtra struct {
	src   []byte
	inner any
}

// UnwrapDiagnosticExtra implements hcl.DiagnosticExtraUnwrapper.
func (e *sourceExtra) UnwrapDiagnosticExtra() any { return e.inner }

// finish prepares diags for returning from Load: every diagnostic gets a
// Subject (the start of the file when hcl gave none), the source for Render,
// and the list is sorted by position so that messages read top to bottom.
func finish(diags hcl.Diagnostics, filename string, src []byte) hcl.Diagnostics {
	for _, d := range diags {
		if d.Subject == nil {
			r := hcl.Range{Filename: filename, Start: hcl.InitialPos, End: hcl.InitialPos}
			d.Subject = &r
		}
		if _, ok := d.Extra.(*sourceExtra); !ok {
			d.Extra = &sourceExtra{src: src, inner: d.Extra}
		}
	}
	sort.SliceStable(diags, func(i, j int) bool {
		a, b := diags[i].Subject, diags[j].Subject
		if a.Filename != b.Filename {
			return a.Filename < b.Filename
		}
		return a.Start.Byte < b.Start.Byte
	})
	return diags
}

// Render writes err for a human to w. When err is (or wraps) the
// hcl.Diagnostics that [Load] returns, each problem is shown as
//
//	demo.hcl:3:14: error: Unknown restart strategy
//	    3 |   strategy = "one_for_al"
//	      |              ^^^^^^^^^^^^
//	  "one_for_al" is not a restart strategy. Use one of ...
//
// (file:line:col as editors understand it, the source line with the
// offending part underlined, then what to do), followed by a count when
// there is more than one. Any other error is written as its Error() text on
// one line; a nil err writes nothing. The source comes with the diagnostics
// from Load/LoadBytes; for diagnostics from elsewhere Render reads the file
// named in the range, and leaves out the snippet when it cannot.
//
// Render blocks only on w. It returns the first write error. It is safe for
// concurrent use as long as w is.
func Render(w io.Writer, err error) error {
	if err == nil {
		return nil
	}
	var diags hcl.Diagnostics
	if !errors.As(err, &diags) {
		_, werr := fmt.Fprintf(w, "%v\n", err)
		return werr
	}
	var b strings.Builder
	sources := map[string][]byte{}
	errorCount := 0
	for i, d := range diags {
		if d == nil {
			continue
		}
		if i > 0 {
			b.WriteByte('\n')
		}
		severity := "error"
		if d.Severity == hcl.DiagWarning {
			severity = "warning"
		} else {
			errorCount++
		}
		if d.Subject == nil {
			fmt.Fprintf(&b, "%s: %s\n", severity, d.Summary)
		} else {
			s := d.Subject
			fmt.Fprintf(&b, "%s:%d:%d: %s: %s\n", s.Filename, s.Start.Line, s.Start.Column, severity, d.Summary)
			writeSnippet(&b, s, sourceOf(d, sources))
		}
		if d.Detail != "" {
			for _, line := range strings.Split(d.Detail, "\n") {
				fmt.Fprintf(&b, "  %s\n", line)
			}
		}
	}
	if errorCount > 1 {
		fmt.Fprintf(&b, "\n%d errors\n", errorCount)
	}
	_, werr := io.WriteString(w, b.String())
	return werr
}

// Format returns what [Render] would write for err ("" for nil). It is safe
// for concurrent use.
func Format(err error) string {
	var b strings.Builder
	_ = Render(&b, err) // a strings.Builder does not fail
	return b.String()
}

// maxRenderedFile bounds the size of a file Render reads to show a snippet.
const maxRenderedFile = 8 << 20

// sourceOf returns the source d points into: the one Load attached, else the
// file named in its Subject (read once per Render, cached in sources), else
// nil.
func sourceOf(d *hcl.Diagnostic, sources map[string][]byte) []byte {
	if e, ok := hcl.DiagnosticExtra[*sourceExtra](d); ok && e != nil {
		return e.src
	}
	name := d.Subject.Filename
	if src, ok := sources[name]; ok {
		return src
	}
	var src []byte
	if fi, err := os.Stat(name); err == nil && fi.Mode().IsRegular() && fi.Size() <= maxRenderedFile {
		src, _ = os.ReadFile(name)
	}
	sources[name] = src
	return src
}

// writeSnippet writes the first source line of r with the part r covers
// underlined by carets. It writes nothing when src does not contain r.
func writeSnippet(b *strings.Builder, r *hcl.Range, src []byte) {
	start := r.Start.Byte
	if src == nil || start < 0 || start > len(src) {
		return
	}
	lineStart := start
	for lineStart > 0 && src[lineStart-1] != '\n' {
		lineStart--
	}
	lineEnd := start
	for lineEnd < len(src) && src[lineEnd] != '\n' {
		lineEnd++
	}
	end := r.End.Byte
	if end > lineEnd || end < start {
		end = lineEnd
	}
	line := strings.TrimRight(printable(src[lineStart:lineEnd]), "\r")
	var pad strings.Builder
	for _, c := range printable(src[lineStart:start]) {
		if c == '\t' {
			pad.WriteByte('\t')
		} else {
			pad.WriteByte(' ')
		}
	}
	carets := utf8.RuneCount(src[start:end])
	if carets < 1 {
		carets = 1
	}
	num := fmt.Sprintf("%d", r.Start.Line)
	gutter := strings.Repeat(" ", len(num))
	fmt.Fprintf(b, "  %s | %s\n", num, line)
	fmt.Fprintf(b, "  %s | %s%s\n", gutter, pad.String(), strings.Repeat("^", carets))
}

// printable returns s as a string with control characters other than tab
// and carriage return replaced by '?', so a snippet cannot drive the
// terminal. Invalid UTF-8 becomes U+FFFD, one per byte, like the caret count.
func printable(s []byte) string {
	return strings.Map(func(r rune) rune {
		if r == '\t' || r == '\r' || !unicode.IsControl(r) {
			return r
		}
		return '?'
	}, string(s))
}
