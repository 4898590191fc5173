package grammar

import "slices"

// String content. A string schema with minLength, maxLength or a format compiles to a
// strRule: bounds on the number of characters (code points, as JSON Schema counts them)
// and an automaton over the characters themselves. The string's frame decodes each
// character as it is written — UTF-8 sequences and JSON's escapes alike, so that "\u0032"
// is the digit 2 — and steps the automaton with it (stepRuled). A regular expression
// (pattern) plugs in at the same place: a charRule over the decoded characters.

// charRule is a deterministic automaton over a string's decoded characters. Its states
// are numbers the frame carries; every state next returns can still reach an accepting
// one, in rest more characters at the fewest, so that a mask never leads into a string
// that cannot end.
type charRule interface {
	start() uint32
	// next is the state after r, and false where r cannot come next.
	next(s uint32, r rune) (uint32, bool)
	// final reports whether the string may end in s.
	final(s uint32) bool
	// rest is the fewest characters that take s to a final state.
	rest(s uint32) int
}

// strRule constrains a string: at least min and at most max characters (max < 0: no
// bound) and, when auto is not nil, characters it accepts.
type strRule struct {
	min, max int
	auto     charRule
}

// maxLength bounds minLength and maxLength: a string of more characters than this is
// never what a schema means (and the counter stays small).
const maxLength = 1 << 24

// room reports whether a string of rule r, at count characters in state s of its
// automaton, can still end within its bounds: in at least the automaton's rest and
// r.min characters in all. (A pattern's automaton counts to its minimum until any
// text may follow, so a state's rest may fall short of r.min; there, any text can
// make it up.)
func (r *strRule) room(count int, s uint32) bool {
	if r.max < 0 {
		return true
	}
	end := max(count, r.min)
	if r.auto != nil {
		end = max(end, count+r.auto.rest(s))
	}
	return end <= r.max
}

// stepRuled is step for a string with a rule: the frame after b, or nil. A byte
// that begins a character (a backslash, a UTF-8 lead byte) is taken only where some
// character it can begin fits the rule, so that no byte leads into a string that
// cannot end. Within an automaton's string the characters are written as themselves
// or with a one-letter escape: \uXXXX is refused (its first digits do not say which
// character comes), and so are characters past ASCII unless the automaton is a
// wideRule. A surrogate is refused as \uD800-\uDFFF in any string with a rule: a
// character past U+FFFF is written as itself, so that every escape is one character.
func stepRuled(f *frame, b byte) *frame {
	r := f.n.str
	if b == '"' && f.sub == strChar {
		if !r.ends(f) {
			return nil
		}
		return finish(f.up)
	}
	return r.byteIn(f, b)
}

// ends reports whether the string of rule r may end where f stands, between
// characters.
func (r *strRule) ends(f *frame) bool {
	return f.count >= r.min && (r.auto == nil || r.auto.final(f.fs()))
}

// byteIn is stepRuled for a byte within the string (not its closing quote): the frame
// after b, or nil. Keys under propertyNames take it too (stepKey).
func (r *strRule) byteIn(f *frame, b byte) *frame {
	g := stringByte(f, b)
	switch {
	case g == nil:
		return nil
	case g.sub == strChar: // a character ends here
		return r.take(g, f.fs())
	case f.sub == strChar: // one begins
		if r.max >= 0 && f.count+1 > r.max {
			return nil
		}
		if r.auto == nil {
			return g
		}
		if b == '\\' {
			for _, c := range `"\/` + "\b\f\n\r\t" {
				if s, ok := r.auto.next(f.fs(), c); ok && r.room(f.count+1, s) {
					return g
				}
			}
			return nil
		}
		if w, ok := r.auto.(wideRule); ok {
			if lo, hi := (partChar{cp: g.cp(), need: g.aux, lo: g.lo, hi: g.hi}).span(); w.anyIn(f.fs(), f.count+1, r, lo, hi) {
				return g
			}
		}
		return nil
	case g.sub == strHex:
		if r.auto != nil || g.aux == 2 && g.cp() >= 0xD8 && g.cp() <= 0xDF {
			return nil
		}
	case g.sub == strCont && r.auto != nil:
		// Within a character: some character it can still become must fit, or a
		// token ending here would lead where none can.
		w, ok := r.auto.(wideRule)
		if !ok {
			return nil
		}
		if lo, hi := (partChar{cp: g.cp(), need: g.aux, lo: g.lo, hi: g.hi}).span(); !w.anyIn(f.fs(), f.count+1, r, lo, hi) {
			return nil
		}
	}
	return g
}

// take returns g, a string's frame after a character (g.cp) from automaton state s,
// counted and stepped, or nil where the rule refuses it.
func (r *strRule) take(g *frame, s uint32) *frame {
	c := g.cp()
	if c >= 0xD800 && c <= 0xDFFF {
		return nil
	}
	g.count++
	if r.auto != nil {
		next, ok := r.auto.next(s, c)
		if !ok {
			return nil
		}
		g.setFS(next)
	}
	if !r.room(g.count, g.fs()) {
		return nil
	}
	return g
}

// wideRule is a charRule that accepts characters past ASCII (a pattern's automaton is
// one): anyIn reports whether, from state s, it accepts a character
// of [lo, hi] after which the string, at count characters, can still end within rule.
type wideRule interface {
	anyIn(s uint32, count int, rule *strRule, lo, hi rune) bool
}

// newStrRule returns the rule of a string with the given bounds and automaton, or nil
// where it asks nothing.
func newStrRule(min, max int, auto charRule) *strRule {
	if min == 0 && max < 0 && auto == nil {
		return nil
	}
	return &strRule{min: min, max: max, auto: auto}
}

// freeAt reports whether any text may follow in state s of automaton a.
func freeAt(a charRule, s uint32) bool {
	p, ok := a.(*patternRule)
	return ok && p.freeAt(s)
}

// plainRoom is how many characters any plain token of at most that many may bring to
// the string f stands in, between characters (-1: any number), and false where its
// rule looks at the characters themselves (a plain token must then be walked).
func plainRoom(f *frame) (room int, ok bool) {
	r := f.n.str
	switch {
	case r == nil:
		return -1, true
	case r.auto != nil && !freeAt(r.auto, f.fs()):
		return 0, false
	case r.max < 0:
		return -1, true
	}
	return r.max - f.count, true
}

// matches reports whether s, a decoded string, is one of r's.
func (r *strRule) matches(s string) bool {
	count, st := 0, uint32(0)
	if r.auto != nil {
		st = r.auto.start()
	}
	for _, c := range s {
		count++
		if r.auto != nil {
			var ok bool
			if st, ok = r.auto.next(st, c); !ok {
				return false
			}
		}
	}
	return count >= r.min && (r.max < 0 || count <= r.max) && (r.auto == nil || r.auto.final(st))
}

// plainRoom reports whether the mask may take the plain tokens without a walk (fast),
// and which: those of at most room characters (-1: all). So it may where the output
// stands between characters of a string, in every alternative, whose rule bounds its
// length at most, or in one alternative whose string is unbounded (a plain token then
// continues it, whatever the others say; the walk of the rest asks them all). A union
// of 64 objects read every key and string with all 64 and walked all of Qwen2's trie
// with them, 4-12 s a token.
func (m *Matcher) plainRoom() (room int, fast bool) {
	best, all := 0, len(m.alts) > 0
	for _, f := range m.alts {
		switch {
		case f.sub != strChar:
			all = false
		case f.kind == kString:
			r, ok := plainRoom(f)
			switch {
			case !ok:
				all = false
			case r < 0:
				return -1, true
			default:
				best = max(best, r)
			}
		case f.kind == kKey:
			if free, _ := keyRule(f.up); free && f.up.n.keys == nil && len(f.text)+m.g.v.longestPlain <= maxKey {
				return -1, true
			}
			all = false
		default:
			all = false
		}
	}
	return best, all
}

// plainWithin is the plain tokens of at most room characters (-1: all of them).
func (v *vocab) plainWithin(room int) []int32 {
	if room < 0 {
		return v.plain
	}
	n, _ := slices.BinarySearch(v.plainChars, room+1) // the first of more
	return v.plain[:n]
}

// walkRuled is walk for a state of one alternative standing in a string whose
// automaton checks its characters, between them or inside one: a character steps the
// automaton alone, with no frame per node of the trie (a walk of Qwen2's trie inside an
// email's local part made a frame for each of some 300,000 nodes: 48 ms a mask; inside
// a pattern's .+, whose characters past ASCII go on, 140 ms); a quote, a backslash or
// a control character takes the general step. It reports false, having done nothing,
// where it does not apply.
func (m *Matcher) walkRuled(t []trieNode, i int32, alts []*frame) bool {
	if len(alts) != 1 {
		return false
	}
	f := alts[0]
	r := charsRule(f)
	if r == nil || r.auto == nil {
		return false
	}
	// A walk may begin inside another's (after a quote the general step took): each
	// keeps its bytes after those of the one it is in.
	base := len(m.path)
	switch f.sub {
	case strChar:
		m.walkChars(t, i, f, r, base, f.fs(), f.count, partChar{})
	case strCont:
		m.walkChars(t, i, f, r, base, f.fs(), f.count, partChar{cp: f.cp(), need: f.aux, lo: f.lo, hi: f.hi})
	default:
		return false
	}
	return true
}

// charsRule is the rule of the characters f stands among: a string's, or a key's
// under propertyNames where any key may come (nil: none).
func charsRule(f *frame) *strRule {
	switch f.kind {
	case kString:
		return f.n.str
	case kKey:
		if free, _ := keyRule(f.up); free {
			return f.up.n.keys
		}
	}
	return nil
}

// partChar is a character begun in UTF-8: its bits so far, the bytes still to come
// (none: between characters) and the range of the next.
type partChar struct {
	cp     rune
	need   uint8
	lo, hi byte
}

// span is the characters p can still become.
func (p partChar) span() (lo, hi rune) {
	shift := 6 * uint(p.need-1)
	base := p.cp << (6 * uint(p.need))
	return base | rune(p.lo&0x3F)<<shift, base | rune(p.hi&0x3F)<<shift | (1<<shift - 1)
}

// walkChars marks the tokens below node i of trie t that f, at automaton state s of
// rule r and count characters, with part of a character begun, takes: as stepRuled
// does, byte by byte. m.path[base:] are the bytes from f to node i.
func (m *Matcher) walkChars(t []trieNode, i int32, f *frame, r *strRule, base int, s uint32, count int, part partChar) {
	w, wide := r.auto.(wideRule)
	for _, e := range t[i].edges {
		child := &t[e.to]
		b := e.b
		var next []*frame
		s2, count2, part2, ok := s, count, partChar{}, false
		switch {
		case part.need > 0:
			if b < part.lo || b > part.hi {
				continue
			}
			cp := part.cp<<6 | rune(b&0x3F)
			if part.need == 1 { // the character ends
				s2, ok = r.auto.next(s, cp)
				count2 = count + 1
				ok = ok && r.room(count2, s2)
				break
			}
			part2 = partChar{cp: cp, need: part.need - 1, lo: 0x80, hi: 0xBF}
			lo, hi := part2.span()
			ok = wide && w.anyIn(s, count+1, r, lo, hi)
		case b < 0x20 || b == '"' || b == '\\':
			g := *f
			g.sub, g.aux = strChar, 0
			g.setFS(s)
			g.count = count
			if f.kind == kKey { // a key's frame has its text so far
				g.text = f.text + string(m.path[base:])
			}
			next = step(nil, &g, b)
			ok = len(next) > 0
		case b < 0x80:
			if r.max < 0 || count+1 <= r.max {
				s2, ok = r.auto.next(s, rune(b))
				count2 = count + 1
				ok = ok && r.room(count2, s2)
			}
		case wide && (r.max < 0 || count+1 <= r.max):
			cp, need, lo, hi, valid := lead(b)
			if !valid {
				continue
			}
			part2 = partChar{cp: cp, need: need, lo: lo, hi: hi}
			l, h := part2.span()
			ok = w.anyIn(s, count+1, r, l, h)
		}
		if !ok {
			continue
		}
		for _, id := range child.ids {
			if int(id) < len(m.allowed) {
				m.allowed[id] = true
			}
		}
		switch {
		case len(child.edges) == 0:
		case next != nil:
			m.walk(t, e.to, next)
		default:
			m.path = append(m.path, b)
			m.walkChars(t, e.to, f, r, base, s2, count2, part2)
			m.path = m.path[:len(m.path)-1]
		}
	}
}
