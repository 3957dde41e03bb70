package config

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/vigil-run/vigil/sdk"
)

// Limits on values that would otherwise be accepted but make no sense for a
// supervisor and could exhaust the host (checked with a clear message).
const (
	maxNameLen         = 64
	maxPool            = 1000
	maxMailboxCapacity = 1_000_000
)

// logLevels are the accepted log_level values, most verbose first.
var logLevels = []string{"trace", "debug", "info", "warn", "error"}

// validName reports whether s can name a worker, supervisor or app: 1 to
// maxNameLen letters, digits, '_', '-' or '.', not starting with '-' or '.'.
func validName(s string) bool {
	if s == "" || len(s) > maxNameLen || s[0] == '-' || s[0] == '.' {
		return false
	}
	for _, c := range []byte(s) {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.'
		if !ok {
			return false
		}
	}
	return true
}

// checkName reports an invalid block label.
func (l *loader) checkName(kind, name string, rng hcl.Range) bool {
	if validName(name) {
		return true
	}
	l.errorf(rng, fmt.Sprintf("Invalid %s name", kind),
		"%q cannot be used as a name: names are 1 to %d letters, digits, '_', '-' or '.', and do not start with '-' or '.'. "+
			"They become worker IDs, logger names and file names.", name, maxNameLen)
	return false
}

// idOwner records who claimed an ID first.
type idOwner struct {
	what string
	rng  hcl.Range
}

// claim registers id for what (e.g. `worker "db"`), defined at rng. It
// reports a duplicate and returns false if the ID is taken.
func (l *loader) claim(id, what string, rng hcl.Range) bool {
	if prev, taken := l.ids[id]; taken {
		l.errorf(rng, fmt.Sprintf("Duplicate ID %q", id),
			"%s uses the ID %q, which %s (at %s) already uses. IDs must be unique in the whole app: "+
				"supervisor names, worker names, pool names and pool IDs (name_0 … name_N-1) all share one namespace. Rename one of them.",
			what, id, prev.what, shortRange(prev.rng))
		return false
	}
	l.ids[id] = idOwner{what: what, rng: rng}
	return true
}

// shortRange formats r as file:line:col.
func shortRange(r hcl.Range) string {
	return fmt.Sprintf("%s:%d:%d", r.Filename, r.Start.Line, r.Start.Column)
}

// checkPlugin resolves the plugin path p written in attribute a against the
// config file's directory and checks that it is an executable regular file.
func (l *loader) checkPlugin(a *hcl.Attribute, p string) (string, bool) {
	rng := a.Expr.Range()
	if strings.TrimSpace(p) == "" {
		l.errorf(rng, "Empty plugin path", `Set plugin to the path of the worker's binary, for example plugin = "bin/plugins/echo" (relative to the directory of %s).`, l.filename)
		return "", false
	}
	abs := p
	if !filepath.IsAbs(abs) {
		abs = filepath.Join(l.dir, p)
	}
	abs = filepath.Clean(abs)
	fi, err := os.Stat(abs)
	switch {
	case os.IsNotExist(err):
		l.errorf(rng, "Plugin binary not found",
			"The file %s does not exist: build it with `make plugins` or fix the path. Relative paths are resolved against the directory of the config file (%s).", abs, l.dir)
		return "", false
	case err != nil:
		l.errorf(rng, "Cannot access plugin binary", "%v. Check the path and its permissions.", err)
		return "", false
	case fi.IsDir():
		l.errorf(rng, "Plugin path is a directory", "%s is a directory, not a plugin binary: point plugin at the executable file inside it.", abs)
		return "", false
	case !fi.Mode().IsRegular():
		l.errorf(rng, "Plugin path is not a regular file", "%s is a %s, not a plugin binary: point plugin at an executable file.", abs, fileKind(fi.Mode()))
		return "", false
	case fi.Mode().Perm()&0o111 == 0:
		l.errorf(rng, "Plugin binary is not executable", "%s is not executable (mode %s): run `chmod +x %s`, or rebuild it with `make plugins`.", abs, fi.Mode().Perm(), abs)
		return "", false
	}
	return abs, true
}

// fileKind names the type of a non-regular file for messages.
func fileKind(m os.FileMode) string {
	switch {
	case m&os.ModeNamedPipe != 0:
		return "named pipe"
	case m&os.ModeSocket != 0:
		return "socket"
	case m&os.ModeDevice != 0:
		return "device"
	default:
		return "special file"
	}
}

// enumNames lists the String() values of an sdk enum from first to last.
func enumNames[T ~uint8 | ~int8](first, last T) []string {
	var names []string
	for v := first; ; v++ {
		names = append(names, fmt.Sprint(v))
		if v == last {
			return names
		}
	}
}

// The accepted names of every enum attribute, in the sdk's order.
var (
	strategyNames    = enumNames(sdk.OneForOne, sdk.RestForOne)
	restartTypeNames = enumNames(sdk.Permanent, sdk.Temporary)
	priorityNames    = enumNames(sdk.ProcessCritical, sdk.ProcessBatch)
	presetNames      = enumNames(sdk.PresetProduction, sdk.PresetTesting)
)

// oneOf formats names as `"a", "b" or "c"`.
func oneOf(names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = fmt.Sprintf("%q", n)
	}
	if len(q) == 1 {
		return q[0]
	}
	return strings.Join(q[:len(q)-1], ", ") + " or " + q[len(q)-1]
}

// suggest returns the name in names closest to s, or "" when none is close
// enough to be a likely typo.
func suggest(s string, names []string) string {
	best, bestDist := "", 3
	for _, n := range names {
		if d := editDistance(strings.ToLower(s), n); d < bestDist {
			best, bestDist = n, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance between a and b, in bytes; it
// gives up (returning a large value) for long strings.
func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 1 << 30
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
