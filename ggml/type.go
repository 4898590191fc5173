// Package ggml holds the facts of ggml's tensor element types as GGUF files number them:
// names, block sizes and the bytes a row takes. It is a leaf: the GGUF parser and the
// kernels both import it, and it imports only the standard library, so reading a file's
// header never pulls in compute.
package ggml

import (
	"fmt"
	"strings"
)

// Type is a tensor element type, numbered as ggml numbers them in GGUF files.
type Type uint32

// The tensor types specd reads and computes with.
const (
	F32  Type = 0
	F16  Type = 1
	Q4_0 Type = 2
	Q8_0 Type = 8
)

// QK is the number of weights in one Q8_0 or Q4_0 block.
const QK = 32

var typeNames = map[Type]string{F32: "f32", F16: "f16", Q4_0: "q4_0", Q8_0: "q8_0"}

// String returns the lower-case name used on the command line ("q8_0").
func (t Type) String() string {
	if n, ok := typeNames[t]; ok {
		return n
	}
	return fmt.Sprintf("type(%d)", uint32(t))
}

// Supported reports whether specd can load and compute with tensors of type t.
func (t Type) Supported() bool {
	_, ok := typeNames[t]
	return ok
}

// ParseType parses a command-line type name such as "q8_0" (case-insensitive).
func ParseType(s string) (Type, error) {
	for t, n := range typeNames {
		if strings.EqualFold(s, n) {
			return t, nil
		}
	}
	return 0, fmt.Errorf("unknown type %q (want f32, f16, q8_0 or q4_0)", s)
}

// BlockSize returns the number of elements in one block of t: 1 for F32 and F16,
// QK for the quantized types. It returns 0 for an unsupported type.
func (t Type) BlockSize() int {
	switch t {
	case F32, F16:
		return 1
	case Q4_0, Q8_0:
		return QK
	}
	return 0
}

// BlockBytes returns the size in bytes of one block of t (0 for an unsupported type).
func (t Type) BlockBytes() int {
	switch t {
	case F32:
		return 4
	case F16:
		return 2
	case Q4_0:
		return 2 + QK/2
	case Q8_0:
		return 2 + QK
	}
	return 0
}

// RowBytes returns the size of n consecutive elements of t. n must be a multiple of the
// block size.
func (t Type) RowBytes(n int) (int, error) {
	bs := t.BlockSize()
	if bs == 0 {
		return 0, fmt.Errorf("unsupported tensor type %v", t)
	}
	if n < 0 || n%bs != 0 {
		return 0, fmt.Errorf("%d elements of %v: not a multiple of the block size %d", n, t, bs)
	}
	return n / bs * t.BlockBytes(), nil
}
