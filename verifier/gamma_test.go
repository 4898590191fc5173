package verifier

import (
	"testing"
	"time"
)

func TestGammaPlainPays(t *testing.T) {
	rounds := func(g *Gamma, n, committed int, d time.Duration) {
		for range n {
			g.ObserveRate(committed, d)
		}
	}
	setup := func(fixed int) *Gamma {
		g := NewGamma(8, fixed)
		g.ObservePass(1, time.Millisecond) // plain: 1 token per ms
		return g
	}
	good := setup(0)
	rounds(good, 20, 3, 2*time.Millisecond) // 1.5 tokens per ms
	if good.PlainPays() {
		t.Error("PlainPays with rounds at 1.5 tokens/ms against plain steps at 1: want speculation")
	}
	bad := setup(0)
	rounds(bad, minRounds-1, 1, 2*time.Millisecond) // 0.5 tokens per ms
	if bad.PlainPays() {
		t.Errorf("PlainPays after %d rounds: want no decision before %d", minRounds-1, minRounds)
	}
	rounds(bad, 1, 1, 2*time.Millisecond)
	if !bad.PlainPays() {
		t.Error("PlainPays = false with rounds at 0.5 tokens/ms against plain steps at 1: want plain decoding")
	}
	bad.Paused()
	if bad.PlainPays() || bad.Measured() {
		t.Error("PlainPays right after a pause: want a fresh measurement first")
	}
	fixed := setup(4)
	rounds(fixed, 20, 1, 2*time.Millisecond)
	if fixed.PlainPays() {
		t.Error("PlainPays with a fixed γ: the request asked for speculation")
	}
	if NewGamma(8, 0).PlainPays() {
		t.Error("PlainPays before any measurement")
	}
}

// TestGammaFirst checks the size of the round after a rollback: for a verifier that
// decodes meanwhile, the tokens the draft computes within one verifier step; for one
// that waits, the cost model's choice; no cap when the draft is fast, unmeasured, or the
// request fixed γ.
func TestGammaFirst(t *testing.T) {
	setup := func(fixed int, waits bool, draftTok time.Duration) *Gamma {
		g := NewGamma(8, fixed)
		g.Waits = waits
		g.Seed(time.Millisecond, 1500*time.Microsecond) // c₁ = 0.125 ms per token
		for range 30 {
			g.ObserveRound(4, 3) // α = 3/4
		}
		if draftTok > 0 {
			for range 10 {
				g.ObserveDraft(4*draftTok, 4, 500*time.Microsecond+4*draftTok) // hop 0.5 ms
			}
		}
		return g
	}
	// Decoding meanwhile: 1 + (1 ms − 0.5 ms) / 0.2 ms → 3 tokens.
	if f := setup(0, false, 200*time.Microsecond).First(); f != 3 {
		t.Errorf("decoding meanwhile, draft at 0.2 ms per token: First() = %d, want 3", f)
	}
	// A draft slower than the verifier's step still gets two tokens: the verifier
	// decodes the first one itself.
	if f := setup(0, false, 2*time.Millisecond).First(); f != 2 {
		t.Errorf("decoding meanwhile, draft at 2 ms per token: First() = %d, want 2", f)
	}
	slow := setup(0, true, 150*time.Microsecond)
	if f, n := slow.First(), slow.Next(); f < 1 || f >= n {
		t.Errorf("waiting, draft at 0.15 ms per token: First() = %d, Next() = %d; want 1 ≤ First < Next", f, n)
	}
	for _, waits := range []bool{false, true} {
		if f := setup(0, waits, time.Microsecond).First(); f != 0 {
			t.Errorf("waits=%v, draft at 1 µs per token: First() = %d, want 0 (no cap)", waits, f)
		}
		if f := setup(0, waits, 0).First(); f != 0 {
			t.Errorf("waits=%v, draft time unknown: First() = %d, want 0", waits, f)
		}
		if f := setup(4, waits, 150*time.Microsecond).First(); f != 0 {
			t.Errorf("waits=%v, fixed γ: First() = %d, want 0", waits, f)
		}
	}
}

func TestGammaLookup(t *testing.T) {
	g := NewGamma(8, 0)
	g.Seed(4*time.Millisecond, 4800*time.Microsecond) // c₁ = 0.2 ms, a twentieth of a step
	for range 20 {
		g.ObserveGuess(4, 4) // every guess kept
	}
	if k := g.Lookup(8); k != 8 {
		t.Errorf("Lookup with every guess kept and cheap tokens = %d, want the cap 8", k)
	}
	if k := g.Lookup(0); k != 0 {
		t.Errorf("Lookup(0) = %d: lookup is off", k)
	}
	for range 100 {
		g.ObserveGuess(4, 0) // every guess wrong
	}
	if k := g.Lookup(8); k != 0 {
		t.Fatalf("Lookup with every guess wrong = %d, want 0", k)
	}
	// Declining moves the estimate back toward the prior: the request is tried again.
	tries := 1
	for g.Lookup(8) == 0 {
		if tries++; tries > 200 {
			t.Fatal("Lookup never guesses again after a run of wrong guesses")
		}
	}
	t.Logf("guessing again after %d declined steps", tries)
	// Steps without a guess teach nothing.
	before := g.gacc / (g.gacc + g.grej)
	g.ObserveGuess(0, 0)
	if after := g.gacc / (g.gacc + g.grej); after != before {
		t.Errorf("a step without a guess moved the estimate from %v to %v", before, after)
	}
}
