package sdk

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"sort"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"
)

// Runtime is what a [Worker] gets from its host: its identity, its config
// and its logger. Serve builds one per process; its methods are safe for
// concurrent use.
type Runtime struct {
	id          string
	incarnation uint64
	config      []byte
	logger      hclog.Logger

	// remote is the mailbox half: the worker's inbox and Send/Call to
	// other workers through the host (remote.go).
	remote *remote
}

// ID returns the worker's ID: its name in the app definition, with "_N"
// appended for a member of a pool ("handlers_2").
func (rt *Runtime) ID() string { return rt.id }

// Incarnation returns which run of this worker ID this process is: 1 for
// the first start, then one more per restart.
func (rt *Runtime) Incarnation() uint64 { return rt.incarnation }

// Logger returns the worker's logger, named after the worker. Its lines go
// to the process's standard error as hclog JSON; the host re-emits them in
// its own log under the worker's name, at their level.
func (rt *Runtime) Logger() hclog.Logger { return rt.logger }

// DecodeConfig decodes the worker's `config { … }` block from the app
// definition (handed over as a JSON object) into v, a pointer to the
// author's struct with `json` tags. Fields not in the block keep their
// values in v, so set defaults before calling. Unknown fields are errors
// (they are usually typos). Use [Duration] for durations written as
// strings ("200ms").
//
// The error wraps [ErrInvalidSpec] and names the offending field.
func (rt *Runtime) DecodeConfig(v any) error {
	data := bytes.TrimSpace(rt.config)
	if len(data) == 0 || bytes.Equal(data, []byte("null")) {
		data = []byte("{}")
	}
	if err := decodeStrict(data, v); err != nil {
		return fmt.Errorf("%w: worker %q config: %s", ErrInvalidSpec, rt.id, describeConfigError(err, data, v))
	}
	return nil
}

func decodeStrict(data []byte, v any) error {
	d := json.NewDecoder(bytes.NewReader(data))
	d.DisallowUnknownFields()
	return d.Decode(v)
}

// describeConfigError names the field a decode error is about.
func describeConfigError(err error, data []byte, v any) string {
	var typeErr *json.UnmarshalTypeError
	var syntaxErr *json.SyntaxError
	switch {
	case errors.As(err, &typeErr) && typeErr.Field != "":
		return fmt.Sprintf("field %q: cannot use a JSON %s as %s", typeErr.Field, typeErr.Value, typeErr.Type)
	case errors.As(err, &typeErr):
		return fmt.Sprintf("want a JSON object, got a JSON %s", typeErr.Value)
	case errors.As(err, &syntaxErr):
		return fmt.Sprintf("not a JSON object (offset %d): %v", syntaxErr.Offset, err)
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return strings.TrimPrefix(err.Error(), "json: ")
	}
	// An error from a field's own UnmarshalJSON carries no field name:
	// find the top-level field that fails on its own.
	rv := reflect.ValueOf(v)
	var fields map[string]json.RawMessage
	if rv.Kind() == reflect.Pointer && !rv.IsNil() && json.Unmarshal(data, &fields) == nil {
		keys := make([]string, 0, len(fields))
		for k := range fields {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			one, merr := json.Marshal(map[string]json.RawMessage{k: fields[k]})
			if merr != nil {
				continue
			}
			if ferr := decodeStrict(one, reflect.New(rv.Elem().Type()).Interface()); ferr != nil {
				return fmt.Sprintf("field %q: %v", k, ferr)
			}
		}
	}
	return err.Error()
}

// Duration is a time.Duration that decodes from a JSON string in
// [time.ParseDuration] form ("200ms", "1m30s"), for worker config structs.
type Duration time.Duration

// UnmarshalJSON decodes a duration string such as "200ms".
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("want a duration string such as \"200ms\", got %s", b)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// MarshalJSON encodes d as a duration string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// String returns d in time.Duration form ("1.5s").
func (d Duration) String() string { return time.Duration(d).String() }
