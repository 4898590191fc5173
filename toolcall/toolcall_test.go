package toolcall

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	weather := Call{Name: "get_weather", Arguments: `{"city":"Paris","unit":"celsius"}`}
	for _, c := range []struct {
		name   string
		syntax Syntax
		text   string
		want   Result
	}{
		// Hermes, as Qwen2.5 writes calls.
		{"hermes plain answer", Hermes, "It is sunny.\n", Result{Content: "It is sunny.\n"}},
		{"hermes one call", Hermes, "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\", \"unit\": \"celsius\"}}\n</tool_call>",
			Result{Calls: []Call{weather}}},
		{"hermes text before", Hermes, "Let me look.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\", \"unit\": \"celsius\"}}\n</tool_call>\n",
			Result{Content: "Let me look.", Calls: []Call{weather}}},
		{"hermes two calls", Hermes, "<tool_call>\n{\"name\": \"a\", \"arguments\": {}}\n</tool_call>\n<tool_call>\n{\"name\": \"b\", \"arguments\": {\"x\": [1, {\"y\": null}]}}\n</tool_call>",
			Result{Calls: []Call{{Name: "a", Arguments: "{}"}, {Name: "b", Arguments: `{"x":[1,{"y":null}]}`}}}},
		{"hermes text between and after", Hermes, "A <tool_call>{\"name\": \"a\"}</tool_call> B <tool_call>{\"name\": \"b\"}</tool_call>\n C",
			Result{Content: "A  B \n C", Calls: []Call{{Name: "a", Arguments: "{}"}, {Name: "b", Arguments: "{}"}}}},
		{"hermes braces and markup in strings", Hermes, `<tool_call>{"name": "say", "arguments": {"s": "}{ </tool_call> <tool_call> \"x\""}}</tool_call>`,
			Result{Calls: []Call{{Name: "say", Arguments: `{"s":"}{ </tool_call> <tool_call> \"x\""}`}}}},
		{"hermes unclosed last block", Hermes, "<tool_call>\n{\"name\": \"a\", \"arguments\": {\"k\": 1}}\n",
			Result{Calls: []Call{{Name: "a", Arguments: `{"k":1}`}}}},
		// max_tokens cut the closing tag of a forced call (whose JSON is whole).
		{"hermes last block cut in its closing tag", Hermes, "<tool_call>\n{\"name\": \"a\", \"arguments\": {\"k\": 1}}\n</",
			Result{Calls: []Call{{Name: "a", Arguments: `{"k":1}`}}}},
		{"hermes last block cut after its closing tag's <", Hermes, "Hi <tool_call>{\"name\": \"a\"} <",
			Result{Content: "Hi", Calls: []Call{{Name: "a", Arguments: `{}`}}}},
		{"hermes text that is not the closing tag", Hermes, "<tool_call>{\"name\": \"a\"}\n</x", Result{Content: "<tool_call>{\"name\": \"a\"}\n</x"}},
		{"hermes parameters key", Hermes, `<tool_call>{"name": "a", "parameters": {"k": 1}}</tool_call>`,
			Result{Calls: []Call{{Name: "a", Arguments: `{"k":1}`}}}},
		{"hermes malformed JSON", Hermes, "Hi <tool_call>{\"name\": \"a\", \"arguments\": {</tool_call>", Result{Content: "Hi <tool_call>{\"name\": \"a\", \"arguments\": {</tool_call>"}},
		{"hermes JSON cut off", Hermes, "<tool_call>{\"name\": \"a\", \"argu", Result{Content: "<tool_call>{\"name\": \"a\", \"argu"}},
		{"hermes no name", Hermes, `<tool_call>{"arguments": {}}</tool_call>`, Result{Content: `<tool_call>{"arguments": {}}</tool_call>`}},
		{"hermes name not a string", Hermes, `<tool_call>{"name": 3}</tool_call>`, Result{Content: `<tool_call>{"name": 3}</tool_call>`}},
		{"hermes arguments not an object", Hermes, `<tool_call>{"name": "a", "arguments": [1]}</tool_call>`, Result{Content: `<tool_call>{"name": "a", "arguments": [1]}</tool_call>`}},
		{"hermes arguments as JSON text", Hermes, `<tool_call>{"name": "a", "arguments": " {\"k\": [1, 2]}"}</tool_call>`, Result{Calls: []Call{{Name: "a", Arguments: `{"k":[1,2]}`}}}},
		{"hermes arguments a string, not JSON", Hermes, `<tool_call>{"name": "a", "arguments": "k=1"}</tool_call>`, Result{Content: `<tool_call>{"name": "a", "arguments": "k=1"}</tool_call>`}},
		{"hermes arguments a string of a list", Hermes, `<tool_call>{"name": "a", "arguments": "[1]"}</tool_call>`, Result{Content: `<tool_call>{"name": "a", "arguments": "[1]"}</tool_call>`}},
		{"hermes text inside the block", Hermes, `<tool_call>{"name": "a"} and more</tool_call>`, Result{Content: `<tool_call>{"name": "a"} and more</tool_call>`}},
		{"hermes one good one bad", Hermes, `<tool_call>{"name": "a"}</tool_call><tool_call>[1]</tool_call>`, Result{Content: `<tool_call>{"name": "a"}</tool_call><tool_call>[1]</tool_call>`}},
		{"hermes repeated keys count first", Hermes, `<tool_call>{"name": "a", "arguments": {"k": 1}, "name": "b", "arguments": [2], "parameters": 3}</tool_call>`,
			Result{Calls: []Call{{Name: "a", Arguments: `{"k":1}`}}}},
		{"hermes null arguments", Hermes, `<tool_call>{"name": "a", "arguments": null, "parameters": {"k": 1}}</tool_call>`, Result{Calls: []Call{{Name: "a", Arguments: "{}"}}}},
		{"hermes trailing comma", Hermes, `<tool_call>{"name": "a",}</tool_call>`, Result{Content: `<tool_call>{"name": "a",}</tool_call>`}},
		{"hermes only white space outside", Hermes, " \n<tool_call>{\"name\": \"a\"}</tool_call>\n\n", Result{Calls: []Call{{Name: "a", Arguments: "{}"}}}},
		// Llama 3.1's JSON.
		{"llama plain answer", Llama3JSON, "The weather is fine.", Result{Content: "The weather is fine."}},
		{"llama one call", Llama3JSON, `{"name": "get_weather", "parameters": {"city": "Paris", "unit": "celsius"}}`, Result{Calls: []Call{weather}}},
		{"llama python tag and space", Llama3JSON, "\n<|python_tag|>{\"name\": \"a\", \"parameters\": {}}\n", Result{Calls: []Call{{Name: "a", Arguments: "{}"}}}},
		{"llama several calls", Llama3JSON, `{"name": "a", "parameters": {"s": "x;y}"}}; {"name": "b", "arguments": {"n": 2}};`,
			Result{Calls: []Call{{Name: "a", Arguments: `{"s":"x;y}"}`}, {Name: "b", Arguments: `{"n":2}`}}}},
		{"llama text after", Llama3JSON, `{"name": "a", "parameters": {}} Done.`, Result{Content: `{"name": "a", "parameters": {}} Done.`}},
		{"llama text before", Llama3JSON, `Sure: {"name": "a", "parameters": {}}`, Result{Content: `Sure: {"name": "a", "parameters": {}}`}},
		{"llama JSON without name", Llama3JSON, `{"city": "Paris"}`, Result{Content: `{"city": "Paris"}`}},
		{"llama unclosed", Llama3JSON, `{"name": "a", "parameters": {"x": 1}`, Result{Content: `{"name": "a", "parameters": {"x": 1}`}},
		{"llama only the tag", Llama3JSON, "<|python_tag|>", Result{Content: "<|python_tag|>"}},
		{"empty", Hermes, "", Result{}},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := c.syntax.Parse(c.text)
			if !reflect.DeepEqual(c.want, got) {
				t.Errorf("Parse(%q) = %+v, want %+v", c.text, got, c.want)
			}
		})
	}
}

func TestParseSyntax(t *testing.T) {
	for name, want := range Names {
		if s, err := ParseSyntax(name); err != nil || s != want || s.String() != name {
			t.Errorf("ParseSyntax(%q) = %v (%s), %v; want %v", name, s, s, err, want)
		}
	}
	if _, err := ParseSyntax("mistral"); !errors.Is(err, ErrUnknownSyntax) {
		t.Errorf("ParseSyntax(mistral) = %v, want ErrUnknownSyntax", err)
	}
}

// FuzzParse: a reply is untrusted text. Parsing it never panics; calls have a name
// and arguments that are a JSON object; a reply without calls is its own content;
// and streaming it, cut into pieces at places drawn from seed, passes on exactly what
// parsing it whole gives, or says that it broke where the stream could not (see
// checkStream).
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"plain", "<tool_call>\n{\"name\": \"a\", \"arguments\": {\"b\": \"}\"}}\n</tool_call>", "x<tool_call>{\"name\":\"a\"}</tool_call> y <tool_call>{\"name\":\"b\"}",
		"<tool_call>{\"name\": \"a\", \"arguments\": {", "<tool_call><tool_call>", "<tool_", "{\"name\": \"a\", \"parameters\": {}}; {\"name\": \"b\"}",
		"<|python_tag|>{\"name\": \"a\"}", "<|python", " \n", "{\"name\": \"\\ud800\", \"parameters\": {\"a\": 1e999}}", "{\"name\": \"a\", \"name\": 1}",
		"<tool_call>{\"arguments\": {\"x\": [1, 2.5e-3, true, null]}, \"name\": \"f\"}</tool_call> é\u00a0", "{\"name\": \"é\", \"parameters\": \"{\\\"a\\\": 1}\"} ; ",
		"A \u3000<tool_call>{\"name\": \"a\"}</tool_call> B \n<tool_call> {\"name\": \"b\", \"arguments\": {\"k\": \"\\u00e9\"}} \n</tool_call>\u00a0",
	} {
		f.Add(s, uint8(1), true)
		f.Add(s, uint8(4), false)
	}
	f.Fuzz(func(t *testing.T, text string, seed uint8, hermes bool) {
		s := Llama3JSON
		if hermes {
			s = Hermes
		}
		r := s.Parse(text)
		if len(r.Calls) == 0 && r.Content != text {
			t.Fatalf("Parse(%q) = %+v: no calls, content not the text", text, r)
		}
		for _, c := range r.Calls {
			if c.Name == "" || !json.Valid([]byte(c.Arguments)) || !strings.HasPrefix(c.Arguments, "{") {
				t.Fatalf("Parse(%q): call %+v", text, c)
			}
		}
		checkStream(t, s, text, randomCuts(text, uint64(seed)))
	})
}
