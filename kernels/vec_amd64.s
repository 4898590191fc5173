#include "textflag.h"
#include "vec_amd64.h"

// func vscoresF32(q, k *float32, stride, n, hd int, out *float32)
// out[j] = dot(q[0:hd], k[j*stride : j*stride+hd]) for j < n; hd a multiple of 8.
// One 8-lane FMA accumulator per row, reduced in a fixed order: lane j sums the
// products of columns j, j+8, ... in order, and the lanes add up as
// ((l0+l4)+(l2+l6)) + ((l1+l5)+(l3+l7)). Rows go eight at a time, with the eight
// reductions done side by side in vector registers, then four, then one at a time; each
// row's operations are the same either way.
TEXT ·vscoresF32(SB), NOSPLIT, $0-48
	MOVQ q+0(FP), SI
	MOVQ k+8(FP), DI
	MOVQ stride+16(FP), R8
	SHLQ $2, R8
	MOVQ n+24(FP), CX
	MOVQ hd+32(FP), R9
	MOVQ out+40(FP), DX
	LEAQ (R8)(R8*2), R10

soct:
	CMPQ CX, $8
	JLT  squad
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3
	VXORPS Y4, Y4, Y4
	VXORPS Y5, Y5, Y5
	VXORPS Y6, Y6, Y6
	VXORPS Y7, Y7, Y7
	MOVQ   DI, BX
	LEAQ   (DI)(R8*4), R11
	XORQ   AX, AX

s8col:
	VMOVUPS (SI)(AX*4), Y8
	VFMADD231PS (BX), Y8, Y0
	VFMADD231PS (BX)(R8*1), Y8, Y1
	VFMADD231PS (BX)(R8*2), Y8, Y2
	VFMADD231PS (BX)(R10*1), Y8, Y3
	VFMADD231PS (R11), Y8, Y4
	VFMADD231PS (R11)(R8*1), Y8, Y5
	VFMADD231PS (R11)(R8*2), Y8, Y6
	VFMADD231PS (R11)(R10*1), Y8, Y7
	ADDQ $32, BX
	ADDQ $32, R11
	ADDQ $8, AX
	CMPQ AX, R9
	JLT  s8col
	SCORES8_REDUCE
	VMOVUPS Y0, (DX)
	ADDQ $32, DX
	LEAQ (DI)(R8*8), DI
	SUBQ $8, CX
	JMP  soct

squad:
	CMPQ CX, $4
	JLT  srow
	VXORPS Y0, Y0, Y0
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3
	VXORPS Y4, Y4, Y4
	MOVQ   DI, BX
	XORQ   AX, AX

s4col:
	VMOVUPS (SI)(AX*4), Y1
	VFMADD231PS (BX), Y1, Y0
	VFMADD231PS (BX)(R8*1), Y1, Y2
	VFMADD231PS (BX)(R8*2), Y1, Y3
	VFMADD231PS (BX)(R10*1), Y1, Y4
	ADDQ $32, BX
	ADDQ $8, AX
	CMPQ AX, R9
	JLT  s4col
	SCORES4_REDUCE_STORE
	ADDQ $16, DX
	LEAQ (DI)(R8*4), DI
	SUBQ $4, CX
	JMP  squad

srow:
	CMPQ CX, $0
	JEQ  sdone
	VXORPS Y0, Y0, Y0
	XORQ   AX, AX

scol:
	VMOVUPS (SI)(AX*4), Y1
	VFMADD231PS (DI)(AX*4), Y1, Y0
	ADDQ $8, AX
	CMPQ AX, R9
	JLT  scol
	SCORES1_REDUCE_STORE
	ADDQ $4, DX
	ADDQ R8, DI
	DECQ CX
	JMP  srow

sdone:
	VZEROUPPER
	RET

// func vaccumF32(out, v *float32, stride, n, hd int, w *float32, wide bool)
// out[0:hd] += sum over j < n of w[j] * v[j*stride : j*stride+hd], rows in order;
// hd a multiple of 8, n > 0. Up to 64 columns of out stay in eight registers while the
// rows go by, so the FMA chains of different columns overlap (one chain at a time was
// bound by FMA latency). Each element still adds its rows in order with one FMA each,
// whatever the register width, so every path gives the same bits.
TEXT ·vaccumF32(SB), NOSPLIT, $0-49
	MOVQ out+0(FP), DX
	MOVQ v+8(FP), DI
	MOVQ stride+16(FP), R8
	SHLQ $2, R8
	MOVQ n+24(FP), R10
	MOVQ hd+32(FP), R9
	MOVQ w+40(FP), SI

achunk:
	CMPQ R9, $64
	JLT  anarrow
	VMOVUPS 0(DX), Y0
	VMOVUPS 32(DX), Y1
	VMOVUPS 64(DX), Y2
	VMOVUPS 96(DX), Y3
	VMOVUPS 128(DX), Y4
	VMOVUPS 160(DX), Y5
	VMOVUPS 192(DX), Y6
	VMOVUPS 224(DX), Y7
	MOVQ DI, BX
	MOVQ SI, R11
	MOVQ R10, CX

awide:
	CMPQ CX, $0
	JEQ  awstore
	VBROADCASTSS (R11), Y8
	VFMADD231PS 0(BX), Y8, Y0
	VFMADD231PS 32(BX), Y8, Y1
	VFMADD231PS 64(BX), Y8, Y2
	VFMADD231PS 96(BX), Y8, Y3
	VFMADD231PS 128(BX), Y8, Y4
	VFMADD231PS 160(BX), Y8, Y5
	VFMADD231PS 192(BX), Y8, Y6
	VFMADD231PS 224(BX), Y8, Y7
	ADDQ R8, BX
	ADDQ $4, R11
	DECQ CX
	JMP  awide

awstore:
	VMOVUPS Y0, 0(DX)
	VMOVUPS Y1, 32(DX)
	VMOVUPS Y2, 64(DX)
	VMOVUPS Y3, 96(DX)
	VMOVUPS Y4, 128(DX)
	VMOVUPS Y5, 160(DX)
	VMOVUPS Y6, 192(DX)
	VMOVUPS Y7, 224(DX)
	ADDQ $256, DX
	ADDQ $256, DI
	SUBQ $64, R9
	JMP  achunk

// Fewer than 64 columns left (8 to 56, the whole head for the head dims of small
// models): they too go over the rows in one pass with every column in a register when
// there are 512-bit registers, else in at most three passes of 32, 16 and 8 columns.
// Eight columns a pass, as before, made one FMA chain wait on its own latency.
anarrow:
	CMPQ R9, $0
	JEQ  adone
	MOVBLZX wide+48(FP), AX
	TESTQ AX, AX
	JNZ  azmm

a32:
	CMPQ R9, $32
	JLT  a16
	VMOVUPS 0(DX), Y0
	VMOVUPS 32(DX), Y1
	VMOVUPS 64(DX), Y2
	VMOVUPS 96(DX), Y3
	MOVQ DI, BX
	MOVQ SI, R11
	MOVQ R10, CX

a32row:
	VBROADCASTSS (R11), Y8
	VFMADD231PS 0(BX), Y8, Y0
	VFMADD231PS 32(BX), Y8, Y1
	VFMADD231PS 64(BX), Y8, Y2
	VFMADD231PS 96(BX), Y8, Y3
	ADDQ R8, BX
	ADDQ $4, R11
	DECQ CX
	JNZ  a32row
	VMOVUPS Y0, 0(DX)
	VMOVUPS Y1, 32(DX)
	VMOVUPS Y2, 64(DX)
	VMOVUPS Y3, 96(DX)
	ADDQ $128, DX
	ADDQ $128, DI
	SUBQ $32, R9

a16:
	CMPQ R9, $16
	JLT  a8
	VMOVUPS 0(DX), Y0
	VMOVUPS 32(DX), Y1
	MOVQ DI, BX
	MOVQ SI, R11
	MOVQ R10, CX

a16row:
	VBROADCASTSS (R11), Y8
	VFMADD231PS 0(BX), Y8, Y0
	VFMADD231PS 32(BX), Y8, Y1
	ADDQ R8, BX
	ADDQ $4, R11
	DECQ CX
	JNZ  a16row
	VMOVUPS Y0, 0(DX)
	VMOVUPS Y1, 32(DX)
	ADDQ $64, DX
	ADDQ $64, DI
	SUBQ $16, R9

a8:
	CMPQ R9, $8
	JLT  adone
	VMOVUPS 0(DX), Y0
	MOVQ DI, BX
	MOVQ SI, R11
	MOVQ R10, CX

a8row:
	VBROADCASTSS (R11), Y8
	VFMADD231PS 0(BX), Y8, Y0
	ADDQ R8, BX
	ADDQ $4, R11
	DECQ CX
	JNZ  a8row
	VMOVUPS Y0, 0(DX)

adone:
	VZEROUPPER
	RET

// AVX-512: the 8 to 56 columns in one to four registers of 16, the last under mask K1
// (its upper 8 lanes off when the width is an odd multiple of 8): masked-off lanes are
// neither read nor written.
azmm:
	MOVL $0xffff, AX
	MOVL $0xff, CX
	TESTQ $8, R9
	CMOVLNE CX, AX
	KMOVW AX, K1
	MOVQ DI, BX
	MOVQ SI, R11
	MOVQ R10, CX
	CMPQ R9, $16
	JLE  az1
	CMPQ R9, $32
	JLE  az2
	CMPQ R9, $48
	JLE  az3
	VMOVUPS 0(DX), Z0
	VMOVUPS 64(DX), Z1
	VMOVUPS 128(DX), Z2
	VMOVUPS.Z 192(DX), K1, Z3

az4row:
	VBROADCASTSS (R11), Z8
	VFMADD231PS 0(BX), Z8, Z0
	VFMADD231PS 64(BX), Z8, Z1
	VFMADD231PS 128(BX), Z8, Z2
	VFMADD231PS 192(BX), Z8, K1, Z3
	ADDQ R8, BX
	ADDQ $4, R11
	DECQ CX
	JNZ  az4row
	VMOVUPS Z0, 0(DX)
	VMOVUPS Z1, 64(DX)
	VMOVUPS Z2, 128(DX)
	VMOVUPS Z3, K1, 192(DX)
	JMP  adone

az3:
	VMOVUPS 0(DX), Z0
	VMOVUPS 64(DX), Z1
	VMOVUPS.Z 128(DX), K1, Z2

az3row:
	VBROADCASTSS (R11), Z8
	VFMADD231PS 0(BX), Z8, Z0
	VFMADD231PS 64(BX), Z8, Z1
	VFMADD231PS 128(BX), Z8, K1, Z2
	ADDQ R8, BX
	ADDQ $4, R11
	DECQ CX
	JNZ  az3row
	VMOVUPS Z0, 0(DX)
	VMOVUPS Z1, 64(DX)
	VMOVUPS Z2, K1, 128(DX)
	JMP  adone

az2:
	VMOVUPS 0(DX), Z0
	VMOVUPS.Z 64(DX), K1, Z1

az2row:
	VBROADCASTSS (R11), Z8
	VFMADD231PS 0(BX), Z8, Z0
	VFMADD231PS 64(BX), Z8, K1, Z1
	ADDQ R8, BX
	ADDQ $4, R11
	DECQ CX
	JNZ  az2row
	VMOVUPS Z0, 0(DX)
	VMOVUPS Z1, K1, 64(DX)
	JMP  adone

az1:
	VMOVUPS.Z 0(DX), K1, Z0

az1row:
	VBROADCASTSS (R11), Z8
	VFMADD231PS 0(BX), Z8, K1, Z0
	ADDQ R8, BX
	ADDQ $4, R11
	DECQ CX
	JNZ  az1row
	VMOVUPS Z0, K1, 0(DX)
	JMP  adone

// func vscaleMulF32(dst, x, w *float32, n int, s float32)
// dst[i] = w[i] * (s * x[i]) for i < n; n a multiple of 8.
TEXT ·vscaleMulF32(SB), NOSPLIT, $0-36
	MOVQ dst+0(FP), DI
	MOVQ x+8(FP), SI
	MOVQ w+16(FP), DX
	MOVQ n+24(FP), CX
	VBROADCASTSS s+32(FP), Y0
	XORQ AX, AX

smloop:
	CMPQ AX, CX
	JGE  smdone
	VMULPS (SI)(AX*4), Y0, Y1
	VMULPS (DX)(AX*4), Y1, Y1
	VMOVUPS Y1, (DI)(AX*4)
	ADDQ $8, AX
	JMP  smloop

smdone:
	VZEROUPPER
	RET

// func vrotateF32(v, cs, sn *float32, n int)
// (v[2i], v[2i+1]) = (v[2i]·cs[2i] + v[2i+1]·sn[2i], v[2i+1]·cs[2i+1] + v[2i]·sn[2i+1])
// for 2i < n; n a multiple of 8.
TEXT ·vrotateF32(SB), NOSPLIT, $0-32
	MOVQ v+0(FP), DI
	MOVQ cs+8(FP), SI
	MOVQ sn+16(FP), DX
	MOVQ n+24(FP), CX
	XORQ AX, AX

rtloop:
	CMPQ AX, CX
	JGE  rtdone
	VMOVUPS (DI)(AX*4), Y1
	VPERMILPS $0xb1, Y1, Y2
	VMULPS (SI)(AX*4), Y1, Y1
	VMULPS (DX)(AX*4), Y2, Y2
	VADDPS Y2, Y1, Y1
	VMOVUPS Y1, (DI)(AX*4)
	ADDQ $8, AX
	JMP  rtloop

rtdone:
	VZEROUPPER
	RET

// func vaccum2F32(out1, out2, v *float32, stride, n, hd int, w1, w2 *float32)
// out1 += Σ_j w1[j]·row j, out2 += Σ_j w2[j]·row j, rows stride bytes apart, hd bytes
// wide (a multiple of 64). Each output element takes its products in order of j with
// one fused multiply-add each, exactly as vaccumF32 does for one query: the two queries
// share each row's loads, and their independent chains keep both FMA pipes busy.
TEXT ·vaccum2F32(SB), NOSPLIT, $0-64
	MOVQ out1+0(FP), DX
	MOVQ out2+8(FP), CX
	MOVQ v+16(FP), DI
	MOVQ stride+24(FP), R8
	MOVQ hd+40(FP), R9

a2chunk:
	CMPQ R9, $256
	JLT  a2narrow
	ACC2_LOAD
	MOVQ DI, BX
	MOVQ w1+48(FP), R11
	MOVQ w2+56(FP), R12
	MOVQ n+32(FP), R10

a2wide:
	VBROADCASTSS (R11), Z8
	VBROADCASTSS (R12), Z9
	VMOVUPS 0(BX), Z10
	VMOVUPS 64(BX), Z11
	VMOVUPS 128(BX), Z12
	VMOVUPS 192(BX), Z13
	VFMADD231PS Z10, Z8, Z0
	VFMADD231PS Z10, Z9, Z4
	VFMADD231PS Z11, Z8, Z1
	VFMADD231PS Z11, Z9, Z5
	VFMADD231PS Z12, Z8, Z2
	VFMADD231PS Z12, Z9, Z6
	VFMADD231PS Z13, Z8, Z3
	VFMADD231PS Z13, Z9, Z7
	ADDQ R8, BX
	ADDQ $4, R11
	ADDQ $4, R12
	DECQ R10
	JNZ  a2wide
	ACC2_STORE
	ADDQ $256, DX
	ADDQ $256, CX
	ADDQ $256, DI
	SUBQ $256, R9
	JMP  a2chunk

// Fewer than 64 columns left: sixteen at a time.
a2narrow:
	CMPQ R9, $0
	JEQ  a2done
	VMOVUPS (DX), Z0
	VMOVUPS (CX), Z4
	MOVQ DI, BX
	MOVQ w1+48(FP), R11
	MOVQ w2+56(FP), R12
	MOVQ n+32(FP), R10

a2col:
	VBROADCASTSS (R11), Z8
	VBROADCASTSS (R12), Z9
	VMOVUPS (BX), Z10
	VFMADD231PS Z10, Z8, Z0
	VFMADD231PS Z10, Z9, Z4
	ADDQ R8, BX
	ADDQ $4, R11
	ADDQ $4, R12
	DECQ R10
	JNZ  a2col
	VMOVUPS Z0, (DX)
	VMOVUPS Z4, (CX)
	ADDQ $64, DX
	ADDQ $64, CX
	ADDQ $64, DI
	SUBQ $64, R9
	JMP  a2narrow

a2done:
	VZEROUPPER
	RET

// func vscores2F32(q1, q2, k *float32, stride, n, hd int, out1, out2 *float32)
// The scores of two queries against one group of eight rows k, k+stride, ... (stride and
// hd in bytes, hd a multiple of 64): out1[r] = dot(q1, row r), out2[r] = dot(q2, row r)
// for r < 8. Rows from n on repeat row n-1 (n ≥ 1), so the kernel never reads past the
// last row; the caller keeps only the first n results. Each (query, row) pair has one
// 16-lane accumulator: lane l sums the products of columns l, l+16, ... in order. The
// sixteen accumulators are then reduced together, halving 512 → 256 → 128 → 64 → 32
// bits, each add combining two parts of the same accumulator, so a result depends only
// on its own query and row. The accumulator of output o (o = 8·query + row) is Z(m[o]),
// m = 0 2 1 3 8 10 9 11 4 6 5 7 12 14 13 15, which leaves output o in lane o.
TEXT ·vscores2F32(SB), NOSPLIT, $0-64
	MOVQ q1+0(FP), SI
	MOVQ q2+8(FP), DI
	MOVQ k+16(FP), R8
	MOVQ stride+24(FP), BX
	MOVQ n+32(FP), AX
	ROWS8
	MOVQ hd+40(FP), AX
	ZERO16
	XORQ BX, BX

s2col:
	VMOVUPS (SI)(BX*1), Z16
	VMOVUPS (DI)(BX*1), Z17
	VMOVUPS (R8)(BX*1), Z18
	VFMADD231PS Z18, Z16, Z0
	VFMADD231PS Z18, Z17, Z4
	VMOVUPS (R9)(BX*1), Z18
	VFMADD231PS Z18, Z16, Z2
	VFMADD231PS Z18, Z17, Z6
	VMOVUPS (R10)(BX*1), Z18
	VFMADD231PS Z18, Z16, Z1
	VFMADD231PS Z18, Z17, Z5
	VMOVUPS (R11)(BX*1), Z18
	VFMADD231PS Z18, Z16, Z3
	VFMADD231PS Z18, Z17, Z7
	VMOVUPS (R12)(BX*1), Z18
	VFMADD231PS Z18, Z16, Z8
	VFMADD231PS Z18, Z17, Z12
	VMOVUPS (R13)(BX*1), Z18
	VFMADD231PS Z18, Z16, Z10
	VFMADD231PS Z18, Z17, Z14
	VMOVUPS (R14)(BX*1), Z18
	VFMADD231PS Z18, Z16, Z9
	VFMADD231PS Z18, Z17, Z13
	VMOVUPS (R15)(BX*1), Z18
	VFMADD231PS Z18, Z16, Z11
	VFMADD231PS Z18, Z17, Z15
	ADDQ $64, BX
	CMPQ BX, AX
	JLT  s2col
	SCORES2_REDUCE
	MOVQ out1+48(FP), DX
	MOVQ out2+56(FP), CX
	VMOVUPS Y0, (DX)
	VEXTRACTF32X8 $1, Z0, Y1
	VMOVUPS Y1, (CX)
	VZEROUPPER
	RET

// func halfRowsAVX512(dst *float32, dstStride int, src *uint16, srcStride, rows, width int)
// dst row r = src row r converted from fp16 (VCVTPH2PS, exact), width elements per row,
// strides in bytes; 16 at a time, the last few of a row under a mask, so nothing past a
// row's width is read or written.
TEXT ·halfRowsAVX512(SB), NOSPLIT, $0-48
	MOVQ dst+0(FP), DI
	MOVQ dstStride+8(FP), R8
	MOVQ src+16(FP), SI
	MOVQ srcStride+24(FP), R9
	MOVQ rows+32(FP), CX
	MOVQ width+40(FP), DX
	TESTQ CX, CX
	JLE  hrdone
	TESTQ DX, DX
	JLE  hrdone

hrrow:
	XORQ AX, AX

hrcol:
	MOVQ DX, BX
	SUBQ AX, BX
	MOVQ $-1, R10
	CMPQ BX, $16
	JGE  hrmask
	BZHIQ BX, R10, R10

hrmask:
	KMOVW R10, K1
	VMOVDQU16.Z (SI)(AX*2), K1, Y0
	VCVTPH2PS Y0, Z0
	VMOVUPS Z0, K1, (DI)(AX*4)
	ADDQ $16, AX
	CMPQ AX, DX
	JLT  hrcol
	ADDQ R8, DI
	ADDQ R9, SI
	DECQ CX
	JNZ  hrrow

hrdone:
	VZEROUPPER
	RET

// func vaccum4F32(out1, out2, out3, out4, v *float32, stride, n, hd int, w1, w2, w3, w4 *float32)
// vaccum2F32 for four outputs weighted from the same rows: out_i += Σ_j w_i[j]·row j.
// Each output element takes its products in order of j with one FMA each, exactly as
// vaccumF32 does; with sixteen independent chains, not eight, the FMAs are no longer
// bound by their latency (64 rows x 64 columns x 4 outputs: 188 ns, against 292 for
// two vaccum2F32 calls).
TEXT ·vaccum4F32(SB), NOSPLIT, $0-96
	MOVQ out1+0(FP), DX
	MOVQ out2+8(FP), CX
	MOVQ out3+16(FP), R13
	MOVQ out4+24(FP), R14
	MOVQ v+32(FP), DI
	MOVQ stride+40(FP), R8
	MOVQ hd+56(FP), R9

a4chunk:
	CMPQ R9, $256
	JLT  a4narrow
	ACC4_LOAD
	MOVQ DI, BX
	MOVQ w1+64(FP), R11
	MOVQ w2+72(FP), R12
	MOVQ w3+80(FP), AX
	MOVQ w4+88(FP), SI
	MOVQ n+48(FP), R10

a4wide:
	VBROADCASTSS (R11), Z20
	VBROADCASTSS (R12), Z21
	VBROADCASTSS (AX), Z22
	VBROADCASTSS (SI), Z23
	VMOVUPS 0(BX), Z16
	VMOVUPS 64(BX), Z17
	VMOVUPS 128(BX), Z18
	VMOVUPS 192(BX), Z19
	VFMADD231PS Z16, Z20, Z0
	VFMADD231PS Z16, Z21, Z4
	VFMADD231PS Z16, Z22, Z8
	VFMADD231PS Z16, Z23, Z12
	VFMADD231PS Z17, Z20, Z1
	VFMADD231PS Z17, Z21, Z5
	VFMADD231PS Z17, Z22, Z9
	VFMADD231PS Z17, Z23, Z13
	VFMADD231PS Z18, Z20, Z2
	VFMADD231PS Z18, Z21, Z6
	VFMADD231PS Z18, Z22, Z10
	VFMADD231PS Z18, Z23, Z14
	VFMADD231PS Z19, Z20, Z3
	VFMADD231PS Z19, Z21, Z7
	VFMADD231PS Z19, Z22, Z11
	VFMADD231PS Z19, Z23, Z15
	ADDQ R8, BX
	ADDQ $4, R11
	ADDQ $4, R12
	ADDQ $4, AX
	ADDQ $4, SI
	DECQ R10
	JNZ  a4wide
	ACC4_STORE
	ADDQ $256, DX
	ADDQ $256, CX
	ADDQ $256, R13
	ADDQ $256, R14
	ADDQ $256, DI
	SUBQ $256, R9
	JMP  a4chunk

// Fewer than 64 columns left: sixteen at a time.
a4narrow:
	CMPQ R9, $0
	JEQ  a4done
	VMOVUPS (DX), Z0
	VMOVUPS (CX), Z1
	VMOVUPS (R13), Z2
	VMOVUPS (R14), Z3
	MOVQ DI, BX
	MOVQ w1+64(FP), R11
	MOVQ w2+72(FP), R12
	MOVQ w3+80(FP), AX
	MOVQ w4+88(FP), SI
	MOVQ n+48(FP), R10

a4col:
	VBROADCASTSS (R11), Z20
	VBROADCASTSS (R12), Z21
	VBROADCASTSS (AX), Z22
	VBROADCASTSS (SI), Z23
	VMOVUPS (BX), Z16
	VFMADD231PS Z16, Z20, Z0
	VFMADD231PS Z16, Z21, Z1
	VFMADD231PS Z16, Z22, Z2
	VFMADD231PS Z16, Z23, Z3
	ADDQ R8, BX
	ADDQ $4, R11
	ADDQ $4, R12
	ADDQ $4, AX
	ADDQ $4, SI
	DECQ R10
	JNZ  a4col
	VMOVUPS Z0, (DX)
	VMOVUPS Z1, (CX)
	VMOVUPS Z2, (R13)
	VMOVUPS Z3, (R14)
	ADDQ $64, DX
	ADDQ $64, CX
	ADDQ $64, R13
	ADDQ $64, R14
	ADDQ $64, DI
	SUBQ $64, R9
	JMP  a4narrow

a4done:
	VZEROUPPER
	RET

// func vaccumMultiF32(o1, o2, o3, o4, w1, w2, w3, w4 *float32, k int, v *float32, stride, n, hd int)
// k (2 or 4) Accum calls over the same rows in one pass: o_i[0:hd] +=
// Σ_{j<n} w_i[j]·v[j*stride : j*stride+hd] for i ≤ k (the others unused); stride in
// bytes, n > 0, hd a multiple of 8 below 64. A row's
// hd columns are loaded once into r = ⌈hd/16⌉ registers, and each output keeps its
// columns in r more; the last of each r under mask K1 (its upper 8 lanes off when hd is
// an odd multiple of 8) when read from or written to memory, so nothing past a row or
// an output is touched. Each element adds its rows in order with one FMA each, as
// vaccumF32 does: the bits are those of k Accum calls, and the k·r chains overlap where
// one output's r waited on FMA latency (vaccum2F32 and vaccum4F32 took such heads 16
// columns at a time).
TEXT ·vaccumMultiF32(SB), NOSPLIT, $0-104
	MOVQ w1+32(FP), R8
	MOVQ w2+40(FP), R9
	MOVQ w3+48(FP), R10
	MOVQ w4+56(FP), R11
	MOVQ v+72(FP), R12
	MOVQ stride+80(FP), BX
	MOVQ n+88(FP), DX
	MOVQ hd+96(FP), DI
	MOVL $0xffff, AX
	MOVL $0xff, CX
	TESTQ $8, DI
	CMOVLNE CX, AX
	KMOVW AX, K1
	XORQ CX, CX
	CMPQ DI, $16
	JLE  mr1
	CMPQ DI, $32
	JLE  mr2
	CMPQ DI, $48
	JLE  mr3
	CMPQ k+64(FP), $4
	JEQ  mr4k4
	MLOAD4(o1+0, Z0, Z1, Z2, Z3)
	MLOAD4(o2+8, Z4, Z5, Z6, Z7)

mr4k2:
	MROW4
	MWEIGHTS2
	MFMA4(Z16, Z0, Z1, Z2, Z3)
	MFMA4(Z17, Z4, Z5, Z6, Z7)
	MNEXT(mr4k2)
	MSTORE4(o1+0, Z0, Z1, Z2, Z3)
	MSTORE4(o2+8, Z4, Z5, Z6, Z7)
	JMP  mdone

mr4k4:
	MLOAD4(o1+0, Z0, Z1, Z2, Z3)
	MLOAD4(o2+8, Z4, Z5, Z6, Z7)
	MLOAD4(o3+16, Z8, Z9, Z10, Z11)
	MLOAD4(o4+24, Z12, Z13, Z14, Z15)

mr4k4row:
	MROW4
	MWEIGHTS4
	MFMA4(Z16, Z0, Z1, Z2, Z3)
	MFMA4(Z17, Z4, Z5, Z6, Z7)
	MFMA4(Z18, Z8, Z9, Z10, Z11)
	MFMA4(Z19, Z12, Z13, Z14, Z15)
	MNEXT(mr4k4row)
	MSTORE4(o1+0, Z0, Z1, Z2, Z3)
	MSTORE4(o2+8, Z4, Z5, Z6, Z7)
	MSTORE4(o3+16, Z8, Z9, Z10, Z11)
	MSTORE4(o4+24, Z12, Z13, Z14, Z15)
	JMP  mdone

mr3:
	CMPQ k+64(FP), $4
	JEQ  mr3k4
	MLOAD3(o1+0, Z0, Z1, Z2)
	MLOAD3(o2+8, Z4, Z5, Z6)

mr3k2:
	MROW3
	MWEIGHTS2
	MFMA3(Z16, Z0, Z1, Z2)
	MFMA3(Z17, Z4, Z5, Z6)
	MNEXT(mr3k2)
	MSTORE3(o1+0, Z0, Z1, Z2)
	MSTORE3(o2+8, Z4, Z5, Z6)
	JMP  mdone

mr3k4:
	MLOAD3(o1+0, Z0, Z1, Z2)
	MLOAD3(o2+8, Z4, Z5, Z6)
	MLOAD3(o3+16, Z8, Z9, Z10)
	MLOAD3(o4+24, Z12, Z13, Z14)

mr3k4row:
	MROW3
	MWEIGHTS4
	MFMA3(Z16, Z0, Z1, Z2)
	MFMA3(Z17, Z4, Z5, Z6)
	MFMA3(Z18, Z8, Z9, Z10)
	MFMA3(Z19, Z12, Z13, Z14)
	MNEXT(mr3k4row)
	MSTORE3(o1+0, Z0, Z1, Z2)
	MSTORE3(o2+8, Z4, Z5, Z6)
	MSTORE3(o3+16, Z8, Z9, Z10)
	MSTORE3(o4+24, Z12, Z13, Z14)
	JMP  mdone

mr2:
	CMPQ k+64(FP), $4
	JEQ  mr2k4
	MLOAD2(o1+0, Z0, Z1)
	MLOAD2(o2+8, Z4, Z5)

mr2k2:
	MROW2
	MWEIGHTS2
	MFMA2(Z16, Z0, Z1)
	MFMA2(Z17, Z4, Z5)
	MNEXT(mr2k2)
	MSTORE2(o1+0, Z0, Z1)
	MSTORE2(o2+8, Z4, Z5)
	JMP  mdone

mr2k4:
	MLOAD2(o1+0, Z0, Z1)
	MLOAD2(o2+8, Z4, Z5)
	MLOAD2(o3+16, Z8, Z9)
	MLOAD2(o4+24, Z12, Z13)

mr2k4row:
	MROW2
	MWEIGHTS4
	MFMA2(Z16, Z0, Z1)
	MFMA2(Z17, Z4, Z5)
	MFMA2(Z18, Z8, Z9)
	MFMA2(Z19, Z12, Z13)
	MNEXT(mr2k4row)
	MSTORE2(o1+0, Z0, Z1)
	MSTORE2(o2+8, Z4, Z5)
	MSTORE2(o3+16, Z8, Z9)
	MSTORE2(o4+24, Z12, Z13)
	JMP  mdone

mr1:
	CMPQ k+64(FP), $4
	JEQ  mr1k4
	MLOAD1(o1+0, Z0)
	MLOAD1(o2+8, Z4)

mr1k2:
	MROW1
	MWEIGHTS2
	MFMA1(Z16, Z0)
	MFMA1(Z17, Z4)
	MNEXT(mr1k2)
	MSTORE1(o1+0, Z0)
	MSTORE1(o2+8, Z4)
	JMP  mdone

mr1k4:
	MLOAD1(o1+0, Z0)
	MLOAD1(o2+8, Z4)
	MLOAD1(o3+16, Z8)
	MLOAD1(o4+24, Z12)

mr1k4row:
	MROW1
	MWEIGHTS4
	MFMA1(Z16, Z0)
	MFMA1(Z17, Z4)
	MFMA1(Z18, Z8)
	MFMA1(Z19, Z12)
	MNEXT(mr1k4row)
	MSTORE1(o1+0, Z0)
	MSTORE1(o2+8, Z4)
	MSTORE1(o3+16, Z8)
	MSTORE1(o4+24, Z12)

mdone:
	VZEROUPPER
	RET

// func vaccumMultiY(o1, o2, o3, o4, w1, w2, w3, w4 *float32, k int, v *float32, stride, n, hd int)
// vaccumMultiF32 on AVX2: k·hd/8 ≤ 8 accumulators of 8 columns (k = 2 and hd ≤ 32, or
// k = 4 and hd ≤ 16), hd a multiple of 8, n > 0; the same operations per element.
TEXT ·vaccumMultiY(SB), NOSPLIT, $0-104
	MOVQ w1+32(FP), R8
	MOVQ w2+40(FP), R9
	MOVQ w3+48(FP), R10
	MOVQ w4+56(FP), R11
	MOVQ v+72(FP), R12
	MOVQ stride+80(FP), BX
	MOVQ n+88(FP), DX
	MOVQ hd+96(FP), DI
	XORQ CX, CX
	CMPQ k+64(FP), $4
	JEQ  yk4
	CMPQ DI, $8
	JEQ  yk2r1
	CMPQ DI, $16
	JEQ  yk2r2
	CMPQ DI, $24
	JEQ  yk2r3

	// k = 2, hd = 32
	YLOAD4(o1+0, Y0, Y1, Y2, Y3)
	YLOAD4(o2+8, Y4, Y5, Y6, Y7)

yk2r4row:
	YROW4
	YWEIGHTS2
	YFMA4(Y12, Y0, Y1, Y2, Y3)
	YFMA4(Y13, Y4, Y5, Y6, Y7)
	MNEXT(yk2r4row)
	YSTORE4(o1+0, Y0, Y1, Y2, Y3)
	YSTORE4(o2+8, Y4, Y5, Y6, Y7)
	JMP  ydone

yk2r3:
	YLOAD2(o1+0, Y0, Y1)
	VMOVUPS 64(DI), Y2
	YLOAD2(o2+8, Y4, Y5)
	VMOVUPS 64(DI), Y6

yk2r3row:
	YROW2
	VMOVUPS 64(R12), Y10
	YWEIGHTS2
	YFMA2(Y12, Y0, Y1)
	VFMADD231PS Y10, Y12, Y2
	YFMA2(Y13, Y4, Y5)
	VFMADD231PS Y10, Y13, Y6
	MNEXT(yk2r3row)
	YSTORE2(o1+0, Y0, Y1)
	VMOVUPS Y2, 64(DI)
	YSTORE2(o2+8, Y4, Y5)
	VMOVUPS Y6, 64(DI)
	JMP  ydone

yk2r2:
	YLOAD2(o1+0, Y0, Y1)
	YLOAD2(o2+8, Y4, Y5)

yk2r2row:
	YROW2
	YWEIGHTS2
	YFMA2(Y12, Y0, Y1)
	YFMA2(Y13, Y4, Y5)
	MNEXT(yk2r2row)
	YSTORE2(o1+0, Y0, Y1)
	YSTORE2(o2+8, Y4, Y5)
	JMP  ydone

yk2r1:
	YLOAD1(o1+0, Y0)
	YLOAD1(o2+8, Y4)

yk2r1row:
	YROW1
	YWEIGHTS2
	YFMA1(Y12, Y0)
	YFMA1(Y13, Y4)
	MNEXT(yk2r1row)
	YSTORE1(o1+0, Y0)
	YSTORE1(o2+8, Y4)
	JMP  ydone

yk4:
	CMPQ DI, $8
	JEQ  yk4r1
	YLOAD2(o1+0, Y0, Y1)
	YLOAD2(o2+8, Y2, Y3)
	YLOAD2(o3+16, Y4, Y5)
	YLOAD2(o4+24, Y6, Y7)

yk4r2row:
	YROW2
	YWEIGHTS4
	YFMA2(Y12, Y0, Y1)
	YFMA2(Y13, Y2, Y3)
	YFMA2(Y14, Y4, Y5)
	YFMA2(Y15, Y6, Y7)
	MNEXT(yk4r2row)
	YSTORE2(o1+0, Y0, Y1)
	YSTORE2(o2+8, Y2, Y3)
	YSTORE2(o3+16, Y4, Y5)
	YSTORE2(o4+24, Y6, Y7)
	JMP  ydone

yk4r1:
	YLOAD1(o1+0, Y0)
	YLOAD1(o2+8, Y2)
	YLOAD1(o3+16, Y4)
	YLOAD1(o4+24, Y6)

yk4r1row:
	YROW1
	YWEIGHTS4
	YFMA1(Y12, Y0)
	YFMA1(Y13, Y2)
	YFMA1(Y14, Y4)
	YFMA1(Y15, Y6)
	MNEXT(yk4r1row)
	YSTORE1(o1+0, Y0)
	YSTORE1(o2+8, Y2)
	YSTORE1(o3+16, Y4)
	YSTORE1(o4+24, Y6)

ydone:
	VZEROUPPER
	RET
