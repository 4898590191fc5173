package kvcache

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/specd-dev/specd/ggml"
)

// The model-based test: a random run of what the verifier and the draft do to a pool
// and its prefix cache — admit prompts that share prefixes of random lengths (and
// prompts sent before, again), decode, rewind after a rejected draft, fork a branch,
// retire or just release, flush — checked after every step against a reference model
// that knows nothing of hashes, lists or free lists: a map from the token prefix a
// cached block ends to its block, and the order in which blocks became idle. After
// every step:
//   - each block's reference count is the number of sequences holding it plus one if
//     it is cached, and free blocks are exactly the budget less the blocks held
//     (consistent);
//   - every live sequence and every cached block reads back the entries of its own
//     token prefix (entryAt depends on every token up to the position);
//   - the cache holds exactly the prefixes the model says Publish and Retire registered
//     and eviction left;
//   - Attach finds the longest cached prefix (whole blocks, then the longest start of
//     one more), never the whole prompt;
//   - after a Grow every block the new positions fall in is the sequence's alone and
//     not cached (no two writers), and Grow fails only when the budget, counting what
//     the cache could give up, truly lacks the blocks;
//   - eviction happens only when no block is free, takes idle blocks least recently
//     used first (with what was registered below them), and never a block a live
//     sequence holds.

// refEntry is a cached block in the reference model.
type refEntry struct {
	id   int32
	used int // when it last became idle, or was found again by Publish
}

// refModel is the reference: the cached prefixes and their recency.
type refModel struct {
	bt    int
	reg   map[string]*refEntry // the token prefix a cached block ends → the block
	toks  map[string][]int32   // a key of reg → its tokens
	clock int
}

func prefixKey(tokens []int32) string { return fmt.Sprint(tokens) }

// modelSeq is a live sequence and the tokens whose entries it holds.
type modelSeq struct {
	seq    *Seq
	tokens []int32
}

type modelRun struct {
	t          *testing.T
	r          *rand.Rand
	p          *Pool
	c          *Prefix
	m          refModel
	live       []modelSeq
	bases      [][]int32 // prompts share prefixes of these
	prompt     [][]int32 // prompts admitted so far, to send again
	seed       uint64
	step       int
	stats      struct{ hits, evicted, refusedGrow, forks, cows int }
	freeBefore int // free blocks before the current Grow
}

func (mr *modelRun) fatalf(format string, args ...any) {
	mr.t.Helper()
	mr.t.Fatalf("seed %d, step %d: %s", mr.seed, mr.step, fmt.Sprintf(format, args...))
}

// actual returns the cache's prefixes as the model spells them: each entry's tokens
// after its parents'.
func (mr *modelRun) actual() map[string]int32 {
	mr.p.mu.Lock()
	defer mr.p.mu.Unlock()
	got := map[string]int32{}
	for _, e := range mr.c.entries {
		var chain [][]int32
		for x := e; x != nil; x = x.parent {
			chain = append(chain, x.tokens)
		}
		slices.Reverse(chain)
		got[prefixKey(slices.Concat(chain...))] = e.id
	}
	return got
}

// refs returns the pool's reference count of block id.
func (mr *modelRun) refs(id int32) int32 {
	mr.p.mu.Lock()
	defer mr.p.mu.Unlock()
	return mr.p.refs[id]
}

// idle returns the model's entries that only the cache holds now, by prefix.
func (mr *modelRun) idle() map[string]*refEntry {
	held := map[int32]bool{}
	for _, s := range mr.live {
		for _, id := range s.seq.table {
			held[id] = true
		}
	}
	out := map[string]*refEntry{}
	for k, e := range mr.m.reg {
		if !held[e.id] {
			out[k] = e
		}
	}
	return out
}

// blockAt reads (layer, pos) of block id, whatever sequence holds it.
func (mr *modelRun) blockAt(id int32, layer, pos int) (k, v []float32) {
	table := make([]int32, pos/mr.m.bt+1)
	table[len(table)-1] = id
	return at(&Seq{pool: mr.p, table: table, n: pos + 1}, layer, pos)
}

func (mr *modelRun) register(prefix []int32, id int32) {
	k := prefixKey(prefix)
	mr.m.toks[k] = slices.Clone(prefix)
	mr.m.reg[k] = &refEntry{id: id}
}

// touch stamps entries as idle (or used) now, in the order given: the last is the most
// recent.
func (mr *modelRun) touch(keys []string) {
	for _, k := range keys {
		if e := mr.m.reg[k]; e != nil {
			mr.m.clock++
			e.used = mr.m.clock
		}
	}
}

// release models Release (and Truncate's tail): the blocks go last first, so the
// earlier blocks of a chain become the more recently idle.
func (mr *modelRun) release(s modelSeq, from int) {
	var stamp []string
	for i := len(s.seq.table) - 1; i >= from; i-- {
		id := s.seq.table[i]
		for k, e := range mr.m.reg {
			if e.id == id {
				stamp = append(stamp, k)
			}
		}
	}
	// Only those no other live sequence holds become idle; stamping the others is
	// harmless, for a held entry's stamp is set again when it is let go.
	mr.touch(stamp)
}

// publish models Publish and Retire: walk s's whole blocks; a prefix already cached is
// found (and used), a block cached under another prefix stops the walk, any other is
// registered; Retire also registers the partial last block.
func (mr *modelRun) publish(s modelSeq, tail bool) {
	bt := mr.m.bt
	valid := min(len(s.tokens), s.seq.Len())
	n := valid / bt
	byID := map[int32]bool{}
	for _, e := range mr.m.reg {
		byID[e.id] = true
	}
	var seen []string
	for i := range n {
		k := prefixKey(s.tokens[:(i+1)*bt])
		id := s.seq.table[i]
		if e := mr.m.reg[k]; e != nil {
			seen = append(seen, k)
			continue
		}
		if byID[id] {
			tail = false
			break
		}
		mr.register(s.tokens[:(i+1)*bt], id)
		byID[id] = true
	}
	if tail && valid%bt != 0 && mr.m.reg[prefixKey(s.tokens[:valid])] == nil && !byID[s.seq.table[n]] {
		mr.register(s.tokens[:valid], s.seq.table[n])
	}
	// Found entries that are idle are used now, children first.
	idle := mr.idle()
	slices.Reverse(seen)
	var touched []string
	for _, k := range seen {
		if idle[k] != nil {
			touched = append(touched, k)
		}
	}
	mr.touch(touched)
}

// attachWant is the reference's Attach: the longest run of cached whole blocks, then
// the longest start of a block cached below it.
func (mr *modelRun) attachWant(prompt []int32) int {
	bt := mr.m.bt
	usable := max(len(prompt)-1, 0)
	full := 0
	for (full+1)*bt <= usable && mr.m.reg[prefixKey(prompt[:(full+1)*bt])] != nil {
		full++
	}
	rest := prompt[full*bt : min(usable, full*bt+bt)]
	best := 0
	for k := range mr.m.reg {
		toks := mr.m.toks[k]
		if len(toks) <= full*bt || len(toks) > full*bt+bt || !slices.Equal(toks[:full*bt], prompt[:full*bt]) {
			continue
		}
		m := 0
		for m < len(rest) && m < len(toks)-full*bt && rest[m] == toks[full*bt+m] {
			m++
		}
		best = max(best, m)
	}
	return full*bt + best
}

// grow computes s up to tokens, checking the exclusive-writer and the budget rules and
// eviction order; it reports whether it succeeded.
func (mr *modelRun) grow(s *modelSeq, tokens []int32) bool {
	bt := mr.m.bt
	old := s.seq.Len()
	need := (len(tokens)+bt-1)/bt - s.seq.Blocks()
	avail, free := mr.p.Available(), mr.p.Stats().Free
	mr.freeBefore = free
	idleBefore := mr.idle()
	// A copy on write lets go of the shared block once its copy is made: if only the
	// cache holds it then, it is the most recently idle, and may be evicted too.
	cowKey, cowID := "", int32(-1)
	if old%bt != 0 && mr.refs(s.seq.table[old/bt]) > 1 {
		need++
		cowID = s.seq.table[old/bt]
		for k, e := range mr.m.reg {
			if e.id == cowID && mr.refs(cowID) == 2 {
				cowKey = k
				idleBefore[k] = &refEntry{id: cowID, used: int(^uint(0) >> 1)}
			}
		}
	}
	before := s.seq.Blocks()
	err := compute(s.seq, tokens)
	if err != nil {
		if !errors.Is(err, ErrExhausted) || avail >= need {
			mr.fatalf("Grow to %d = %v with %d blocks available, %d needed", len(tokens), err, avail, need)
		}
		if s.seq.Len() != old || s.seq.Blocks() != before {
			mr.fatalf("a failed Grow left %d positions in %d blocks, want %d in %d", s.seq.Len(), s.seq.Blocks(), old, before)
		}
		mr.stats.refusedGrow++
		mr.copied(s, old, cowID, cowKey)
		mr.evictions(idleBefore, need-free, cowKey)
		return false
	}
	// Every block the new positions fall in is s's alone, and not cached.
	mr.p.mu.Lock()
	for b := old / bt; b < s.seq.Blocks(); b++ {
		id := s.seq.table[b]
		if mr.p.refs[id] != 1 || mr.c.byBlock[id] != nil {
			mr.p.mu.Unlock()
			mr.fatalf("after Grow block %d (id %d) has %d references, cached %v: two writers", b, id, mr.p.refs[id], mr.c.byBlock[id] != nil)
		}
	}
	mr.p.mu.Unlock()
	if old%bt != 0 && need > (len(tokens)+bt-1)/bt-before {
		mr.stats.cows++
	}
	s.tokens = slices.Clone(tokens)
	mr.copied(s, old, cowID, cowKey)
	mr.evictions(idleBefore, need-free, cowKey)
	return true
}

// copied stamps the cached block a Grow copied on write as idle now, if it did.
func (mr *modelRun) copied(s *modelSeq, old int, cowID int32, cowKey string) {
	if cowKey != "" && s.seq.Blocks() > old/mr.m.bt && s.seq.table[old/mr.m.bt] != cowID {
		mr.touch([]string{cowKey})
	}
}

// evictions reconciles the model with what the cache dropped while a Grow allocated
// short blocks more than were free: the reference evicts, while it is short and has
// idle entries, the least recently used idle one with everything cached below it, and
// the cache must have dropped exactly that.
func (mr *modelRun) evictions(idleBefore map[string]*refEntry, short int, cowKey string) {
	// k is root or registered below it (a partial block has nothing below it).
	below := func(k, root string) bool {
		a, b := mr.m.toks[k], mr.m.toks[root]
		return k == root || len(b)%mr.m.bt == 0 && len(a) > len(b) && slices.Equal(a[:len(b)], b)
	}
	want := map[string]bool{}
	// The copy on write allocates first, while the block it copies is still held.
	firstShort := 0
	if cowKey != "" && short > 0 && mr.freeBefore == 0 {
		firstShort = 1
	}
	for freed := 0; freed < short; {
		if freed >= firstShort {
			firstShort = -1 // the copy is made: the block it copied may be idle now
		}
		oldest := ""
		for k, e := range idleBefore {
			if k == cowKey && firstShort >= 0 {
				continue
			}
			if !want[k] && (oldest == "" || e.used < idleBefore[oldest].used) {
				oldest = k
			}
		}
		if oldest == "" {
			break
		}
		for k := range mr.m.reg {
			if !want[k] && below(k, oldest) {
				want[k] = true
				if idleBefore[k] != nil {
					freed++
				}
			}
		}
	}
	got := mr.actual()
	for k, e := range mr.m.reg {
		id, ok := got[k]
		if gone := !ok || id != e.id; gone != want[k] {
			mr.fatalf("%d blocks short: %v evicted %v, want %v (idle since %d, idle before: %d)", short, mr.m.toks[k], gone, want[k], e.used, len(idleBefore))
		}
	}
	for k := range want {
		delete(mr.m.reg, k)
	}
	mr.stats.evicted += len(want)
}

// newPrompt is a prompt sharing a random prefix of one of the bases (possibly all of
// it, possibly ending mid-block), then tokens of its own; or a prompt sent before.
func (mr *modelRun) newPrompt() []int32 {
	if len(mr.prompt) > 0 && mr.r.IntN(4) == 0 {
		return mr.prompt[mr.r.IntN(len(mr.prompt))]
	}
	b := mr.bases[mr.r.IntN(len(mr.bases))]
	p := slices.Clone(b[:mr.r.IntN(len(b)+1)])
	for range mr.r.IntN(6) {
		p = append(p, int32(100+mr.r.IntN(3)))
	}
	if len(p) == 0 {
		p = append(p, 7)
	}
	mr.prompt = append(mr.prompt, p)
	return p
}

// checkAll is the check after every step.
func (mr *modelRun) checkAll() {
	mr.t.Helper()
	seqs := make([]*Seq, len(mr.live))
	for i, s := range mr.live {
		seqs[i] = s.seq
		if err := check(s.seq, s.tokens); err != nil {
			mr.fatalf("live sequence %d: %v", i, err)
		}
	}
	if err := consistent(mr.p, seqs); err != nil {
		mr.fatalf("%v", err)
	}
	got := mr.actual()
	for k, e := range mr.m.reg {
		if id, ok := got[k]; !ok || id != e.id {
			mr.fatalf("the model has %v cached in block %d; the cache has it in %d (%v)", mr.m.toks[k], e.id, id, ok)
		}
	}
	if len(got) != len(mr.m.reg) {
		mr.fatalf("the cache holds %d blocks, the model %d", len(got), len(mr.m.reg))
	}
	bt := mr.m.bt
	for k, e := range mr.m.reg {
		toks := mr.m.toks[k]
		for pos := (len(toks) - 1) / bt * bt; pos < len(toks); pos++ {
			for l := range 2 {
				gk, gv := mr.blockAt(e.id, l, pos)
				wk, wv := entryAt(toks, pos, l)
				if !slices.Equal(gk, wk) || !slices.Equal(gv, wv) {
					mr.fatalf("cached block %d of %v at (layer %d, pos %d) = %v %v, want %v %v", e.id, toks, l, pos, gk, gv, wk, wv)
				}
			}
		}
	}
	st, ps := mr.p.Stats(), mr.c.Stats()
	if st.Free != st.Total-st.Used || st.Cached != ps.Idle || len(mr.idle()) != ps.Idle {
		mr.fatalf("Stats() = %+v, prefix %+v, the model has %d idle", st, ps, len(mr.idle()))
	}
}

// runPrefixModel runs steps random operations on a pool of blocks blocks.
func runPrefixModel(t *testing.T, typ ggml.Type, seed uint64, steps, blocks int) *modelRun {
	p := pool(t, typ, blocks)
	c, err := p.NewPrefix("model test")
	if err != nil {
		t.Fatal(err)
	}
	mr := &modelRun{t: t, seed: seed, r: rand.New(rand.NewPCG(seed, 0x5eed)), p: p, c: c, m: refModel{bt: 4, reg: map[string]*refEntry{}, toks: map[string][]int32{}}}
	for range 3 {
		b := make([]int32, 4+mr.r.IntN(14))
		for i := range b {
			b[i] = int32(mr.r.IntN(3))
		}
		mr.bases = append(mr.bases, b)
	}
	for mr.step = range steps {
		switch op := mr.r.IntN(20); {
		case op < 5 && len(mr.live) < 5: // admit a prompt
			prompt := mr.newPrompt()
			s := modelSeq{seq: p.NewSeq()}
			// A request for its prompt's log-probabilities computes all of it, attaching
			// nothing: its Publish then finds the blocks already cached.
			want, got := 0, 0
			if mr.r.IntN(5) > 0 {
				want, got = mr.attachWant(prompt), c.Attach(s.seq, prompt)
			}
			if got != want || got != s.seq.Len() {
				mr.fatalf("Attach(%v) = %d (Len %d), want %d", prompt, got, s.seq.Len(), want)
			}
			if got > 0 {
				mr.stats.hits++
			}
			s.tokens = slices.Clone(prompt[:got])
			mr.live = append(mr.live, s)
			if err := check(s.seq, s.tokens); err != nil {
				mr.fatalf("attached: %v", err)
			}
			// Prefill in a chunk or two, as the scheduler does; a prompt the
			// budget cannot take is let go.
			ok := true
			if mid := got + mr.r.IntN(len(prompt)-got+1); mid > got {
				ok = mr.grow(&mr.live[len(mr.live)-1], prompt[:mid])
			}
			if ok {
				ok = mr.grow(&mr.live[len(mr.live)-1], prompt)
			}
			s = mr.live[len(mr.live)-1]
			if ok {
				c.Publish(s.seq, s.tokens)
				mr.publish(s, false)
			} else {
				mr.end(len(mr.live)-1, false)
			}
		case op < 11 && len(mr.live) > 0: // decode a few tokens
			i := mr.r.IntN(len(mr.live))
			s := &mr.live[i]
			next := slices.Clone(s.tokens)
			for range 1 + mr.r.IntN(6) {
				next = append(next, int32(mr.r.IntN(3)))
			}
			if mr.grow(s, next) && mr.r.IntN(2) == 0 {
				c.Publish(s.seq, s.tokens)
				mr.publish(*s, false)
			}
		case op < 14 && len(mr.live) > 0: // a rejected draft: rewind
			s := &mr.live[mr.r.IntN(len(mr.live))]
			n := mr.r.IntN(s.seq.Len() + 1)
			bt := mr.m.bt
			mr.release(*s, (n+bt-1)/bt)
			s.seq.Truncate(n)
			s.tokens = s.tokens[:n]
		case op < 16 && len(mr.live) > 0 && len(mr.live) < 5: // fork a branch
			s := mr.live[mr.r.IntN(len(mr.live))]
			n := mr.r.IntN(s.seq.Len() + 1)
			mr.live = append(mr.live, modelSeq{seq: s.seq.Fork(n), tokens: slices.Clone(s.tokens[:n])})
			mr.stats.forks++
		case op < 19 && len(mr.live) > 0: // end a session
			mr.end(mr.r.IntN(len(mr.live)), mr.r.IntN(2) == 0)
		case op == 19 && mr.r.IntN(8) == 0: // flush
			idle := mr.idle()
			c.Flush()
			got := mr.actual()
			for k := range mr.m.reg {
				if _, ok := got[k]; !ok {
					delete(mr.m.reg, k)
				}
			}
			for k := range got {
				if idle[k] != nil {
					mr.fatalf("Flush kept idle %v", mr.m.toks[k])
				}
			}
		}
		mr.checkAll()
	}
	return mr
}

// end retires (or not) and releases live sequence i.
func (mr *modelRun) end(i int, retire bool) {
	s := mr.live[i]
	if retire {
		mr.c.Retire(s.seq, s.tokens)
		mr.publish(s, true)
	}
	mr.live = slices.Delete(mr.live, i, i+1)
	mr.release(s, 0)
	s.seq.Release()
}

func TestPrefixModel(t *testing.T) {
	for _, typ := range []ggml.Type{ggml.F32, ggml.F16} {
		for seed := range uint64(4) {
			t.Run(fmt.Sprintf("%v/seed%d", typ, seed), func(t *testing.T) {
				mr := runPrefixModel(t, typ, seed, 1500, 10+int(seed)*3)
				st := mr.stats
				if st.hits == 0 || st.evicted == 0 || st.refusedGrow == 0 || st.forks == 0 || st.cows == 0 {
					t.Errorf("the run never exercised something: %+v", st)
				}
			})
		}
	}
}

func FuzzPrefixModel(f *testing.F) {
	f.Add(uint64(1), uint16(300), uint8(10))
	f.Add(uint64(99), uint16(800), uint8(6))
	f.Fuzz(func(t *testing.T, seed uint64, steps uint16, blocks uint8) {
		typ := ggml.F32
		if seed%2 == 1 {
			typ = ggml.F16
		}
		runPrefixModel(t, typ, seed, int(steps%2000), 4+int(blocks%20))
	})
}
