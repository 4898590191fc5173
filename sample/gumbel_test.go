package sample

import (
	"math"
	"math/big"
	"math/rand/v2"
	"testing"
)

// TestUniformUnchanged: Uniform still draws what it drew before the noise code was
// split out (the expression below is the original one, with its own copy of mix), so
// the accept and residual draws of verification keep their values.
func TestUniformUnchanged(t *testing.T) {
	mix0 := func(z uint64) uint64 {
		z += 0x9e3779b97f4a7c15
		z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
		z = (z ^ (z >> 27)) * 0x94d049bb133111eb
		return z ^ (z >> 31)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 10000 {
		seed, pos, stream := rng.Uint64(), rng.Uint64N(1<<20), rng.Uint64()
		h := mix0(seed ^ mix0(pos^0x9e3779b97f4a7c15) ^ mix0(stream+0x632be59bd9b4e019))
		want := (float64(h>>11) + 0.5) * (1.0 / (1 << 53))
		if got := Uniform(seed, pos, stream); got != want {
			t.Fatalf("Uniform(%#x, %d, %#x) = %v, want %v", seed, pos, stream, got, want)
		}
	}
}

// ulps is the distance between a and b in units in the last place (both finite, of
// the same sign).
func ulps(a, b float64) uint64 {
	x, y := math.Float64bits(a), math.Float64bits(b)
	if x > y {
		return x - y
	}
	return y - x
}

// TestLogLane measures logLane against math.Log over the arguments the noise takes:
// the inner logarithm sees u in [2^-54, 1) (uniform draws, including the smallest ones
// and those next to 1), the outer one -log u in (2.2e-16, 37.5], and a wide log-uniform
// sweep covers the rest of the normal range.
func TestLogLane(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	var xs []float64
	for k := range 100000 {
		xs = append(xs, (float64(k)+0.5)/(1<<53))              // the smallest uniform draws
		xs = append(xs, 1-float64(k+1)/(1<<53))                // just below 1
		xs = append(xs, 1+float64(k+1)/(1<<52))                // just above 1
		xs = append(xs, math.Sqrt2/2+float64(k-50000)/(1<<52)) // around the reduction's edge
	}
	for range 1000000 {
		xs = append(xs, math.Ldexp(1+rng.Float64(), rng.IntN(2044)-1022)) // all exponents
		xs = append(xs, rng.Float64()*37.5)                               // outer arguments
		u := Uniform(rng.Uint64(), rng.Uint64N(1<<20), rng.Uint64N(4096))
		if u < 1 {
			xs = append(xs, u, -math.Log(u))
		}
	}
	var worst uint64
	worstX := 1.0
	for _, x := range xs {
		if x <= 0 {
			continue
		}
		if d := ulps(logLane(x), math.Log(x)); d > worst {
			worst, worstX = d, x
		}
	}
	t.Logf("max |logLane - math.Log| = %d ulp (at x = %v), over %d arguments", worst, worstX, len(xs))
	if worst > 2 {
		t.Errorf("logLane(%v) = %v, want %v within 2 ulp", worstX, logLane(worstX), math.Log(worstX))
	}
	// Against the exact logarithm, on every 197th argument (the reference is slow; the
	// stride is odd so that every kind of argument above is visited).
	worstErr := 0.0
	worstX = 1
	for i := 0; i < len(xs); i += 197 {
		if x := xs[i]; x > 0 && x != 1 {
			if e := ulpError(logLane(x), x); e > worstErr {
				worstErr, worstX = e, x
			}
		}
	}
	t.Logf("max |logLane - ln| = %.3f ulp (at x = %v)", worstErr, worstX)
	if worstErr > 1 {
		t.Errorf("logLane(%v) is %.3f ulp from ln x, want < 1", worstX, worstErr)
	}
	for _, c := range []struct{ x, want float64 }{{1, 0}, {2, math.Ln2}, {0.5, -math.Ln2}, {4, 2 * math.Ln2}} {
		if got := logLane(c.x); got != c.want {
			t.Errorf("logLane(%v) = %v, want %v", c.x, got, c.want)
		}
	}
}

// lnBig is ln x to 200 bits: k·ln 2 + 2·atanh((m-1)/(m+1)) for x = m·2^k, m in [1, 2),
// with ln 2 = 2·atanh(1/3), each atanh by its series.
func lnBig(x float64) *big.Float {
	const prec = 200
	atanh := func(s *big.Float) *big.Float {
		sum := new(big.Float).SetPrec(prec).Set(s)
		s2 := new(big.Float).SetPrec(prec).Mul(s, s)
		p := new(big.Float).SetPrec(prec).Set(s)
		for n := int64(3); n < 400; n += 2 {
			p.Mul(p, s2)
			if p.Sign() == 0 || p.MantExp(nil)-sum.MantExp(nil) < -prec {
				break
			}
			term := new(big.Float).SetPrec(prec).Quo(p, new(big.Float).SetInt64(n))
			sum.Add(sum, term)
		}
		return sum.Mul(sum, big.NewFloat(2))
	}
	frac, exp := math.Frexp(x)
	m, k := big.NewFloat(frac*2).SetPrec(prec), int64(exp-1)
	one := big.NewFloat(1).SetPrec(prec)
	s := new(big.Float).SetPrec(prec).Quo(new(big.Float).SetPrec(prec).Sub(m, one), new(big.Float).SetPrec(prec).Add(m, one))
	third := new(big.Float).SetPrec(prec).Quo(one, big.NewFloat(3))
	ln2 := atanh(third)
	return new(big.Float).SetPrec(prec).Add(ln2.Mul(ln2, new(big.Float).SetInt64(k)), atanh(s))
}

// ulpError is |got - ln x| in units in the last place of ln x rounded to float64.
func ulpError(got, x float64) float64 {
	exact := lnBig(x)
	want, _ := exact.Float64()
	_, e := math.Frexp(want)
	diff := new(big.Float).SetPrec(200).Sub(new(big.Float).SetPrec(200).SetFloat64(got), exact)
	d, _ := diff.Float64()
	return math.Abs(d) / math.Ldexp(1, e-53)
}

// TestGumbelNearMathLog: the noise is -log(-log u) up to rounding. Where the outer
// logarithm is near 0 (u near 1/e) a last-place difference in the inner one is a large
// relative error, so the tolerance has an absolute part.
func TestGumbelNearMathLog(t *testing.T) {
	worst := 0.0
	for tok := range uint64(200000) {
		u := Uniform(7, 3, tok)
		if u == 1 {
			continue
		}
		got, want := Gumbel(7, 3, tok), -math.Log(-math.Log(u))
		worst = max(worst, math.Abs(got-want))
		if d := math.Abs(got - want); d > 1e-15+1e-15*math.Abs(want) {
			t.Fatalf("Gumbel(7, 3, %d) = %v, want -log(-log %v) = %v", tok, got, u, want)
		}
	}
	t.Logf("max |Gumbel - (-log(-log u))| = %.3g", worst)
}

// TestGumbelRangeIsScalar: the batch noise of a token range is Gumbel's, bit for bit,
// for whole vocabularies and for ranges of every length and offset modulo 4.
func TestGumbelRangeIsScalar(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	g := make([]float64, 4096)
	for c := range 60 {
		seed, pos := rng.Uint64(), rng.Uint64N(1<<16)
		if c < 4 {
			seed = uint64(c) // small seeds too
		}
		gumbelRange(g, seed, pos, 0)
		for i, got := range g {
			if want := Gumbel(seed, pos, uint64(i)); math.Float64bits(got) != math.Float64bits(want) {
				t.Fatalf("gumbelRange(seed %#x, pos %d)[%d] = %v, want Gumbel = %v", seed, pos, i, got, want)
			}
		}
	}
	for n := range 40 {
		for _, first := range []uint64{0, 1, 3, 4093, 1<<32 - 2, 1<<64 - 5} {
			seed, pos := rng.Uint64(), rng.Uint64()
			gumbelRange(g[:n], seed, pos, first)
			for i, got := range g[:n] {
				if want := Gumbel(seed, pos, first+uint64(i)); math.Float64bits(got) != math.Float64bits(want) {
					t.Fatalf("gumbelRange(%d tokens from %d)[%d] = %v, want Gumbel = %v", n, first, i, got, want)
				}
			}
		}
	}
}

// TestGumbelIDsIsScalar: the batch noise of a list of ids is Gumbel's, bit for bit, for
// lists of every length up to 70, with ids in any order, repeated, large or negative
// (a negative id is hashed as uint64(id), like the scalar path does).
func TestGumbelIDsIsScalar(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	g := make([]float64, 80)
	for n := range 70 {
		for range 20 {
			ids := make([]int32, n)
			for i := range ids {
				switch rng.IntN(4) {
				case 0:
					ids[i] = int32(rng.Uint32())
				case 1:
					ids[i] = ids[rng.IntN(i+1)]
				default:
					ids[i] = rng.Int32N(4096)
				}
			}
			seed, pos := rng.Uint64(), rng.Uint64N(1<<16)
			gumbelIDs(g, seed, pos, ids)
			for i, id := range ids {
				if got, want := g[i], Gumbel(seed, pos, uint64(id)); math.Float64bits(got) != math.Float64bits(want) {
					t.Fatalf("gumbelIDs(%v)[%d] = %v, want Gumbel = %v", ids, i, got, want)
				}
			}
		}
	}
}

// unmix inverts mix: its multipliers are odd, so invertible mod 2^64, and z ^ z>>s is
// undone by repeating it.
func unmix(z uint64) uint64 {
	inv := func(a uint64) uint64 {
		x := a // correct to 3 bits; each Newton step doubles that
		for range 5 {
			x *= 2 - a*x
		}
		return x
	}
	unshift := func(y uint64, s uint) uint64 {
		x := y
		for range 64 / s {
			x = y ^ x>>s
		}
		return x
	}
	z = unshift(z, 31)
	z *= inv(mixMul2)
	z = unshift(z, 27)
	z *= inv(mixMul1)
	z = unshift(z, 30)
	return z - mixAdd
}

// TestGumbelExtremes plants chosen hashes at token 2 of position 0 (by solving for the
// seed) and checks the batch and scalar noise there: the smallest draw u = 2^-54, the
// draws next to 1, and u = 1 itself, which Uniform returns for h>>11 = 2^53-1 and for
// which the noise is 1023·ln 2 (see gumbel.go).
func TestGumbelExtremes(t *testing.T) {
	if got := unmix(mix(12345)); got != 12345 {
		t.Fatalf("unmix(mix(12345)) = %d", got)
	}
	cases := []struct {
		k    uint64 // h>>11
		u    float64
		want float64
	}{
		{0, 0x1p-54, -math.Log(-math.Log(0x1p-54))},
		{1, 0x1.8p-53, -math.Log(-math.Log(0x1.8p-53))},
		{1<<52 - 1, 0.5 - 0x1p-54, -math.Log(-math.Log(0.5 - 0x1p-54))},
		{1<<53 - 3, 1 - 0x1p-52, -math.Log(-math.Log(1 - 0x1p-52))},
		{1<<53 - 2, 1 - 0x1p-52, -math.Log(-math.Log(1 - 0x1p-52))},
		{1<<53 - 1, 1, 1023 * math.Ln2},
	}
	g := make([]float64, 8)
	for _, c := range cases {
		const tok = 2
		seed := unmix(c.k<<11|0x5a5) ^ mix(tok+streamOff) ^ mix(0^posOff)
		if u := Uniform(seed, 0, tok); u != c.u {
			t.Fatalf("h>>11 = %#x: Uniform = %v, want %v", c.k, u, c.u)
		}
		got := Gumbel(seed, 0, tok)
		if math.Abs(got-c.want) > 1e-12*math.Abs(c.want) {
			t.Errorf("h>>11 = %#x: Gumbel = %v, want %v", c.k, got, c.want)
		}
		gumbelRange(g, seed, 0, 0)
		gumbelIDs(g[4:], seed, 0, []int32{7, 1, tok, 0})
		if math.Float64bits(g[tok]) != math.Float64bits(got) || math.Float64bits(g[4+2]) != math.Float64bits(got) {
			t.Errorf("h>>11 = %#x: batch noise %v and %v, want Gumbel = %v", c.k, g[tok], g[6], got)
		}
	}
}

// TestGumbelMoments: the noise has the standard Gumbel mean (Euler's γ) and variance
// (π²/6), to within sampling error over 10^6 draws.
func TestGumbelMoments(t *testing.T) {
	g := make([]float64, 4096)
	var sum, sq float64
	n := 0
	for pos := range uint64(250) {
		gumbelRange(g, 11, pos, 0)
		for _, v := range g {
			sum += v
			sq += v * v
			n++
		}
	}
	mean := sum / float64(n)
	variance := sq/float64(n) - mean*mean
	if math.Abs(mean-0.5772156649) > 0.006 || math.Abs(variance-math.Pi*math.Pi/6) > 0.03 {
		t.Errorf("noise mean, variance = %.4f, %.4f; want 0.5772, %.4f", mean, variance, math.Pi*math.Pi/6)
	}
}

// top2Logits are the logits of BenchmarkTop2: 4096 values with a spread like a small
// model's.
func top2Logits() []float32 {
	rng := rand.New(rand.NewPCG(9, 10))
	logits := make([]float32, 4096)
	for i := range logits {
		logits[i] = float32(rng.NormFloat64() * 3)
	}
	return logits
}

func BenchmarkTop2(b *testing.B) {
	logits := top2Logits()
	s := New(Params{Temperature: 0.8, TopP: 1, Seed: 7})
	pos := 0
	for b.Loop() {
		s.Top2(logits, pos)
		pos++
	}
}

func BenchmarkGumbelTop2(b *testing.B) {
	s := New(Params{Temperature: 0.8, TopK: 1000, Seed: 7})
	d := s.Distribution(top2Logits())
	pos := 0
	for b.Loop() {
		s.GumbelTop2(d, pos)
		pos++
	}
}

func BenchmarkGumbelRange(b *testing.B) {
	g := make([]float64, 4096)
	pos := uint64(0)
	for b.Loop() {
		gumbelRange(g, 7, pos, 0)
		pos++
	}
}

func BenchmarkGumbelScalar(b *testing.B) {
	g := make([]float64, 4096)
	pos := uint64(0)
	for b.Loop() {
		for i := range g {
			g[i] = Gumbel(7, pos, uint64(i))
		}
		pos++
	}
}
