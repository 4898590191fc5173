//go:build amd64

package kernels

import (
	"encoding/binary"
	"math"
	"unsafe"

	"github.com/specd-dev/specd/ggml"
)

// packVNNI lays out m for the avx512vnni kernels over packed weights: the byte layouts
// (Q8_0, Q5_0, IQ4_NL, Q6_K, Q5_K, Q5_1) and Q4_K in tiles of 16 rows (packTilesBytes,
// packTilesQ4K), Q4_0 for the dotQ4PVNNI kernels (see packed512 in asmgen.go) and Q2_K,
// Q3_K in their packKind layouts (packSubsVNNI). Q4_0, per row and group of 16 blocks:
// the blocks' scales as float32 (64 bytes), then four vectors whose dword i holds GGUF
// bytes 4m..4m+3 of block i (weights 4m.. in the low nibbles, 16+4m.. in the high).
// Blocks past the end of the row have scale 0 and weights 0 (nibbles 8).
func packVNNI(m *Matrix) *hugeMem {
	switch packKindOf(m.Type) {
	case kindNibMin:
		return packTilesQ4K(m)
	case kindQ8, kindHalves, kindByteMin:
		return packTilesBytes(m)
	}
	if m.Type != ggml.Q4_0 {
		return packSubsVNNI(m)
	}
	nb := m.Cols / ggml.QK
	groups := (nb + 15) / 16
	bb, rb, prb := m.Type.BlockBytes(), m.RowBytes(), packedRowBytes(m)
	mem := newHugeMem(m.Rows * prb)
	out := mem.b
	for r := range m.Rows {
		row := m.Data[r*rb : (r+1)*rb]
		for g := range groups {
			dst := out[r*prb+g*prb/groups:][:prb/groups]
			for i := range 16 {
				b := 16*g + i
				if b >= nb {
					for v := range 4 {
						copy(dst[64+64*v+4*i:][:4], []byte{0x88, 0x88, 0x88, 0x88})
					}
					continue
				}
				blk := row[b*bb : (b+1)*bb]
				d := f16Table[binary.LittleEndian.Uint16(blk)]
				binary.LittleEndian.PutUint32(dst[4*i:], math.Float32bits(d))
				for v := range 4 {
					copy(dst[64+64*v+4*i:][:4], blk[2+4*v:])
				}
			}
		}
	}
	return mem
}

// packSubsVNNI lays out m, of a type decodeSub reads other than Q4_K (packTilesQ4K), in
// its packKind's layout (see packKind): per block its scales, E = -F/c, and its weights w as bytes w+128 or as
// nibbles. Blocks past the end of the row have scales 0 and weights 0.
func packSubsVNNI(m *Matrix) *hugeMem {
	kind := packKindOf(m.Type)
	lay := kindLayouts[kind]
	nb := m.Cols / ggml.QK
	groups := (nb + 15) / 16
	bb, nsub, rb, prb := m.Type.BlockBytes(), m.Type.BlockSize()/ggml.QK, m.RowBytes(), packedRowBytes(m)
	mem := newHugeMem(m.Rows * prb)
	out := mem.b
	var w [ggml.QK]int8
	for r := range m.Rows {
		row := m.Data[r*rb : (r+1)*rb]
		for g := range groups {
			dst := out[r*prb+g*lay.bytes:][:lay.bytes]
			for i := range 16 {
				b := 16*g + i
				if b >= nb {
					if !lay.nib {
						for v := range 8 {
							copy(dst[lay.w+64*v+4*i:][:4], []byte{0x80, 0x80, 0x80, 0x80})
						}
					}
					continue
				}
				sc := decodeSub(m.Type, row[b/nsub*bb:][:bb], b%nsub, &w)
				if m.Type == ggml.Q3_K { // w+4 in a nibble, the 4 taken back by the offset
					for j := range w {
						w[j] += 4
					}
					sc.fl, sc.fh = -4*sc.dl, -4*sc.dh
				}
				putLane(dst, lay, i, sc, &w)
			}
		}
	}
	return mem
}

// putLane writes a block of 32 weights w, with scales sc, in dword lane i of dst, one
// group (packSubsVNNI) or one block of a tile (packTilesBytes) of layout lay: its
// scales, E = -F/c with c = 128 the constant of the correction the kernels read, and
// its weights as bytes w+128 or as nibbles.
func putLane(dst []byte, lay kindLayout, i int, sc subScales, w *[ggml.QK]int8) {
	put := func(off int, v float32) {
		binary.LittleEndian.PutUint32(dst[off+4*i:], math.Float32bits(v))
	}
	const c = 128
	put(lay.d, sc.dl)
	if lay.dh >= 0 {
		put(lay.dh, sc.dh)
	}
	if lay.e >= 0 {
		put(lay.e, -sc.fl/c)
	}
	if lay.eh >= 0 {
		put(lay.eh, -sc.fh/c)
	}
	if lay.nib {
		for v := range 4 {
			for k := range 4 {
				dst[lay.w+64*v+4*i+k] = byte(w[4*v+k]) | byte(w[16+4*v+k])<<4
			}
		}
		return
	}
	for v := range 8 {
		for k := range 4 {
			dst[lay.w+64*v+4*i+k] = byte(w[4*v+k]) ^ 0x80
		}
	}
}

// packTilesQ4K lays out m, of type Q4_K, for the tiled kernels (tileQ4K in asmgen.go):
// per tile of 16 rows and super-block, the rows' d and dmin/8 as float32 (16 each), then
// per sub-block of 32 weights the rows' 6-bit scales (16 bytes), mins (16 bytes) and
// four vectors of 64 bytes whose dword lane r holds row r's nibbles 4v..4v+3 (weights
// 4v.. low, 16+4v.. high). The kernels rebuild D = scale·d and E = min·dmin/8 = -F/8 from
// them, both exact products. Rows past the end of the last tile are zero.
func packTilesQ4K(m *Matrix) *hugeMem {
	nsb, rb := m.Cols/ggml.QKK, m.RowBytes()
	tb := nsb * tileSBBytes
	tiles := (m.Rows + tileRows - 1) / tileRows
	mem := newHugeMem(tiles * tb)
	out := mem.b
	for row := range m.Rows {
		r := row % tileRows
		for b := range nsb {
			blk := m.Data[row*rb+b*ggml.Q4_K.BlockBytes():][:ggml.Q4_K.BlockBytes()]
			dst := out[row/tileRows*tb+b*tileSBBytes:][:tileSBBytes]
			binary.LittleEndian.PutUint32(dst[4*r:], math.Float32bits(f16(blk)))
			binary.LittleEndian.PutUint32(dst[64+4*r:], math.Float32bits(f16(blk[2:])/8))
			for s := range 8 {
				sub := dst[128+s*(32+256):][:32+256]
				sub[r], sub[16+r] = kScaleMin(s, blk[4:16])
				qs := blk[16+32*(s/2):][:32]
				shift := 4 * (s % 2)
				for v := range 4 {
					for c := range 4 {
						lo, hi := qs[4*v+c]>>shift&15, qs[16+4*v+c]>>shift&15
						sub[32+64*v+4*r+c] = lo | hi<<4
					}
				}
			}
		}
	}
	return mem
}

// packTilesBytes lays out m, of a byte layout (kindQ8: Q8_0, Q5_0, IQ4_NL; kindHalves:
// Q6_K; kindByteMin: Q5_K, Q5_1), for the tiled kernels (tileBytes in asmgen.go): per
// tile of 16 rows and block of 32 weights, the parts of its kindLayout with rows in the
// lanes: the rows' scales (and E) as float32, 16 each, then eight vectors of 64 bytes
// whose dword lane r holds row r's weights 4j..4j+3 as bytes w+128 (see putLane). A
// row's blocks are not padded to groups of 16; rows past the end of the last tile have
// scales 0 and weights 0.
func packTilesBytes(m *Matrix) *hugeMem {
	lay := kindLayouts[packKindOf(m.Type)]
	nb := m.Cols / ggml.QK
	bb, nsub, rb := m.Type.BlockBytes(), m.Type.BlockSize()/ggml.QK, m.RowBytes()
	tb := nb * lay.bytes
	tiles := (m.Rows + tileRows - 1) / tileRows
	mem := newHugeMem(tiles * tb)
	out := mem.b
	var w [ggml.QK]int8
	for row := range m.Rows {
		r := row % tileRows
		for b := range nb {
			dst := out[row/tileRows*tb+b*lay.bytes:][:lay.bytes]
			sc := decodeSub(m.Type, m.Data[row*rb+b/nsub*bb:][:bb], b%nsub, &w)
			putLane(dst, lay, r, sc, &w)
		}
	}
	return mem
}

// tiledAsm adapts generated tiled kernels (wideKernel signature) to activations from
// prepTokenVNNI; w and rowBytes are the packed copy from the tile of its first row and the
// bytes of a tile. A kernel takes a row's length in units of per blocks of 32 (8: Q4_K's
// super-blocks; 1: the byte layouts' blocks).
func tiledAsm(ks []wideKernel, per int) func(out []float32, ostride int, w []byte, rowBytes, nrows int, a *acts, tok, ntok int) {
	return func(out []float32, ostride int, w []byte, rowBytes, nrows int, a *acts, tok, ntok int) {
		if nrows == 0 {
			return
		}
		if a.nb == 0 {
			for t := range ntok {
				clear(out[t*ostride : t*ostride+nrows])
			}
			return
		}
		groups := (a.nb + 15) / 16
		_ = out[(ntok-1)*ostride+nrows-1]
		_ = w[(nrows+tileRows-1)/tileRows*rowBytes-1]
		_ = a.q[(groups-1)*a.stride+(tok+ntok)*packedActBytes-1]
		x := unsafe.Pointer(&a.q[tok*packedActBytes])
		ks[ntok-1](&out[0], ostride, &w[0], rowBytes, nrows, a.nb/per, x, a.stride)
	}
}

// sizePackedVNNI sizes a for n tokens of cols values in the packed kernels' layout: per
// group of 16 blocks, the n tokens' activations (packedActBytes each, a.stride per
// group), so that a kernel finds the tokens of a group at fixed offsets from each other.
// A token's group holds eight vectors whose dword i holds values 4j..4j+3 of block i,
// the blocks' scales, then per block -128·Σq, -8·Σq, and -128·Σq over each half of the
// block, then these four converted to float32 and times the block's scale (16 values
// each). Blocks past the end of the row are zero. prepTokenVNNI then fills each token.
func sizePackedVNNI(a *acts, n, cols int) {
	nb := cols / ggml.QK
	groups := (nb + 15) / 16
	a.nb, a.stride = nb, n*packedActBytes
	a.q = grow(a.q, groups*a.stride)
}

// prepTokenVNNI prepares token t of x (laid out as sizePackedVNNI sized a) with
// quantPackedAVX512, a last partial group from a zero-padded copy: Q8_0 values.
func prepTokenVNNI(a *acts, x []float32, t, cols int) { prepPackedVNNI(a, x, t, cols, false) }

// prepTokenQ8KVNNI is prepTokenVNNI with the values of quantizeActsQ8K, for K-quant
// weights. A zero-padded half group is a super-block of zeros, whose scale is 0.
func prepTokenQ8KVNNI(a *acts, x []float32, t, cols int) { prepPackedVNNI(a, x, t, cols, true) }

func prepPackedVNNI(a *acts, x []float32, t, cols int, q8k bool) {
	nb := a.nb
	full := nb / 16
	xt := x[t*cols : (t+1)*cols]
	_ = a.q[(nb+15)/16*a.stride-1]
	if full > 0 {
		quantPackedAVX512(&a.q[t*packedActBytes], a.stride, &xt[0], full, q8k)
	}
	if nb%16 != 0 {
		var pad [16 * ggml.QK]float32
		copy(pad[:], xt[full*16*ggml.QK:nb*ggml.QK])
		quantPackedAVX512(&a.q[full*a.stride+t*packedActBytes], a.stride, &pad[0], 1, q8k)
	}
}

//go:noescape
func quantPackedAVX512(dst *byte, gstride int, x *float32, ngroups int, q8k bool)

// packedAsm adapts generated packed kernels to activations from prepTokenVNNI; w and
// rowBytes are those of the packed copy, whose rows are whole groups of 16 blocks.
func packedAsm(ks []asmKernel) func(out []float32, ostride int, w []byte, rowBytes, nrows int, a *acts, tok, ntok int) {
	return func(out []float32, ostride int, w []byte, rowBytes, nrows int, a *acts, tok, ntok int) {
		if nrows == 0 {
			return
		}
		groups := (a.nb + 15) / 16
		_ = out[(ntok-1)*ostride+nrows-1]
		_ = w[nrows*rowBytes-1]
		_ = a.q[(groups-1)*a.stride+(tok+ntok)*packedActBytes-1]
		x := unsafe.Pointer(&a.q[tok*packedActBytes])
		ks[ntok-1](&out[0], ostride, &w[0], rowBytes, nrows, groups, 0, x, a.stride)
	}
}

// wideKernel is the signature of the generated wide-block kernels (packedWide512 in
// asmgen.go).
type wideKernel func(out *float32, ostride int, w *byte, rowBytes, nrows, ngroups int, x unsafe.Pointer, xstride int)

// wideAsm adapts generated wide-block kernels like packedAsm; nrows must be even.
func wideAsm(ks []wideKernel) func(out []float32, ostride int, w []byte, rowBytes, nrows int, a *acts, tok, ntok int) {
	return func(out []float32, ostride int, w []byte, rowBytes, nrows int, a *acts, tok, ntok int) {
		if nrows == 0 {
			return
		}
		if nrows%2 != 0 {
			panic("kernels: wide kernel on an odd number of rows")
		}
		groups := (a.nb + 15) / 16
		_ = out[(ntok-1)*ostride+nrows-1]
		_ = w[nrows*rowBytes-1]
		_ = a.q[(groups-1)*a.stride+(tok+ntok)*packedActBytes-1]
		x := unsafe.Pointer(&a.q[tok*packedActBytes])
		ks[ntok-1](&out[0], ostride, &w[0], rowBytes, nrows, groups, x, a.stride)
	}
}
