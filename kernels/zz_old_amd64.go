//go:build amd64

package kernels

import "unsafe"

//go:noescape
func oldQ8VNNIx1(out *float32, ostride int, w *byte, rowBytes, nrows, nfull, tail int, x unsafe.Pointer, xstride int)

//go:noescape
func oldQ4VNNIx1(out *float32, ostride int, w *byte, rowBytes, nrows, nfull, tail int, x unsafe.Pointer, xstride int)

//go:noescape
func oldQ8VNNIx2(out *float32, ostride int, w *byte, rowBytes, nrows, nfull, tail int, x unsafe.Pointer, xstride int)

//go:noescape
func oldQ4VNNIx2(out *float32, ostride int, w *byte, rowBytes, nrows, nfull, tail int, x unsafe.Pointer, xstride int)

//go:noescape
func oldQ8VNNIx3(out *float32, ostride int, w *byte, rowBytes, nrows, nfull, tail int, x unsafe.Pointer, xstride int)

//go:noescape
func oldQ4VNNIx3(out *float32, ostride int, w *byte, rowBytes, nrows, nfull, tail int, x unsafe.Pointer, xstride int)

//go:noescape
func oldQ8VNNIx4(out *float32, ostride int, w *byte, rowBytes, nrows, nfull, tail int, x unsafe.Pointer, xstride int)

//go:noescape
func oldQ4VNNIx4(out *float32, ostride int, w *byte, rowBytes, nrows, nfull, tail int, x unsafe.Pointer, xstride int)

//go:noescape
func oldQ8VNNIx5(out *float32, ostride int, w *byte, rowBytes, nrows, nfull, tail int, x unsafe.Pointer, xstride int)

//go:noescape
func oldQ4VNNIx5(out *float32, ostride int, w *byte, rowBytes, nrows, nfull, tail int, x unsafe.Pointer, xstride int)
var oldQ8VNNI = [...]asmKernel{oldQ8VNNIx1, oldQ8VNNIx2, oldQ8VNNIx3, oldQ8VNNIx4, oldQ8VNNIx5}
