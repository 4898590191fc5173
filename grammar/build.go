package grammar

import (
	"encoding/binary"
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"
)

// builder collects the rules of a grammar as its parser reads them (GBNF, a regular
// expression, a list of choices), then checks and lays them out (link).
type builder struct {
	rules  []brule
	byName map[string]int32
	elems  int // elements so far, each alternative's end included
	// empty and nonEmpties remember, by rule, emptyRule's and nonEmptyRule's answers.
	empty      map[int32]bool
	nonEmpties map[int32]int32
}

type brule struct {
	name    string
	alts    [][]sym
	defined bool
	at      srcPos // where it is defined, or first referred to; for a made rule, what made it
	made    string // "" for a named rule; else what made it ("group", "repetition")
}

// sym is one element of an alternative: a reference to rule ref, or (ref < 0) one
// character of class cls.
type sym struct {
	ref int32
	cls []span
}

// srcPos is a place in a grammar's text: byte offset off of src. Its line and column
// are counted only for an error (counting them at every element made a long grammar
// cost the square of its length to parse).
type srcPos struct {
	src string
	off int
}

// lineCol returns p's line and column (in characters), 1-based.
func (p srcPos) lineCol() (line, col int) {
	before := p.src[:p.off]
	start := strings.LastIndexByte(before, '\n') + 1
	return 1 + strings.Count(before, "\n"), 1 + utf8.RuneCountInString(before[start:])
}

func (p srcPos) errorf(format string, args ...any) error {
	line, col := p.lineCol()
	return &SyntaxError{Line: line, Col: col, Msg: fmt.Sprintf(format, args...)}
}

func newBuilder() *builder { return &builder{byName: map[string]int32{}} }

func charSym(cls []span) sym { return sym{ref: -1, cls: cls} }

func refSym(r int32) sym { return sym{ref: r} }

// named returns the index of the rule called name, making it (undefined yet) on first
// use at p.
func (b *builder) named(name string, p srcPos) (int32, error) {
	if i, ok := b.byName[name]; ok {
		return i, nil
	}
	i, err := b.fresh(p, "")
	if err == nil {
		b.rules[i].name = name
		b.byName[name] = i
	}
	return i, err
}

// fresh makes a rule with no name, made by what (a group, a repetition) at p.
func (b *builder) fresh(p srcPos, what string) (int32, error) {
	if len(b.rules) >= maxRules {
		return 0, p.errorf("more than %d rules (repetitions and groups count as rules)", maxRules)
	}
	b.rules = append(b.rules, brule{at: p, made: what})
	return int32(len(b.rules) - 1), nil
}

// define gives rule i its alternatives.
func (b *builder) define(i int32, alts [][]sym, p srcPos) error {
	r := &b.rules[i]
	if r.defined {
		line, col := r.at.lineCol()
		return p.errorf("rule %q defined twice (first at line %d, column %d)", r.name, line, col)
	}
	n := 0
	for _, a := range alts {
		n += len(a) + 1
	}
	if err := b.grow(n, p); err != nil {
		return err
	}
	r.alts, r.defined = alts, true
	if r.name != "" {
		r.at = p
	}
	return nil
}

// grow counts n more elements, within maxElems.
func (b *builder) grow(n int, p srcPos) error {
	if n > maxElems-b.elems {
		return p.errorf("the grammar has more than %d elements once repetitions are written out", maxElems)
	}
	b.elems += n
	return nil
}

// group returns a reference to a new rule of alts (a parenthesized group): a group of
// one alternative of one element is that element.
func (b *builder) group(alts [][]sym, p srcPos) ([]sym, error) {
	if len(alts) == 1 && len(alts[0]) == 1 {
		return alts[0], nil
	}
	i, err := b.fresh(p, "group")
	if err != nil {
		return nil, err
	}
	return []sym{refSym(i)}, b.define(i, alts, p)
}

// repeat returns item repeated from lo to hi times (hi < 0: no upper bound), written
// out as llama.cpp does: item lo times, then a rule R ::= item R | "" (no bound) or a
// chain of hi-lo nested optional rules, R1 ::= item | "", Rk ::= item Rk-1 | "".
func (b *builder) repeat(item []sym, lo, hi int, p srcPos) ([]sym, error) {
	if hi >= 0 && hi < lo {
		return nil, p.errorf("repetition {%d,%d}: the maximum is below the minimum", lo, hi)
	}
	opt := hi - lo
	if hi < 0 {
		opt = 1
	}
	if lo > maxElems || opt > maxElems || (lo+opt)*(len(item)+2) > maxElems-b.elems {
		return nil, p.errorf("repetition {%d,%d} makes the grammar more than %d elements", lo, max(hi, lo), maxElems)
	}
	out := make([]sym, 0, lo*len(item)+1)
	for range lo {
		out = append(out, item...) // counted when the alternative is defined
	}
	if opt == 0 {
		return out, nil
	}
	if hi < 0 {
		r, err := b.fresh(p, "repetition")
		if err != nil {
			return nil, err
		}
		again := append(append([]sym(nil), item...), refSym(r))
		return append(out, refSym(r)), b.define(r, [][]sym{again, nil}, p)
	}
	prev := int32(-1)
	for range opt {
		r, err := b.fresh(p, "repetition")
		if err != nil {
			return nil, err
		}
		more := append([]sym(nil), item...)
		if prev >= 0 {
			more = append(more, refSym(prev))
		}
		if err := b.define(r, [][]sym{more, nil}, p); err != nil {
			return nil, err
		}
		prev = r
	}
	return append(out, refSym(prev)), nil
}

// link checks the rules — every one referred to is defined, none reaches itself
// without reading a character (left recursion, which would never read one), none
// opens more alternatives at once than a step keeps — and lays them out.
func (b *builder) link(root int32) (*ruleSet, error) {
	for i := range b.rules {
		if r := &b.rules[i]; !r.defined {
			return nil, r.at.errorf("rule %q is not defined", r.name)
		}
	}
	empty, err := b.leftRecursion()
	if err != nil {
		return nil, err
	}
	if err := b.dropDeadEnds(root); err != nil {
		return nil, err
	}
	rs := &ruleSet{root: root, starts: make([][]int32, len(b.rules)), elems: make([]elem, 0, b.elems)}
	// Classes are numbered once: by the slice (the copies a repetition writes share
	// it), else by content. The complement of a Unicode class (\W, [^\w]) has hundreds
	// of spans, so the key is their bytes, never a formatted string (fmt.Sprint of
	// each made a 64 KiB pattern of [^\w] take a second).
	classes, shared := map[string]int32{}, map[*span]int32{}
	var key []byte
	for i, r := range b.rules {
		for _, a := range r.alts {
			rs.starts[i] = append(rs.starts[i], int32(len(rs.elems)))
			for _, s := range a {
				if s.ref >= 0 {
					rs.elems = append(rs.elems, elem{kind: eRef, arg: s.ref})
					continue
				}
				first := &s.cls[0] // a class is never empty (dropDeadEnds)
				c, ok := shared[first]
				if ok && len(rs.classes[c]) != len(s.cls) {
					ok = false // another class within the same array
				}
				if !ok {
					key = key[:0]
					for _, sp := range s.cls {
						key = binary.LittleEndian.AppendUint32(key, uint32(sp.lo))
						key = binary.LittleEndian.AppendUint32(key, uint32(sp.hi))
					}
					if c, ok = classes[string(key)]; !ok {
						c = int32(len(rs.classes))
						rs.classes = append(rs.classes, s.cls)
						classes[string(key)] = c
					}
					shared[first] = c
				}
				rs.elems = append(rs.elems, elem{kind: eChar, arg: c})
			}
			rs.elems = append(rs.elems, elem{kind: eEnd})
		}
	}
	fan := b.fans(empty)
	work := 0
	for i, r := range b.rules {
		if fan[i] <= maxStacks {
			continue // it cannot open more
		}
		x := rs.expander()
		for _, a := range rs.starts[i] {
			x.expand(a, nil)
		}
		if x.short {
			return nil, r.at.errorf("%s opens more than %d alternatives at once: too ambiguous", b.describe(int32(i)), maxStacks)
		}
		if work += maxExpands - x.left; work > maxCheck {
			return nil, r.at.errorf("%s: the rules open too many alternatives between them to check (more than %d visits): too ambiguous", b.describe(int32(i)), maxCheck)
		}
	}
	return rs, nil
}

// maxCheck bounds the elements link visits to count the alternatives rules open: each
// rule may take maxExpands, and 4000 rules that each open the same 200 alternatives
// through 20 references (48 KB) took 0.4 s. The bound is 64 rules that each take the
// most.
const maxCheck = 1 << 18

// fans returns, for each rule, a bound on the stacks opening it gives (before
// duplicates are dropped; at most maxStacks+1): an alternative opens what its first
// element does, and what follows while the elements before may be empty. Only a rule
// over the bound is expanded to count them: expanding every rule of a long chain cost
// the square of its length (1.3 s for 4000 rules).
func (b *builder) fans(empty []bool) []int {
	fan := make([]int, len(b.rules))
	done := make([]bool, len(b.rules))
	var of func(i int32) int
	of = func(i int32) int {
		if done[i] {
			return fan[i]
		}
		n := 0
		for _, a := range b.rules[i].alts {
			for _, s := range a {
				if s.ref < 0 {
					n++
					break
				}
				n += of(s.ref) // no left recursion: this ends
				if !empty[s.ref] {
					break
				}
			}
			n = min(n, maxStacks+1)
		}
		fan[i], done[i] = n, true
		return n
	}
	for i := range b.rules {
		of(int32(i))
	}
	return fan
}

// dropDeadEnds drops the alternatives no text can complete — one with a class that
// holds no character ([^\x00-\U0010FFFF]), or a rule none of whose alternatives can
// be completed (x ::= "a" x) — and refuses a grammar whose root has none left. Text
// that entered such an alternative had nowhere to go: the mask left no token, not even
// the end, and the request failed.
func (b *builder) dropDeadEnds(root int32) error {
	live := make([]bool, len(b.rules))
	liveAlt := func(a []sym) bool {
		for _, s := range a {
			if s.ref < 0 && len(s.cls) == 0 || s.ref >= 0 && !live[s.ref] {
				return false
			}
		}
		return true
	}
	for changed := true; changed; {
		changed = false
		for i, r := range b.rules {
			if !live[i] && slices.ContainsFunc(r.alts, liveAlt) {
				live[i], changed = true, true
			}
		}
	}
	if !live[root] {
		return b.rules[root].at.errorf("%s matches no text: each of its alternatives needs a character no class holds, or a rule that never ends", b.describe(root))
	}
	for i := range b.rules {
		b.rules[i].alts = slices.DeleteFunc(b.rules[i].alts, func(a []sym) bool { return !liveAlt(a) })
	}
	return nil
}

// describe names rule i for an error.
func (b *builder) describe(i int32) string {
	r := b.rules[i]
	if r.made != "" {
		return "the " + r.made
	}
	return fmt.Sprintf("rule %q", r.name)
}

// leftRecursion refuses a rule that can reach itself before reading a character:
// expanding it would never end. A repetition of something that may be empty (("a"?)*)
// is one. It returns which rules may match the empty text.
func (b *builder) leftRecursion() (empty []bool, err error) {
	// Which rules may match the empty text, to a fixed point.
	empty = make([]bool, len(b.rules))
	for changed := true; changed; {
		changed = false
		for i, r := range b.rules {
			if empty[i] {
				continue
			}
			for _, a := range r.alts {
				if allEmpty(a, empty) {
					empty[i], changed = true, true
					break
				}
			}
		}
	}
	// A depth-first search over "begins with" edges: rule i → rule j when an
	// alternative of i may begin with j (only empty elements before it).
	const (
		unseen = iota
		open
		closed
	)
	mark := make([]uint8, len(b.rules))
	var path []int32
	var visit func(i int32) error
	visit = func(i int32) error {
		mark[i] = open
		path = append(path, i)
		for _, a := range b.rules[i].alts {
			for _, s := range a {
				if s.ref < 0 {
					break
				}
				switch mark[s.ref] {
				case open:
					return b.loopError(path, s.ref)
				case unseen:
					if err := visit(s.ref); err != nil {
						return err
					}
				}
				if !empty[s.ref] {
					break
				}
			}
		}
		path = path[:len(path)-1]
		mark[i] = closed
		return nil
	}
	for i := range b.rules {
		if mark[i] == unseen {
			if err := visit(int32(i)); err != nil {
				return nil, err
			}
		}
	}
	return empty, nil
}

func allEmpty(a []sym, empty []bool) bool {
	for _, s := range a {
		if s.ref < 0 || !empty[s.ref] {
			return false
		}
	}
	return true
}

// loopError describes the cycle path[k:] back to rule to.
func (b *builder) loopError(path []int32, to int32) error {
	k := len(path) - 1
	for path[k] != to {
		k--
	}
	for _, i := range path[k:] {
		if r := b.rules[i]; r.made == "repetition" {
			return r.at.errorf("a repetition of something that may be empty would never end (left recursion)")
		}
	}
	var names []string
	for _, i := range append(path[k:], to) {
		names = append(names, b.describe(i))
	}
	return b.rules[to].at.errorf("left recursion: %s reaches itself without reading a character", strings.Join(names, " → "))
}

// emptySeq reports whether seq may match the empty text. Its rules must be defined
// already (a regular expression's are, bottom up; GBNF's may not be).
func (b *builder) emptySeq(seq []sym) bool {
	for _, s := range seq {
		if s.ref < 0 || !b.emptyRule(s.ref) {
			return false
		}
	}
	return true
}

func (b *builder) emptyRule(r int32) bool {
	if e, ok := b.empty[r]; ok {
		return e
	}
	if b.empty == nil {
		b.empty = map[int32]bool{}
	}
	b.empty[r] = false // until found: a rule that reaches itself first reads nothing through that way
	for _, a := range b.rules[r].alts {
		if b.emptySeq(a) {
			b.empty[r] = true
			break
		}
	}
	return b.empty[r]
}

// nonEmpty returns alternatives that match the texts seq matches but the empty one:
// for each element that may be the first to read a character (those before it taken
// as empty), that element's non-empty texts and the rest of seq after it. None where
// seq matches only the empty text.
func (b *builder) nonEmpty(seq []sym, p srcPos) ([][]sym, error) {
	var out [][]sym
	n := 0 // elements in out: each alternative is a tail of seq, so their sum grows as the square of it
	for i, s := range seq {
		if n += len(seq) - i + 1; n > maxElems-b.elems {
			return nil, p.errorf("a repetition of something that may be empty, written without its empty text, makes the grammar more than %d elements", maxElems)
		}
		if s.ref < 0 || !b.emptyRule(s.ref) {
			return append(out, slices.Clone(seq[i:])), nil
		}
		r, ok, err := b.nonEmptyRule(s.ref, p)
		if err != nil {
			return nil, err
		}
		if ok {
			out = append(out, append([]sym{refSym(r)}, seq[i+1:]...))
		}
	}
	return out, nil
}

// nonEmptyRule returns a rule of rule r's texts but the empty one, and false where r
// matches only the empty text.
func (b *builder) nonEmptyRule(r int32, p srcPos) (int32, bool, error) {
	if n, ok := b.nonEmpties[r]; ok {
		return n, n >= 0, nil
	}
	if b.nonEmpties == nil {
		b.nonEmpties = map[int32]int32{}
	}
	b.nonEmpties[r] = -1
	var alts [][]sym
	for _, a := range b.rules[r].alts {
		more, err := b.nonEmpty(a, p)
		if err != nil {
			return 0, false, err
		}
		alts = append(alts, more...)
	}
	if len(alts) == 0 {
		return -1, false, nil
	}
	n, err := b.fresh(p, "group")
	if err != nil {
		return 0, false, err
	}
	if err := b.define(n, alts, p); err != nil {
		return 0, false, err
	}
	b.nonEmpties[r] = n
	return n, true, nil
}
