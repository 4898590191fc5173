package sample

import "testing"

// TestDrawsWithoutAVX2: a machine without AVX2 takes the scalar path for every token;
// it must draw what this one draws with the assembly.
func TestDrawsWithoutAVX2(t *testing.T) {
	if !gumbelAVX2 {
		t.Skip("no AVX2: the scalar path is the only one")
	}
	logits := top2Logits()
	params := []Params{{Temperature: 0.8, Seed: 3}, {Temperature: 1.3, TopK: 50, Seed: 4}, {Temperature: 0.7, TopP: 0.9, Seed: 5}}
	type draw struct{ first, second int32 }
	var want []draw
	for _, p := range params {
		s := New(p)
		for pos := range 100 {
			a, b := s.Top2(logits, pos)
			want = append(want, draw{a, b})
		}
	}
	gumbelAVX2 = false
	defer func() { gumbelAVX2 = true }()
	i := 0
	for _, p := range params {
		s := New(p)
		for pos := range 100 {
			if a, b := s.Top2(logits, pos); a != want[i].first || b != want[i].second {
				t.Fatalf("%+v pos %d: Top2 without AVX2 = %d, %d; want %d, %d", p, pos, a, b, want[i].first, want[i].second)
			}
			i++
		}
	}
}
