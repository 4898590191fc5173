package kvcache

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"

	"github.com/specd-dev/specd/ggml"
)

// cached returns a pool of the given number of blocks (4 positions each, see pool) with a
// prefix cache.
func cached(t *testing.T, typ ggml.Type, blocks int) (*Pool, *Prefix) {
	t.Helper()
	p := pool(t, typ, blocks)
	c, err := p.NewPrefix("test model")
	if err != nil {
		t.Fatal(err)
	}
	return p, c
}

// entryAt is what a model would compute at pos for tokens: it depends on every token up
// to pos (a causal prefix), so a block reused under the wrong prefix reads back wrong.
// Every value is a small integer, exact in fp16 too.
func entryAt(tokens []int32, pos, layer int) (k, v []float32) {
	var h uint32
	for _, t := range tokens[:pos+1] {
		h = (h*31 + uint32(t)) % 1000
	}
	k = []float32{float32(tokens[pos]), float32(pos % 1000), float32(layer), float32(h)}
	v = []float32{-float32(h), float32(layer), float32(tokens[pos]), 1}
	return k, v
}

// compute grows s to len(tokens) and writes the entries of positions Len onwards.
func compute(s *Seq, tokens []int32) error {
	from := s.Len()
	if err := s.Grow(len(tokens) - from); err != nil {
		return err
	}
	for pos := from; pos < len(tokens); pos++ {
		for l := range 2 {
			k, v := entryAt(tokens, pos, l)
			s.Put(l, pos, k, v)
		}
	}
	return nil
}

// check reports the first position below s.Len() whose entries are not those of tokens.
func check(s *Seq, tokens []int32) error {
	for pos := range s.Len() {
		for l := range 2 {
			k, v := at(s, l, pos)
			wk, wv := entryAt(tokens, pos, l)
			if !slices.Equal(k, wk) || !slices.Equal(v, wv) {
				return fmt.Errorf("entries (layer %d, pos %d) = %v %v, want %v %v", l, pos, k, v, wk, wv)
			}
		}
	}
	return nil
}

// ids returns n tokens start, start+1, ...
func ids(start, n int) []int32 {
	t := make([]int32, n)
	for i := range t {
		t[i] = int32(start + i)
	}
	return t
}

func cat(parts ...[]int32) []int32 { return slices.Concat(parts...) }

// session computes tokens in a fresh sequence, attaching what the cache has, and
// publishes it.
func session(t *testing.T, c *Prefix, tokens []int32) (*Seq, int) {
	t.Helper()
	s := c.pool.NewSeq()
	n := c.Attach(s, tokens)
	if err := compute(s, tokens); err != nil {
		t.Fatal(err)
	}
	c.Publish(s, tokens)
	return s, n
}

// consistent checks the pool's and cache's bookkeeping against the live sequences.
func consistent(p *Pool, live []*Seq) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	want := make([]int32, p.maxBlocks)
	for _, s := range live {
		for _, id := range s.table {
			want[id]++
		}
	}
	c := p.prefix
	idle := 0
	if c != nil {
		for k, e := range c.entries {
			want[e.id]++
			switch {
			case e.key != k || c.byBlock[e.id] != e:
				return fmt.Errorf("entry of block %d is indexed wrongly", e.id)
			case e.parent != nil && c.entries[e.parent.key] != e.parent:
				return fmt.Errorf("entry of block %d has a dropped parent", e.id)
			case e.parent != nil && !hasChild(e.parent, e):
				return fmt.Errorf("entry of block %d is not its parent's child", e.id)
			case e.parent == nil && !hasTop(c, e):
				return fmt.Errorf("entry of block %d begins a chain but is not listed as one", e.id)
			case len(e.tokens) < p.cfg.BlockTokens && len(e.children) > 0:
				return fmt.Errorf("partial block %d has children", e.id)
			}
			for ch := range e.children {
				if ch.parent != e {
					return fmt.Errorf("entry of block %d has a child that is not its own", e.id)
				}
			}
		}
		for e := range c.top {
			if c.entries[e.key] != e || e.parent != nil {
				return fmt.Errorf("block %d listed as beginning a chain is not cached or has a parent", e.id)
			}
		}
		for el := c.idle.Front(); el != nil; el = el.Next() {
			e := el.Value.(*entry)
			if c.entries[e.key] != e || e.idle != el {
				return fmt.Errorf("idle block %d is not cached", e.id)
			}
			idle++
		}
	}
	used, only := 0, 0
	for id, n := range want {
		if p.refs[id] != n {
			return fmt.Errorf("block %d has %d references, want %d", id, p.refs[id], n)
		}
		if n > 0 {
			used++
		}
		if n == 1 && c != nil && c.byBlock[id] != nil {
			only++
		}
	}
	switch {
	case used != p.inUse:
		return fmt.Errorf("%d blocks in use, counted %d", p.inUse, used)
	case len(p.free)+p.inUse != p.made:
		return fmt.Errorf("%d free + %d in use != %d made", len(p.free), p.inUse, p.made)
	case idle != only:
		return fmt.Errorf("%d idle blocks listed, %d held only by the cache", idle, only)
	}
	return nil
}

func hasChild(parent, e *entry) bool { _, ok := parent.children[e]; return ok }

func hasTop(c *Prefix, e *entry) bool { _, ok := c.top[e]; return ok }

func TestPrefixSharesFullBlocks(t *testing.T) {
	for _, typ := range []ggml.Type{ggml.F32, ggml.F16} {
		t.Run(typ.String(), func(t *testing.T) {
			p, c := cached(t, typ, 8)
			prompt := ids(1, 10) // blocks [1..4] [5..8], 2 positions in a third
			a, n := session(t, c, prompt)
			if n != 0 {
				t.Fatalf("Attach to an empty cache = %d, want 0", n)
			}
			other := cat(prompt[:9], []int32{77, 78})
			b := p.NewSeq()
			if got := c.Attach(b, other); got != 8 {
				t.Fatalf("Attach(%v) = %d, want 8", other, got)
			}
			if !slices.Equal(b.table, a.table[:2]) {
				t.Fatalf("shared blocks %v, want a's first two %v", b.table, a.table[:2])
			}
			if err := check(b, other); err != nil {
				t.Fatalf("attached entries: %v", err)
			}
			if err := compute(b, other); err != nil {
				t.Fatal(err)
			}
			if err := check(b, other); err != nil {
				t.Fatal(err)
			}
			if err := check(a, prompt); err != nil {
				t.Fatalf("b's writes reached a: %v", err)
			}
			if st := p.Stats(); st.Used != 4 || st.Cached != 0 {
				t.Fatalf("Stats() = %+v, want 4 used (2 shared), none cached-only", st)
			}
			if err := consistent(p, []*Seq{a, b}); err != nil {
				t.Fatal(err)
			}
			a.Release()
			b.Release()
			if st := p.Stats(); st.Used != 2 || st.Cached != 2 || p.Available() != 8 {
				t.Fatalf("after release Stats() = %+v, Available() = %d, want the 2 cached blocks used and all available", st, p.Available())
			}
			want := PrefixStats{Lookups: 2, HitTokens: 8, MissTokens: 10 + 3, Inserted: 2, Blocks: 2, Idle: 2}
			if got := c.Stats(); got != want {
				t.Fatalf("Stats() = %+v, want %+v", got, want)
			}
		})
	}
}

func TestAttachLength(t *testing.T) {
	p, c := cached(t, ggml.F32, 16)
	base := ids(1, 12)                         // 3 full blocks
	s, _ := session(t, c, base)                // registers all 3
	half, _ := session(t, c, cat(ids(100, 6))) // registers [100..103] only
	s.Release()
	half.Release()
	for _, tc := range []struct {
		name   string
		tokens []int32
		want   int
	}{
		{"empty prompt", nil, 0},
		{"one token", base[:1], 0},
		{"less than a block: the start of a cached one", base[:3], 2},
		{"a block leaves its last token", base[:4], 3},
		{"a block and one", base[:5], 4},
		{"whole cached prompt leaves its last token", base, 11},
		{"cached prompt and one more", cat(base, []int32{0}), 12},
		{"longer than the cache", cat(base, ids(50, 9)), 12},
		{"differs in the second block", cat(base[:6], []int32{0}, base[7:]), 6},
		{"differs in the first token", cat([]int32{0}, base[1:]), 0},
		{"partial block was not cached (Publish)", ids(100, 9), 4},
		{"same blocks after another prefix", cat(ids(100, 4), base), 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := p.NewSeq()
			got := c.Attach(s, tc.tokens)
			if got != tc.want || s.Len() != got || s.Blocks() != (got+3)/4 {
				t.Fatalf("Attach(%v) = %d (len %d, %d blocks), want %d", tc.tokens, got, s.Len(), s.Blocks(), tc.want)
			}
			if err := check(s, tc.tokens); err != nil {
				t.Fatal(err)
			}
			s.Release()
		})
	}
	if err := consistent(p, nil); err != nil {
		t.Fatal(err)
	}
}

// TestRetireSharesTheLastBlock: a retired sequence's partial last block is found by a
// prompt sent again or continued, which copies it on its first write there and leaves
// the cached block as it was.
func TestRetireSharesTheLastBlock(t *testing.T) {
	for _, typ := range []ggml.Type{ggml.F32, ggml.F16} {
		t.Run(typ.String(), func(t *testing.T) {
			p, c := cached(t, typ, 16)
			prompt := ids(1, 10) // [1..4] [5..8] and 9, 10 in a third block
			a, _ := session(t, c, prompt)
			c.Retire(a, prompt)
			tail := a.table[2]
			a.Release()
			for _, tc := range []struct {
				name   string
				tokens []int32
				want   int
			}{
				{"the same prompt leaves its last token", prompt, 9},
				{"the conversation goes on", cat(prompt, ids(50, 5)), 10},
				{"differs inside the last block", cat(prompt[:9], []int32{99, 98}), 9},
				{"differs at the last block's first position", cat(prompt[:8], []int32{99, 98}), 8},
			} {
				t.Run(tc.name, func(t *testing.T) {
					s := p.NewSeq()
					got := c.Attach(s, tc.tokens)
					if got != tc.want {
						t.Fatalf("Attach(%v) = %d, want %d", tc.tokens, got, tc.want)
					}
					// The retired block, or one an earlier case cached with the same
					// ids at the shared positions (equal matches tie).
					if got > 8 && c.byBlock[s.table[2]] == nil {
						t.Fatalf("third block %d is not a cached one (the retired one is %d)", s.table[2], tail)
					}
					if err := check(s, tc.tokens); err != nil {
						t.Fatalf("attached entries: %v", err)
					}
					if err := compute(s, tc.tokens); err != nil {
						t.Fatal(err)
					}
					if err := check(s, tc.tokens); err != nil {
						t.Fatal(err)
					}
					if len(s.table) > 2 && c.byBlock[s.table[2]] != nil {
						t.Fatalf("wrote into the cached block %d without copying it", s.table[2])
					}
					again := p.NewSeq()
					if n := c.Attach(again, prompt); n != 9 {
						t.Fatalf("Attach of the retired prompt after a write = %d, want 9", n)
					}
					if err := check(again, prompt); err != nil {
						t.Fatalf("the cached block changed: %v", err)
					}
					if err := consistent(p, []*Seq{s, again}); err != nil {
						t.Fatal(err)
					}
					c.Retire(s, tc.tokens) // the same prompt's tail is cached already: not twice
					s.Release()
					again.Release()
					if err := consistent(p, nil); err != nil {
						t.Fatal(err)
					}
				})
			}
			// Publish leaves the partial block alone: the sequence is still decoding.
			b, _ := session(t, c, ids(300, 6))
			b.Release()
			s := p.NewSeq()
			if n := c.Attach(s, ids(300, 6)); n != 4 {
				t.Fatalf("Attach after a published, not retired, partial block = %d, want 4", n)
			}
			s.Release()
		})
	}
}

func TestNoSharingAcrossModels(t *testing.T) {
	p := pool(t, ggml.F32, 8)
	c, err := p.NewPrefix("model a")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.NewPrefix("model b"); !errors.Is(err, ErrHasPrefix) {
		t.Fatalf("a second NewPrefix = %v, want ErrHasPrefix", err)
	}
	_, d := cached(t, ggml.F32, 8)
	tokens := ids(1, 9)
	if a, b := c.keys(tokens, 2), d.keys(tokens, 2); a[0] == b[0] || a[1] == b[1] {
		t.Fatalf("two models agree on a key")
	}
}

func TestWriteAfterTruncateCopies(t *testing.T) {
	for _, tc := range []struct {
		name     string
		truncate int // a's length before it grows again with other tokens
	}{
		{"into the second block", 6},
		{"into the first block", 1},
		{"to a block boundary", 4},
		{"to the end of the cached blocks", 8},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, c := cached(t, ggml.F32, 8)
			prompt := ids(1, 9)
			a, _ := session(t, c, prompt) // a and the cache share blocks 0 and 1
			orig := slices.Clone(a.table[:2])
			a.Truncate(tc.truncate)
			other := cat(prompt[:tc.truncate], ids(40, 5))
			if err := compute(a, other); err != nil {
				t.Fatal(err)
			}
			keep := tc.truncate / 4
			if !slices.Equal(a.table[:keep], orig[:keep]) {
				t.Fatalf("blocks %v after the write, want the untouched ones %v kept", a.table, orig[:keep])
			}
			if tc.truncate%4 != 0 && a.table[keep] == orig[keep] {
				t.Fatalf("block %d (%d) was written in place, want a copy", keep, orig[keep])
			}
			if err := check(a, other); err != nil {
				t.Fatal(err)
			}
			b := p.NewSeq()
			if n := c.Attach(b, prompt); n != 8 || !slices.Equal(b.table, orig) {
				t.Fatalf("Attach after a's rewrite = %d blocks %v, want 8 in %v", n, b.table, orig)
			}
			if err := check(b, prompt); err != nil {
				t.Fatalf("a wrote into a cached block: %v", err)
			}
			if err := consistent(p, []*Seq{a, b}); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestEvictionOrder(t *testing.T) {
	p, c := cached(t, ggml.F32, 6)
	x := ids(1, 13)  // 3 full blocks, and 1 position in a fourth
	y := ids(100, 9) // 2 full blocks, and 1 position in a third
	for _, prompt := range [][]int32{x, y} {
		s, _ := session(t, c, prompt)
		s.Release()
	}
	// x's blocks are older than y's; x2 older than x1 older than x0.
	if st := p.Stats(); st.Used != 5 || st.Cached != 5 || p.Available() != 6 {
		t.Fatalf("Stats() = %+v, Available() = %d, want 5 used, all cached", st, p.Available())
	}
	for _, tc := range []struct {
		grow      int // positions a fresh sequence takes
		evictions int64
		x, y      int // what Attach then finds of x and y
	}{
		{4, 0, 12, 8}, // the free block
		{8, 1, 8, 8},  // x2
		{12, 2, 4, 8}, // x2, x1
		{16, 3, 0, 8}, // all of x
		{20, 4, 0, 4}, // all of x, y1
		{24, 5, 0, 0}, // everything
	} {
		t.Run(fmt.Sprint(tc.grow), func(t *testing.T) {
			z := p.NewSeq()
			if err := z.Grow(tc.grow); err != nil {
				t.Fatalf("Grow(%d) = %v with the cache's blocks evictable", tc.grow, err)
			}
			if got := c.Stats().Evictions; got != tc.evictions {
				t.Errorf("Grow(%d) evicted %d entries, want %d", tc.grow, got, tc.evictions)
			}
			if err := consistent(p, []*Seq{z}); err != nil {
				t.Fatal(err)
			}
			z.Release()
			for _, f := range []struct {
				prompt []int32
				want   int
			}{{x, tc.x}, {y, tc.y}} {
				s := p.NewSeq()
				if got := c.Attach(s, f.prompt); got != f.want {
					t.Errorf("after Grow(%d), Attach(%v) = %d, want %d", tc.grow, f.prompt, got, f.want)
				}
				s.Release()
			}
			// Put back what was evicted, in the same order of recency.
			c.Flush()
			for _, prompt := range [][]int32{x, y} {
				s, _ := session(t, c, prompt)
				s.Release()
			}
			c.stats.Evictions = 0
		})
	}
	z := p.NewSeq()
	if err := z.Grow(25); !errors.Is(err, ErrExhausted) {
		t.Fatalf("Grow past the budget = %v, want ErrExhausted", err)
	}
}

func TestPublishMarksFoundBlocksUsed(t *testing.T) {
	p, c := cached(t, ggml.F32, 7)
	x, y := ids(1, 9), ids(100, 9) // 2 full blocks each, and 1 position in a third
	for _, prompt := range [][]int32{x, y} {
		s, _ := session(t, c, prompt)
		s.Release()
	}
	// A session that computed x without attaching (it started before x was cached)
	// publishes it: x's blocks are found, and now more recent than y's.
	s := p.NewSeq()
	if err := compute(s, x); err != nil {
		t.Fatal(err)
	}
	c.Publish(s, x)
	s.Release()
	z := p.NewSeq()
	if err := z.Grow(16); err != nil { // 3 free blocks and one eviction
		t.Fatal(err)
	}
	for _, f := range []struct {
		prompt []int32
		want   int
	}{{x, 8}, {y, 4}} {
		s := p.NewSeq()
		if got := c.Attach(s, f.prompt); got != f.want {
			t.Errorf("Attach(%v) = %d, want %d", f.prompt, got, f.want)
		}
		s.Release()
	}
}

func TestEvictingAParentDropsHeldChildren(t *testing.T) {
	p, c := cached(t, ggml.F32, 6)
	short, long := ids(1, 5), ids(1, 9)
	// Both compute block 0 at once; a's is cached, then b's second block below it.
	a, b := p.NewSeq(), p.NewSeq()
	c.Attach(a, short)
	c.Attach(b, long)
	for _, s := range []struct {
		seq    *Seq
		tokens []int32
	}{{a, short}, {b, long}} {
		if err := compute(s.seq, s.tokens); err != nil {
			t.Fatal(err)
		}
		c.Publish(s.seq, s.tokens)
	}
	if got := c.Stats().Blocks; got != 2 {
		t.Fatalf("%d blocks cached, want a's first and b's second", got)
	}
	a.Release() // a's first block is now idle, b's second held; 2 blocks free
	z := p.NewSeq()
	if err := z.Grow(12); err != nil { // one more than is free: evict
		t.Fatal(err)
	}
	if st := c.Stats(); st.Blocks != 0 || st.Evictions != 2 {
		t.Fatalf("after evicting the parent: %+v, want nothing cached and 2 evictions", st)
	}
	if err := check(b, long); err != nil {
		t.Fatalf("evicting b's cached block changed it: %v", err)
	}
	if err := consistent(p, []*Seq{b, z}); err != nil {
		t.Fatal(err)
	}
	b.Release()
	z.Release()
	if st := p.Stats(); st.Used != 0 {
		t.Fatalf("after release Stats() = %+v, want nothing used", st)
	}
}

func TestReleaseReturnsToCachedOnly(t *testing.T) {
	p, c := cached(t, ggml.F16, 32)
	var live []*Seq
	for i := range 6 {
		prompt := cat(ids(1, 4*(i%3)), ids(10*i, 7)) // shared prefixes of 0, 1 and 2 blocks
		s, _ := session(t, c, prompt)
		live = append(live, s, s.Fork(s.Len()))
	}
	if err := consistent(p, live); err != nil {
		t.Fatal(err)
	}
	for _, s := range live {
		s.Release()
	}
	st, ps := p.Stats(), c.Stats()
	if st.Used != ps.Blocks || st.Cached != ps.Blocks || ps.Idle != ps.Blocks {
		t.Fatalf("after every release: pool %+v, cache %+v; want every used block cached and idle", st, ps)
	}
	if err := consistent(p, nil); err != nil {
		t.Fatal(err)
	}
	if n := c.Flush(); n != ps.Blocks {
		t.Fatalf("Flush() = %d, want %d", n, ps.Blocks)
	}
	if st := p.Stats(); st.Used != 0 || st.Free != st.Total {
		t.Fatalf("after Flush Stats() = %+v, want all free", st)
	}
}

func TestPrefixConcurrent(t *testing.T) {
	const workers, rounds = 6, 60
	// Each worker holds at most one sequence of 4 blocks (3 for the prompt, 1 to
	// decode, 1 to copy on write), so the budget always suffices with evictions.
	p, c := cached(t, ggml.F32, workers*5+4)
	prefixes := [][]int32{ids(1, 8), ids(1, 4), ids(200, 8), nil}
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(w), 1))
			for range rounds {
				prompt := cat(prefixes[r.IntN(len(prefixes))], ids(1000+r.IntN(3), 1+r.IntN(4)))
				s := p.NewSeq()
				c.Attach(s, prompt)
				if err := check(s, prompt); err != nil {
					errs <- fmt.Errorf("attached: %w", err)
					return
				}
				if err := compute(s, prompt); err != nil {
					errs <- err
					return
				}
				c.Publish(s, prompt)
				// Decode a little, rewind into the prompt, decode again.
				more := cat(prompt, ids(5000+w, 3))
				if err := compute(s, more); err != nil {
					errs <- err
					return
				}
				s.Truncate(r.IntN(len(prompt)))
				again := cat(prompt[:s.Len()], ids(7000+w, 2))
				if err := compute(s, again); err != nil {
					errs <- err
					return
				}
				if err := check(s, again); err != nil {
					errs <- err
					return
				}
				if r.IntN(2) == 0 {
					c.Retire(s, again)
				} else {
					c.Publish(s, again)
				}
				s.Release()
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if err := consistent(p, nil); err != nil {
		t.Fatal(err)
	}
	if st := c.Stats(); st.HitTokens == 0 || st.Lookups != workers*rounds {
		t.Errorf("Stats() = %+v, want %d lookups with some hits", st, workers*rounds)
	}
	c.Flush()
	if st := p.Stats(); st.Used != 0 {
		t.Fatalf("after Flush Stats() = %+v, want nothing used", st)
	}
}

// TestPrefixRandomized runs random sessions on a small pool, and after every step checks
// the bookkeeping, that every sequence reads back the entries of its own tokens, and that
// Grow fails only when Available says the blocks are not there.
// TestPrefixRandomized runs random sessions over a small cache, in F32 and F16 pools:
// they attach (whole blocks and the start of one more), grow, rewind, fork (as the draft
// branches), publish and retire, and after every step each sequence must read back its
// own entries and the pool's and cache's books must balance.
func TestPrefixRandomized(t *testing.T) {
	for _, typ := range []ggml.Type{ggml.F32, ggml.F16} {
		t.Run(typ.String(), func(t *testing.T) { testPrefixRandomized(t, typ) })
	}
}

func testPrefixRandomized(t *testing.T, typ ggml.Type) {
	r := rand.New(rand.NewPCG(7, 7))
	p, c := cached(t, typ, 12)
	type sess struct {
		seq    *Seq
		tokens []int32
	}
	var live []sess
	for step := range 3000 {
		switch op := r.IntN(10); {
		case op < 3 && len(live) < 4: // a new session: attach, compute, publish
			prompt := make([]int32, 1+r.IntN(14))
			for i := range prompt {
				prompt[i] = int32(r.IntN(2)) // two letters, so prefixes repeat
			}
			s := p.NewSeq()
			n := c.Attach(s, prompt)
			if n > len(prompt)-1 && n > 0 {
				t.Fatalf("step %d: Attach of %d tokens = %d", step, len(prompt), n)
			}
			live = append(live, sess{s, prompt[:n]})
		case op < 7 && len(live) > 0: // a session extends or rewinds
			i := r.IntN(len(live))
			s := &live[i]
			if r.IntN(3) == 0 {
				s.seq.Truncate(r.IntN(s.seq.Len() + 1))
				s.tokens = s.tokens[:s.seq.Len()]
				break
			}
			more := 1 + r.IntN(6)
			next := slices.Clone(s.tokens)
			for range more {
				next = append(next, int32(r.IntN(2)))
			}
			bt := 4
			need := (len(next)+bt-1)/bt - s.seq.Blocks()
			if len(s.tokens)%bt != 0 {
				need++ // at most one copy on write
			}
			avail := p.Available()
			if err := compute(s.seq, next); err != nil {
				if !errors.Is(err, ErrExhausted) || avail >= need {
					t.Fatalf("step %d: Grow(%d) = %v with %d blocks available, %d needed", step, more, err, avail, need)
				}
				break
			}
			s.tokens = next
			if r.IntN(2) == 0 {
				c.Publish(s.seq, s.tokens)
			}
		case op < 8 && len(live) > 0 && len(live) < 4: // a session forks a branch
			i := r.IntN(len(live))
			n := r.IntN(live[i].seq.Len() + 1)
			live = append(live, sess{live[i].seq.Fork(n), slices.Clone(live[i].tokens[:n])})
		case len(live) > 0: // a session ends
			i := r.IntN(len(live))
			if r.IntN(2) == 0 {
				c.Retire(live[i].seq, live[i].tokens)
			}
			live[i].seq.Release()
			live = slices.Delete(live, i, i+1)
		}
		seqs := make([]*Seq, len(live))
		for i, s := range live {
			seqs[i] = s.seq
			if err := check(s.seq, s.tokens); err != nil {
				t.Fatalf("step %d: %v", step, err)
			}
		}
		if err := consistent(p, seqs); err != nil {
			t.Fatalf("step %d: %v", step, err)
		}
	}
	if st := c.Stats(); st.HitTokens == 0 || st.Evictions == 0 {
		t.Errorf("Stats() = %+v: the run never hit or never evicted", st)
	}
}

func TestNoPrefixCachedIsZero(t *testing.T) {
	p := pool(t, ggml.F32, 3)
	s := p.NewSeq()
	if err := s.Grow(9); err != nil {
		t.Fatal(err)
	}
	if st, avail := p.Stats(), p.Available(); st.Cached != 0 || avail != st.Free || avail != 0 {
		t.Fatalf("Stats() = %+v, Available() = %d without a prefix cache", st, avail)
	}
}

func BenchmarkKeys(b *testing.B) {
	p, err := NewPool(Config{Layers: 1, KVDim: 1, Budget: 1 << 20})
	if err != nil {
		b.Fatal(err)
	}
	c, err := p.NewPrefix("bench")
	if err != nil {
		b.Fatal(err)
	}
	tokens := ids(0, 64*32)
	b.SetBytes(int64(4 * len(tokens)))
	for b.Loop() {
		c.keys(tokens, 32)
	}
}
