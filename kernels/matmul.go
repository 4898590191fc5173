package kernels

import (
	"fmt"
	"math"

	"github.com/specd-dev/specd/ggml"
)

// A kernel set is one implementation of the matrix-product inner kernels. Every kernel
// computes, for rows [0,nrows) of a weight slice and tokens [0,ntok) of the activations,
// out[t*ostride+r] = dot(row r, token t), with ntok at most group.
//
// Batch invariance rests on one rule every implementation keeps: the floating-point
// operations that produce out[t*ostride+r] are the same whatever ntok is and whichever
// position t has in the group. Only weight loads (exact) are shared between tokens; each
// token has its own accumulators, reduced in the same order.
type kernelSet struct {
	name  string
	group int // most tokens per kernel call

	// Float weights against float32 activations, token t at x[t*cols:].
	f32, f16, bf16 func(out []float32, ostride int, w []byte, rowBytes, nrows int, x []float32, cols, ntok int)
	// Quantized weights against Q8_0 activations prepared by prep.
	q8, q4 func(out []float32, ostride int, w []byte, rowBytes, nrows int, a *acts, tok, ntok int)
	// prep quantizes n tokens of x into a, in the layout the q8/q4 kernels read.
	prep func(a *acts, x []float32, n, cols int)
	// prepK is prep with Q8_K values (see quantizeActsQ8K), for K-quant weights in the
	// sub-type layout (subp, subMinp); nil when the set has no such layout.
	prepK func(a *acts, x []float32, n, cols int)

	// Optional kernels over packed weights (see Matrix.Pack): pack lays out a matrix,
	// packed[kind] reads it (w and rowBytes those of the packed copy) against
	// activations sized by sizeP and filled token by token by prepTokP (tokens may be
	// prepared concurrently). Nil when the set has no packed layout (or none for kind).
	// prepTokPK fills a token with Q8_K values instead, for K-quant weights.
	pack      func(m *Matrix) *hugeMem
	packed    [numKinds]quantKernel
	sizeP     func(a *acts, n, cols int)
	prepTokP  func(a *acts, x []float32, t, cols int)
	prepTokPK func(a *acts, x []float32, t, cols int)

	// Optional kernels over packed weights for blocks of wideMin tokens or more, at most
	// wideGroup a call, on an even number of rows. Each (row, token) gets the operations
	// of packed[kind], so results do not depend on which kernel ran. Nil when the set
	// has none for kind.
	wide               [numKinds]quantKernel
	wideGroup, wideMin int

	// Optional kernels over packed weights laid out in tiles of 16 rows (see
	// packTilesQ4K, packTilesBytes), whose rows lie in the lanes of a vector:
	// tiled[kind] reads them (w the packed copy, rowBytes the bytes of a tile, row
	// offsets multiples of 16), at most tileGroup[kind] tokens a call, against the
	// activations of prepTokP/prepTokPK. A kind with tiled kernels has neither packed
	// nor wide ones. Nil when the set has none for kind.
	tiled     [numKinds]quantKernel
	tileGroup [numKinds]int

	// Optional kernels over weights of the sub types (not Q8_0 and Q4_0) repacked by
	// pack in a layout of their own that is read against the activations of prep, as
	// q8 and q4 read theirs: subp for types without offsets, subMinp with. Nil when
	// the set packs sub types in the packKind layouts (or not at all).
	subp, subMinp quantKernel
}

// quantKernel is the signature of the kernels over quantized weights: rows [0,nrows) of
// w (rowBytes apart) against tokens [tok,tok+ntok) of a, token t's outputs at
// out[(t-tok)*ostride:].
type quantKernel func(out []float32, ostride int, w []byte, rowBytes, nrows int, a *acts, tok, ntok int)

// subPacked reports whether ks packs weights of type t in its own sub-type layout
// (subp, subMinp), whose kernels read the activations of prep.
func (ks *kernelSet) subPacked(t ggml.Type) bool {
	return ks.subp != nil && t != ggml.Q8_0 && t != ggml.Q4_0
}

// tiles reports whether ks packs weights of type t in tiles of 16 rows (see tiled).
func (ks *kernelSet) tiles(t ggml.Type) bool {
	return ks.tiled[packKindOf(t)] != nil
}

// hasOffsets reports whether weights of type t decode with offsets (subScales.fl, fh).
func hasOffsets(t ggml.Type) bool {
	switch t {
	case ggml.Q2_K, ggml.Q4_K, ggml.Q5_K, ggml.Q5_1:
		return true
	}
	return false
}

// usesWide reports whether n tokens of the packed w go through ks's wide kernels.
func (ks *kernelSet) usesWide(w *Matrix, n int) bool {
	return w.packedBy == ks && n >= ks.wideMin && ks.wide[packKindOf(w.Type)] != nil
}

// acts holds quantized activations for the kernels over quantized weights. The layout
// belongs to the kernel set that prepared them; the values are those of ggml's
// quantize_row_q8_0_ref (quantizeActs), or of its quantize_row_q8_K_ref for K-quant
// weights (quantizeActsQ8K), whose super-block scale then stands at each of its blocks.
type acts struct {
	nb int // blocks per token
	// Generic layout: values of token t at q[t*nb*QK:], block scales (fp16-rounded) at
	// d[t*nb:]. Assembly layouts keep the scales inline in q, stride bytes per token.
	q      []byte
	d      []float32
	stride int
}

// quantizeActs fills a with n tokens of x in the generic layout: per block of QK,
// d = amax/127 and q = round(x/d) as quantize_row_q8_0_ref computes them, with d stored
// rounded to fp16 as the block format keeps it.
func quantizeActs(a *acts, x []float32, n, cols int) {
	nb := cols / ggml.QK
	a.nb, a.stride = nb, 0
	a.q = grow(a.q, n*nb*ggml.QK)
	a.d = grow(a.d, n*nb)
	for t := range n {
		xt := x[t*cols : (t+1)*cols]
		for b := range nb {
			blk := xt[b*ggml.QK : (b+1)*ggml.QK]
			d, id := q8Scale(blk)
			q := a.q[(t*nb+b)*ggml.QK : (t*nb+b+1)*ggml.QK]
			for j, v := range blk {
				q[j] = byte(roundAway(v * id))
			}
			a.d[t*nb+b] = f16Table[FP32ToFP16(d)]
		}
	}
}

// The implementations this CPU can run, best first; registered by impl_*.go.
var (
	impls []*kernelSet
	cur   *kernelSet
)

// Impl names the implementation in use: "avx512vnni", "avx2" or "generic". The best one
// the CPU supports is chosen at start-up.
func Impl() string { return cur.name }

// UseImpl switches every Pool to the named implementation, for tests and benchmarks that
// compare them. It returns an error if the name is unknown or this CPU cannot run it. It
// must not be called while a MatMul is running.
func UseImpl(name string) error {
	for _, k := range impls {
		if k.name == name {
			cur = k
			return nil
		}
	}
	var names []string
	for _, k := range impls {
		names = append(names, k.name)
	}
	return fmt.Errorf("kernels: implementation %q not available on this CPU (have %v)", name, names)
}

// Implementations lists the implementations this CPU can run, best first.
func Implementations() []string {
	var names []string
	for _, k := range impls {
		names = append(names, k.name)
	}
	return names
}

// matmulState is the pool's current MatMuls job and its scratch, reused across calls.
// Each matrix reads one of six activation sets, by how it is laid out and whether its
// type takes Q8_0 or Q8_K activations (see actsFor).
type matmulState struct {
	ks     *kernelSet
	outs   [][]float32
	ws     []*Matrix
	x      []float32
	n      int
	cols   int
	first  []int // first chunk of each matrix, plus the total at the end
	rowsPC []int // rows per chunk of each matrix
	acts   acts  // ks.prep: unpacked Q8_0/Q4_0, and the other types in ks's sub-type layout
	kacts  acts  // ks.prepK: K-quants in ks's sub-type layout
	gacts  acts  // generic layout: unpacked weights of the other quantized types
	gkacts acts  // generic layout, Q8_K values: unpacked K-quants
	pacts  acts  // packed weights
	pkacts acts  // packed K-quants, Q8_K values
	prepP  bool  // whether prepTokens fills pacts, pkacts
	prepPK bool
	one    [1]*Matrix
	oneOut [1][]float32
}

// The activation sets of matmulState.
const (
	setNone = iota
	setPrep
	setPrepK
	setGeneric
	setGenericK
	setPacked
	setPackedK
)

// actsFor returns the activation set the products of w read with ks (setNone: float
// weights, which read x).
func actsFor(ks *kernelSet, w *Matrix) int {
	k := usesQ8K(w.Type)
	switch {
	case w.packedBy == ks && ks.subPacked(w.Type) && k:
		return setPrepK
	case w.packedBy == ks && ks.subPacked(w.Type):
		return setPrep
	case w.packedBy == ks && k:
		return setPackedK
	case w.packedBy == ks:
		return setPacked
	case w.Type == ggml.Q8_0 || w.Type == ggml.Q4_0:
		return setPrep
	case k:
		return setGenericK
	case w.Type.BlockSize() > 1:
		return setGeneric
	}
	return setNone
}

// set returns the activations of set s.
func (m *matmulState) set(s int) *acts {
	switch s {
	case setPrep:
		return &m.acts
	case setPrepK:
		return &m.kacts
	case setGeneric:
		return &m.gacts
	case setGenericK:
		return &m.gkacts
	case setPacked:
		return &m.pacts
	case setPackedK:
		return &m.pkacts
	}
	return nil
}

// MatMul computes out[t*w.Rows+r] = dot(row r of w, x[t*w.Cols:(t+1)*w.Cols]) for n
// tokens. For quantized weights each token is first quantized as ggml does for that
// type: to Q8_K (one scale per 256 values) for the K-quants, to Q8_0 (one per 32) for
// the others; each block product is then an exact integer sum, scaled. F32, F16 and BF16
// weights multiply float32 x directly.
//
// The result for a (row, token) is bitwise the same whatever n, the token's position and
// the pool's thread count, for a given implementation (see UseImpl): rows are split among
// threads, never a dot product. MatMul panics if out or x is too short.
func (p *Pool) MatMul(out []float32, w *Matrix, x []float32, n int) {
	p.mm.one[0], p.mm.oneOut[0] = w, out
	p.MatMuls(p.mm.oneOut[:], p.mm.one[:], x, n)
	p.mm.one[0], p.mm.oneOut[0] = nil, nil
}

// MatMuls computes outs[i] = MatMul(ws[i], x) for matrices of the same Cols in one
// parallel dispatch, as for the Q, K and V projections. It panics if the matrices differ
// in Cols, a matrix is malformed (see NewMatrix) or a slice is too short.
func (p *Pool) MatMuls(outs [][]float32, ws []*Matrix, x []float32, n int) {
	if len(outs) != len(ws) {
		panic("kernels: MatMuls with different numbers of outputs and matrices")
	}
	if n <= 0 || len(ws) == 0 {
		return
	}
	cols := ws[0].Cols
	m := &p.mm
	m.ks = cur
	var need [setPackedK + 1]bool
	for i, w := range ws {
		if !w.Type.Supported() || len(w.Data) != w.Rows*w.RowBytes() {
			panic(fmt.Sprintf("kernels: MatMul of a malformed %d×%d %v matrix (%d bytes)", w.Rows, w.Cols, w.Type, len(w.Data)))
		}
		if w.Cols != cols {
			panic(fmt.Sprintf("kernels: MatMuls of matrices with %d and %d columns", cols, w.Cols))
		}
		if len(outs[i]) < n*w.Rows {
			panic(fmt.Sprintf("kernels: MatMul output of %d floats for %d×%d", len(outs[i]), n, w.Rows))
		}
		need[actsFor(m.ks, w)] = true
	}
	if len(x) < n*cols {
		panic(fmt.Sprintf("kernels: MatMul input of %d floats for %d×%d", len(x), n, cols))
	}
	if need[setPrep] {
		m.ks.prep(&m.acts, x, n, cols)
	}
	if need[setPrepK] {
		m.ks.prepK(&m.kacts, x, n, cols)
	}
	if need[setGeneric] {
		quantizeActs(&m.gacts, x, n, cols)
	}
	if need[setGenericK] {
		quantizeActsQ8K(&m.gkacts, x, n, cols)
	}
	m.prepP, m.prepPK = need[setPacked], need[setPackedK]
	if m.prepP || m.prepPK {
		if m.prepP {
			m.ks.sizeP(&m.pacts, n, cols)
		}
		if m.prepPK {
			m.ks.sizeP(&m.pkacts, n, cols)
		}
		m.x, m.cols = x, cols
		// Several tokens' activations are prepared on all threads: serial, this was
		// about a tenth of a 5-token forward pass with two threads.
		p.For(n, p.prepFunc)
	}
	m.outs, m.ws, m.x, m.n = outs, ws, x, n

	// Rows are cut into chunks for the threads to share dynamically. With several threads
	// aim for a few chunks each (the two vCPUs differ in speed), but keep chunks large
	// enough that the per-chunk cost stays small next to the work. Small products run on
	// the caller alone: splitting them costs more in dispatch and in weights moving
	// between the cores' caches than it saves.
	work := 0
	for _, w := range ws {
		work += len(w.Data) * n
	}
	parallel := p.threads > 1 && work >= minParallelWork
	m.first, m.rowsPC = m.first[:0], m.rowsPC[:0]
	total := 0
	for _, w := range ws {
		rpc := max(w.Rows, 1)
		if parallel {
			rpc = chunkRows(m.ks, w, p.threads, n)
		}
		m.first = append(m.first, total)
		m.rowsPC = append(m.rowsPC, rpc)
		total += (w.Rows + rpc - 1) / rpc
	}
	m.first = append(m.first, total)
	if parallel {
		p.run(total, p.mmChunkFunc)
	} else {
		for c := range total {
			p.mmChunk(c)
		}
	}
	m.outs, m.ws, m.x = nil, nil, nil
}

// minParallelWork is the weight bytes × tokens below which a MatMuls runs on one thread.
const minParallelWork = 512 << 10

// chunkRows picks the rows per chunk of w for a pool of threads and n tokens.
func chunkRows(ks *kernelSet, w *Matrix, threads, n int) int {
	if w.packedBy == ks && ks.tiles(w.Type) {
		// Whole tiles, about four chunks a thread as for the wide kernels below.
		rows := max(w.Rows/(4*threads), tileRows)
		return (rows + tileRows - 1) &^ (tileRows - 1)
	}
	if ks.usesWide(w, n) {
		// Wide blocks: a chunk is long enough whatever its rows (16 rows of 16 tokens
		// are over 1000 products), and what matters is that the threads finish together:
		// four chunks a thread, whole blocks of the wide kernels. With chunks for 64KB
		// of weights as below, a 512-row matrix was five chunks for two threads.
		rows := max(w.Rows/(4*threads), wideTileRows)
		return (rows + wideTileRows - 1) &^ (wideTileRows - 1)
	}
	const minChunkBytes = 64 << 10 // keeps claiming a chunk well under 1% of running it
	rb := max(w.RowBytes(), 1)
	rows := max(minChunkBytes/rb, 1)
	rows = max(rows, w.Rows/(8*threads))
	return (rows + 3) &^ 3
}

// prepTokens prepares tokens [lo,hi) of the current MatMuls for packed weights.
func (p *Pool) prepTokens(lo, hi int) {
	m := &p.mm
	for t := lo; t < hi; t++ {
		if m.prepP {
			m.ks.prepTokP(&m.pacts, m.x, t, m.cols)
		}
		if m.prepPK {
			m.ks.prepTokPK(&m.pkacts, m.x, t, m.cols)
		}
	}
}

func (p *Pool) mmChunk(c int) {
	m := &p.mm
	i := 0
	for m.first[i+1] <= c {
		i++
	}
	w := m.ws[i]
	lo := (c - m.first[i]) * m.rowsPC[i]
	hi := min(lo+m.rowsPC[i], w.Rows)
	mmRows(m.ks, m.outs[i], w, lo, hi, m.x, m.set(actsFor(m.ks, w)), m.n)
}

// tileBytes bounds the weights one pass over a token group reads, so that when there are
// more tokens than one group holds the tile stays in L1 for the next group.
const tileBytes = 16 << 10

// mmRows computes rows [lo,hi) of w for all n tokens, reading packed weights when w is
// packed for ks, else w.Data; a holds the activations actsFor chose for w (nil for float
// weights, which read x).
func mmRows(ks *kernelSet, out []float32, w *Matrix, lo, hi int, x []float32, a *acts, n int) {
	packed := w.packedBy == ks
	rb, data := w.RowBytes(), w.Data
	if packed && ks.subPacked(w.Type) {
		subRows(ks, out, w, lo, hi, a, n)
		return
	}
	if packed && ks.tiles(w.Type) {
		tiledRows(ks, out, w, lo, hi, a, n)
		return
	}
	if packed {
		rb, data = packedRowBytes(w), w.packed.b
		if ks.usesWide(w, n) {
			mmWide(ks, out, w, lo, hi, data, rb, a, n)
			return
		}
	}
	tile := hi - lo
	if n > ks.group {
		tile = max(1, tileBytes/max(rb, 1))
	}
	for r0 := lo; r0 < hi; r0 += tile {
		r1 := min(r0+tile, hi)
		wd := data[r0*rb : r1*rb]
		for t := 0; t < n; t += ks.group {
			k := min(ks.group, n-t)
			o := out[t*w.Rows+r0:]
			if packed {
				ks.packed[packKindOf(w.Type)](o, w.Rows, wd, rb, r1-r0, a, t, k)
				continue
			}
			switch w.Type {
			case ggml.F32:
				ks.f32(o, w.Rows, wd, rb, r1-r0, x[t*w.Cols:], w.Cols, k)
			case ggml.F16:
				ks.f16(o, w.Rows, wd, rb, r1-r0, x[t*w.Cols:], w.Cols, k)
			case ggml.Q8_0:
				ks.q8(o, w.Rows, wd, rb, r1-r0, a, t, k)
			case ggml.Q4_0:
				ks.q4(o, w.Rows, wd, rb, r1-r0, a, t, k)
			case ggml.BF16:
				ks.bf16(o, w.Rows, wd, rb, r1-r0, x[t*w.Cols:], w.Cols, k)
			default:
				genericSubs(w.Type, o, w.Rows, wd, rb, r1-r0, a, t, k)
			}
		}
	}
}

// subRows computes rows [lo,hi) of w, packed by ks in its sub-type layout, for n tokens
// against the activations a from ks.prep, a tile of rows at a time as mmRows.
func subRows(ks *kernelSet, out []float32, w *Matrix, lo, hi int, a *acts, n int) {
	kern := ks.subp
	if hasOffsets(w.Type) {
		kern = ks.subMinp
	}
	rb := packedRowBytes(w)
	tile := hi - lo
	if n > ks.group {
		tile = max(1, tileBytes/max(rb, 1))
	}
	for r0 := lo; r0 < hi; r0 += tile {
		r1 := min(r0+tile, hi)
		wd := w.packed.b[r0*rb : r1*rb]
		for t := 0; t < n; t += ks.group {
			kern(out[t*w.Rows+r0:], w.Rows, wd, rb, r1-r0, a, t, min(ks.group, n-t))
		}
	}
}

// tiledRows computes rows [lo,hi) of w, packed by ks in tiles of 16 rows, for n tokens
// against the packed activations a, in calls of the kind's tileGroup tokens (the last
// one fewer) over all the rows: a call's activations stay in L1 while its rows' weights
// stream. lo is a multiple of 16 (see chunkRows). The first call streams the weights
// from memory, the next find them in L2: the more tokens the first call takes, the
// better it hides memory (all the target's Q8_0 products, 16 tokens, one thread, min
// of ten alternated: calls of 12 and 4 tokens 2.01 ms, of 8 and 8 2.10 ms).
func tiledRows(ks *kernelSet, out []float32, w *Matrix, lo, hi int, a *acts, n int) {
	kind := packKindOf(w.Type)
	kern, group := ks.tiled[kind], ks.tileGroup[kind]
	tb := packedRowBytes(w) * tileRows
	wd := w.packed.b[lo/tileRows*tb:]
	for t := 0; t < n; t += group {
		kern(out[t*w.Rows+lo:], w.Rows, wd, tb, hi-lo, a, t, min(group, n-t))
	}
}

// tileRows is the rows of a tile of the tiled layouts.
const tileRows = 16

// mmWide computes rows [lo,hi) of the packed w for n tokens with the wide-block kernels:
// a tile of rows at a time, for all tokens in balanced calls of at most ks.wideGroup. A
// last odd row goes to the packed narrow kernel, which computes it with the same
// operations.
func mmWide(ks *kernelSet, out []float32, w *Matrix, lo, hi int, data []byte, rb int, pa *acts, n int) {
	kind := packKindOf(w.Type)
	wide, narrow := ks.wide[kind], ks.packed[kind]
	even := lo + (hi-lo)&^1
	tile := max(wideTileRows, wideTileBytes/rb&^(wideTileRows-1))
	calls := (n + ks.wideGroup - 1) / ks.wideGroup
	for r0 := lo; r0 < even; r0 += tile {
		r1 := min(r0+tile, even)
		wd := data[r0*rb : r1*rb]
		for c := range calls {
			t0, t1 := c*n/calls, (c+1)*n/calls
			wide(out[t0*w.Rows+r0:], w.Rows, wd, rb, r1-r0, pa, t0, t1-t0)
		}
	}
	if even < hi {
		wd := data[even*rb : hi*rb]
		for t := 0; t < n; t += ks.group {
			narrow(out[t*w.Rows+even:], w.Rows, wd, rb, 1, pa, t, min(ks.group, n-t))
		}
	}
}

// wideTileRows is the rows the wide kernels reduce together; tiles are multiples of it.
//
// wideTileBytes bounds the weights of a tile. A wide kernel loads each vector of
// activations once per pair of rows and each vector of weights once per call of up to
// 12 tokens, so it is the call's activations that must stay in L1, and the tile's
// weights may come from L2 for the calls after the first. Measured with
// BenchmarkDecodeStep (target, one thread, best of six alternated runs): tiles of 16KB
// as for the narrow kernels against 256KB, 128 tokens 22.4 → 20.5 ms, 32 tokens 5.05 →
// 4.99 ms, 16 tokens alike.
const (
	wideTileRows  = 16
	wideTileBytes = 256 << 10
)

// The generic implementation: portable Go, and the reference structure the assembly
// kernels follow (per-token accumulators, fixed reduction order).
var genericKernels = &kernelSet{
	name:  "generic",
	group: 4,
	f32:   genericF32,
	f16:   genericF16,
	bf16:  genericBF16,
	q8:    genericQ8,
	q4:    genericQ4,
	prep:  quantizeActs,
}

func le32(b []byte, i int) float32 {
	return math.Float32frombits(uint32(b[4*i]) | uint32(b[4*i+1])<<8 | uint32(b[4*i+2])<<16 | uint32(b[4*i+3])<<24)
}

// dotF32 and dotF16 keep four partial sums over columns mod 4, combined pairwise, then a
// sequential tail. The float32 conversions forbid FMA fusion so every platform rounds alike.
func genericF32(out []float32, ostride int, w []byte, rowBytes, nrows int, x []float32, cols, ntok int) {
	for r := range nrows {
		row := w[r*rowBytes : (r+1)*rowBytes]
		for t := range ntok {
			xt := x[t*cols : (t+1)*cols]
			var s0, s1, s2, s3 float32
			j := 0
			for ; j+4 <= cols; j += 4 {
				s0 += float32(le32(row, j) * xt[j])
				s1 += float32(le32(row, j+1) * xt[j+1])
				s2 += float32(le32(row, j+2) * xt[j+2])
				s3 += float32(le32(row, j+3) * xt[j+3])
			}
			s := (s0 + s1) + (s2 + s3)
			for ; j < cols; j++ {
				s += float32(le32(row, j) * xt[j])
			}
			out[t*ostride+r] = s
		}
	}
}

func genericF16(out []float32, ostride int, w []byte, rowBytes, nrows int, x []float32, cols, ntok int) {
	genericHalf(out, ostride, w, rowBytes, nrows, x, cols, ntok, func(row []byte, j int) float32 {
		return f16Table[uint16(row[2*j])|uint16(row[2*j+1])<<8]
	})
}

// genericBF16 is genericF16 for bfloat16 weights.
func genericBF16(out []float32, ostride int, w []byte, rowBytes, nrows int, x []float32, cols, ntok int) {
	genericHalf(out, ostride, w, rowBytes, nrows, x, cols, ntok, func(row []byte, j int) float32 { return bf16(row[2*j:]) })
}

// genericHalf is the product of 16-bit float weights, h decoding weight j of a row.
func genericHalf(out []float32, ostride int, w []byte, rowBytes, nrows int, x []float32, cols, ntok int, h func(row []byte, j int) float32) {
	for r := range nrows {
		row := w[r*rowBytes : (r+1)*rowBytes]
		for t := range ntok {
			xt := x[t*cols : (t+1)*cols]
			var s0, s1, s2, s3 float32
			j := 0
			for ; j+4 <= cols; j += 4 {
				s0 += float32(h(row, j) * xt[j])
				s1 += float32(h(row, j+1) * xt[j+1])
				s2 += float32(h(row, j+2) * xt[j+2])
				s3 += float32(h(row, j+3) * xt[j+3])
			}
			s := (s0 + s1) + (s2 + s3)
			for ; j < cols; j++ {
				s += float32(h(row, j) * xt[j])
			}
			out[t*ostride+r] = s
		}
	}
}

// genericQ8 and genericQ4 sum each block exactly in integers, then accumulate
// sumi·(d_w·d_x) over blocks in order, in float32.
func genericQ8(out []float32, ostride int, w []byte, rowBytes, nrows int, a *acts, tok, ntok int) {
	nb := a.nb
	for r := range nrows {
		row := w[r*rowBytes : (r+1)*rowBytes]
		for t := tok; t < tok+ntok; t++ {
			q := a.q[t*nb*ggml.QK:]
			d := a.d[t*nb:]
			var acc float32
			for b := range nb {
				blk := row[b*34 : (b+1)*34]
				xq := q[b*ggml.QK : (b+1)*ggml.QK]
				var sumi int32
				for j, v := range blk[2:34] {
					sumi += int32(int8(v)) * int32(int8(xq[j]))
				}
				s := f16Table[uint16(blk[0])|uint16(blk[1])<<8] * d[b]
				acc += float32(float32(sumi) * s)
			}
			out[(t-tok)*ostride+r] = acc
		}
	}
}

func genericQ4(out []float32, ostride int, w []byte, rowBytes, nrows int, a *acts, tok, ntok int) {
	nb := a.nb
	for r := range nrows {
		row := w[r*rowBytes : (r+1)*rowBytes]
		for t := tok; t < tok+ntok; t++ {
			q := a.q[t*nb*ggml.QK:]
			d := a.d[t*nb:]
			var acc float32
			for b := range nb {
				blk := row[b*18 : (b+1)*18]
				xq := q[b*ggml.QK : (b+1)*ggml.QK]
				var sumi int32
				for j, v := range blk[2:18] {
					sumi += (int32(v&15)-8)*int32(int8(xq[j])) + (int32(v>>4)-8)*int32(int8(xq[j+16]))
				}
				s := f16Table[uint16(blk[0])|uint16(blk[1])<<8] * d[b]
				acc += float32(float32(sumi) * s)
			}
			out[(t-tok)*ostride+r] = acc
		}
	}
}

// genericSubs is the product of weights of the types decodeSub reads (beyond Q8_0 and
// Q4_0) against activations from quantizeActs, on every implementation when they are
// not packed. Per block of 32 and token it sums Σw·q and Σq exactly over each half, then
// adds ((Σw·q)_l·D_l + (Σw·q)_h·D_h + Σq_l·F_l + Σq_h·F_h)·d_x to the token's sum, in
// that order, in float32.
func genericSubs(typ ggml.Type, out []float32, ostride int, w []byte, rowBytes, nrows int, a *acts, tok, ntok int) {
	nb := a.nb
	bb, nsub := typ.BlockBytes(), typ.BlockSize()/ggml.QK
	var acc [16]float32
	if ntok > len(acc) {
		panic("kernels: genericSubs of too many tokens")
	}
	var wq [ggml.QK]int8
	for r := range nrows {
		row := w[r*rowBytes : (r+1)*rowBytes]
		clear(acc[:ntok])
		for b := range nb {
			sc := decodeSub(typ, row[b/nsub*bb:][:bb], b%nsub, &wq)
			for i := range ntok {
				t := tok + i
				xq := a.q[(t*nb+b)*ggml.QK:][:ggml.QK]
				var il, ih, sl, sh int32
				for j := range 16 {
					x := int32(int8(xq[j]))
					il += int32(wq[j]) * x
					sl += x
				}
				for j := 16; j < ggml.QK; j++ {
					x := int32(int8(xq[j]))
					ih += int32(wq[j]) * x
					sh += x
				}
				s := float32(float32(il)*sc.dl) + float32(float32(ih)*sc.dh)
				s += float32(float32(sl)*sc.fl) + float32(float32(sh)*sc.fh)
				acc[i] += float32(s * a.d[t*nb+b])
			}
		}
		for i := range ntok {
			out[i*ostride+r] = acc[i]
		}
	}
}
