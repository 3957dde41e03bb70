package config

import (
	"errors"
	"math"
	"testing"

	"github.com/vigil-run/vigil/sdk"
)

func TestParseSize(t *testing.T) {
	tests := map[string]struct {
		in   string
		want uint64
	}{
		"bare bytes":            {"4096", 4096},
		"bytes with unit":       {"512B", 512},
		"zero":                  {"0", 0},
		"kibibytes":             {"4KiB", 4 << 10},
		"mebibytes":             {"256MiB", 256 << 20},
		"gibibytes":             {"2GiB", 2 << 30},
		"tebibytes":             {"1TiB", 1 << 40},
		"kilobytes":             {"512KB", 512_000},
		"megabytes":             {"1MB", 1_000_000},
		"gigabytes":             {"3GB", 3_000_000_000},
		"terabytes":             {"1TB", 1_000_000_000_000},
		"case-insensitive unit": {"1mib", 1 << 20},
		"space before unit":     {"256 MiB", 256 << 20},
		"surrounding spaces":    {"  1KiB ", 1024},
		"fraction":              {"1.5KiB", 1536},
		"largest":               {"18446744073709551615", math.MaxUint64},
		"15 EiB in TiB":         {"15728640TiB", 15 << 60},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got, err := ParseSize(tc.in)
			if err != nil || got != tc.want {
				t.Errorf("ParseSize(%q) = %d, %v; want %d", tc.in, got, err, tc.want)
			}
		})
	}
}

func TestParseSizeRejectsMalformedSizes(t *testing.T) {
	for name, in := range map[string]string{
		"empty":              "",
		"unit only":          "MiB",
		"negative":           "-1MiB",
		"unknown unit":       "3 megs",
		"single-letter unit": "3M",
		"two dots":           "1.2.3KiB",
		"leading dot":        ".5KiB",
		"trailing dot":       "5.KiB",
		"fractional bytes":   "1.1B",
		"exponent":           "1e3",
		"ratio":              "1/2",
		"overflow":           "18446744073709551616",
		"overflow with unit": "16384PiB",
		"very long number":   "1234567890123456789012345678901234567890123",
		"hex":                "0x10",
	} {
		t.Run(name, func(t *testing.T) {
			got, err := ParseSize(in)
			if err == nil {
				t.Fatalf("ParseSize(%q) = %d, want an error", in, got)
			}
			if !errors.Is(err, sdk.ErrInvalidSpec) {
				t.Errorf("error %v does not wrap sdk.ErrInvalidSpec", err)
			}
		})
	}
}

func TestFormatSizeRoundTrips(t *testing.T) {
	tests := map[string]struct {
		in   uint64
		want string
	}{
		"zero":              {0, "0B"},
		"bytes":             {1000, "1000B"},
		"not a whole KiB":   {1536, "1536B"},
		"KiB":               {4096, "4KiB"},
		"MiB":               {256 << 20, "256MiB"},
		"GiB":               {3 << 30, "3GiB"},
		"TiB":               {5 << 40, "5TiB"},
		"largest in TiB":    {math.MaxUint64 &^ (1<<40 - 1), "16777215TiB"},
		"largest, in bytes": {math.MaxUint64, "18446744073709551615B"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got := FormatSize(tc.in)
			if got != tc.want {
				t.Errorf("FormatSize(%d) = %q, want %q", tc.in, got, tc.want)
			}
			back, err := ParseSize(got)
			if err != nil || back != tc.in {
				t.Errorf("ParseSize(%q) = %d, %v; want %d", got, back, err, tc.in)
			}
		})
	}
}
