package spec_test

import (
	"encoding/json"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/specd-dev/specd/generate"
	"github.com/specd-dev/specd/grammar"
	"github.com/specd-dev/specd/sample"
	"github.com/specd-dev/specd/spec"
	"github.com/specd-dev/specd/verifier"
)

// TestGrammarSpeculationEqualsPlain: under a response format (any JSON object, a
// schema, and the same person as a GBNF grammar, a regular expression and a choice of
// three), plain decoding writes a whole document that encoding/json reads and the
// schema allows, and speculation — greedy, coupled and rejection, the draft
// constrained by the same grammar, pipelined and branching —
// commits plain decoding's tokens on every path the simulation takes; so does a
// session resumed after a failover mid-document.
func TestGrammarSpeculationEqualsPlain(t *testing.T) {
	p := loadPair(t)
	const n = 160
	schema, err := grammar.SchemaFormat([]byte(`{"type":"object","properties":{
		"name":{"type":"string"},"age":{"type":"integer"},"friends":{"type":"array","items":{"type":"string"},"maxItems":3},
		"mood":{"enum":["happy","sad"]}},"required":["name","age","mood"]}`))
	if err != nil {
		t.Fatal(err)
	}
	// The same person as a GBNF grammar, a regular expression and a choice of three.
	gbnf, err := grammar.GBNFFormat(`root ::= "{\"name\": \"" [A-Z] [a-z]+ "\", \"age\": " [0-9]{1,2} ", \"mood\": \"" mood "\"}"
mood ::= "happy" | "sad"`)
	if err != nil {
		t.Fatal(err)
	}
	regex, err := grammar.RegexFormat(`\{"name": "[A-Z][a-z]+", "age": \d+, "mood": "(happy|sad)"\}`)
	if err != nil {
		t.Fatal(err)
	}
	choice, err := grammar.ChoiceFormat([]string{`{"name": "Lily", "age": 5, "mood": "happy"}`, `{"name": "Lily", "age": 3, "mood": "sad"}`,
		`{"name": "Tom", "age": 5, "mood": "happy"}`})
	if err != nil {
		t.Fatal(err)
	}
	// The keywords Pydantic's constrained fields write: lengths, a date, bounds on a
	// float, unique Literals, a tuple.
	keywords, err := grammar.SchemaFormat([]byte(`{"type":"object","properties":{
		"name":{"type":"string","minLength":1,"maxLength":10},"born":{"type":"string","format":"date"},
		"height":{"type":"number","exclusiveMinimum":0,"maximum":2.5},"toys":{"type":"array","items":{"enum":["ball","doll"]},"uniqueItems":true},
		"pos":{"type":"array","prefixItems":[{"type":"integer","multipleOf":5},{"type":"number"}],"items":false,"minItems":2}},
		"required":["name","born","height","toys","pos"]}`))
	if err != nil {
		t.Fatal(err)
	}
	prompt := p.target.Tok.Encode("Tom is a boy. He is three. He is sad. As JSON: {\"name\": \"Tom\", \"age\": 3, \"mood\": \"sad\"}\n"+
		"Lily is a girl. She is five. She is happy. As JSON: ", true)
	for _, c := range []struct {
		name   string
		format grammar.Format
		sp     sample.Params
		mode   spec.Mode
		whole  bool // plain decoding ends the document within n tokens
		kw     bool // the format is keywords
	}{
		{"object greedy", grammar.ObjectFormat(), sample.Params{TopP: 1}, spec.Coupled, true, false},
		{"schema greedy", schema, sample.Params{TopP: 1}, spec.Coupled, true, false},
		{"schema coupled", schema, sample.Params{Temperature: 0.8, TopP: 1, Seed: 3}, spec.Coupled, false, false},
		{"schema greedy, penalties", schema, sample.Params{TopP: 1, FrequencyPenalty: 0.3, RepetitionPenalty: 1.1}, spec.Coupled, true, false},
		{"object rejection", grammar.ObjectFormat(), sample.Params{Temperature: 1, TopP: 0.95, Seed: 11}, spec.Rejection, false, false},
		{"keywords greedy", keywords, sample.Params{TopP: 1}, spec.Coupled, true, true},
		{"keywords rejection", keywords, sample.Params{Temperature: 1, TopP: 0.95, Seed: 5}, spec.Rejection, false, true},
		// The document is whole long before min_tokens: the grammar's end wins (held
		// back as well, nothing was left to draw and the request failed).
		{"schema greedy min_tokens", schema, sample.Params{TopP: 1, MinTokens: n - 10}, spec.Coupled, true, false},
		{"gbnf greedy", gbnf, sample.Params{TopP: 1}, spec.Coupled, true, false},
		{"gbnf coupled", gbnf, sample.Params{Temperature: 0.8, TopP: 1, Seed: 5}, spec.Coupled, false, false},
		{"regex greedy", regex, sample.Params{TopP: 1}, spec.Coupled, true, false},
		{"regex rejection", regex, sample.Params{Temperature: 1, TopP: 0.95, Seed: 7}, spec.Rejection, false, false},
		{"choice greedy", choice, sample.Params{TopP: 1}, spec.Coupled, true, false},
		{"choice coupled", choice, sample.Params{Temperature: 0.8, TopP: 1, Seed: 9}, spec.Coupled, true, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			sp := c.sp
			sp.Grammar = c.format.Grammar(p.target.Tok)
			lim := limits(p.target, n)
			out, _, err := generate.Run(t.Context(), state(t, p.target, p.pool), generate.Request{Prompt: prompt, Sampling: sp, Limits: lim},
				func(generate.Token) error { return nil })
			if err != nil {
				t.Fatal(err)
			}
			want := out.IDs
			checkDoc(t, c.format, out.Text(), out.Reason == generate.EOS, c.kw)
			if c.whole && out.Reason != generate.EOS {
				t.Fatalf("plain output did not end with a whole document in %d tokens (%v): %q", n, out.Reason, out.Text())
			}
			t.Logf("%s: %q (%v)", c.name, out.Text(), out.Reason)
			if free := plain(t, p, prompt, n, c.sp); slices.Equal(free, want) {
				t.Fatalf("the output without the grammar is the same: the test would prove nothing")
			}
			accepted := 0
			for _, gamma := range []int{1, 4} {
				for _, depth := range []int{1, 3} {
					rng := rand.New(rand.NewPCG(uint64(gamma), uint64(depth)))
					got, st := simulateLimits(t, p, prompt, lim, sp, c.mode, gamma, depth, rng)
					// A schedule may have plain steps outrun every proposal of a short
					// output (all stale, none used): the draft is checked over the four.
					accepted += st.Accepted
					if c.mode == spec.Rejection {
						// Rejection sampling draws from plain decoding's distribution, not
						// its tokens: the output must be a document of the format.
						text := p.target.Tok.Decode(got)
						checkDoc(t, c.format, text, len(got) < n && (len(got) == 0 || !slices.Contains(lim.Ends(), got[len(got)-1])), c.kw)
						continue
					}
					if !slices.Equal(got, want) {
						t.Errorf("γ=%d depth=%d:\n got %v\nwant %v", gamma, depth, got, want)
					}
				}
			}
			if accepted == 0 {
				t.Errorf("no draft token accepted in any schedule: the draft's proposals were not checked")
			}
			if c.mode == spec.Rejection {
				return
			}
			for _, k := range []int{1, len(want) / 2} {
				vs, err := verifier.NewSession(state(t, p.target, p.pool), verifier.Request{Prompt: prompt, Resume: want[:k], Sampling: sp, Mode: c.mode, Limits: lim})
				if err != nil {
					t.Fatal(err)
				}
				for !vs.Done() {
					if _, err := vs.Own(4); err != nil {
						t.Fatal(err)
					}
				}
				if got := vs.Output().IDs; !slices.Equal(got, want) {
					t.Errorf("resumed after %d tokens:\n got %v\nwant %v", k, got, want)
				}
			}
		})
	}
}

// checkDoc checks that text begins a document of f, and when ended is a whole one that
// encoding/json reads (and, for the test's schemas, that it allows: the person's, or
// with kw the keywords').
func checkDoc(t *testing.T, f grammar.Format, text string, ended, kw bool) {
	t.Helper()
	prefix, whole := f.Check([]byte(text))
	if !prefix || ended && !whole {
		t.Fatalf("%q: a valid beginning %v, whole %v (ended %v)", text, prefix, whole, ended)
	}
	if !ended {
		return
	}
	var doc map[string]any
	if err := json.Unmarshal([]byte(text), &doc); err != nil {
		t.Fatalf("%q is not a JSON object: %v", text, err)
	}
	switch {
	case kw:
		checkKeywords(t, doc)
	case f.Kind() == grammar.JSONSchema:
		checkPerson(t, doc)
	}
}

// checkKeywords checks doc against the keywords' schema of
// TestGrammarSpeculationEqualsPlain, without the grammar.
func checkKeywords(t *testing.T, doc map[string]any) {
	t.Helper()
	if name, ok := doc["name"].(string); !ok || utf8.RuneCountInString(name) < 1 || utf8.RuneCountInString(name) > 10 {
		t.Errorf("name %v is not a string of 1-10 characters", doc["name"])
	}
	if born, ok := doc["born"].(string); !ok {
		t.Errorf("born %v is not a string", doc["born"])
	} else if _, err := time.Parse("2006-01-02", born); err != nil {
		t.Errorf("born %q is not a date: %v", born, err)
	}
	if h, ok := doc["height"].(float64); !ok || h <= 0 || h > 2.5 {
		t.Errorf("height %v is not in (0, 2.5]", doc["height"])
	}
	toys, ok := doc["toys"].([]any)
	if !ok || len(toys) > 2 || len(toys) == 2 && toys[0] == toys[1] {
		t.Errorf("toys %v are not distinct", doc["toys"])
	}
	for _, toy := range toys {
		if toy != "ball" && toy != "doll" {
			t.Errorf("toy %v is not a ball or a doll", toy)
		}
	}
	pos, ok := doc["pos"].([]any)
	if !ok || len(pos) != 2 {
		t.Fatalf("pos %v is not a pair", doc["pos"])
	}
	if x, ok := pos[0].(float64); !ok || x != float64(int64(x)) || int64(x)%5 != 0 {
		t.Errorf("pos[0] %v is not a multiple of 5", pos[0])
	}
	for k := range doc {
		if !slices.Contains([]string{"name", "born", "height", "toys", "pos"}, k) {
			t.Errorf("key %q is not in the schema", k)
		}
	}
}

// checkPerson checks doc against the schema of TestGrammarSpeculationEqualsPlain.
func checkPerson(t *testing.T, doc map[string]any) {
	t.Helper()
	if _, ok := doc["name"].(string); !ok {
		t.Errorf("name %v is not a string", doc["name"])
	}
	if age, ok := doc["age"].(float64); !ok || age != float64(int64(age)) {
		t.Errorf("age %v is not an integer", doc["age"])
	}
	if m := doc["mood"]; m != "happy" && m != "sad" {
		t.Errorf("mood %v is not happy or sad", m)
	}
	if f, ok := doc["friends"]; ok {
		list, ok := f.([]any)
		if !ok || len(list) > 3 {
			t.Errorf("friends %v is not an array of at most 3", f)
		}
	}
	for k := range doc {
		if !slices.Contains([]string{"name", "age", "friends", "mood"}, k) {
			t.Errorf("key %q is not in the schema", k)
		}
	}
}

// TestGrammarMinTokensEnds: min_tokens beyond the length of the only document a schema
// allows ({} here) cannot hold the end back once the document is whole — nothing else
// may follow it — so plain decoding, speculation (greedy and rejection) and a draft
// all end right after the document instead of failing with no token to draw.
func TestGrammarMinTokensEnds(t *testing.T) {
	p := loadPair(t)
	f, err := grammar.SchemaFormat([]byte(`{"type":"object","properties":{}}`))
	if err != nil {
		t.Fatal(err)
	}
	prompt := p.target.Tok.Encode("Lily is a girl. As JSON: ", true)
	for _, c := range []struct {
		name string
		sp   sample.Params
		mode spec.Mode
	}{
		{"greedy", sample.Params{TopP: 1, MinTokens: 8}, spec.Coupled},
		{"rejection", sample.Params{Temperature: 1, TopP: 0.95, Seed: 5, MinTokens: 8}, spec.Rejection},
	} {
		t.Run(c.name, func(t *testing.T) {
			sp := c.sp
			sp.Grammar = f.Grammar(p.target.Tok)
			lim := limits(p.target, 32)
			out, _, err := generate.Run(t.Context(), state(t, p.target, p.pool), generate.Request{Prompt: prompt, Sampling: sp, Limits: lim},
				func(generate.Token) error { return nil })
			if err != nil {
				t.Fatalf("plain decoding: %v", err)
			}
			if out.Text() != "{}" || out.Reason != generate.EOS {
				t.Fatalf("plain decoding = %q (%v), want \"{}\" ended by EOS", out.Text(), out.Reason)
			}
			for _, gamma := range []int{1, 4} {
				rng := rand.New(rand.NewPCG(uint64(gamma), 1))
				got, _ := simulateLimits(t, p, prompt, lim, sp, c.mode, gamma, 2, rng)
				if !slices.Equal(got, out.IDs) {
					t.Errorf("γ=%d: speculation = %v, want %v", gamma, got, out.IDs)
				}
			}
		})
	}
}
