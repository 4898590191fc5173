//go:build amd64

#include "textflag.h"

// Activation quantization for the assembly kernels, bit-exact with quantizeActs: per block
// of 32, amax = max|x|, d = amax/127, id = 1/d (0 when d is 0 or 1/d overflows),
// q = round(x·id) half away from zero, computed as trunc(v) plus sign(v) where
// |v-trunc(v)| >= 0.5 (v-trunc(v) is exact). The scale is stored rounded to fp16 and back.

DATA qconst<>+0(SB)/4, $0x7fffffff  // abs mask
DATA qconst<>+4(SB)/4, $0x80000000  // sign mask
DATA qconst<>+8(SB)/4, $0x3f800000  // 1.0
DATA qconst<>+12(SB)/4, $0x3f000000 // 0.5
DATA qconst<>+16(SB)/4, $0x42fe0000 // 127.0
DATA qconst<>+20(SB)/4, $0x7f800000 // +Inf
DATA qconst<>+24(SB)/4, $0
DATA qconst<>+28(SB)/4, $0
// vpermd order that undoes the lane interleaving of vpackssdw/vpacksswb
DATA qconst<>+32(SB)/4, $0
DATA qconst<>+36(SB)/4, $4
DATA qconst<>+40(SB)/4, $1
DATA qconst<>+44(SB)/4, $5
DATA qconst<>+48(SB)/4, $2
DATA qconst<>+52(SB)/4, $6
DATA qconst<>+56(SB)/4, $3
DATA qconst<>+60(SB)/4, $7
GLOBL qconst<>(SB), RODATA|NOPTR, $64

// func quantActsAVX512(dst *byte, x *float32, nb int)
//
// Layout per pair of blocks, 256 bytes: q of both blocks (64), the scales (2×32), then
// per block the int32 corrections of the VNNI kernels for each group of four values:
// -128·Σq (Q8_0, 2×32 bytes) and -8·Σq (Q4_0, 2×32 bytes).
TEXT ·quantActsAVX512(SB), NOSPLIT, $0-24
	MOVQ dst+0(FP), DI
	MOVQ x+8(FP), SI
	MOVQ nb+16(FP), CX
	VBROADCASTSS qconst<>+0(SB), Z31  // abs
	VBROADCASTSS qconst<>+4(SB), Z30  // sign
	VBROADCASTSS qconst<>+8(SB), Z29  // 1.0
	VBROADCASTSS qconst<>+12(SB), Z28 // 0.5
	VMOVSS qconst<>+16(SB), X27       // 127.0
	MOVL $0x01010101, DX
	VPBROADCASTD DX, Y26              // unsigned ones
	VPXORD Y25, Y25, Y25              // zero
	XORQ R8, R8                       // offset of the block's values in dst; its scales are
	TESTQ CX, CX                      // at +64, its corrections at +128 and +192
	JZ done

block:
	VMOVUPS (SI), Z0
	VMOVUPS 64(SI), Z1
	VANDPS Z31, Z0, Z2
	VANDPS Z31, Z1, Z3
	VMAXPS Z3, Z2, Z2
	VEXTRACTF64X4 $1, Z2, Y3
	VMAXPS Y3, Y2, Y2
	VEXTRACTF128 $1, Y2, X3
	VMAXPS X3, X2, X2
	VMOVHLPS X2, X2, X3
	VMAXPS X3, X2, X2
	VMOVSHDUP X2, X3
	VMAXSS X3, X2, X2
	VDIVSS X27, X2, X4 // d = amax/127
	VXORPS X5, X5, X5
	VUCOMISS X5, X4
	JEQ scaled         // d == 0: id = 0
	VDIVSS X4, X29, X5 // id = 1/d
	VUCOMISS qconst<>+20(SB), X5
	JNE scaled
	VXORPS X5, X5, X5  // 1/d overflowed: id = 0

scaled:
	VBROADCASTSS X5, Z5
	VMULPS Z5, Z0, Z0
	VMULPS Z5, Z1, Z1

	VRNDSCALEPS $0x0b, Z0, Z6
	VSUBPS Z6, Z0, Z7
	VANDPS Z31, Z7, Z7
	VCMPPS $0x0d, Z28, Z7, K2
	VANDPS Z30, Z0, Z8
	VORPS Z29, Z8, Z8
	VADDPS Z8, Z6, K2, Z6
	VCVTTPS2DQ Z6, Z6
	VPMOVDB Z6, X6

	VRNDSCALEPS $0x0b, Z1, Z10
	VSUBPS Z10, Z1, Z7
	VANDPS Z31, Z7, Z7
	VCMPPS $0x0d, Z28, Z7, K2
	VANDPS Z30, Z1, Z8
	VORPS Z29, Z8, Z8
	VADDPS Z8, Z10, K2, Z10
	VCVTTPS2DQ Z10, Z10
	VPMOVDB Z10, X10

	VINSERTI32X4 $1, X10, Y6, Y6
	VMOVDQU Y6, (DI)(R8*1)

	VCVTPS2PH $0, X4, X9
	VCVTPH2PS X9, X9
	VBROADCASTSS X9, Y9
	VMOVUPS Y9, 64(DI)(R8*1)

	VPXORD Y8, Y8, Y8
	VPDPBUSD Y6, Y26, Y8 // Σq per group of four
	VPSLLD $7, Y8, Y9
	VPSUBD Y9, Y25, Y9
	VMOVDQU Y9, 128(DI)(R8*1)
	VPSLLD $3, Y8, Y9
	VPSUBD Y9, Y25, Y9
	VMOVDQU Y9, 192(DI)(R8*1)

	ADDQ $128, SI
	// Next block: the second of this pair (+32), or the first of the next (+224).
	ADDQ $32, R8
	TESTQ $32, R8
	JNZ next
	ADDQ $192, R8

next:
	DECQ CX
	JNZ block

done:
	VZEROUPPER
	RET

// func quantActsAVX2(dst *byte, x *float32, nb int)
//
// Layout per pair of blocks, 128 bytes: q of both blocks (64), then the scales (2×32).
TEXT ·quantActsAVX2(SB), NOSPLIT, $0-24
	MOVQ dst+0(FP), DI
	MOVQ x+8(FP), SI
	MOVQ nb+16(FP), CX
	VBROADCASTSS qconst<>+0(SB), Y14 // abs
	VBROADCASTSS qconst<>+4(SB), Y13 // sign
	VBROADCASTSS qconst<>+8(SB), Y12 // 1.0
	VBROADCASTSS qconst<>+12(SB), Y11 // 0.5
	VMOVDQU qconst<>+32(SB), Y10     // vpermd order
	XORQ R8, R8
	MOVQ $64, R9
	TESTQ CX, CX
	JZ done

block:
	VMOVUPS (SI), Y0
	VMOVUPS 32(SI), Y1
	VMOVUPS 64(SI), Y2
	VMOVUPS 96(SI), Y3
	VANDPS Y14, Y0, Y4
	VANDPS Y14, Y1, Y5
	VMAXPS Y5, Y4, Y4
	VANDPS Y14, Y2, Y5
	VANDPS Y14, Y3, Y6
	VMAXPS Y6, Y5, Y5
	VMAXPS Y5, Y4, Y4
	VEXTRACTF128 $1, Y4, X5
	VMAXPS X5, X4, X4
	VMOVHLPS X4, X4, X5
	VMAXPS X5, X4, X4
	VMOVSHDUP X4, X5
	VMAXSS X5, X4, X4
	VDIVSS qconst<>+16(SB), X4, X4 // d = amax/127
	VXORPS X5, X5, X5
	VUCOMISS X5, X4
	JEQ scaled
	VDIVSS X4, X12, X5
	VUCOMISS qconst<>+20(SB), X5
	JNE scaled
	VXORPS X5, X5, X5

scaled:
	VBROADCASTSS X5, Y5
	VMULPS Y5, Y0, Y0
	VMULPS Y5, Y1, Y1
	VMULPS Y5, Y2, Y2
	VMULPS Y5, Y3, Y3

	VROUNDPS $0x0b, Y0, Y6
	VSUBPS Y6, Y0, Y7
	VANDPS Y14, Y7, Y7
	VCMPPS $0x0d, Y11, Y7, Y7
	VANDPS Y13, Y0, Y8
	VORPS Y12, Y8, Y8
	VANDPS Y7, Y8, Y8
	VADDPS Y8, Y6, Y0

	VROUNDPS $0x0b, Y1, Y6
	VSUBPS Y6, Y1, Y7
	VANDPS Y14, Y7, Y7
	VCMPPS $0x0d, Y11, Y7, Y7
	VANDPS Y13, Y1, Y8
	VORPS Y12, Y8, Y8
	VANDPS Y7, Y8, Y8
	VADDPS Y8, Y6, Y1

	VROUNDPS $0x0b, Y2, Y6
	VSUBPS Y6, Y2, Y7
	VANDPS Y14, Y7, Y7
	VCMPPS $0x0d, Y11, Y7, Y7
	VANDPS Y13, Y2, Y8
	VORPS Y12, Y8, Y8
	VANDPS Y7, Y8, Y8
	VADDPS Y8, Y6, Y2

	VROUNDPS $0x0b, Y3, Y6
	VSUBPS Y6, Y3, Y7
	VANDPS Y14, Y7, Y7
	VCMPPS $0x0d, Y11, Y7, Y7
	VANDPS Y13, Y3, Y8
	VORPS Y12, Y8, Y8
	VANDPS Y7, Y8, Y8
	VADDPS Y8, Y6, Y3

	VCVTTPS2DQ Y0, Y0
	VCVTTPS2DQ Y1, Y1
	VCVTTPS2DQ Y2, Y2
	VCVTTPS2DQ Y3, Y3
	VPACKSSDW Y1, Y0, Y0
	VPACKSSDW Y3, Y2, Y2
	VPACKSSWB Y2, Y0, Y0
	VPERMD Y0, Y10, Y0
	VMOVDQU Y0, (DI)(R8*1)

	VCVTPS2PH $0, X4, X9
	VCVTPH2PS X9, X9
	VBROADCASTSS X9, Y9
	VMOVUPS Y9, (DI)(R9*1)

	ADDQ $128, SI
	ADDQ $32, R8
	ADDQ $32, R9
	TESTQ $32, R8
	JNZ next
	ADDQ $64, R8
	ADDQ $64, R9

next:
	DECQ CX
	JNZ block

done:
	VZEROUPPER
	RET
