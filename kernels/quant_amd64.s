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

// HMAX leaves the largest of the eight lanes of y in the low lane of x, the low half of
// y (t scratch).
#define HMAX(y, x, t) \
	VEXTRACTF128 $1, y, t; \
	VMAXPS       t, x, x; \
	VMOVHLPS     x, x, t; \
	VMAXPS       t, x, x; \
	VMOVSHDUP    x, t; \
	VMAXSS       t, x, x

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
	HMAX(Y4, X4, X5)
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

// The VPERMPS index that puts back in order the transposing max tree of
// quantPackedAVX512 (lane r takes lane 4(r%4)+r/4), and the VPGATHERDD index of its
// transpose (32 bytes a block).
DATA qpacked<>+0(SB)/4, $0
DATA qpacked<>+4(SB)/4, $4
DATA qpacked<>+8(SB)/4, $8
DATA qpacked<>+12(SB)/4, $12
DATA qpacked<>+16(SB)/4, $1
DATA qpacked<>+20(SB)/4, $5
DATA qpacked<>+24(SB)/4, $9
DATA qpacked<>+28(SB)/4, $13
DATA qpacked<>+32(SB)/4, $2
DATA qpacked<>+36(SB)/4, $6
DATA qpacked<>+40(SB)/4, $10
DATA qpacked<>+44(SB)/4, $14
DATA qpacked<>+48(SB)/4, $3
DATA qpacked<>+52(SB)/4, $7
DATA qpacked<>+56(SB)/4, $11
DATA qpacked<>+60(SB)/4, $15
DATA qpacked<>+64(SB)/4, $0
DATA qpacked<>+68(SB)/4, $32
DATA qpacked<>+72(SB)/4, $64
DATA qpacked<>+76(SB)/4, $96
DATA qpacked<>+80(SB)/4, $128
DATA qpacked<>+84(SB)/4, $160
DATA qpacked<>+88(SB)/4, $192
DATA qpacked<>+92(SB)/4, $224
DATA qpacked<>+96(SB)/4, $256
DATA qpacked<>+100(SB)/4, $288
DATA qpacked<>+104(SB)/4, $320
DATA qpacked<>+108(SB)/4, $352
DATA qpacked<>+112(SB)/4, $384
DATA qpacked<>+116(SB)/4, $416
DATA qpacked<>+120(SB)/4, $448
DATA qpacked<>+124(SB)/4, $480
GLOBL qpacked<>(SB), RODATA|NOPTR, $128

// ROUNDAWAY rounds the 16 values v·id of zmm v half away from zero, as quantActsAVX512,
// into int32s in v (t and u scratch, K3 clobbered).
#define ROUNDAWAY(v, t, u) \
	VRNDSCALEPS $0x0b, v, t; \
	VSUBPS      t, v, u; \
	VANDPS      Z31, u, u; \
	VCMPPS      $0x0d, Z28, u, K3; \
	VANDPS      Z30, v, u; \
	VORPS       Z29, u, u; \
	VADDPS      u, t, K3, t; \
	VCVTTPS2DQ  t, v

// QBLOCK quantizes block i (x at 128i(SI), id at 512+4i(SP)) into 32 bytes at 32i(SP).
#define QBLOCK(i, a, b, t, u) \
	VBROADCASTSS (512+4*i)(SP), t; \
	VMULPS       (128*i)(SI), t, a; \
	VMULPS       (128*i+64)(SI), t, b; \
	ROUNDAWAY(a, t, u); \
	ROUNDAWAY(b, t, u); \
	VPMOVDB      a, (32*i)(SP); \
	VPMOVDB      b, (32*i+16)(SP)

// GATHER transposes dword j of the 16 staged blocks into vector j of the group at DI
// and adds its values to the sums in Z20.
#define GATHER(j, z) \
	KXNORW      K4, K4, K4; \
	VPXORD      z, z, z; \
	VPGATHERDD  (4*j)(SP)(Z24*1), K4, z; \
	VMOVDQU32   z, (64*j)(DI); \
	VPDPBUSD    z, Z25, Z20

// QBLOCKK quantizes block i as QBLOCK does, rounding half to even (Q8_K).
#define QBLOCKK(i, a, b, t) \
	VBROADCASTSS (512+4*i)(SP), t; \
	VMULPS       (128*i)(SI), t, a; \
	VMULPS       (128*i+64)(SI), t, b; \
	VCVTPS2DQ    a, a; \
	VCVTPS2DQ    b, b; \
	VPMOVDB      a, (32*i)(SP); \
	VPMOVDB      b, (32*i+16)(SP)

// func quantPackedAVX512(dst *byte, gstride int, x *float32, ngroups int, q8k bool)
//
// Quantizes ngroups whole groups of 16 blocks of x (as quantActsAVX512 does, bit for bit)
// into one token's packed layout (see sizePackedVNNI), group g at dst+g·gstride. All 16
// blocks of a group go at once: per-block maxima reduced by a transposing tree (max is
// exact in any order) give the 16 scales in one vector, each block is rounded into a
// 512-byte staging area in the frame, and eight gathers transpose it.
//
// With q8k, the values are those of quantizeActsQ8K instead: the eight blocks of each
// super-block (lanes 0-7 and 8-15) share is = 127/amax and its inverse d, unrounded, and
// x·is is rounded half to even (VCVTPS2DQ under the default rounding mode).
TEXT ·quantPackedAVX512(SB), $576-33
	MOVQ dst+0(FP), DI
	MOVQ gstride+8(FP), R9
	MOVQ x+16(FP), SI
	MOVQ ngroups+24(FP), CX
	VBROADCASTSS qconst<>+0(SB), Z31  // abs
	VBROADCASTSS qconst<>+4(SB), Z30  // sign
	VBROADCASTSS qconst<>+8(SB), Z29  // 1.0
	VBROADCASTSS qconst<>+12(SB), Z28 // 0.5
	VBROADCASTSS qconst<>+16(SB), Z27 // 127.0
	VBROADCASTSS qconst<>+20(SB), Z26 // +Inf
	MOVL $0x01010101, DX
	VPBROADCASTD DX, Z25              // unsigned ones
	VMOVDQU32 qpacked<>+64(SB), Z24   // gather index
	VMOVDQU32 qpacked<>+0(SB), Z23    // max tree order
	TESTQ CX, CX
	JZ pdone

pgroup:
	// Per block, the max of |x| over its two halves, lane-wise.
	VANDPS 0(SI), Z31, Z0
	VANDPS 64(SI), Z31, Z16
	VMAXPS Z16, Z0, Z0
	VANDPS 128(SI), Z31, Z1
	VANDPS 192(SI), Z31, Z16
	VMAXPS Z16, Z1, Z1
	VANDPS 256(SI), Z31, Z2
	VANDPS 320(SI), Z31, Z16
	VMAXPS Z16, Z2, Z2
	VANDPS 384(SI), Z31, Z3
	VANDPS 448(SI), Z31, Z16
	VMAXPS Z16, Z3, Z3
	VANDPS 512(SI), Z31, Z4
	VANDPS 576(SI), Z31, Z16
	VMAXPS Z16, Z4, Z4
	VANDPS 640(SI), Z31, Z5
	VANDPS 704(SI), Z31, Z16
	VMAXPS Z16, Z5, Z5
	VANDPS 768(SI), Z31, Z6
	VANDPS 832(SI), Z31, Z16
	VMAXPS Z16, Z6, Z6
	VANDPS 896(SI), Z31, Z7
	VANDPS 960(SI), Z31, Z16
	VMAXPS Z16, Z7, Z7
	VANDPS 1024(SI), Z31, Z8
	VANDPS 1088(SI), Z31, Z16
	VMAXPS Z16, Z8, Z8
	VANDPS 1152(SI), Z31, Z9
	VANDPS 1216(SI), Z31, Z16
	VMAXPS Z16, Z9, Z9
	VANDPS 1280(SI), Z31, Z10
	VANDPS 1344(SI), Z31, Z16
	VMAXPS Z16, Z10, Z10
	VANDPS 1408(SI), Z31, Z11
	VANDPS 1472(SI), Z31, Z16
	VMAXPS Z16, Z11, Z11
	VANDPS 1536(SI), Z31, Z12
	VANDPS 1600(SI), Z31, Z16
	VMAXPS Z16, Z12, Z12
	VANDPS 1664(SI), Z31, Z13
	VANDPS 1728(SI), Z31, Z16
	VMAXPS Z16, Z13, Z13
	VANDPS 1792(SI), Z31, Z14
	VANDPS 1856(SI), Z31, Z16
	VMAXPS Z16, Z14, Z14
	VANDPS 1920(SI), Z31, Z15
	VANDPS 1984(SI), Z31, Z16
	VMAXPS Z16, Z15, Z15

	// Transposing tree: halves, quarters, pairs, then single lanes; block 4e+j ends in
	// lane 4j+e.
	VSHUFF64X2 $0x44, Z1, Z0, Z16
	VSHUFF64X2 $0xee, Z1, Z0, Z17
	VMAXPS Z17, Z16, Z0
	VSHUFF64X2 $0x44, Z3, Z2, Z16
	VSHUFF64X2 $0xee, Z3, Z2, Z17
	VMAXPS Z17, Z16, Z1
	VSHUFF64X2 $0x44, Z5, Z4, Z16
	VSHUFF64X2 $0xee, Z5, Z4, Z17
	VMAXPS Z17, Z16, Z2
	VSHUFF64X2 $0x44, Z7, Z6, Z16
	VSHUFF64X2 $0xee, Z7, Z6, Z17
	VMAXPS Z17, Z16, Z3
	VSHUFF64X2 $0x44, Z9, Z8, Z16
	VSHUFF64X2 $0xee, Z9, Z8, Z17
	VMAXPS Z17, Z16, Z4
	VSHUFF64X2 $0x44, Z11, Z10, Z16
	VSHUFF64X2 $0xee, Z11, Z10, Z17
	VMAXPS Z17, Z16, Z5
	VSHUFF64X2 $0x44, Z13, Z12, Z16
	VSHUFF64X2 $0xee, Z13, Z12, Z17
	VMAXPS Z17, Z16, Z6
	VSHUFF64X2 $0x44, Z15, Z14, Z16
	VSHUFF64X2 $0xee, Z15, Z14, Z17
	VMAXPS Z17, Z16, Z7

	VSHUFF64X2 $0x88, Z1, Z0, Z16
	VSHUFF64X2 $0xdd, Z1, Z0, Z17
	VMAXPS Z17, Z16, Z0
	VSHUFF64X2 $0x88, Z3, Z2, Z16
	VSHUFF64X2 $0xdd, Z3, Z2, Z17
	VMAXPS Z17, Z16, Z1
	VSHUFF64X2 $0x88, Z5, Z4, Z16
	VSHUFF64X2 $0xdd, Z5, Z4, Z17
	VMAXPS Z17, Z16, Z2
	VSHUFF64X2 $0x88, Z7, Z6, Z16
	VSHUFF64X2 $0xdd, Z7, Z6, Z17
	VMAXPS Z17, Z16, Z3

	VSHUFPS $0x44, Z1, Z0, Z16
	VSHUFPS $0xee, Z1, Z0, Z17
	VMAXPS Z17, Z16, Z0
	VSHUFPS $0x44, Z3, Z2, Z16
	VSHUFPS $0xee, Z3, Z2, Z17
	VMAXPS Z17, Z16, Z1

	VSHUFPS $0x88, Z1, Z0, Z16
	VSHUFPS $0xdd, Z1, Z0, Z17
	VMAXPS Z17, Z16, Z0
	VPERMPS Z0, Z23, Z0 // amax of block i in lane i

	MOVBLZX q8k+32(FP), AX
	TESTL AX, AX
	JNZ pq8k

	VDIVPS Z27, Z0, Z1        // d = amax/127
	VDIVPS Z1, Z29, Z2        // id = 1/d: +Inf when d is 0 or 1/d overflows
	VCMPPS $0x04, Z26, Z2, K2 // id != +Inf
	VMOVAPS.Z Z2, K2, Z2
	VMOVUPS Z2, 512(SP)
	VCVTPS2PH $0, Z1, Y3
	VCVTPH2PS Y3, Z3
	VMOVUPS Z3, 512(DI)

	QBLOCK(0, Z0, Z1, Z16, Z17)
	QBLOCK(1, Z2, Z3, Z18, Z19)
	QBLOCK(2, Z4, Z5, Z16, Z17)
	QBLOCK(3, Z6, Z7, Z18, Z19)
	QBLOCK(4, Z8, Z9, Z16, Z17)
	QBLOCK(5, Z10, Z11, Z18, Z19)
	QBLOCK(6, Z12, Z13, Z16, Z17)
	QBLOCK(7, Z14, Z15, Z18, Z19)
	QBLOCK(8, Z0, Z1, Z16, Z17)
	QBLOCK(9, Z2, Z3, Z18, Z19)
	QBLOCK(10, Z4, Z5, Z16, Z17)
	QBLOCK(11, Z6, Z7, Z18, Z19)
	QBLOCK(12, Z8, Z9, Z16, Z17)
	QBLOCK(13, Z10, Z11, Z18, Z19)
	QBLOCK(14, Z12, Z13, Z16, Z17)
	QBLOCK(15, Z14, Z15, Z18, Z19)
	JMP pgather

pq8k:
	// amax of each super-block in all its eight lanes: swap pairs, then quadruples,
	// then 128-bit lanes within each half.
	VSHUFPS $0xb1, Z0, Z0, Z1
	VMAXPS Z1, Z0, Z0
	VSHUFPS $0x4e, Z0, Z0, Z1
	VMAXPS Z1, Z0, Z0
	VSHUFF32X4 $0xb1, Z0, Z0, Z1
	VMAXPS Z1, Z0, Z0
	VDIVPS Z0, Z27, Z2        // is = 127/amax: +Inf when amax is 0 or it overflows
	VCMPPS $0x04, Z26, Z2, K2 // is != +Inf
	VMOVAPS.Z Z2, K2, Z2
	VMOVUPS Z2, 512(SP)
	VDIVPS Z2, Z29, Z1        // d = 1/is, 0 with is
	VMOVAPS.Z Z1, K2, Z1
	VMOVUPS Z1, 512(DI)

	QBLOCKK(0, Z0, Z1, Z16)
	QBLOCKK(1, Z2, Z3, Z18)
	QBLOCKK(2, Z4, Z5, Z16)
	QBLOCKK(3, Z6, Z7, Z18)
	QBLOCKK(4, Z8, Z9, Z16)
	QBLOCKK(5, Z10, Z11, Z18)
	QBLOCKK(6, Z12, Z13, Z16)
	QBLOCKK(7, Z14, Z15, Z18)
	QBLOCKK(8, Z0, Z1, Z16)
	QBLOCKK(9, Z2, Z3, Z18)
	QBLOCKK(10, Z4, Z5, Z16)
	QBLOCKK(11, Z6, Z7, Z18)
	QBLOCKK(12, Z8, Z9, Z16)
	QBLOCKK(13, Z10, Z11, Z18)
	QBLOCKK(14, Z12, Z13, Z16)
	QBLOCKK(15, Z14, Z15, Z18)

pgather:
	VPXORD Z20, Z20, Z20
	GATHER(0, Z0)
	GATHER(1, Z1)
	GATHER(2, Z2)
	GATHER(3, Z3)
	VMOVDQA32 Z20, Z19 // sums of each block's first 16 values
	GATHER(4, Z4)
	GATHER(5, Z5)
	GATHER(6, Z6)
	GATHER(7, Z7)
	// Corrections: -128·Σq (bytes) and -8·Σq (nibbles) per block.
	VPXORD Z21, Z21, Z21
	VPSLLD $7, Z20, Z22
	VPSUBD Z22, Z21, Z22
	VMOVDQU32 Z22, 576(DI)
	VPSLLD $3, Z20, Z22
	VPSUBD Z22, Z21, Z22
	VMOVDQU32 Z22, 640(DI)
	// The same -128·Σq over each half of a block (Q6_K, Q3_K, Q2_K have a scale per 16).
	VPSLLD $7, Z19, Z22
	VPSUBD Z22, Z21, Z22
	VMOVDQU32 Z22, 704(DI)
	VPSUBD Z19, Z20, Z20
	VPSLLD $7, Z20, Z22
	VPSUBD Z22, Z21, Z22
	VMOVDQU32 Z22, 768(DI)
	// Each correction converted and times the block scale, for the offset terms of the
	// types with offsets (Q4_K, Q5_K, Q5_1, Q2_K): the same product every row needs.
	VMOVUPS 512(DI), Z17
	VCVTDQ2PS 576(DI), Z18
	VMULPS Z17, Z18, Z18
	VMOVUPS Z18, 832(DI)
	VCVTDQ2PS 640(DI), Z18
	VMULPS Z17, Z18, Z18
	VMOVUPS Z18, 896(DI)
	VCVTDQ2PS 704(DI), Z18
	VMULPS Z17, Z18, Z18
	VMOVUPS Z18, 960(DI)
	VCVTDQ2PS 768(DI), Z18
	VMULPS Z17, Z18, Z18
	VMOVUPS Z18, 1024(DI)

	ADDQ $2048, SI
	ADDQ R9, DI
	DECQ CX
	JNZ pgroup

pdone:
	VZEROUPPER
	RET

// func quantActsQ8KAVX2(dst *byte, x *float32, nsb int)
//
// Quantizes nsb super-blocks of 256 values as quantizeActsQ8K does, bit for bit, into
// the layout of quantActsAVX2: per pair of blocks of 32, the 64 values, then each
// block's scale (here the super-block's d) eight times.
TEXT ·quantActsQ8KAVX2(SB), NOSPLIT, $0-24
	MOVQ dst+0(FP), DI
	MOVQ x+8(FP), SI
	MOVQ nsb+16(FP), CX
	VBROADCASTSS qconst<>+0(SB), Y14 // abs
	VBROADCASTSS qconst<>+8(SB), Y12 // 1.0
	VMOVDQU qconst<>+32(SB), Y10     // vpermd order
	TESTQ CX, CX
	JZ kdone

ksuper:
	VXORPS Y4, Y4, Y4
	XORQ AX, AX

kmax:
	VANDPS (SI)(AX*1), Y14, Y0
	VMAXPS Y0, Y4, Y4
	ADDQ $32, AX
	CMPQ AX, $1024
	JNE kmax
	HMAX(Y4, X4, X5)

	// is = 127/amax and d = 1/is, both 0 when amax is 0 or 127/amax overflows.
	VXORPS X5, X5, X5
	VXORPS X6, X6, X6
	VUCOMISS X5, X4
	JEQ kscaled
	VMOVSS qconst<>+16(SB), X7
	VDIVSS X4, X7, X7
	VUCOMISS qconst<>+20(SB), X7
	JEQ kscaled
	VMOVAPS X7, X5
	VDIVSS X5, X12, X6

kscaled:
	VBROADCASTSS X5, Y5
	VBROADCASTSS X6, Y6
	XORQ AX, AX

kblock:
	VMULPS (SI), Y5, Y0
	VMULPS 32(SI), Y5, Y1
	VMULPS 64(SI), Y5, Y2
	VMULPS 96(SI), Y5, Y3
	VCVTPS2DQ Y0, Y0
	VCVTPS2DQ Y1, Y1
	VCVTPS2DQ Y2, Y2
	VCVTPS2DQ Y3, Y3
	VPACKSSDW Y1, Y0, Y0
	VPACKSSDW Y3, Y2, Y2
	VPACKSSWB Y2, Y0, Y0
	VPERMD Y0, Y10, Y0
	VMOVDQU Y0, (DI)
	VMOVUPS Y6, 64(DI)
	ADDQ $128, SI
	ADDQ $32, DI
	INCQ AX
	TESTQ $1, AX
	JNZ kblock
	ADDQ $64, DI
	CMPQ AX, $8
	JNE kblock
	DECQ CX
	JNZ ksuper

kdone:
	VZEROUPPER
	RET
