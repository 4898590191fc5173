package chat

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/specd-dev/specd/internal/testmodels"
)

// TestToolsMatchJinja2: a request's tools reach the template as vLLM passes them —
// type, and the function's name, description and parameters, None when unset, the
// parameters parsed in their order with integers and floats as Python reads them — so
// Qwen2.5-Instruct's template (tools in the system turn, each with tojson) and one in
// Llama 3.1's style (tojson with indent in the first user turn) give the text Jinja2
// gives (testdata/tools_render.py wrote testdata/tools_cases.jsonl).
func TestToolsMatchJinja2(t *testing.T) {
	paths := map[string]string{
		"qwen2.5": filepath.Join(testmodels.VocabDir(t), "chat", "qwen2.5-chat-template.jinja"),
		"llama31": filepath.Join("testdata", "tool_templates", "llama31.jinja"),
	}
	templates := parseTemplates(t, paths)
	cases := readCases(t, "tools_cases.jsonl")
	if len(cases) != 6 {
		t.Fatalf("%d cases, want the 6 of the file", len(cases))
	}
	for _, c := range cases {
		if len(c.Tools) == 0 {
			t.Fatalf("case %s has no tools", c.name())
		}
		t.Run(c.name(), func(t *testing.T) {
			var tools []Tool
			for _, d := range c.Tools {
				tools = append(tools, Tool{Function: d})
			}
			if err := CheckTools(tools); err != nil {
				t.Fatalf("CheckTools = %v", err)
			}
			checkRender(t, templates[c.Template], c.Messages, Options{AddGenerationPrompt: c.AddGenerationPrompt, BOS: "<s>", EOS: "</s>", Tools: tools}, c.Text, c.Error)
		})
	}
}

// TestCheckTools: each bad tool is refused naming its field.
func TestCheckTools(t *testing.T) {
	ok := FunctionDefinition{Name: "get_weather", Parameters: `{"type":"object","properties":{"city":{"type":"string"},"days":{"type":["integer","null"]},"tags":{"type":"array","items":{"type":"string"}}}}`}
	many := make([]Tool, MaxTools+1)
	for i := range many {
		many[i] = Tool{Function: FunctionDefinition{Name: "f" + strings.Repeat("x", i%60) + string(rune('a'+i%26)) + string(rune('a'+i/26))}}
	}
	for _, c := range []struct {
		name  string
		tools []Tool
		field string // "": valid
	}{
		{"good", []Tool{{Function: ok}, {Type: "function", Function: FunctionDefinition{Name: "now-2_x"}}}, ""},
		{"no tools", nil, ""},
		{"type", []Tool{{Type: "retrieval", Function: ok}}, "tools[0].type"},
		{"no name", []Tool{{Function: ok}, {Function: FunctionDefinition{}}}, "tools[1].function.name"},
		{"name characters", []Tool{{Function: FunctionDefinition{Name: "get weather"}}}, "tools[0].function.name"},
		{"name too long", []Tool{{Function: FunctionDefinition{Name: strings.Repeat("a", 65)}}}, "tools[0].function.name"},
		{"duplicate", []Tool{{Function: ok}, {Function: FunctionDefinition{Name: "get_weather"}}}, "tools[1].function.name"},
		{"not JSON", []Tool{{Function: FunctionDefinition{Name: "f", Parameters: `{"type":`}}}, "tools[0].function.parameters"},
		{"not an object", []Tool{{Function: FunctionDefinition{Name: "f", Parameters: `[1]`}}}, "tools[0].function.parameters"},
		{"top type", []Tool{{Function: FunctionDefinition{Name: "f", Parameters: `{"type":"string"}`}}}, "tools[0].function.parameters.type"},
		{"property type", []Tool{{Function: FunctionDefinition{Name: "f", Parameters: `{"type":"object","properties":{"a":{"type":"str"}}}`}}}, "tools[0].function.parameters.properties.a.type"},
		{"items type", []Tool{{Function: FunctionDefinition{Name: "f", Parameters: `{"properties":{"a":{"type":"array","items":{"type":7}}}}`}}}, "tools[0].function.parameters.properties.a.items.type"},
		{"anyOf type", []Tool{{Function: FunctionDefinition{Name: "f", Parameters: `{"properties":{"a":{"anyOf":[{"type":"string"},{"type":["int"]}]}}}`}}}, "tools[0].function.parameters.properties.a.anyOf[1].type"},
		{"prefixItems type", []Tool{{Function: FunctionDefinition{Name: "f", Parameters: `{"properties":{"a":{"prefixItems":[{"type":"string"},{"type":"int"}]}}}`}}}, "tools[0].function.parameters.properties.a.prefixItems[1].type"},
		{"empty type list", []Tool{{Function: FunctionDefinition{Name: "f", Parameters: `{"properties":{"a":{"type":[]}}}`}}}, "tools[0].function.parameters.properties.a.type"},
		{"properties not an object", []Tool{{Function: FunctionDefinition{Name: "f", Parameters: `{"properties":[]}`}}}, "tools[0].function.parameters.properties"},
		{"too many", many, "tools"},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := CheckTools(c.tools)
			var fe *FieldError
			switch {
			case c.field == "" && err != nil:
				t.Errorf("CheckTools = %v, want nil", err)
			case c.field != "" && !errors.As(err, &fe):
				t.Errorf("CheckTools = %v, want a *FieldError for %s", err, c.field)
			case c.field != "" && "tools"+fe.Field != c.field:
				t.Errorf("CheckTools = %v, field %q, want %q", err, "tools"+fe.Field, c.field)
			}
		})
	}
}

// TestToolsNone: without tools the template sees None, so "if tools" and "tools is
// none" both take the toolless branch.
func TestToolsNone(t *testing.T) {
	tmpl, err := Parse("{% if tools is none %}none{% endif %}{% if tools %}some{{ tools | length }}{% endif %}")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		tools []Tool
		want  string
	}{{nil, "none"}, {[]Tool{{Function: FunctionDefinition{Name: "a"}}, {Function: FunctionDefinition{Name: "b"}}}, "some2"}} {
		got, err := tmpl.Render(t.Context(), []Message{{Role: "user"}}, Options{Tools: c.tools})
		if err != nil || got != c.want {
			t.Errorf("Render(%d tools) = %q, %v; want %q", len(c.tools), got, err, c.want)
		}
	}
}
