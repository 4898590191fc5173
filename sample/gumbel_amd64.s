#include "textflag.h"

// AVX2 Gumbel noise, bit-exact with gumbelOf(uniformKeyed(key, t)) in gumbel.go, in
// two passes: gumbelUniforms hashes in 64-bit integer lanes (AVX2 has no 64-bit
// multiply, so each is built from three 32-bit ones), gumbelLogs takes the two
// logarithms operation for operation as logLane, with no fused multiply-adds. Each
// loop body holds several independent dependency chains: the work is latency-bound,
// and one chain per iteration left most of the machine idle.

// Rows of gumbelTab (see gumbel_amd64.go), addressed from R8.
#define cOff 0(R8)
#define cOne 32(R8)
#define cMagic 64(R8)
#define cKBias 96(R8)
#define cTwo 128(R8)
#define cHalf 160(R8)
#define cL1 192(R8)
#define cL2 224(R8)
#define cL3 256(R8)
#define cL4 288(R8)
#define cL5 320(R8)
#define cL6 352(R8)
#define cL7 384(R8)
#define cLn2Lo 416(R8)
#define cLn2Hi 448(R8)
#define cAbs 480(R8)
#define cSign 512(R8)
#define cMixAdd 544(R8)
#define cStreamAdd 576(R8)
#define cMul1 608(R8)
#define cMul1Hi 640(R8)
#define cMul2 672(R8)
#define cMul2Hi 704(R8)
#define cExp84 736(R8)
#define cSub84 768(R8)
#define cInv53 800(R8)
#define cStep 832(R8)
#define cIota 864(R8)

// MUL64 sets Z = Z*c mod 2^64 for the constant c whose row is LO (its high half in HI):
// lo(z)·lo(c) + (hi(z)·lo(c) + lo(z)·hi(c))<<32, from 32×32→64-bit products.
#define MUL64(Z, LO, HI, T1, T2) \
	VPSRLQ   $32, Z, T1;  \
	VPMULUDQ LO, T1, T1;  \
	VPMULUDQ HI, Z, T2;   \
	VPADDQ   T2, T1, T1;  \
	VPSLLQ   $32, T1, T1; \
	VPMULUDQ LO, Z, Z;    \
	VPADDQ   T1, Z, Z

// XORSHR sets Z ^= Z >> S.
#define XORSHR(S, Z, T) \
	VPSRLQ S, Z, T; \
	VPXOR  T, Z, Z

// MIX1 is mix after its first addition: Z = mix(Z - mixAdd).
#define MIX1(Z, T1, T2) \
	XORSHR($30, Z, T1);               \
	MUL64(Z, cMul1, cMul1Hi, T1, T2); \
	XORSHR($27, Z, T1);               \
	MUL64(Z, cMul2, cMul2Hi, T1, T2); \
	XORSHR($31, Z, T1)

// KEY starts the second mix: Z = (Z ^ key) + mixAdd, with the key in Y15.
#define KEY(Z) \
	VPXOR  Y15, Z, Z; \
	VPADDQ cMixAdd, Z, Z

// UNIFORM turns the hash h in Z into u = (h>>11 + 0.5)/2^53, converting h>>11 exactly
// as (h>>43 | bits(2^84)) - (2^84+2^52) + (h>>11 with its high half bits(2^52)'s).
#define UNIFORM(Z, T) \
	VPSRLQ   $43, Z, T;           \
	VPOR     cExp84, T, T;        \
	VSUBPD   cSub84, T, T;        \
	VPSRLQ   $11, Z, Z;           \
	VPBLENDD $0xaa, cMagic, Z, Z; \
	VADDPD   T, Z, Z;             \
	VADDPD   cHalf, Z, Z;         \
	VMULPD   cInv53, Z, Z

// The steps of logLane: LOG1 reduces X = m·2^k to m in X and k in K; LOG2 sets
// f = m-1 in F and s = f/(2+f) in S; LOG3 sets P = t1+t2 (S2, S4, Q scratch); LOG4
// sets X = k*ln2hi - ((h - (s*(h + P) + k*ln2lo)) - f) with h = (0.5*f)*f.
#define LOG1(X, K, T) \
	VPADDQ cOff, X, K;   \
	VPSRLQ $52, K, K;    \
	VPSLLQ $52, K, T;    \
	VPSUBQ T, X, X;      \
	VPADDQ cOne, X, X;   \
	VPOR   cMagic, K, K; \
	VSUBPD cKBias, K, K

#define LOG2(X, F, S) \
	VSUBPD cOne, X, F; \
	VADDPD cTwo, F, X; \
	VDIVPD X, F, S

#define LOG3(S, S2, S4, P, Q) \
	VMULPD S, S, S2;   \
	VMULPD S2, S2, S4; \
	VMULPD cL7, S4, P; \
	VMULPD cL6, S4, Q; \
	VADDPD cL5, P, P;  \
	VADDPD cL4, Q, Q;  \
	VMULPD S4, P, P;   \
	VMULPD S4, Q, Q;   \
	VADDPD cL3, P, P;  \
	VADDPD cL2, Q, Q;  \
	VMULPD S4, P, P;   \
	VMULPD S4, Q, Q;   \
	VADDPD cL1, P, P;  \
	VMULPD S2, P, P;   \
	VADDPD Q, P, P

#define LOG4(X, K, F, S, P, Q) \
	VMULPD cHalf, F, X;   \
	VMULPD F, X, X;       \
	VADDPD X, P, P;       \
	VMULPD S, P, P;       \
	VMULPD cLn2Lo, K, Q;  \
	VADDPD Q, P, P;       \
	VSUBPD P, X, P;       \
	VSUBPD F, P, P;       \
	VMULPD cLn2Hi, K, X;  \
	VSUBPD P, X, X

// LOGV sets X = logLane(X); LOGV2 does the same for two vectors, its steps
// interleaved so that the two dependency chains overlap.
#define LOGV(X, K, F, S, S2, S4, P, Q) \
	LOG1(X, K, P);          \
	LOG2(X, F, S);          \
	LOG3(S, S2, S4, P, Q);  \
	LOG4(X, K, F, S, P, Q)

#define LOGV2 \
	LOG1(Y0, Y1, Y6);                 \
	LOG1(Y8, Y9, Y14);                \
	LOG2(Y0, Y2, Y3);                 \
	LOG2(Y8, Y10, Y11);               \
	LOG3(Y3, Y4, Y5, Y6, Y7);         \
	LOG3(Y11, Y12, Y13, Y14, Y15);    \
	LOG4(Y0, Y1, Y2, Y3, Y6, Y7);     \
	LOG4(Y8, Y9, Y10, Y11, Y14, Y15)

// func gumbelUniforms(dst *float64, n int, ids *int32, first, key uint64, c *[28][4]uint64)
// dst[i] = uniformKeyed(key, t_i) for i < n, a positive multiple of 4, with t_i =
// uint64(ids[i]), or first+i when ids is nil. Sixteen tokens per iteration, as four
// interleaved hashes, then four at a time.
TEXT ·gumbelUniforms(SB), NOSPLIT, $0-48
	MOVQ         dst+0(FP), DI
	MOVQ         n+8(FP), CX
	MOVQ         ids+16(FP), SI
	MOVQ         c+40(FP), R8
	VPBROADCASTQ key+32(FP), Y15
	VPBROADCASTQ first+24(FP), Y14
	VPADDQ       cIota, Y14, Y14
	VPADDQ       cStreamAdd, Y14, Y14
	VMOVDQU      cStep, Y13

loop16:
	CMPQ  CX, $16
	JLT   loop4
	TESTQ SI, SI
	JNZ   ids16
	VMOVDQU Y14, Y0
	VPADDQ  Y13, Y14, Y1
	VPADDQ  Y13, Y1, Y2
	VPADDQ  Y13, Y2, Y3
	VPADDQ  Y13, Y3, Y14
	JMP     hash16

ids16:
	VPMOVSXDQ (SI), Y0
	VPMOVSXDQ 16(SI), Y1
	VPMOVSXDQ 32(SI), Y2
	VPMOVSXDQ 48(SI), Y3
	VPADDQ    cStreamAdd, Y0, Y0
	VPADDQ    cStreamAdd, Y1, Y1
	VPADDQ    cStreamAdd, Y2, Y2
	VPADDQ    cStreamAdd, Y3, Y3
	ADDQ      $64, SI

hash16:
	MIX1(Y0, Y4, Y8)
	MIX1(Y1, Y5, Y9)
	MIX1(Y2, Y6, Y10)
	MIX1(Y3, Y7, Y11)
	KEY(Y0)
	KEY(Y1)
	KEY(Y2)
	KEY(Y3)
	MIX1(Y0, Y4, Y8)
	MIX1(Y1, Y5, Y9)
	MIX1(Y2, Y6, Y10)
	MIX1(Y3, Y7, Y11)
	UNIFORM(Y0, Y4)
	UNIFORM(Y1, Y5)
	UNIFORM(Y2, Y6)
	UNIFORM(Y3, Y7)
	VMOVUPD Y0, (DI)
	VMOVUPD Y1, 32(DI)
	VMOVUPD Y2, 64(DI)
	VMOVUPD Y3, 96(DI)
	ADDQ    $128, DI
	SUBQ    $16, CX
	JMP     loop16

loop4:
	TESTQ CX, CX
	JZ    done
	TESTQ SI, SI
	JNZ   ids4
	VMOVDQU Y14, Y0
	VPADDQ  Y13, Y14, Y14
	JMP     hash4

ids4:
	VPMOVSXDQ (SI), Y0
	VPADDQ    cStreamAdd, Y0, Y0
	ADDQ      $16, SI

hash4:
	MIX1(Y0, Y4, Y8)
	KEY(Y0)
	MIX1(Y0, Y4, Y8)
	UNIFORM(Y0, Y4)
	VMOVUPD Y0, (DI)
	ADDQ    $32, DI
	SUBQ    $4, CX
	JMP     loop4

done:
	VZEROUPPER
	RET

// func gumbelLogs(dst *float64, n int, c *[28][4]uint64)
// dst[i] = gumbelOf(dst[i]) = -logLane(|logLane(dst[i])|) for i < n, a positive
// multiple of 4. Eight values per iteration, as two interleaved chains, then four.
TEXT ·gumbelLogs(SB), NOSPLIT, $0-24
	MOVQ dst+0(FP), DI
	MOVQ n+8(FP), CX
	MOVQ c+16(FP), R8

logs8:
	CMPQ    CX, $8
	JLT     logs4
	VMOVUPD (DI), Y0
	VMOVUPD 32(DI), Y8
	LOGV2
	VANDPD  cAbs, Y0, Y0
	VANDPD  cAbs, Y8, Y8
	LOGV2
	VXORPD  cSign, Y0, Y0
	VXORPD  cSign, Y8, Y8
	VMOVUPD Y0, (DI)
	VMOVUPD Y8, 32(DI)
	ADDQ    $64, DI
	SUBQ    $8, CX
	JMP     logs8

logs4:
	TESTQ   CX, CX
	JZ      logsdone
	VMOVUPD (DI), Y0
	LOGV(Y0, Y1, Y2, Y3, Y4, Y5, Y6, Y7)
	VANDPD  cAbs, Y0, Y0
	LOGV(Y0, Y1, Y2, Y3, Y4, Y5, Y6, Y7)
	VXORPD  cSign, Y0, Y0
	VMOVUPD Y0, (DI)

logsdone:
	VZEROUPPER
	RET
