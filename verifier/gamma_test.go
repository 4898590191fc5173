package verifier

import (
	"testing"
	"time"
)

func TestGammaPlainPays(t *testing.T) {
	observe := func(g *Gamma, accepted, drafted int) {
		g.ObservePass(1, time.Millisecond)
		g.ObservePass(drafted+1, time.Millisecond+time.Duration(drafted)*250*time.Microsecond)
		g.ObserveWait(500 * time.Microsecond)
		for range 30 {
			g.ObserveRound(drafted, accepted)
		}
	}
	good := NewGamma(8, 0)
	observe(good, 3, 4) // α = 3/4: a round commits about 3 tokens for 2.5 steps' time
	if good.PlainPays() {
		t.Errorf("PlainPays with α %.2f, step 1 ms, 0.25 ms per drafted token: want speculation", good.Alpha())
	}
	if g := good.Next(); g < 2 {
		t.Errorf("Next() = %d with α %.2f, want at least 2", g, good.Alpha())
	}
	bad := NewGamma(8, 0)
	observe(bad, 0, 4) // the draft is never right
	if !bad.PlainPays() {
		t.Errorf("PlainPays = false with α %.2f: want plain decoding", bad.Alpha())
	}
	fixed := NewGamma(8, 4)
	observe(fixed, 0, 4)
	if fixed.PlainPays() {
		t.Error("PlainPays with a fixed γ: the request asked for speculation")
	}
	if NewGamma(8, 0).PlainPays() {
		t.Error("PlainPays before any measurement")
	}
}
