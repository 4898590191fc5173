package gguf

import (
	"encoding/binary"
	"fmt"
)

// decoder reads little-endian fields from buf, checking each against the bytes left.
type decoder struct {
	buf   []byte
	off   int
	where string // what is being read, for errors: "header", `key "general.name"`
}

func (d *decoder) left() int { return len(d.buf) - d.off }

func (d *decoder) errAt(off int, sentinel error, detail string) error {
	return &FormatError{Where: d.where, Offset: int64(off), Err: sentinel, Detail: detail}
}

func (d *decoder) err(sentinel error, detail string) error { return d.errAt(d.off, sentinel, detail) }

// take returns the next n bytes, or an ErrTruncated error naming what was being read.
func (d *decoder) take(n int, what string) ([]byte, error) {
	if n > d.left() {
		return nil, d.err(ErrTruncated, fmt.Sprintf("%s needs %d bytes, %d left", what, n, d.left()))
	}
	b := d.buf[d.off : d.off+n]
	d.off += n
	return b, nil
}

func (d *decoder) magic() error {
	n := min(len(d.buf), len(Magic))
	if string(d.buf[:n]) != Magic[:n] {
		return d.err(ErrNotGGUF, fmt.Sprintf("magic %q, want %q", d.buf[:n], Magic))
	}
	_, err := d.take(len(Magic), "magic")
	return err
}

func (d *decoder) u32(what string) (uint32, error) {
	b, err := d.take(4, what)
	if err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint32(b), nil
}

func (d *decoder) u64(what string) (uint64, error) {
	b, err := d.take(8, what)
	if err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint64(b), nil
}

// str reads a GGUF string: a uint64 length and that many bytes, copied.
func (d *decoder) str(what string) (string, error) {
	lenOff := d.off
	n, err := d.u64(what + " length")
	if err != nil {
		return "", err
	}
	if n > uint64(d.left()) {
		return "", d.errAt(lenOff, ErrTruncated, fmt.Sprintf("%s length %d exceeds the %d bytes left", what, n, d.left()))
	}
	b, _ := d.take(int(n), what)
	return string(b), nil
}

func (d *decoder) valueType(what string) (ValueType, error) {
	off := d.off
	x, err := d.u32(what)
	if err != nil {
		return 0, err
	}
	t := ValueType(x)
	if !t.valid() {
		return 0, d.errAt(off, ErrMalformed, fmt.Sprintf("unknown %s %d", what, x))
	}
	return t, nil
}

// value reads one value of type t; depth counts the arrays it is nested in.
func (d *decoder) value(t ValueType, depth int) (Value, error) {
	switch t {
	case TypeString:
		s, err := d.str("string")
		if err != nil {
			return Value{}, err
		}
		return NewString(s), nil
	case TypeArray:
		return d.array(depth)
	}
	off := d.off
	b, err := d.take(t.fixedSize(), t.String())
	if err != nil {
		return Value{}, err
	}
	if t == TypeBool && b[0] > 1 {
		return Value{}, d.errAt(off, ErrMalformed, fmt.Sprintf("bool byte %d (want 0 or 1)", b[0]))
	}
	return readScalar(t, b), nil
}

func (d *decoder) array(depth int) (Value, error) {
	if depth >= maxNesting {
		return Value{}, d.err(ErrMalformed, fmt.Sprintf("arrays nested more than %d deep", maxNesting))
	}
	elem, err := d.valueType("array element type")
	if err != nil {
		return Value{}, err
	}
	countOff := d.off
	count, err := d.u64("array length")
	if err != nil {
		return Value{}, err
	}
	if count > uint64(d.left()/elem.minSize()) {
		return Value{}, d.errAt(countOff, ErrTruncated, fmt.Sprintf(
			"array of %d %v needs at least %d bytes each, %d left", count, elem, elem.minSize(), d.left()))
	}
	n := int(count)
	a := &arrayValue{elem: elem, n: n}
	switch elem {
	case TypeString:
		a.strs = make([]string, 0, min(n, maxPrealloc))
		for i := range n {
			s, err := d.str("string")
			if err != nil {
				return Value{}, atElement(err, i)
			}
			a.strs = append(a.strs, s)
		}
	case TypeArray:
		a.vals = make([]Value, 0, min(n, maxPrealloc))
		for i := range n {
			v, err := d.array(depth + 1)
			if err != nil {
				return Value{}, atElement(err, i)
			}
			a.vals = append(a.vals, v)
		}
	default:
		off := d.off
		b, _ := d.take(n*elem.fixedSize(), "array") // the length check above covers it
		if elem == TypeBool {
			for i, x := range b {
				if x > 1 {
					return Value{}, d.errAt(off+i, ErrMalformed, fmt.Sprintf("bool %d of the array is byte %d (want 0 or 1)", i, x))
				}
			}
		}
		if n > 0 {
			a.raw = append([]byte(nil), b...)
		}
	}
	return Value{Type: TypeArray, arr: a}, nil
}

// atElement prefixes the detail of a format error with the array index it occurred at.
func atElement(err error, i int) error {
	if fe, ok := err.(*FormatError); ok {
		fe.Detail = fmt.Sprintf("array element %d: %s", i, fe.Detail)
	}
	return err
}
