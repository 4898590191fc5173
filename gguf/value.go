package gguf

import (
	"encoding/binary"
	"fmt"
	"math"
	"strconv"
)

// ValueType is the type of a metadata value, numbered as the GGUF specification numbers
// gguf_metadata_value_type.
type ValueType uint32

// The metadata value types of the GGUF specification (GGUF_METADATA_VALUE_TYPE_*).
const (
	TypeUint8   ValueType = 0
	TypeInt8    ValueType = 1
	TypeUint16  ValueType = 2
	TypeInt16   ValueType = 3
	TypeUint32  ValueType = 4
	TypeInt32   ValueType = 5
	TypeFloat32 ValueType = 6
	TypeBool    ValueType = 7
	TypeString  ValueType = 8
	TypeArray   ValueType = 9
	TypeUint64  ValueType = 10
	TypeInt64   ValueType = 11
	TypeFloat64 ValueType = 12
)

var valueTypeNames = [...]string{
	TypeUint8:   "uint8",
	TypeInt8:    "int8",
	TypeUint16:  "uint16",
	TypeInt16:   "int16",
	TypeUint32:  "uint32",
	TypeInt32:   "int32",
	TypeFloat32: "float32",
	TypeBool:    "bool",
	TypeString:  "string",
	TypeArray:   "array",
	TypeUint64:  "uint64",
	TypeInt64:   "int64",
	TypeFloat64: "float64",
}

// String returns the lower-case name of t ("uint32"), or "value_type(N)" when t is not a
// type of the specification.
func (t ValueType) String() string {
	if t.valid() {
		return valueTypeNames[t]
	}
	return "value_type(" + strconv.FormatUint(uint64(t), 10) + ")"
}

func (t ValueType) valid() bool { return t <= TypeFloat64 }

// fixedSize returns the encoded size of a scalar of type t, or 0 for strings, arrays and
// unknown types, whose size is not fixed.
func (t ValueType) fixedSize() int {
	switch t {
	case TypeUint8, TypeInt8, TypeBool:
		return 1
	case TypeUint16, TypeInt16:
		return 2
	case TypeUint32, TypeInt32, TypeFloat32:
		return 4
	case TypeUint64, TypeInt64, TypeFloat64:
		return 8
	}
	return 0
}

// minSize returns the smallest number of bytes one value of type t occupies in a file: a
// string is at least its 8-byte length, an array its 4-byte element type and 8-byte count.
// Counts read from a file are bounded with it before anything is allocated.
func (t ValueType) minSize() int {
	switch t {
	case TypeString:
		return 8
	case TypeArray:
		return 12
	}
	return t.fixedSize()
}

func (t ValueType) isInt() bool {
	switch t {
	case TypeUint8, TypeInt8, TypeUint16, TypeInt16, TypeUint32, TypeInt32, TypeUint64, TypeInt64:
		return true
	}
	return false
}

func (t ValueType) isSigned() bool {
	return t == TypeInt8 || t == TypeInt16 || t == TypeInt32 || t == TypeInt64
}

// Value is one metadata value. The zero Value is a uint8 zero. Values are immutable: the
// slices returned by the accessors are fresh copies, and a Value read from a file does not
// refer to the file's bytes, so it stays valid after the File is closed.
type Value struct {
	Type ValueType

	bits uint64      // scalars: the little-endian bits as stored, zero-extended
	str  string      // TypeString
	arr  *arrayValue // TypeArray; nil only in a Value not built by this package
}

// arrayValue holds the elements of an array in the cheapest form for its element type.
type arrayValue struct {
	elem ValueType
	n    int
	raw  []byte   // fixed-size elements, n*elem.fixedSize() bytes exactly as stored
	strs []string // string elements
	vals []Value  // array elements (nested arrays)
}

func scalar(t ValueType, bits uint64) Value { return Value{Type: t, bits: bits} }

// NewUint8 returns a uint8 Value.
func NewUint8(x uint8) Value { return scalar(TypeUint8, uint64(x)) }

// NewInt8 returns an int8 Value.
func NewInt8(x int8) Value { return scalar(TypeInt8, uint64(uint8(x))) }

// NewUint16 returns a uint16 Value.
func NewUint16(x uint16) Value { return scalar(TypeUint16, uint64(x)) }

// NewInt16 returns an int16 Value.
func NewInt16(x int16) Value { return scalar(TypeInt16, uint64(uint16(x))) }

// NewUint32 returns a uint32 Value.
func NewUint32(x uint32) Value { return scalar(TypeUint32, uint64(x)) }

// NewInt32 returns an int32 Value.
func NewInt32(x int32) Value { return scalar(TypeInt32, uint64(uint32(x))) }

// NewUint64 returns a uint64 Value.
func NewUint64(x uint64) Value { return scalar(TypeUint64, x) }

// NewInt64 returns an int64 Value.
func NewInt64(x int64) Value { return scalar(TypeInt64, uint64(x)) }

// NewFloat32 returns a float32 Value.
func NewFloat32(x float32) Value { return scalar(TypeFloat32, uint64(math.Float32bits(x))) }

// NewFloat64 returns a float64 Value.
func NewFloat64(x float64) Value { return scalar(TypeFloat64, math.Float64bits(x)) }

// NewBool returns a bool Value.
func NewBool(x bool) Value {
	if x {
		return scalar(TypeBool, 1)
	}
	return scalar(TypeBool, 0)
}

// NewString returns a string Value. GGUF strings are UTF-8 by convention; the bytes of s
// are written as they are.
func NewString(s string) Value { return Value{Type: TypeString, str: s} }

// NewStrings returns an array of strings. It copies ss.
func NewStrings(ss []string) Value {
	a := &arrayValue{elem: TypeString, n: len(ss)}
	if len(ss) > 0 {
		a.strs = append([]string(nil), ss...)
	}
	return Value{Type: TypeArray, arr: a}
}

// NewFloat32s returns an array of float32.
func NewFloat32s(xs []float32) Value {
	raw := make([]byte, 0, 4*len(xs))
	for _, x := range xs {
		raw = binary.LittleEndian.AppendUint32(raw, math.Float32bits(x))
	}
	return rawArray(TypeFloat32, len(xs), raw)
}

// NewInt32s returns an array of int32.
func NewInt32s(xs []int32) Value {
	raw := make([]byte, 0, 4*len(xs))
	for _, x := range xs {
		raw = binary.LittleEndian.AppendUint32(raw, uint32(x))
	}
	return rawArray(TypeInt32, len(xs), raw)
}

func rawArray(elem ValueType, n int, raw []byte) Value {
	if n == 0 {
		raw = nil
	}
	return Value{Type: TypeArray, arr: &arrayValue{elem: elem, n: n, raw: raw}}
}

// NewArray returns an array of elements of type elem, which may itself be TypeArray (the
// inner arrays may have different element types and lengths). It returns an error when
// elem is not a value type of the specification or an element's type is not elem.
func NewArray(elem ValueType, elems []Value) (Value, error) {
	if !elem.valid() {
		return Value{}, fmt.Errorf("gguf: array of unknown value type %d", uint32(elem))
	}
	a := &arrayValue{elem: elem, n: len(elems)}
	for i, e := range elems {
		if e.Type != elem {
			return Value{}, fmt.Errorf("gguf: array of %v: element %d is %v", elem, i, e.Type)
		}
		switch {
		case elem == TypeString:
			a.strs = append(a.strs, e.str)
		case elem == TypeArray:
			if e.arr == nil {
				return Value{}, fmt.Errorf("gguf: array of arrays: element %d was not built by this package", i)
			}
			a.vals = append(a.vals, e)
		default:
			a.raw = appendScalar(a.raw, e)
		}
	}
	return Value{Type: TypeArray, arr: a}, nil
}

func appendScalar(b []byte, v Value) []byte {
	switch v.Type.fixedSize() {
	case 1:
		return append(b, byte(v.bits))
	case 2:
		return binary.LittleEndian.AppendUint16(b, uint16(v.bits))
	case 4:
		return binary.LittleEndian.AppendUint32(b, uint32(v.bits))
	}
	return binary.LittleEndian.AppendUint64(b, v.bits)
}

func readScalar(t ValueType, b []byte) Value {
	var bits uint64
	switch t.fixedSize() {
	case 1:
		bits = uint64(b[0])
	case 2:
		bits = uint64(binary.LittleEndian.Uint16(b))
	case 4:
		bits = uint64(binary.LittleEndian.Uint32(b))
	case 8:
		bits = binary.LittleEndian.Uint64(b)
	}
	return Value{Type: t, bits: bits}
}

// signed returns the value of a signed integer scalar, sign-extended.
func (v Value) signed() int64 {
	switch v.Type {
	case TypeInt8:
		return int64(int8(v.bits))
	case TypeInt16:
		return int64(int16(v.bits))
	case TypeInt32:
		return int64(int32(v.bits))
	}
	return int64(v.bits)
}

// Uint returns the value of an unsigned integer, or of a signed integer that is not
// negative. ok is false for any other type or a negative value.
func (v Value) Uint() (x uint64, ok bool) {
	if !v.Type.isInt() {
		return 0, false
	}
	if v.Type.isSigned() {
		s := v.signed()
		if s < 0 {
			return 0, false
		}
		return uint64(s), true
	}
	return v.bits, true
}

// Int returns the value of a signed integer, or of an unsigned integer no larger than
// math.MaxInt64. ok is false for any other type or value.
func (v Value) Int() (x int64, ok bool) {
	if !v.Type.isInt() {
		return 0, false
	}
	if v.Type.isSigned() {
		return v.signed(), true
	}
	if v.bits > math.MaxInt64 {
		return 0, false
	}
	return int64(v.bits), true
}

// Float returns the value of a float32 or float64 (ok is false for any other type; integers
// are not converted).
func (v Value) Float() (x float64, ok bool) {
	switch v.Type {
	case TypeFloat32:
		return float64(math.Float32frombits(uint32(v.bits))), true
	case TypeFloat64:
		return math.Float64frombits(v.bits), true
	}
	return 0, false
}

// Bool returns the value of a bool.
func (v Value) Bool() (x, ok bool) {
	if v.Type != TypeBool {
		return false, false
	}
	return v.bits != 0, true
}

// Str returns the value of a string. (String formats any Value for people to read.)
func (v Value) Str() (s string, ok bool) {
	if v.Type != TypeString {
		return "", false
	}
	return v.str, true
}

// Len returns the number of elements of an array, and 0 for any other type.
func (v Value) Len() int {
	if v.Type != TypeArray || v.arr == nil {
		return 0
	}
	return v.arr.n
}

// Elem returns the element type of an array. For any other type the result is meaningless.
func (v Value) Elem() ValueType {
	if v.Type != TypeArray || v.arr == nil {
		return 0
	}
	return v.arr.elem
}

// Index returns element i of an array. Like indexing a slice, it panics when v is not an
// array or i is out of range [0, v.Len()).
func (v Value) Index(i int) Value {
	if i < 0 || i >= v.Len() {
		panic(fmt.Sprintf("gguf: Index(%d) of a %v value of length %d", i, v.Type, v.Len()))
	}
	a := v.arr
	switch a.elem {
	case TypeString:
		return NewString(a.strs[i])
	case TypeArray:
		return a.vals[i]
	}
	sz := a.elem.fixedSize()
	return readScalar(a.elem, a.raw[i*sz:(i+1)*sz])
}

// Strings returns the elements of an array of strings as a new slice.
func (v Value) Strings() ([]string, bool) {
	if v.Type != TypeArray || v.arr == nil || v.arr.elem != TypeString {
		return nil, false
	}
	return append([]string{}, v.arr.strs...), true
}

// Float32s returns the elements of an array of float32 as a new slice (float64 arrays are
// not converted).
func (v Value) Float32s() ([]float32, bool) {
	if v.Type != TypeArray || v.arr == nil || v.arr.elem != TypeFloat32 {
		return nil, false
	}
	out := make([]float32, v.arr.n)
	for i := range out {
		out[i] = math.Float32frombits(binary.LittleEndian.Uint32(v.arr.raw[4*i:]))
	}
	return out, true
}

// Int32s returns the elements of an array of integers of any width as a new slice of
// int32. ok is false when v is not an array of integers or an element does not fit in an
// int32.
func (v Value) Int32s() ([]int32, bool) {
	if v.Type != TypeArray || v.arr == nil || !v.arr.elem.isInt() {
		return nil, false
	}
	out := make([]int32, v.arr.n)
	for i := range out {
		x, ok := v.Index(i).Int()
		if !ok || x < math.MinInt32 || x > math.MaxInt32 {
			return nil, false
		}
		out[i] = int32(x)
	}
	return out, true
}

// Equal reports whether v and w have the same type and the same encoding: floats compare
// by their bits, so a NaN equals the same NaN and 0 does not equal -0.
func (v Value) Equal(w Value) bool {
	if v.Type != w.Type {
		return false
	}
	switch v.Type {
	case TypeString:
		return v.str == w.str
	case TypeArray:
		return v.arr.equal(w.arr)
	}
	return v.bits == w.bits
}

func (a *arrayValue) equal(b *arrayValue) bool {
	if a == nil || b == nil {
		return a == b
	}
	if a.elem != b.elem || a.n != b.n {
		return false
	}
	switch a.elem {
	case TypeString:
		for i := range a.strs {
			if a.strs[i] != b.strs[i] {
				return false
			}
		}
		return true
	case TypeArray:
		for i := range a.vals {
			if !a.vals[i].Equal(b.vals[i]) {
				return false
			}
		}
		return true
	}
	return string(a.raw) == string(b.raw)
}

// String formats v for people to read: numbers and bools as Go prints them, strings
// quoted, arrays as their element type and length ("[4096]string").
func (v Value) String() string {
	switch {
	case v.Type == TypeString:
		return strconv.Quote(v.str)
	case v.Type == TypeArray:
		return fmt.Sprintf("[%d]%v", v.Len(), v.Elem())
	case v.Type == TypeBool:
		return strconv.FormatBool(v.bits != 0)
	case v.Type == TypeFloat32:
		f, _ := v.Float()
		return strconv.FormatFloat(f, 'g', -1, 32)
	case v.Type == TypeFloat64:
		f, _ := v.Float()
		return strconv.FormatFloat(f, 'g', -1, 64)
	case v.Type.isSigned():
		return strconv.FormatInt(v.signed(), 10)
	case v.Type.isInt():
		return strconv.FormatUint(v.bits, 10)
	}
	return v.Type.String()
}
