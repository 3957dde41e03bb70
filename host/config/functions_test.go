package config

import (
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
)

// eval evaluates the HCL expression src in the loader's context.
func eval(t *testing.T, src string) (cty.Value, hcl.Diagnostics) {
	t.Helper()
	expr, diags := hclsyntax.ParseExpression([]byte(src), "expr.hcl", hcl.InitialPos)
	if diags.HasErrors() {
		t.Fatalf("parse %s:%s", src, dumpDiags(diags))
	}
	return expr.Value(evalContext())
}

func TestFunctionsEvaluate(t *testing.T) {
	t.Setenv("VIGIL_TEST_ENV", "from the environment")
	t.Setenv("VIGIL_TEST_EMPTY", "")
	tests := map[string]struct {
		src  string
		want cty.Value
	}{
		"env":                     {`env("VIGIL_TEST_ENV")`, cty.StringVal("from the environment")},
		"env unset":               {`env("VIGIL_TEST_SURELY_UNSET")`, cty.StringVal("")},
		"env unset with default":  {`env("VIGIL_TEST_SURELY_UNSET", "dflt")`, cty.StringVal("dflt")},
		"env set but empty":       {`env("VIGIL_TEST_EMPTY", "dflt")`, cty.StringVal("")},
		"env set beats a default": {`env("VIGIL_TEST_ENV", "dflt")`, cty.StringVal("from the environment")},
		"upper":                   {`upper("abc")`, cty.StringVal("ABC")},
		"lower":                   {`lower("ABC")`, cty.StringVal("abc")},
		"title":                   {`title("hello world")`, cty.StringVal("Hello World")},
		"trimspace":               {`trimspace("  x ")`, cty.StringVal("x")},
		"replace":                 {`replace("a-b-c", "-", "+")`, cty.StringVal("a+b+c")},
		"format":                  {`format("%s=%d", "n", 3)`, cty.StringVal("n=3")},
		"format with a width":     {`format("%5s|", "x")`, cty.StringVal("    x|")},
		"format literal percent":  {`format("100%%%s", "!")`, cty.StringVal("100%!")},
		"join":                    {`join(",", ["a", "b"])`, cty.StringVal("a,b")},
		"split":                   {`split(",", "a,b")`, cty.ListVal([]cty.Value{cty.StringVal("a"), cty.StringVal("b")})},
		"concat":                  {`concat(["a"], ["b"])`, cty.TupleVal([]cty.Value{cty.StringVal("a"), cty.StringVal("b")})},
		"length":                  {`length([1, 2, 3])`, cty.NumberIntVal(3)},
		"min":                     {`min(4, 2, 8)`, cty.NumberIntVal(2)},
		"max":                     {`max(4, 2, 8)`, cty.NumberIntVal(8)},
		"abs":                     {`abs(-3)`, cty.NumberIntVal(3)},
		"coalesce":                {`coalesce(null, "b")`, cty.StringVal("b")},
		"tonumber":                {`tonumber("42")`, cty.NumberIntVal(42)},
		"jsonencode":              {`jsonencode({a = 1})`, cty.StringVal(`{"a":1}`)},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got, diags := eval(t, tc.src)
			if diags.HasErrors() {
				t.Fatalf("%s:%s", tc.src, dumpDiags(diags))
			}
			if !got.RawEquals(tc.want) {
				t.Errorf("%s = %#v, want %#v", tc.src, got, tc.want)
			}
		})
	}
}

func TestFunctionsRefuseRunawayResults(t *testing.T) {
	tests := map[string]struct {
		src    string
		phrase string
	}{
		"huge width":             {`format("%99999s", "x")`, "too large"},
		"huge precision":         {`format("%.5000f", 1)`, "too large"},
		"huge width in a list":   {`formatlist("%2000d", [1])`, "too large"},
		"result over the limit":  {`format("%[1]s%[1]s", format("%1000s", join("", formatlist("%1000s", split(",", "` + strings.Repeat(",", 600) + `")))))`, "longer than"},
		"empty variable name":    {`env("")`, "must not be empty"},
		"no file access":         {`file("/etc/passwd")`, "unknown function"},
		"no regular expressions": {`regex("a", "b")`, "unknown function"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			_, diags := eval(t, tc.src)
			if !diags.HasErrors() {
				t.Fatalf("%s evaluated without error", tc.src)
			}
			if !strings.Contains(dumpDiags(diags), tc.phrase) {
				t.Errorf("%s:%s\nwant a message containing %q", tc.src, dumpDiags(diags), tc.phrase)
			}
		})
	}
}

func TestFunctionsReturnsAFreshMap(t *testing.T) {
	a := Functions()
	delete(a, "env")
	if _, ok := Functions()["env"]; !ok {
		t.Fatal("deleting from one Functions map changed another")
	}
	for _, want := range []string{"env", "upper", "lower", "format", "concat", "min", "max", "join"} {
		if _, ok := a[want]; !ok && want != "env" {
			t.Errorf("function %q missing", want)
		}
	}
}
