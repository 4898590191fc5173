#include "textflag.h"

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
	// Halves: row r's lanes l0+l4 .. l3+l7 land in 128-bit lane 0 (rows 0-3) or 1
	// (rows 4-7) of Y(r mod 4).
	VPERM2F128 $0x20, Y4, Y0, Y8
	VPERM2F128 $0x31, Y4, Y0, Y9
	VADDPS     Y9, Y8, Y0
	VPERM2F128 $0x20, Y5, Y1, Y8
	VPERM2F128 $0x31, Y5, Y1, Y9
	VADDPS     Y9, Y8, Y1
	VPERM2F128 $0x20, Y6, Y2, Y8
	VPERM2F128 $0x31, Y6, Y2, Y9
	VADDPS     Y9, Y8, Y2
	VPERM2F128 $0x20, Y7, Y3, Y8
	VPERM2F128 $0x31, Y7, Y3, Y9
	VADDPS     Y9, Y8, Y3
	// Quarters: (b0+b2, b1+b3) of rows 0,1 | 4,5 in Y0 and of rows 2,3 | 6,7 in Y2.
	VSHUFPS $0x44, Y1, Y0, Y8
	VSHUFPS $0xee, Y1, Y0, Y9
	VADDPS  Y9, Y8, Y0
	VSHUFPS $0x44, Y3, Y2, Y8
	VSHUFPS $0xee, Y3, Y2, Y9
	VADDPS  Y9, Y8, Y2
	// Last pair: c0+c1 of rows 0..7, in order.
	VSHUFPS $0x88, Y2, Y0, Y8
	VSHUFPS $0xdd, Y2, Y0, Y9
	VADDPS  Y9, Y8, Y0
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
	VEXTRACTF128 $1, Y0, X1
	VADDPS       X1, X0, X0
	VEXTRACTF128 $1, Y2, X5
	VADDPS       X5, X2, X2
	VEXTRACTF128 $1, Y3, X6
	VADDPS       X6, X3, X3
	VEXTRACTF128 $1, Y4, X7
	VADDPS       X7, X4, X4
	VPERMILPS    $0x0e, X0, X1
	VADDPS       X1, X0, X0
	VPERMILPS    $0x0e, X2, X5
	VADDPS       X5, X2, X2
	VPERMILPS    $0x0e, X3, X6
	VADDPS       X6, X3, X3
	VPERMILPS    $0x0e, X4, X7
	VADDPS       X7, X4, X4
	VPERMILPS    $0x01, X0, X1
	VADDSS       X1, X0, X0
	VPERMILPS    $0x01, X2, X5
	VADDSS       X5, X2, X2
	VPERMILPS    $0x01, X3, X6
	VADDSS       X6, X3, X3
	VPERMILPS    $0x01, X4, X7
	VADDSS       X7, X4, X4
	VMOVSS       X0, (DX)
	VMOVSS       X2, 4(DX)
	VMOVSS       X3, 8(DX)
	VMOVSS       X4, 12(DX)
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
	VEXTRACTF128 $1, Y0, X1
	VADDPS       X1, X0, X0
	VPERMILPS    $0x0e, X0, X1
	VADDPS       X1, X0, X0
	VPERMILPS    $0x01, X0, X1
	VADDSS       X1, X0, X0
	VMOVSS       X0, (DX)
	ADDQ $4, DX
	ADDQ R8, DI
	DECQ CX
	JMP  srow

sdone:
	VZEROUPPER
	RET

// func vaccumF32(out, v *float32, stride, n, hd int, w *float32)
// out[0:hd] += sum over j < n of w[j] * v[j*stride : j*stride+hd], rows in order;
// hd a multiple of 8. Up to 64 columns of out stay in eight registers while the rows go
// by, so the FMA chains of different columns overlap (one chain at a time was bound by
// FMA latency). Each element still adds its rows in order with one FMA each.
TEXT ·vaccumF32(SB), NOSPLIT, $0-48
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

// Fewer than 64 columns left: eight at a time.
anarrow:
	XORQ AX, AX

acol:
	CMPQ AX, R9
	JGE  adone
	VMOVUPS (DX)(AX*4), Y0
	MOVQ DI, BX
	MOVQ SI, R11
	MOVQ R10, CX

arow:
	CMPQ CX, $0
	JEQ  astore
	VBROADCASTSS (R11), Y1
	VFMADD231PS (BX)(AX*4), Y1, Y0
	ADDQ R8, BX
	ADDQ $4, R11
	DECQ CX
	JMP  arow

astore:
	VMOVUPS Y0, (DX)(AX*4)
	ADDQ $8, AX
	JMP  acol

adone:
	VZEROUPPER
	RET

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
	VMOVUPS 0(DX), Z0
	VMOVUPS 0(CX), Z4
	VMOVUPS 64(DX), Z1
	VMOVUPS 64(CX), Z5
	VMOVUPS 128(DX), Z2
	VMOVUPS 128(CX), Z6
	VMOVUPS 192(DX), Z3
	VMOVUPS 192(CX), Z7
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
	VMOVUPS Z0, 0(DX)
	VMOVUPS Z4, 0(CX)
	VMOVUPS Z1, 64(DX)
	VMOVUPS Z5, 64(CX)
	VMOVUPS Z2, 128(DX)
	VMOVUPS Z6, 128(CX)
	VMOVUPS Z3, 192(DX)
	VMOVUPS Z7, 192(CX)
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

// The loop bodies of vscoresT2F32. T2LOAD4 loads dimension d of four vectors of keys
// from R11 into Z16-Z19, T2LOAD4M the same under the masks K1-K4, T2LOAD1 and T2LOAD1M
// one vector into Z16. T2FMA4 and T2FMA1 multiply them by q1[d] and q2[d] (d = R12 +
// OFF/4) into the accumulators given, then step R11 to the next dimension.
#define T2LOAD4 \
	VMOVUPS 0(R11), Z16;   \
	VMOVUPS 64(R11), Z17;  \
	VMOVUPS 128(R11), Z18; \
	VMOVUPS 192(R11), Z19

#define T2LOAD4M \
	VMOVUPS.Z 0(R11), K1, Z16;   \
	VMOVUPS.Z 64(R11), K2, Z17;  \
	VMOVUPS.Z 128(R11), K3, Z18; \
	VMOVUPS.Z 192(R11), K4, Z19

#define T2FMA4(OFF, A0, A1, A2, A3, B0, B1, B2, B3) \
	VBROADCASTSS OFF(SI)(R12*4), Z20; \
	VBROADCASTSS OFF(DI)(R12*4), Z21; \
	VFMADD231PS  Z16, Z20, A0;        \
	VFMADD231PS  Z17, Z20, A1;        \
	VFMADD231PS  Z18, Z20, A2;        \
	VFMADD231PS  Z19, Z20, A3;        \
	VFMADD231PS  Z16, Z21, B0;        \
	VFMADD231PS  Z17, Z21, B1;        \
	VFMADD231PS  Z18, Z21, B2;        \
	VFMADD231PS  Z19, Z21, B3;        \
	ADDQ         BX, R11

#define T2LOAD1 VMOVUPS 0(R11), Z16

#define T2LOAD1M VMOVUPS.Z 0(R11), K1, Z16

#define T2FMA1(OFF, A, B) \
	VBROADCASTSS OFF(SI)(R12*4), Z20; \
	VBROADCASTSS OFF(DI)(R12*4), Z21; \
	VFMADD231PS  Z16, Z20, A;         \
	VFMADD231PS  Z16, Z21, B;         \
	ADDQ         BX, R11

// T2MASKS sets K1-K4 to the 64 bits of AX, 16 each.
#define T2MASKS \
	MOVQ  AX, R13;  \
	KMOVW R13, K1;  \
	SHRQ  $16, R13; \
	KMOVW R13, K2;  \
	SHRQ  $16, R13; \
	KMOVW R13, K3;  \
	SHRQ  $16, R13; \
	KMOVW R13, K4

// func vscoresT2F32(q1, q2, kt *float32, stride, n, hd int, out1, out2 *float32)
// The scores of two queries against n keys stored transposed: dimension d of key p at
// kt + d·stride + 4p (stride in bytes, hd dimensions, hd even). out1[p] = Σ_d q1[d]·key
// p, out2[p] likewise for q2. Keys go 64 at a time, one per lane of four vectors, so no
// horizontal sum is needed: lane p runs two FMA chains, one over the even dimensions in
// order and one over the odd ones, and adds them at the end; the same operations as
// vscoresT2AVX2, so the two agree bit for bit. Lanes past n are masked: never read,
// never written. Fewer than 49 keys go one vector at a time, so a block's last few
// positions do not cost a whole group. Whole vectors are loaded without a mask: masked
// loads took half as long again (4 x 64 keys x 64 dimensions x 2 queries: 1.41 us
// masked, 0.94 unmasked).
TEXT ·vscoresT2F32(SB), NOSPLIT, $0-64
	MOVQ q1+0(FP), SI
	MOVQ q2+8(FP), DI
	MOVQ kt+16(FP), R8
	MOVQ stride+24(FP), BX
	MOVQ n+32(FP), CX
	MOVQ hd+40(FP), R9
	MOVQ out1+48(FP), DX
	MOVQ out2+56(FP), R10

t2group:
	CMPQ CX, $48
	JLE  t2small
	VPXORD Z0, Z0, Z0
	VPXORD Z1, Z1, Z1
	VPXORD Z2, Z2, Z2
	VPXORD Z3, Z3, Z3
	VPXORD Z4, Z4, Z4
	VPXORD Z5, Z5, Z5
	VPXORD Z6, Z6, Z6
	VPXORD Z7, Z7, Z7
	VPXORD Z8, Z8, Z8
	VPXORD Z9, Z9, Z9
	VPXORD Z10, Z10, Z10
	VPXORD Z11, Z11, Z11
	VPXORD Z12, Z12, Z12
	VPXORD Z13, Z13, Z13
	VPXORD Z14, Z14, Z14
	VPXORD Z15, Z15, Z15
	MOVQ R8, R11
	XORQ R12, R12
	MOVQ $-1, AX
	CMPQ CX, $64
	JLT  t2part

t2full:
	// Even dimension d: Z0-Z3 for q1, Z4-Z7 for q2; odd d+1: Z8-Z15.
	T2LOAD4
	T2FMA4(0, Z0, Z1, Z2, Z3, Z4, Z5, Z6, Z7)
	T2LOAD4
	T2FMA4(4, Z8, Z9, Z10, Z11, Z12, Z13, Z14, Z15)
	ADDQ $2, R12
	CMPQ R12, R9
	JLT  t2full
	JMP  t2sum

t2part:
	// K1..K4: the lanes of this group's four vectors that hold keys.
	BZHIQ CX, AX, AX
	T2MASKS

t2pdim:
	// Even dimension d: Z0-Z3 for q1, Z4-Z7 for q2; odd d+1: Z8-Z15.
	T2LOAD4M
	T2FMA4(0, Z0, Z1, Z2, Z3, Z4, Z5, Z6, Z7)
	T2LOAD4M
	T2FMA4(4, Z8, Z9, Z10, Z11, Z12, Z13, Z14, Z15)
	ADDQ $2, R12
	CMPQ R12, R9
	JLT  t2pdim

t2sum:
	T2MASKS
	VADDPS Z8, Z0, Z0
	VADDPS Z9, Z1, Z1
	VADDPS Z10, Z2, Z2
	VADDPS Z11, Z3, Z3
	VADDPS Z12, Z4, Z4
	VADDPS Z13, Z5, Z5
	VADDPS Z14, Z6, Z6
	VADDPS Z15, Z7, Z7
	VMOVUPS Z0, K1, 0(DX)
	VMOVUPS Z1, K2, 64(DX)
	VMOVUPS Z2, K3, 128(DX)
	VMOVUPS Z3, K4, 192(DX)
	VMOVUPS Z4, K1, 0(R10)
	VMOVUPS Z5, K2, 64(R10)
	VMOVUPS Z6, K3, 128(R10)
	VMOVUPS Z7, K4, 192(R10)
	ADDQ $256, R8
	ADDQ $256, DX
	ADDQ $256, R10
	SUBQ $64, CX
	JG   t2group
	JMP  t2done

t2small:
	// One vector of up to 16 keys: Z0, Z1 the even dimensions of q1, q2; Z2, Z3 the odd.
	VPXORD Z0, Z0, Z0
	VPXORD Z1, Z1, Z1
	VPXORD Z2, Z2, Z2
	VPXORD Z3, Z3, Z3
	MOVQ R8, R11
	XORQ R12, R12
	MOVQ $-1, AX
	CMPQ CX, $16
	JLT  t2spart

t2sfull:
	T2LOAD1
	T2FMA1(0, Z0, Z1)
	T2LOAD1
	T2FMA1(4, Z2, Z3)
	ADDQ $2, R12
	CMPQ R12, R9
	JLT  t2sfull
	JMP  t2ssum

t2spart:
	BZHIQ CX, AX, AX
	KMOVW AX, K1

t2spdim:
	T2LOAD1M
	T2FMA1(0, Z0, Z1)
	T2LOAD1M
	T2FMA1(4, Z2, Z3)
	ADDQ $2, R12
	CMPQ R12, R9
	JLT  t2spdim

t2ssum:
	KMOVW AX, K1
	VADDPS Z2, Z0, Z0
	VADDPS Z3, Z1, Z1
	VMOVUPS Z0, K1, (DX)
	VMOVUPS Z1, K1, (R10)
	ADDQ $64, R8
	ADDQ $64, DX
	ADDQ $64, R10
	SUBQ $16, CX
	JG   t2small

t2done:
	VZEROUPPER
	RET

// The masks of vscoresT2AVX2: the eight lanes from byte offset 4·(8-t) are the mask of
// the first t lanes of a vector.
DATA ·tailMask<>+0(SB)/8, $-1
DATA ·tailMask<>+8(SB)/8, $-1
DATA ·tailMask<>+16(SB)/8, $-1
DATA ·tailMask<>+24(SB)/8, $-1
DATA ·tailMask<>+32(SB)/8, $0
DATA ·tailMask<>+40(SB)/8, $0
DATA ·tailMask<>+48(SB)/8, $0
DATA ·tailMask<>+56(SB)/8, $0
GLOBL ·tailMask<>(SB), RODATA|NOPTR, $64

// func vscoresT2AVX2(q1, q2, kt *float32, stride, n, hd int, out1, out2 *float32)
// vscoresT2F32 with 8-lane vectors, keys 16 at a time: each lane's operations are the
// same (an FMA chain over the even dimensions, one over the odd, then their sum).
TEXT ·vscoresT2AVX2(SB), NOSPLIT, $0-64
	MOVQ q1+0(FP), SI
	MOVQ q2+8(FP), DI
	MOVQ kt+16(FP), R8
	MOVQ stride+24(FP), BX
	MOVQ n+32(FP), CX
	MOVQ hd+40(FP), R9
	MOVQ out1+48(FP), DX
	MOVQ out2+56(FP), R10
	LEAQ ·tailMask<>(SB), R13

x2group:
	// Y12, Y13: the lanes of this group's two vectors that hold keys.
	MOVQ CX, AX
	CMPQ AX, $8
	JLE  x2m0
	MOVQ $8, AX

x2m0:
	NEGQ AX
	VMOVDQU 32(R13)(AX*4), Y12
	MOVQ CX, AX
	SUBQ $8, AX
	JGE  x2m1
	XORQ AX, AX

x2m1:
	CMPQ AX, $8
	JLE  x2m2
	MOVQ $8, AX

x2m2:
	NEGQ AX
	VMOVDQU 32(R13)(AX*4), Y13
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3
	VXORPS Y4, Y4, Y4
	VXORPS Y5, Y5, Y5
	VXORPS Y6, Y6, Y6
	VXORPS Y7, Y7, Y7
	MOVQ R8, R11
	XORQ R12, R12

x2dim:
	// Even dimension: Y0, Y1 for q1, Y2, Y3 for q2; odd: Y4-Y7.
	VMASKMOVPS 0(R11), Y12, Y8
	VMASKMOVPS 32(R11), Y13, Y9
	VBROADCASTSS (SI)(R12*4), Y10
	VBROADCASTSS (DI)(R12*4), Y11
	VFMADD231PS Y8, Y10, Y0
	VFMADD231PS Y9, Y10, Y1
	VFMADD231PS Y8, Y11, Y2
	VFMADD231PS Y9, Y11, Y3
	ADDQ BX, R11
	VMASKMOVPS 0(R11), Y12, Y8
	VMASKMOVPS 32(R11), Y13, Y9
	VBROADCASTSS 4(SI)(R12*4), Y10
	VBROADCASTSS 4(DI)(R12*4), Y11
	VFMADD231PS Y8, Y10, Y4
	VFMADD231PS Y9, Y10, Y5
	VFMADD231PS Y8, Y11, Y6
	VFMADD231PS Y9, Y11, Y7
	ADDQ BX, R11
	ADDQ $2, R12
	CMPQ R12, R9
	JLT  x2dim
	VADDPS Y4, Y0, Y0
	VADDPS Y5, Y1, Y1
	VADDPS Y6, Y2, Y2
	VADDPS Y7, Y3, Y3
	VMASKMOVPS Y0, Y12, 0(DX)
	VMASKMOVPS Y1, Y13, 32(DX)
	VMASKMOVPS Y2, Y12, 0(R10)
	VMASKMOVPS Y3, Y13, 32(R10)
	ADDQ $64, R8
	ADDQ $64, DX
	ADDQ $64, R10
	SUBQ $16, CX
	JG   x2group
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
	VMOVUPS 0(DX), Z0
	VMOVUPS 64(DX), Z1
	VMOVUPS 128(DX), Z2
	VMOVUPS 192(DX), Z3
	VMOVUPS 0(CX), Z4
	VMOVUPS 64(CX), Z5
	VMOVUPS 128(CX), Z6
	VMOVUPS 192(CX), Z7
	VMOVUPS 0(R13), Z8
	VMOVUPS 64(R13), Z9
	VMOVUPS 128(R13), Z10
	VMOVUPS 192(R13), Z11
	VMOVUPS 0(R14), Z12
	VMOVUPS 64(R14), Z13
	VMOVUPS 128(R14), Z14
	VMOVUPS 192(R14), Z15
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
	VMOVUPS Z0, 0(DX)
	VMOVUPS Z1, 64(DX)
	VMOVUPS Z2, 128(DX)
	VMOVUPS Z3, 192(DX)
	VMOVUPS Z4, 0(CX)
	VMOVUPS Z5, 64(CX)
	VMOVUPS Z6, 128(CX)
	VMOVUPS Z7, 192(CX)
	VMOVUPS Z8, 0(R13)
	VMOVUPS Z9, 64(R13)
	VMOVUPS Z10, 128(R13)
	VMOVUPS Z11, 192(R13)
	VMOVUPS Z12, 0(R14)
	VMOVUPS Z13, 64(R14)
	VMOVUPS Z14, 128(R14)
	VMOVUPS Z15, 192(R14)
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
