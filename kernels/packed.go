package kernels

import "github.com/specd-dev/specd/ggml"

// Packed weights: a second copy of a Q8_0 or Q4_0 matrix laid out for one implementation's
// kernels, made once at load. The GGUF layout keeps each block's 32 weights together, so
// a kernel that reads it must scale and accumulate every block (or pair of blocks) for
// every token. The avx512vnni packing interleaves 16 blocks so that one chain of integer
// dot products sums each of them in its own lane, and the float work per token falls to
// one conversion, multiply and FMA per 16 blocks: blocks of several tokens (verification,
// prefill) then cost little more than one.

// Pack makes MatMul read m through a copy of its weights laid out for the current
// implementation's fastest kernels, if it has such a layout for m: today avx512vnni, for
// Q8_0 and Q4_0 matrices whose rows pad to whole groups of 16 blocks with at most 1/8
// waste. The copy takes about as much memory as m.Data; m.Data stays in use for Row.
//
// A packed matrix's products are rounded differently from an unpacked one's (the blocks
// are summed in another order), and stay batch invariant. Pack must not run concurrently
// with a product that reads m. Packing again is a no-op.
func (m *Matrix) Pack() {
	if cur.pack == nil || m.packedBy == cur || (m.Type != ggml.Q8_0 && m.Type != ggml.Q4_0) {
		return
	}
	nb := m.Cols / ggml.QK
	groups := (nb + 15) / 16
	if nb == 0 || (groups*16-nb)*8 > nb {
		return
	}
	m.packed, m.packedBy = cur.pack(m), cur
}

// Packed reports whether MatMul reads m through packed weights (see Pack).
func (m *Matrix) Packed() bool { return m.packedBy != nil && m.packedBy == cur }

// packedRowBytes is the size of one packed row of m for the avx512vnni kernels: per group
// of 16 blocks, 16 float32 scales and then the weights, 512 bytes for Q8_0 and 256 for
// Q4_0.
func packedRowBytes(m *Matrix) int {
	groups := (m.Cols/ggml.QK + 15) / 16
	if m.Type == ggml.Q4_0 {
		return groups * 320
	}
	return groups * 576
}

// packedActBytes is the size of one token's activations per group of 16 blocks for the
// packed kernels (asmgen.go has the same constant).
const packedActBytes = 704
