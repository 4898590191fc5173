package chat

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/specd-dev/specd/internal/testmodels"
)

// TestToolCallsMatchJinja2: conversations with tool calls and tool results, rendered
// with Qwen2.5-Instruct's template (assistant tool_calls, their function's name and
// arguments as an object) and with one in Mistral's and Llama 3.1's style (a call's
// id and type, a result's tool_call_id and name, and raise_exception when a result
// names no call), give the text Jinja2 gives as vLLM renders them
// (testdata/tool_render.py wrote testdata/tool_cases.jsonl): the arguments parsed
// from their JSON text — nested objects in their order, integers, floats as Python
// prints them, true, null, a bare string — and name and tool_call_id defined only on
// the messages that set them.
func TestToolCallsMatchJinja2(t *testing.T) {
	paths := map[string]string{
		"qwen2.5": filepath.Join(testmodels.VocabDir(t), "chat", "qwen2.5-chat-template.jinja"),
		"pairs":   filepath.Join("testdata", "tool_templates", "pairs.jinja"),
	}
	templates := parseTemplates(t, paths)
	cases := readCases(t, "tool_cases.jsonl")
	if len(cases) != 12 {
		t.Fatalf("%d cases, want the 12 of the file", len(cases))
	}
	for _, c := range cases {
		t.Run(c.name(), func(t *testing.T) {
			checkRender(t, templates[c.Template], c.Messages, Options{AddGenerationPrompt: c.AddGenerationPrompt, BOS: "<s>", EOS: "</s>"}, c.Text, c.Error)
		})
	}
}

// TestArgumentsNotJSON: a call whose arguments are not JSON fails the rendering with
// ErrArguments, naming the call, rather than reaching the template as text.
func TestArgumentsNotJSON(t *testing.T) {
	tmpl, err := Parse("{% for m in messages %}{{ m.tool_calls[0].function.arguments | tojson }}{% endfor %}")
	if err != nil {
		t.Fatal(err)
	}
	for _, args := range []string{"", "{", `{"a": 1} x`, "nul", `{"a": 01}`} {
		_, err := tmpl.Render(t.Context(), []Message{{Role: "assistant", ToolCalls: []ToolCall{{ID: "c", Function: FunctionCall{Name: "f", Arguments: args}}}}}, Options{})
		if !errors.Is(err, ErrArguments) {
			t.Errorf("arguments %q: Render = %v, want ErrArguments", args, err)
		}
	}
}

// FuzzArguments: a call's arguments are untrusted text. Parsing them never panics,
// accepts only what encoding/json accepts as one value, and accepts all of that
// short of nesting deeper than Python's recursion limit would allow.
func FuzzArguments(f *testing.F) {
	for _, s := range []string{`{"city": "Paris"}`, `{"a":1,"b":[2.5,true,null,-3e2],"c":{"d":"é\"x"}}`, `"s"`, `[]`, `1e999`,
		`-0`, `{"a":1,"a":2}`, `{`, `nul`, "", ` {} `, `{"a": 01}`, `[[[[[[[[[[]]]]]]]]]]`, "\"\\ud800\""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		err := CheckArguments(s)
		valid := json.Valid([]byte(s))
		if err == nil && !valid {
			t.Fatalf("CheckArguments(%q) accepted what encoding/json refuses", s)
		}
		if err != nil && valid && !errors.Is(err, ErrArguments) {
			t.Fatalf("CheckArguments(%q) = %v, not wrapping ErrArguments", s, err)
		}
		if err != nil && valid && strings.Count(s, "[")+strings.Count(s, "{") <= maxArgsDepth {
			t.Fatalf("CheckArguments(%q) = %v for valid JSON", s, err)
		}
	})
}

// parseTemplates reads and parses the templates at paths, by name.
func parseTemplates(t *testing.T, paths map[string]string) map[string]*Template {
	t.Helper()
	templates := map[string]*Template{}
	for name, p := range paths {
		src, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if templates[name], err = Parse(string(src)); err != nil {
			t.Fatalf("Parse(%s) = %v", p, err)
		}
	}
	return templates
}
