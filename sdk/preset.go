package sdk

import (
	"fmt"
	"time"
)

// Preset names a set of defaults for an app: restart intensity, health-check
// interval, shutdown timeout, mailbox capacity, backoff and log level. The
// zero value is [PresetProduction].
type Preset uint8

// The seed's four presets.
const (
	PresetProduction Preset = iota
	PresetDevelopment
	PresetHighAvailability
	PresetTesting
)

var presetNames = [...]string{"production", "development", "high_availability", "testing"}

// String returns "production", "development", "high_availability" or "testing".
func (p Preset) String() string {
	if int(p) >= len(presetNames) {
		return fmt.Sprintf("Preset(%d)", int(p))
	}
	return presetNames[p]
}

// ParsePreset parses a preset name as written in config files. It returns an
// error wrapping [ErrInvalidSpec] for an unknown name.
func ParsePreset(s string) (Preset, error) {
	for i, n := range presetNames {
		if n == s {
			return Preset(i), nil
		}
	}
	return PresetProduction, fmt.Errorf("%w: unknown preset %q (want production, development, high_availability or testing)", ErrInvalidSpec, s)
}

// PresetValues are the defaults a [Preset] stands for. This table is the one
// place defaults live; the seed's values are kept exactly.
type PresetValues struct {
	MaxRestarts         int           // restarts tolerated within MaxSeconds
	MaxSeconds          int           // the sliding intensity window, in whole seconds
	HealthCheckInterval time.Duration // default interval between health checks
	ShutdownTimeout     time.Duration // default per-child shutdown timeout
	MailboxCapacity     int           // default capacity of worker mailboxes
	BackoffMin          time.Duration // first restart delay (0 = restart at once)
	BackoffMax          time.Duration // cap of the exponential restart delay
	LogLevel            string        // hclog level name: "debug" logs every lifecycle event verbosely
}

// Values returns p's defaults. Unknown presets get the production values.
//
//	preset             max restarts  window  health  shutdown  mailbox
//	production         3             60s     5000ms  30000ms   1000
//	development        10            5s      1000ms  5000ms    100
//	high_availability  5             30s     2000ms  20000ms   5000
//	testing            1             10s     100ms   1000ms    50
func (p Preset) Values() PresetValues {
	switch p {
	case PresetDevelopment:
		return PresetValues{MaxRestarts: 10, MaxSeconds: 5, HealthCheckInterval: time.Second,
			ShutdownTimeout: 5 * time.Second, MailboxCapacity: 100,
			BackoffMin: 10 * time.Millisecond, BackoffMax: time.Second, LogLevel: "debug"}
	case PresetHighAvailability:
		return PresetValues{MaxRestarts: 5, MaxSeconds: 30, HealthCheckInterval: 2 * time.Second,
			ShutdownTimeout: 20 * time.Second, MailboxCapacity: 5000,
			BackoffMin: 50 * time.Millisecond, BackoffMax: 5 * time.Second, LogLevel: "info"}
	case PresetTesting:
		return PresetValues{MaxRestarts: 1, MaxSeconds: 10, HealthCheckInterval: 100 * time.Millisecond,
			ShutdownTimeout: time.Second, MailboxCapacity: 50,
			BackoffMin: 0, BackoffMax: 0, LogLevel: "debug"}
	default:
		return PresetValues{MaxRestarts: 3, MaxSeconds: 60, HealthCheckInterval: 5 * time.Second,
			ShutdownTimeout: 30 * time.Second, MailboxCapacity: 1000,
			BackoffMin: 100 * time.Millisecond, BackoffMax: 10 * time.Second, LogLevel: "info"}
	}
}
