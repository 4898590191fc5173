package grammar

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"unicode/utf8"
)

// A JSON Schema pattern (2020-12 §6.3.3): an ECMA-262 regular expression that a string
// is valid against when it matches somewhere in it. It is read by the regular
// expressions' parser (regex.go, in its ECMA-262 reading), each alternative at the top
// with any text around it where '^' or '$' does not anchor it, and laid out as rules;
// then the sets of the rules' stacks that characters lead to are found once, at compile
// time, as the states of a deterministic automaton (a charRule): a step inside the
// string is a lookup in a table. The states are bounded, so that a pattern whose
// automaton would blow up ((a|b)*a(a|b){20}) is refused when the schema is compiled.

// Bounds on a pattern's automaton: its states, its table (states × the classes of
// characters its pattern tells apart) and the work of finding them (stacks stepped
// and elements expanded).
const (
	maxPatternStates = 1 << 13
	maxPatternTable  = 1 << 20
	maxPatternWork   = 1 << 24
)

// errPatternSize is what compilePattern returns for a pattern whose automaton is past
// the bounds.
var errPatternSize = errors.New("pattern too complex")

// patternRule is a pattern's automaton over a string's characters, with a minimum
// number of them folded in (so that the shortest way on from a state is always one
// that is long enough). State 0 is the start; a state no string can end from is never
// stepped to.
type patternRule struct {
	// cuts: class i of characters is [cuts[i], cuts[i+1]) (the last up to maxRune);
	// ascii is the class of each ASCII character.
	cuts    []rune
	ascii   [128]uint16
	classes int
	trans   []int32 // state*classes + class: the state after (-1: none)
	fin     []bool
	dist    []int32  // the fewest characters to a final state
	free    []bool   // any text can follow: every character that can be written leads to a free state, and it is final
	masks   sync.Map // *vocab → *patternMasks
}

var (
	_ charRule = (*patternRule)(nil)
	_ wideRule = (*patternRule)(nil)
)

func (p *patternRule) start() uint32 { return 0 }

func (p *patternRule) class(r rune) int {
	if r >= 0 && r < 128 {
		return int(p.ascii[r])
	}
	return p.search(r)
}

// search is class, without the table of ASCII characters.
func (p *patternRule) search(r rune) int {
	i, found := slices.BinarySearch(p.cuts, r)
	if !found {
		i--
	}
	return i
}

func (p *patternRule) next(s uint32, r rune) (uint32, bool) {
	if r < 0 || r > maxRune {
		return 0, false
	}
	t := p.trans[int(s)*p.classes+p.class(r)]
	return uint32(t), t >= 0
}

func (p *patternRule) final(s uint32) bool { return p.fin[s] }
func (p *patternRule) rest(s uint32) int   { return int(p.dist[s]) }

// anyIn reports whether a character of [lo, hi] leads from s to a state from which
// the string, at count characters, can end within rule.
func (p *patternRule) anyIn(s uint32, count int, rule *strRule, lo, hi rune) bool {
	lo, hi = max(lo, 0), min(hi, maxRune)
	if lo > hi {
		return false
	}
	row := p.trans[int(s)*p.classes:][:p.classes]
	for c := p.class(lo); c <= p.class(hi); c++ {
		if t := row[c]; t >= 0 && rule.room(count, uint32(t)) {
			return true
		}
	}
	return false
}

// freeAt reports whether any text can follow in state s: the pattern asks nothing
// more.
func (p *patternRule) freeAt(s uint32) bool { return p.free[s] }

// writable reports whether a string's rule lets character r be written: surrogates
// never are, and of the control characters only those with a one-letter escape (a
// \u escape is refused inside a string whose characters an automaton checks).
func writable(r rune) bool {
	switch {
	case r >= 0xD800 && r <= 0xDFFF:
		return false
	case r < 0x20:
		return r == '\b' || r == '\t' || r == '\n' || r == '\f' || r == '\r'
	}
	return true
}

// writableCuts are where writable changes, for the classes of characters.
var writableCuts = []rune{0x08, 0x0B, 0x0C, 0x0E, 0x20, 0xD800, 0xE000}

// parsePattern lays out pattern (ECMA-262) as rules whose sentences are the strings it
// matches somewhere in: each alternative at the top is preceded and followed by any
// text unless '^' or '$' anchors it. anyText is the rule of that text (R ::= any R |
// ""): a stack at its character with nothing above it has matched, and any text may
// follow.
func parsePattern(pattern string) (rs *ruleSet, anyText int32, err error) {
	if len(pattern) > MaxSourceBytes {
		return nil, 0, fmt.Errorf("%w: pattern of %d bytes: at most %d", ErrGrammar, len(pattern), MaxSourceBytes)
	}
	if !utf8.ValidString(pattern) {
		return nil, 0, fmt.Errorf("%w: the pattern is not valid UTF-8", ErrGrammar)
	}
	x := &regex{reader: &reader{src: pattern}, b: newBuilder(), ecma: true}
	at := srcPos{src: pattern}
	root, err := x.b.fresh(at, "pattern")
	if err != nil {
		return nil, 0, err
	}
	alts, _, err := x.alternates(0, true)
	if err != nil {
		return nil, 0, err
	}
	if !x.end() {
		return nil, 0, x.pos().errorf("unbalanced ')'")
	}
	if len(x.anchors) != len(alts) {
		panic("grammar: a pattern's anchors and alternatives differ in number")
	}
	anyRule, err := x.b.fresh(at, "repetition")
	if err != nil {
		return nil, 0, err
	}
	if err := x.b.define(anyRule, [][]sym{{charSym(anyChar), refSym(anyRule)}, nil}, at); err != nil {
		return nil, 0, err
	}
	for i, a := range alts {
		var seq []sym
		if !x.anchors[i].start {
			seq = append(seq, refSym(anyRule))
		}
		seq = append(seq, a...)
		if !x.anchors[i].end {
			seq = append(seq, refSym(anyRule))
		}
		alts[i] = seq
	}
	if err := x.b.define(root, alts, at); err != nil {
		return nil, 0, err
	}
	rs, err = x.b.link(root)
	return rs, anyRule, err
}

// compilePattern returns the automaton of the strings of at least minLen characters
// in which pattern matches. Errors wrap ErrGrammar (a *SyntaxError for the pattern's
// text) or errPatternSize. An automaton is kept for the requests after (see
// patternCache), with the masks its states found.
func compilePattern(pattern string, minLen int) (*patternRule, error) {
	key := patternKey{pattern, minLen}
	patternCache.mu.Lock()
	c, ok := patternCache.rules[key]
	patternCache.mu.Unlock()
	if ok {
		return c.p, c.err
	}
	rs, anyText, err := parsePattern(pattern)
	var p *patternRule
	if err == nil {
		p, err = newPatternDFA(rs, minLen, anyText)
	}
	patternCache.mu.Lock()
	defer patternCache.mu.Unlock()
	if c, ok := patternCache.rules[key]; ok {
		return c.p, c.err // compiled meanwhile for another request
	}
	if len(patternCache.rules) >= maxCachedPatterns {
		clear(patternCache.rules)
	}
	patternCache.rules[key] = compiled{p, err}
	return p, err
}

// patternCache holds the automata of the patterns compiled lately, by pattern and
// minimum, and the errors of those refused (one at the bounds took 0.2 s to refuse):
// clients send the same schema with request after request, and the masks kept by an
// automaton's states (plainFor) then serve them all. It forgets all at once when it
// holds maxCachedPatterns; with each automaton's masks bounded by maxPlainSteps, it
// holds at most some 128 MB of them per vocabulary.
var patternCache = struct {
	mu    sync.Mutex
	rules map[patternKey]compiled
}{rules: map[patternKey]compiled{}}

type compiled struct {
	p   *patternRule
	err error
}

const maxCachedPatterns = 16

// dfaState is a set of the rules' stacks, in a canonical order, and the characters so
// far up to the minimum.
type dfaState struct {
	tops []*stack
	done bool
	k    int
	hash uint64
}

func (d *dfaState) same(e *dfaState) bool {
	if d.hash != e.hash || d.done != e.done || d.k != e.k || len(d.tops) != len(e.tops) {
		return false
	}
	for i, t := range d.tops {
		if t.pos != e.tops[i].pos || !sameStack(t.up, e.tops[i].up) {
			return false
		}
	}
	return true
}

// newPatternDFA finds the states rule set rs's stacks reach (the subset construction),
// steps each by one character of each class, and keeps only the ways on that can end.
// A state with a stack at the character of rule anyText and nothing above it takes any
// text from there: it is that stack alone, with the minimum counted as reached — the
// string's rule counts its characters up to the minimum (strRule.ends), and as any
// text may follow, a string there can always reach it — so that the states do not
// multiply by the minimum once the pattern has matched (^https:// with a minLength of
// 100,000 is a few states, not 100,000).
func newPatternDFA(rs *ruleSet, minLen int, anyText int32) (*patternRule, error) {
	freePos := rs.starts[anyText][0]
	// The classes of characters: no class of rs, nor writable, tells two characters of
	// one apart.
	cuts := append([]rune{0}, writableCuts...)
	for _, c := range rs.classes {
		for _, s := range c {
			cuts = append(cuts, s.lo)
			if s.hi < maxRune {
				cuts = append(cuts, s.hi+1)
			}
		}
	}
	slices.Sort(cuts)
	cuts = slices.Compact(cuts)
	p := &patternRule{cuts: cuts, classes: len(cuts)}
	for r := range rune(128) {
		p.ascii[r] = uint16(p.search(r))
	}
	// in[c] holds, a bit per class of characters, those class c of rs holds.
	words := (len(cuts) + 63) / 64
	in := make([][]uint64, len(rs.classes))
	for ci, c := range rs.classes {
		in[ci] = make([]uint64, words)
		for _, s := range c {
			for k := p.class(s.lo); k <= p.class(s.hi); k++ {
				in[ci][k/64] |= 1 << (k % 64)
			}
		}
	}
	var live []int // the classes of characters that can be written
	for k, lo := range cuts {
		if writable(lo) {
			live = append(live, k)
		}
	}

	work := 0
	var states []*dfaState
	index := map[uint64][]int32{}
	intern := func(d *dfaState) (int32, error) {
		if i := slices.IndexFunc(d.tops, func(t *stack) bool { return t.pos == freePos && t.up == nil }); i >= 0 {
			d.tops, d.done, d.k = d.tops[i:i+1], true, minLen
		}
		slices.SortFunc(d.tops, func(a, b *stack) int {
			switch {
			case a.hash < b.hash:
				return -1
			case a.hash > b.hash:
				return 1
			}
			return int(a.pos) - int(b.pos)
		})
		h := uint64(d.k)*0x9E3779B97F4A7C15 + 1
		if d.done {
			h ^= 1 << 62
		}
		for _, t := range d.tops {
			h = (h ^ t.hash) * 0xBF58476D1CE4E5B9
		}
		d.hash = h
		for _, i := range index[h] {
			if states[i].same(d) {
				return i, nil
			}
		}
		if len(states) >= maxPatternStates || (len(states)+1)*p.classes > maxPatternTable {
			return 0, errPatternSize
		}
		index[h] = append(index[h], int32(len(states)))
		states = append(states, d)
		p.trans = append(p.trans, slices.Repeat([]int32{-1}, p.classes)...)
		return int32(len(states) - 1), nil
	}
	x := rs.expander()
	x.left = maxPatternWork
	for _, a := range rs.starts[rs.root] {
		x.expand(a, nil)
	}
	if x.short {
		return nil, errPatternSize
	}
	if _, err := intern(&dfaState{tops: x.tops, done: x.done}); err != nil {
		return nil, err
	}
	type took struct {
		bits [maxStacks / 64]uint64
	}
	for si := 0; si < len(states); si++ {
		d := states[si]
		k := min(d.k+1, minLen)
		memo := map[took]int32{}
		for _, c := range live {
			var tk took
			n := 0
			for i, t := range d.tops {
				if in[rs.elems[t.pos].arg][c/64]&(1<<(c%64)) != 0 {
					tk.bits[i/64] |= 1 << (i % 64)
					n++
				}
			}
			if work += len(d.tops); work > maxPatternWork {
				return nil, errPatternSize
			}
			if n == 0 {
				continue
			}
			if to, ok := memo[tk]; ok {
				p.trans[si*p.classes+c] = to
				continue
			}
			left := x.left
			x = rs.expander()
			x.left = left
			for i, t := range d.tops {
				if tk.bits[i/64]&(1<<(i%64)) != 0 {
					x.expand(t.pos+1, t.up)
				}
			}
			if x.short {
				return nil, errPatternSize
			}
			to := int32(-1)
			if len(x.tops) > 0 || x.done {
				var err error
				if to, err = intern(&dfaState{tops: x.tops, done: x.done, k: k}); err != nil {
					return nil, err
				}
			}
			memo[tk] = to
			p.trans[si*p.classes+c] = to
		}
	}
	// The fewest characters from each state to a final one, back from the final ones;
	// a step to a state that has none is taken out.
	n := len(states)
	p.fin, p.dist, p.free = make([]bool, n), make([]int32, n), make([]bool, n)
	back := make([][]int32, n)
	for s := range n {
		for _, c := range live {
			if t := p.trans[s*p.classes+c]; t >= 0 {
				back[t] = append(back[t], int32(s))
			}
		}
	}
	var queue []int32
	for s, d := range states {
		p.dist[s] = -1
		if d.done && d.k >= minLen {
			p.fin[s], p.dist[s] = true, 0
			queue = append(queue, int32(s))
		}
	}
	for len(queue) > 0 {
		t := queue[0]
		queue = queue[1:]
		for _, s := range back[t] {
			if p.dist[s] < 0 {
				p.dist[s] = p.dist[t] + 1
				queue = append(queue, s)
			}
		}
	}
	if p.dist[0] < 0 {
		return nil, fmt.Errorf("%w: no string a JSON string can hold (no \\u escapes) of at least %d characters matches", ErrGrammar, minLen)
	}
	for i, t := range p.trans {
		if t >= 0 && p.dist[t] < 0 {
			p.trans[i] = -1
		}
	}
	// The states from which any text is a match: final, and every character leads to
	// another such (a greatest fixed point: each pass drops those that lead elsewhere).
	copy(p.free, p.fin)
	for changed := true; changed; {
		changed = false
		for s := range n {
			if !p.free[s] {
				continue
			}
			for _, c := range live {
				if t := p.trans[s*p.classes+c]; t < 0 || !p.free[t] {
					p.free[s], changed = false, true
					break
				}
			}
		}
	}
	return p, nil
}

// The mask inside a pattern's string, between characters, in one alternative: the
// plain tokens (whole characters, no quote, backslash or control character: nothing
// but the string's own characters) a state of the automaton takes are found once per
// vocabulary and state and kept; the other tokens are walked. Walking all of Qwen2's
// trie inside ^<.+>$ took 140 ms a mask, most of it in the characters past ASCII.

// plainSteps are the plain tokens a state takes, each with its cost: its characters
// and the fewest that end the string after it (so that a token fits a string of at most
// room more characters when its cost is at most room).
type plainSteps struct {
	ids   []int32
	costs []int32
}

// patternMasks are a pattern's plainSteps over one vocabulary, by state, forgotten all
// at once when they hold more than maxPlainSteps tokens between them.
type patternMasks struct {
	mu     sync.Mutex
	states map[uint32]*plainSteps
	n      int
}

const maxPlainSteps = 1 << 20

// plainFor returns the plain tokens of v that state s takes.
func (p *patternRule) plainFor(v *vocab, s uint32) *plainSteps {
	e, _ := p.masks.LoadOrStore(v, &patternMasks{states: map[uint32]*plainSteps{}})
	pm := e.(*patternMasks)
	pm.mu.Lock()
	ps := pm.states[s]
	pm.mu.Unlock()
	if ps != nil {
		return ps
	}
	ps = &plainSteps{}
	arena, from := v.plainArena(), int32(0)
	for i, id := range v.plain {
		st, n := int32(s), int32(0)
		for text := arena.text[from:arena.ends[i]]; len(text) > 0 && st >= 0; n++ {
			r, size := rune(text[0]), 1
			if r >= utf8.RuneSelf {
				r, size = utf8.DecodeRune(text)
			}
			st, text = p.trans[int(st)*p.classes+p.class(r)], text[size:]
		}
		from = arena.ends[i]
		if st >= 0 {
			ps.ids = append(ps.ids, id)
			ps.costs = append(ps.costs, n+p.dist[st])
		}
	}
	pm.mu.Lock()
	if pm.n += len(ps.ids); pm.n > maxPlainSteps {
		clear(pm.states)
		pm.n = len(ps.ids)
	}
	pm.states[s] = ps
	pm.mu.Unlock()
	return ps
}

// plainArena is a vocab's plain tokens' bytes laid end to end, in the order of
// v.plain, token i ending at ends[i]: read in one pass, they are in the cache (each
// token's own slice missed it: 30 ms for Qwen2's, where the pass takes a few).
type plainArena struct {
	text []byte
	ends []int32
}

// plainArena returns v's plainArena, built on first use.
func (v *vocab) plainArena() *plainArena {
	v.arenaOnce.Do(func() {
		a := &plainArena{ends: make([]int32, len(v.plain))}
		for i, id := range v.plain {
			a.text = append(a.text, v.text[id]...)
			a.ends[i] = int32(len(a.text))
		}
		v.arena = a
	})
	return v.arena
}

// maskPattern marks what m's one alternative takes where it stands between characters
// of a string (or a key) a pattern checks: the plain tokens its state takes within the room left,
// and of the others those a walk finds. It reports false, having done nothing, where
// it does not apply.
func (m *Matcher) maskPattern() bool {
	if len(m.alts) != 1 {
		return false
	}
	f := m.alts[0]
	r := charsRule(f)
	if r == nil || f.sub != strChar {
		return false
	}
	p, ok := r.auto.(*patternRule)
	if !ok {
		return false
	}
	ps := p.plainFor(m.g.v, f.fs())
	room := int32(math.MaxInt32)
	if r.max >= 0 {
		room = int32(r.max - f.count)
	}
	for i, id := range ps.ids {
		if ps.costs[i] <= room && int(id) < len(m.allowed) {
			m.allowed[id] = true
		}
	}
	m.walk(m.g.v.rest, 0, m.alts)
	return true
}
