package config

import (
	"fmt"
	"math/big"
	"strings"

	"github.com/vigil-run/vigil/sdk"
)

// sizeUnits maps a lower-cased size suffix to its number of bytes.
var sizeUnits = map[string]uint64{
	"": 1, "b": 1,
	"kb": 1000, "mb": 1000 * 1000, "gb": 1000 * 1000 * 1000, "tb": 1000 * 1000 * 1000 * 1000,
	"kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40,
}

// sizeHint is the "what to do" part of every size error.
const sizeHint = `sizes look like "256MiB", "1GiB", "512KB" or "4096" (bytes); units are B, KB, MB, GB, TB (powers of 1000) and KiB, MiB, GiB, TiB (powers of 1024)`

// ParseSize parses a byte size as written in config files: a non-negative
// decimal number, optionally with a fraction, optionally followed by a unit
// (B, KB, MB, GB, TB in powers of 1000; KiB, MiB, GiB, TiB in powers of
// 1024; case-insensitive; spaces allowed between number and unit). The result
// must be a whole number of bytes that fits in a uint64: "1.5KiB" is 1536,
// "1.1B" is an error.
//
// It returns an error wrapping [sdk.ErrInvalidSpec] for anything else. It is
// a pure function, safe for concurrent use.
func ParseSize(s string) (uint64, error) {
	t := strings.TrimSpace(s)
	i := 0
	for i < len(t) && (t[i] >= '0' && t[i] <= '9' || t[i] == '.') {
		i++
	}
	num, unit := t[:i], strings.ToLower(strings.TrimSpace(t[i:]))
	if num == "" {
		return 0, fmt.Errorf("%w: invalid size %q: no number", sdk.ErrInvalidSpec, s)
	}
	if strings.Count(num, ".") > 1 || num[0] == '.' || num[len(num)-1] == '.' || len(num) > 40 {
		return 0, fmt.Errorf("%w: invalid size %q: malformed number", sdk.ErrInvalidSpec, s)
	}
	mult, ok := sizeUnits[unit]
	if !ok {
		return 0, fmt.Errorf("%w: invalid size %q: unknown unit %q", sdk.ErrInvalidSpec, s, t[i:])
	}
	r, ok := new(big.Rat).SetString(num)
	if !ok {
		return 0, fmt.Errorf("%w: invalid size %q: malformed number", sdk.ErrInvalidSpec, s)
	}
	r.Mul(r, new(big.Rat).SetUint64(mult))
	if !r.IsInt() {
		return 0, fmt.Errorf("%w: invalid size %q: not a whole number of bytes", sdk.ErrInvalidSpec, s)
	}
	n := r.Num()
	if !n.IsUint64() {
		return 0, fmt.Errorf("%w: invalid size %q: too large", sdk.ErrInvalidSpec, s)
	}
	return n.Uint64(), nil
}

// FormatSize formats n bytes with the largest binary unit that divides it
// exactly: 268435456 is "256MiB", 1536 is "1536B". ParseSize(FormatSize(n))
// == n for every n. It is a pure function, safe for concurrent use.
func FormatSize(n uint64) string {
	units := []struct {
		name string
		size uint64
	}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}}
	for _, u := range units {
		if n != 0 && n%u.size == 0 {
			return fmt.Sprintf("%d%s", n/u.size, u.name)
		}
	}
	return fmt.Sprintf("%dB", n)
}
