package verifier

import (
	"testing"
	"time"
)

func TestGammaPlainPays(t *testing.T) {
	observe := func(g *Gamma, accepted, drafted int) {
		g.ObservePass(1, time.Millisecond)
		g.ObservePass(drafted+1, time.Millisecond+time.Duration(drafted)*250*time.Microsecond)
		g.ObserveWait(500*time.Microsecond, 0, drafted)
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

// TestGammaFirst checks the size of the round after a rollback: capped below Next when
// the draft's time per token is a large part of the verifier's step, not capped when it
// is small, unknown, or the request fixed γ.
func TestGammaFirst(t *testing.T) {
	setup := func(fixed int, draftTok time.Duration) *Gamma {
		g := NewGamma(8, fixed)
		g.Seed(time.Millisecond, 1500*time.Microsecond) // c₁ = 0.125 ms per token
		for range 30 {
			g.ObserveRound(4, 3) // α = 3/4
		}
		if draftTok > 0 {
			for range 10 {
				g.ObserveWait(300*time.Microsecond+4*draftTok, 4*draftTok, 4)
			}
		}
		return g
	}
	slow := setup(0, 150*time.Microsecond)
	if f, n := slow.First(), slow.Next(); f < 1 || f >= n {
		t.Errorf("draft at 0.15 ms per token, verifier step 1 ms: First() = %d, Next() = %d; want 1 ≤ First < Next", f, n)
	}
	if f := setup(0, time.Microsecond).First(); f != 0 {
		t.Errorf("draft at 1 µs per token: First() = %d, want 0 (no cap)", f)
	}
	if f := setup(0, 0).First(); f != 0 {
		t.Errorf("draft time unknown: First() = %d, want 0", f)
	}
	if f := setup(4, 150*time.Microsecond).First(); f != 0 {
		t.Errorf("fixed γ: First() = %d, want 0", f)
	}
}
