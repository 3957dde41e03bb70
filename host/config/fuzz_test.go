package config

import (
	"encoding/json"
	"path/filepath"
	"testing"

	"github.com/hashicorp/hcl/v2"
)

// FuzzLoad checks that LoadBytes never panics and that it either returns a
// complete app or diagnostics that all point into the file. The seed corpus
// in testdata/fuzz/FuzzLoad runs with every plain `go test`; explore with
//
//	go test -run '^$' -fuzz FuzzLoad -fuzztime 30s ./host/config/
func FuzzLoad(f *testing.F) {
	dir := newFixture(f)
	file := filepath.Join(dir, "fuzz.hcl")
	f.Add([]byte("app \"a\" {\n  worker \"w\" { plugin = \"bin/plugins/echo\" }\n}\n"))
	f.Add([]byte("app \"a\" {\n  worker \"w\" {\n    plugin = \"bin/plugins/echo\"\n    pool = 3\n    config {\n      x = env(\"HOME\")\n    }\n  }\n}\n"))
	f.Add([]byte(""))
	f.Fuzz(func(t *testing.T, src []byte) {
		app, err := LoadBytes(src, file)
		if err == nil {
			if app == nil || app.Root == nil {
				t.Fatalf("no error and no app tree: %+v", app)
			}
			for _, w := range app.Workers() {
				if !filepath.IsAbs(w.Plugin) || len(w.IDs) == 0 || !json.Valid(w.Config) {
					t.Fatalf("incomplete worker %+v", w)
				}
			}
			return
		}
		if app != nil {
			t.Fatal("an app together with an error")
		}
		diags, ok := err.(hcl.Diagnostics)
		if !ok || !diags.HasErrors() {
			t.Fatalf("error %T %v is not error diagnostics", err, err)
		}
		for _, d := range diags {
			if d.Subject == nil || d.Subject.Filename != file || d.Subject.Start.Line < 1 || d.Subject.Start.Column < 1 {
				t.Fatalf("diagnostic %q without a proper range: %+v", d.Summary, d.Subject)
			}
		}
		if Format(err) == "" {
			t.Fatal("Format rendered nothing")
		}
	})
}
