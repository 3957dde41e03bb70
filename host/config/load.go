package config

import (
	"encoding/hex"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/vigil-run/vigil/sdk"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"
	"github.com/zclconf/go-cty/cty/gocty"
	ctyjson "github.com/zclconf/go-cty/cty/json"
)

// Defaults of the settings the preset does not cover. The package
// documentation is the reference that lists them all.
const (
	DefaultStartTimeout        = 10 * time.Second // worker start_timeout
	DefaultHealthFailures      = 3                // health_check failures
	DefaultBackoffJitter       = 0.2              // backoff jitter
	DefaultMaxHealthTimeout    = time.Second      // health_check timeout = min(interval, this)
	DefaultMaxMessageSize      = 1 << 20          // mailbox max_message_size, bytes
	DefaultMaxDeliveryAttempts = 5                // mailbox max_delivery_attempts
)

// Load reads the config file at path, decodes it and validates it, filling
// every default (see the package documentation). Relative plugin paths are
// resolved against the file's directory, and each plugin binary must exist,
// be a regular file and be executable.
//
// On any problem Load returns a nil *App and an error of type
// hcl.Diagnostics listing every problem found (not just the first), each
// with a Subject range (file:line:col) and a Detail that says what to do;
// [Render] and [Format] print them with source snippets. A file that cannot
// be read is reported the same way. Load blocks on file-system access only
// and is safe for concurrent use (env() reads the process environment at the
// time of the call).
func Load(path string) (*App, error) {
	src, err := os.ReadFile(path)
	if err != nil {
		r := hcl.Range{Filename: path, Start: hcl.InitialPos, End: hcl.InitialPos}
		return nil, finish(hcl.Diagnostics{{
			Severity: hcl.DiagError,
			Summary:  "Cannot read config file",
			Detail:   fmt.Sprintf("%v. Check the path; relative paths are resolved against the current directory.", err),
			Subject:  &r,
		}}, path, nil)
	}
	return LoadBytes(src, path)
}

// LoadBytes is [Load] for a config already in memory: src is the HCL text
// and filename the name used in messages, whose directory is the base of
// relative plugin paths (made absolute against the current directory when
// filename is relative). It never panics on malformed input. Like Load it
// returns hcl.Diagnostics on failure and is safe for concurrent use.
func LoadBytes(src []byte, filename string) (*App, error) {
	l := &loader{filename: filename, ctx: evalContext(), ids: map[string]idOwner{}}
	app := l.load(src)
	if l.diags.HasErrors() {
		return nil, finish(l.diags, filename, src)
	}
	return app, nil
}

// loader holds the state of one LoadBytes call.
type loader struct {
	filename string           // as given: used in ranges and messages
	dir      string           // absolute directory of the file: base of relative plugin paths
	ctx      *hcl.EvalContext // functions for every expression
	preset   sdk.PresetValues // the app's defaults
	ids      map[string]idOwner
	diags    hcl.Diagnostics
}

// errorf records an error diagnostic about rng.
func (l *loader) errorf(rng hcl.Range, summary, detail string, args ...any) {
	r := rng
	l.diags = append(l.diags, &hcl.Diagnostic{
		Severity: hcl.DiagError,
		Summary:  summary,
		Detail:   fmt.Sprintf(detail, args...),
		Subject:  &r,
	})
}

// load decodes src into an App, recording problems in l.diags.
func (l *loader) load(src []byte) *App {
	absFile, err := filepath.Abs(l.filename)
	if err != nil {
		l.errorf(hcl.Range{Filename: l.filename, Start: hcl.InitialPos, End: hcl.InitialPos},
			"Cannot resolve the config file's directory", "%v.", err)
		return nil
	}
	l.dir = filepath.Dir(absFile)

	file, diags := hclsyntax.ParseConfig(src, l.filename, hcl.InitialPos)
	l.diags = append(l.diags, diags...)
	if diags.HasErrors() {
		return nil // decoding a broken syntax tree only adds noise
	}
	if body, ok := file.Body.(*hclsyntax.Body); ok && l.checkNumbers(body) {
		return nil // evaluating them could take minutes
	}
	content, diags := file.Body.Content(fileSchema)
	l.diags = append(l.diags, diags...)
	apps := content.Blocks
	switch {
	case len(apps) == 0:
		if !l.diags.HasErrors() {
			l.errorf(file.Body.MissingItemRange(), "Missing app block",
				"A config file defines exactly one app, for example:\n"+
					"  app \"demo\" {\n    worker \"echo\" { plugin = \"bin/plugins/echo\" }\n  }")
		}
		return nil
	case len(apps) > 1:
		for _, b := range apps[1:] {
			l.errorf(b.DefRange, "Duplicate app block",
				"A config file defines exactly one app; the first is %q at %s. Move these children into it, or use a second file.",
				apps[0].Labels[0], shortRange(apps[0].DefRange))
		}
	}
	block := apps[0]
	body, diags := block.Body.Content(appSchema)
	l.diags = append(l.diags, diags...)

	app := &App{Name: block.Labels[0], File: absFile, Preset: sdk.PresetProduction}
	if p, ok := enumAttr(l, body.Attributes["preset"], "preset", "preset", presetNames, sdk.ParsePreset); ok {
		app.Preset = p
	}
	l.preset = app.Preset.Values()
	app.LogLevel = l.preset.LogLevel
	if lvl, ok := enumAttr(l, body.Attributes["log_level"], "log_level", "log level", logLevels, parseLogLevel); ok {
		app.LogLevel = lvl
	}
	if a := body.Attributes["metrics"]; a != nil {
		if addr, ok := l.stringAttr(a, "metrics"); ok {
			if err := LoopbackAddress(addr); err != nil {
				l.errorf(a.Expr.Range(), "Invalid metrics address", "%v. The Prometheus endpoint is served on loopback only, for example metrics = \"127.0.0.1:9102\"; leave the attribute out for no endpoint.", err)
			} else {
				app.Metrics = addr
			}
		}
	}
	app.Root = l.supervisor(blockApp, block, body)
	return app
}

// maxNumberExp bounds the binary exponent of number literals (2^1100 is
// about 1e331): converting a number such as 1e999999999 to text, as a
// template or a string attribute does, would build a billion digits.
const maxNumberExp = 1100

// hugeNumberString matches strings that parse as numbers with an exponent
// of five digits or more.
var hugeNumberString = regexp.MustCompile(`^\s*[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)[eE][+-]?[0-9]{5,}\s*$`)

// checkNumbers reports number literals in body whose magnitude is out of
// range, and returns whether it found any.
func (l *loader) checkNumbers(body *hclsyntax.Body) bool {
	found := false
	hclsyntax.VisitAll(body, func(n hclsyntax.Node) hcl.Diagnostics {
		lit, ok := n.(*hclsyntax.LiteralValueExpr)
		if !ok || !lit.Val.IsKnown() || lit.Val.IsNull() {
			return nil
		}
		if lit.Val.Type() == cty.String {
			// A string that is a number with a huge exponent becomes that
			// number in arithmetic or tonumber().
			if hugeNumberString.MatchString(lit.Val.AsString()) {
				found = true
				l.errorf(lit.SrcRange, "Number out of range",
					"This string is a number with an exponent of 10000 or more, which would take minutes to convert. Numbers in a config must lie between 1e-300 and 1e300 in magnitude.")
			}
			return nil
		}
		if lit.Val.Type() != cty.Number {
			return nil
		}
		bf := lit.Val.AsBigFloat()
		if bf.Sign() == 0 {
			return nil
		}
		if exp := bf.MantExp(nil); bf.IsInf() || exp > maxNumberExp || exp < -maxNumberExp {
			found = true
			l.errorf(lit.SrcRange, "Number out of range",
				"Numbers in a config must lie between 1e-300 and 1e300 in magnitude (or be zero).")
		}
		return nil
	})
	return found
}

// parseLogLevel accepts the names in logLevels.
func parseLogLevel(s string) (string, error) {
	for _, n := range logLevels {
		if n == s {
			return s, nil
		}
	}
	return "", fmt.Errorf("%w: unknown log level %q", sdk.ErrInvalidSpec, s)
}

// supervisor builds the supervisor (or, for kind "app", the root supervisor)
// defined by block, whose body has been decoded into c.
func (l *loader) supervisor(kind string, block *hcl.Block, c *hcl.BodyContent) *Supervisor {
	name, nameRange := block.Labels[0], block.LabelRanges[0]
	s := &Supervisor{
		Name:        name,
		Strategy:    sdk.OneForOne,
		MaxRestarts: l.preset.MaxRestarts,
		MaxSeconds:  l.preset.MaxSeconds,
		Range:       block.DefRange,
	}
	// The root is nobody's child: its name is not an ID.
	if l.checkName(kind, name, nameRange) && kind != blockApp {
		l.claim(name, fmt.Sprintf("%s %q", kind, name), nameRange)
	}
	attrs := c.Attributes
	if v, ok := enumAttr(l, attrs["strategy"], "strategy", "restart strategy", strategyNames, sdk.ParseRestartStrategy); ok {
		s.Strategy = v
	}
	if n, ok := l.intAttr(attrs["max_restarts"], "max_restarts", 0, -1); ok {
		s.MaxRestarts = n
	}
	if n, ok := l.intAttr(attrs["max_seconds"], "max_seconds", 1, -1); ok {
		s.MaxSeconds = n
	}
	// Content returns blocks in file order: the start order of children.
	for _, b := range c.Blocks {
		switch b.Type {
		case blockWorker:
			body, diags := b.Body.Content(workerSchema)
			l.diags = append(l.diags, diags...)
			s.Children = append(s.Children, Node{Worker: l.worker(b, body)})
		case blockSupervisor:
			body, diags := b.Body.Content(supervisorSchema)
			l.diags = append(l.diags, diags...)
			s.Children = append(s.Children, Node{Supervisor: l.supervisor(blockSupervisor, b, body)})
		}
	}
	return s
}

// single returns the one block of type typ in c, or nil; further blocks of
// that type are reported as duplicates.
func (l *loader) single(c *hcl.BodyContent, typ string) *hcl.Block {
	var first *hcl.Block
	for _, b := range c.Blocks {
		if b.Type != typ {
			continue
		}
		if first == nil {
			first = b
			continue
		}
		l.errorf(b.DefRange, fmt.Sprintf("Duplicate %s block", typ),
			"A worker has at most one %s block; the first is at %s. Merge them.", typ, shortRange(first.DefRange))
	}
	return first
}

// content decodes the body of b (nil: absent) against s.
func (l *loader) content(b *hcl.Block, s *hcl.BodySchema) *hcl.BodyContent {
	if b == nil {
		return nil
	}
	c, diags := b.Body.Content(s)
	l.diags = append(l.diags, diags...)
	return c
}

// worker builds the worker defined by block, whose body has been decoded
// into c, filling defaults.
func (l *loader) worker(block *hcl.Block, c *hcl.BodyContent) *Worker {
	pv := l.preset
	name, nameRange := block.Labels[0], block.LabelRanges[0]
	attrs := c.Attributes
	w := &Worker{
		Name:            name,
		Restart:         sdk.Permanent,
		ShutdownTimeout: pv.ShutdownTimeout,
		StartTimeout:    DefaultStartTimeout,
		Priority:        sdk.ProcessNormal,
		Backoff:         Backoff{Min: pv.BackoffMin, Max: pv.BackoffMax, Jitter: DefaultBackoffJitter},
		Mailbox: Mailbox{
			Capacity:            pv.MailboxCapacity,
			PriorityQueues:      true,
			DeadLetter:          true,
			MaxMessageSize:      DefaultMaxMessageSize,
			MaxDeliveryAttempts: DefaultMaxDeliveryAttempts,
		},
		Config: []byte("{}"),
		Range:  block.DefRange,
	}

	// Identity: name, pool and the IDs they stand for.
	poolOK := true
	if n, ok := l.intAttr(attrs["pool"], "pool", math.MinInt, maxPool); ok && n >= 1 {
		w.Pool = n
	} else if ok {
		l.errorf(attrs["pool"].Expr.Range(), "Invalid pool size",
			"pool = %d would start no worker: pool must be at least 1. Leave pool out for a single worker named %q, or set the number of copies to run (at most %d).", n, name, maxPool)
		poolOK = false
	} else if attrs["pool"] != nil {
		poolOK = false // reported: the pool's IDs are unknown
	}
	if l.checkName("worker", name, nameRange) {
		l.claimWorker(w, nameRange, poolOK)
	}

	if a := attrs["plugin"]; a == nil {
		l.errorf(block.DefRange, "Missing required argument \"plugin\"",
			"Every worker needs the path of its plugin binary, for example plugin = \"bin/plugins/echo\" (relative to the directory of %s).", l.filename)
	} else if p, ok := l.stringAttr(a, "plugin"); ok {
		if abs, ok := l.checkPlugin(a, p); ok {
			w.Plugin = abs
		}
	}
	if a := attrs["args"]; a != nil {
		if v, ok := l.value(a, "args", cty.List(cty.String), `a list of strings, for example args = ["-v", "--port=8080"]`); ok {
			l.decode(a, "args", v, &w.Args)
		}
	}
	if a := attrs["env"]; a != nil {
		if v, ok := l.value(a, "env", cty.Map(cty.String), `an object of strings, for example env = { NAME = "value" }`); ok {
			if l.decode(a, "env", v, &w.Env) {
				l.checkEnv(a, w.Env)
			}
		}
	}
	if v, ok := enumAttr(l, attrs["restart"], "restart", "restart type", restartTypeNames, sdk.ParseRestartType); ok {
		w.Restart = v
	}
	if d, ok := l.durationAttr(attrs["shutdown_timeout"], "shutdown_timeout", false); ok {
		w.ShutdownTimeout = d
	}
	if d, ok := l.durationAttr(attrs["start_timeout"], "start_timeout", false); ok {
		w.StartTimeout = d
	}
	if v, ok := enumAttr(l, attrs["priority"], "priority", "priority", priorityNames, sdk.ParseProcessPriority); ok {
		w.Priority = v
	}
	if n, ok := l.sizeAttr(attrs["max_memory"], "max_memory", " (leave max_memory out for no limit)"); ok {
		w.MaxMemory = n
	}
	if a := attrs["sha256"]; a != nil {
		if s, ok := l.stringAttr(a, "sha256"); ok {
			sum, err := hex.DecodeString(s)
			if err != nil || len(sum) != 32 {
				l.errorf(a.Expr.Range(), "Invalid sha256",
					"%q is not a SHA-256 digest: it must be 64 hexadecimal characters (got %d characters). Compute it with `sha256sum <plugin binary>`.", s, len(s))
			} else {
				w.SHA256 = sum
			}
		}
	}
	if v, ok := l.boolAttr(attrs["watch"], "watch"); ok {
		w.Watch = v
	}
	if hc := l.content(l.single(c, blockHealthCheck), healthCheckSchema); hc != nil {
		w.HealthCheck = l.healthCheck(hc.Attributes)
	}
	if b := l.content(l.single(c, blockBackoff), backoffSchema); b != nil {
		w.Backoff = l.backoff(b.Attributes, w.Backoff)
	}
	if m := l.content(l.single(c, blockMailbox), mailboxSchema); m != nil {
		l.mailbox(m.Attributes, &w.Mailbox)
	}
	if b := l.single(c, blockConfig); b != nil {
		if js, ok := l.configJSON(b); ok {
			w.Config = js
		}
	}
	return w
}

// claimWorker computes w's IDs and claims them: its name, and for a pool
// the pool IDs too (not when the pool size is invalid, poolOK false).
func (l *loader) claimWorker(w *Worker, nameRange hcl.Range, poolOK bool) {
	if w.Pool == 0 {
		w.IDs = []string{w.Name}
		what := fmt.Sprintf("worker %q", w.Name)
		if !poolOK {
			what = fmt.Sprintf("pool %q", w.Name)
		}
		l.claim(w.Name, what, nameRange)
		return
	}
	w.IDs = make([]string, w.Pool)
	for i := range w.IDs {
		w.IDs[i] = w.Name + "_" + strconv.Itoa(i)
	}
	what := fmt.Sprintf("pool %q (IDs %s … %s)", w.Name, w.IDs[0], w.IDs[len(w.IDs)-1])
	if !l.claim(w.Name, what, nameRange) {
		return
	}
	for _, id := range w.IDs {
		if !l.claim(id, what, nameRange) {
			return // one message per pool is enough
		}
	}
}

// checkEnv reports environment entries a process cannot have.
func (l *loader) checkEnv(a *hcl.Attribute, env map[string]string) {
	keys := make([]string, 0, len(env))
	for k := range env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if k == "" || strings.ContainsAny(k, "=\x00") || strings.ContainsRune(env[k], 0) {
			l.errorf(a.Expr.Range(), "Invalid environment variable",
				"%q cannot be set in a process environment: names must be non-empty without '=' or NUL, values without NUL.", k)
		}
	}
}

// healthCheck builds a health check from its block.
func (l *loader) healthCheck(attrs hcl.Attributes) *HealthCheck {
	hc := &HealthCheck{Interval: l.preset.HealthCheckInterval, Failures: DefaultHealthFailures}
	if d, ok := l.durationAttr(attrs["interval"], "interval", false); ok {
		hc.Interval = d
	}
	hc.Timeout = min(hc.Interval, DefaultMaxHealthTimeout)
	if d, ok := l.durationAttr(attrs["timeout"], "timeout", false); ok {
		hc.Timeout = d
		if d > hc.Interval {
			l.errorf(attrs["timeout"].Expr.Range(), "Health check timeout longer than its interval",
				"The timeout (%s) must not exceed the interval (%s), or checks would overlap: shorten the timeout or lengthen the interval.", d, hc.Interval)
		}
	}
	if n, ok := l.intAttr(attrs["failures"], "failures", 1, -1); ok {
		hc.Failures = n
	}
	return hc
}

// backoff builds a backoff from its block over the defaults def. When only
// one bound is set and it crosses the other's default, the default follows
// it; two explicit bounds must be ordered.
func (l *loader) backoff(attrs hcl.Attributes, def Backoff) Backoff {
	b := def
	minD, minSet := l.durationAttr(attrs["min"], "min", true)
	maxD, maxSet := l.durationAttr(attrs["max"], "max", true)
	switch {
	case minSet && maxSet:
		b = Backoff{Min: minD, Max: maxD}
		if minD > maxD {
			l.errorf(attrs["min"].Expr.Range(), "Backoff min greater than max",
				"min (%s) must not exceed max (%s): the delay starts at min and doubles up to max.", minD, maxD)
		}
	case minSet:
		b.Min, b.Max = minD, max(minD, def.Max)
	case maxSet:
		b.Min, b.Max = min(def.Min, maxD), maxD
	}
	b.Jitter = def.Jitter
	if a := attrs["jitter"]; a != nil {
		if v, ok := l.value(a, "jitter", cty.Number, "a fraction from 0 to 1, for example jitter = 0.2"); ok {
			var j float64
			if l.decode(a, "jitter", v, &j) {
				if j < 0 || j > 1 {
					l.errorf(a.Expr.Range(), "Invalid jitter", "jitter is the largest fraction taken off a delay: use a number from 0 to 1 (got %v).", j)
				} else {
					b.Jitter = j
				}
			}
		}
	}
	return b
}

// mailbox applies a mailbox block to m (which holds the defaults).
func (l *loader) mailbox(attrs hcl.Attributes, m *Mailbox) {
	if n, ok := l.intAttr(attrs["capacity"], "capacity", 1, maxMailboxCapacity); ok {
		m.Capacity = n
	}
	if v, ok := l.boolAttr(attrs["priority_queues"], "priority_queues"); ok {
		m.PriorityQueues = v
	}
	if v, ok := l.boolAttr(attrs["dead_letter"], "dead_letter"); ok {
		m.DeadLetter = v
	}
	if d, ok := l.durationAttr(attrs["default_ttl"], "default_ttl", true); ok {
		m.DefaultTTL = d
	}
	if n, ok := l.sizeAttr(attrs["max_message_size"], "max_message_size", ""); ok {
		m.MaxMessageSize = n
	}
	if n, ok := l.intAttr(attrs["max_delivery_attempts"], "max_delivery_attempts", 1, -1); ok {
		m.MaxDeliveryAttempts = n
	}
}

// configJSON evaluates the free-form config block b into a JSON object.
func (l *loader) configJSON(b *hcl.Block) ([]byte, bool) {
	if len(b.Labels) > 0 {
		return nil, false // reported by Content
	}
	in, diags := b.Body.JustAttributes()
	l.diags = append(l.diags, diags...)
	if diags.HasErrors() {
		return nil, false
	}
	r := struct {
		Attrs    hcl.Attributes
		DefRange hcl.Range
	}{in, b.DefRange}
	attrs := make(map[string]cty.Value, len(r.Attrs))
	ok := true
	for name, a := range r.Attrs {
		v, diags := a.Expr.Value(l.ctx)
		l.diags = append(l.diags, diags...)
		if diags.HasErrors() {
			ok = false
			continue
		}
		attrs[name] = v
	}
	if !ok {
		return nil, false
	}
	obj := cty.ObjectVal(attrs)
	if !obj.IsWhollyKnown() {
		l.errorf(r.DefRange, "Unknown value in config block", "Every value in a config block must be known when the config is loaded.")
		return nil, false
	}
	js, err := ctyjson.Marshal(obj, obj.Type())
	if err != nil {
		rng := r.DefRange
		if pe, ok := err.(cty.PathError); ok && len(pe.Path) > 0 {
			if step, ok := pe.Path[0].(cty.GetAttrStep); ok && r.Attrs[step.Name] != nil {
				rng = r.Attrs[step.Name].Expr.Range()
			}
		}
		l.errorf(rng, "Cannot convert config block to JSON", "%s. Use strings, numbers, booleans, lists and objects.", pathError(err))
		return nil, false
	}
	return js, true
}

// value evaluates attribute a (named name) and converts it to ty. It
// returns false when a is absent or null (both mean "use the default") or
// when it reports a problem; want describes the expected value for
// messages.
func (l *loader) value(a *hcl.Attribute, name string, ty cty.Type, want string) (cty.Value, bool) {
	if a == nil {
		return cty.NilVal, false
	}
	v, diags := a.Expr.Value(l.ctx)
	l.diags = append(l.diags, diags...)
	if diags.HasErrors() || v.IsNull() {
		return cty.NilVal, false
	}
	if !v.IsWhollyKnown() {
		l.errorf(a.Expr.Range(), fmt.Sprintf("Unknown value for %q", name), "The value must be known when the config is loaded.")
		return cty.NilVal, false
	}
	cv, err := convert.Convert(v, ty)
	if err != nil {
		l.errorf(a.Expr.Range(), fmt.Sprintf("Wrong type for %q", name), "Inappropriate value for %q: %s. Write %s.", name, err, want)
		return cty.NilVal, false
	}
	return cv, true
}

// decode stores the converted value v of attribute a into target.
func (l *loader) decode(a *hcl.Attribute, name string, v cty.Value, target any) bool {
	if err := gocty.FromCtyValue(v, target); err != nil {
		l.errorf(a.Expr.Range(), fmt.Sprintf("Invalid value for %q", name), "%s.", pathError(err))
		return false
	}
	return true
}

// pathError formats a cty error, with its path when it has one.
func pathError(err error) string {
	if pe, ok := err.(cty.PathError); ok && len(pe.Path) > 0 {
		var b strings.Builder
		for _, step := range pe.Path {
			switch s := step.(type) {
			case cty.IndexStep:
				if s.Key.Type() == cty.String {
					fmt.Fprintf(&b, "[%q]", s.Key.AsString())
				} else if s.Key.Type() == cty.Number {
					fmt.Fprintf(&b, "[%s]", s.Key.AsBigFloat().Text('f', -1))
				}
			case cty.GetAttrStep:
				fmt.Fprintf(&b, ".%s", s.Name)
			}
		}
		return fmt.Sprintf("element %s: %v", b.String(), err)
	}
	return err.Error()
}

// stringAttr evaluates a as a string.
func (l *loader) stringAttr(a *hcl.Attribute, name string) (string, bool) {
	v, ok := l.value(a, name, cty.String, fmt.Sprintf(`a string in double quotes, for example %s = "…"`, name))
	if !ok {
		return "", false
	}
	return v.AsString(), true
}

// boolAttr evaluates a as a bool.
func (l *loader) boolAttr(a *hcl.Attribute, name string) (bool, bool) {
	v, ok := l.value(a, name, cty.Bool, fmt.Sprintf("true or false, for example %s = true", name))
	if !ok {
		return false, false
	}
	return v.True(), true
}

// intAttr evaluates a as a whole number in [lo, hi] (hi < 0: no upper
// bound).
func (l *loader) intAttr(a *hcl.Attribute, name string, lo, hi int) (int, bool) {
	v, ok := l.value(a, name, cty.Number, fmt.Sprintf("a whole number, for example %s = %d", name, max(lo, 1)))
	if !ok {
		return 0, false
	}
	var n int
	if !l.decode(a, name, v, &n) {
		return 0, false
	}
	rng := a.Expr.Range()
	switch {
	case n < lo:
		l.errorf(rng, fmt.Sprintf("Invalid %s", name), "%s must be at least %d (got %d).", name, lo, n)
		return 0, false
	case hi >= 0 && n > hi:
		l.errorf(rng, fmt.Sprintf("Invalid %s", name), "%s must be at most %d (got %d).", name, hi, n)
		return 0, false
	}
	return n, true
}

// durationAttr evaluates a as a duration string; zero is accepted only when
// allowZero is set, negative durations never.
func (l *loader) durationAttr(a *hcl.Attribute, name string, allowZero bool) (time.Duration, bool) {
	s, ok := l.stringAttr(a, name)
	if !ok {
		return 0, false
	}
	rng := a.Expr.Range()
	d, err := time.ParseDuration(strings.TrimSpace(s))
	if err != nil {
		hint := ""
		if _, nerr := strconv.ParseFloat(strings.TrimSpace(s), 64); nerr == nil {
			hint = fmt.Sprintf(` A bare number has no unit: write "%ss" for seconds or "%sms" for milliseconds.`, strings.TrimSpace(s), strings.TrimSpace(s))
		}
		l.errorf(rng, fmt.Sprintf("Invalid duration for %q", name),
			`%q is not a duration: durations look like "5s" or "200ms" (units ns, us, ms, s, m, h; "1m30s" works too).%s`, s, hint)
		return 0, false
	}
	switch {
	case d < 0:
		l.errorf(rng, fmt.Sprintf("Negative duration for %q", name),
			`%q is negative: %s must be a positive duration, like "5s" or "200ms".`, s, name)
		return 0, false
	case d == 0 && !allowZero:
		l.errorf(rng, fmt.Sprintf("Zero duration for %q", name),
			`%s must be greater than zero, like "5s" or "200ms".`, name)
		return 0, false
	}
	return d, true
}

// sizeAttr evaluates a as a byte size greater than zero; zeroHint is added
// to the message for zero.
func (l *loader) sizeAttr(a *hcl.Attribute, name, zeroHint string) (uint64, bool) {
	s, ok := l.stringAttr(a, name)
	if !ok {
		return 0, false
	}
	rng := a.Expr.Range()
	n, err := ParseSize(s)
	if err != nil {
		l.errorf(rng, fmt.Sprintf("Invalid size for %q", name), "%q is not a size: %s.", s, sizeHint)
		return 0, false
	}
	if n == 0 {
		l.errorf(rng, fmt.Sprintf("Zero size for %q", name), `%s must be greater than zero, like "256MiB"%s.`, name, zeroHint)
		return 0, false
	}
	return n, true
}

// enumAttr evaluates a as a string and parses it with parse; what names
// the kind of value for messages and names lists the accepted values.
func enumAttr[T any](l *loader, a *hcl.Attribute, name, what string, names []string, parse func(string) (T, error)) (T, bool) {
	var zero T
	s, ok := l.stringAttr(a, name)
	if !ok {
		return zero, false
	}
	v, err := parse(s)
	if err != nil {
		hint := ""
		if sug := suggest(s, names); sug != "" {
			hint = fmt.Sprintf(" Did you mean %q?", sug)
		}
		l.errorf(a.Expr.Range(), fmt.Sprintf("Unknown %s", what),
			"%q is not a %s. Use one of %s.%s", s, what, oneOf(names), hint)
		return zero, false
	}
	return v, true
}
