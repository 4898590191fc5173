//go:build amd64

package kernels

func init() {
	impls = []*kernelSet{genericKernels}
	cur = impls[0]
}
