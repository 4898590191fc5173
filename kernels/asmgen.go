//go:build ignore

// asmgen writes the amd64 matrix kernels, one function per implementation, weight type
// and number of tokens per call: kernels_amd64.s and kernels_amd64_gen.go. Run it with
// go generate in this directory.
//
// Every kernel has the Go signature
//
//	func k(out *float32, ostride int, w *byte, rowBytes, nrows, nfull, tail int, x unsafe.Pointer, xstride int)
//
// and computes, for rows [0,nrows) and tokens [0,K), out[t*ostride+r] = dot(row r, token t).
// A token's accumulators and reduction are the same operations whatever K is, which is
// what makes MatMul batch invariant: weights are loaded once and used for every token,
// but each token has its own accumulators (two, for even and odd steps, so that one token
// is not bound by FMA latency), and its sum is reduced by the same additions in the same
// order, alone or packed with other tokens' lanes.
//
// F32/F16: nfull vectors of 16 (avx512) or 8 (avx2) columns, then tail columns; x is the
// float32 activations, xstride the bytes between tokens.
//
// Q8_0/Q4_0: nfull pairs of blocks, then one block when tail is 1; x is the prepared
// activations, per token and pair of blocks: the quantized values of both blocks (64
// bytes) and each block's fp16-rounded scale repeated eight times (2×32 bytes); for
// avx512vnni then the int32 corrections for Q8_0 and for Q4_0 (2×64 bytes).
//
// Packed Q4_0, Q2_K and Q3_K (avx512vnni, see packed512): nfull groups of 16 blocks, x
// token 0's first group and xstride the bytes between groups. The wide-block kernels
// over packed weights (packedWide512) and the kernels over tiles of 16 rows (tileQ4K,
// tileBytes: Q4_K and the byte layouts) have a signature of their own.
package main

import (
	"bytes"
	"fmt"
	"log"
	"os"
	"strings"
)

const (
	maxTok512    = 5  // tokens per call, avx512vnni: 10 accumulators plus shared registers
	maxTokWide   = 12 // tokens per call, avx512vnni wide blocks: 24 sums plus 6 shared
	maxTokAVX    = 4  // tokens per call, avx2: 8 accumulators of 16 ymm registers
	maxTokTile   = 6  // tokens per call, avx512vnni Q4_K tiles: 4 sums a token plus 8 shared
	maxTokTileQ8 = 12 // tokens per call, avx512vnni byte tiles: 2 sums a token plus 5 shared (BenchmarkTiledKernel: 2.08 ns a product at 12, 2.22 at 8)
)

var (
	s  bytes.Buffer // assembly
	gs bytes.Buffer // Go declarations
)

func p(format string, args ...any) { fmt.Fprintf(&s, "\t"+format+"\n", args...) }
func label(l string)               { fmt.Fprintf(&s, "%s:\n", l) }

// xa returns the address of token t's activations at displacement disp: BX moves along
// the row, R9 holds the token stride and R10 three times it.
func xa(t, disp int) string {
	d := ""
	if disp != 0 {
		d = fmt.Sprint(disp)
	}
	switch t {
	case 0:
		return d + "(BX)"
	case 1:
		return d + "(BX)(R9*1)"
	case 2:
		return d + "(BX)(R9*2)"
	case 3:
		return d + "(BX)(R10*1)"
	case 4:
		return d + "(BX)(R9*4)"
	}
	panic("token out of range")
}

// pa returns the address of token t's packed activations at displacement disp in the
// current group (BX): the tokens of a group lie packedActBytes apart, and R9 holds the
// bytes from one group to the next.
func pa(t, disp int) string { return fmt.Sprintf("%d(BX)", t*packedActBytes+disp) }

// oa returns the address of token t's output for the current row (DI; R13 is the output
// stride in bytes, R14 three times it).
func oa(t int) string {
	return [...]string{"(DI)", "(DI)(R13*1)", "(DI)(R13*2)", "(DI)(R14*1)", "(DI)(R13*4)"}[t]
}

// seq returns k register numbers from first, step apart.
func seq(first, step, k int) []int {
	r := make([]int, k)
	for i := range r {
		r[i] = first + i*step
	}
	return r
}

// groupHeader writes the TEXT line, Go declaration and argument loads of a kernel over
// groups of rows: out DI, ostride R13 (bytes), w SI, rowBytes R15, nrows R8, ngroups
// R11, x AX, xstride R9. flags is the TEXT line's flags and frame, e.g. "NOSPLIT, $0-64".
func groupHeader(name, flags string) {
	fmt.Fprintf(&s, "\n// func %s(out *float32, ostride int, w *byte, rowBytes, nrows, ngroups int, x unsafe.Pointer, xstride int)\n", name)
	fmt.Fprintf(&s, "TEXT ·%s(SB), %s\n", name, flags)
	fmt.Fprintf(&gs, "\n//go:noescape\nfunc %s(out *float32, ostride int, w *byte, rowBytes, nrows, ngroups int, x unsafe.Pointer, xstride int)\n", name)
	p("MOVQ out+0(FP), DI")
	p("MOVQ ostride+8(FP), R13")
	p("SHLQ $2, R13")
	p("MOVQ w+16(FP), SI")
	p("MOVQ rowBytes+24(FP), R15")
	p("MOVQ nrows+32(FP), R8")
	p("MOVQ ngroups+40(FP), R11")
	p("MOVQ x+48(FP), AX")
	p("MOVQ xstride+56(FP), R9")
}

func header(name string) {
	fmt.Fprintf(&s, "\n// func %s(out *float32, ostride int, w *byte, rowBytes, nrows, nfull, tail int, x unsafe.Pointer, xstride int)\n", name)
	fmt.Fprintf(&s, "TEXT ·%s(SB), NOSPLIT, $0-72\n", name)
	p("MOVQ out+0(FP), DI")
	p("MOVQ ostride+8(FP), R13")
	p("SHLQ $2, R13")
	p("LEAQ (R13)(R13*2), R14")
	p("MOVQ w+16(FP), SI")
	p("MOVQ rowBytes+24(FP), R15")
	p("MOVQ nrows+32(FP), R8")
	p("MOVQ nfull+40(FP), R11")
	p("MOVQ tail+48(FP), R12")
	p("MOVQ x+56(FP), AX")
	p("MOVQ xstride+64(FP), R9")
	p("LEAQ (R9)(R9*2), R10")
	fmt.Fprintf(&gs, "\n//go:noescape\nfunc %s(out *float32, ostride int, w *byte, rowBytes, nrows, nfull, tail int, x unsafe.Pointer, xstride int)\n", name)
}

// rowStart opens the loop over rows: DX walks the weights, BX the activations.
func rowStart() {
	p("TESTQ R8, R8")
	p("JZ done")
	label("row")
	p("MOVQ SI, DX")
	p("MOVQ AX, BX")
	p("MOVQ R11, CX")
}

func rowEnd() {
	p("ADDQ $4, DI")
	p("ADDQ R15, SI")
	p("DECQ R8")
	p("JNZ row")
	label("done")
	p("VZEROUPPER")
	p("RET")
}

// sink is an accumulator and where its reduced sum goes.
type sink struct {
	reg  int
	addr string
}

// sinks pairs accs[t] with token t's output, off bytes after it (4: the next row).
func sinks(accs []int, off int) []sink {
	s := make([]sink, len(accs))
	for t, a := range accs {
		s[t] = sink{a, oa(t)}
		if off != 0 {
			s[t].addr = fmt.Sprint(off) + oa(t)
		}
	}
	return s
}

// reduce512 sums the 16 lanes of each token's accumulator, accs[t] for token t, and
// stores the sums (see reduceTo).
func reduce512(accs []int) { reduceTo(sinks(accs, 0)) }

// reduceTo sums the 16 lanes of each accumulator and stores the sum at its address.
// Every sum is formed by the same additions in the same order,
// ((l_i + l_{i+8}) + (l_{i+4} + l_{i+12})) paired by 2 and then 1, whether it is reduced
// alone or packed with three or one other accumulators' lanes into one vector (which
// saves instructions). Z20..Z27 and Y13/X14/X15 are scratch.
func reduceTo(s []sink) {
	for len(s) >= 4 {
		a := s[:4]
		for h := range 2 {
			u, v, sum := 20+3*h, 21+3*h, 22+3*h // sum: [X(0-7)+X(8-15) | Y(...)] for X,Y = a[2h],a[2h+1]
			p("VSHUFF64X2 $0x44, Z%d, Z%d, Z%d", a[2*h+1].reg, a[2*h].reg, u)
			p("VSHUFF64X2 $0xee, Z%d, Z%d, Z%d", a[2*h+1].reg, a[2*h].reg, v)
			p("VADDPS Z%d, Z%d, Z%d", v, u, sum)
		}
		p("VSHUFF64X2 $0x88, Z25, Z22, Z20") // lanes 0-3 of each accumulator
		p("VSHUFF64X2 $0xdd, Z25, Z22, Z21") // lanes 4-7
		p("VADDPS Z21, Z20, Z20")
		reduceLanes128(a)
		s = s[4:]
	}
	if len(s) >= 2 {
		p("VSHUFF64X2 $0x44, Z%d, Z%d, Z20", s[1].reg, s[0].reg)
		p("VSHUFF64X2 $0xee, Z%d, Z%d, Z21", s[1].reg, s[0].reg)
		p("VADDPS Z21, Z20, Z20")
		p("VSHUFF64X2 $0xb1, Z20, Z20, Z21")
		p("VADDPS Z21, Z20, Z20")
		reduceLanes128(s[:2])
		s = s[2:]
	}
	if len(s) == 1 {
		p("VEXTRACTF64X4 $1, Z%d, Y13", s[0].reg)
		p("VADDPS Y13, Y%d, Y13", s[0].reg)
		reduce256("Y13", "X13", s[0].addr)
	}
}

// reduceLanes128 finishes a packed reduction: 128-bit lane j of Z20 holds the four
// partial sums of s[j·4/len(s)] (at every lane for 4 accumulators, every other for 2).
func reduceLanes128(s []sink) {
	p("VPERMILPS $0x4e, Z20, Z21")
	p("VADDPS Z21, Z20, Z20")
	p("VMOVSHDUP Z20, Z21")
	p("VADDPS Z21, Z20, Z20")
	for j, k := range s {
		lane := j * 4 / len(s)
		if lane == 0 {
			p("VMOVSS X20, %s", k.addr)
			continue
		}
		p("VEXTRACTF32X4 $%d, Z20, X21", lane)
		p("VMOVSS X21, %s", k.addr)
	}
}

// reduce256 sums the 8 lanes of y (whose low half is x) and stores the sum at addr.
func reduce256(y, x, addr string) {
	p("VEXTRACTF128 $1, %s, X14", y)
	p("VADDPS X14, %s, X14", x)
	p("VMOVHLPS X14, X14, X15")
	p("VADDPS X15, X14, X14")
	p("VMOVSHDUP X14, X15")
	p("VADDSS X15, X14, X14")
	p("VMOVSS X14, %s", addr)
}

// ---- avx512vnni ----

// elem is the element type of float weights.
type elem int

const (
	f32 elem = iota
	f16
	bf16
)

func (e elem) String() string { return [...]string{"F32", "F16", "BF16"}[e] }

// step is the bytes of 16 weights.
func (e elem) step() int {
	if e == f32 {
		return 64
	}
	return 32
}

// load loads the weights at src into the vector register reg ("Z3", "Y12") as float32:
// bfloat16 widens to the high half of each lane.
func (e elem) load(src, reg string) {
	switch e {
	case f32:
		p("VMOVUPS %s, %s", src, reg)
	case f16:
		p("VCVTPH2PS %s, %s", src, reg)
	case bf16:
		p("VPMOVZXWD %s, %s", src, reg)
		p("VPSLLD $16, %s, %s", reg, reg)
	}
}

// tail512 loads the weights K1 selects at src into Z<reg> as float32, zero elsewhere.
func (e elem) tail512(src string, reg int) {
	switch e {
	case f32:
		p("VMOVUPS.Z %s, K1, Z%d", src, reg)
	case f16:
		p("VMOVDQU16.Z %s, K1, Y%d", src, reg)
		p("VCVTPH2PS Y%d, Z%d", reg, reg)
	case bf16:
		p("VMOVDQU16.Z %s, K1, Y%d", src, reg)
		p("VPMOVZXWD Y%d, Z%d", reg, reg)
		p("VPSLLD $16, Z%d, Z%d", reg, reg)
	}
}

// float512 writes the F32, F16 or BF16 kernel for k tokens. Each token has two accumulators,
// Z(2t) for even and Z(2t+1) for odd vectors of 16 columns (a last odd-numbered full
// vector goes to the even one, the masked tail to the odd one), added before the
// reduction. Z10/Z11 hold weights, Z16.. tail activations; K1 masks the tail columns.
func float512(el elem, k int) {
	header(fmt.Sprintf("dot%sAVX512x%d", el, k))
	tailMask512()
	if k >= 4 {
		// Measured side by side (4096x512 F32, 1 thread): pairs of rows are faster
		// from 4 tokens (n=4 158 vs 176 us, n=5 176 vs 187 us) and slower below (n=2
		// 159 vs 130 us, n=3 154 vs 141 us), where loads are not yet the bound.
		floatPairs512(el, k)
		return
	}
	rowStart()
	floatRow512(el, k, 0, "")
	reduce512(seq(0, 2, k))
	rowEnd()
}

// floatPairs512 is float512's body for k ≥ 4 tokens: rows go in pairs, and each vector
// of activations, loaded once into registers, serves both rows. With one row per pass
// every FMA also loaded its activations, so a 5-token pass was bound by loads, not by
// memory: it streamed weights at half the single-token rate. Each (row, token) pair
// keeps exactly the accumulators and FMA sequence of the one-row kernel (even vectors,
// odd vectors, a last odd-numbered full vector to the even one, the masked tail to the
// odd one) and the same reduction, so results are bitwise those of the one-row kernel.
//
// Registers: row A accumulates in Z0..Z(2k-1), row B in Z(2k)..Z(4k-1); Z20.. hold the
// activations, Z25/Z26 the weights of A and B, Z27.. the tail activations. After the
// odd accumulators are added to the even ones, those (Z0..Z18 at most) are reduced,
// clear of the reduction's scratch (Z20..Z25).
func floatPairs512(el elem, k int) {
	accA, accB := 0, 2*k
	load := func(off, reg int, b bool) {
		src := fmt.Sprintf("%d(DX)", off)
		if b {
			src = fmt.Sprintf("%d(DX)(R15*1)", off)
		}
		el.load(src, fmt.Sprintf("Z%d", reg))
	}
	fmas := func(xoff, parity int) {
		for t := range k {
			p("VMOVUPS %s, Z%d", xa(t, xoff), 20+t)
		}
		for t := range k {
			p("VFMADD231PS Z%d, Z25, Z%d", 20+t, accA+2*t+parity)
		}
		for t := range k {
			p("VFMADD231PS Z%d, Z26, Z%d", 20+t, accB+2*t+parity)
		}
	}
	rowPairs(4*k, seq(accA, 2, k), seq(accB, 2, k), func() {
		floatPairBody(el, k, accA, accB, load, fmas)
	}, func() {
		floatRow512(el, k, 0, "1")
		reduce512(seq(0, 2, k))
	})
}

// floatPairBody is one pair of rows of floatPairs512, summed into the even accumulators.
func floatPairBody(el elem, k, accA, accB int, load func(off, reg int, b bool), fmas func(xoff, parity int)) {
	step := el.step()
	p("SHRQ $1, CX")
	p("JZ psingle")
	label("ploop")
	if el == f32 {
		// Further ahead than the one-row kernel, into L2: the pair kernel spends longer
		// per byte. Target forward of 5 tokens, F32, side by side over three runs: 1
		// thread 6.89-6.96 -> 5.81-6.72 ms, 2 threads 4.04-4.15 -> 3.35-3.95 ms,
		// against PREFETCHT0 1 KB ahead.
		p("PREFETCHT1 8192(DX)")
		p("PREFETCHT1 8256(DX)")
		p("PREFETCHT1 8192(DX)(R15*1)")
		p("PREFETCHT1 8256(DX)(R15*1)")
	}
	load(0, 25, false)
	load(0, 26, true)
	fmas(0, 0)
	load(step, 25, false)
	load(step, 26, true)
	fmas(64, 1)
	p("ADDQ $%d, DX", 2*step)
	p("ADDQ $128, BX")
	p("DECQ CX")
	p("JNZ ploop")
	label("psingle")
	p("TESTQ $1, R11")
	p("JZ ptail")
	load(0, 25, false)
	load(0, 26, true)
	fmas(0, 0)
	p("ADDQ $%d, DX", step)
	p("ADDQ $64, BX")
	label("ptail")
	p("TESTQ R12, R12")
	p("JZ psum")
	el.tail512("(DX)", 25)
	el.tail512("(DX)(R15*1)", 26)
	for t := range k {
		p("VMOVUPS.Z %s, K1, Z%d", xa(t, 0), 27+t)
		p("VFMADD231PS Z%d, Z25, Z%d", 27+t, accA+2*t+1)
		p("VFMADD231PS Z%d, Z26, Z%d", 27+t, accB+2*t+1)
	}
	label("psum")
	for t := range 2 * k {
		p("VADDPS Z%d, Z%d, Z%d", 2*t+1, 2*t, 2*t)
	}
}

// rowPairs emits the loop of the pair kernels: while two rows remain, it zeroes Z0 to
// Z(nacc-1), runs body for rows A (at DX) and B (at DX+R15), and stores the sums of
// accumulators accA and accB as the two rows' outputs; a last odd row is left to last,
// which stores its own. No accumulator may be one of reduceTo's scratch registers.
func rowPairs(nacc int, accA, accB []int, body, last func()) {
	p("TESTQ R8, R8")
	p("JZ done")
	label("pair")
	p("CMPQ R8, $2")
	p("JLT last")
	p("MOVQ SI, DX")
	p("MOVQ AX, BX")
	p("MOVQ R11, CX")
	for a := range nacc {
		p("VPXORD Z%d, Z%d, Z%d", a, a, a)
	}
	body()
	// Both rows' accumulators are reduced together, four at a time: A's first, then
	// B's, then what is left of both (for five tokens, A's and B's fifth as a pair).
	whole := len(accA) / 4 * 4
	a, b := sinks(accA, 0), sinks(accB, 4)
	reduceTo(append(append(append(a[:whole:whole], b[:whole]...), a[whole:]...), b[whole:]...))
	p("ADDQ $8, DI")
	p("LEAQ (SI)(R15*2), SI")
	p("SUBQ $2, R8")
	p("JMP pair")
	label("last")
	p("TESTQ R8, R8")
	p("JZ done")
	p("MOVQ SI, DX")
	p("MOVQ AX, BX")
	p("MOVQ R11, CX")
	last()
	label("done")
	p("VZEROUPPER")
	p("RET")
}

// tailMask512 sets K1 to the low R12 (tail) bits.
func tailMask512() { lowMask512("R12") }

// lowMask512 sets K1 to the low reg bits (reg ≤ 16), through CX and DX.
func lowMask512(reg string) {
	p("MOVQ %s, CX", reg)
	p("MOVL $1, DX")
	p("SHLL CX, DX")
	p("DECL DX")
	p("KMOVW DX, K1")
}

// blockRows512 sets R14 to the rows of the next block of up to 16, min(16, R8), and K1
// to their lanes.
func blockRows512() {
	p("MOVQ $16, R14")
	p("CMPQ R8, R14")
	p("CMOVQLT R8, R14")
	lowMask512("R14")
}

// floatRow512 emits one row of float512 for k tokens into accumulators acc+2t (even) and
// acc+2t+1 (odd), summed into acc+2t at the end. sfx makes its labels unique.
func floatRow512(el elem, k, acc int, sfx string) {
	step := el.step()
	for a := range 2 * k {
		p("VPXORD Z%d, Z%d, Z%d", acc+a, acc+a, acc+a)
	}
	load := func(woff, reg int) { el.load(fmt.Sprintf("%d(DX)", woff), fmt.Sprintf("Z%d", reg)) }
	p("SHRQ $1, CX")
	p("JZ single%s", sfx)
	label("loop" + sfx)
	if el == f32 {
		// F32 weights stream from memory at 4 bytes a weight: fetching 1 KB ahead keeps
		// more lines in flight than the hardware prefetcher alone when several tokens'
		// arithmetic fills the window (measured ~10% for 5 tokens). It did not help F16,
		// Q8_0 or Q4_0.
		p("PREFETCHT0 1024(DX)")
		p("PREFETCHT0 1088(DX)")
	}
	load(0, 10)
	load(step, 11)
	for t := range k {
		p("VFMADD231PS %s, Z10, Z%d", xa(t, 0), acc+2*t)
	}
	for t := range k {
		p("VFMADD231PS %s, Z11, Z%d", xa(t, 64), acc+2*t+1)
	}
	p("ADDQ $%d, DX", 2*step)
	p("ADDQ $128, BX")
	p("DECQ CX")
	p("JNZ loop%s", sfx)
	label("single" + sfx)
	p("TESTQ $1, R11")
	p("JZ tail%s", sfx)
	load(0, 10)
	for t := range k {
		p("VFMADD231PS %s, Z10, Z%d", xa(t, 0), acc+2*t)
	}
	p("ADDQ $%d, DX", step)
	p("ADDQ $64, BX")
	label("tail" + sfx)
	p("TESTQ R12, R12")
	p("JZ sum%s", sfx)
	el.tail512("(DX)", 11)
	for t := range k {
		p("VMOVUPS.Z %s, K1, Z%d", xa(t, 0), 16+t)
		p("VFMADD231PS Z%d, Z11, Z%d", 16+t, acc+2*t+1)
	}
	label("sum" + sfx)
	for t := range k {
		p("VADDPS Z%d, Z%d, Z%d", acc+2*t+1, acc+2*t, acc+2*t)
	}
}

// quant512 writes the Q8_0 or Q4_0 kernel for k tokens with VNNI. vpdpbusd multiplies
// unsigned by signed bytes, so the weights are made unsigned, w+128 for Q8_0 and the raw
// nibble q (for w = q-8) for Q4_0, against the signed activations x. Each int32 lane then
// holds Σ(w+c)·x over four values; starting it from -c·Σx, which the quantizer stored
// per token (c = 128 or 8), leaves the exact Σw·x.
//
// Each token has two accumulators, for even and odd pairs of blocks, so that one token
// is not bound by the latency of its chain of FMAs; they are added before the reduction.
// Which pairs go to which accumulator depends only on the row length.
//
// Registers: Z0..Z9 token accumulators (even pairs Z(2t), odd pairs Z(2t+1)), Z10/Z11
// unsigned weights, Z14/Z15 weight scales, Z16 bytes 0x80, Z18 0x0f bytes, Z20..Z29
// per-token scratch. K1 selects qwords 4-7, K2 the words of 128-bit lanes 1 and 3, K3
// dwords 8-15 of a zmm or words 8-15 of a ymm.
func quant512(q4 bool, k int) {
	typ := "Q8"
	if q4 {
		typ = "Q4"
	}
	header(fmt.Sprintf("dot%sVNNIx%d", typ, k))
	quantConsts512(q4)
	rowStart()
	quantRow512(q4, k, 0, "")
	reduce512(seq(0, 2, k))
	rowEnd()
}

func quantConsts512(q4 bool) {
	p("MOVL $0x80808080, DX")
	p("VPBROADCASTD DX, Z16")
	p("MOVL $0xf0, DX")
	p("KMOVW DX, K1")
	p("MOVL $0xff00, DX")
	p("KMOVW DX, K3")
	if q4 {
		p("MOVL $0x0f0f0f0f, DX")
		p("VPBROADCASTD DX, Z18")
		p("MOVQ $0xff00ff00, DX")
		p("KMOVD DX, K2")
	}
}

// quantRow512 emits one row of quant512 for k tokens into accumulators acc+2t (even
// pairs) and acc+2t+1 (odd pairs and the tail block), summed into acc+2t at the end. sfx
// makes its labels unique.
func quantRow512(q4 bool, k, acc int, sfx string) {
	bstride, corr := 34, 128
	if q4 {
		bstride, corr = 18, 192
	}
	for a := range 2 * k {
		p("VPXORD Z%d, Z%d, Z%d", acc+a, acc+a, acc+a)
	}
	pair := func(woff, half int) {
		weights512(q4, func(off int) string { return fmt.Sprintf("%d(DX)", woff+off) }, 10+half, 14+half, 20)
		tokens512(k, 256*half, half, corr, acc)
	}
	p("SHRQ $1, CX")
	p("JZ single%s", sfx)
	label("loop" + sfx)
	pair(0, 0)
	pair(2*bstride, 1)
	p("ADDQ $%d, DX", 4*bstride)
	p("ADDQ $512, BX")
	p("DECQ CX")
	p("JNZ loop%s", sfx)
	label("single" + sfx)
	p("TESTQ $1, R11")
	p("JZ tail%s", sfx)
	pair(0, 0)
	p("ADDQ $%d, DX", 2*bstride)
	p("ADDQ $256, BX")
	label("tail" + sfx)
	p("TESTQ R12, R12")
	p("JZ sum%s", sfx)
	// One block, into the odd accumulators: 256-bit writes zero the upper half, so its
	// lanes add exact zeros.
	if q4 {
		p("VMOVDQU 2(DX), X11")
		p("VPSRLW $4, X11, X20")
		p("VINSERTI32X4 $1, X20, Y11, Y11")
		p("VPANDD Y18, Y11, Y11")
	} else {
		p("VMOVDQU 2(DX), Y11")
		p("VPXORD Y16, Y11, Y11")
	}
	p("VPBROADCASTW (DX), Y15")
	p("VCVTPH2PS Y15, Z15")
	tokens512(k, 0, 1, corr, acc)
	label("sum" + sfx)
	for t := range k {
		p("VADDPS Z%d, Z%d, Z%d", acc+2*t+1, acc+2*t, acc+2*t)
	}
}

// weights512 loads the pair of blocks at addr(0) as unsigned bytes into Z<w> (see
// quant512) and their scales, each repeated over its block's eight lanes, into Z<sc>.
// Z<tmp> is scratch.
func weights512(q4 bool, addr func(off int) string, w, sc, tmp int) {
	bs := 34
	if q4 {
		bs = 18
		// [A lo, A hi, B lo, B hi]: broadcast each block's 16 bytes to two lanes, shift
		// the odd lanes' bytes down a nibble and mask.
		p("VBROADCASTI32X4 %s, Z%d", addr(2), w)
		p("VBROADCASTI32X4 %s, Z%d", addr(20), tmp)
		p("VPBLENDMD Z%d, Z%d, K3, Z%d", tmp, w, w)
		p("VPSRLW $4, Z%d, K2, Z%d", w, w)
		p("VPANDD Z18, Z%d, Z%d", w, w)
	} else {
		// Block A's 32 bytes low, block B's (34 bytes on) high. (Masked loads would
		// save an instruction but are slow on data streaming in from memory.)
		p("VMOVDQU64 %s, Y%d", addr(2), w)
		p("VINSERTI64X4 $1, %s, Z%d, Z%d", addr(36), w, w)
		p("VPXORD Z16, Z%d, Z%d", w, w)
	}
	p("VPBROADCASTW %s, X%d", addr(0), sc)
	p("VPBROADCASTW %s, X%d", addr(bs), tmp)
	p("VINSERTI32X4 $1, X%d, Y%d, Y%d", tmp, sc, sc)
	p("VCVTPH2PS Y%d, Z%d", sc, sc)
}

// tokens512 accumulates one pair of blocks (weights Z10+half, scales Z14+half) for k
// tokens whose activations are at xoff(BX), stage by stage across the tokens, into
// accumulators acc+2t+half.
func tokens512(k, xoff, half, corr, acc int) {
	w, sc := 10+half, 14+half
	for t := range k {
		p("VMOVDQU64 %s, Z%d", xa(t, xoff+corr), 20+2*t)
	}
	for t := range k {
		p("VPDPBUSD %s, Z%d, Z%d", xa(t, xoff), w, 20+2*t)
	}
	for t := range k {
		p("VCVTDQ2PS Z%d, Z%d", 20+2*t, 20+2*t)
	}
	for t := range k {
		p("VMULPS %s, Z%d, Z%d", xa(t, xoff+64), sc, 21+2*t)
	}
	for t := range k {
		p("VFMADD231PS Z%d, Z%d, Z%d", 20+2*t, 21+2*t, acc+2*t+half)
	}
}

// packedPrefetchRow emits the prefetches of one packed group of weights at base(off),
// dist bytes ahead, a line at a time. The hardware prefetcher alone leaves the loads of
// a compute-heavy loop waiting on memory. Measured on the target's products (27 MB, 1
// thread): one row at a time with 2304 bytes, one token 1.16 → 0.77 ms and five 2.23 →
// 1.69 ms (1152 and 4608 were no better); the pair kernel, slower per byte, needs to
// run further ahead: five tokens 1.26–1.32 ms at 2304, 1.14–1.19 at 4608, 1.09–1.16 at
// 9216.
func packedPrefetchRow(gbytes, dist int, base func(off int) string) {
	for off := 0; off < gbytes; off += 64 {
		p("PREFETCHT0 %s", base(dist+off))
	}
}

// How far ahead of the weights in use the packed kernels prefetch (packedPrefetchRow).
const (
	rowPrefetch  = 2304
	pairPrefetch = 9216
)

// packedActBytes is the size of one token's prepared activations per group of 16 blocks
// (packed.go has the same constant).
const packedActBytes = 1088

// ---- avx512vnni, packed weights ----

// kindLayout is a packed layout of packed.go (the same table): byte offsets in a group of
// the scales (dh: of the second halves, -1 for one scale a block), of E (-1 for none)
// and of the weights, whether they are nibbles, and the group's size.
type kindLayout struct {
	name            string
	d, dh, e, eh, w int
	nib             bool
	bytes           int
}

// tiledKinds are the packed layouts of bytes whose avx512vnni kernels work in tiles of
// 16 rows (tileBytes) instead of groups of 16 blocks (packed512, packedWide512).
var tiledKinds = map[string]bool{"Q8": true, "Q5K": true, "Q6K": true}

// packedKinds are the packed layouts, as packed.go's kindLayouts: Q8_0 (and Q5_0,
// IQ4_NL), Q4_0, Q5_K (and Q5_1), Q6_K, Q2_K (and Q3_K); those of tiledKinds are laid
// out in tiles (tileBytes). Q4_K has a layout of its own (tileQ4K).
var packedKinds = []kindLayout{
	{"Q8", 0, -1, -1, -1, 64, false, 576},
	{"Q4", 0, -1, -1, -1, 64, true, 320},
	{"Q5K", 0, -1, 64, -1, 128, false, 640},
	{"Q6K", 0, 64, -1, -1, 128, false, 640},
	{"Q2K", 0, 64, 128, 192, 256, true, 512},
}

// scales loads into Z<dst> the 16 float32 scales (or offsets) of a packed group at
// off(DX), off(DX)(R15*1) for row B.
func scales(off, dst int, rowB bool) {
	if rowB {
		p("VMOVUPS %d(DX)(R15*1), Z%d", off, dst)
		return
	}
	p("VMOVUPS %d(DX), Z%d", off, dst)
}

// Offsets in a token's group of packed activations (quantPackedAVX512): the scales; the
// corrections -128·Σq of the block, -8·Σq, and -128·Σq of its first and second halves;
// then each of these four converted to float32 and times the scale (actF), in that order.
const (
	actScale = 512
	actC128  = 576
	actC8    = 640
	actC128L = 704
	actC128H = 768
	actF     = 832 - actC128
)

// phase is one integer chain of a block's dot product and the float operations that
// follow it: the chain sums the weight vectors vecs, starting from the correction at
// start (-1: from zero), and is scaled by the weight scales at d; when e ≥ 0 the offset
// term follows: the correction at corr converted and times the activation scale (which
// the quantizer stored at corr+actF) times E at e.
type phase struct {
	vecs     []int
	start, d int
	corr, e  int
}

// phases splits a group of lay's kernel into its chains, in the order every kernel of the
// kind adds them to a token's sum.
func phases(lay kindLayout) []phase {
	all := []int{0, 1, 2, 3, 4, 5, 6, 7}
	if lay.dh < 0 {
		ph := phase{vecs: all, start: actC128, d: lay.d, corr: actC128, e: lay.e}
		if lay.nib {
			// Nibbles (Q4_0) are w+8, summed from -8·Σq.
			ph.start, ph.corr = actC8, actC8
		}
		return []phase{ph}
	}
	phs := []phase{
		{vecs: all[:4], start: actC128L, d: lay.d, corr: actC128L, e: lay.e},
		{vecs: all[4:], start: actC128H, d: lay.dh, corr: actC128H, e: lay.eh},
	}
	if lay.nib {
		// Nibbles (Q3_K, Q2_K) are w plus a bias the offset takes back: no start.
		phs[0].start, phs[1].start = -1, -1
	}
	return phs
}

// packed512 writes the kernel for k tokens over packed weights of layout lay (see
// Matrix.Pack and packKind): per group of 16 blocks, the blocks' scales (and offsets) as
// float32 and then eight vectors whose dword lane i holds four weights of block i (four
// of nibbles), so that one vpdpbusd chain leaves block i's whole integer sum in lane i.
// Per token and group this is eight vpdpbusd and one conversion, multiply and FMA per
// phase (see phases), where the unpacked kernel needs those three per pair of blocks.
// The activations (sizePackedVNNI, prepTokenVNNI) are laid out to match: per token and
// group, eight vectors of values, the 16 scales, then the starting values of the integer
// sums, -128·Σx per block for bytes (stored as w+128) and -8·Σx for Q4_0's nibbles
// (w+8), the same per half block, and those converted and times the scales. The tokens
// of a group lie packedActBytes apart (pa), and x is token 0's first group, xstride the
// bytes from one group to the next.
//
// Per group, row and token each phase is an exact integer chain of vpdpbusd, then
// acc += cvt(sum)·(d_x·D) and, for the types with offsets, acc += (cvt(c)·d_x)·E, c the
// correction the phase's offset reads. Integer sums are exact in any order, so one
// token may split its chain in two; these float operations, in this order, are the same
// in the one-row kernel and the pair kernel, whatever k, so the two kernels' results are
// bitwise equal and batch invariant.
//
// k ≥ 2 tokens go through rows in pairs, and each vector of activations, loaded once
// into a register, serves both rows. With one row at a time every vpdpbusd loads its
// activations, and a block of five tokens was bound by loads (about 68 per group
// against 40 vpdpbusd). A last odd row goes to the one-row kernel.
func packed512(lay kindLayout, k int) {
	header(fmt.Sprintf("dot%sPVNNIx%d", lay.name, k))
	if lay.nib {
		p("MOVL $0x0f0f0f0f, DX")
		p("VPBROADCASTD DX, Z31")
	}
	if k == 1 {
		rowStart()
		packedRow512(lay, k, "")
		rowEnd()
		return
	}
	rowPairs(2*k, seq(0, 1, k), seq(k, 1, k), func() {
		packedPairBody(lay, k)
	}, func() {
		packedRow512(lay, k, "1")
	})
}

// packedRow512 emits one row of packed512 for k tokens, reduced and stored at DI.
// Registers: Z0..Z4 token sums, Z5..Z9 integer sums (Z6 a lone token's second chain),
// Z10..Z14 scale products, Z16..Z23 weight vectors 0..7, Z24 weight scales, Z31 0x0f.
func packedRow512(lay kindLayout, k int, sfx string) {
	for t := range k {
		p("VPXORD Z%d, Z%d, Z%d", t, t, t)
	}
	label("group" + sfx)
	if lay.nib {
		for m := range 4 {
			p("VMOVDQU64 %d(DX), Z%d", lay.w+64*m, 16+m)
			p("VPSRLW $4, Z%d, Z%d", 16+m, 20+m)
			p("VPANDD Z31, Z%d, Z%d", 16+m, 16+m)
			p("VPANDD Z31, Z%d, Z%d", 20+m, 20+m)
		}
	} else {
		for j := range 8 {
			p("VMOVDQU64 %d(DX), Z%d", lay.w+64*j, 16+j)
		}
	}
	packedPrefetchRow(lay.bytes, rowPrefetch, func(off int) string { return fmt.Sprintf("%d(DX)", off) })
	for _, ph := range phases(lay) {
		for t := range k {
			if ph.start < 0 {
				p("VPXORD Z%d, Z%d, Z%d", 5+t, 5+t, 5+t)
			} else {
				p("VMOVDQU32 %s, Z%d", pa(t, ph.start), 5+t)
			}
		}
		if k == 1 {
			p("VPXORD Z6, Z6, Z6")
			for i, j := range ph.vecs {
				p("VPDPBUSD %s, Z%d, Z%d", pa(0, 64*j), 16+j, 5+i%2)
			}
			p("VPADDD Z6, Z5, Z5")
		} else {
			for _, j := range ph.vecs {
				for t := range k {
					p("VPDPBUSD %s, Z%d, Z%d", pa(t, 64*j), 16+j, 5+t)
				}
			}
		}
		scales(ph.d, 24, false)
		for t := range k {
			p("VCVTDQ2PS Z%d, Z%d", 5+t, 5+t)
			p("VMULPS %s, Z24, Z%d", pa(t, actScale), 10+t)
			p("VFMADD231PS Z%d, Z%d, Z%d", 5+t, 10+t, t)
		}
		if ph.e >= 0 {
			scales(ph.e, 25, false)
			for t := range k {
				p("VFMADD231PS %s, Z25, Z%d", pa(t, ph.corr+actF), t)
			}
		}
	}
	p("ADDQ $%d, DX", lay.bytes)
	p("ADDQ R9, BX")
	p("DECQ CX")
	p("JNZ group%s", sfx)
	reduce512(seq(0, 1, k))
}

// packedPairBody is one pair of rows of packed512: float sums
// Z0.. (row A) and Z(k).. (row B), integer sums Z10.. (A) and Z15.. (B), weights
// Z20..Z23, activations Z24/Z25, weight scales Z26 (A) and Z27 (B), Z28..Z30 scratch,
// Z31 0x0f bytes.
func packedPairBody(lay kindLayout, k int) {
	accA, accB, intA, intB := 0, k, 10, 15
	label("pgroup")
	packedPrefetchRow(lay.bytes, pairPrefetch, func(off int) string { return fmt.Sprintf("%d(DX)", off) })
	packedPrefetchRow(lay.bytes, pairPrefetch, func(off int) string { return fmt.Sprintf("%d(DX)(R15*1)", off) })
	dots := func(j, wa, wb int) {
		for t := range k {
			x := 24 + t%2
			p("VMOVDQU64 %s, Z%d", pa(t, 64*j), x)
			p("VPDPBUSD Z%d, Z%d, Z%d", x, wa, intA+t)
			p("VPDPBUSD Z%d, Z%d, Z%d", x, wb, intB+t)
		}
	}
	for _, ph := range phases(lay) {
		for t := range k {
			if ph.start < 0 {
				p("VPXORD Z%d, Z%d, Z%d", intA+t, intA+t, intA+t)
				p("VPXORD Z%d, Z%d, Z%d", intB+t, intB+t, intB+t)
			} else {
				p("VMOVDQU32 %s, Z%d", pa(t, ph.start), intA+t)
				p("VMOVDQA32 Z%d, Z%d", intA+t, intB+t)
			}
		}
		if lay.nib && len(ph.vecs) < 8 {
			// A phase of a half: the low nibbles of the four vectors, or the high.
			for _, j := range ph.vecs {
				r := 20 + j%2*2
				p("VMOVDQU64 %d(DX), Z%d", lay.w+64*(j%4), r)
				p("VMOVDQU64 %d(DX)(R15*1), Z%d", lay.w+64*(j%4), r+1)
				if j >= 4 {
					p("VPSRLW $4, Z%d, Z%d", r, r)
					p("VPSRLW $4, Z%d, Z%d", r+1, r+1)
				}
				p("VPANDD Z31, Z%d, Z%d", r, r)
				p("VPANDD Z31, Z%d, Z%d", r+1, r+1)
				dots(j, r, r+1)
			}
		} else if lay.nib {
			for m := range 4 {
				p("VMOVDQU64 %d(DX), Z20", lay.w+64*m)
				p("VMOVDQU64 %d(DX)(R15*1), Z21", lay.w+64*m)
				p("VPSRLW $4, Z20, Z22")
				p("VPSRLW $4, Z21, Z23")
				for r := 20; r < 24; r++ {
					p("VPANDD Z31, Z%d, Z%d", r, r)
				}
				dots(m, 20, 21)
				dots(m+4, 22, 23)
			}
		} else {
			for _, j := range ph.vecs {
				p("VMOVDQU64 %d(DX), Z%d", lay.w+64*j, 20+j%2*2)
				p("VMOVDQU64 %d(DX)(R15*1), Z%d", lay.w+64*j, 21+j%2*2)
				dots(j, 20+j%2*2, 21+j%2*2)
			}
		}
		scales(ph.d, 26, false)
		scales(ph.d, 27, true)
		for t := range k {
			p("VCVTDQ2PS Z%d, Z%d", intA+t, intA+t)
			p("VCVTDQ2PS Z%d, Z%d", intB+t, intB+t)
		}
		for t := range k {
			p("VMOVUPS %s, Z28", pa(t, actScale))
			p("VMULPS Z28, Z26, Z29")
			p("VMULPS Z28, Z27, Z30")
			p("VFMADD231PS Z%d, Z29, Z%d", intA+t, accA+t)
			p("VFMADD231PS Z%d, Z30, Z%d", intB+t, accB+t)
		}
		if ph.e >= 0 {
			scales(ph.e, 26, false)
			scales(ph.e, 27, true)
			for t := range k {
				p("VFMADD231PS %s, Z26, Z%d", pa(t, ph.corr+actF), accA+t)
				p("VFMADD231PS %s, Z27, Z%d", pa(t, ph.corr+actF), accB+t)
			}
		}
	}
	p("ADDQ $%d, DX", lay.bytes)
	p("ADDQ R9, BX")
	p("DECQ CX")
	p("JNZ pgroup")
}

// ---- avx512vnni, wide blocks ----

// packedWide512 writes the kernel of a group layout (Q4_0, Q2_K) for k tokens over
// packed weights that serves blocks of many tokens (continuous batching, long
// verifications). It has the signature
//
//	func k(out *float32, ostride int, w *byte, rowBytes, nrows, ngroups int, x unsafe.Pointer, xstride int)
//
// with nrows even, x token 0's first group of activations and xstride the bytes from
// one group to the next.
//
// Every (row, token) gets exactly the float operations of packedRow512 (integer sums are
// exact in any order), so the two kernels' results are bitwise equal and may be mixed
// within one product. What changes is how the work is laid out. Rows go in pairs, and
// each group of weights and activations is loaded into registers once for all the pair's
// 2k dot products: 2k integer sums Z0..Z(2k-1) (row A's tokens, then row B's) live at
// once, and the loads stay well below the two vpdpbusd a cycle this machine sustains.
// Between groups a pair's float sums wait in a scratch frame; after the last group they
// are stored there by quarters (wideSlot), and once 16 rows (a block) are done each
// token's 16 sums are reduced together (reduceWide): about 1.4 instructions a (row,
// token) against the 5 of reduceTo, with one store of 16 outputs.
//
// Registers: Z0..Z(2k-1) integer then float sums, Z(2k)/Z(2k+1) weights of rows A/B
// (then their scales) and for Q4_0 Z(2k+2)/Z(2k+3) their high nibbles, one activation
// vector after them, which then holds the scale products, Z30 0x0f bytes, Z31 zero.
// Scratch: R12 (64-byte aligned) the quarters, R10 the current pair's; K1 the rows of the
// block.
func packedWide512(lay kindLayout, k int) {
	q4 := lay.nib
	name := fmt.Sprintf("dot%sWVNNIx%d", lay.name, k)
	frame := k*wideTokBytes + 2*k*64 + 64
	groupHeader(name, fmt.Sprintf("$%d-64", frame))
	p("MOVQ SP, R12")
	p("ADDQ $63, R12")
	p("ANDQ $-64, R12")
	p("VPXORD Z31, Z31, Z31")
	if q4 {
		p("MOVL $0x0f0f0f0f, DX")
		p("VPBROADCASTD DX, Z30")
	}
	p("TESTQ R8, R8")
	p("JZ done")
	label("block")
	blockRows512()
	p("SUBQ R14, R8")
	p("MOVQ R12, R10")
	label("pair")
	p("MOVQ SI, DX")
	p("MOVQ AX, BX")
	p("MOVQ R11, CX")
	p("CMPQ CX, $1")
	p("JNE multi")
	wideGroup512(lay, k, true, true)
	p("JMP pairdone")
	label("multi")
	wideGroup512(lay, k, true, false)
	p("SUBQ $2, CX")
	p("JZ lastgroup")
	label("group")
	wideGroup512(lay, k, false, false)
	p("DECQ CX")
	p("JNZ group")
	label("lastgroup")
	wideGroup512(lay, k, false, true)
	label("pairdone")
	p("LEAQ (SI)(R15*2), SI")
	p("ADDQ $32, R10")
	p("SUBQ $2, R14")
	p("JNZ pair")
	reduceWide(k)
	p("ADDQ $%d, DI", 4*wideBlockRows)
	p("TESTQ R8, R8")
	p("JNZ block")
	label("done")
	p("VZEROUPPER")
	p("RET")
}

// wideBlockRows is the rows packedWide512 reduces together, one per lane, and
// wideTokBytes the scratch of one token's block: quarter c of row r's sum at c*256+16r.
const (
	wideBlockRows = 16
	wideTokBytes  = wideBlockRows * 64
)

// wideGroup512 emits one group of 16 blocks of a pair of rows for packedWide512: the
// integer sums, then per (row, token) the float operations of packedRow512, adding to
// zero in the first group and to the sum kept in the scratch after it. The last group
// stores each sum by quarters for reduceWide; the others store it whole, after the
// quarters.
func wideGroup512(lay kindLayout, k int, first, last bool) {
	wA, wB, act := 2*k, 2*k+1, 2*k+2
	if lay.nib {
		act = 2*k + 4
	}
	packedPrefetchRow(lay.bytes, widePrefetch, func(off int) string { return fmt.Sprintf("%d(DX)", off) })
	packedPrefetchRow(lay.bytes, widePrefetch, func(off int) string { return fmt.Sprintf("%d(DX)(R15*1)", off) })
	dots := func(j, wa, wb int) {
		for t := range k {
			p("VMOVDQU64 %s, Z%d", pa(t, 64*j), act)
			p("VPDPBUSD Z%d, Z%d, Z%d", act, wa, t)
			p("VPDPBUSD Z%d, Z%d, Z%d", act, wb, k+t)
		}
	}
	phs := phases(lay)
	for pi, ph := range phs {
		for t := range k {
			if ph.start < 0 {
				p("VPXORD Z%d, Z%d, Z%d", t, t, t)
				p("VPXORD Z%d, Z%d, Z%d", k+t, k+t, k+t)
			} else {
				p("VMOVDQU32 %s, Z%d", pa(t, ph.start), t)
				p("VMOVDQU32 %s, Z%d", pa(t, ph.start), k+t)
			}
		}
		if lay.nib && len(ph.vecs) < 8 {
			for _, j := range ph.vecs {
				p("VMOVDQU64 %d(DX), Z%d", lay.w+64*(j%4), wA)
				p("VMOVDQU64 %d(DX)(R15*1), Z%d", lay.w+64*(j%4), wB)
				if j >= 4 {
					p("VPSRLW $4, Z%d, Z%d", wA, wA)
					p("VPSRLW $4, Z%d, Z%d", wB, wB)
				}
				p("VPANDD Z30, Z%d, Z%d", wA, wA)
				p("VPANDD Z30, Z%d, Z%d", wB, wB)
				dots(j, wA, wB)
			}
		} else if lay.nib {
			for m := range 4 {
				p("VMOVDQU64 %d(DX), Z%d", lay.w+64*m, wA)
				p("VMOVDQU64 %d(DX)(R15*1), Z%d", lay.w+64*m, wB)
				p("VPSRLW $4, Z%d, Z%d", wA, wA+2)
				p("VPSRLW $4, Z%d, Z%d", wB, wB+2)
				for r := wA; r < wA+4; r++ {
					p("VPANDD Z30, Z%d, Z%d", r, r)
				}
				dots(m, wA, wB)
				dots(m+4, wA+2, wB+2)
			}
		} else {
			for _, j := range ph.vecs {
				p("VMOVDQU64 %d(DX), Z%d", lay.w+64*j, wA)
				p("VMOVDQU64 %d(DX)(R15*1), Z%d", lay.w+64*j, wB)
				dots(j, wA, wB)
			}
		}
		scales(ph.d, wA, false)
		scales(ph.d, wB, true)
		// A sum starts from zero in the group's first phase and from the whole sum
		// kept in the scratch after it; the group's last phase stores it by quarters
		// for reduceWide, the others whole. With an offset term the stores wait for it.
		firstOp, lastOp := first && pi == 0, last && pi == len(phs)-1
		store := func(t, h, acc int) {
			whole := fmt.Sprintf("%d(R12)", k*wideTokBytes+(2*t+h)*64)
			if !lastOp {
				p("VMOVUPS Z%d, %s", acc, whole)
				return
			}
			q := t*wideTokBytes + 16*h
			p("VMOVUPS X%d, %d(R10)", acc, q)
			for c := 1; c < 4; c++ {
				p("VEXTRACTF32X4 $%d, Z%d, %d(R10)", c, acc, q+c*256)
			}
		}
		for t := range k {
			for h, acc := range []int{t, k + t} {
				// The whole sum between groups: 2k vectors after the quarters (R12), the
				// same for every pair.
				whole := fmt.Sprintf("%d(R12)", k*wideTokBytes+(2*t+h)*64)
				p("VCVTDQ2PS Z%d, Z%d", acc, acc)
				p("VMULPS %s, Z%d, Z%d", pa(t, actScale), wA+h, act)
				if firstOp {
					p("VFMADD213PS Z31, Z%d, Z%d", act, acc)
				} else {
					p("VFMADD213PS %s, Z%d, Z%d", whole, act, acc)
				}
				if ph.e < 0 {
					store(t, h, acc)
				}
			}
		}
		if ph.e >= 0 {
			scales(ph.e, wA, false)
			scales(ph.e, wB, true)
			for t := range k {
				for h, acc := range []int{t, k + t} {
					p("VFMADD231PS %s, Z%d, Z%d", pa(t, ph.corr+actF), wA+h, acc)
					store(t, h, acc)
				}
			}
		}
	}
	p("ADDQ $%d, DX", lay.bytes)
	p("ADDQ R9, BX")
}

// reduceWide reduces, for each of k tokens, the 16 sums of a block's rows in the scratch
// (R12, by quarters) and stores the lanes K1 selects at DI, the tokens R13 bytes apart.
// Each sum is formed by the additions of reduceTo in the same order (lanes i and i+8,
// then i+4, i+2 and i+1), sixteen at a time. The quarters of four rows make a vector, so
// the first two levels are plain additions of such vectors: row r's four partial sums
// land in 128-bit lane r%4 of vector r/4. Two more levels shuffle within 128-bit lanes
// and leave row 4e+j in lane 4j+e, which VPERMPS puts back in order.
func reduceWide(k int) {
	p("VMOVDQU32 ·widePerm<>(SB), Z15")
	p("MOVQ DI, DX")
	for t := range k {
		base := t * wideTokBytes
		for q := range 4 {
			quarter := func(c int) string { return fmt.Sprintf("%d(R12)", base+256*c+64*q) }
			p("VMOVUPS %s, Z16", quarter(0))
			p("VADDPS %s, Z16, Z16", quarter(2))
			p("VMOVUPS %s, Z17", quarter(1))
			p("VADDPS %s, Z17, Z17", quarter(3))
			p("VADDPS Z17, Z16, Z%d", 8+q)
		}
		for q := range 2 {
			p("VSHUFPS $0x44, Z%d, Z%d, Z16", 9+2*q, 8+2*q)
			p("VSHUFPS $0xee, Z%d, Z%d, Z17", 9+2*q, 8+2*q)
			p("VADDPS Z17, Z16, Z%d", 12+q)
		}
		p("VSHUFPS $0x88, Z13, Z12, Z16")
		p("VSHUFPS $0xdd, Z13, Z12, Z17")
		p("VADDPS Z17, Z16, Z14")
		p("VPERMPS Z14, Z15, Z14")
		p("VMOVUPS Z14, K1, (DX)")
		if t < k-1 {
			p("ADDQ R13, DX")
		}
	}
}

// widePermData is the VPERMPS index of reduceWide: lane r takes lane 4(r%4)+r/4.
func widePermData() {
	for r := range 16 {
		fmt.Fprintf(&s, "DATA ·widePerm<>+%d(SB)/4, $%d\n", 4*r, 4*(r%4)+r/4)
	}
	fmt.Fprintf(&s, "GLOBL ·widePerm<>(SB), RODATA|NOPTR, $64\n")
}

// How far ahead packedWide512 prefetches each row's weights.
const widePrefetch = 4608

// ---- avx512vnni, Q4_K in tiles of 16 rows ----

// Offsets in a tile of packed Q4_K (packTilesQ4K): per super-block, the 16 rows' d and
// dmin/8 as float32, then per sub-block of 32 the rows' 6-bit scales and mins as bytes
// and four vectors of nibbles whose dword lane r holds row r's bytes 4v..4v+3 (weights
// 4v.. in the low nibbles, 16+4v.. in the high).
const (
	tileSBBytes  = 128 + 8*tileSubBytes
	tileSubBytes = 32 + 256
)

// tileQ4K writes the kernel for k tokens over Q4_K packed in tiles of 16 rows. It has
// the signature of the wide kernels, with rowBytes the bytes of a tile, nrows any number
// of rows (a last partial tile is stored under a mask) and ngroups the super-blocks of
// a row.
//
// The rows of a tile lie in the 16 lanes of each vector, so no dot product is ever
// reduced across lanes, and a row's super-block is summed in integers as ggml's
// vec_dot_q4_K_q8_K sums it. Per half sub-block (16 weights) and token, one vpdpbusd
// chain of four, against dwords of the token's activations broadcast, sums Σw·q for 16
// rows (|sum| ≤ 16·15·127, an int16); vpdpwssd adds it times the rows' 6-bit scale to
// the super-block's sum T (the dword [sc, 0] against [sum, its sign]), and per sub-block
// the mins times the activations' -8·Σq to the sum M likewise. Then, once per
// super-block, acc += cvt(T)·(d·d_x) and acc += cvt(M)·((dmin/8)·d_x). These are the same
// operations for a (row, token) whatever k and whichever lane, so results are batch
// invariant; the integer sums are exact, so only those four float operations per
// super-block round.
//
// Per token and 32 weights of 16 rows this is eight vpdpbusd and three vpdpwssd, where
// the packed layout's kernels spent, per 512 weights of one row, eight vpdpbusd and four
// float operations, plus a reduction of 16 lanes (about four more); the weights'
// unpacking and scales are shared by the k tokens.
//
// Registers: Z0..Z5 half sums, Z6..Z11 super-block sums T, Z12..Z17 the sums M of the
// mins, Z18..Z23 float sums, Z24/Z25 low and high nibbles, Z26 scales, Z27 mins, Z28 d,
// Z29 dmin/8, Z30 scratch, Z31 0x0f bytes; K1 the rows of the tile.
func tileQ4K(k int) {
	name := fmt.Sprintf("dotQ4KTVNNIx%d", k)
	groupHeader(name, "NOSPLIT, $0-64")
	p("MOVL $0x0f0f0f0f, DX")
	p("VPBROADCASTD DX, Z31")
	p("TESTQ R8, R8")
	p("JZ done")
	label("tile")
	blockRows512()
	for t := range k {
		p("VPXORD Z%d, Z%d, Z%d", 18+t, 18+t, 18+t)
	}
	p("MOVQ SI, DX")
	p("MOVQ AX, BX")
	p("MOVQ R11, CX")
	label("sb")
	tileSB(k, 0)
	p("ADDQ $%d, DX", tileSBBytes)
	p("DECQ CX")
	p("JZ store")
	tileSB(k, 8)
	p("ADDQ $%d, DX", tileSBBytes)
	p("ADDQ R9, BX")
	p("DECQ CX")
	p("JNZ sb")
	label("store")
	tileStore(k, 18)
}

// tileStore ends a tile of the tiled kernels: it stores the k tokens' sums, in Z(first)
// on, under the tile's lane mask K1 and R13 bytes apart, steps to the next tile
// (closing the loop at label tile) and returns after the last.
func tileStore(k, first int) {
	p("MOVQ DI, R10")
	for t := range k {
		p("VMOVUPS Z%d, K1, (R10)", first+t)
		if t < k-1 {
			p("ADDQ R13, R10")
		}
	}
	p("ADDQ $64, DI")
	p("ADDQ R15, SI")
	p("SUBQ R14, R8")
	p("JNZ tile")
	label("done")
	p("VZEROUPPER")
	p("RET")
}

// tileSB emits one super-block of tileQ4K, whose sub-blocks are blocks ioff.. of the
// current group of activations (BX).
func tileSB(k, ioff int) {
	for t := range k {
		p("VPXORD Z%d, Z%d, Z%d", 6+t, 6+t, 6+t)
		p("VPXORD Z%d, Z%d, Z%d", 12+t, 12+t, 12+t)
	}
	for sub := range 8 {
		i, base := ioff+sub, 128+sub*tileSubBytes
		for off := 0; off < tileSubBytes; off += 64 {
			p("PREFETCHT0 %d(DX)", base+off+tilePrefetch)
		}
		p("VPMOVZXBD %d(DX), Z26", base)
		p("VPMOVZXBD %d(DX), Z27", base+16)
		for t := range k {
			p("VPDPWSSD.BCST %s, Z27, Z%d", pa(t, actC8+4*i), 12+t)
		}
		for half := range 2 {
			for t := range k {
				p("VPXORD Z%d, Z%d, Z%d", t, t, t)
			}
			for v := range 4 {
				p("VMOVDQU64 %d(DX), Z24", base+32+64*v)
				if half == 0 {
					p("VPANDD Z31, Z24, Z24")
				} else {
					p("VPSRLW $4, Z24, Z24")
					p("VPANDD Z31, Z24, Z24")
				}
				for t := range k {
					p("VPDPBUSD.BCST %s, Z24, Z%d", pa(t, 64*(v+4*half)+4*i), t)
				}
			}
			for t := range k {
				p("VPDPWSSD Z26, Z%d, Z%d", t, 6+t)
			}
		}
	}
	p("VMOVUPS (DX), Z28")
	p("VMOVUPS 64(DX), Z29")
	for t := range k {
		p("VCVTDQ2PS Z%d, Z%d", 6+t, 6+t)
		p("VMULPS.BCST %s, Z28, Z30", pa(t, actScale+4*ioff))
		p("VFMADD231PS Z%d, Z30, Z%d", 6+t, 18+t)
		p("VCVTDQ2PS Z%d, Z%d", 12+t, 12+t)
		p("VMULPS.BCST %s, Z29, Z30", pa(t, actScale+4*ioff))
		p("VFMADD231PS Z%d, Z30, Z%d", 12+t, 18+t)
	}
}

// tilePrefetch is how far ahead tileQ4K prefetches its weights.
const tilePrefetch = 4608

// ---- avx512vnni, byte layouts in tiles of 16 rows ----

// tileBytes writes the kernel for k tokens over weights of a byte layout lay (Q8 for
// Q8_0, Q5_0 and IQ4_NL; Q6K, two scales a block; Q5K for Q5_K and Q5_1, a scale and an
// offset; see packTilesBytes) in tiles of 16 rows. It has the signature of the
// wide kernels, with rowBytes the bytes of a tile, nrows any number of rows (a last
// partial tile is stored under a mask) and ngroups the blocks of 32 of a row, which
// need not fill the last group of 16 of the activations.
//
// A tile holds, per block, what a packed group holds (the same kindLayout) with rows in
// the lanes instead of blocks: the 16 rows' scales (and E) as float32, then eight
// vectors whose dword lane r holds row r's weights 4j..4j+3 as bytes w+128. Per block,
// phase (see phases: one, or one per half block for Q6K) and token, the integer sum
// starts from the correction -128·Σq broadcast from the activations, takes one
// VPDPBUSD.BCST per weight vector against the token's dword of four values, and then
// acc += cvt(sum)·(D·d_x) (and for offsets acc += E·(cvt(c)·d_x)): for Q8, 8 vpdpbusd
// and 3 float operations per 512 products, no reduction across lanes, no store before
// the tile's end. A (row, token) gets the same operations
// whatever k and whichever lane, so results are batch invariant; the float sum runs
// over the blocks in order, as genericQ8's does.
//
// Registers: Z0..Z(k-1) float sums, Z(k)..Z(2k-1) integer sums (k = 1: Z1 and Z2, two
// chains), Z28/Z29 weight vectors (alternating), Z30 the rows' scales, Z31 scale
// products, Z27 offsets; K1 the rows of the tile; CX the blocks left, R10 those left in
// the group, R12 the group's start.
func tileBytes(lay kindLayout, k int) {
	name := fmt.Sprintf("dot%sTVNNIx%d", lay.name, k)
	groupHeader(name, "NOSPLIT, $0-64")
	p("TESTQ R8, R8")
	p("JZ done")
	label("tile")
	blockRows512()
	for t := range k {
		p("VPXORD Z%d, Z%d, Z%d", t, t, t)
	}
	p("MOVQ SI, DX")
	p("MOVQ AX, BX")
	p("MOVQ R11, CX")
	label("group")
	p("MOVQ $16, R10")
	p("CMPQ CX, R10")
	p("CMOVQLT CX, R10")
	p("SUBQ R10, CX")
	p("MOVQ BX, R12")
	label("blk")
	for off := 0; off < lay.bytes; off += 64 {
		p("PREFETCHT0 %d(DX)", tileBytesPrefetch+off)
	}
	for _, ph := range phases(lay) {
		for t := range k {
			if ph.start < 0 {
				p("VPXORD Z%d, Z%d, Z%d", k+t, k+t, k+t)
			} else {
				p("VPBROADCASTD %s, Z%d", pa(t, ph.start), k+t)
			}
		}
		if k == 1 {
			// One token: two chains, so that a block does not wait on eight vpdpbusd
			// in a row.
			p("VPXORD Z2, Z2, Z2")
		}
		for i, j := range ph.vecs {
			w := 28 + j%2
			p("VMOVDQU64 %d(DX), Z%d", lay.w+64*j, w)
			for t := range k {
				acc := k + t
				if k == 1 {
					acc += i % 2
				}
				p("VPDPBUSD.BCST %s, Z%d, Z%d", pa(t, 64*j), w, acc)
			}
		}
		if k == 1 {
			p("VPADDD Z2, Z1, Z1")
		}
		p("VMOVUPS %d(DX), Z30", ph.d)
		for t := range k {
			p("VCVTDQ2PS Z%d, Z%d", k+t, k+t)
			p("VMULPS.BCST %s, Z30, Z31", pa(t, actScale))
			p("VFMADD231PS Z%d, Z31, Z%d", k+t, t)
		}
		if ph.e >= 0 {
			p("VMOVUPS %d(DX), Z27", ph.e)
			for t := range k {
				p("VFMADD231PS.BCST %s, Z27, Z%d", pa(t, ph.corr+actF), t)
			}
		}
	}
	p("ADDQ $%d, DX", lay.bytes)
	p("ADDQ $4, BX")
	p("DECQ R10")
	p("JNZ blk")
	p("LEAQ (R12)(R9*1), BX")
	p("TESTQ CX, CX")
	p("JNZ group")
	tileStore(k, 0)
}

// tileBytesPrefetch is how far ahead tileBytes prefetches its weights.
const tileBytesPrefetch = 4608

// ---- avx2 ----

// floatAVX2 writes the F32 or F16 kernel for k tokens. Each token has two vector
// accumulators, Y(2t) for even and Y(2t+1) for odd vectors of 8 columns (a last
// odd-numbered vector goes to the even one), and X(8+t) for the tail columns, one at a
// time; the vectors are added, reduced, and the tail sum added last. Y12/Y13 hold weights,
// X14/X15 tail scratch.
func floatAVX2(el elem, k int) {
	step, esz := 32, 4
	if el != f32 {
		step, esz = 16, 2
	}
	name := fmt.Sprintf("dot%sAVX2x%d", el, k)
	header(name)
	rowStart()
	for t := range k {
		p("VXORPS Y%d, Y%d, Y%d", 2*t, 2*t, 2*t)
		p("VXORPS Y%d, Y%d, Y%d", 2*t+1, 2*t+1, 2*t+1)
		p("VXORPS X%d, X%d, X%d", 8+t, 8+t, 8+t)
	}
	load := func(woff, reg int) { el.load(fmt.Sprintf("%d(DX)", woff), fmt.Sprintf("Y%d", reg)) }
	p("SHRQ $1, CX")
	p("JZ single")
	label("loop")
	load(0, 12)
	load(step, 13)
	for t := range k {
		p("VFMADD231PS %s, Y12, Y%d", xa(t, 0), 2*t)
	}
	for t := range k {
		p("VFMADD231PS %s, Y13, Y%d", xa(t, 32), 2*t+1)
	}
	p("ADDQ $%d, DX", 2*step)
	p("ADDQ $64, BX")
	p("DECQ CX")
	p("JNZ loop")
	label("single")
	p("TESTQ $1, R11")
	p("JZ tail")
	load(0, 12)
	for t := range k {
		p("VFMADD231PS %s, Y12, Y%d", xa(t, 0), 2*t)
	}
	p("ADDQ $%d, DX", step)
	p("ADDQ $32, BX")
	label("tail")
	p("MOVQ R12, CX")
	p("TESTQ CX, CX")
	p("JZ reduce")
	label("tailloop")
	switch el {
	case f32:
		p("VMOVSS (DX), X14")
	case f16:
		p("MOVWLZX (DX), R12")
		p("VMOVQ R12, X14")
		p("VCVTPH2PS X14, X14")
	case bf16:
		p("MOVWLZX (DX), R12")
		p("SHLL $16, R12")
		p("VMOVQ R12, X14")
	}
	for t := range k {
		p("VMOVSS %s, X15", xa(t, 0))
		p("VFMADD231SS X15, X14, X%d", 8+t)
	}
	p("ADDQ $%d, DX", esz)
	p("ADDQ $4, BX")
	p("DECQ CX")
	p("JNZ tailloop")
	p("MOVQ tail+48(FP), R12")
	label("reduce")
	for t := range k {
		p("VADDPS Y%d, Y%d, Y%d", 2*t+1, 2*t, 2*t)
		p("VEXTRACTF128 $1, Y%d, X14", 2*t)
		p("VADDPS X14, X%d, X14", 2*t)
		p("VMOVHLPS X14, X14, X15")
		p("VADDPS X15, X14, X14")
		p("VMOVSHDUP X14, X15")
		p("VADDSS X15, X14, X14")
		p("VADDSS X%d, X14, X14", 8+t)
		p("VMOVSS X14, %s", oa(t))
	}
	rowEnd()
}

// quantAVX2 writes the Q8_0 or Q4_0 kernel for k tokens with AVX2: |w| (unsigned) times
// x·sign(w) (signed) in vpmaddubsw, which cannot saturate as |x| ≤ 127 and |w| ≤ 128.
// Each token has two accumulators, Y(2t) for the first block of each pair (and a last
// single block) and Y(2t+1) for the second, added before the reduction.
//
// Registers: Y0..Y7 accumulators, Y8 weights, Y9 |w|, Y10 weight scale, Y11 int16 ones,
// Y12/Y13 scratch, Y14 0x0f bytes and Y15 8 bytes (Q4_0; reduction scratch afterwards).
func quantAVX2(q4 bool, k int) {
	typ, bstride := "Q8", 34
	if q4 {
		typ, bstride = "Q4", 18
	}
	name := fmt.Sprintf("dot%sAVX2x%d", typ, k)
	header(name)
	p("MOVL $0x00010001, DX")
	p("VMOVD DX, X11")
	p("VPBROADCASTD X11, Y11")
	rowStart()
	if q4 {
		// Reloaded per row, as the reduction reuses these registers.
		p("MOVL $0x0f0f0f0f, DX")
		p("VMOVD DX, X14")
		p("VPBROADCASTD X14, Y14")
		p("MOVL $0x08080808, DX")
		p("VMOVD DX, X15")
		p("VPBROADCASTD X15, Y15")
		p("MOVQ SI, DX")
	}
	for a := range 2 * k {
		p("VXORPS Y%d, Y%d, Y%d", a, a, a)
	}
	p("TESTQ CX, CX")
	p("JZ tail")
	label("loop")
	blockAVX2(q4, k, 0, 0, 0)
	blockAVX2(q4, k, bstride, 32, 1)
	p("ADDQ $%d, DX", 2*bstride)
	p("ADDQ $128, BX")
	p("DECQ CX")
	p("JNZ loop")
	label("tail")
	p("TESTQ R12, R12")
	p("JZ reduce")
	blockAVX2(q4, k, 0, 0, 0)
	label("reduce")
	for t := range k {
		p("VADDPS Y%d, Y%d, Y%d", 2*t+1, 2*t, 2*t)
		reduce256(fmt.Sprintf("Y%d", 2*t), fmt.Sprintf("X%d", 2*t), oa(t))
	}
	rowEnd()
}

// blockAVX2 accumulates the block at woff(DX) against token blocks at xoff(BX) (values)
// and xoff+64(BX) (scales) into each token's accumulator half (0 or 1).
func blockAVX2(q4 bool, k, woff, xoff, half int) {
	if q4 {
		p("VMOVDQU %d(DX), X8", woff+2)
		p("VPSRLW $4, X8, X12")
		p("VINSERTI128 $1, X12, Y8, Y8")
		p("VPAND Y14, Y8, Y8")
		p("VPSUBB Y15, Y8, Y8")
	} else {
		p("VMOVDQU %d(DX), Y8", woff+2)
	}
	p("VPABSB Y8, Y9")
	p("VPBROADCASTW %d(DX), X10", woff)
	p("VCVTPH2PS X10, Y10")
	for t := range k {
		p("VMOVDQU %s, Y12", xa(t, xoff))
		p("VPSIGNB Y8, Y12, Y12")
		p("VPMADDUBSW Y12, Y9, Y12")
		p("VPMADDWD Y11, Y12, Y12")
		p("VCVTDQ2PS Y12, Y12")
		p("VMULPS %s, Y10, Y13", xa(t, xoff+64))
		p("VFMADD231PS Y12, Y13, Y%d", 2*t+half)
	}
}

// subAVX2 writes the kernel for k tokens over weights of the sub types (Q4_K … IQ4_NL)
// repacked for avx2 (see packSubsAVX2): per block of 32, its scales and offsets
// (dl, dh, fl, fh as float32) and its 32 weights w as int8, 48 bytes. The activations
// are those of quantAVX2 (pairs of blocks: 64 values, then each block's scale eight
// times). nfull is the pairs of blocks and tail 1 for a last single block.
//
// Per block and token: |w| times x·sign(w) in vpmaddubsw, summed by fours in vpmaddwd,
// leaves lanes 0-3 summing the block's first half and 4-7 its second, converted and
// added to the token's one accumulator by an FMA with d_x·[dl×4, dh×4]; with offsets,
// the sums of x by fours (vpmaddubsw of ones) likewise with d_x·[fl×4, fh×4]. The
// operations on a token are the same whatever k.
//
// Registers: Y0..Y3 token sums, Y4/Y5 scale products, Y8 weights, Y9 |w|, Y10 the scales
// by half, Y11 int16 ones, Y12/Y13 scratch, Y14 the offsets by half, Y15 byte ones.
func subAVX2(mins bool, k int) {
	name := fmt.Sprintf("dotSubAVX2x%d", k)
	if mins {
		name = fmt.Sprintf("dotSubMinAVX2x%d", k)
	}
	header(name)
	p("MOVL $0x00010001, DX")
	p("VMOVD DX, X11")
	p("VPBROADCASTD X11, Y11")
	rowStart()
	if mins {
		// Reloaded per row, as the reduction reuses the register.
		p("MOVL $0x01010101, DX")
		p("VMOVD DX, X15")
		p("VPBROADCASTD X15, Y15")
		p("MOVQ SI, DX")
	}
	for t := range k {
		p("VXORPS Y%d, Y%d, Y%d", t, t, t)
	}
	p("TESTQ CX, CX")
	p("JZ tail")
	label("loop")
	subBlockAVX2(mins, k, 0, 0)
	subBlockAVX2(mins, k, 48, 32)
	p("ADDQ $96, DX")
	p("ADDQ $128, BX")
	p("DECQ CX")
	p("JNZ loop")
	label("tail")
	p("TESTQ R12, R12")
	p("JZ reduce")
	subBlockAVX2(mins, k, 0, 0)
	label("reduce")
	for t := range k {
		reduce256(fmt.Sprintf("Y%d", t), fmt.Sprintf("X%d", t), oa(t))
	}
	rowEnd()
}

// halvesAVX2 sets Y<dst> to [v(off)×4, v(off+4)×4] from the block's float32s at DX.
func halvesAVX2(woff, off, dst int) {
	p("VBROADCASTSS %d(DX), Y%d", woff+off, dst)
	p("VBROADCASTSS %d(DX), Y12", woff+off+4)
	p("VBLENDPS $0xf0, Y12, Y%d, Y%d", dst, dst)
}

// subBlockAVX2 accumulates the block at woff(DX) against the token blocks at xoff(BX)
// (values; the scale 64 bytes on).
func subBlockAVX2(mins bool, k, woff, xoff int) {
	p("VMOVDQU %d(DX), Y8", woff+16)
	p("VPABSB Y8, Y9")
	halvesAVX2(woff, 0, 10)
	if mins {
		halvesAVX2(woff, 8, 14)
	}
	for t := range k {
		p("VMOVDQU %s, Y12", xa(t, xoff))
		p("VPSIGNB Y8, Y12, Y13")
		p("VPMADDUBSW Y13, Y9, Y13")
		p("VPMADDWD Y11, Y13, Y13")
		p("VCVTDQ2PS Y13, Y13")
		p("VMULPS %s, Y10, Y4", xa(t, xoff+64))
		p("VFMADD231PS Y13, Y4, Y%d", t)
		if mins {
			p("VPMADDUBSW Y12, Y15, Y12")
			p("VPMADDWD Y11, Y12, Y12")
			p("VCVTDQ2PS Y12, Y12")
			p("VMULPS %s, Y14, Y5", xa(t, xoff+64))
			p("VFMADD231PS Y12, Y5, Y%d", t)
		}
	}
}

func main() {
	s.WriteString("// Code generated by asmgen.go; DO NOT EDIT.\n\n//go:build amd64\n\n#include \"textflag.h\"\n")
	gs.WriteString("// Code generated by asmgen.go; DO NOT EDIT.\n\n//go:build amd64\n\npackage kernels\n\nimport \"unsafe\"\n")
	tables := map[string][]string{}
	for k := 1; k <= maxTok512; k++ {
		float512(f32, k)
		float512(f16, k)
		float512(bf16, k)
		quant512(false, k)
		quant512(true, k)
		for _, n := range []string{"dotF32AVX512", "dotF16AVX512", "dotBF16AVX512", "dotQ8VNNI", "dotQ4VNNI"} {
			tables[n] = append(tables[n], fmt.Sprintf("%sx%d", n, k))
		}
		for _, lay := range packedKinds {
			if tiledKinds[lay.name] {
				continue
			}
			packed512(lay, k)
			n := fmt.Sprintf("dot%sPVNNI", lay.name)
			tables[n] = append(tables[n], fmt.Sprintf("%sx%d", n, k))
		}
	}
	for k := 1; k <= maxTokWide; k++ {
		for _, lay := range packedKinds {
			if tiledKinds[lay.name] {
				continue
			}
			packedWide512(lay, k)
			n := fmt.Sprintf("dot%sWVNNI", lay.name)
			tables[n] = append(tables[n], fmt.Sprintf("%sx%d", n, k))
		}
	}
	for k := 1; k <= maxTokTile; k++ {
		tileQ4K(k)
		tables["dotQ4KTVNNI"] = append(tables["dotQ4KTVNNI"], fmt.Sprintf("dotQ4KTVNNIx%d", k))
	}
	for _, lay := range packedKinds {
		if !tiledKinds[lay.name] {
			continue
		}
		n := fmt.Sprintf("dot%sTVNNI", lay.name)
		for k := 1; k <= maxTokTileQ8; k++ {
			tileBytes(lay, k)
			tables[n] = append(tables[n], fmt.Sprintf("%sx%d", n, k))
		}
	}
	fmt.Fprintln(&s)
	widePermData()
	for k := 1; k <= maxTokAVX; k++ {
		floatAVX2(f32, k)
		floatAVX2(f16, k)
		floatAVX2(bf16, k)
		quantAVX2(false, k)
		quantAVX2(true, k)
		subAVX2(false, k)
		subAVX2(true, k)
		for _, n := range []string{"dotF32AVX2", "dotF16AVX2", "dotBF16AVX2", "dotQ8AVX2", "dotQ4AVX2", "dotSubAVX2", "dotSubMinAVX2"} {
			tables[n] = append(tables[n], fmt.Sprintf("%sx%d", n, k))
		}
	}
	var names []string
	for _, n := range []string{"dotF32AVX512", "dotF16AVX512", "dotBF16AVX512", "dotQ8VNNI", "dotQ4VNNI", "dotQ8PVNNI", "dotQ4PVNNI", "dotQ5KPVNNI", "dotQ6KPVNNI", "dotQ2KPVNNI", "dotF32AVX2", "dotF16AVX2", "dotBF16AVX2", "dotQ8AVX2", "dotQ4AVX2", "dotSubAVX2", "dotSubMinAVX2", "dotQ8WVNNI", "dotQ4WVNNI", "dotQ5KWVNNI", "dotQ6KWVNNI", "dotQ2KWVNNI", "dotQ4KTVNNI", "dotQ8TVNNI", "dotQ5KTVNNI", "dotQ6KTVNNI"} {
		if len(tables[n]) > 0 {
			names = append(names, n)
		}
	}
	for _, n := range names {
		typ := "asmKernel"
		if strings.Contains(n, "WVNNI") || strings.Contains(n, "TVNNI") {
			typ = "wideKernel"
		}
		fmt.Fprintf(&gs, "\n// %s holds the %s kernels by number of tokens minus one.\nvar %s = [...]%s{%s}\n", n, n, n, typ, strings.Join(tables[n], ", "))
	}
	if err := os.WriteFile("kernels_amd64.s", s.Bytes(), 0o644); err != nil {
		log.Fatal(err)
	}
	if err := os.WriteFile("kernels_amd64_gen.go", gs.Bytes(), 0o644); err != nil {
		log.Fatal(err)
	}
}
