package chat

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/ardanlabs/jinja"
)

// toJSON is Hugging Face's tojson filter: Python's json.dumps(x, ensure_ascii=False,
// indent=None, separators=None, sort_keys=False), each overridable by keyword. Python's
// defaults follow: separators (", ", ": ") without indent and (",", ": ") with it, floats
// as repr prints them, NaN and infinities as NaN and Infinity.
func toJSON(args []jinja.Value, kw map[string]jinja.Value) (jinja.Value, error) {
	if len(args) == 0 {
		return jinja.Undefined(), errors.New("tojson: no value")
	}
	e := jsonEncoder{item: ", ", key: ": "}
	if v, ok := kw["ensure_ascii"]; ok {
		e.ascii = v.IsTruthy()
	}
	if v, ok := kw["sort_keys"]; ok {
		e.sort = v.IsTruthy()
	}
	if v, ok := kw["indent"]; ok && !v.IsNone() && !v.IsUndefined() {
		switch {
		case v.IsInt():
			e.indent = strings.Repeat(" ", int(max(0, min(v.AsInt(), 64))))
		case v.IsString():
			e.indent = v.AsString()
		default:
			return jinja.Undefined(), fmt.Errorf("tojson: indent %s is not an integer or a string", v.String())
		}
		e.indented, e.item = true, ","
	}
	if v, ok := kw["separators"]; ok && !v.IsNone() && !v.IsUndefined() {
		if !v.IsList() || v.AsList().Len() != 2 || !v.AsList().Get(0).IsString() || !v.AsList().Get(1).IsString() {
			return jinja.Undefined(), errors.New("tojson: separators must be two strings")
		}
		e.item, e.key = v.AsList().Get(0).AsString(), v.AsList().Get(1).AsString()
	}
	var sb strings.Builder
	if err := e.value(&sb, args[0], 0); err != nil {
		return jinja.Undefined(), fmt.Errorf("tojson: %w", err)
	}
	return jinja.NewString(sb.String()), nil
}

type jsonEncoder struct {
	item, key, indent string
	indented          bool
	ascii, sort       bool
}

// maxJSONDepth bounds nesting, as Python's recursion limit does.
const maxJSONDepth = 512

func (e *jsonEncoder) newline(sb *strings.Builder, depth int) {
	if e.indented {
		sb.WriteByte('\n')
		for range depth {
			sb.WriteString(e.indent)
		}
	}
}

func (e *jsonEncoder) value(sb *strings.Builder, v jinja.Value, depth int) error {
	if depth > maxJSONDepth {
		return errors.New("nested too deep")
	}
	switch {
	case v.IsNone():
		sb.WriteString("null")
	case v.IsBool():
		sb.WriteString(strconv.FormatBool(v.AsBool()))
	case v.IsInt():
		sb.WriteString(strconv.FormatInt(v.AsInt(), 10))
	case v.IsFloat():
		sb.WriteString(pyFloat(v.AsFloat()))
	case v.IsString():
		e.str(sb, v.AsString())
	case v.IsList():
		items := v.AsList().Items
		if len(items) == 0 {
			sb.WriteString("[]")
			return nil
		}
		sb.WriteByte('[')
		for i, it := range items {
			if i > 0 {
				sb.WriteString(e.item)
			}
			e.newline(sb, depth+1)
			if err := e.value(sb, it, depth+1); err != nil {
				return err
			}
		}
		e.newline(sb, depth)
		sb.WriteByte(']')
	case v.IsDict():
		d := v.AsDict()
		keys := slices.Clone(d.Keys)
		if len(keys) == 0 {
			sb.WriteString("{}")
			return nil
		}
		if e.sort {
			slices.Sort(keys)
		}
		sb.WriteByte('{')
		for i, k := range keys {
			if i > 0 {
				sb.WriteString(e.item)
			}
			e.newline(sb, depth+1)
			e.str(sb, k)
			sb.WriteString(e.key)
			val, _ := d.Get(k)
			if err := e.value(sb, val, depth+1); err != nil {
				return err
			}
		}
		e.newline(sb, depth)
		sb.WriteByte('}')
	case v.IsUndefined():
		return errors.New("Object of type Undefined is not JSON serializable")
	default:
		return fmt.Errorf("%s is not JSON serializable", v.String())
	}
	return nil
}

// str writes s as Python's json module quotes it: \" \\ \n \r \t \b \f, other control
// characters as \u00XX, and — only with ensure_ascii — everything outside printable
// ASCII as \uXXXX (UTF-16 surrogate pairs beyond the BMP). Invalid UTF-8 (which a Python
// str cannot hold) is written as U+FFFD.
func (e *jsonEncoder) str(sb *strings.Builder, s string) {
	const hex = "0123456789abcdef"
	u := func(r rune) {
		sb.WriteString(`\u`)
		sb.WriteByte(hex[r>>12&0xf])
		sb.WriteByte(hex[r>>8&0xf])
		sb.WriteByte(hex[r>>4&0xf])
		sb.WriteByte(hex[r&0xf])
	}
	sb.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"':
			sb.WriteString(`\"`)
		case r == '\\':
			sb.WriteString(`\\`)
		case r == '\n':
			sb.WriteString(`\n`)
		case r == '\r':
			sb.WriteString(`\r`)
		case r == '\t':
			sb.WriteString(`\t`)
		case r == '\b':
			sb.WriteString(`\b`)
		case r == '\f':
			sb.WriteString(`\f`)
		case r < 0x20:
			u(r)
		case !e.ascii || r < 0x7f:
			sb.WriteRune(r)
		case r > 0xffff:
			r -= 0x10000
			u(0xd800 + r>>10)
			u(0xdc00 + r&0x3ff)
		default:
			u(r)
		}
	}
	sb.WriteByte('"')
}

// pyFloat formats f as Python's float repr: the shortest digits that round-trip, in
// positional notation for decimal exponents from -4 to 15 (with ".0" when integral),
// else as d.ddde±XX.
func pyFloat(f float64) string {
	switch {
	case math.IsNaN(f):
		return "NaN"
	case math.IsInf(f, 1):
		return "Infinity"
	case math.IsInf(f, -1):
		return "-Infinity"
	}
	s := strconv.FormatFloat(f, 'e', -1, 64) // d.ddde±XX
	mant, exp, _ := strings.Cut(s, "e")
	x, _ := strconv.Atoi(exp)
	if x < -4 || x >= 16 {
		sign := "+"
		if x < 0 {
			sign, x = "-", -x
		}
		return fmt.Sprintf("%se%s%02d", mant, sign, x)
	}
	s = strconv.FormatFloat(f, 'f', -1, 64)
	if !strings.ContainsAny(s, ".") {
		s += ".0"
	}
	return s
}
