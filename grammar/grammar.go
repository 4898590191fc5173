// Package grammar constrains generated text to JSON — any JSON object, or a value valid
// against a JSON Schema — as OpenAI's response_format, vLLM's structured outputs and
// llama.cpp's grammars do; or to a GBNF grammar (llama.cpp's format), a regular
// expression or a choice of strings, compiled to rules matched as llama.cpp matches
// its grammars, by stacks over code points (GBNFFormat, RegexFormat, ChoiceFormat).
// At each position, tokens whose bytes cannot continue a valid
// document get a logit of -Inf before the sampler draws, and the tokens that end the
// text are allowed only once the document is whole. The mask depends on the tokens
// drawn so far alone, so plain decoding, a verifier judging a draft's tokens, and a
// draft proposing them all see the same one: speculation stays exact.
//
// The schema subset: type, nullable, enum, const; properties, required,
// additionalProperties (absent with properties it is false, as in OpenAI's strict
// schemas), minProperties, maxProperties, propertyNames (a pattern and lengths, on
// every key); items, prefixItems (and draft 7's tuples),
// minItems, maxItems, uniqueItems (on an enum's values); minLength, maxLength (in code
// points), format (date-time, date, time, duration, uuid, ipv4, ipv6, hostname,
// email, uri: each the subset its automaton in formats.go names; another format is an
// annotation) and pattern (an ECMA-262 regular expression found anywhere in the string
// unless anchored, compiled to a deterministic automaton: pattern.go); minimum, maximum and their exclusive forms on integers and on numbers
// with a fraction (exact on any decimal bound: such a number has no exponent);
// multipleOf on integers;
// anyOf and oneOf (matched as anyOf: that exactly one branch matches is not checked),
// allOf and keywords beside $ref or a union (merged, or refused where they cannot be);
// and $ref to "#", "#/$defs/NAME" or "#/definitions/NAME" (recursion allowed).
// Annotations (title, description, default, examples, discriminator, …) are ignored;
// any other keyword is refused with ErrSchema, never silently dropped, and so is a
// pattern beside an enforced format but for the ones zod writes beside it. Keys, enum values and constants must be
// written as compact JSON spells them (enum values with no white space inside).
// White space between tokens is at most one space, and each part of a number at most
// maxDigits digits.
package grammar

import (
	"math"
	"slices"
	"sync"
	"unicode/utf8"

	"github.com/specd-dev/specd/sample"
	"github.com/specd-dev/specd/tokenizer"
)

// Kind is what a Format asks for.
type Kind uint8

const (
	Text       Kind = iota // no constraint
	JSONObject             // one JSON object
	JSONSchema             // one JSON value valid against a schema
	GBNF                   // a GBNF grammar (llama.cpp's)
	Regex                  // a regular expression
	Choice                 // one of a list of strings
)

// Format is a request's response format, validated. The zero value is free text.
type Format struct {
	kind   Kind
	schema []byte
	root   *node
	// prefix and suffix are literal text the output has around the document.
	prefix, suffix string
	// rules: a GBNF, Regex or Choice format (root is nil).
	rules *ruleSet
}

// Wrapped returns f with literal text around the document: the output is prefix, the
// document, then suffix (as a tool call's tags around its JSON). Free text is not
// wrapped.
func (f Format) Wrapped(prefix, suffix string) Format {
	if f.root != nil {
		f.prefix, f.suffix = prefix, suffix
	}
	return f
}

// Affixes returns the literal text around the document (Wrapped).
func (f Format) Affixes() (prefix, suffix string) { return f.prefix, f.suffix }

// ObjectFormat asks for one JSON object of any content.
func ObjectFormat() Format { return Format{kind: JSONObject, root: anyObject} }

// SchemaFormat asks for one JSON value valid against schema (a JSON Schema document in
// the subset the package comment lists), or returns an error wrapping ErrSchema.
func SchemaFormat(schema []byte) (Format, error) {
	root, err := compileSchema(schema)
	if err != nil {
		return Format{}, err
	}
	return Format{kind: JSONSchema, schema: append([]byte(nil), schema...), root: root}, nil
}

// Check reports whether text can begin a document of f (prefix) and whether it is a
// whole one. Free text is always whole.
func (f Format) Check(text []byte) (prefix, whole bool) {
	if f.rules != nil {
		s := f.rules.after(f.rules.start(), text)
		return s.set != nil, s.whole()
	}
	if f.root == nil {
		return true, true
	}
	alts := after(start(f.root, f.prefix, f.suffix), text)
	return len(alts) > 0, accepting(alts)
}

// Kind is what f asks for.
func (f Format) Kind() Kind { return f.kind }

// Schema is the schema document of a JSONSchema format (nil otherwise).
func (f Format) Schema() []byte { return f.schema }

// Grammar returns f's constraint over tok's tokens, or nil for free text.
func (f Format) Grammar(tok *tokenizer.Tokenizer) *Grammar {
	if f.root == nil && f.rules == nil {
		return nil
	}
	return &Grammar{f: f, v: vocabOf(tok)}
}

// Grammar is a Format over one vocabulary: a sample.Grammar.
type Grammar struct {
	f Format
	v *vocab
}

func (g *Grammar) start() []*frame { return start(g.f.root, g.f.prefix, g.f.suffix) }

// NewMatcher returns the constraint's state at the start of an output.
func (g *Grammar) NewMatcher() sample.Matcher {
	if r := g.f.rules; r != nil {
		return &ruleMatcher{g: g, r: r, st: r.start()}
	}
	return &Matcher{g: g, alts: g.start()}
}

// Matcher follows one output through a Grammar. It is used by one goroutine.
type Matcher struct {
	g       *Grammar
	alts    []*frame
	dead    bool // a token was taken that the grammar does not allow
	allowed []bool
	saved   []float32
	// Once Reset is used (by a draft, which rolls back and drafts ahead before every
	// token), ids are the tokens taken and states[i] the alternatives after ids[:i],
	// so that a Reset steps only past the prefix it shares with ids: replaying the
	// whole output at every drafted token made a long output cost its square.
	keep   bool
	ids    []int32
	states [][]*frame
	// path: the bytes from the frame a walk of characters began at (walkChars).
	path []byte
}

// Advance takes the next token of the output. A token with no text (a control
// token, such as the one that ends the output) changes nothing.
func (m *Matcher) Advance(id int32) {
	m.advance(id)
	if m.keep {
		m.ids = append(m.ids, id)
		m.states = append(m.states, m.alts)
	}
}

func (m *Matcher) advance(id int32) {
	if id < 0 || int(id) >= len(m.g.v.text) || m.dead {
		return
	}
	m.alts = after(m.alts, m.g.v.text[id])
	m.dead = len(m.alts) == 0
}

// after returns the state alts becomes after text, empty when it cannot take it.
func after(alts []*frame, text []byte) []*frame {
	for _, b := range text {
		if alts = stepAll(nil, alts, b); len(alts) == 0 {
			return nil
		}
	}
	return alts
}

// Allows reports whether id may come next: a token whose bytes continue the document,
// or one of ends where the document is whole (or after a token the grammar does not
// allow) — what Mask leaves, for one token.
func (m *Matcher) Allows(id int32, ends []int32) bool {
	if slices.Contains(ends, id) {
		return m.dead || accepting(m.alts)
	}
	if m.dead || id < 0 || int(id) >= len(m.g.v.text) || m.g.v.text[id] == nil {
		return false
	}
	return len(after(m.alts, m.g.v.text[id])) > 0
}

// Reset returns to the start of the output and takes output's tokens.
func (m *Matcher) Reset(output []int32) {
	if !m.keep {
		m.keep, m.ids, m.states = true, nil, [][]*frame{m.g.start()}
	}
	k := 0
	for k < len(output) && k < len(m.ids) && output[k] == m.ids[k] {
		k++
	}
	// States are never changed once made (a step copies frames into a new slice).
	m.ids, m.states = m.ids[:k], m.states[:k+1]
	m.alts = m.states[k]
	m.dead = len(m.alts) == 0
	for _, id := range output[k:] {
		m.Advance(id)
	}
}

// Mask sets to -Inf the logit of every token that cannot come next: those whose bytes
// do not continue the document, and the ends (token ids that end the output) while the
// document is not whole. After a token the grammar does not allow (none is drawn with
// the mask, but a caller may force one) only the ends remain.
func (m *Matcher) Mask(logits []float32, ends []int32) {
	if cap(m.allowed) < len(logits) {
		m.allowed = make([]bool, len(logits))
	}
	m.allowed = m.allowed[:len(logits)]
	clear(m.allowed)
	m.saved = m.saved[:0]
	for _, e := range ends {
		if e >= 0 && int(e) < len(logits) {
			m.saved = append(m.saved, logits[e])
		}
	}
	switch room, fast := m.plainRoom(); {
	case m.dead:
	case fast:
		// Inside a string almost every token fits: the plain ones (valid UTF-8, no
		// quote, backslash or control character) all do, without a walk, or those of
		// at most room characters; the trie of the others is walked. Walking all of
		// Qwen2's 152,064 tokens here took 58 ms.
		for _, id := range m.g.v.plainWithin(room) {
			if int(id) < len(m.allowed) {
				m.allowed[id] = true
			}
		}
		m.walk(m.g.v.rest, 0, m.alts)
	case m.maskPattern():
	default:
		m.walk(m.g.v.all, 0, m.alts)
	}
	inf := float32(math.Inf(-1))
	for id, ok := range m.allowed {
		if !ok {
			logits[id] = inf
		}
	}
	// The ends come last: an end may be a token with text (a stop id), which ends the
	// output wherever it is drawn.
	whole, i := m.dead || accepting(m.alts), 0
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

// walk marks every token below node i of trie t whose bytes the state alts can take.
func (m *Matcher) walk(t []trieNode, i int32, alts []*frame) {
	if m.walkRuled(t, i, alts) {
		return
	}
	for _, e := range t[i].edges {
		next := stepAll(nil, alts, e.b)
		if len(next) == 0 {
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

// vocab is a tokenizer's tokens as text: each token's bytes (nil for one that has
// none: control tokens, BOS, EOS, unknown), and tries of them (root at 0): all of
// them, and the rest once the plain ones are set apart — those whose bytes are valid
// UTF-8 with no quote, backslash or control character, which continue any string.
type vocab struct {
	text         [][]byte
	all, rest    []trieNode
	plain        []int32 // by the number of characters, fewest first
	plainChars   []int   // of each of plain
	longestPlain int

	// Derived on first use and kept as v is (see asciiIndex and plainArena).
	asciiOnce, arenaOnce sync.Once
	ascii                *asciiIndex
	arena                *plainArena
}

type trieNode struct {
	edges []trieEdge // by byte
	ids   []int32    // tokens whose bytes end here
}

type trieEdge struct {
	b  byte
	to int32
}

var vocabs sync.Map // *tokenizer.Tokenizer → *vocabOnce

type vocabOnce struct {
	once sync.Once
	v    *vocab
}

// vocabOf returns tok's vocab, built on first use and kept: a process holds few
// tokenizers, for its whole life. Requests that arrive together wait for one build
// (Qwen2's: 0.3 s and 100 MB; eight built side by side took 2.4 s and 830 MB).
func vocabOf(tok *tokenizer.Tokenizer) *vocab {
	e, _ := vocabs.LoadOrStore(tok, &vocabOnce{})
	vo := e.(*vocabOnce)
	vo.once.Do(func() { vo.v = newVocab(tok) })
	return vo.v
}

func newVocab(tok *tokenizer.Tokenizer) *vocab {
	n := tok.VocabSize()
	v := &vocab{text: make([][]byte, n), all: []trieNode{{}}, rest: []trieNode{{}}}
	for id := range int32(n) {
		switch tok.Type(id) {
		case tokenizer.TypeNormal, tokenizer.TypeUserDefined, tokenizer.TypeByte, tokenizer.TypeUnused:
		default:
			continue
		}
		if id == tok.BOS() || id == tok.EOS() {
			continue
		}
		b := tok.TokenBytes(id)
		if len(b) == 0 {
			continue
		}
		v.text[id] = b
		v.all = insert(v.all, b, id)
		if plainText(b) {
			v.plain = append(v.plain, id)
			v.longestPlain = max(v.longestPlain, len(b))
		} else {
			v.rest = insert(v.rest, b, id)
		}
	}
	chars := make([]int, len(v.text))
	for _, id := range v.plain {
		chars[id] = utf8.RuneCount(v.text[id])
	}
	slices.SortStableFunc(v.plain, func(a, b int32) int { return chars[a] - chars[b] })
	for _, id := range v.plain {
		v.plainChars = append(v.plainChars, chars[id])
	}
	return v
}

// plainText reports whether b continues any string: valid UTF-8 with no quote,
// backslash or control character.
func plainText(b []byte) bool {
	for _, c := range b {
		if c < 0x20 || c == '"' || c == '\\' {
			return false
		}
	}
	return utf8.Valid(b)
}

// insert adds token id, spelled b, to trie t.
func insert(t []trieNode, b []byte, id int32) []trieNode {
	at := int32(0)
	for _, c := range b {
		next := int32(-1)
		for _, e := range t[at].edges {
			if e.b == c {
				next = e.to
				break
			}
		}
		if next < 0 {
			t = append(t, trieNode{})
			next = int32(len(t) - 1)
			t[at].edges = append(t[at].edges, trieEdge{b: c, to: next})
		}
		at = next
	}
	t[at].ids = append(t[at].ids, id)
	return t
}
