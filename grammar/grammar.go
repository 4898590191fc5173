// Package grammar constrains generated text to JSON — any JSON object, or a value valid
// against a JSON Schema — as OpenAI's response_format, vLLM's structured outputs and
// llama.cpp's grammars do. At each position, tokens whose bytes cannot continue a valid
// document get a logit of -Inf before the sampler draws, and the tokens that end the
// text are allowed only once the document is whole. The mask depends on the tokens
// drawn so far alone, so plain decoding, a verifier judging a draft's tokens, and a
// draft proposing them all see the same one: speculation stays exact.
//
// The schema subset: type (a name or a list), properties, required,
// additionalProperties (a boolean or a schema; absent with properties it is false, as
// in OpenAI's strict schemas), items, minItems, maxItems, enum, const, anyOf, oneOf
// (matched as anyOf: that exactly one branch matches is not checked), and $ref to "#",
// "#/$defs/NAME" or "#/definitions/NAME" (recursion allowed). Annotations (title,
// description, default, examples, format, …) are ignored; any other keyword is refused
// with ErrSchema, never silently dropped. Keys, enum values and constants must be
// written as compact JSON spells them (enum values with no white space inside).
// White space runs between tokens are at most maxWS bytes, numbers maxNumber bytes.
package grammar

import (
	"math"
	"sync"

	"github.com/specd-dev/specd/sample"
	"github.com/specd-dev/specd/tokenizer"
)

// Kind is what a Format asks for.
type Kind uint8

const (
	Text       Kind = iota // no constraint
	JSONObject             // one JSON object
	JSONSchema             // one JSON value valid against a schema
)

// Format is a request's response format, validated. The zero value is free text.
type Format struct {
	kind   Kind
	schema []byte
	root   *node
}

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
	if f.root == nil {
		return true, true
	}
	alts := start(f.root)
	for _, b := range text {
		if alts = stepAll(nil, alts, b); len(alts) == 0 {
			return false, false
		}
	}
	return true, accepting(alts)
}

// Kind is what f asks for.
func (f Format) Kind() Kind { return f.kind }

// Schema is the schema document of a JSONSchema format (nil otherwise).
func (f Format) Schema() []byte { return f.schema }

// Grammar returns f's constraint over tok's tokens, or nil for free text.
func (f Format) Grammar(tok *tokenizer.Tokenizer) *Grammar {
	if f.root == nil {
		return nil
	}
	return &Grammar{root: f.root, v: vocabOf(tok)}
}

// Grammar is a Format over one vocabulary: a sample.Grammar.
type Grammar struct {
	root *node
	v    *vocab
}

// NewMatcher returns the constraint's state at the start of an output.
func (g *Grammar) NewMatcher() sample.Matcher {
	return &Matcher{g: g, alts: start(g.root)}
}

// Matcher follows one output through a Grammar. It is used by one goroutine.
type Matcher struct {
	g       *Grammar
	alts    []*frame
	dead    bool // a token was taken that the grammar does not allow
	allowed []bool
	saved   []float32
}

// Advance takes the next token of the output. A token with no text (a control
// token, such as the one that ends the output) changes nothing.
func (m *Matcher) Advance(id int32) {
	if id < 0 || int(id) >= len(m.g.v.text) || m.dead {
		return
	}
	for _, b := range m.g.v.text[id] {
		m.alts = stepAll(nil, m.alts, b)
		if len(m.alts) == 0 {
			m.dead = true
			return
		}
	}
}

// Reset returns to the start of the output and takes output's tokens.
func (m *Matcher) Reset(output []int32) {
	m.alts, m.dead = start(m.g.root), false
	for _, id := range output {
		m.Advance(id)
	}
}

// Done reports whether the output so far is a whole document.
func (m *Matcher) Done() bool { return !m.dead && accepting(m.alts) }

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
	if !m.dead {
		m.walk(0, m.alts)
	}
	inf := float32(math.Inf(-1))
	for id, ok := range m.allowed {
		if !ok {
			logits[id] = inf
		}
	}
	if m.dead || accepting(m.alts) {
		i := 0
		for _, e := range ends {
			if e >= 0 && int(e) < len(logits) {
				logits[e] = m.saved[i]
				i++
			}
		}
	}
}

// walk marks every token below trie node i whose bytes the state alts can take.
func (m *Matcher) walk(i int32, alts []*frame) {
	for _, e := range m.g.v.nodes[i].edges {
		next := stepAll(nil, alts, e.b)
		if len(next) == 0 {
			continue
		}
		child := &m.g.v.nodes[e.to]
		for _, id := range child.ids {
			if int(id) < len(m.allowed) {
				m.allowed[id] = true
			}
		}
		if len(child.edges) > 0 {
			m.walk(e.to, next)
		}
	}
}

// vocab is a tokenizer's tokens as text: each token's bytes (nil for one that has
// none: control tokens, BOS, EOS, unknown), and a trie of them.
type vocab struct {
	text  [][]byte
	nodes []trieNode // nodes[0] is the root
}

type trieNode struct {
	edges []trieEdge // by byte
	ids   []int32    // tokens whose bytes end here
}

type trieEdge struct {
	b  byte
	to int32
}

var vocabs sync.Map // *tokenizer.Tokenizer → *vocab

// vocabOf returns tok's vocab, built on first use and kept: a process holds few
// tokenizers, for its whole life.
func vocabOf(tok *tokenizer.Tokenizer) *vocab {
	if v, ok := vocabs.Load(tok); ok {
		return v.(*vocab)
	}
	v, _ := vocabs.LoadOrStore(tok, newVocab(tok))
	return v.(*vocab)
}

func newVocab(tok *tokenizer.Tokenizer) *vocab {
	n := tok.VocabSize()
	v := &vocab{text: make([][]byte, n), nodes: []trieNode{{}}}
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
		at := int32(0)
		for _, c := range b {
			at = v.child(at, c)
		}
		v.nodes[at].ids = append(v.nodes[at].ids, id)
	}
	return v
}

// child returns the node below at by byte c, made if need be.
func (v *vocab) child(at int32, c byte) int32 {
	for _, e := range v.nodes[at].edges {
		if e.b == c {
			return e.to
		}
	}
	v.nodes = append(v.nodes, trieNode{})
	to := int32(len(v.nodes) - 1)
	v.nodes[at].edges = append(v.nodes[at].edges, trieEdge{b: c, to: to})
	return to
}
