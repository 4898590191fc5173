package spec_test

import (
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/specd-dev/specd/spec"
)

func TestLookup(t *testing.T) {
	tests := []struct {
		name string
		seq  []int32
		k    int
		want []int32
	}{
		{"nothing recurs", []int32{1, 2, 3, 4}, 3, nil},
		{"no room asked", []int32{1, 2, 1}, 0, nil},
		{"one token", []int32{5}, 2, nil},
		{"three-token suffix", []int32{1, 2, 3, 4, 9, 2, 3, 4}, 1, []int32{9}},
		{"copies what followed", []int32{7, 1, 2, 3, 9, 1, 2}, 2, []int32{3, 9}},
		{"latest occurrence", []int32{1, 2, 4, 1, 2, 5, 8, 1, 2}, 1, []int32{5}},
		// 2 3 recurs with 6 after it; the latest 3 alone is followed by 7.
		{"longest suffix first", []int32{2, 3, 6, 0, 3, 7, 2, 3}, 2, []int32{6, 0}},
		{"stops at the end of the text when k allows", []int32{4, 5, 6, 4, 5}, 1, []int32{6}},
		// The continuation reaches the end and goes on copying itself: period 2.
		{"loop", []int32{8, 1, 2, 1, 2}, 5, []int32{1, 2, 1, 2, 1}},
		{"period one", []int32{3, 9, 9}, 4, []int32{9, 9, 9, 9}},
	}
	for _, tt := range tests {
		if got := spec.Lookup(tt.seq, 1, 3, tt.k); !slices.Equal(got, tt.want) {
			t.Errorf("%s: Lookup(%v, 1, 3, %d) = %v, want %v", tt.name, tt.seq, tt.k, got, tt.want)
		}
	}
}

// TestLookupMinLength: a suffix shorter than minN never counts.
func TestLookupMinLength(t *testing.T) {
	seq := []int32{5, 1, 2, 3, 4, 5, 6, 7, 0, 3, 4, 5, 6, 7}
	if got := spec.Lookup(seq, 6, 6, 1); got != nil {
		t.Errorf("Lookup with a 5-token repeat and minN 6 = %v, want nil", got)
	}
	if got := spec.Lookup(seq, 5, 6, 2); !slices.Equal(got, []int32{0, 3}) {
		t.Errorf("Lookup with a 5-token repeat and minN 5 = %v, want [0 3]", got)
	}
}

// TestLookupRandom checks on random sequences that every guess is the continuation of
// an earlier occurrence of a suffix, with the longest recurring suffix used.
func TestLookupRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for range 2000 {
		seq := make([]int32, 1+rng.IntN(40))
		for i := range seq {
			seq[i] = rng.Int32N(6)
		}
		k := rng.IntN(6)
		got := spec.Lookup(seq, 1, 3, k)
		longest := 0
		for n := 1; n <= 3 && n < len(seq); n++ {
			for i := 0; i+n < len(seq); i++ {
				if slices.Equal(seq[i:i+n], seq[len(seq)-n:]) {
					longest = n
				}
			}
		}
		if k == 0 || longest == 0 {
			if got != nil {
				t.Fatalf("Lookup(%v, 1, 3, %d) = %v, want nil", seq, k, got)
			}
			continue
		}
		if len(got) != k {
			t.Fatalf("Lookup(%v, 1, 3, %d) = %v: want %d tokens", seq, k, got, k)
		}
		// Some earlier occurrence of the longest suffix continues as got does.
		ext := append(slices.Clone(seq), got...)
		ok := false
		for i := 0; i+longest < len(seq); i++ {
			if slices.Equal(seq[i:i+longest], seq[len(seq)-longest:]) && slices.Equal(ext[i+longest:i+longest+k], got) {
				ok = true
			}
		}
		if !ok {
			t.Fatalf("Lookup(%v, 1, 3, %d) = %v: no occurrence of the last %d tokens continues so", seq, k, got, longest)
		}
	}
}
