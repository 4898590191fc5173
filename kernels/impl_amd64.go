//go:build amd64

package kernels

import (
	"encoding/binary"
	"math"
	"unsafe"

	"golang.org/x/sys/cpu"

	"github.com/specd-dev/specd/ggml"
)

//go:generate go run asmgen.go

// asmKernel is the signature of every generated kernel (see asmgen.go).
type asmKernel func(out *float32, ostride int, w *byte, rowBytes, nrows, nfull, tail int, x unsafe.Pointer, xstride int)

func init() {
	x := cpu.X86
	avx2 := x.HasAVX && x.HasAVX2 && x.HasFMA && x.HasF16C
	impls = nil
	if avx2 && x.HasAVX512F && x.HasAVX512BW && x.HasAVX512VL && x.HasAVX512VNNI {
		impls = append(impls, vnniKernels)
	}
	if avx2 {
		impls = append(impls, avx2Kernels)
	}
	impls = append(impls, genericKernels)
	cur = impls[0]
}

var vnniKernels = &kernelSet{
	name:  "avx512vnni",
	group: len(dotQ8VNNI),
	f32:   floatAsm(dotF32AVX512[:], 16, 4),
	f16:   floatAsm(dotF16AVX512[:], 16, 2),
	bf16:  floatAsm(dotBF16AVX512[:], 16, 2),
	q8:    quantAsm(dotQ8VNNI[:]),
	q4:    quantAsm(dotQ4VNNI[:]),
	prep:  func(a *acts, x []float32, n, cols int) { prepPaired(a, x, n, cols, 256, quantActsAVX512) },
	pack:  packVNNI,
	packed: [numKinds]quantKernel{
		kindQ4:      packedAsm(dotQ4PVNNI[:]),
		kindHalfMin: packedAsm(dotQ2KPVNNI[:]),
	},
	sizeP:     sizePackedVNNI,
	prepTokP:  prepTokenVNNI,
	prepTokPK: prepTokenQ8KVNNI,

	wide: [numKinds]quantKernel{
		kindQ4:      wideAsm(dotQ4WVNNI[:]),
		kindHalfMin: wideAsm(dotQ2KWVNNI[:]),
	},
	wideGroup: len(dotQ4WVNNI),
	wideMin:   wideMinVNNI,

	tiled: [numKinds]quantKernel{
		kindQ8:      tiledAsm(dotQ8TVNNI[:], 1),
		kindNibMin:  tiledAsm(dotQ4KTVNNI[:], 8),
		kindByteMin: tiledAsm(dotQ5KTVNNI[:], 1),
		kindHalves:  tiledAsm(dotQ6KTVNNI[:], 1),
	},
	tileGroup: [numKinds]int{
		kindQ8:      len(dotQ8TVNNI),
		kindNibMin:  len(dotQ4KTVNNI),
		kindByteMin: len(dotQ5KTVNNI),
		kindHalves:  len(dotQ6KTVNNI),
	},
}

// wideMinVNNI is the fewest tokens for which the avx512vnni set runs packed weights
// through its wide-block kernels.
const wideMinVNNI = 6

var avx2Kernels = &kernelSet{
	name:  "avx2",
	group: len(dotQ8AVX2),
	f32:   floatAsm(dotF32AVX2[:], 8, 4),
	f16:   floatAsm(dotF16AVX2[:], 8, 2),
	bf16:  floatAsm(dotBF16AVX2[:], 8, 2),
	q8:    quantAsm(dotQ8AVX2[:]),
	q4:    quantAsm(dotQ4AVX2[:]),
	prep:  func(a *acts, x []float32, n, cols int) { prepPaired(a, x, n, cols, 128, quantActsAVX2) },
	prepK: prepQ8KAVX2,

	pack:    packSubsAVX2,
	subp:    quantAsm(dotSubAVX2[:]),
	subMinp: quantAsm(dotSubMinAVX2[:]),
}

// packSubsAVX2 lays out m, of a sub type, for the avx2 sub kernels (subAVX2 in
// asmgen.go): per block of 32 weights dl, dh, fl, fh as float32 and the weights as
// int8, subBlockBytes in all.
func packSubsAVX2(m *Matrix) *hugeMem {
	nb := m.Cols / ggml.QK
	bb, nsub, rb := m.Type.BlockBytes(), m.Type.BlockSize()/ggml.QK, m.RowBytes()
	prb := nb * subBlockBytes
	mem := newHugeMem(m.Rows * prb)
	var w [ggml.QK]int8
	for r := range m.Rows {
		row := m.Data[r*rb : (r+1)*rb]
		for b := range nb {
			dst := mem.b[r*prb+b*subBlockBytes:][:subBlockBytes]
			sc := decodeSub(m.Type, row[b/nsub*bb:][:bb], b%nsub, &w)
			for i, v := range [4]float32{sc.dl, sc.dh, sc.fl, sc.fh} {
				binary.LittleEndian.PutUint32(dst[4*i:], math.Float32bits(v))
			}
			for j, v := range w {
				dst[16+j] = byte(v)
			}
		}
	}
	return mem
}

//go:noescape
func quantActsAVX512(dst *byte, x *float32, nb int)

//go:noescape
func quantActsAVX2(dst *byte, x *float32, nb int)

//go:noescape
func quantActsQ8KAVX2(dst *byte, x *float32, nsb int)

// prepQ8KAVX2 quantizes n tokens of x as quantizeActsQ8K does into the layout of
// quantActsAVX2 (128 bytes a pair of blocks). cols is a multiple of 256.
func prepQ8KAVX2(a *acts, x []float32, n, cols int) {
	nb := cols / ggml.QK
	a.nb, a.stride = nb, nb/2*128
	a.q = grow(a.q, n*a.stride)
	if nb == 0 {
		return
	}
	_ = x[n*cols-1]
	for t := range n {
		quantActsQ8KAVX2(&a.q[t*a.stride], &x[t*cols], cols/ggml.QKK)
	}
}

// prepPaired quantizes n tokens of x with an assembly quantizer that writes, per token and
// pair of blocks, pairBytes bytes starting with the 64 quantized values and the two
// blocks' scales repeated eight times (see quant_amd64.s). The half of a missing second
// block is zero.
func prepPaired(a *acts, x []float32, n, cols, pairBytes int, quant func(dst *byte, x *float32, nb int)) {
	nb := cols / ggml.QK
	np := (nb + 1) / 2
	a.nb, a.stride = nb, np*pairBytes
	a.q = grow(a.q, n*a.stride)
	if nb == 0 {
		return
	}
	_ = x[n*cols-1]
	for t := range n {
		dst := a.q[t*a.stride : (t+1)*a.stride]
		quant(&dst[0], &x[t*cols], nb)
		if nb%2 == 1 {
			last := dst[(np-1)*pairBytes : np*pairBytes]
			for off := 32; off < pairBytes; off += 64 {
				clear(last[off : off+32])
			}
		}
	}
}

// floatAsm adapts generated F32/F16 kernels that take vec columns per step.
func floatAsm(ks []asmKernel, vec, esize int) func(out []float32, ostride int, w []byte, rowBytes, nrows int, x []float32, cols, ntok int) {
	return func(out []float32, ostride int, w []byte, rowBytes, nrows int, x []float32, cols, ntok int) {
		if nrows == 0 || cols == 0 {
			for t := range ntok {
				clear(out[t*ostride : t*ostride+nrows])
			}
			return
		}
		// Bounds the assembly relies on.
		_ = out[(ntok-1)*ostride+nrows-1]
		_ = w[(nrows-1)*rowBytes+cols*esize-1]
		_ = x[ntok*cols-1]
		ks[ntok-1](&out[0], ostride, &w[0], rowBytes, nrows, cols/vec, cols%vec, unsafe.Pointer(&x[0]), cols*4)
	}
}

// quantAsm adapts generated Q8_0/Q4_0 kernels to activations from prepPaired: the
// kernels take pairs of blocks and a last single block.
func quantAsm(ks []asmKernel) func(out []float32, ostride int, w []byte, rowBytes, nrows int, a *acts, tok, ntok int) {
	return blockAsm(ks, func(nb int) (int, int) { return nb / 2, nb % 2 })
}

// blockAsm adapts generated kernels over quantized weights; split gives the kernel's
// nfull and tail arguments for nb blocks per row.
func blockAsm(ks []asmKernel, split func(nb int) (nfull, tail int)) func(out []float32, ostride int, w []byte, rowBytes, nrows int, a *acts, tok, ntok int) {
	return func(out []float32, ostride int, w []byte, rowBytes, nrows int, a *acts, tok, ntok int) {
		if nrows == 0 || a.nb == 0 {
			for t := range ntok {
				clear(out[t*ostride : t*ostride+nrows])
			}
			return
		}
		_ = out[(ntok-1)*ostride+nrows-1]
		_ = w[nrows*rowBytes-1]
		_ = a.q[(tok+ntok)*a.stride-1]
		x := unsafe.Pointer(&a.q[tok*a.stride])
		nfull, tail := split(a.nb)
		ks[ntok-1](&out[0], ostride, &w[0], rowBytes, nrows, nfull, tail, x, a.stride)
	}
}
