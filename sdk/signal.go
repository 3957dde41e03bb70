package sdk

import "fmt"

// Signal is an optional tag a message carries: lifecycle, execution control,
// health, operational or custom. [SignalNone] (the zero value) means none.
// Messages with a lifecycle signal ([Signal.IsLifecycle]) are accepted by a
// mailbox even when it is full.
type Signal uint8

// The seed's 20 signals, plus SignalNone.
const (
	SignalNone Signal = iota
	// Lifecycle.
	SignalRestart
	SignalShutdown
	SignalTerminate
	SignalExit
	// Execution control.
	SignalSuspend
	SignalResume
	// Health and monitoring.
	SignalHealthCheck
	SignalMemoryWarning
	SignalCPUWarning
	SignalDeadlockDetected
	// Operational.
	SignalMessageErr
	SignalInfo
	SignalWarning
	SignalDebug
	SignalLog
	SignalAlert
	SignalMetric
	SignalEvent
	SignalHeartbeat
	// Custom.
	SignalCustom
	numSignals
)

var signalNames = [numSignals]string{
	"", "restart", "shutdown", "terminate", "exit", "suspend", "resume",
	"healthCheck", "memoryWarning", "cpuWarning", "deadlockDetected",
	"messageErr", "info", "warning", "debug", "log", "alert", "metric", "event", "heartbeat",
	"custom",
}

// String returns the seed's name ("healthCheck"), or "" for [SignalNone].
func (s Signal) String() string {
	if s >= numSignals {
		return fmt.Sprintf("Signal(%d)", int(s))
	}
	return signalNames[s]
}

// Valid reports whether s is SignalNone or one of the 20 seed signals.
func (s Signal) Valid() bool { return s < numSignals }

// IsLifecycle reports whether s is restart, shutdown, terminate or exit.
func (s Signal) IsLifecycle() bool { return s >= SignalRestart && s <= SignalExit }

// ParseSignal parses a seed name as written in config files ("healthCheck";
// "health_check" is accepted too). "" and "none" give [SignalNone]. Unknown
// names return an error wrapping [ErrInvalidMessage].
func ParseSignal(name string) (Signal, error) {
	if name == "" || name == "none" {
		return SignalNone, nil
	}
	for i, n := range signalNames {
		if i > 0 && (n == name || snake(n) == name) {
			return Signal(i), nil
		}
	}
	return SignalNone, fmt.Errorf("%w: unknown signal %q", ErrInvalidMessage, name)
}

// snake turns "healthCheck" into "health_check".
func snake(s string) string {
	b := make([]byte, 0, len(s)+4)
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'A' && c <= 'Z' {
			b = append(b, '_', c+'a'-'A')
			continue
		}
		b = append(b, c)
	}
	return string(b)
}
