#include "textflag.h"

// AVX2 softmax and SwiGLU, bit-exact with softmaxGeneric and swigluGeneric in
// softmax.go: no fused multiply-adds, lanes reduced in the same tree. Tails of n%8
// elements are loaded and stored with VMASKMOVPS under a mask taken from expTab, so
// nothing past element n-1 is read or written; the masked-off lanes are left out of
// the maximum and add +0 to the sum.

// Rows of expTab (see softmax_amd64.go), addressed from R8.
#define cLo 0(R8)
#define cHi 32(R8)
#define cLog2e 64(R8)
#define cHalf 96(R8)
#define cLn2Hi 128(R8)
#define cLn2Lo 160(R8)
#define cC6 192(R8)
#define cC5 224(R8)
#define cC4 256(R8)
#define cC3 288(R8)
#define cOne 320(R8)
#define cBias 352(R8)
#define cSign 384(R8)
#define cNegInf 416(R8)
#define cMaskEnd 480 // row 15: lane 8-t of row 14 is at cMaskEnd-4t

// EXPV sets V to e^V lane by lane as expLane does, using T and P as scratch:
// clamp; t = V*log2e + 0.5; n = floor(t); r = V - n*ln2hi - n*ln2lo; p = Horner(r);
// V = p * 2^n with 2^n = (int(n)+127)<<23.
#define EXPV(V, T, P) \
	VMAXPS     cLo, V, V;    \
	VMINPS     cHi, V, V;    \
	VMULPS     cLog2e, V, T; \
	VADDPS     cHalf, T, T;  \
	VROUNDPS   $1, T, T;     \
	VMULPS     cLn2Hi, T, P; \
	VSUBPS     P, V, V;      \
	VMULPS     cLn2Lo, T, P; \
	VSUBPS     P, V, V;      \
	VMOVUPS    cC6, P;       \
	VMULPS     V, P, P;      \
	VADDPS     cC5, P, P;    \
	VMULPS     V, P, P;      \
	VADDPS     cC4, P, P;    \
	VMULPS     V, P, P;      \
	VADDPS     cC3, P, P;    \
	VMULPS     V, P, P;      \
	VADDPS     cHalf, P, P;  \
	VMULPS     V, P, P;      \
	VADDPS     cOne, P, P;   \
	VMULPS     V, P, P;      \
	VADDPS     cOne, P, P;   \
	VCVTTPS2DQ T, T;         \
	VPADDD     cBias, T, T;  \
	VPSLLD     $23, T, T;    \
	VMULPS     T, P, V

// EXPZ is EXPV on 16 lanes with the constants in registers (see LOADEXPZ): the same
// operations, so each lane's result is the same bits. VRNDSCALEPS $1 is VROUNDPS $1.
#define EXPZ(V, T, P) \
	VMAXPS      Z16, V, V; \
	VMINPS      Z17, V, V; \
	VMULPS      Z18, V, T; \
	VADDPS      Z19, T, T; \
	VRNDSCALEPS $1, T, T;  \
	VMULPS      Z20, T, P; \
	VSUBPS      P, V, V;   \
	VMULPS      Z21, T, P; \
	VSUBPS      P, V, V;   \
	VMULPS      Z22, V, P; \
	VADDPS      Z23, P, P; \
	VMULPS      V, P, P;   \
	VADDPS      Z24, P, P; \
	VMULPS      V, P, P;   \
	VADDPS      Z25, P, P; \
	VMULPS      V, P, P;   \
	VADDPS      Z19, P, P; \
	VMULPS      V, P, P;   \
	VADDPS      Z26, P, P; \
	VMULPS      V, P, P;   \
	VADDPS      Z26, P, P; \
	VCVTTPS2DQ  T, T;      \
	VPADDD      Z27, T, T; \
	VPSLLD      $23, T, T; \
	VMULPS      T, P, V

// LOADEXPZ broadcasts the constants of EXPZ into Z16-Z27.
#define LOADEXPZ \
	VBROADCASTSS cLo, Z16;    \
	VBROADCASTSS cHi, Z17;    \
	VBROADCASTSS cLog2e, Z18; \
	VBROADCASTSS cHalf, Z19;  \
	VBROADCASTSS cLn2Hi, Z20; \
	VBROADCASTSS cLn2Lo, Z21; \
	VBROADCASTSS cC6, Z22;    \
	VBROADCASTSS cC5, Z23;    \
	VBROADCASTSS cC4, Z24;    \
	VBROADCASTSS cC3, Z25;    \
	VBROADCASTSS cOne, Z26;   \
	VPBROADCASTD cBias, Z27

// TAILMASK sets M to the mask of the last N%8 elements and FULL to N rounded down to a
// multiple of 8; it clobbers TMP.
#define TAILMASK(N, FULL, TMP, M) \
	MOVQ    N, TMP;                         \
	ANDQ    $7, TMP;                        \
	NEGQ    TMP;                            \
	VMOVUPS cMaskEnd(R8)(TMP*4), M;        \
	MOVQ    N, FULL;                        \
	ANDQ    $-8, FULL

// MAXTAIL takes the last n%8 elements (if any) into the maximum accumulator ACC, the
// masked-off lanes left as they were, and goes on to fold the accumulators.
#define MAXTAIL(ACC) \
	CMPQ       AX, CX;              \
	JEQ        smaxfold;            \
	VMASKMOVPS (DI)(AX*4), Y14, Y1; \
	VMULPS     Y1, Y15, Y1;         \
	VMAXPS     Y1, ACC, Y2;         \
	VBLENDVPS  Y14, Y2, ACC, ACC;   \
	JMP        smaxfold

// func vsoftmaxF32(x *float32, n int, scale float32, c *[16][8]uint32, wide bool)
// x[0:n] = softmax(scale*x[0:n]), n > 0, in the three passes of softmaxGeneric.
// Y15 scale, Y14 tail mask, Y13 max then 1/sum, Y12 lane sums; DX = n &^ 7. With wide
// (AVX-512) the exponentials go 16 at a time, each half then added to the lane sums in
// order, so the result is the same bits at half the instructions per element.
TEXT ·vsoftmaxF32(SB), NOSPLIT, $0-33
	MOVQ         x+0(FP), DI
	MOVQ         n+8(FP), CX
	VBROADCASTSS scale+16(FP), Y15
	MOVQ         c+24(FP), R8
	TAILMASK(CX, DX, AX, Y14)

	// Pass 1: lane maxima of scale*x in 32 lanes, four accumulators of 8 (Y0, Y3, Y4,
	// Y5: element i goes to lane i%32), from -Inf: four independent VMAXPS chains where
	// one waited on its own latency. Whole vectors past the last 32 go to Y0, Y3, Y4 in
	// turn, and the tail to the next accumulator.
	VMOVUPS cNegInf, Y0
	VMOVAPS Y0, Y3
	VMOVAPS Y0, Y4
	VMOVAPS Y0, Y5
	MOVQ    CX, BX
	ANDQ    $-32, BX
	XORQ    AX, AX

smax:
	CMPQ   AX, BX
	JGE    smax8
	VMULPS (DI)(AX*4), Y15, Y1
	VMAXPS Y1, Y0, Y0
	VMULPS 32(DI)(AX*4), Y15, Y1
	VMAXPS Y1, Y3, Y3
	VMULPS 64(DI)(AX*4), Y15, Y1
	VMAXPS Y1, Y4, Y4
	VMULPS 96(DI)(AX*4), Y15, Y1
	VMAXPS Y1, Y5, Y5
	ADDQ   $32, AX
	JMP    smax

smax8:
	CMPQ   AX, DX
	JGE    smaxt0
	VMULPS (DI)(AX*4), Y15, Y1
	VMAXPS Y1, Y0, Y0
	ADDQ   $8, AX
	CMPQ   AX, DX
	JGE    smaxt3
	VMULPS (DI)(AX*4), Y15, Y1
	VMAXPS Y1, Y3, Y3
	ADDQ   $8, AX
	CMPQ   AX, DX
	JGE    smaxt4
	VMULPS (DI)(AX*4), Y15, Y1
	VMAXPS Y1, Y4, Y4
	ADDQ   $8, AX

smaxt5:
	MAXTAIL(Y5)

smaxt0:
	MAXTAIL(Y0)

smaxt3:
	MAXTAIL(Y3)

smaxt4:
	MAXTAIL(Y4)

smaxfold:
	// 32 lanes to 8: maxps(maxps(l, l+8), maxps(l+16, l+24)).
	VMAXPS Y3, Y0, Y0
	VMAXPS Y5, Y4, Y4
	VMAXPS Y4, Y0, Y0

smaxred:
	VEXTRACTF128 $1, Y0, X1
	VMAXPS       X1, X0, X0
	VPERMILPS    $0x0e, X0, X1
	VMAXPS       X1, X0, X0
	VPERMILPS    $0x01, X0, X1
	VMAXSS       X1, X0, X0
	VBROADCASTSS X0, Y13

	// Pass 2: x = exp(scale*x - max), summed per lane.
	VXORPS Y12, Y12, Y12
	XORQ   AX, AX
	MOVBLZX wide+32(FP), BX
	TESTQ  BX, BX
	JZ     sexp
	LOADEXPZ
	VBROADCASTSS scale+16(FP), Z11
	VBROADCASTSS X13, Z10

sexpz:
	LEAQ    16(AX), BX
	CMPQ    BX, DX
	JGT     sexp
	VMULPS  (DI)(AX*4), Z11, Z0
	VSUBPS  Z10, Z0, Z0
	EXPZ(Z0, Z1, Z2)
	VMOVUPS Z0, (DI)(AX*4)
	VADDPS  Y0, Y12, Y12
	VEXTRACTF32X8 $1, Z0, Y1
	VADDPS  Y1, Y12, Y12
	MOVQ    BX, AX
	JMP     sexpz

sexp:
	CMPQ    AX, DX
	JGE     sexptail
	VMULPS  (DI)(AX*4), Y15, Y0
	VSUBPS  Y13, Y0, Y0
	EXPV(Y0, Y1, Y2)
	VMOVUPS Y0, (DI)(AX*4)
	VADDPS  Y0, Y12, Y12
	ADDQ    $8, AX
	JMP     sexp

sexptail:
	CMPQ       AX, CX
	JEQ        ssumred
	VMASKMOVPS (DI)(AX*4), Y14, Y0
	VMULPS     Y0, Y15, Y0
	VSUBPS     Y13, Y0, Y0
	EXPV(Y0, Y1, Y2)
	VANDPS     Y14, Y0, Y0
	VMASKMOVPS Y0, Y14, (DI)(AX*4)
	VADDPS     Y0, Y12, Y12

ssumred:
	VEXTRACTF128 $1, Y12, X1
	VADDPS       X1, X12, X0
	VPERMILPS    $0x0e, X0, X1
	VADDPS       X1, X0, X0
	VPERMILPS    $0x01, X0, X1
	VADDSS       X1, X0, X0
	VMOVSS       cOne, X1
	VDIVSS       X0, X1, X1
	VBROADCASTSS X1, Y13

	// Pass 3: x *= 1/sum.
	XORQ AX, AX

snorm:
	CMPQ    AX, DX
	JGE     snormtail
	VMULPS  (DI)(AX*4), Y13, Y0
	VMOVUPS Y0, (DI)(AX*4)
	ADDQ    $8, AX
	JMP     snorm

snormtail:
	CMPQ       AX, CX
	JEQ        sdone
	VMASKMOVPS (DI)(AX*4), Y14, Y0
	VMULPS     Y0, Y13, Y0
	VMASKMOVPS Y0, Y14, (DI)(AX*4)

sdone:
	VZEROUPPER
	RET

// func vswigluF32(gate, up *float32, n int, c *[16][8]uint32)
// gate[i] = (gate[i] / (1 + exp(-gate[i]))) * up[i] for i < n, n > 0, as swigluGeneric.
// Y14 tail mask; DX = n &^ 7.
TEXT ·vswigluF32(SB), NOSPLIT, $0-32
	MOVQ gate+0(FP), DI
	MOVQ up+8(FP), SI
	MOVQ n+16(FP), CX
	MOVQ c+24(FP), R8
	TAILMASK(CX, DX, AX, Y14)
	XORQ AX, AX

gloop:
	CMPQ    AX, DX
	JGE     gtail
	VMOVUPS (DI)(AX*4), Y0
	VXORPS  cSign, Y0, Y1
	EXPV(Y1, Y2, Y3)
	VADDPS  cOne, Y1, Y1
	VDIVPS  Y1, Y0, Y0
	VMULPS  (SI)(AX*4), Y0, Y0
	VMOVUPS Y0, (DI)(AX*4)
	ADDQ    $8, AX
	JMP     gloop

gtail:
	CMPQ       AX, CX
	JEQ        gdone
	VMASKMOVPS (DI)(AX*4), Y14, Y0
	VMASKMOVPS (SI)(AX*4), Y14, Y4
	VXORPS     cSign, Y0, Y1
	EXPV(Y1, Y2, Y3)
	VADDPS     cOne, Y1, Y1
	VDIVPS     Y1, Y0, Y0
	VMULPS     Y4, Y0, Y0
	VMASKMOVPS Y0, Y14, (DI)(AX*4)

gdone:
	VZEROUPPER
	RET
