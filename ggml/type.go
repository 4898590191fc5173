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
	F32    Type = 0
	F16    Type = 1
	Q4_0   Type = 2
	Q5_0   Type = 6
	Q5_1   Type = 7
	Q8_0   Type = 8
	Q2_K   Type = 10
	Q3_K   Type = 11
	Q4_K   Type = 12
	Q5_K   Type = 13
	Q6_K   Type = 14
	IQ4_NL Type = 20
	BF16   Type = 30
)

// QK is the number of weights in one block of the 32-weight types (Q8_0, Q4_0, Q5_0,
// Q5_1, IQ4_NL), and in one sub-block of a K-quant super-block.
const QK = 32

// QKK is the number of weights in one super-block of the K-quants (Q2_K … Q6_K).
const QKK = 256

// info is what ggml's type traits say of a type: its name, weights per block and
// bytes per block.
type info struct {
	name  string
	block int
	bytes int
}

// Block sizes follow ggml-common.h: for example block_q4_K is d and dmin (fp16), 12
// bytes of packed 6-bit scales and mins, and 128 bytes of nibbles.
var types = map[Type]info{
	F32:    {"f32", 1, 4},
	F16:    {"f16", 1, 2},
	BF16:   {"bf16", 1, 2},
	Q4_0:   {"q4_0", QK, 2 + QK/2},
	Q5_0:   {"q5_0", QK, 2 + 4 + QK/2},
	Q5_1:   {"q5_1", QK, 2 + 2 + 4 + QK/2},
	Q8_0:   {"q8_0", QK, 2 + QK},
	IQ4_NL: {"iq4_nl", QK, 2 + QK/2},
	Q2_K:   {"q2_k", QKK, QKK/16 + QKK/4 + 2 + 2},
	Q3_K:   {"q3_k", QKK, QKK/8 + QKK/4 + 12 + 2},
	Q4_K:   {"q4_k", QKK, 2 + 2 + 12 + QKK/2},
	Q5_K:   {"q5_k", QKK, 2 + 2 + 12 + QKK/8 + QKK/2},
	Q6_K:   {"q6_k", QKK, QKK/2 + QKK/4 + QKK/16 + 2},
}

// otherNames names the ggml types that GGUF files carry and specd does not run, so that
// an error about one says "iq4_xs", not 23. Numbers 31–33 and 36–38 are the repacked
// Q4_0 and IQ4_NL layouts ggml wrote into files for a while in 2024.
var otherNames = map[Type]string{
	3: "q4_1", 9: "q8_1", 15: "q8_k", 16: "iq2_xxs", 17: "iq2_xs", 18: "iq3_xxs", 19: "iq1_s",
	21: "iq3_s", 22: "iq2_s", 23: "iq4_xs", 24: "i8", 25: "i16", 26: "i32", 27: "i64", 28: "f64",
	29: "iq1_m", 31: "q4_0_4_4", 32: "q4_0_4_8", 33: "q4_0_8_8", 34: "tq1_0", 35: "tq2_0",
	36: "iq4_nl_4_4", 37: "iq4_nl_4_8", 38: "iq4_nl_8_8", 39: "mxfp4",
}

// String returns the lower-case name used on the command line ("q8_0", "q4_k"), ggml's
// name for a type specd does not run ("iq4_xs"), or "type(N)" for a number ggml never
// used.
func (t Type) String() string {
	if in, ok := types[t]; ok {
		return in.name
	}
	if name, ok := otherNames[t]; ok {
		return name
	}
	return fmt.Sprintf("type(%d)", uint32(t))
}

// Supported reports whether specd can load and compute with tensors of type t.
func (t Type) Supported() bool {
	_, ok := types[t]
	return ok
}

// ParseType parses a type name such as "q8_0" or "Q4_K" (case-insensitive).
func ParseType(s string) (Type, error) {
	for t, in := range types {
		if strings.EqualFold(s, in.name) {
			return t, nil
		}
	}
	return 0, fmt.Errorf("unknown type %q (want f32, f16, bf16, q8_0, q4_0, q5_0, q5_1, iq4_nl, q2_k, q3_k, q4_k, q5_k or q6_k)", s)
}

// BlockSize returns the number of elements in one block of t: 1 for the float types,
// QK for the 32-weight types and QKK for the K-quants. It returns 0 for an unsupported
// type.
func (t Type) BlockSize() int { return types[t].block }

// BlockBytes returns the size in bytes of one block of t (0 for an unsupported type).
func (t Type) BlockBytes() int { return types[t].bytes }

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
