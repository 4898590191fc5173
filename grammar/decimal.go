package grammar

import (
	"errors"
	"math/big"
)

// Bounds on numbers that may have a fraction. Such a number is written without an
// exponent, with at most maxDigits digits before the point and maxDigits after it, so
// every value it can take is a multiple of 10^-maxDigits below 10^maxDigits: a point of
// the grid that fixed holds exactly. A bound compiles to the nearest grid point on its
// side of it, inclusive, which lets out exactly the numbers the bound does.

// fracScale is 10^maxDigits: the fraction's unit.
const fracScale = 10_000_000_000_000_000

// fixed is the number i + f/fracScale, 0 <= f < fracScale.
type fixed struct{ i, f int64 }

func (a fixed) cmp(b fixed) int {
	switch {
	case a.i != b.i:
		return cmpInt(a.i, b.i)
	}
	return cmpInt(a.f, b.f)
}

func cmpInt(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func (a fixed) neg() fixed {
	if a.f == 0 {
		return fixed{-a.i, 0}
	}
	return fixed{-a.i - 1, fracScale - a.f}
}

// realBounds are the numbers in [lo, hi], both grid points.
type realBounds struct{ lo, hi fixed }

// the grid's extremes: ±(10^maxDigits - 10^-maxDigits).
var (
	gridMax = fixed{fracScale - 1, fracScale - 1}
	gridMin = gridMax.neg()
)

// newRealBounds compiles minimum, exclusiveMinimum, maximum and exclusiveMaximum (nil
// where absent, in that order) into the grid points they let out.
func newRealBounds(rats [4]*big.Rat) (*realBounds, error) {
	b := &realBounds{lo: gridMin, hi: gridMax}
	scale := new(big.Int).SetInt64(fracScale)
	for i, r := range rats {
		if r == nil {
			continue
		}
		// r in units of the grid, rounded toward the inside of the bound.
		x := new(big.Rat).Mul(r, new(big.Rat).SetInt(scale))
		q, m := new(big.Int).DivMod(x.Num(), x.Denom(), new(big.Int)) // q = floor(x)
		exact := m.Sign() == 0
		switch i {
		case 0: // minimum: ceil
			if !exact {
				q.Add(q, big.NewInt(1))
			}
		case 1: // exclusiveMinimum: the next point above
			q.Add(q, big.NewInt(1))
		case 3: // exclusiveMaximum: the point below
			if exact {
				q.Sub(q, big.NewInt(1))
			}
		}
		p := fromGrid(q, scale)
		if i < 2 {
			if p.cmp(b.lo) > 0 {
				b.lo = p
			}
		} else if p.cmp(b.hi) < 0 {
			b.hi = p
		}
	}
	if b.lo.cmp(b.hi) > 0 {
		return nil, errors.New("no number of at most 16 digits either side of the point is within its minimum and maximum")
	}
	return b, nil
}

// fromGrid is q grid units as a fixed, clamped to the grid's extremes.
func fromGrid(q, scale *big.Int) fixed {
	i, f := new(big.Int).DivMod(q, scale, new(big.Int)) // Euclidean: 0 <= f < scale
	switch {
	case !i.IsInt64() || i.Int64() >= fracScale:
		if q.Sign() < 0 {
			return gridMin
		}
		return gridMax
	case i.Int64() < -fracScale:
		return gridMin
	}
	p := fixed{i.Int64(), f.Int64()}
	if p.cmp(gridMin) < 0 {
		return gridMin
	}
	return p
}

// span is the magnitudes [a, b] a number's text so far can still end at, with up to
// more further digits before the point (the caller unions over them).
func (f *frame) realSpan(j int) (a, b fixed, ok bool) {
	ip := int64(f.seen)
	switch f.sub {
	case numMinus:
		return fixed{}, gridMax, j == 0
	case numZero:
		return fixed{}, fixed{0, fracScale - 1}, j == 0
	case numInt:
		if f.count+j > maxDigits {
			return a, b, false
		}
		lo := ip * pow10[j]
		return fixed{lo, 0}, fixed{lo + pow10[j] - 1, fracScale - 1}, true
	case numDot:
		return fixed{ip, 0}, fixed{ip, fracScale - 1}, j == 0
	case numFrac:
		unit := pow10[maxDigits-f.count]
		lo := int64(f.x) * unit
		return fixed{ip, lo}, fixed{ip, lo + unit - 1}, j == 0
	}
	return a, b, false
}

// realReachable reports whether f, a bounded number with a fraction allowed, can
// still end within its bounds.
func realReachable(f *frame) bool {
	bd := f.n.real
	for j := 0; ; j++ {
		a, b, ok := f.realSpan(j)
		if !ok {
			return false
		}
		if f.aux == 1 {
			a, b = b.neg(), a.neg()
		}
		if a.cmp(bd.hi) <= 0 && b.cmp(bd.lo) >= 0 {
			return true
		}
		if f.sub != numInt {
			return false
		}
	}
}

// realValue is the value of f, a number that may end here.
func realValue(f *frame) fixed {
	v := fixed{int64(f.seen), 0}
	if f.sub == numFrac {
		v.f = int64(f.x) * pow10[maxDigits-f.count]
	}
	if f.aux == 1 {
		v = v.neg()
	}
	return v
}

// realCompletes reports whether f, a bounded number with a fraction allowed, may end
// here.
func realCompletes(f *frame) bool {
	switch f.sub {
	case numZero, numInt, numFrac:
		v := realValue(f)
		return v.cmp(f.n.real.lo) >= 0 && v.cmp(f.n.real.hi) <= 0
	}
	return false
}

// anyMultiple reports whether [lo, hi] holds a multiple of m (any integer for m <= 1).
func anyMultiple(lo, hi, m int64) bool {
	if lo > hi {
		return false
	}
	if m <= 1 {
		return true
	}
	return ceilDiv(lo, m)*m <= hi
}

// ceilDiv is ⌈x/m⌉ for m > 0.
func ceilDiv(x, m int64) int64 {
	if x >= 0 {
		return (x + m - 1) / m
	}
	return -(-x / m)
}
