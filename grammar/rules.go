package grammar

import (
	"errors"
	"fmt"
	"math"
	"math/bits"
	"slices"

	"github.com/specd-dev/specd/sample"
)

// ErrGrammar is wrapped by GBNFFormat, RegexFormat and ChoiceFormat for a grammar, a
// pattern or a list of choices that cannot be used; a *SyntaxError says where.
var ErrGrammar = errors.New("invalid grammar")

// SyntaxError is what is wrong in a grammar or a pattern, and where: line and column
// (1-based, the column in characters) of the text given. It wraps ErrGrammar.
type SyntaxError struct {
	Line, Col int
	Msg       string
}

func (e *SyntaxError) Error() string {
	return fmt.Sprintf("%v: line %d, column %d: %s", ErrGrammar, e.Line, e.Col, e.Msg)
}

func (e *SyntaxError) Unwrap() error { return ErrGrammar }

// Bounds on a rule grammar, so that no grammar a client sends costs more than a small
// one: the elements and rules once repetitions are written out (x{3} is three x), and
// the work of one step — the stacks kept open (as maxAlts for JSON; at least
// MaxChoices) and the elements visited to find them.
const (
	maxElems   = 1 << 16
	maxRules   = 1 << 12
	maxStacks  = 256
	maxExpands = 1 << 12
)

// A rule grammar, compiled: every rule's alternatives laid end to end in elems, each
// closed by an eEnd element, as llama.cpp lays out its rules.
type ruleSet struct {
	elems  []elem
	starts [][]int32 // per rule: where each alternative begins in elems
	root   int32     // the rule a sentence is
	// classes are the sets of characters (code points) elements match: ranges sorted,
	// disjoint and not adjacent.
	classes [][]span
	// source is what the format was made from: GBNF text or a pattern; choices for
	// ChoiceFormat.
	source  string
	choices []string
}

type elemKind uint8

const (
	eEnd  elemKind = iota // the end of an alternative
	eChar                 // one character of classes[arg]
	eRef                  // rule arg
)

type elem struct {
	kind elemKind
	arg  int32
}

// span is the code points lo to hi, both in.
type span struct{ lo, hi rune }

// contains reports whether class c holds r.
func contains(c []span, r rune) bool {
	i, _ := slices.BinarySearchFunc(c, r, func(s span, r rune) int {
		switch {
		case s.hi < r:
			return -1
		case s.lo > r:
			return 1
		}
		return 0
	})
	return i < len(c) && c[i].lo <= r && r <= c[i].hi
}

// meets reports whether class c holds a code point in [lo, hi].
func meets(c []span, lo, hi rune) bool {
	i, _ := slices.BinarySearchFunc(c, lo, func(s span, r rune) int {
		if s.hi < r {
			return -1
		}
		return 1
	})
	return i < len(c) && c[i].lo <= hi
}

// normalize sorts the spans of a class, merges those that overlap or touch, and with
// neg returns the complement within the code points (U+0000 to U+10FFFF; surrogates
// are never matched, as they are never valid UTF-8).
func normalize(c []span, neg bool) []span {
	c = slices.Clone(c)
	slices.SortFunc(c, func(a, b span) int { return int(a.lo) - int(b.lo) })
	var out []span
	for _, s := range c {
		if n := len(out); n > 0 && s.lo <= out[n-1].hi+1 {
			out[n-1].hi = max(out[n-1].hi, s.hi)
			continue
		}
		out = append(out, s)
	}
	if !neg {
		return out
	}
	var comp []span
	next := rune(0)
	for _, s := range out {
		if s.lo > next {
			comp = append(comp, span{next, s.lo - 1})
		}
		next = s.hi + 1
	}
	if next <= maxRune {
		comp = append(comp, span{next, maxRune})
	}
	return comp
}

const maxRune = 0x10FFFF

// anyChar is the class of every character.
var anyChar = []span{{0, maxRune}}

// A matcher state is the set of stacks a llama.cpp grammar keeps: each a position in
// the rules whose next element is a character, over the positions to return to when
// its rule ends. Stacks are never changed once made, so states share them and a state
// costs nothing to keep. A character split across tokens is kept as its first bytes:
// the stacks are those whose next character may begin so. The zero rstate is the
// state after text the grammar cannot take.
type rstate struct {
	set *stackSet
	// A character begun: its bits so far, the bytes still to come, and the range of the
	// next one.
	cp     rune
	need   uint8
	lo, hi byte
}

type stackSet struct {
	tops []*stack
	// done: the text so far is a whole sentence of the grammar (the empty stack).
	done bool
	// short: a step on the way had more stacks or work than the bounds and dropped
	// some (deterministically: the first found are kept).
	short bool
	// memo: the sets a step reached from this one, by which of its stacks took the
	// character (or may take the character begun). What a step does depends on that
	// alone, so a mask's walk of the vocabulary's trie steps once for all the tokens
	// that continue alike: free text ([^\n]+) cost 120 ms a mask over Qwen2's 152k
	// tokens without it. A matcher drops the memo of a state it leaves.
	memo []memoEntry
	// next: the set each byte leads to from between characters (deadSet: none), filled
	// as bytes are tried — the walk of a trie's first bytes, and of every byte after a
	// set that loops, looks each up once.
	next  *[256]*stackSet
	steps uint8    // steps from this set between characters, until next is made
	pool  *setPool // of the matcher (or Check) the set was made by
}

// setPool holds the sets one matcher made, by their stacks, so that a step reaching
// stacks a set already has gets that set, with what was learned stepping from it
// (memo, next). Without it, each character of a token read inside another
// (the second byte of a CJK character, say) made a new set that learned all anew: 250
// alternatives of CJK ranges cost 660 ms a mask over Qwen2's tokens. It forgets all
// once it holds maxPool sets.
type setPool struct {
	sets map[uint64][]*stackSet
	n    int
}

const maxPool = 1024

// intern returns the set of p with s's stacks, s itself when there is none yet.
func (p *setPool) intern(s *stackSet) *stackSet {
	h := s.key()
	for _, t := range p.sets[h] {
		if t.same(s) {
			return t
		}
	}
	if p.sets == nil || p.n >= maxPool {
		p.sets, p.n = map[uint64][]*stackSet{}, 0
	}
	p.sets[h] = append(p.sets[h], s)
	p.n++
	return s
}

type memoEntry struct {
	took    [maxStacks / 64]uint64
	partial bool
	to      *stackSet
}

func (s *stackSet) recall(took [maxStacks / 64]uint64, partial bool) *stackSet {
	for _, e := range s.memo {
		if e.took == took && e.partial == partial {
			return e.to
		}
	}
	return nil
}

// same reports whether s and t hold the same stacks.
func (s *stackSet) same(t *stackSet) bool {
	if len(s.tops) != len(t.tops) || s.done != t.done || s.short != t.short {
		return false
	}
	for i, a := range s.tops {
		if a.hash != t.tops[i].hash || !sameStack(a, t.tops[i]) {
			return false
		}
	}
	return true
}

type stack struct {
	pos  int32 // an eChar element of the rules
	up   *stack
	hash uint64 // of pos and every pos below
}

func (r *ruleSet) push(pos int32, up *stack) *stack {
	return &stack{pos: pos, up: up, hash: stackHash(pos, up)}
}

func stackHash(pos int32, up *stack) uint64 {
	h := uint64(pos) + 1
	if up != nil {
		h ^= up.hash * 0x9E3779B97F4A7C15
	}
	h *= 0xBF58476D1CE4E5B9
	return h ^ h>>31
}

// sameStack reports whether stacks a and b hold the same positions.
func sameStack(a, b *stack) bool {
	for a != b {
		if a == nil || b == nil || a.hash != b.hash || a.pos != b.pos {
			return false
		}
		a, b = a.up, b.up
	}
	return true
}

// expander gathers the stacks an expansion reaches, without duplicates and within the
// bounds.
type expander struct {
	r     *ruleSet
	tops  []*stack
	seen  map[uint64][]int32 // tops by hash, once there are many
	done  bool
	left  int // expansions still allowed
	short bool
}

// expand adds the stacks that reading on from element pos (over up) reaches: a
// character element is a stack; a rule reference opens each of the rule's
// alternatives; the end of an alternative returns to up, or marks the text whole at
// the bottom. A reference that is the last element of its alternative returns
// straight to up, so right recursion (x ::= "a" x) does not deepen the stack.
func (x *expander) expand(pos int32, up *stack) {
	if x.left <= 0 || len(x.tops) >= maxStacks {
		x.short = true
		return
	}
	x.left--
	e := x.r.elems[pos]
	switch e.kind {
	case eEnd:
		if up == nil {
			x.done = true
			return
		}
		x.expand(up.pos, up.up)
	case eRef:
		parent := up
		if x.r.elems[pos+1].kind != eEnd {
			parent = x.r.push(pos+1, up)
		}
		for _, a := range x.r.starts[e.arg] {
			x.expand(a, parent)
		}
	case eChar:
		h := stackHash(pos, up)
		if x.seen == nil && len(x.tops) >= 16 {
			x.seen = make(map[uint64][]int32, 2*len(x.tops))
			for i, t := range x.tops {
				x.seen[t.hash] = append(x.seen[t.hash], int32(i))
			}
		}
		if x.seen != nil {
			for _, i := range x.seen[h] {
				if t := x.tops[i]; t.pos == pos && sameStack(t.up, up) {
					return
				}
			}
			x.seen[h] = append(x.seen[h], int32(len(x.tops)))
		} else {
			for _, t := range x.tops {
				if t.hash == h && t.pos == pos && sameStack(t.up, up) {
					return
				}
			}
		}
		x.tops = append(x.tops, &stack{pos: pos, up: up, hash: h})
	}
}

func (r *ruleSet) expander() *expander { return &expander{r: r, left: maxExpands} }

// start returns the state before any byte.
func (r *ruleSet) start() rstate {
	x := r.expander()
	for _, a := range r.starts[r.root] {
		x.expand(a, nil)
	}
	return rstate{set: &stackSet{tops: x.tops, done: x.done, short: x.short, pool: &setPool{}}}
}

// whole reports whether the text so far is a sentence of the grammar.
func (s rstate) whole() bool { return s.set != nil && s.set.done && s.need == 0 }

// step returns the state after byte b (the zero state when b cannot come next): the
// bytes are read as UTF-8 (valid only: no overlong forms, surrogates or code points
// above U+10FFFF).
func (r *ruleSet) step(s rstate, b byte) rstate {
	if s.set == nil {
		return rstate{}
	}
	if s.need > 0 {
		if b < s.lo || b > s.hi {
			return rstate{}
		}
		cp := s.cp<<6 | rune(b&0x3F)
		if s.need == 1 {
			return r.complete(s.set, cp)
		}
		return r.partial(s.set, cp, s.need-1, 0x80, 0xBF)
	}
	// Between characters, what a byte leads to is kept by the set (see memo), once it
	// is stepped from often: a text read once (Check, a token taken) steps from most
	// sets once.
	if s.set.next == nil {
		if s.set.steps++; s.set.steps >= 8 {
			s.set.next = new([256]*stackSet)
		}
	}
	if s.set.next == nil {
		return r.stepChar(s.set, b)
	}
	if n := s.set.next[b]; n != nil {
		if n == deadSet {
			return rstate{}
		}
		t := rstate{set: n}
		if b >= 0x80 {
			t.cp, t.need, t.lo, t.hi, _ = lead(b)
		}
		return t
	}
	t := r.stepChar(s.set, b)
	s.set.next[b] = t.set
	if t.set == nil {
		s.set.next[b] = deadSet
	}
	return t
}

// stepChar returns the state after b, the first byte of a character, from set.
func (r *ruleSet) stepChar(set *stackSet, b byte) rstate {
	if b < 0x80 {
		return r.complete(set, rune(b))
	}
	if cp, need, lo, hi, ok := lead(b); ok {
		return r.partial(set, cp, need, lo, hi)
	}
	return rstate{}
}

// deadSet marks a byte that leads nowhere in stackSet.next.
var deadSet = &stackSet{}

// lead reads b as the first byte of a character of more than one: its bits, the bytes
// to come and the range of the next; not ok for a byte that cannot begin one.
func lead(b byte) (cp rune, need uint8, lo, hi byte, ok bool) {
	switch {
	case b >= 0xC2 && b <= 0xDF:
		return rune(b & 0x1F), 1, 0x80, 0xBF, true
	case b == 0xE0:
		return rune(b & 0x0F), 2, 0xA0, 0xBF, true
	case b == 0xED:
		return rune(b & 0x0F), 2, 0x80, 0x9F, true
	case b >= 0xE1 && b <= 0xEF:
		return rune(b & 0x0F), 2, 0x80, 0xBF, true
	case b == 0xF0:
		return rune(b & 0x07), 3, 0x90, 0xBF, true
	case b >= 0xF1 && b <= 0xF3:
		return rune(b & 0x07), 3, 0x80, 0xBF, true
	case b == 0xF4:
		return rune(b & 0x07), 3, 0x80, 0x8F, true
	}
	return 0, 0, 0, 0, false
}

// partial returns the state inside a character whose bits so far are cp, with need
// bytes to come, the next in [lo, hi]: the stacks of set whose next character may be
// one that begins so — those that meet the range of code points it can still become.
func (r *ruleSet) partial(set *stackSet, cp rune, need uint8, lo, hi byte) rstate {
	shift := 6 * uint(need-1)
	first := cp<<(6*uint(need)) | rune(lo&0x3F)<<shift
	last := cp<<(6*uint(need)) | rune(hi&0x3F)<<shift | (1<<shift - 1)
	var took [maxStacks / 64]uint64
	n := 0
	for i, t := range set.tops {
		if meets(r.classes[r.elems[t.pos].arg], first, last) {
			took[i/64] |= 1 << (i % 64)
			n++
		}
	}
	next := set
	switch {
	case n == 0:
		return rstate{}
	case n < len(set.tops):
		if next = set.recall(took, true); next == nil {
			next = &stackSet{short: set.short, pool: set.pool}
			for i, t := range set.tops {
				if took[i/64]&(1<<(i%64)) != 0 {
					next.tops = append(next.tops, t)
				}
			}
			set.memo = append(set.memo, memoEntry{took: took, partial: true, to: next})
		}
	}
	return rstate{set: next, cp: cp, need: need, lo: lo, hi: hi}
}

// complete returns the state after character c: every stack of set whose next
// character matches it moves past it.
func (r *ruleSet) complete(set *stackSet, c rune) rstate {
	var took [maxStacks / 64]uint64
	n := 0
	for i, t := range set.tops {
		if contains(r.classes[r.elems[t.pos].arg], c) {
			took[i/64] |= 1 << (i % 64)
			n++
		}
	}
	if n == 0 {
		return rstate{}
	}
	if next := set.recall(took, false); next != nil {
		return rstate{set: next}
	}
	x := r.expander()
	for i, t := range set.tops {
		if took[i/64]&(1<<(i%64)) != 0 {
			x.expand(t.pos+1, t.up)
		}
	}
	if len(x.tops) == 0 && !x.done {
		return rstate{} // the bounds cut every way on (see expand)
	}
	next := &stackSet{tops: x.tops, done: x.done, short: set.short || x.short, pool: set.pool}
	if next.same(set) {
		next = set // a loop ([^\n]+): the set stays what it was
	} else {
		next = set.pool.intern(next)
	}
	set.memo = append(set.memo, memoEntry{took: took, to: next})
	return rstate{set: next}
}

// after returns the state s becomes after text (the zero state when it cannot take
// it).
func (r *ruleSet) after(s rstate, text []byte) rstate {
	for _, b := range text {
		if s = r.step(s, b); s.set == nil {
			break
		}
	}
	return s
}

var _ sample.Matcher = (*ruleMatcher)(nil)

// ruleMatcher follows one output through a rule grammar (a sample.Matcher).
type ruleMatcher struct {
	g       *Grammar
	r       *ruleSet
	st      rstate // the zero state after a token the grammar does not allow
	allowed []bool
	walked  *stackSet // the set allowed was walked from, between characters (nil: none)
	saved   []float32
	// Once Reset is used, ids are the tokens taken and states[i] the state after
	// ids[:i] (see Matcher).
	keep   bool
	ids    []int32
	states []rstate
}

func (m *ruleMatcher) Advance(id int32) {
	if id >= 0 && int(id) < len(m.g.v.text) && m.st.set != nil {
		old := m.st.set
		m.st = m.r.after(m.st, m.g.v.text[id])
		old.memo, old.next = nil, nil // the walks from here are done with
	}
	if m.keep {
		m.ids = append(m.ids, id)
		m.states = append(m.states, m.st)
	}
}

func (m *ruleMatcher) Allows(id int32, ends []int32) bool {
	if slices.Contains(ends, id) {
		return m.st.set == nil || m.st.whole()
	}
	if m.st.set == nil || id < 0 || int(id) >= len(m.g.v.text) || m.g.v.text[id] == nil {
		return false
	}
	return m.r.after(m.st, m.g.v.text[id]).set != nil
}

func (m *ruleMatcher) Reset(output []int32) {
	if !m.keep {
		m.keep, m.ids, m.states = true, nil, []rstate{m.r.start()}
	}
	k := 0
	for k < len(output) && k < len(m.ids) && output[k] == m.ids[k] {
		k++
	}
	m.ids, m.states = m.ids[:k], m.states[:k+1]
	m.st = m.states[k]
	for _, id := range output[k:] {
		m.Advance(id)
	}
}

// Mask leaves the tokens whose bytes the grammar can take next, and the ends where the
// text is a whole sentence (or after a token it does not allow, the ends alone).
func (m *ruleMatcher) Mask(logits []float32, ends []int32) {
	m.saved = m.saved[:0]
	for _, e := range ends {
		if e >= 0 && int(e) < len(logits) {
			m.saved = append(m.saved, logits[e])
		}
	}
	// The tokens a set allows between characters are the same wherever it stands: a
	// grammar that loops (free text, a string's characters) walks the trie once for all
	// its positions — 17-22 ms over a 128k-152k vocabulary.
	if m.st.set == nil || m.st.need > 0 || m.st.set != m.walked || len(m.allowed) != len(logits) {
		if cap(m.allowed) < len(logits) {
			m.allowed = make([]bool, len(logits))
		}
		m.allowed = m.allowed[:len(logits)]
		clear(m.allowed)
		m.walked = nil
		switch {
		case m.st.set == nil:
		case m.st.need > 0:
			m.walk(m.g.v.all, 0, m.st)
		default:
			if self, high, depth := m.free(); bits.OnesCount64(self[0])+bits.OnesCount64(self[1]) >= minLoopBytes && depth >= minFreeDepth {
				m.scan(self, high, depth)
			} else {
				m.walk(m.g.v.all, 0, m.st)
			}
			m.walked = m.st.set
		}
	}
	inf := float32(math.Inf(-1))
	for id, ok := range m.allowed {
		if !ok {
			logits[id] = inf
		}
	}
	whole, i := m.st.set == nil || m.st.whole(), 0
	for _, e := range ends {
		if e >= 0 && int(e) < len(logits) {
			logits[e] = inf
			if whole {
				logits[e] = m.saved[i]
			}
			i++
		}
	}
}

// minLoopBytes: a set from which any text of at least this many ASCII bytes can come
// next is free text for the mask (see free and scan).
const minLoopBytes = 64

// free looks at most maxFamily sets, maxFreeWidth new ones a character further on (a
// chain or a period has one or two; a pattern whose sets multiply, such as
// [\s\S]*a[\s\S]{12}, cost 20 ms to follow to maxFamily), and texts of at most
// maxFreeDepth characters, in at most maxFreeTries passes; a mask scans only when texts
// of minFreeDepth are free.
const (
	maxFamily    = 128
	maxFreeWidth = 8
	maxFreeDepth = 64
	maxFreeTries = 8
	minFreeDepth = 8
)

// free returns ASCII bytes (a bit each), whether every character above ASCII too, and a
// length in characters, such that any text of them no longer can come next from the
// current set (between characters): every set a shorter text leads to takes each of
// them. Free text ([^\n]+) leads back to the set itself (any length: closed), a period
// ((.{3})*) through a few sets, a counted run ([^\n]{1,500}) along a chain. Only its own
// set was looked at before, and a mask under the others walked the whole trie: 20-80
// ms over Qwen2's 152k tokens. With under minLoopBytes bytes it returns none.
//
// A byte that leads where few of the others can follow (the '\n' that ends .{0,300}\n)
// is left out, and the sets looked at again without it.
func (m *ruleMatcher) free() (f [2]uint64, high bool, depth int) {
	f, high = [2]uint64{^uint64(0), ^uint64(0)}, true
	for range maxFreeTries {
		var again bool
		if depth, again = m.freeTry(&f, &high); !again {
			break
		}
		depth = 0
	}
	if bits.OnesCount64(f[0])+bits.OnesCount64(f[1]) < minLoopBytes {
		return [2]uint64{}, false, 0
	}
	return f, high, depth
}

// highByte marks the sets freeTry reaches by a character above ASCII.
const highByte = 0x80

// freeTry looks at the sets that texts of f (and with high, the characters above ASCII)
// lead to, leaving out of f the bytes a set cannot take. It returns again when it left
// out a byte (or high) for leading to a set that takes few of the others: the sets
// must be looked at again without it.
func (m *ruleMatcher) freeTry(f *[2]uint64, high *bool) (depth int, again bool) {
	type found struct {
		set *stackSet
		by  int // the byte that first led to it (-1: the start; highByte: above ASCII)
	}
	seen := map[uint64][]*stackSet{}
	n := 0
	var next []found
	// add notes u, reached by by; false when there are too many sets.
	add := func(u *stackSet, by int) bool {
		h := u.key()
		for _, s := range seen[h] {
			if s == u || s.same(u) {
				return true
			}
		}
		if n >= maxFamily || len(next) >= maxFreeWidth {
			return false
		}
		n++
		seen[h], next = append(seen[h], u), append(next, found{u, by})
		return true
	}
	add(m.st.set, -1)
	level := next
	for depth = 0; depth < maxFreeDepth; depth++ {
		next = nil
		for _, t := range level {
			var lost [2]uint64
			for b := range byte(0x80) {
				if f[b/64]&(1<<(b%64)) == 0 {
					continue
				}
				u := m.r.step(rstate{set: t.set}, b).set
				if u == nil {
					lost[b/64] |= 1 << (b % 64)
					continue
				}
				if !add(u, int(b)) {
					return depth, false // the levels before this one are all looked at
				}
			}
			left := bits.OnesCount64(f[0]&^lost[0]) + bits.OnesCount64(f[1]&^lost[1])
			switch {
			case t.by >= 0 && lost != [2]uint64{} && left < minLoopBytes && depth >= minFreeDepth:
				// A dead end far enough on ([^\n]{0,100} near its end): texts as long as
				// the levels before are free.
				return depth, false
			case t.by >= 0 && lost != [2]uint64{} && left < minLoopBytes:
				// A dead end: leave out what led here rather than what cannot follow.
				if t.by == highByte {
					*high = false
				} else {
					f[t.by/64] &^= 1 << (t.by % 64)
				}
				return 0, true
			default:
				f[0], f[1] = f[0]&^lost[0], f[1]&^lost[1]
			}
			if *high {
				u := m.highStep(t.set)
				*high = u != nil && add(u, highByte)
			}
		}
		if len(next) == 0 {
			return math.MaxInt, false // closed: every set the bytes lead to is looked at
		}
		level = next
	}
	return depth, false
}

// key hashes the stacks of s, for same.
func (s *stackSet) key() uint64 {
	h := uint64(len(s.tops))
	if s.done {
		h ^= 1 << 62
	}
	for _, t := range s.tops {
		h = (h ^ t.hash) * 0x9E3779B97F4A7C15
	}
	return h
}

// highStep returns the set every character above ASCII leads to from set (between
// characters), or nil when they do not all lead alike: each stack's class must hold all
// of them or none.
func (m *ruleMatcher) highStep(set *stackSet) *stackSet {
	for _, t := range set.tops {
		c := m.r.classes[m.r.elems[t.pos].arg]
		all := slices.ContainsFunc(c, func(s span) bool { return s.lo <= 0x80 && s.hi >= maxRune })
		if !all && meets(c, 0x80, maxRune) {
			return nil // a class holds some characters above ASCII, not all
		}
	}
	return m.r.complete(set, 0x80).set
}

// scan marks the tokens the current state can take one by one, where most characters
// are free (free text, a string's body; see free): a token whose characters are all
// free — its ASCII bytes among those self has, its other characters whole or begun
// (valid UTF-8) where high says every character above ASCII is — is taken without a
// step, when it is at most depth bytes long; any other is stepped through. The trie's walk visits every node
// there, the vocabulary's bytes in a pointer chase: 60 ms over Qwen2's 152k tokens.
func (m *ruleMatcher) scan(self [2]uint64, high bool, depth int) {
	idx := m.g.v.asciiIndex()
	for id, text := range m.g.v.text {
		if text == nil || id >= len(m.allowed) {
			continue
		}
		if a := idx.bytes[id]; a[0]&^self[0] == 0 && a[1]&^self[1] == 0 && (idx.ascii[id] || high && idx.utf8[id]) && len(text) <= depth {
			m.allowed[id] = true
			continue
		}
		m.allowed[id] = m.r.after(m.st, text).set != nil
	}
}

// asciiIndex is, per token of a vocab, which ASCII bytes it has, whether all its bytes
// are ASCII, and whether they are valid UTF-8 (the last character may be cut short).
type asciiIndex struct {
	bytes       [][2]uint64
	ascii, utf8 []bool
}

// asciiIndex returns v's asciiIndex, built on first use.
func (v *vocab) asciiIndex() *asciiIndex {
	v.asciiOnce.Do(func() {
		n := len(v.text)
		idx := &asciiIndex{bytes: make([][2]uint64, n), ascii: make([]bool, n), utf8: make([]bool, n)}
		for id, text := range v.text {
			idx.ascii[id], idx.utf8[id] = true, utf8Prefix(text)
			for _, c := range text {
				if c >= 0x80 {
					idx.ascii[id] = false
					continue
				}
				idx.bytes[id][c/64] |= 1 << (c % 64)
			}
		}
		v.ascii = idx
	})
	return v.ascii
}

// utf8Prefix reports whether b is valid UTF-8 but for its last character, which may be
// cut short: what step takes from between characters.
func utf8Prefix(b []byte) bool {
	need, lo, hi := uint8(0), byte(0), byte(0)
	for _, c := range b {
		if need > 0 {
			if c < lo || c > hi {
				return false
			}
			need, lo, hi = need-1, 0x80, 0xBF
			continue
		}
		if c < 0x80 {
			continue
		}
		var ok bool
		if _, need, lo, hi, ok = lead(c); !ok {
			return false
		}
	}
	return true
}

// walk marks every token below node i of trie t whose bytes state s can take.
func (m *ruleMatcher) walk(t []trieNode, i int32, s rstate) {
	for _, e := range t[i].edges {
		next := m.r.step(s, e.b)
		if next.set == nil {
			continue
		}
		child := &t[e.to]
		for _, id := range child.ids {
			if int(id) < len(m.allowed) {
				m.allowed[id] = true
			}
		}
		if len(child.edges) > 0 {
			m.walk(t, e.to, next)
		}
	}
}

// Source is the text a GBNF or Regex format was made from ("" otherwise).
func (f Format) Source() string {
	if f.rules == nil {
		return ""
	}
	return f.rules.source
}

// Choices are the strings of a Choice format (nil otherwise). The caller must not
// change them.
func (f Format) Choices() []string {
	if f.rules == nil {
		return nil
	}
	return f.rules.choices
}
