package chat

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"

	"github.com/ardanlabs/jinja"
)

// messageValue is m as a template sees it: a dict of role and content, and name,
// tool_call_id and tool_calls when m has them, each call a dict of id, type and
// function (name and arguments, the arguments' JSON parsed).
func messageValue(m Message) (jinja.Value, error) {
	v := jinja.NewDict()
	d := v.AsDict()
	d.Set("role", jinja.NewString(m.Role))
	d.Set("content", jinja.NewString(m.Content))
	if m.Name != "" {
		d.Set("name", jinja.NewString(m.Name))
	}
	if m.ToolCallID != "" {
		d.Set("tool_call_id", jinja.NewString(m.ToolCallID))
	}
	if len(m.ToolCalls) > 0 {
		calls := make([]jinja.Value, len(m.ToolCalls))
		for j, c := range m.ToolCalls {
			args, err := argumentsValue(c.Function.Arguments)
			if err != nil {
				return jinja.Undefined(), fmt.Errorf("tool call %d (%q): %w", j, c.Function.Name, err)
			}
			fn := jinja.NewDict()
			fn.AsDict().Set("name", jinja.NewString(c.Function.Name))
			fn.AsDict().Set("arguments", args)
			call := jinja.NewDict()
			call.AsDict().Set("id", jinja.NewString(c.ID))
			typ := c.Type
			if typ == "" {
				typ = "function"
			}
			call.AsDict().Set("type", jinja.NewString(typ))
			call.AsDict().Set("function", fn)
			calls[j] = call
		}
		d.Set("tool_calls", jinja.NewList(calls))
	}
	return v, nil
}

// CheckArguments reports whether a tool call's arguments are JSON text a template can
// be given; the error wraps ErrArguments.
func CheckArguments(args string) error {
	_, err := argumentsValue(args)
	return err
}

// maxArgsDepth bounds the nesting of a call's arguments, as Python's json.loads is
// bounded by its recursion limit.
const maxArgsDepth = 512

// argumentsValue parses JSON text into the value Python's json.loads gives, as a
// template value: objects keep their keys' order (a repeated key keeps its last value,
// at its first place), integers stay integers (beyond int64, floats), other numbers
// are floats. Errors wrap ErrArguments.
func argumentsValue(text string) (jinja.Value, error) {
	dec := json.NewDecoder(strings.NewReader(text))
	dec.UseNumber()
	v, err := jsonValue(dec, 0, maxArgsDepth)
	if err == nil {
		if _, end := dec.Token(); end != io.EOF {
			err = errors.New("text after the value")
		}
	}
	if err != nil {
		return jinja.Undefined(), fmt.Errorf("%w: %w", ErrArguments, err)
	}
	return v, nil
}

// jsonValue reads one value from dec, nested at most limit deep.
func jsonValue(dec *json.Decoder, depth, limit int) (jinja.Value, error) {
	if depth > limit {
		return jinja.Undefined(), fmt.Errorf("nested deeper than %d", limit)
	}
	tok, err := dec.Token()
	if err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return jinja.Undefined(), err
	}
	switch t := tok.(type) {
	case nil:
		return jinja.None(), nil
	case bool:
		return jinja.NewBool(t), nil
	case string:
		return jinja.NewString(t), nil
	case json.Number:
		return numberValue(t)
	case json.Delim:
		switch t {
		case '[':
			var items []jinja.Value
			for dec.More() {
				v, err := jsonValue(dec, depth+1, limit)
				if err != nil {
					return jinja.Undefined(), err
				}
				items = append(items, v)
			}
			if _, err := dec.Token(); err != nil {
				return jinja.Undefined(), err
			}
			return jinja.NewList(items), nil
		case '{':
			obj := jinja.NewDict()
			for dec.More() {
				k, err := dec.Token()
				if err != nil {
					return jinja.Undefined(), err
				}
				v, err := jsonValue(dec, depth+1, limit)
				if err != nil {
					return jinja.Undefined(), err
				}
				obj.AsDict().Set(k.(string), v) // the decoder reads only strings as keys
			}
			if _, err := dec.Token(); err != nil {
				return jinja.Undefined(), err
			}
			return obj, nil
		}
	}
	return jinja.Undefined(), fmt.Errorf("unexpected %v", tok)
}

// numberValue is a JSON number as Python reads it: an integer without a fraction or an
// exponent, else a float.
func numberValue(n json.Number) (jinja.Value, error) {
	s := n.String()
	if !bytes.ContainsAny([]byte(s), ".eE") {
		if i, err := strconv.ParseInt(s, 10, 64); err == nil {
			return jinja.NewInt(i), nil
		}
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil && !math.IsInf(f, 0) {
		return jinja.Undefined(), err
	}
	return jinja.NewFloat(f), nil // out of range: ±Inf, as Python's float() gives
}
