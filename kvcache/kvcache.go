// Package kvcache is a paged key/value cache: a pool of fixed-size blocks under a byte
// budget, and per-sequence block tables. A sequence grows by appending positions and
// shrinks by truncating to any earlier length (how rejected speculative tokens are
// dropped); whole blocks past the new end go back to the pool at once.
//
// Blocks are reference-counted so that sequences can share a cached prefix (Fork, and
// across sessions a Prefix cache); a write into a shared block copies it first. The
// package knows nothing of models beyond the shape of an entry and depends only on the
// kernels package for fp16 and the standard library.
package kvcache

import (
	"errors"
	"fmt"
	"sync"

	"github.com/specd-dev/specd/ggml"
	"github.com/specd-dev/specd/kernels"
)

// ErrExhausted is returned by Seq.Grow when the pool's byte budget has no block left,
// not even one that a prefix cache could give up.
var ErrExhausted = errors.New("kv cache budget exhausted")

// DefaultBlockTokens is the number of positions in one block. Attention reads the cache
// a block at a time, one call per block per query head, so on the CPU larger blocks
// cost less: 64 made a 5-token target pass at position 100 about 10% faster than 16
// (1.69-1.71 -> 1.52-1.54 ms, 1 thread). A block of the target is 1 MB, of the draft
// 393 KB, which is also what a branch fork copies on its first write. Results do not
// depend on the block size.
const DefaultBlockTokens = 64

// Config is the shape and budget of a pool.
type Config struct {
	Layers      int       // transformer layers
	KVDim       int       // floats per key (and per value) per layer and position
	BlockTokens int       // positions per block; 0 means DefaultBlockTokens
	Budget      int64     // bytes for all blocks together
	Type        ggml.Type // ggml.F32 (default) or ggml.F16
}

// Pool hands out blocks of KV storage. It is safe for concurrent use by many sequences.
type Pool struct {
	cfg        Config
	blockElems int // floats (or halves) in one block: layers × 2 × tokens × kvdim
	maxBlocks  int

	mu     sync.Mutex
	f32    [][]float32 // block id → its view of mem (F32 pools); sized maxBlocks, nil until first used
	f16    [][]uint16  // block id → its view of mem (F16 pools)
	refs   []int32     // block id → number of sequences holding it, plus 1 if prefix has it
	free   []int32     // ids with storage, not in use
	made   int         // ids that have storage: 0..made-1
	inUse  int
	peakIn int
	prefix *Prefix      // nil: no prefix cache, and no block is ever held by anything but sequences
	mem    *kernels.Mem // every block's storage; the slices in f32 and f16 are views of it
}

// ErrBudgetTooSmall is NewPool's error for a budget that holds no block.
var ErrBudgetTooSmall = errors.New("kv cache budget is smaller than one block")

// NewPool returns a pool for cfg. The whole budget is mapped at once, outside the Go
// heap and on transparent huge pages where the OS gives them (kernels.NewHugeMem), but
// its pages only become resident as blocks are first used, so a large budget costs
// nothing until it is needed. Outside the heap, the cache does not count towards the
// garbage collector's heap goal: with a KV cache of 320 MB in the heap, the goal of a
// serving process let 30 MB of garbage build up under load, where now it is a fraction
// of the small heap that remains. Huge pages let attention walk many sequences' blocks
// with a few TLB entries, not one per 4 KB. A budget the OS refuses to map (more than
// the system may commit) is an error; a budget under one block is ErrBudgetTooSmall.
func NewPool(cfg Config) (*Pool, error) {
	if cfg.BlockTokens == 0 {
		cfg.BlockTokens = DefaultBlockTokens
	}
	if cfg.Type != ggml.F32 && cfg.Type != ggml.F16 {
		return nil, fmt.Errorf("kv cache type %v: want f32 or f16", cfg.Type)
	}
	if cfg.Layers <= 0 || cfg.KVDim <= 0 || cfg.BlockTokens <= 0 {
		return nil, fmt.Errorf("kv cache shape: layers %d, kv dim %d, block tokens %d must be positive", cfg.Layers, cfg.KVDim, cfg.BlockTokens)
	}
	p := &Pool{cfg: cfg, blockElems: cfg.Layers * 2 * cfg.BlockTokens * cfg.KVDim}
	p.maxBlocks = int(cfg.Budget / int64(p.blockElems*cfg.Type.BlockBytes()))
	if p.maxBlocks < 1 {
		return nil, fmt.Errorf("%w: %d bytes, one block takes %d", ErrBudgetTooSmall, cfg.Budget, p.BlockBytes())
	}
	p.refs = make([]int32, p.maxBlocks)
	mem, err := kernels.NewHugeMem(p.maxBlocks * p.BlockBytes())
	if err != nil {
		return nil, fmt.Errorf("kv cache budget %d bytes: %w", cfg.Budget, err)
	}
	p.mem = mem
	if cfg.Type == ggml.F32 {
		p.f32 = make([][]float32, p.maxBlocks)
	} else {
		p.f16 = make([][]uint16, p.maxBlocks)
	}
	return p, nil
}

// Config returns the pool's configuration with defaults filled in.
func (p *Pool) Config() Config { return p.cfg }

// BlockBytes is the size of one block in bytes.
func (p *Pool) BlockBytes() int { return p.blockElems * p.cfg.Type.BlockBytes() }

// Stats describes the pool's occupancy.
type Stats struct {
	Total, Used, Free int // blocks; Used counts Cached too, Free = Total - Used
	// Cached is how many of the Used blocks only a prefix cache holds. Allocation evicts
	// them when nothing is free, so Free+Cached blocks can be allocated now (Available).
	Cached      int
	Peak        int // most blocks in use at once, cached ones included
	BlockTokens int
}

// Stats returns the current occupancy.
func (p *Pool) Stats() Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	return Stats{Total: p.maxBlocks, Used: p.inUse, Free: p.maxBlocks - p.inUse, Cached: p.cachedOnly(),
		Peak: p.peakIn, BlockTokens: p.cfg.BlockTokens}
}

// Available is how many blocks can be allocated right now: the free ones and the ones
// only a prefix cache holds, which allocation evicts. Admission control should count
// these, not Stats().Free.
func (p *Pool) Available() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.maxBlocks - p.inUse + p.cachedOnly()
}

// cachedOnly is the number of blocks held only by the prefix cache. p.mu must be held.
func (p *Pool) cachedOnly() int {
	if p.prefix == nil {
		return 0
	}
	return p.prefix.idle.Len()
}

func (p *Pool) alloc() (int32, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for p.inUse >= p.maxBlocks {
		if p.prefix == nil || !p.prefix.evict() {
			return 0, fmt.Errorf("%w: %d blocks of %d bytes in use", ErrExhausted, p.inUse, p.BlockBytes())
		}
	}
	var id int32
	if n := len(p.free); n > 0 {
		id = p.free[n-1]
		p.free = p.free[:n-1]
	} else {
		id = p.grow()
	}
	p.refs[id] = 1
	p.inUse++
	p.peakIn = max(p.peakIn, p.inUse)
	return id, nil
}

// grow gives the next block id its storage. p.mu must be held and p.made < p.maxBlocks.
func (p *Pool) grow() int32 {
	id := int32(p.made)
	p.made++
	off := int(id) * p.BlockBytes()
	if p.cfg.Type == ggml.F32 {
		p.f32[id] = p.mem.Floats(off, p.blockElems)
	} else {
		p.f16[id] = p.mem.Halves(off, p.blockElems)
	}
	return id
}

// Reserve gives storage now to enough free blocks for one sequence of tokens positions
// (within the budget), and touches every page of it, so that the first pass over those
// positions does not stop on page faults: on this project's virtual machines a first
// prefill of 216 tokens took 26 ms cold and 10 ms warm, mostly in faulting in fresh KV
// memory. llama.cpp likewise clears its whole KV buffer at load. It returns the number
// of blocks that now have storage.
func (p *Pool) Reserve(tokens int) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	want := min((tokens+p.cfg.BlockTokens-1)/p.cfg.BlockTokens, p.maxBlocks)
	for p.made < want {
		id := p.grow()
		p.free = append(p.free, id)
		const page = 4096
		if p.cfg.Type == ggml.F32 {
			b := p.f32[id]
			for i := 0; i < len(b); i += page / 4 {
				b[i] = 0
			}
		} else {
			b := p.f16[id]
			for i := 0; i < len(b); i += page / 2 {
				b[i] = 0
			}
		}
	}
	return p.made
}

// release drops one reference to each of ids, a block table or its tail. It goes last
// block first, so that when a sequence lets go of a cached chain its earlier blocks are
// the more recently used and the prefix cache evicts the later ones first.
func (p *Pool) release(ids []int32) {
	if len(ids) == 0 {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for i := len(ids) - 1; i >= 0; i-- {
		p.unref(ids[i])
	}
}

// unref drops one reference to block id. p.mu must be held.
func (p *Pool) unref(id int32) {
	p.refs[id]--
	switch {
	case p.refs[id] == 0:
		p.free = append(p.free, id)
		p.inUse--
	case p.refs[id] == 1 && p.prefix != nil:
		p.prefix.unheld(id)
	}
}

func (p *Pool) retain(ids []int32) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, id := range ids {
		p.ref(id)
	}
}

// ref adds one reference to block id, which is in use. p.mu must be held.
func (p *Pool) ref(id int32) {
	if p.refs[id] == 1 && p.prefix != nil {
		p.prefix.held(id)
	}
	p.refs[id]++
}

// Seq is one sequence's view of the cache: a block table and a length. A Seq is used by
// one goroutine at a time.
type Seq struct {
	pool  *Pool
	table []int32 // block ids in position order; owned by this Seq
	n     int     // positions holding valid entries
}

// NewSeq returns an empty sequence drawing on p.
func (p *Pool) NewSeq() *Seq { return &Seq{pool: p} }

// Len is the number of cached positions.
func (s *Seq) Len() int { return s.n }

// Blocks is the number of blocks the sequence holds.
func (s *Seq) Blocks() int { return len(s.table) }

// Grow makes room for n more positions after Len, allocating blocks as needed, and
// extends Len by n. The new entries must be written (Put) before they are read. A
// partly filled last block shared with another sequence or registered in a prefix cache
// (which holds a reference of its own) is copied first, so Put never writes into shared
// storage. It returns an error wrapping ErrExhausted, with the
// sequence unchanged, when the budget runs out.
func (s *Seq) Grow(n int) error {
	bt := s.pool.cfg.BlockTokens
	if n <= 0 {
		return nil
	}
	if s.n%bt != 0 {
		if err := s.unshare(s.n / bt); err != nil {
			return err
		}
	}
	need := (s.n+n+bt-1)/bt - len(s.table)
	start := len(s.table)
	for range need {
		id, err := s.pool.alloc()
		if err != nil {
			s.pool.release(s.table[start:])
			s.table = s.table[:start]
			return err
		}
		s.table = append(s.table, id)
	}
	s.n += n
	return nil
}

// Truncate drops every position at or after n (n ≤ Len). Blocks wholly past the new end
// go back to the pool; the cost is proportional to the blocks freed. A block the new end
// falls inside stays shared with whoever else holds it (a fork, a prefix cache) until
// the next Grow copies it.
func (s *Seq) Truncate(n int) {
	if n < 0 || n > s.n {
		panic(fmt.Sprintf("kvcache: truncate to %d of a sequence of %d", n, s.n))
	}
	bt := s.pool.cfg.BlockTokens
	keep := (n + bt - 1) / bt
	s.pool.release(s.table[keep:])
	s.table = s.table[:keep]
	s.n = n
}

// Release returns every block to the pool and empties the sequence.
func (s *Seq) Release() { s.Truncate(0) }

// Fork returns a new sequence sharing this one's first n positions (n ≤ Len) without
// copying: blocks are shared until either side writes into one.
func (s *Seq) Fork(n int) *Seq {
	if n < 0 || n > s.n {
		panic(fmt.Sprintf("kvcache: fork %d positions of a sequence of %d", n, s.n))
	}
	bt := s.pool.cfg.BlockTokens
	t := append([]int32(nil), s.table[:(n+bt-1)/bt]...)
	s.pool.retain(t)
	return &Seq{pool: s.pool, table: t, n: n}
}

// offset returns the block and element offset of (layer, pos) keys; values follow the
// keys of the same layer at +BlockTokens*KVDim.
func (s *Seq) offset(layer, pos int) (int32, int) {
	bt, kv := s.pool.cfg.BlockTokens, s.pool.cfg.KVDim
	return s.table[pos/bt], (layer*2*bt + pos%bt) * kv
}

// Put stores the key and value of one layer at one position, which must lie in the
// range added by the last Grow: only there has Grow made sure the block is this
// sequence's alone, and a write elsewhere could change entries that a fork or the
// prefix cache shares.
func (s *Seq) Put(layer, pos int, k, v []float32) {
	p := s.pool
	id, off := s.offset(layer, pos)
	vo := off + p.cfg.BlockTokens*p.cfg.KVDim
	kv := p.cfg.KVDim
	if p.cfg.Type == ggml.F32 {
		b := p.f32[id]
		copy(b[off:off+kv], k)
		copy(b[vo:vo+kv], v)
		return
	}
	b := p.f16[id]
	kernels.ToHalves(b[off:off+kv], k[:kv])
	kernels.ToHalves(b[vo:vo+kv], v[:kv])
}

// unshare gives the sequence its own copy of block bi if another sequence holds it too.
func (s *Seq) unshare(bi int) error {
	p := s.pool
	old := s.table[bi]
	p.mu.Lock()
	shared := p.refs[old] > 1
	p.mu.Unlock()
	if !shared {
		return nil
	}
	id, err := p.alloc()
	if err != nil {
		return err
	}
	p.mu.Lock()
	if p.cfg.Type == ggml.F32 {
		copy(p.f32[id], p.f32[old])
	} else {
		copy(p.f16[id], p.f16[old])
	}
	p.mu.Unlock()
	p.release([]int32{old})
	s.table[bi] = id
	return nil
}

// Pool returns the pool the sequence draws on.
func (s *Seq) Pool() *Pool { return s.pool }

// BlockHalves returns the keys and values of one layer at the positions of block b of a
// sequence in an F16 pool, as stored: fp16 values laid out as BlockKV describes, views
// into the block. It returns nil for an F32 pool. Attention reads them as stored
// (kernels.ScoresHalf and the like) or converts only the head and the positions it
// needs (kernels.HalfRows), where BlockKV converts a whole layer.
func (s *Seq) BlockHalves(layer, b int) (k, v []uint16) {
	p := s.pool
	if p.cfg.Type != ggml.F16 {
		return nil, nil
	}
	n := p.cfg.BlockTokens * p.cfg.KVDim
	blk, off := p.f16[s.table[b]], layer*2*n
	return blk[off : off+n], blk[off+n : off+2*n]
}

// BlockKV returns the keys and values of one layer at the positions of block b of the
// sequence: BlockTokens rows of KVDim floats each, row i for position b*BlockTokens+i
// (rows past Len hold stale data). For F32 pools they are views into the block; F16
// pools convert into kbuf and vbuf (each at least BlockTokens*KVDim long).
func (s *Seq) BlockKV(layer, b int, kbuf, vbuf []float32) (k, v []float32) {
	p := s.pool
	bt, kv := p.cfg.BlockTokens, p.cfg.KVDim
	id, n := s.table[b], bt*kv
	off := layer * 2 * n
	if p.cfg.Type == ggml.F32 {
		blk := p.f32[id]
		return blk[off : off+n], blk[off+n : off+2*n]
	}
	blk := p.f16[id]
	k, v = kbuf[:n], vbuf[:n]
	for i := range n {
		k[i] = kernels.FP16ToFP32(blk[off+i])
		v[i] = kernels.FP16ToFP32(blk[off+n+i])
	}
	return k, v
}
