package sdk

import "fmt"

// RestartStrategy says which children a supervisor restarts when one fails.
// The zero value is [OneForOne], the seed's default.
type RestartStrategy uint8

const (
	// OneForOne restarts only the failed child.
	OneForOne RestartStrategy = iota
	// OneForAll stops every other child (reverse start order) and restarts
	// all of them (start order).
	OneForAll
	// RestForOne stops the children started after the failed one (reverse
	// order) and restarts the failed one and those (start order).
	RestForOne
)

var strategyNames = [...]string{"one_for_one", "one_for_all", "rest_for_one"}

// String returns "one_for_one", "one_for_all" or "rest_for_one".
func (s RestartStrategy) String() string {
	if int(s) >= len(strategyNames) {
		return fmt.Sprintf("RestartStrategy(%d)", int(s))
	}
	return strategyNames[s]
}

// ParseRestartStrategy parses "one_for_one", "one_for_all" or "rest_for_one".
// It returns an error wrapping [ErrInvalidSpec] for anything else.
func ParseRestartStrategy(s string) (RestartStrategy, error) {
	for i, n := range strategyNames {
		if n == s {
			return RestartStrategy(i), nil
		}
	}
	return OneForOne, fmt.Errorf("%w: unknown strategy %q (want one_for_one, one_for_all or rest_for_one)", ErrInvalidSpec, s)
}

// RestartType says when a child is restarted. The zero value is [Permanent].
type RestartType uint8

const (
	// Permanent children are always restarted.
	Permanent RestartType = iota
	// Transient children are restarted only after a failure (a non-nil
	// error, a panic, a non-zero exit); a normal exit ends them.
	Transient
	// Temporary children are never restarted, not even when a sibling's
	// failure stopped them; they are removed when they end.
	Temporary
)

var restartTypeNames = [...]string{"permanent", "transient", "temporary"}

// String returns "permanent", "transient" or "temporary".
func (r RestartType) String() string {
	if int(r) >= len(restartTypeNames) {
		return fmt.Sprintf("RestartType(%d)", int(r))
	}
	return restartTypeNames[r]
}

// ParseRestartType parses "permanent", "transient" or "temporary". It returns
// an error wrapping [ErrInvalidSpec] for anything else.
func ParseRestartType(s string) (RestartType, error) {
	for i, n := range restartTypeNames {
		if n == s {
			return RestartType(i), nil
		}
	}
	return Permanent, fmt.Errorf("%w: unknown restart type %q (want permanent, transient or temporary)", ErrInvalidSpec, s)
}
