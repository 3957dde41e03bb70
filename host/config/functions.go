package config

import (
	"fmt"
	"os"

	"github.com/hashicorp/hcl/v2"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/function"
	"github.com/zclconf/go-cty/cty/function/stdlib"
)

// Limits that keep a config expression from allocating without bound (a
// config file is trusted input, but a typo such as format("%99999999s", x)
// should fail, not exhaust memory).
const (
	maxFormatWidth  = 1000    // widths and precisions in format verbs
	maxStringResult = 1 << 20 // bytes of a string built by a function
)

// Functions returns the functions available in config expressions, keyed by
// name; each call returns a new map the caller may change. They are all pure
// apart from env, which reads the host's environment when the config is
// loaded:
//
//	env(name[, default])  the environment variable name; default ("" if not
//	                      given) when it is not set
//	upper lower title trimspace replace split join format formatlist
//	concat length contains keys values lookup merge coalesce
//	min max abs ceil floor tostring tonumber tobool jsonencode
//
// The others are go-cty's stdlib functions (the same as Terraform's of the
// same name, except that replace does no regular expressions). Nothing reads
// files or the network.
func Functions() map[string]function.Function {
	return map[string]function.Function{
		"env": envFunc,

		"upper":      limitStrings(stdlib.UpperFunc),
		"lower":      limitStrings(stdlib.LowerFunc),
		"title":      limitStrings(stdlib.TitleFunc),
		"trimspace":  stdlib.TrimSpaceFunc,
		"replace":    limitStrings(stdlib.ReplaceFunc),
		"split":      stdlib.SplitFunc,
		"join":       limitStrings(stdlib.JoinFunc),
		"format":     limitStrings(stdlib.FormatFunc),
		"formatlist": limitStrings(stdlib.FormatListFunc),
		"jsonencode": limitStrings(stdlib.JSONEncodeFunc),

		"concat":   stdlib.ConcatFunc,
		"length":   stdlib.LengthFunc,
		"contains": stdlib.ContainsFunc,
		"keys":     stdlib.KeysFunc,
		"values":   stdlib.ValuesFunc,
		"lookup":   stdlib.LookupFunc,
		"merge":    stdlib.MergeFunc,
		"coalesce": stdlib.CoalesceFunc,

		"min":   stdlib.MinFunc,
		"max":   stdlib.MaxFunc,
		"abs":   stdlib.AbsoluteFunc,
		"ceil":  stdlib.CeilFunc,
		"floor": stdlib.FloorFunc,

		"tostring": stdlib.MakeToFunc(cty.String),
		"tonumber": stdlib.MakeToFunc(cty.Number),
		"tobool":   stdlib.MakeToFunc(cty.Bool),
	}
}

// evalContext returns the context every config expression is evaluated in:
// functions, no variables.
func evalContext() *hcl.EvalContext {
	return &hcl.EvalContext{Functions: Functions()}
}

// envFunc is env(name[, default]).
var envFunc = function.New(&function.Spec{
	Description: "Returns the value of the environment variable name, or default (\"\" if not given) when it is not set.",
	Params: []function.Parameter{
		{Name: "name", Type: cty.String, Description: "the environment variable"},
	},
	VarParam: &function.Parameter{Name: "default", Type: cty.String, Description: "the value when name is not set"},
	Type:     function.StaticReturnType(cty.String),
	Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
		if len(args) > 2 {
			return cty.NilVal, function.NewArgErrorf(2, "env takes a variable name and at most one default value")
		}
		name := args[0].AsString()
		if name == "" {
			return cty.NilVal, function.NewArgErrorf(0, "the variable name must not be empty")
		}
		if v, ok := os.LookupEnv(name); ok {
			return cty.StringVal(v), nil
		}
		if len(args) == 2 {
			return args[1], nil
		}
		return cty.StringVal(""), nil
	},
})

// errTooLarge is the error of a function whose string result would exceed
// maxStringResult.
var errTooLarge = fmt.Errorf("result longer than %d bytes", maxStringResult)

// limitStrings wraps f so that it refuses format verbs wider or more precise
// than maxFormatWidth (checked on a first string argument that is a format)
// and string results longer than maxStringResult.
func limitStrings(f function.Function) function.Function {
	spec := &function.Spec{
		Description: f.Description(),
		Params:      f.Params(),
		VarParam:    f.VarParam(),
		Type:        f.ReturnTypeForValues,
		Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
			if len(args) > 0 && args[0].Type() == cty.String && args[0].IsKnown() && !args[0].IsNull() {
				if err := checkFormatWidths(args[0].AsString()); err != nil {
					return cty.NilVal, function.NewArgError(0, err)
				}
			}
			v, err := f.Call(args)
			if err != nil {
				return v, err
			}
			if tooLarge(v) {
				return cty.NilVal, errTooLarge
			}
			return v, nil
		},
	}
	return function.New(spec)
}

// checkFormatWidths reports an error if s contains a %-verb with a width or
// precision above maxFormatWidth. Strings that are not formats pass (their
// digits after a '%' are simply checked too, which is harmless).
func checkFormatWidths(s string) error {
	for i := 0; i < len(s); i++ {
		if s[i] != '%' {
			continue
		}
		if i+1 < len(s) && s[i+1] == '%' {
			i++
			continue
		}
		j := i + 1
		for j < len(s) {
			c := s[j]
			if c >= '0' && c <= '9' {
				n := 0
				for j < len(s) && s[j] >= '0' && s[j] <= '9' {
					if n <= maxFormatWidth {
						n = n*10 + int(s[j]-'0')
					}
					j++
				}
				if n > maxFormatWidth {
					return fmt.Errorf("the width or precision in %q is too large (at most %d)", s[i:j], maxFormatWidth)
				}
				continue
			}
			if c == '.' || c == '-' || c == '+' || c == '#' || c == ' ' || c == '[' || c == ']' {
				j++
				continue
			}
			break
		}
		i = j - 1
	}
	return nil
}

// tooLarge reports whether v is a string, or a list/tuple of strings, longer
// than maxStringResult bytes in total.
func tooLarge(v cty.Value) bool {
	if !v.IsKnown() || v.IsNull() {
		return false
	}
	total := 0
	var walk func(v cty.Value) bool
	walk = func(v cty.Value) bool {
		switch {
		case !v.IsKnown() || v.IsNull():
		case v.Type() == cty.String:
			total += len(v.AsString())
		case v.CanIterateElements():
			for it := v.ElementIterator(); it.Next(); {
				_, e := it.Element()
				if walk(e) {
					return true
				}
			}
		}
		return total > maxStringResult
	}
	return walk(v)
}
