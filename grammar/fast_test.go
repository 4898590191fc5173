package grammar

import (
	"path/filepath"
	"slices"
	"testing"

	"github.com/specd-dev/specd/internal/testmodels"
	"github.com/specd-dev/specd/tokenizer/ggufvocab"
)

// TestStringFastPath: inside a string value or a free key, the mask that takes every
// plain token at once and walks the rest is the mask a walk of the whole vocabulary
// gives.
func TestStringFastPath(t *testing.T) {
	for _, name := range []string{"ggml-vocab-qwen2.gguf", "ggml-vocab-llama-spm.gguf"} {
		tok, err := ggufvocab.Open(filepath.Join(testmodels.VocabDir(t), name))
		if err != nil {
			t.Fatal(err)
		}
		union, err := SchemaFormat([]byte(`{"anyOf":[{"type":"object","properties":{"a":{"type":"string"}},"additionalProperties":{"type":"string"}},
			{"type":"object","properties":{"ab":{"enum":["x\"y"]}},"additionalProperties":{"type":"integer"}},{"type":"object","properties":{"abc":{"type":"string"}}}]}`))
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range []struct {
			f    Format
			text string
		}{
			{ObjectFormat(), `{"a": "xy`}, {ObjectFormat(), `{"ab`}, {ObjectFormat(), `{"a": "é`}, {ObjectFormat(), `{"k":1, "`},
			// Several alternatives, one of them in free text: a union of objects.
			{union, `{"ab`}, {union, `{"ab": "x`}, {union, `{"`},
		} {
			g, text := c.f.Grammar(tok), c.text
			m := g.NewMatcher().(*Matcher)
			m.Reset(tok.Encode(text, false))
			if c.f.root != anyObject && len(m.alts) < 2 {
				t.Fatalf("%s: %q leaves %d alternatives, want several", name, text, len(m.alts))
			}
			if _, fast := m.plainRoom(); !fast {
				t.Fatalf("%s: %q is not inside a string", name, text)
			}
			fast := make([]float32, tok.VocabSize())
			m.Mask(fast, nil)
			m.allowed = m.allowed[:len(fast)]
			clear(m.allowed)
			m.walk(m.g.v.all, 0, m.alts)
			for id, ok := range m.allowed {
				if masked := fast[id] < 0; masked == ok {
					t.Errorf("%s after %q: token %d (%q) allowed %v by the whole walk, masked %v by the fast path", name, text, id, tok.TokenBytes(int32(id)), ok, masked)
				}
			}
			if n := slices.Index(m.allowed, true); n < 0 {
				t.Errorf("%s after %q: nothing allowed", name, text)
			}
		}
	}
}

// TestLengthFastPath: inside strings whose rule bounds their length only, the mask that
// takes the plain tokens of at most the room left without a walk is the mask a walk of
// the whole vocabulary gives; inside a format's string or beside an enum value there is
// no fast path.
func TestLengthFastPath(t *testing.T) {
	tok, err := ggufvocab.Open(filepath.Join(testmodels.VocabDir(t), "ggml-vocab-qwen2.gguf"))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		schema, text string
		fast         bool
	}{
		{`{"type":"object","properties":{"s":{"type":"string","maxLength":5}}}`, `{"s": "ab`, true},
		{`{"type":"object","properties":{"s":{"type":"string","maxLength":5}}}`, `{"s": "abcde`, true},
		{`{"type":"string","minLength":3}`, `"ab`, true},
		{`{"anyOf":[{"type":"string","maxLength":3},{"type":"string","maxLength":6,"minLength":1}]}`, `"a`, true},
		{`{"anyOf":[{"type":"string","maxLength":3},{"type":"string"}]}`, `"é`, true},
		{`{"anyOf":[{"type":"string","maxLength":2},{"enum":["abcdefgh"]}]}`, `"a`, false},
		{`{"anyOf":[{"type":"string","maxLength":2},{"type":"string","format":"date"}]}`, `"2`, false},
		{`{"type":"string","format":"email"}`, `"ab`, false},
	} {
		f, err := SchemaFormat([]byte(c.schema))
		if err != nil {
			t.Fatal(err)
		}
		m := f.Grammar(tok).NewMatcher().(*Matcher)
		m.Reset(tok.Encode(c.text, false))
		if m.dead {
			t.Fatalf("%s: %q refused", c.schema, c.text)
		}
		if _, fast := m.plainRoom(); fast != c.fast {
			t.Fatalf("%s after %q: fast path %v, want %v", c.schema, c.text, fast, c.fast)
		}
		got := make([]float32, tok.VocabSize())
		m.Mask(got, nil)
		m.allowed = m.allowed[:len(got)]
		clear(m.allowed)
		m.walk(m.g.v.all, 0, m.alts)
		n := 0
		for id, ok := range m.allowed {
			if masked := got[id] < 0; masked == ok {
				t.Errorf("%s after %q: token %d (%q) allowed %v by the whole walk, masked %v by the mask", c.schema, c.text, id, tok.TokenBytes(int32(id)), ok, masked)
			}
			if ok {
				n++
			}
		}
		if n == 0 {
			t.Errorf("%s after %q: nothing allowed", c.schema, c.text)
		}
	}
}

// TestFormatWalk: inside a string whose automaton checks its characters, the mask is
// what stepping each token's bytes alone allows, token by token.
func TestFormatWalk(t *testing.T) {
	tok, err := ggufvocab.Open(filepath.Join(testmodels.VocabDir(t), "ggml-vocab-qwen2.gguf"))
	if err != nil {
		t.Fatal(err)
	}
	byteToken := map[byte]int32{} // Qwen2 has a token for each byte
	for id := range int32(tok.VocabSize()) {
		if b := tok.TokenBytes(id); len(b) == 1 {
			byteToken[b[0]] = id
		}
	}
	for _, c := range []struct {
		schema, text string
		partial      []byte // bytes of a character begun, taken after text
	}{
		{`{"type":"string","format":"email","maxLength":12}`, `"first.`, nil},
		{`{"type":"object","properties":{"d":{"type":"string","format":"date-time"}}}`, `{"d": "2024-02-2`, nil},
		{`{"type":"array","items":{"type":"string","format":"ipv4"}}`, `["10.0.0.1", "192.168`, nil},
		{`{"type":"string","format":"uuid"}`, `"123e4567-e89b-12d3-a456-4266141740`, nil},
		{`{"type":"string","format":"hostname"}`, `"a`, nil},
		// Patterns: the plain tokens of a state come from its list, the others are
		// walked, between characters and inside one.
		{`{"type":"string","pattern":"^[A-Z]{3}-\\d{4}$"}`, `"AB`, nil},
		{`{"type":"string","pattern":"^<.+>$","maxLength":12}`, `"<Once up`, nil},
		{`{"type":"string","pattern":"^<.+>$"}`, `"<Once upon`, nil},
		{`{"type":"string","pattern":"^(é|ü|世界|[α-ω])+$","maxLength":9}`, `"éü`, nil},
		{`{"type":"string","pattern":"^(é|ü|世界|[α-ω])+$"}`, `"éü`, []byte{0xE4}},
		{`{"type":"string","pattern":"^(é|ü|世界|[α-ω])+$"}`, `"éü`, []byte{0xE4, 0xB8}},
		{`{"type":"string","pattern":"^.[^a-z]+\"$"}`, `"x`, []byte{0xF0, 0x9F}},
		{`{"type":"string","pattern":"\\\\n"}`, `"ab`, nil},
		{`{"type":"object","properties":{"s":{"type":"string","pattern":"^\\w+$","maxLength":5}}}`, `{"s": "ab`, nil},
		// Keys under propertyNames: a state's plain tokens, the others walked, a quote
		// stepped with the whole key (a property given already is refused).
		{`{"type":"object","propertyNames":{"pattern":"^[a-z]+\\d?$","maxLength":6},"additionalProperties":true}`, `{"ab`, nil},
		{`{"type":"object","propertyNames":{"pattern":"^[a-z]+$"},"properties":{"abc":{"type":"integer"}},"additionalProperties":true}`, `{"abc": 1, "ab`, nil},
		{`{"type":"object","propertyNames":{"minLength":3},"additionalProperties":true}`, `{"a`, nil},
		{`{"type":"object","propertyNames":{"minLength":3},"additionalProperties":true}`, `{"é`, []byte{0xE4}},
	} {
		f, err := SchemaFormat([]byte(c.schema))
		if err != nil {
			t.Fatal(err)
		}
		m := f.Grammar(tok).NewMatcher().(*Matcher)
		m.Reset(tok.Encode(c.text, false))
		for _, b := range c.partial {
			m.Advance(byteToken[b])
		}
		if m.dead || len(m.alts) != 1 {
			t.Fatalf("%s: %q %x leaves %d alternatives (dead %v), want one", c.schema, c.text, c.partial, len(m.alts), m.dead)
		}
		got := make([]float32, tok.VocabSize())
		m.Mask(got, nil)
		n := 0
		for id := range tok.VocabSize() {
			text := m.g.v.text[id]
			want := text != nil && len(after(m.alts, text)) > 0
			if masked := got[id] < 0; masked == want {
				t.Errorf("%s after %q: token %d (%q) allowed %v by its steps, masked %v", c.schema, c.text, id, text, want, masked)
			}
			if want {
				n++
			}
		}
		if n == 0 {
			t.Errorf("%s after %q: nothing allowed", c.schema, c.text)
		}
	}
}
