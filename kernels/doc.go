// Package kernels holds the numeric core of specd: the GGUF block formats (F32, F16,
// BF16, Q8_0, Q4_0, Q5_0, Q5_1, IQ4_NL and the K-quants Q2_K…Q6_K, decoded exactly as
// ggml does; their type numbers and sizes live in package ggml), quantization that
// reproduces llama.cpp's bytes (F32, F16, BF16, Q8_0, Q4_0), and the matrix products used
// by decode, prefill and verification, whose activations are quantized as ggml's are
// (Q8_K for K-quant weights, Q8_0 for the other quantized types), with a pure-Go
// reference for each and amd64 assembly chosen at start-up. It depends on nothing in
// specd but ggml, and on no cgo.
//
// Matrix products are batch invariant: a token's result is bitwise the same whether it is
// computed alone (decode), in a block of drafted tokens (verification) or in a prompt
// (prefill), and whatever the number of threads, for a given implementation (see Impl).
// Speculative decoding relies on this to accept exactly the tokens plain decoding would
// produce. Threads split a product by rows only, and every kernel gives each token its own
// accumulators, combined in a fixed order.
//
// Products run on a Pool, a persistent set of workers created once; a Pool also owns the
// scratch memory of its products, so it serves one caller at a time.
package kernels
