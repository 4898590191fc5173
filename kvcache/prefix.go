package kvcache

import (
	"container/list"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
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

// Prefix is a cache of blocks that sessions have computed, found by the token ids they
// hold, so that sessions whose prompts share a leading run of blocks share those blocks'
// storage. Past the last whole block two prompts share, a prompt may share the first
// positions of one more block (a sub-block match): the block is shared as well, and the
// sequence copies it on its first write there (Seq.Grow). So a repeated prompt, or a
// conversation sent again with one more turn, is computed only from where it differs,
// not from the last block boundary before it (64 positions by default: most prompts
// shorter than a block would otherwise never hit). It lives inside one Pool and shares its lock; it is safe for
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
	top     map[*entry]struct{} // entries of chains' first blocks
	byBlock []*entry            // block id → its entry, nil if not registered; len pool.maxBlocks
	idle    *list.List          // entries only the cache holds (refs == 1); front most recently used
	stats   PrefixStats
}

// entry is one registered block: a full block, or the partial last block of a
// sequence that Retire registered (a tail), which holds fewer than BlockTokens valid
// positions and has no children.
type entry struct {
	key      key
	id       int32
	tokens   []int32             // the ids at the block's valid positions
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
	c := &Prefix{pool: p, entries: map[key]*entry{}, top: map[*entry]struct{}{}, byBlock: make([]*entry, p.maxBlocks), idle: list.New()}
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
		keys[i] = chain(buf, prev, tokens[i*bt:(i+1)*bt])
		prev = keys[i]
	}
	return keys
}

// chain returns the key of a block holding ids below the block keyed prev, using buf
// (at least len(key)+4·len(ids) bytes) as scratch. A tail's ids are fewer than a full
// block's, so its key never equals a full block's.
func chain(buf []byte, prev key, ids []int32) key {
	buf = buf[:len(key{})+4*len(ids)]
	copy(buf, prev[:])
	b := buf[len(key{}):]
	for j, t := range ids {
		binary.LittleEndian.PutUint32(b[4*j:], uint32(t))
	}
	return sha256.Sum256(buf)
}

// Attach gives the empty sequence s the longest run of cached positions that match the
// leading tokens, the prompt s is about to compute, and returns how many positions
// that covers: s.Len() is then cached, and the caller computes tokens[cached:] at
// positions cached onwards. The run is whole blocks, found by their chain keys, and then
// the first positions of one more cached block whose ids begin as the prompt goes on
// (the one with the longest such match below the last whole block). It never covers
// the whole prompt: at least the last token is left, so the caller gets its logits. The
// blocks are shared, not copied; s holds a reference to each until it lets go of them,
// and its first write into a block it shares copies that block. Attach panics if s is
// not empty or draws on another pool.
func (c *Prefix) Attach(s *Seq, tokens []int32) (cached int) {
	if s.pool != c.pool || len(s.table) != 0 || s.n != 0 {
		panic(fmt.Sprintf("kvcache: attach to a sequence of %d positions or of another pool", s.n))
	}
	bt := c.pool.cfg.BlockTokens
	usable := max(len(tokens)-1, 0)
	keys := c.keys(tokens, usable/bt)
	p := c.pool
	p.mu.Lock()
	defer p.mu.Unlock()
	var last *entry
	for _, k := range keys {
		e := c.entries[k]
		if e == nil {
			break
		}
		p.ref(e.id)
		s.table = append(s.table, e.id)
		last = e
	}
	s.n = len(s.table) * bt
	if rest := tokens[s.n:min(usable, s.n+bt)]; len(rest) > 0 {
		if e, n := c.longestStart(last, rest); n > 0 {
			p.ref(e.id)
			s.table = append(s.table, e.id)
			s.n += n
		}
	}
	c.stats.Lookups++
	c.stats.HitTokens += int64(s.n)
	c.stats.MissTokens += int64(len(tokens) - s.n)
	return s.n
}

// longestStart returns the child of parent (of the chains' first blocks if nil) whose
// ids share the longest start with ids, and how many ids that is. pool.mu must be held.
func (c *Prefix) longestStart(parent *entry, ids []int32) (best *entry, n int) {
	children := c.top
	if parent != nil {
		children = parent.children
	}
	for e := range children {
		m := 0
		for m < len(ids) && m < len(e.tokens) && ids[m] == e.tokens[m] {
			m++
		}
		if m > n {
			best, n = e, m
		}
	}
	return best, n
}

// Publish registers the full blocks of s that are not yet cached, so that later sessions
// can Attach them; tokens[i] must be the id whose entries s holds at position i, for
// every i below min(len(tokens), s.Len()). The cache takes a reference of its own to
// each block it registers. A block whose key is already cached under another block (two
// sessions computed the same prefix at once) stays s's own and is not registered. Call
// it once a prompt's entries are computed; it hashes every full block each time.
func (c *Prefix) Publish(s *Seq, tokens []int32) { c.publish(s, tokens, false) }

// Retire is Publish for a sequence about to be released: it registers the partial last
// block too, so that a prompt sent again, or a conversation that goes on from where s
// ended, finds all of it. s must not be written after (its next Grow would copy that
// block, which Publish avoids for a sequence still decoding).
func (c *Prefix) Retire(s *Seq, tokens []int32) { c.publish(s, tokens, true) }

func (c *Prefix) publish(s *Seq, tokens []int32, tail bool) {
	if s.pool != c.pool {
		panic("kvcache: publish a sequence of another pool")
	}
	bt := c.pool.cfg.BlockTokens
	valid := min(len(tokens), s.n)
	n := valid / bt
	keys := c.keys(tokens, n)
	var tailKey key
	if tail = tail && valid%bt != 0; tail {
		prev := c.root
		if n > 0 {
			prev = keys[n-1]
		}
		tailKey = chain(make([]byte, len(key{})+4*bt), prev, tokens[n*bt:valid])
	}
	p := c.pool
	p.mu.Lock()
	defer p.mu.Unlock()
	var parent *entry
	var seen []*entry // found already cached, to mark used
	for i, k := range keys {
		id := s.table[i]
		e := c.entries[k]
		if e == nil && c.byBlock[id] != nil {
			tail = false
			break // s's block is cached under another key: tokens are not what s holds
		}
		if e != nil {
			seen = append(seen, e)
		} else {
			e = c.register(k, id, parent, tokens[i*bt:(i+1)*bt])
		}
		parent = e
	}
	if tail && c.entries[tailKey] == nil && c.byBlock[s.table[n]] == nil {
		c.register(tailKey, s.table[n], parent, tokens[n*bt:valid])
	}
	for i := len(seen) - 1; i >= 0; i-- { // children first, so parents end up more recent
		if e := seen[i]; e.idle != nil {
			c.idle.MoveToFront(e.idle)
		}
	}
}

// register caches block id, which a sequence holds with the given ids, under k below
// parent (nil for a chain's first block). pool.mu must be held.
func (c *Prefix) register(k key, id int32, parent *entry, tokens []int32) *entry {
	e := &entry{key: k, id: id, parent: parent, tokens: slices.Clone(tokens)}
	if parent != nil {
		if parent.children == nil {
			parent.children = map[*entry]struct{}{}
		}
		parent.children[e] = struct{}{}
	} else {
		c.top[e] = struct{}{}
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
	} else {
		delete(c.top, e)
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
