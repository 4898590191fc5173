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
