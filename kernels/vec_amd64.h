// Instruction sequences shared by the float32 attention kernels (vec_amd64.s) and
// their fp16 versions (vechalf_amd64.s), which differ only in how they load rows.

// SCORES8_REDUCE reduces the eight row accumulators Y0-Y7 of the eight-row score
// kernels to one score per row, rows 0..7 in order in Y0 (clobbers Y1-Y3, Y8, Y9).
// Halves: row r's lanes l0+l4 .. l3+l7 land in 128-bit lane 0 (rows 0-3) or 1 (rows
// 4-7) of Y(r mod 4); quarters: (b0+b2, b1+b3) of rows 0,1 | 4,5 in Y0 and of rows
// 2,3 | 6,7 in Y2; last pair: c0+c1 of rows 0..7, in order.
#define SCORES8_REDUCE \
	VPERM2F128 $0x20, Y4, Y0, Y8; \
	VPERM2F128 $0x31, Y4, Y0, Y9; \
	VADDPS Y9, Y8, Y0; \
	VPERM2F128 $0x20, Y5, Y1, Y8; \
	VPERM2F128 $0x31, Y5, Y1, Y9; \
	VADDPS Y9, Y8, Y1; \
	VPERM2F128 $0x20, Y6, Y2, Y8; \
	VPERM2F128 $0x31, Y6, Y2, Y9; \
	VADDPS Y9, Y8, Y2; \
	VPERM2F128 $0x20, Y7, Y3, Y8; \
	VPERM2F128 $0x31, Y7, Y3, Y9; \
	VADDPS Y9, Y8, Y3; \
	VSHUFPS $0x44, Y1, Y0, Y8; \
	VSHUFPS $0xee, Y1, Y0, Y9; \
	VADDPS Y9, Y8, Y0; \
	VSHUFPS $0x44, Y3, Y2, Y8; \
	VSHUFPS $0xee, Y3, Y2, Y9; \
	VADDPS Y9, Y8, Y2; \
	VSHUFPS $0x88, Y2, Y0, Y8; \
	VSHUFPS $0xdd, Y2, Y0, Y9; \
	VADDPS Y9, Y8, Y0

// SCORES4_REDUCE_STORE reduces the four row accumulators Y0, Y2, Y3, Y4 of the
// four-row score loop as the eight-row one does and stores the scores at DX.
#define SCORES4_REDUCE_STORE \
	VEXTRACTF128 $1, Y0, X1; \
	VADDPS X1, X0, X0; \
	VEXTRACTF128 $1, Y2, X5; \
	VADDPS X5, X2, X2; \
	VEXTRACTF128 $1, Y3, X6; \
	VADDPS X6, X3, X3; \
	VEXTRACTF128 $1, Y4, X7; \
	VADDPS X7, X4, X4; \
	VPERMILPS $0x0e, X0, X1; \
	VADDPS X1, X0, X0; \
	VPERMILPS $0x0e, X2, X5; \
	VADDPS X5, X2, X2; \
	VPERMILPS $0x0e, X3, X6; \
	VADDPS X6, X3, X3; \
	VPERMILPS $0x0e, X4, X7; \
	VADDPS X7, X4, X4; \
	VPERMILPS $0x01, X0, X1; \
	VADDSS X1, X0, X0; \
	VPERMILPS $0x01, X2, X5; \
	VADDSS X5, X2, X2; \
	VPERMILPS $0x01, X3, X6; \
	VADDSS X6, X3, X3; \
	VPERMILPS $0x01, X4, X7; \
	VADDSS X7, X4, X4; \
	VMOVSS X0, (DX); \
	VMOVSS X2, 4(DX); \
	VMOVSS X3, 8(DX); \
	VMOVSS X4, 12(DX)

// SCORES1_REDUCE_STORE reduces the one row accumulator Y0 and stores its score at DX.
#define SCORES1_REDUCE_STORE \
	VEXTRACTF128 $1, Y0, X1; \
	VADDPS X1, X0, X0; \
	VPERMILPS $0x0e, X0, X1; \
	VADDPS X1, X0, X0; \
	VPERMILPS $0x01, X0, X1; \
	VADDSS X1, X0, X0; \
	VMOVSS X0, (DX)

// ROWS8 points R9-R15 at the rows after R8, BX bytes apart, for the two-query score
// kernels: rows from AX on repeat row AX-1 (AX ≥ 1), so nothing past the last row is
// read.
#define ROWS8 \
	LEAQ (R8)(BX*1), R9; \
	CMPQ AX, $1; \
	CMOVQLE R8, R9; \
	LEAQ (R9)(BX*1), R10; \
	CMPQ AX, $2; \
	CMOVQLE R9, R10; \
	LEAQ (R10)(BX*1), R11; \
	CMPQ AX, $3; \
	CMOVQLE R10, R11; \
	LEAQ (R11)(BX*1), R12; \
	CMPQ AX, $4; \
	CMOVQLE R11, R12; \
	LEAQ (R12)(BX*1), R13; \
	CMPQ AX, $5; \
	CMOVQLE R12, R13; \
	LEAQ (R13)(BX*1), R14; \
	CMPQ AX, $6; \
	CMOVQLE R13, R14; \
	LEAQ (R14)(BX*1), R15; \
	CMPQ AX, $7; \
	CMOVQLE R14, R15

// ZERO16 clears Z0-Z15.
#define ZERO16 \
	VPXORD Z0, Z0, Z0; \
	VPXORD Z1, Z1, Z1; \
	VPXORD Z2, Z2, Z2; \
	VPXORD Z3, Z3, Z3; \
	VPXORD Z4, Z4, Z4; \
	VPXORD Z5, Z5, Z5; \
	VPXORD Z6, Z6, Z6; \
	VPXORD Z7, Z7, Z7; \
	VPXORD Z8, Z8, Z8; \
	VPXORD Z9, Z9, Z9; \
	VPXORD Z10, Z10, Z10; \
	VPXORD Z11, Z11, Z11; \
	VPXORD Z12, Z12, Z12; \
	VPXORD Z13, Z13, Z13; \
	VPXORD Z14, Z14, Z14; \
	VPXORD Z15, Z15, Z15

// SCORES2_REDUCE reduces the sixteen accumulators Z0-Z15 of the two-query score
// kernels, halving 512 → 256 → 128 → 64 → 32 bits, each add combining two parts of the
// same accumulator; output o (8·query + row) ends in lane o of Z0 (clobbers Z1-Z15,
// Z24, Z25). 512 → 256: Z(i) and Z(i+8) share a register, one per 256-bit half; 256 →
// 128: one accumulator per 128-bit lane; then 128 → 64 and 64 → 32 within 128-bit
// lanes.
#define SCORES2_REDUCE \
	VSHUFF32X4 $0x44, Z8, Z0, Z24; \
	VSHUFF32X4 $0xee, Z8, Z0, Z25; \
	VADDPS Z25, Z24, Z0; \
	VSHUFF32X4 $0x44, Z9, Z1, Z24; \
	VSHUFF32X4 $0xee, Z9, Z1, Z25; \
	VADDPS Z25, Z24, Z1; \
	VSHUFF32X4 $0x44, Z10, Z2, Z24; \
	VSHUFF32X4 $0xee, Z10, Z2, Z25; \
	VADDPS Z25, Z24, Z2; \
	VSHUFF32X4 $0x44, Z11, Z3, Z24; \
	VSHUFF32X4 $0xee, Z11, Z3, Z25; \
	VADDPS Z25, Z24, Z3; \
	VSHUFF32X4 $0x44, Z12, Z4, Z24; \
	VSHUFF32X4 $0xee, Z12, Z4, Z25; \
	VADDPS Z25, Z24, Z4; \
	VSHUFF32X4 $0x44, Z13, Z5, Z24; \
	VSHUFF32X4 $0xee, Z13, Z5, Z25; \
	VADDPS Z25, Z24, Z5; \
	VSHUFF32X4 $0x44, Z14, Z6, Z24; \
	VSHUFF32X4 $0xee, Z14, Z6, Z25; \
	VADDPS Z25, Z24, Z6; \
	VSHUFF32X4 $0x44, Z15, Z7, Z24; \
	VSHUFF32X4 $0xee, Z15, Z7, Z25; \
	VADDPS Z25, Z24, Z7; \
	VSHUFF32X4 $0x88, Z4, Z0, Z24; \
	VSHUFF32X4 $0xdd, Z4, Z0, Z25; \
	VADDPS Z25, Z24, Z0; \
	VSHUFF32X4 $0x88, Z5, Z1, Z24; \
	VSHUFF32X4 $0xdd, Z5, Z1, Z25; \
	VADDPS Z25, Z24, Z1; \
	VSHUFF32X4 $0x88, Z6, Z2, Z24; \
	VSHUFF32X4 $0xdd, Z6, Z2, Z25; \
	VADDPS Z25, Z24, Z2; \
	VSHUFF32X4 $0x88, Z7, Z3, Z24; \
	VSHUFF32X4 $0xdd, Z7, Z3, Z25; \
	VADDPS Z25, Z24, Z3; \
	VSHUFPS $0x44, Z2, Z0, Z24; \
	VSHUFPS $0xee, Z2, Z0, Z25; \
	VADDPS Z25, Z24, Z0; \
	VSHUFPS $0x44, Z3, Z1, Z24; \
	VSHUFPS $0xee, Z3, Z1, Z25; \
	VADDPS Z25, Z24, Z1; \
	VSHUFPS $0x88, Z1, Z0, Z24; \
	VSHUFPS $0xdd, Z1, Z0, Z25; \
	VADDPS Z25, Z24, Z0

// ACC2_LOAD and ACC2_STORE move the two-output accumulators of 64 columns: Z0-Z3 at
// DX, Z4-Z7 at CX.
#define ACC2_LOAD \
	VMOVUPS 0(DX), Z0; \
	VMOVUPS 0(CX), Z4; \
	VMOVUPS 64(DX), Z1; \
	VMOVUPS 64(CX), Z5; \
	VMOVUPS 128(DX), Z2; \
	VMOVUPS 128(CX), Z6; \
	VMOVUPS 192(DX), Z3; \
	VMOVUPS 192(CX), Z7

#define ACC2_STORE \
	VMOVUPS Z0, 0(DX); \
	VMOVUPS Z4, 0(CX); \
	VMOVUPS Z1, 64(DX); \
	VMOVUPS Z5, 64(CX); \
	VMOVUPS Z2, 128(DX); \
	VMOVUPS Z6, 128(CX); \
	VMOVUPS Z3, 192(DX); \
	VMOVUPS Z7, 192(CX)

// ACC4_LOAD and ACC4_STORE move the four-output accumulators of 64 columns: Z0-Z3 at
// DX, Z4-Z7 at CX, Z8-Z11 at R13, Z12-Z15 at R14.
#define ACC4_LOAD \
	VMOVUPS 0(DX), Z0; \
	VMOVUPS 64(DX), Z1; \
	VMOVUPS 128(DX), Z2; \
	VMOVUPS 192(DX), Z3; \
	VMOVUPS 0(CX), Z4; \
	VMOVUPS 64(CX), Z5; \
	VMOVUPS 128(CX), Z6; \
	VMOVUPS 192(CX), Z7; \
	VMOVUPS 0(R13), Z8; \
	VMOVUPS 64(R13), Z9; \
	VMOVUPS 128(R13), Z10; \
	VMOVUPS 192(R13), Z11; \
	VMOVUPS 0(R14), Z12; \
	VMOVUPS 64(R14), Z13; \
	VMOVUPS 128(R14), Z14; \
	VMOVUPS 192(R14), Z15

#define ACC4_STORE \
	VMOVUPS Z0, 0(DX); \
	VMOVUPS Z1, 64(DX); \
	VMOVUPS Z2, 128(DX); \
	VMOVUPS Z3, 192(DX); \
	VMOVUPS Z4, 0(CX); \
	VMOVUPS Z5, 64(CX); \
	VMOVUPS Z6, 128(CX); \
	VMOVUPS Z7, 192(CX); \
	VMOVUPS Z8, 0(R13); \
	VMOVUPS Z9, 64(R13); \
	VMOVUPS Z10, 128(R13); \
	VMOVUPS Z11, 192(R13); \
	VMOVUPS Z12, 0(R14); \
	VMOVUPS Z13, 64(R14); \
	VMOVUPS Z14, 128(R14); \
	VMOVUPS Z15, 192(R14)

// MLOADr, MROWr, MFMAr and MSTOREr move and update the r accumulators (r 512-bit
// registers, the last under mask K1) of vaccumMultiF32: MLOAD and MSTORE take an
// output's pointer from argument I (through DI); MROW loads the row at R12 into
// Z20-Z23; MFMA adds it times the weight broadcast in W.
#define MLOAD1(I, A) \
	MOVQ I(FP), DI; \
	VMOVUPS.Z 0(DI), K1, A

#define MLOAD2(I, A, B) \
	MOVQ I(FP), DI; \
	VMOVUPS 0(DI), A; \
	VMOVUPS.Z 64(DI), K1, B

#define MLOAD3(I, A, B, C) \
	MOVQ I(FP), DI; \
	VMOVUPS 0(DI), A; \
	VMOVUPS 64(DI), B; \
	VMOVUPS.Z 128(DI), K1, C

#define MLOAD4(I, A, B, C, D) \
	MOVQ I(FP), DI; \
	VMOVUPS 0(DI), A; \
	VMOVUPS 64(DI), B; \
	VMOVUPS 128(DI), C; \
	VMOVUPS.Z 192(DI), K1, D

#define MSTORE1(I, A) \
	MOVQ I(FP), DI; \
	VMOVUPS A, K1, 0(DI)

#define MSTORE2(I, A, B) \
	MOVQ I(FP), DI; \
	VMOVUPS A, 0(DI); \
	VMOVUPS B, K1, 64(DI)

#define MSTORE3(I, A, B, C) \
	MOVQ I(FP), DI; \
	VMOVUPS A, 0(DI); \
	VMOVUPS B, 64(DI); \
	VMOVUPS C, K1, 128(DI)

#define MSTORE4(I, A, B, C, D) \
	MOVQ I(FP), DI; \
	VMOVUPS A, 0(DI); \
	VMOVUPS B, 64(DI); \
	VMOVUPS C, 128(DI); \
	VMOVUPS D, K1, 192(DI)

#define MROW1 \
	VMOVUPS.Z 0(R12), K1, Z20

#define MROW2 \
	VMOVUPS 0(R12), Z20; \
	VMOVUPS.Z 64(R12), K1, Z21

#define MROW3 \
	VMOVUPS 0(R12), Z20; \
	VMOVUPS 64(R12), Z21; \
	VMOVUPS.Z 128(R12), K1, Z22

#define MROW4 \
	VMOVUPS 0(R12), Z20; \
	VMOVUPS 64(R12), Z21; \
	VMOVUPS 128(R12), Z22; \
	VMOVUPS.Z 192(R12), K1, Z23

#define MFMA1(W, A) \
	VFMADD231PS Z20, W, A

#define MFMA2(W, A, B) \
	MFMA1(W, A); \
	VFMADD231PS Z21, W, B

#define MFMA3(W, A, B, C) \
	MFMA2(W, A, B); \
	VFMADD231PS Z22, W, C

#define MFMA4(W, A, B, C, D) \
	MFMA3(W, A, B, C); \
	VFMADD231PS Z23, W, D

// MWEIGHTS2 and MWEIGHTS4 broadcast row CX's weight of each output into Z16-Z19.
#define MWEIGHTS2 \
	VBROADCASTSS (R8)(CX*4), Z16; \
	VBROADCASTSS (R9)(CX*4), Z17

#define MWEIGHTS4 \
	MWEIGHTS2; \
	VBROADCASTSS (R10)(CX*4), Z18; \
	VBROADCASTSS (R11)(CX*4), Z19

// MNEXT steps to the next row, back to label L while rows are left.
#define MNEXT(L) \
	ADDQ BX, R12; \
	INCQ CX; \
	CMPQ CX, DX; \
	JLT  L

// YLOADr, YROWr, YFMAr and YSTOREr are MLOADr … MSTOREr for vaccumMultiY: r 256-bit
// registers of 8 columns each, no mask (hd a multiple of 8); the row goes to Y8-Y11.
#define YLOAD1(I, A) \
	MOVQ I(FP), DI; \
	VMOVUPS 0(DI), A

#define YLOAD2(I, A, B) \
	YLOAD1(I, A); \
	VMOVUPS 32(DI), B

#define YLOAD4(I, A, B, C, D) \
	YLOAD2(I, A, B); \
	VMOVUPS 64(DI), C; \
	VMOVUPS 96(DI), D

#define YSTORE1(I, A) \
	MOVQ I(FP), DI; \
	VMOVUPS A, 0(DI)

#define YSTORE2(I, A, B) \
	YSTORE1(I, A); \
	VMOVUPS B, 32(DI)

#define YSTORE4(I, A, B, C, D) \
	YSTORE2(I, A, B); \
	VMOVUPS C, 64(DI); \
	VMOVUPS D, 96(DI)

#define YROW1 \
	VMOVUPS 0(R12), Y8

#define YROW2 \
	YROW1; \
	VMOVUPS 32(R12), Y9

#define YROW4 \
	YROW2; \
	VMOVUPS 64(R12), Y10; \
	VMOVUPS 96(R12), Y11

#define YFMA1(W, A) \
	VFMADD231PS Y8, W, A

#define YFMA2(W, A, B) \
	YFMA1(W, A); \
	VFMADD231PS Y9, W, B

#define YFMA4(W, A, B, C, D) \
	YFMA2(W, A, B); \
	VFMADD231PS Y10, W, C; \
	VFMADD231PS Y11, W, D

// YWEIGHTS2 and YWEIGHTS4 broadcast row CX's weight of each output into Y12-Y15.
#define YWEIGHTS2 \
	VBROADCASTSS (R8)(CX*4), Y12; \
	VBROADCASTSS (R9)(CX*4), Y13

#define YWEIGHTS4 \
	YWEIGHTS2; \
	VBROADCASTSS (R10)(CX*4), Y14; \
	VBROADCASTSS (R11)(CX*4), Y15
