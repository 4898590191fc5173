package kvcache

import (
	"container/list"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
)

// ErrHasPrefix is returned by Pool.NewPrefix when the pool already has a prefix cache.
var ErrHasPrefix = errors.New("kv cache pool already has a prefix cache")

// key names the contents of one full block: the chain hash of every token id from
// position 0 to the block's end, under a model's salt.
//
// It is SHA-256, not a fast non-cryptographic hash such as FNV-1a 64: a key collision
// would hand one session another's KV entries, and prompts come from clients, so keys
// must resist chosen collisions as well as chance ones (vLLM's prefix cache had such a
// bug, CVE-2025-25183, and now offers SHA-256 keys). Hashing a block of 64 ids takes about half a
// microsecond here (BenchmarkKeys: 14 µs for 32 blocks), against milliseconds to
// compute the block's entries.
type key [sha256.Size]byte

// Prefix is a cache of full blocks that sessions have computed, found by the token ids
// they hold, so that sessions whose prompts share a leading run of blocks share those
// blocks' storage. It lives inside one Pool and shares its lock; it is safe for
// concurrent use.
//
// The cache holds a reference of its own to every block it has registered, so a block
// outlives the sequence that computed it and, because its reference count is then above
// one, is never written again: a sequence that truncates into it and grows copies it
// first (Seq.Grow). A block only the cache holds is idle, and allocation evicts idle
// blocks, least recently used first, rather than fail with ErrExhausted.
//
// Eviction drops an entry together with every entry registered below it in its chain:
// a descendant can only be found through its parent, so once the parent is gone the
// descendants are dead weight. Descendants that sessions still hold stay theirs; the
// cache only lets go of its reference. Recency makes this rare: a sequence releases its
// blocks last first, and Publish marks found blocks used children first, so a chain's
// parent is used more recently than its children and they are evicted first. Only when
// two sessions computed the same block at once, and one's copy was cached while the
// other's next block was, can an idle parent have a held child.
type Prefix struct {
	pool *Pool
	root key // key "before" block 0: the salt

	// All below is guarded by pool.mu.
	entries map[key]*entry
	byBlock []*entry   // block id → its entry, nil if not registered; len pool.maxBlocks
	idle    *list.List // entries only the cache holds (refs == 1); front most recently used
	stats   PrefixStats
}

// entry is one registered block.
type entry struct {
	key      key
	id       int32
	parent   *entry              // nil for a chain's first block
	children map[*entry]struct{} // entries whose parent this is; nil when none
	idle     *list.Element       // in Prefix.idle while only the cache holds the block, else nil
}

// PrefixStats counts a prefix cache's work since it was made.
type PrefixStats struct {
	Lookups    int64 // Attach calls
	HitTokens  int64 // prompt positions Attach found in the cache
	MissTokens int64 // prompt positions Attach left to compute
	Inserted   int64 // blocks registered by Publish
	Evictions  int64 // entries dropped to make room or by Flush, descendants included
	Blocks     int   // blocks registered now
	Idle       int   // of Blocks, the ones only the cache holds (evictable)
}

// HitRate is the fraction of looked-up prompt positions found in the cache, 0 before any.
func (s PrefixStats) HitRate() float64 {
	if n := s.HitTokens + s.MissTokens; n > 0 {
		return float64(s.HitTokens) / float64(n)
	}
	return 0
}

// NewPrefix gives p a prefix cache. model names what computes the entries (model file,
// quantization, anything that changes them); it salts every key, so two caches for
// different models never agree on one. A pool has at most one prefix cache: a second
// call returns an error wrapping ErrHasPrefix.
func (p *Pool) NewPrefix(model string) (*Prefix, error) {
	h := sha256.New()
	fmt.Fprintf(h, "specd kvcache prefix v1\x00%d\x00%s", p.cfg.BlockTokens, model)
	c := &Prefix{pool: p, entries: map[key]*entry{}, byBlock: make([]*entry, p.maxBlocks), idle: list.New()}
	copy(c.root[:], h.Sum(nil))
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.prefix != nil {
		return nil, ErrHasPrefix
	}
	p.prefix = c
	return c, nil
}

// keys returns the chain keys of the first n full blocks of tokens (n ≤ len/BlockTokens).
func (c *Prefix) keys(tokens []int32, n int) []key {
	bt := c.pool.cfg.BlockTokens
	keys := make([]key, n)
	buf := make([]byte, len(key{})+4*bt)
	prev := c.root
	for i := range keys {
		copy(buf, prev[:])
		b := buf[len(key{}):]
		for j, t := range tokens[i*bt : (i+1)*bt] {
			binary.LittleEndian.PutUint32(b[4*j:], uint32(t))
		}
		keys[i] = sha256.Sum256(buf)
		prev = keys[i]
	}
	return keys
}

// Attach gives the empty sequence s the longest run of cached blocks that match the
// leading full blocks of tokens, the prompt s is about to compute, and returns how many
// positions that covers: s.Len() is then cached, and the caller computes tokens[cached:]
// at positions cached onwards. It never covers the whole prompt: at least the last token
// is left, so the caller gets its logits. The blocks are shared, not copied; s holds a
// reference to each until it lets go of them. Attach panics if s is not empty or draws on
// another pool.
func (c *Prefix) Attach(s *Seq, tokens []int32) (cached int) {
	if s.pool != c.pool || len(s.table) != 0 || s.n != 0 {
		panic(fmt.Sprintf("kvcache: attach to a sequence of %d positions or of another pool", s.n))
	}
	bt := c.pool.cfg.BlockTokens
	keys := c.keys(tokens, max(len(tokens)-1, 0)/bt)
	p := c.pool
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, k := range keys {
		e := c.entries[k]
		if e == nil {
			break
		}
		p.ref(e.id)
		s.table = append(s.table, e.id)
	}
	s.n = len(s.table) * bt
	c.stats.Lookups++
	c.stats.HitTokens += int64(s.n)
	c.stats.MissTokens += int64(len(tokens) - s.n)
	return s.n
}

// Publish registers the full blocks of s that are not yet cached, so that later sessions
// can Attach them; tokens[i] must be the id whose entries s holds at position i, for
// every i below min(len(tokens), s.Len()). The cache takes a reference of its own to
// each block it registers. A block whose key is already cached under another block (two
// sessions computed the same prefix at once) stays s's own and is not registered. Call
// it once a prompt's entries are computed and again, if the conversation may continue,
// before s is released; it hashes every full block each time.
func (c *Prefix) Publish(s *Seq, tokens []int32) {
	if s.pool != c.pool {
		panic("kvcache: publish a sequence of another pool")
	}
	n := min(len(tokens), s.n) / c.pool.cfg.BlockTokens
	keys := c.keys(tokens, n)
	p := c.pool
	p.mu.Lock()
	defer p.mu.Unlock()
	var parent *entry
	var seen []*entry // found already cached, to mark used
	for i, k := range keys {
		id := s.table[i]
		e := c.entries[k]
		if e == nil && c.byBlock[id] != nil {
			break // s's block is cached under another key: tokens are not what s holds
		}
		if e != nil {
			seen = append(seen, e)
		} else {
			e = c.register(k, id, parent)
		}
		parent = e
	}
	for i := len(seen) - 1; i >= 0; i-- { // children first, so parents end up more recent
		if e := seen[i]; e.idle != nil {
			c.idle.MoveToFront(e.idle)
		}
	}
}

// register caches block id, which a sequence holds, under k below parent (nil for a
// chain's first block). pool.mu must be held.
func (c *Prefix) register(k key, id int32, parent *entry) *entry {
	e := &entry{key: k, id: id, parent: parent}
	if parent != nil {
		if parent.children == nil {
			parent.children = map[*entry]struct{}{}
		}
		parent.children[e] = struct{}{}
	}
	c.entries[k] = e
	c.byBlock[id] = e
	c.pool.refs[id]++ // the sequence holds it too, so it is not idle
	c.stats.Inserted++
	return e
}

// Stats returns the cache's counters and size.
func (c *Prefix) Stats() PrefixStats {
	c.pool.mu.Lock()
	defer c.pool.mu.Unlock()
	st := c.stats
	st.Blocks = len(c.entries)
	st.Idle = c.idle.Len()
	return st
}

// Flush evicts every block only the cache holds and returns how many entries it dropped.
// Blocks that sessions hold stay cached.
func (c *Prefix) Flush() int {
	c.pool.mu.Lock()
	defer c.pool.mu.Unlock()
	before := c.stats.Evictions
	for c.evict() {
	}
	return int(c.stats.Evictions - before)
}

// held notes that a sequence has taken block id, which had one reference. pool.mu must
// be held.
func (c *Prefix) held(id int32) {
	if e := c.byBlock[id]; e != nil {
		c.idle.Remove(e.idle)
		e.idle = nil
	}
}

// unheld notes that block id is down to one reference: if it is cached, only the cache
// holds it now. pool.mu must be held.
func (c *Prefix) unheld(id int32) {
	if e := c.byBlock[id]; e != nil {
		e.idle = c.idle.PushFront(e)
	}
}

// evict drops the least recently used idle entry and its descendants, which frees at
// least its block, and reports whether there was one. pool.mu must be held.
func (c *Prefix) evict() bool {
	el := c.idle.Back()
	if el == nil {
		return false
	}
	e := el.Value.(*entry)
	if e.parent != nil {
		delete(e.parent.children, e)
	}
	c.drop(e)
	return true
}

// drop forgets e and everything below it, letting go of the cache's references.
// pool.mu must be held.
func (c *Prefix) drop(e *entry) {
	for ch := range e.children {
		c.drop(ch)
	}
	delete(c.entries, e.key)
	c.byBlock[e.id] = nil
	if e.idle != nil {
		c.idle.Remove(e.idle)
	}
	c.stats.Evictions++
	c.pool.unref(e.id) // the cache's reference: the last one, or sequences hold the block
}
