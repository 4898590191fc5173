//go:build amd64

package kernels

import (
	"encoding/binary"
	"math"
)

// packVNNI lays out m for the dotQ8PVNNI/dotQ4PVNNI kernels (see packed512 in
// asmgen.go). Per row and group of 16 blocks: the blocks' scales as float32 (64 bytes),
// then for Q8_0 eight vectors of 64 bytes whose dword i holds weights 4j..4j+3 of block i
// stored as w+128, and for Q4_0 four vectors whose dword i holds GGUF bytes 4m..4m+3 of
// block i (weights 4m.. in the low nibbles, 16+4m.. in the high). Blocks past the end of
// the row have scale 0 and weights 0.
func packVNNI(m *Matrix) []byte {
	nb := m.Cols / QK
	groups := (nb + 15) / 16
	bb, rb, prb := m.Type.BlockBytes(), m.RowBytes(), packedRowBytes(m)
	out := make([]byte, m.Rows*prb)
	q4 := m.Type == Q4_0
	for r := range m.Rows {
		row := m.Data[r*rb : (r+1)*rb]
		for g := range groups {
			dst := out[r*prb+g*prb/groups:][:prb/groups]
			for i := range 16 {
				b := 16*g + i
				if b >= nb {
					if q4 {
						for v := range 4 {
							copy(dst[64+64*v+4*i:][:4], []byte{0x88, 0x88, 0x88, 0x88})
						}
					} else {
						for v := range 8 {
							copy(dst[64+64*v+4*i:][:4], []byte{0x80, 0x80, 0x80, 0x80})
						}
					}
					continue
				}
				blk := row[b*bb : (b+1)*bb]
				d := f16Table[binary.LittleEndian.Uint16(blk)]
				binary.LittleEndian.PutUint32(dst[4*i:], math.Float32bits(d))
				if q4 {
					for v := range 4 {
						copy(dst[64+64*v+4*i:][:4], blk[2+4*v:])
					}
					continue
				}
				for v := range 8 {
					for c := range 4 {
						dst[64+64*v+4*i+c] = blk[2+4*v+c] ^ 0x80
					}
				}
			}
		}
	}
	return out
}

// prepPackedVNNI prepares n tokens of x for the packed kernels, per token and group of 16
// blocks (packedActBytes): eight vectors whose dword i holds values 4j..4j+3 of block i,
// the blocks' scales, then per block -128·Σq and -8·Σq. It quantizes with
// quantActsAVX512 and regroups that layout; blocks past the end of the row are zero.
func prepPackedVNNI(a *acts, x []float32, n, cols int) {
	nb := cols / QK
	groups := (nb + 15) / 16
	a.nb, a.stride = nb, groups*packedActBytes
	if need := n * a.stride; cap(a.q) < need {
		a.q = make([]byte, need)
	}
	a.q = a.q[:n*a.stride]
	if nb == 0 {
		return
	}
	pairs := (nb + 1) / 2
	if need := pairs * 256; cap(a.tmp) < need {
		a.tmp = make([]byte, need)
	}
	tmp := a.tmp[:pairs*256]
	_ = x[n*cols-1]
	le := binary.LittleEndian
	for t := range n {
		quantActsAVX512(&tmp[0], &x[t*cols], nb)
		dst := a.q[t*a.stride : (t+1)*a.stride]
		if nb%16 != 0 {
			clear(dst[(groups-1)*packedActBytes:])
		}
		for b := range nb {
			gd := dst[b/16*packedActBytes : (b/16+1)*packedActBytes]
			i := 4 * (b % 16)
			src := tmp[b/2*256+b%2*32:]
			for v := range 8 {
				le.PutUint32(gd[64*v+i:], le.Uint32(src[4*v:]))
			}
			le.PutUint32(gd[512+i:], le.Uint32(src[64:]))
			var c8, c4 int32
			for v := range 8 {
				c8 += int32(le.Uint32(src[128+4*v:]))
				c4 += int32(le.Uint32(src[192+4*v:]))
			}
			le.PutUint32(gd[576+i:], uint32(c8))
			le.PutUint32(gd[640+i:], uint32(c4))
		}
	}
}

// packedAsm adapts generated packed kernels to activations from prepPackedVNNI; w and
// rowBytes are those of the packed copy, whose rows are whole groups of 16 blocks.
func packedAsm(ks []asmKernel) func(out []float32, ostride int, w []byte, rowBytes, nrows int, a *acts, tok, ntok int) {
	return blockAsm(ks, func(nb int) (int, int) { return (nb + 15) / 16, 0 })
}
