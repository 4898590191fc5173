package grammar

import "testing"

// TestEscapedKeyIsItsProperty: a key written with escapes names the property it
// decodes to (as every JSON reader decodes it), so it cannot give a declared property
// a value of another schema through additionalProperties, nor give it twice.
func TestEscapedKeyIsItsProperty(t *testing.T) {
	schema := `{"type":"object","properties":{"a":{"type":"integer"},"é":{"type":"integer"},"l\u2028":{"type":"integer"}},"additionalProperties":true}`
	for _, c := range []struct {
		text        string
		prefix, all bool
	}{
		{`{"a":1,"b":"x"}`, true, true},
		{`{"\u0061":1}`, true, true},
		{`{"\u0061":"x"}`, false, false},     // a is an integer
		{`{"a":1,"\u0061":2}`, false, false}, // a given twice
		{`{"\u00e9":"x"}`, false, false},     // é is an integer
		{`{"\u00E9":2,"é":3}`, false, false}, // é given twice
		{`{"\/":"x","\\":1,"\"":[]}`, true, true},
		// U+2028, which compact JSON escapes, written as itself.
		{"{\"l\u2028\":\"x\"}", false, false},
		{"{\"l\u2028\":1}", true, true},
	} {
		ok, whole := run(mustSchema(t, schema), c.text)
		if ok != c.prefix || whole != c.all {
			t.Errorf("%s: valid prefix %v, whole %v; want %v, %v", c.text, ok, whole, c.prefix, c.all)
		}
	}
}
