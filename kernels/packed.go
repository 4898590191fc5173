package kernels

import "github.com/specd-dev/specd/ggml"

// Packed weights: a second copy of a quantized matrix laid out for one implementation's
// kernels, made once at load. The GGUF layout keeps each block's 32 weights together, so
// a kernel that reads it must scale and accumulate every block (or pair of blocks) for
// every token. The avx512vnni packing interleaves 16 blocks (of 32 weights: K-quant
// super-blocks are cut into their sub-blocks) so that one chain of integer dot products
// sums each of them in its own lane, and the float work per token falls to one
// conversion, multiply and FMA per 16 blocks (two or four for the types with two scales
// or an offset per block): blocks of several tokens (verification, prefill) then cost
// little more than one. The byte layouts and Q4_K go further: they are laid out in
// tiles of 16 rows (packTilesBytes, packTilesQ4K), the rows sharing the lanes, so that
// no dot product is reduced across lanes and the activations are broadcast a dword at a
// time; Q4_K's super-block sums are moreover scaled in integers.

// packKind is a packed layout; several weight types share one when they decode to the
// same form (see decodeSub). Per group of 16 blocks of 32 weights (for the kinds marked
// "tiles", per tile of 16 rows and block of 32 weights on avx512vnni; see below):
//
//	kindQ8       Q8_0, Q5_0, IQ4_NL: D, then 8 vectors of bytes w+128 (tiles)
//	kindQ4       Q4_0: D, then 4 vectors of GGUF nibbles (w+8)
//	kindNibMin   Q4_K: no groups; tiles of 16 rows (see packTilesQ4K)
//	kindByteMin  Q5_K, Q5_1: D, E, then 8 vectors of bytes w+128 (tiles)
//	kindHalves   Q6_K: DL, DH, then 8 vectors of bytes w+128 (tiles)
//	kindHalfMin  Q2_K, Q3_K: DL, DH, EL, EH, then 4 vectors of nibbles w+b
//
// where D, E, DL… are 16 float32s, one a lane: the scale and E = -F/c, F the offset of
// x = D·w + F and c = 128, the constant of the correction the kernel reads (per block or
// per half), so that F·Σa = E·(-c·Σa). Q3_K's weights (-4..3) are stored plus b = 4,
// its offset then F = -4·D. In a group, vector j holds in dword lane i the weights
// 4j..4j+3 of block i (for nibbles, GGUF bytes 4j..4j+3: weights 4j.. in the low
// nibbles, 16+4j.. in the high). On avx512vnni the kinds marked "tiles" are packed not
// in groups but in tiles of 16 rows (packTilesBytes): the same parts then describe one
// block of 16 rows, lane r holding row r's scales and weights, and a row's blocks are
// not padded to groups of 16.
type packKind int

const (
	kindNone packKind = iota
	kindQ8
	kindQ4
	kindNibMin
	kindByteMin
	kindHalves
	kindHalfMin
	numKinds
)

// packKindOf returns the packed layout of weights of type t (kindNone: not packable).
func packKindOf(t ggml.Type) packKind {
	switch t {
	case ggml.Q8_0, ggml.Q5_0, ggml.IQ4_NL:
		return kindQ8
	case ggml.Q4_0:
		return kindQ4
	case ggml.Q4_K:
		return kindNibMin
	case ggml.Q5_K, ggml.Q5_1:
		return kindByteMin
	case ggml.Q6_K:
		return kindHalves
	case ggml.Q2_K, ggml.Q3_K:
		return kindHalfMin
	}
	return kindNone
}

// kindLayout is where a packed group keeps its parts: byte offsets of the scales (dh
// that of the second halves', -1 for one scale a block), of E (eh likewise, -1 for no
// offsets) and of the weights, whether they are nibbles, and the group's size. asmgen.go
// has the same table.
type kindLayout struct {
	d, dh, e, eh, w int
	nib             bool
	bytes           int
}

// kindLayouts has no entry for kindNibMin, whose packing is in tiles (packTilesQ4K).
var kindLayouts = [numKinds]kindLayout{
	kindQ8:      {0, -1, -1, -1, 64, false, 576},
	kindQ4:      {0, -1, -1, -1, 64, true, 320},
	kindByteMin: {0, -1, 64, -1, 128, false, 640},
	kindHalves:  {0, 64, -1, -1, 128, false, 640},
	kindHalfMin: {0, 64, 128, 192, 256, true, 512},
}

// Pack makes MatMul read m through a copy of its weights laid out for the current
// implementation's fastest kernels, if it has such a layout for m: avx512vnni for every
// quantized type, avx2 for those beyond Q8_0 and Q4_0 (48 bytes per 32 weights). Rows of
// Q4_0, and of Q8_0 where it is not packed in tiles (avx2), are packed when they pad to
// whole groups of 16 blocks with at most 1/8 waste (their unpacked kernels are fast
// too); tiles pad nothing, and rows of the other types are packed always, their
// unpacked kernel being portable Go. For avx512vnni the copy takes about as much memory
// as m.Data for Q8_0, Q4_0 and Q4_K, and more for the other types: 1.5× for Q6_K,
// 1.6–1.8× for Q5_0, Q5_1 and Q5_K, which it widens to a byte a weight, 2× for IQ4_NL,
// 2.3× for Q3_K and 3× for Q2_K, whose nibbles carry four float32s a block. m.Data stays
// in use for Row.
//
// A packed matrix's products are rounded differently from an unpacked one's (the blocks
// are summed in another order), and stay batch invariant. Pack must not run concurrently
// with a product that reads m. Packing again is a no-op.
func (m *Matrix) Pack() {
	kind := packKindOf(m.Type)
	if cur.pack == nil || m.packedBy == cur || kind == kindNone || cur.packed[kind] == nil && !cur.subPacked(m.Type) && !cur.tiles(m.Type) {
		return
	}
	nb := m.Cols / ggml.QK
	groups := (nb + 15) / 16
	if nb == 0 || (kind == kindQ4 || m.Type == ggml.Q8_0 && !cur.tiles(m.Type)) && (groups*16-nb)*8 > nb {
		return
	}
	m.packed, m.packedBy = cur.pack(m), cur
}

// Packed reports whether MatMul reads m through packed weights (see Pack).
func (m *Matrix) Packed() bool { return m.packedBy != nil && m.packedBy == cur }

// packedRowBytes is the size of one packed row of m: in the sub-type layout of its
// kernel set (subBlockBytes a block of 32), else in its packKind's.
func packedRowBytes(m *Matrix) int {
	if m.packedBy != nil && m.packedBy.subPacked(m.Type) {
		return m.Cols / ggml.QK * subBlockBytes
	}
	if m.packedBy != nil && m.packedBy.tiles(m.Type) && m.Type == ggml.Q4_K {
		return m.Cols / ggml.QKK * tileSBBytes / tileRows
	}
	if m.packedBy != nil && m.packedBy.tiles(m.Type) {
		return m.Cols / ggml.QK * kindLayouts[packKindOf(m.Type)].bytes / tileRows
	}
	groups := (m.Cols/ggml.QK + 15) / 16
	return groups * kindLayouts[packKindOf(m.Type)].bytes
}

// packedActBytes is the size of one token's activations per group of 16 blocks for the
// packed kernels (asmgen.go has the same constant).
const packedActBytes = 1088

// tileSBBytes is the size of a super-block of 16 rows in the tiled Q4_K layout (see
// packTilesQ4K; asmgen.go has the same constant).
const tileSBBytes = 128 + 8*(32+256)

// subBlockBytes is the size of a block of 32 weights in the avx2 sub-type layout (see
// packSubsAVX2): four float32 scales and offsets, then 32 int8 weights.
const subBlockBytes = 48
