#include "textflag.h"

// func vdotF32(a, b *float32, n int) float32
// Two 8-lane FMA accumulators over 16 floats per step, then one 8-float step, a fixed
// horizontal reduction, and a scalar FMA tail: the same order for every call.
TEXT ·vdotF32(SB), NOSPLIT, $0-28
	MOVQ a+0(FP), SI
	MOVQ b+8(FP), DI
	MOVQ n+16(FP), CX
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1

dot16:
	CMPQ CX, $16
	JLT  dot8
	VMOVUPS (SI), Y2
	VMOVUPS 32(SI), Y3
	VFMADD231PS (DI), Y2, Y0
	VFMADD231PS 32(DI), Y3, Y1
	ADDQ $64, SI
	ADDQ $64, DI
	SUBQ $16, CX
	JMP  dot16

dot8:
	VADDPS Y1, Y0, Y0
	CMPQ   CX, $8
	JLT    dotreduce
	VMOVUPS (SI), Y2
	VFMADD231PS (DI), Y2, Y0
	ADDQ $32, SI
	ADDQ $32, DI
	SUBQ $8, CX

dotreduce:
	VEXTRACTF128 $1, Y0, X1
	VADDPS       X1, X0, X0
	VPERMILPS    $0x0e, X0, X1
	VADDPS       X1, X0, X0
	VPERMILPS    $0x01, X0, X1
	VADDSS       X1, X0, X0

dottail:
	CMPQ CX, $0
	JEQ  dotdone
	VMOVSS (SI), X1
	VFMADD231SS (DI), X1, X0
	ADDQ $4, SI
	ADDQ $4, DI
	DECQ CX
	JMP  dottail

dotdone:
	VZEROUPPER
	MOVSS X0, ret+24(FP)
	RET

// func vaxpyF32(y *float32, a float32, x *float32, n int)
// y[i] += a*x[i] with one FMA per element.
TEXT ·vaxpyF32(SB), NOSPLIT, $0-32
	MOVQ y+0(FP), DI
	VBROADCASTSS a+8(FP), Y0
	MOVQ x+16(FP), SI
	MOVQ n+24(FP), CX

axpy8:
	CMPQ CX, $8
	JLT  axpytail
	VMOVUPS (SI), Y1
	VFMADD213PS (DI), Y0, Y1
	VMOVUPS Y1, (DI)
	ADDQ $32, SI
	ADDQ $32, DI
	SUBQ $8, CX
	JMP  axpy8

axpytail:
	CMPQ CX, $0
	JEQ  axpydone
	VMOVSS (SI), X1
	VFMADD213SS (DI), X0, X1
	VMOVSS X1, (DI)
	ADDQ $4, SI
	ADDQ $4, DI
	DECQ CX
	JMP  axpytail

axpydone:
	VZEROUPPER
	RET

// func vscoresF32(q, k *float32, stride, n, hd int, out *float32)
// out[j] = dot(q[0:hd], k[j*stride : j*stride+hd]) for j < n; hd a multiple of 8.
// One 8-lane FMA accumulator per row, reduced in a fixed order.
TEXT ·vscoresF32(SB), NOSPLIT, $0-48
	MOVQ q+0(FP), SI
	MOVQ k+8(FP), DI
	MOVQ stride+16(FP), R8
	SHLQ $2, R8
	MOVQ n+24(FP), CX
	MOVQ hd+32(FP), R9
	MOVQ out+40(FP), DX

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
// hd a multiple of 8.
TEXT ·vaccumF32(SB), NOSPLIT, $0-48
	MOVQ out+0(FP), DX
	MOVQ v+8(FP), DI
	MOVQ stride+16(FP), R8
	SHLQ $2, R8
	MOVQ n+24(FP), R10
	MOVQ hd+32(FP), R9
	MOVQ w+40(FP), SI
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
