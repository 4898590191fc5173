package model

import (
	"errors"
	"fmt"
	"math"
	"time"
	"unsafe"

	"github.com/specd-dev/specd/kernels"
	"github.com/specd-dev/specd/kvcache"
)

// ErrContextFull is returned by State.Forward when the tokens would run past the
// model's context length.
var ErrContextFull = errors.New("context window full")

// ErrBadToken is returned by State.Forward for a token id outside the vocabulary.
var ErrBadToken = errors.New("token id outside the vocabulary")

// f32Bytes views a float32 slice as bytes (little-endian hosts).
func f32Bytes(f []float32) []byte {
	if len(f) == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(&f[0])), 4*len(f))
}

// initRope tabulates, per position, each rotated pair's (cos, cos) and (-sin, sin), the
// operands of kernels.Rotate.
func (m *Model) initRope() {
	d := m.RopeDim &^ 1
	m.ropeCS = make([]float32, m.Context*d)
	m.ropeSN = make([]float32, m.Context*d)
	for p := range m.Context {
		for i := range d / 2 {
			freq := 1 / math.Pow(float64(m.RopeBase), float64(2*i)/float64(m.RopeDim))
			s, c := math.Sincos(float64(p) * freq)
			j := p*d + 2*i
			m.ropeCS[j], m.ropeCS[j+1] = float32(c), float32(c)
			m.ropeSN[j], m.ropeSN[j+1] = -float32(s), float32(s)
		}
	}
}

// NewKVPool returns a KV cache pool shaped for m with the given byte budget and entry type.
func (m *Model) NewKVPool(budget int64, typ kernels.Type) (*kvcache.Pool, error) {
	return kvcache.NewPool(kvcache.Config{Layers: m.Layers, KVDim: m.KVDim(), Budget: budget, Type: typ})
}

// State runs forward passes for one sequence. It owns its scratch buffers and the
// sequence's cache; it is used by one goroutine at a time.
type State struct {
	m    *Model
	pool *kernels.Pool
	Seq  *kvcache.Seq

	maxBlock int
	x, xb    []float32           // [block][Dim] residual stream and normed copy
	q        []float32           // [block][Dim]
	k, v     []float32           // [block][KVDim]
	att      []float32           // [block][Dim] attention output
	o        []float32           // [block][Dim]
	gate, up []float32           // [block][FFN]
	scores   []float32           // [block][Heads][Context]
	kvTmp    []float32           // [block][Heads][2][HeadDim], conversion scratch for F16 caches; nil for F32
	logits   []float32           // [block][Vocab]
	normed   []float32           // [block][Dim] final-normed rows that need logits
	outs     [][]float32         // reused argument of MatMuls
	qkv, gu  [][]*kernels.Matrix // per layer: {Wq, Wk, Wv} and {Gate, Up}
}

// NewState returns a state that runs blocks of up to maxBlock tokens (longer inputs are
// split) on pool, caching keys and values in seq.
func (m *Model) NewState(pool *kernels.Pool, seq *kvcache.Seq, maxBlock int) *State {
	if maxBlock < 1 {
		maxBlock = 1
	}
	c := m.Config
	b := maxBlock
	st := &State{
		m: m, pool: pool, Seq: seq, maxBlock: b,
		x: make([]float32, b*c.Dim), xb: make([]float32, b*c.Dim),
		q: make([]float32, b*c.Dim), k: make([]float32, b*c.KVDim()), v: make([]float32, b*c.KVDim()),
		att: make([]float32, b*c.Dim), o: make([]float32, b*c.Dim),
		gate: make([]float32, b*c.FFN), up: make([]float32, b*c.FFN),
		scores: make([]float32, b*c.Heads*c.Context),
		logits: make([]float32, b*c.Vocab),
		normed: make([]float32, b*c.Dim),
		outs:   make([][]float32, 0, 3),
		qkv:    make([][]*kernels.Matrix, c.Layers), gu: make([][]*kernels.Matrix, c.Layers),
	}
	if kc := seq.Pool().Config(); kc.Type != kernels.F32 {
		st.kvTmp = make([]float32, b*c.Heads*2*kc.BlockTokens*c.KVDim())
	}
	for i, l := range m.Blocks {
		st.qkv[i] = []*kernels.Matrix{l.Wq, l.Wk, l.Wv}
		st.gu[i] = []*kernels.Matrix{l.Gate, l.Up}
	}
	return st
}

// Warm runs one pass over a full block (maxBlock BOS tokens, every position's logits)
// on an empty sequence and empties it again, so that the state's scratch, the pool's
// activation buffers, the weights and the KV memory of the first maxBlock positions have
// all been touched once. The first real pass then runs at full speed: on this project's
// virtual machines a first 216-token prefill of the draft took 26 ms cold and 10 ms
// warm, mostly in page faults on fresh memory. llama.cpp warms up likewise.
//
// It then times, after that block, one decode step and one pass over a block of 5
// tokens: first estimates of the costs a speculation scheduler weighs.
func (s *State) Warm() (Timing, error) {
	var tm Timing
	if s.Seq.Len() != 0 {
		return tm, fmt.Errorf("warm: the sequence holds %d positions, want none", s.Seq.Len())
	}
	toks := make([]int32, max(min(s.maxBlock, s.m.Context-6), 1))
	for i := range toks {
		toks[i] = s.m.Tok.BOS()
	}
	defer s.Seq.Truncate(0)
	if _, err := s.Forward(toks, true); err != nil {
		return tm, err
	}
	for _, p := range []struct {
		n int
		d *time.Duration
	}{{1, &tm.Step}, {5, &tm.Block5}} {
		if s.Seq.Len()+p.n > s.m.Context || p.n > s.maxBlock {
			continue
		}
		t := time.Now()
		if _, err := s.Forward(toks[:min(p.n, len(toks))], true); err != nil {
			return tm, err
		}
		*p.d = time.Since(t)
	}
	return tm, nil
}

// Timing is what Warm measured; a zero field was not measured (the state's largest
// block or the context was too small).
type Timing struct {
	Step   time.Duration // one decode step
	Block5 time.Duration // one pass over a block of 5 tokens
}

// Model returns the model the state runs.
func (s *State) Model() *Model { return s.m }

// Forward runs tokens at positions Seq.Len(), Seq.Len()+1, … and appends them to the
// cache. With all set it returns len(tokens)×Vocab logits, one row per token (the
// prediction after it); otherwise only the last token's Vocab logits. The slice is
// valid until the next call. On error the cache is left as it was.
func (s *State) Forward(tokens []int32, all bool) ([]float32, error) {
	c := s.m.Config
	if len(tokens) == 0 {
		return nil, errors.New("forward: no tokens")
	}
	for i, t := range tokens {
		if t < 0 || int(t) >= c.Vocab {
			return nil, fmt.Errorf("%w: token %d at index %d (vocabulary %d)", ErrBadToken, t, i, c.Vocab)
		}
	}
	start := s.Seq.Len()
	if start+len(tokens) > c.Context {
		return nil, fmt.Errorf("%w: %d cached + %d new positions > context %d", ErrContextFull, start, len(tokens), c.Context)
	}
	if err := s.Seq.Grow(len(tokens)); err != nil {
		return nil, err
	}
	var out []float32
	if all && len(tokens) > s.maxBlock {
		out = make([]float32, len(tokens)*c.Vocab)
	}
	for lo := 0; lo < len(tokens); lo += s.maxBlock {
		hi := min(lo+s.maxBlock, len(tokens))
		last := hi == len(tokens)
		if !all && !last {
			s.block(tokens[lo:hi], start+lo, 0)
			continue
		}
		nLogits := 1
		if all {
			nLogits = hi - lo
		}
		l := s.block(tokens[lo:hi], start+lo, nLogits)
		if out == nil {
			return l, nil
		}
		copy(out[lo*c.Vocab:], l)
	}
	return out, nil
}

// block runs one block of n ≤ maxBlock tokens at positions pos…pos+n-1, whose cache
// slots exist, and returns logits for the last nLogits tokens.
func (s *State) block(tokens []int32, pos, nLogits int) []float32 {
	m, c := s.m, s.m.Config
	n := len(tokens)
	dim, kvd := c.Dim, c.KVDim()
	x := s.x[:n*dim]
	for t, id := range tokens {
		m.Embed.Row(x[t*dim:(t+1)*dim], int(id))
	}
	xb := s.xb[:n*dim]
	for li := range m.Blocks {
		l := &m.Blocks[li]
		for t := range n {
			rmsnorm(xb[t*dim:(t+1)*dim], x[t*dim:(t+1)*dim], l.AttnNorm, c.NormEps)
		}
		q, k, v := s.q[:n*dim], s.k[:n*kvd], s.v[:n*kvd]
		s.matmuls(xb, n, s.qkv[li], q, k, v)
		for t := range n {
			p := pos + t
			s.rope(q[t*dim:(t+1)*dim], p)
			s.rope(k[t*kvd:(t+1)*kvd], p)
			s.Seq.Put(li, p, k[t*kvd:(t+1)*kvd], v[t*kvd:(t+1)*kvd])
		}
		s.attention(li, pos, n)
		o := s.o[:n*dim]
		s.pool.MatMul(o, l.Wo, s.att[:n*dim], n)
		for i := range x {
			x[i] += o[i]
		}
		for t := range n {
			rmsnorm(xb[t*dim:(t+1)*dim], x[t*dim:(t+1)*dim], l.FFNNorm, c.NormEps)
		}
		g, u := s.gate[:n*c.FFN], s.up[:n*c.FFN]
		s.matmuls(xb, n, s.gu[li], g, u)
		kernels.SwiGLU(g, u)
		s.pool.MatMul(o, l.Down, g, n)
		for i := range x {
			x[i] += o[i]
		}
	}
	if nLogits == 0 {
		return nil
	}
	first := n - nLogits
	normed := s.normed[:nLogits*dim]
	for t := range nLogits {
		rmsnorm(normed[t*dim:(t+1)*dim], x[(first+t)*dim:(first+t+1)*dim], m.FinalNorm, c.NormEps)
	}
	logits := s.logits[:nLogits*c.Vocab]
	s.pool.MatMul(logits, m.Output, normed, nLogits)
	return logits
}

// matmuls multiplies x (n tokens) by several matrices sharing their input in one dispatch.
func (s *State) matmuls(x []float32, n int, ws []*kernels.Matrix, outs ...[]float32) {
	s.outs = append(s.outs[:0], outs...)
	s.pool.MatMuls(s.outs, ws, x, n)
}

// rmsnorm writes w ⊙ x / sqrt(mean(x²) + eps) to dst. The sum of squares is a dot
// product of x with itself (kernels.Scores: eight lanes, then a fixed tree), where a
// sequential sum waits on every addition; with the vector scaling, a 512-wide norm takes
// about 125 ns instead of 500.
func rmsnorm(dst, x, w []float32, eps float32) {
	var ss [1]float32
	kernels.Scores(ss[:], x, x, len(x))
	inv := float32(1 / math.Sqrt(float64(ss[0]/float32(len(x))+eps)))
	kernels.ScaleMul(dst, x, w, inv)
}

// rope rotates adjacent pairs (2i, 2i+1) of every head in vec by the angles of position p.
func (s *State) rope(vec []float32, p int) {
	c := s.m.Config
	d := c.RopeDim &^ 1
	cs, sn := s.m.ropeCS[p*d:(p+1)*d], s.m.ropeSN[p*d:(p+1)*d]
	for h := 0; h < len(vec); h += c.HeadDim {
		kernels.Rotate(vec[h:h+d], cs, sn)
	}
}

// attention computes causal multi-head attention for the n tokens at pos… against the
// cache, writing s.att. The work is split into items, each one KV head for a run of
// tokens: its queries (those tokens × the query heads sharing the KV head) go over the
// cache together, attnRows positions at a time, so that the keys and values they share
// are read from memory once and then from L1. Each (token, head) pair is still computed
// by the same code whatever n is, and in position order: its scores, one kernel call per
// run of positions (Scores treats rows independently); its softmax; its weighted sum,
// accumulated over the positions in order.
func (s *State) attention(layer, pos, n int) {
	c := s.m.Config
	group := c.Heads / c.KVHeads
	// Enough items for every thread to take a few (the vCPUs differ in speed), else one
	// per KV head with all the tokens.
	span := n
	if th := s.pool.Threads(); th > 1 {
		span = max(1, n*c.KVHeads/(4*th))
	}
	runs := (n + span - 1) / span
	s.pool.For(c.KVHeads*runs, func(lo, hi int) {
		for it := lo; it < hi; it++ {
			kh, r := it%c.KVHeads, it/c.KVHeads
			t0, t1 := r*span, min((r+1)*span, n)
			s.attendKV(layer, pos, it, kh*group, (kh+1)*group, t0, t1)
		}
	})
}

// attnRows is how many cached positions attention takes at a time: 32 keys of one head
// (32 rows of 256 bytes, 1 KB apart) stay in L1 while every query sharing them is done.
const attnRows = 32

// attendKV computes attention for tokens [t0,t1) and query heads [h0,h1), which share
// one KV head; slot indexes the F16 conversion scratch.
func (s *State) attendKV(layer, pos, slot, h0, h1, t0, t1 int) {
	c := s.m.Config
	hd, heads, kvd := c.HeadDim, c.Heads, c.KVDim()
	kvo := (h0 / (heads / c.KVHeads)) * hd
	scale := float32(1 / math.Sqrt(float64(hd)))
	bt := s.Seq.Pool().Config().BlockTokens
	var kbuf, vbuf []float32 // F16 conversion scratch; F32 blocks are read in place
	if s.kvTmp != nil {
		kbuf = s.kvTmp[slot*2*bt*kvd : (slot*2+1)*bt*kvd]
		vbuf = s.kvTmp[(slot*2+1)*bt*kvd : (slot*2+2)*bt*kvd]
	}
	last := pos + t1 - 1 // the last position any of these queries sees
	query := func(t, h int) (q, sc []float32) {
		th := t*heads + h
		return s.q[t*c.Dim+h*hd : t*c.Dim+(h+1)*hd], s.scores[th*c.Context : th*c.Context+pos+t+1]
	}
	// sweep calls fn for each run of positions [a,a+cnt) of each token's queries, in
	// position order, with rows the cache block's keys (or values) from position a on.
	// The query heads go two at a time (heads h and h+1), the last of an odd group alone:
	// which kernel serves a head never depends on the tokens in the pass.
	sweep := func(values bool, fn func(t, h int, pair bool, rows []float32, a, cnt int)) {
		for b := 0; b*bt <= last; b++ {
			k, v := s.Seq.BlockKV(layer, b, kbuf, vbuf)
			if values {
				k = v
			}
			for a := b * bt; a < min((b+1)*bt, last+1); a += attnRows {
				for t := t0; t < t1; t++ {
					cnt := min(a+attnRows, (b+1)*bt, pos+t+1) - a
					for h := h0; h < h1 && cnt > 0; h += 2 {
						fn(t, h, h+1 < h1, k[(a-b*bt)*kvd+kvo:], a, cnt)
					}
				}
			}
		}
	}
	sweep(false, func(t, h int, pair bool, keys []float32, a, cnt int) {
		q, sc := query(t, h)
		if !pair {
			kernels.Scores(sc[a:a+cnt], q, keys, kvd)
			return
		}
		q2, sc2 := query(t, h+1)
		kernels.Scores2(sc[a:a+cnt], sc2[a:a+cnt], q, q2, keys, kvd)
	})
	for t := t0; t < t1; t++ {
		for h := h0; h < h1; h++ {
			_, sc := query(t, h)
			kernels.Softmax(sc, scale)
			clear(s.att[t*c.Dim+h*hd : t*c.Dim+(h+1)*hd])
		}
	}
	sweep(true, func(t, h int, pair bool, vals []float32, a, cnt int) {
		_, sc := query(t, h)
		out := s.att[t*c.Dim+h*hd : t*c.Dim+(h+1)*hd]
		if !pair {
			kernels.Accum(out, vals, kvd, sc[a:a+cnt])
			return
		}
		_, sc2 := query(t, h+1)
		kernels.Accum2(out, s.att[t*c.Dim+(h+1)*hd:t*c.Dim+(h+2)*hd], vals, kvd, sc[a:a+cnt], sc2[a:a+cnt])
	})
}
