package kernels

import "testing"

// halfPaths runs f once on the paths this machine takes and once with each faster
// path turned off in turn, so the fallbacks are checked here too. The float32 kernels
// follow the same switches, so each run compares like with like.
func halfPaths(t *testing.T, f func(t *testing.T)) {
	saved := [...]bool{vecAVX2, vecAVX512, halfAVX2}
	defer func() { vecAVX2, vecAVX512, halfAVX2 = saved[0], saved[1], saved[2] }()
	for _, p := range []struct {
		name             string
		avx2, avx512, fc bool
	}{
		{"native", saved[0], saved[1], saved[2]},
		{"noAVX512", saved[0], false, saved[2]},
		{"noF16C", saved[0], false, false},
		{"generic", false, false, false},
	} {
		vecAVX2, vecAVX512, halfAVX2 = p.avx2, p.avx512, p.fc
		t.Run(p.name, f)
	}
}
