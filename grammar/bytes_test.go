package grammar

import "testing"

// TestNonASCIIText: enum values and property names beyond ASCII are matched byte for
// byte (a byte appended to the text so far is that byte, not the rune of its value).
func TestNonASCIIText(t *testing.T) {
	for _, c := range []struct {
		schema, text string
		prefix, all  bool
	}{
		{`{"enum":["café","naïve","日本"]}`, `"café"`, true, true},
		{`{"enum":["café","naïve","日本"]}`, `"日本"`, true, true},
		{`{"enum":["café"]}`, `"cafe"`, false, false},
		{`{"type":"object","properties":{"é":{"type":"integer"}},"required":["é"]}`, `{"é":1}`, true, true},
		{`{"type":"object","properties":{"é":{"type":"integer"}},"additionalProperties":true}`, `{"é":1}`, true, true},
		{`{"type":"object","properties":{"é":{"type":"integer"}},"additionalProperties":true}`, `{"é":"x"}`, false, false},
		{`{"type":"object","properties":{"é":{"type":"integer"}},"additionalProperties":true}`, `{"é":1,"é":2}`, false, false},
	} {
		ok, whole := run(mustSchema(t, c.schema), c.text)
		if ok != c.prefix || whole != c.all {
			t.Errorf("%s against %s: valid prefix %v, whole %v; want %v, %v", c.text, c.schema, ok, whole, c.prefix, c.all)
		}
	}
}
