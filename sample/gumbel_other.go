//go:build !amd64

package sample

// gumbelsVec is the vector part of gumbelRange and gumbelIDs; there is none here.
func gumbelsVec(dst []float64, ids []int32, first, key uint64) int { return 0 }
