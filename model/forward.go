package model

import (
	"errors"
	"fmt"
	"math"
	"runtime"
	"unsafe"

	"github.com/specd-dev/specd/ggml"
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

// initRope computes, per rotated pair, what the pair's RoPE angle at any position is
// made of; ropeRow turns them into a position's (cos, cos) and (-sin, sin), the
// operands of kernels.Rotate (NEOX-style rope reads the first of each). Nothing is
// tabulated per position: a table for the trained context took a Qwen2.5-1M file
// 1 GB and seconds at load, and a 400 KB file claiming 2^20 positions of 256, 2 GiB
// and 15 s.
//
// The angles follow ggml's rope with llama.cpp's parameters: the pair's angle at
// position p is θ = p·Base^(−2i/Dim)/Freqs[i]; linear scaling divides it by Factor; yarn
// mixes θ/Factor and θ with a ramp over the pairs between the dimensions where a
// rotation completes 32 and 1 times in OrigCtx positions (beta fast and slow, llama.cpp's
// defaults), and scales cos and sin by 1 + 0.1·ln Factor. Without scaling the angles are
// exactly what they were before scaling existed (every factor is 1).
func (m *Model) initRope() {
	r := m.Rope
	d := r.Dim &^ 1
	m.ropeScale = 1.0 // the frequency scale, 1/Factor
	if r.Scaling != RopeNone {
		m.ropeScale = 1 / float64(r.Factor)
	}
	m.ropeMScale = float64(r.AttnFactor)
	var lo, hi float64 // yarn's ramp runs from pair lo (kept) to pair hi (scaled)
	yarn := r.Scaling == RopeYarn
	if yarn {
		corr := func(rotations float64) float64 {
			return float64(r.Dim) * math.Log(float64(r.OrigCtx)/(rotations*2*math.Pi)) / (2 * math.Log(float64(r.Base)))
		}
		lo = max(0, math.Floor(corr(32)))
		hi = min(float64(r.Dim-1), math.Ceil(corr(1)))
		m.ropeMScale *= 1 + 0.1*math.Log(1/m.ropeScale)
		m.ropeRamp = make([]float64, d/2)
	}
	m.ropeFreq = make([]float64, d/2)
	for i := range d / 2 {
		freq := 1 / math.Pow(float64(r.Base), float64(2*i)/float64(r.Dim))
		if r.Freqs != nil {
			freq /= float64(r.Freqs[i])
		}
		m.ropeFreq[i] = freq
		if yarn {
			m.ropeRamp[i] = 1 - min(1, max(0, (float64(i)-lo)/max(0.001, hi-lo)))
		}
	}
}

// ropeRow writes each rotated pair's (cos, cos) and (-sin, sin) at position p to cs and
// sn (Rope.Dim each).
func (m *Model) ropeRow(cs, sn []float32, p int) {
	for i, freq := range m.ropeFreq {
		extrap := float64(p) * freq
		theta := m.ropeScale * extrap
		if m.ropeRamp != nil {
			ramp := m.ropeRamp[i]
			theta = theta*(1-ramp) + extrap*ramp
		}
		s, c := math.Sincos(theta)
		if m.ropeMScale != 1 {
			s, c = s*m.ropeMScale, c*m.ropeMScale
		}
		cs[2*i], cs[2*i+1] = float32(c), float32(c)
		sn[2*i], sn[2*i+1] = -float32(s), float32(s)
	}
}

// NewKVPool returns a KV cache pool shaped for m with the given byte budget and entry type.
func (m *Model) NewKVPool(budget int64, typ ggml.Type) (*kvcache.Pool, error) {
	return kvcache.NewPool(kvcache.Config{Layers: m.Layers, KVDim: m.KVDim(), Budget: budget, Type: typ})
}

// Batch runs forward passes over several sequences at once: one pass takes a ragged
// batch of segments, each some new tokens of one sequence at that sequence's own
// positions, multiplies the weights by all their tokens together (so the weights are
// read once per pass, whoever shares it), and runs attention per sequence over its own
// KV pages. A row's arithmetic never depends on the other rows of the pass, so a
// sequence's logits are bitwise the same whatever else is batched with it.
//
// A Batch owns its scratch buffers and is used by one goroutine at a time.
type Batch struct {
	m    *Model
	pool *kernels.Pool

	maxTokens int
	// scratch holds the buffers a pass uses only inside Forward (x to up, the RoPE
	// operands and normed; not logits, which Forward returns, nor scores, which grow as
	// passes reach further: see scoresMem): outside the Go heap, so that they do not
	// count towards the collector's heap goal (see kernels.Mem), on small pages.
	scratch  *kernels.Mem
	x, xb    []float32           // [token][Dim] residual stream and normed copy
	q        []float32           // [token][QDim]
	k, v     []float32           // [token][KVDim]
	att      []float32           // [token][QDim] attention output
	o        []float32           // [token][Dim]
	gate, up []float32           // [token][FFN]
	ropeCS   []float32           // [token][Rope.Dim] the RoPE operands of each row's position (Model.ropeRow)
	ropeSN   []float32           // [token][Rope.Dim]
	scores   []float32           // [token][Heads][stride]; grown by Forward as passes reach further
	stride   int                 // positions in a row of scores: the longest sequence of the current pass
	logits   []float32           // [token][Vocab]
	normed   []float32           // [token][Dim] final-normed rows that need logits
	outs     [][]float32         // reused argument of MatMuls
	qkv, gu  [][]*kernels.Matrix // per layer: {Wq, Wk, Wv} and {Gate, Up}
	segs     []segment           // the current pass's segments
	kvTmp    []float32           // [item][2][BlockTokens][HeadDim], conversion scratch for F16 caches; nil until needed
	items    []attnItem          // the current pass's attention work
	layer    int                 // the layer attention is computing
	attnFunc func(lo, hi int)

	// scoresMem holds scores outside the Go heap, as scratch holds the other buffers;
	// Forward replaces it as they grow.
	scoresMem *kernels.Mem
}

// Segment is one sequence's part of a batched pass: Tokens run at positions Seq.Len(),
// Seq.Len()+1, … and are appended to Seq. Logits asks for the logits of the segment's
// last Logits tokens (0: none; at most len(Tokens)).
type Segment struct {
	Seq    *kvcache.Seq
	Tokens []int32
	Logits int
}

// segment is a Segment placed in the pass: its tokens are rows first… of the scratch.
type segment struct {
	seq    *kvcache.Seq
	pos    int // position of the first token
	first  int // row of the first token
	n      int
	logits int
}

// attnItem is a unit of attention work: one KV head of one segment for a run of its
// tokens [t0,t1) (rows of the pass).
type attnItem struct {
	seg    *segment
	kh     int
	t0, t1 int
}

// NewBatch returns a batch that runs passes of up to maxTokens tokens in all on pool.
func (m *Model) NewBatch(pool *kernels.Pool, maxTokens int) *Batch {
	b := max(maxTokens, 1)
	c := m.Config
	bt := &Batch{
		m: m, pool: pool, maxTokens: b,
		logits: make([]float32, b*c.Vocab),
		outs:   make([][]float32, 0, 3),
		qkv:    make([][]*kernels.Matrix, c.Layers), gu: make([][]*kernels.Matrix, c.Layers),
	}
	bufs := []struct {
		dst *[]float32
		n   int
	}{
		{&bt.x, b * c.Dim}, {&bt.xb, b * c.Dim}, {&bt.q, b * c.QDim()}, {&bt.k, b * c.KVDim()},
		{&bt.v, b * c.KVDim()}, {&bt.att, b * c.QDim()}, {&bt.o, b * c.Dim}, {&bt.gate, b * c.FFN},
		{&bt.up, b * c.FFN}, {&bt.ropeCS, b * c.Rope.Dim}, {&bt.ropeSN, b * c.Rope.Dim}, {&bt.normed, b * c.Dim},
	}
	size := 0
	for _, f := range bufs {
		size += (4*f.n + 63) &^ 63
	}
	bt.scratch = kernels.NewPagedMem(size)
	off := 0
	for _, f := range bufs {
		*f.dst = bt.scratch.Floats(off, f.n)
		off += (4*f.n + 63) &^ 63
	}
	for i, l := range m.Blocks {
		bt.qkv[i] = []*kernels.Matrix{l.Wq, l.Wk, l.Wv}
		bt.gu[i] = []*kernels.Matrix{l.Gate, l.Up}
	}
	bt.attnFunc = bt.attendItems
	return bt
}

// MaxTokens is the most tokens one pass takes.
func (b *Batch) MaxTokens() int { return b.maxTokens }

// Model returns the model the batch runs.
func (b *Batch) Model() *Model { return b.m }

// Forward runs one pass over segs and returns the logits they asked for: the rows of
// each segment in order, each Vocab floats (the prediction after that token). The slice
// is valid until the next call. The segments' tokens together may not exceed MaxTokens,
// and no two segments may share a Seq. On error no cache is changed.
func (b *Batch) Forward(segs []Segment) ([]float32, error) {
	c := b.m.Config
	total := 0
	for i, sg := range segs {
		if len(sg.Tokens) == 0 {
			return nil, fmt.Errorf("forward: segment %d has no tokens", i)
		}
		if sg.Logits < 0 || sg.Logits > len(sg.Tokens) {
			return nil, fmt.Errorf("forward: segment %d asks for %d logits of %d tokens", i, sg.Logits, len(sg.Tokens))
		}
		for j, t := range sg.Tokens {
			if t < 0 || int(t) >= c.Vocab {
				return nil, fmt.Errorf("%w: token %d at index %d (vocabulary %d)", ErrBadToken, t, j, c.Vocab)
			}
		}
		if l := sg.Seq.Len(); l+len(sg.Tokens) > c.Context {
			return nil, fmt.Errorf("%w: %d cached + %d new positions > context %d", ErrContextFull, l, len(sg.Tokens), c.Context)
		}
		for _, o := range segs[:i] {
			if o.Seq == sg.Seq {
				return nil, fmt.Errorf("forward: segment %d shares its sequence with an earlier one", i)
			}
		}
		total += len(sg.Tokens)
	}
	if total == 0 {
		return nil, errors.New("forward: no tokens")
	}
	if total > b.maxTokens {
		return nil, fmt.Errorf("forward: %d tokens in one pass, at most %d", total, b.maxTokens)
	}
	b.stride = 0
	for _, sg := range segs {
		b.stride = max(b.stride, sg.Seq.Len()+len(sg.Tokens))
	}
	// The scores cover the positions this pass reaches, not the trained context up
	// front: Qwen2.5-7B-1M's 28 heads over 1010000 positions would take 7 GB for 64-token
	// passes before a token ran. They grow to at least twice their size, so that a
	// sequence growing a token at a time reallocates them a logarithmic number of times.
	// They are outside the heap: grown by a long request after a serving process has set
	// its soft memory limit, on the heap they could hold it over the limit for good.
	if need := total * c.Heads * b.stride; need > len(b.scores) {
		n := min(max(need, 2*len(b.scores)), b.maxTokens*c.Heads*c.Context)
		b.scoresMem = kernels.NewPagedMem(4 * n)
		b.scores = b.scoresMem.Floats(0, n)
	}
	b.segs = b.segs[:0]
	row := 0
	for _, sg := range segs {
		pos := sg.Seq.Len()
		if err := sg.Seq.Grow(len(sg.Tokens)); err != nil {
			for _, d := range b.segs {
				d.seq.Truncate(d.pos)
			}
			b.segs = b.segs[:0]
			return nil, err
		}
		b.segs = append(b.segs, segment{seq: sg.Seq, pos: pos, first: row, n: len(sg.Tokens), logits: sg.Logits})
		for t, id := range sg.Tokens {
			b.m.Embed.Row(b.x[(row+t)*c.Dim:(row+t+1)*c.Dim], int(id))
		}
		row += len(sg.Tokens)
	}
	return b.run(total), nil
}

// State runs forward passes for one sequence: a Batch of one segment, with long inputs
// split into passes of at most maxBlock tokens. It is used by one goroutine at a time.
type State struct {
	b   *Batch
	Seq *kvcache.Seq

	maxBlock int
	seg      [1]Segment
}

// NewState returns a state that runs blocks of up to maxBlock tokens (longer inputs are
// split) on pool, caching keys and values in seq.
func (m *Model) NewState(pool *kernels.Pool, seq *kvcache.Seq, maxBlock int) *State {
	maxBlock = max(maxBlock, 1)
	return &State{b: m.NewBatch(pool, maxBlock), Seq: seq, maxBlock: maxBlock}
}

// Warm runs one pass over a full block (maxBlock BOS tokens, every position's logits)
// on an empty sequence and empties it again, so that the state's scratch, the pool's
// activation buffers, the weights and the KV memory of the first maxBlock positions have
// all been touched once. The first real pass then runs at full speed: on this project's
// virtual machines a first 216-token prefill of the draft took 26 ms cold and 10 ms
// warm, mostly in page faults on fresh memory. llama.cpp warms up likewise.
func (s *State) Warm() error {
	if s.Seq.Len() != 0 {
		return fmt.Errorf("warm: the sequence holds %d positions, want none", s.Seq.Len())
	}
	toks := make([]int32, max(min(s.maxBlock, s.b.m.Context-6), 1))
	for i := range toks {
		toks[i] = max(s.b.m.Tok.BOS(), 0) // id 0 where the vocabulary names no BOS (-1)
	}
	defer s.Seq.Truncate(0)
	_, err := s.Forward(toks, true)
	return err
}

// Model returns the model the state runs.
func (s *State) Model() *Model { return s.b.m }

// Forward runs tokens at positions Seq.Len(), Seq.Len()+1, … and appends them to the
// cache. With all set it returns len(tokens)×Vocab logits, one row per token (the
// prediction after it); otherwise only the last token's Vocab logits. The slice is
// valid until the next call. On error the cache is left as it was.
func (s *State) Forward(tokens []int32, all bool) ([]float32, error) {
	c := s.b.m.Config
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
	var out []float32
	if all && len(tokens) > s.maxBlock {
		out = make([]float32, len(tokens)*c.Vocab)
	}
	for lo := 0; lo < len(tokens); lo += s.maxBlock {
		hi := min(lo+s.maxBlock, len(tokens))
		n := 0
		switch {
		case all:
			n = hi - lo
		case hi == len(tokens):
			n = 1
		}
		s.seg[0] = Segment{Seq: s.Seq, Tokens: tokens[lo:hi], Logits: n}
		l, err := s.b.Forward(s.seg[:])
		s.seg[0] = Segment{}
		if err != nil {
			s.Seq.Truncate(start)
			return nil, err
		}
		if out == nil && hi == len(tokens) {
			return l, nil
		}
		if out != nil {
			copy(out[lo*c.Vocab:], l)
		}
	}
	return out, nil
}

// run computes the pass over the n rows of b.segs, whose embeddings are in b.x and whose
// cache slots exist, and returns the logits the segments asked for.
func (b *Batch) run(n int) []float32 {
	m, c := b.m, b.m.Config
	dim, qd, kvd := c.Dim, c.QDim(), c.KVDim()
	x, xb := b.x[:n*dim], b.xb[:n*dim]
	rd := c.Rope.Dim
	for _, sg := range b.segs {
		for t := sg.first; t < sg.first+sg.n; t++ {
			m.ropeRow(b.ropeCS[t*rd:(t+1)*rd], b.ropeSN[t*rd:(t+1)*rd], sg.pos+t-sg.first)
		}
	}
	for li := range m.Blocks {
		l := &m.Blocks[li]
		for t := range n {
			rmsnorm(xb[t*dim:(t+1)*dim], x[t*dim:(t+1)*dim], l.AttnNorm, c.NormEps)
		}
		q, k, v := b.q[:n*qd], b.k[:n*kvd], b.v[:n*kvd]
		b.matmuls(xb, n, b.qkv[li], q, k, v)
		for i := range b.segs {
			sg := &b.segs[i]
			for t := sg.first; t < sg.first+sg.n; t++ {
				p := sg.pos + t - sg.first
				qt, kt, vt := q[t*qd:(t+1)*qd], k[t*kvd:(t+1)*kvd], v[t*kvd:(t+1)*kvd]
				if l.Bq != nil {
					addTo(qt, l.Bq)
					addTo(kt, l.Bk)
					addTo(vt, l.Bv)
				}
				if l.QNorm != nil {
					b.headNorm(qt, l.QNorm)
					b.headNorm(kt, l.KNorm)
				}
				b.rope(qt, t)
				b.rope(kt, t)
				sg.seq.Put(li, p, kt, vt)
			}
		}
		b.attention(li)
		o := b.o[:n*dim]
		b.pool.MatMul(o, l.Wo, b.att[:n*qd], n)
		for i := range x {
			x[i] += o[i]
		}
		for t := range n {
			rmsnorm(xb[t*dim:(t+1)*dim], x[t*dim:(t+1)*dim], l.FFNNorm, c.NormEps)
		}
		g, u := b.gate[:n*c.FFN], b.up[:n*c.FFN]
		b.matmuls(xb, n, b.gu[li], g, u)
		kernels.SwiGLU(g, u)
		b.pool.MatMul(o, l.Down, g, n)
		for i := range x {
			x[i] += o[i]
		}
	}
	rows := 0
	for _, sg := range b.segs {
		rows += sg.logits
	}
	if rows == 0 {
		return nil
	}
	normed := b.normed[:rows*dim]
	r := 0
	for _, sg := range b.segs {
		for t := sg.first + sg.n - sg.logits; t < sg.first+sg.n; t++ {
			rmsnorm(normed[r*dim:(r+1)*dim], x[t*dim:(t+1)*dim], m.FinalNorm, c.NormEps)
			r++
		}
	}
	logits := b.logits[:rows*c.Vocab]
	b.pool.MatMul(logits, m.Output, normed, rows)
	runtime.KeepAlive(b) // b.scratch, which normed is a view of, until the product is done
	return logits
}

// matmuls multiplies x (n tokens) by several matrices sharing their input in one dispatch.
func (b *Batch) matmuls(x []float32, n int, ws []*kernels.Matrix, outs ...[]float32) {
	b.outs = append(b.outs[:0], outs...)
	b.pool.MatMuls(b.outs, ws, x, n)
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

// addTo adds bias to x, element by element.
func addTo(x, bias []float32) {
	for i, v := range bias[:len(x)] {
		x[i] += v
	}
}

// headNorm RMS-normalizes each head of vec in place with weights w (qwen3's Q and K norms).
func (b *Batch) headNorm(vec, w []float32) {
	hd := b.m.HeadDim
	for h := 0; h < len(vec); h += hd {
		rmsnorm(vec[h:h+hd], vec[h:h+hd], w, b.m.NormEps)
	}
}

// rope rotates every head of vec by the angles of row t's position: adjacent pairs
// (2i, 2i+1), or for NEOX-style rope the pairs (i, i+Rope.Dim/2). Dimensions past
// Rope.Dim stay.
func (b *Batch) rope(vec []float32, t int) {
	m := b.m
	d := m.Rope.Dim &^ 1
	cs, sn := b.ropeCS[t*m.Rope.Dim:t*m.Rope.Dim+d], b.ropeSN[t*m.Rope.Dim:t*m.Rope.Dim+d]
	if !m.Rope.Neox {
		for h := 0; h < len(vec); h += m.HeadDim {
			kernels.Rotate(vec[h:h+d], cs, sn)
		}
		return
	}
	half := d / 2
	for h := 0; h < len(vec); h += m.HeadDim {
		lo, hi := vec[h:h+half], vec[h+half:h+d]
		for i := range lo {
			// Each product rounded on its own, as kernels.Rotate does.
			a, z, cos, sin := lo[i], hi[i], cs[2*i], sn[2*i+1]
			lo[i] = float32(a*cos) - float32(z*sin)
			hi[i] = float32(z*cos) + float32(a*sin)
		}
	}
}

// attention computes causal multi-head attention for every row of the pass against its
// own sequence's cache, writing b.att. The work is split into items, each one KV head of
// one segment for a run of its tokens: its queries (those tokens × the query heads
// sharing the KV head) go over the cache together, a cache block at a time, so that
// the keys and values they share are read from memory once and then from L1. Each
// (token, head) pair is still computed by the same code whatever else is in the pass,
// and in position order: its scores, one kernel call per cache block (Scores treats
// rows independently); its softmax; its weighted sum, accumulated over the positions in
// order.
func (b *Batch) attention(layer int) {
	c := b.m.Config
	th := b.pool.Threads()
	b.items = b.items[:0]
	maxBT := 0
	for i := range b.segs {
		sg := &b.segs[i]
		// Enough items for every thread to take a few (the vCPUs differ in speed), else
		// one per KV head with all of a segment's tokens.
		span := sg.n
		if th > 1 {
			span = max(1, sg.n*c.KVHeads*len(b.segs)/(4*th))
		}
		for t0 := sg.first; t0 < sg.first+sg.n; t0 += span {
			for kh := range c.KVHeads {
				b.items = append(b.items, attnItem{seg: sg, kh: kh, t0: t0, t1: min(t0+span, sg.first+sg.n)})
			}
		}
		if kc := sg.seq.Pool().Config(); kc.Type != ggml.F32 && span > halfDirectTokens {
			maxBT = max(maxBT, kc.BlockTokens)
		}
	}
	if need := len(b.items) * 2 * maxBT * c.HeadDim; need > len(b.kvTmp) {
		b.kvTmp = make([]float32, need)
	}
	b.layer = layer
	b.pool.For(len(b.items), b.attnFunc)
}

// halfDirectTokens is the most tokens an attention item may have for it to read an F16
// cache's halves directly, converting in registers in every kernel call. Items with
// more tokens convert a block's keys and values once into scratch and share the
// floats: their kernels are bound by arithmetic, and each call's conversions would
// cost more than the bytes they save (one sequence at 100 positions, one thread: 2
// tokens 74 µs direct against 87 converted, 4 tokens even, 8 tokens 260 against 255).
// Either way the results are the same bits.
var halfDirectTokens = 4

// attendItems computes attention items [lo,hi) of the current pass.
func (b *Batch) attendItems(lo, hi int) {
	group := b.m.Heads / b.m.KVHeads
	for i := lo; i < hi; i++ {
		it := &b.items[i]
		b.attendKV(b.layer, it.seg, i, it.kh*group, (it.kh+1)*group, it.t0, it.t1)
	}
}

// attendKV computes attention for rows [t0,t1) of segment sg and query heads [h0,h1),
// which share one KV head. The cache goes by a block at a time: its keys (or values)
// of this head, 16 KB for the target's blocks of 64 (8 KB as F16, read as stored and
// converted in registers), stay in L1 while every query sharing them takes all of the block's positions it
// sees in one kernel call. The query heads go two at a time (heads h and h+1), the last
// of an odd group alone: which kernel serves a head never depends on the tokens in the
// pass. The weighted sums of a head's tokens go two or four at a time too, but those
// kernels give bitwise so many Accum calls.
func (b *Batch) attendKV(layer int, sg *segment, slot, h0, h1, t0, t1 int) {
	c := b.m.Config
	hd, heads, kvd, qd := c.HeadDim, c.Heads, c.KVDim(), c.QDim()
	kvo := (h0 / (heads / c.KVHeads)) * hd
	scale := float32(1 / math.Sqrt(float64(hd)))
	seq := sg.seq
	bt := seq.Pool().Config().BlockTokens
	half := seq.Pool().Config().Type == ggml.F16
	direct := half && t1-t0 <= halfDirectTokens
	off := sg.pos - sg.first // row t sits at position off+t
	last := off + t1 - 1     // the last position any of these queries sees
	query := func(t, h int) (q, sc []float32) {
		th := t*heads + h
		return b.q[t*qd+h*hd : t*qd+(h+1)*hd], b.scores[th*b.stride : th*b.stride+off+t+1]
	}
	// rows returns this head's keys (or values) in block blk, one row of hd per
	// position, for the first n positions of the block: floats stride apart (an F32
	// cache in place, or an F16 cache's converted into scratch), or, read directly, the
	// halves as stored (kvd apart). The kernels give the same bits on either.
	rows := func(values bool, blk, n int) (f []float32, h []uint16, stride int) {
		if !half {
			k, v := seq.BlockKV(layer, blk, nil, nil)
			if values {
				k = v
			}
			return k[kvo:], nil, kvd
		}
		k, v := seq.BlockHalves(layer, blk)
		if values {
			k = v
		}
		if direct {
			return nil, k[kvo:], kvd
		}
		buf := b.kvTmp[slot*2*bt*hd : (slot*2+1)*bt*hd]
		if values {
			buf = b.kvTmp[(slot*2+1)*bt*hd : (slot*2+2)*bt*hd]
		}
		kernels.HalfRows(buf, hd, k[kvo:], kvd, n, hd)
		return buf, nil, hd
	}
	for blk := 0; blk*bt <= last; blk++ {
		a := blk * bt
		kf, kh, ks := rows(false, blk, min(bt, last+1-a))
		for t := t0; t < t1; t++ {
			cnt := min(bt, off+t+1-a)
			if cnt <= 0 {
				continue
			}
			for h := h0; h < h1; h += 2 {
				q, sc := query(t, h)
				switch {
				case h+1 == h1 && direct:
					kernels.ScoresHalf(sc[a:a+cnt], q, kh, ks)
				case h+1 == h1:
					kernels.Scores(sc[a:a+cnt], q, kf, ks)
				case direct:
					q2, sc2 := query(t, h+1)
					kernels.Scores2Half(sc[a:a+cnt], sc2[a:a+cnt], q, q2, kh, ks)
				default:
					q2, sc2 := query(t, h+1)
					kernels.Scores2(sc[a:a+cnt], sc2[a:a+cnt], q, q2, kf, ks)
				}
			}
		}
	}
	for t := t0; t < t1; t++ {
		for h := h0; h < h1; h++ {
			_, sc := query(t, h)
			kernels.Softmax(sc, scale)
			clear(b.att[t*qd+h*hd : t*qd+(h+1)*hd])
		}
	}
	// accum adds the weighted values of rows [r0,r1) of the block (positions a+r0…) to
	// token t's outputs of heads h and, with pair, h+1.
	accum := func(t, h int, pair bool, vf []float32, vh []uint16, vs, a, r0, r1 int) {
		_, sc := query(t, h)
		out := b.att[t*qd+h*hd : t*qd+(h+1)*hd]
		switch {
		case !pair && direct:
			kernels.AccumHalf(out, vh[r0*vs:], vs, sc[a+r0:a+r1])
		case !pair:
			kernels.Accum(out, vf[r0*vs:], vs, sc[a+r0:a+r1])
		default:
			_, sc2 := query(t, h+1)
			out2 := b.att[t*qd+(h+1)*hd : t*qd+(h+2)*hd]
			if direct {
				kernels.Accum2Half(out, out2, vh[r0*vs:], vs, sc[a+r0:a+r1], sc2[a+r0:a+r1])
			} else {
				kernels.Accum2(out, out2, vf[r0*vs:], vs, sc[a+r0:a+r1], sc2[a+r0:a+r1])
			}
		}
	}
	// tokensAccum adds, for k (2 or 4) tokens from t of head h, the weighted values
	// of the rows of the block all of them see with one Accum2 or Accum4 call (k
	// Accum calls, bit for bit), then each later token's few more rows alone.
	tokensAccum := func(t, k, h int, vf []float32, vh []uint16, vs, a int) {
		cnt := max(min(bt, off+t+1-a), 0)
		if cnt > 0 {
			var o, w [4][]float32
			for i := range k {
				_, sc := query(t+i, h)
				o[i], w[i] = b.att[(t+i)*qd+h*hd:(t+i)*qd+(h+1)*hd], sc[a:a+cnt]
			}
			switch {
			case k == 2 && direct:
				kernels.Accum2Half(o[0], o[1], vh, vs, w[0], w[1])
			case k == 2:
				kernels.Accum2(o[0], o[1], vf, vs, w[0], w[1])
			case direct:
				kernels.Accum4Half(o[0], o[1], o[2], o[3], vh, vs, w[0], w[1], w[2], w[3])
			default:
				kernels.Accum4(o[0], o[1], o[2], o[3], vf, vs, w[0], w[1], w[2], w[3])
			}
		}
		for u := t + 1; u < t+k; u++ {
			if cu := min(bt, off+u+1-a); cu > cnt {
				accum(u, h, false, vf, vh, vs, a, cnt, cu)
			}
		}
	}
	for blk := 0; blk*bt <= last; blk++ {
		a := blk * bt
		vf, vh, vs := rows(true, blk, min(bt, last+1-a))
		for h := h0; h < h1; h += 2 {
			pair := h+1 < h1
			t := t0
			// Two tokens at a time take the rows both see together (Accum4 is four
			// Accum calls, bit for bit), then the later token its one more row.
			for ; pair && t+1 < t1; t += 2 {
				cnt := max(min(bt, off+t+1-a), 0)
				if cnt > 0 {
					_, s1 := query(t, h)
					_, s2 := query(t, h+1)
					_, s3 := query(t+1, h)
					_, s4 := query(t+1, h+1)
					o, o1 := t*qd+h*hd, (t+1)*qd+h*hd
					u1, u2, u3, u4 := b.att[o:o+hd], b.att[o+hd:o+2*hd], b.att[o1:o1+hd], b.att[o1+hd:o1+2*hd]
					if direct {
						kernels.Accum4Half(u1, u2, u3, u4, vh, vs, s1[a:a+cnt], s2[a:a+cnt], s3[a:a+cnt], s4[a:a+cnt])
					} else {
						kernels.Accum4(u1, u2, u3, u4, vf, vs, s1[a:a+cnt], s2[a:a+cnt], s3[a:a+cnt], s4[a:a+cnt])
					}
				}
				if cnt2 := min(bt, off+t+2-a); cnt2 > cnt {
					accum(t+1, h, pair, vf, vh, vs, a, cnt, cnt2)
				}
			}
			// A head without a partner (its KV head its own, as the draft's, or the
			// last of an odd group) takes four tokens, then two, at a time the same
			// way: one pass over the values for all of them, with FMA chains enough to
			// hide FMA latency where a small head's few would wait.
			for ; !pair && t+3 < t1; t += 4 {
				tokensAccum(t, 4, h, vf, vh, vs, a)
			}
			for ; !pair && t+1 < t1; t += 2 {
				tokensAccum(t, 2, h, vf, vh, vs, a)
			}
			for ; t < t1; t++ {
				if cnt := min(bt, off+t+1-a); cnt > 0 {
					accum(t, h, pair, vf, vh, vs, a, 0, cnt)
				}
			}
		}
	}
}
