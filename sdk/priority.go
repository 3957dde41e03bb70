package sdk

import "fmt"

// Priority orders messages in a mailbox: [PriorityCritical] is received
// first, [PriorityBatch] last; FIFO within one priority. The zero value is
// [PriorityNormal].
type Priority int8

// Message priorities, highest first.
const (
	PriorityCritical Priority = -2
	PriorityHigh     Priority = -1
	PriorityNormal   Priority = 0
	PriorityLow      Priority = 1
	PriorityBatch    Priority = 2
)

// numPriorities is the number of distinct priorities.
const numPriorities = 5

// index maps a priority to 0 (critical) … 4 (batch).
func (p Priority) index() int { return int(p) + 2 }

// Valid reports whether p is one of the five defined priorities.
func (p Priority) Valid() bool { return p >= PriorityCritical && p <= PriorityBatch }

var priorityNames = [numPriorities]string{"critical", "high", "normal", "low", "batch"}

// String returns the seed's name: "critical", "high", "normal", "low" or "batch".
func (p Priority) String() string {
	if !p.Valid() {
		return fmt.Sprintf("Priority(%d)", int(p))
	}
	return priorityNames[p.index()]
}

// ParsePriority parses a name as written in config files ("high"). It
// returns an error wrapping [ErrInvalidMessage] for an unknown name.
func ParsePriority(s string) (Priority, error) {
	for i, n := range priorityNames {
		if n == s {
			return Priority(i - 2), nil
		}
	}
	return PriorityNormal, fmt.Errorf("%w: unknown priority %q (want one of critical, high, normal, low, batch)", ErrInvalidMessage, s)
}

// ProcessPriority is a child's scheduling priority. It cannot be enforced on
// a goroutine; for process workers the host maps it to a nice value
// (critical -10, high -5, normal 0, low 5, batch 10). The zero value is
// [ProcessNormal].
type ProcessPriority int8

// Process priorities, highest first.
const (
	ProcessCritical ProcessPriority = -2
	ProcessHigh     ProcessPriority = -1
	ProcessNormal   ProcessPriority = 0
	ProcessLow      ProcessPriority = 1
	ProcessBatch    ProcessPriority = 2
)

// Valid reports whether p is one of the five defined process priorities.
func (p ProcessPriority) Valid() bool { return p >= ProcessCritical && p <= ProcessBatch }

// String returns "critical", "high", "normal", "low" or "batch".
func (p ProcessPriority) String() string {
	if !p.Valid() {
		return fmt.Sprintf("ProcessPriority(%d)", int(p))
	}
	return priorityNames[int(p)+2]
}

// Nice returns the Unix nice value the host applies to a process worker.
func (p ProcessPriority) Nice() int { return int(p) * 5 }

// ParseProcessPriority parses "critical", "high", "normal", "low" or "batch".
// It returns an error wrapping [ErrInvalidSpec] for an unknown name.
func ParseProcessPriority(s string) (ProcessPriority, error) {
	for i, n := range priorityNames {
		if n == s {
			return ProcessPriority(i - 2), nil
		}
	}
	return ProcessNormal, fmt.Errorf("%w: unknown priority %q (want one of critical, high, normal, low, batch)", ErrInvalidSpec, s)
}
