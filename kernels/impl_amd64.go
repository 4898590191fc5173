//go:build amd64

package kernels

import (
	"encoding/binary"
	"math"
	"unsafe"

	"golang.org/x/sys/cpu"
)

//go:generate go run asmgen.go

// asmKernel is the signature of every generated kernel (see asmgen.go).
type asmKernel func(out *float32, ostride int, w *byte, rowBytes, nrows, nfull, tail int, x unsafe.Pointer, xstride int)

func init() {
	impls = nil
	if cpu.X86.HasAVX512F && cpu.X86.HasAVX512BW && cpu.X86.HasAVX512VL && cpu.X86.HasAVX512VNNI &&
		cpu.X86.HasAVX2 && cpu.X86.HasFMA {
		impls = append(impls, vnniKernels)
	}
	if cpu.X86.HasAVX2 && cpu.X86.HasFMA && cpu.X86.HasAVX {
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
	q8:    quantAsm(dotQ8VNNI[:]),
	q4:    quantAsm(dotQ4VNNI[:]),
	prep:  func(a *acts, x []float32, n, cols int) { prepPaired(a, x, n, cols, 0x80, quantActsAVX512) },
}

var avx2Kernels = &kernelSet{
	name:  "avx2",
	group: len(dotQ8AVX2),
	f32:   floatAsm(dotF32AVX2[:], 8, 4),
	f16:   floatAsm(dotF16AVX2[:], 8, 2),
	q8:    quantAsm(dotQ8AVX2[:]),
	q4:    quantAsm(dotQ4AVX2[:]),
	prep:  func(a *acts, x []float32, n, cols int) { prepPaired(a, x, n, cols, 0, quantActsAVX2) },
}

//go:noescape
func quantActsAVX512(dst *byte, x *float32, nb int, flip uint32)

//go:noescape
func quantActsAVX2(dst *byte, x *float32, nb int, flip uint32)

// prepPaired is quantizeActsPaired with the per-token work done by an assembly quantizer.
func prepPaired(a *acts, x []float32, n, cols int, flip byte, quant func(dst *byte, x *float32, nb int, flip uint32)) {
	nb := cols / QK
	np := (nb + 1) / 2
	a.nb, a.stride = nb, np*128
	if need := n * a.stride; cap(a.q) < need {
		a.q = make([]byte, need)
	}
	a.q = a.q[:n*a.stride]
	if nb == 0 {
		return
	}
	_ = x[n*cols-1]
	for t := range n {
		dst := a.q[t*a.stride : (t+1)*a.stride]
		quant(&dst[0], &x[t*cols], nb, uint32(flip)*0x01010101)
		if nb%2 == 1 {
			clear(dst[(np-1)*128+32 : (np-1)*128+64])
			clear(dst[(np-1)*128+96 : np*128])
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

// quantAsm adapts generated Q8_0/Q4_0 kernels to activations from quantizeActsPaired.
func quantAsm(ks []asmKernel) func(out []float32, ostride int, w []byte, rowBytes, nrows int, a *acts, tok, ntok int) {
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
		ks[ntok-1](&out[0], ostride, &w[0], rowBytes, nrows, a.nb/2, a.nb%2, unsafe.Pointer(&a.q[tok*a.stride]), a.stride)
	}
}

// quantizeActsPaired quantizes like quantizeActs into the layout of the assembly kernels:
// per token and pair of blocks 128 bytes, the 64 quantized bytes (each XOR flip) then each
// block's scale repeated eight times as float32. A missing second block is zero.
func quantizeActsPaired(a *acts, x []float32, n, cols int, flip byte) {
	nb := cols / QK
	np := (nb + 1) / 2
	a.nb, a.stride = nb, np*128
	if need := n * a.stride; cap(a.q) < need {
		a.q = make([]byte, need)
	}
	a.q = a.q[:n*a.stride]
	for t := range n {
		xt := x[t*cols : (t+1)*cols]
		dst := a.q[t*a.stride : (t+1)*a.stride]
		for b := range nb {
			blk := xt[b*QK : (b+1)*QK]
			d, id := q8Scale(blk)
			pair := dst[b/2*128:]
			q := pair[b%2*QK : b%2*QK+QK]
			for j, v := range blk {
				q[j] = byte(roundAway(v*id)) ^ flip
			}
			bits := math.Float32bits(f16Table[FP32ToFP16(d)])
			sc := pair[64+b%2*32 : 64+b%2*32+32]
			for j := 0; j < 32; j += 4 {
				binary.LittleEndian.PutUint32(sc[j:], bits)
			}
		}
		if nb%2 == 1 {
			clear(dst[(np-1)*128+32 : (np-1)*128+64])
			clear(dst[(np-1)*128+96 : np*128])
		}
	}
}
