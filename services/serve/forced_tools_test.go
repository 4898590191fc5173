package serve_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/specd-dev/specd/chat"
	"github.com/specd-dev/specd/toolcall"
)

// TestForcedToolCall: tool_choice naming a function, and "required", make the real
// model's reply one call in the parser's syntax (Hermes's and Llama 3.1's) — the front door answers it as tool_calls
// (finish_reason tool_calls), the call's name the named tool (one of the tools for
// "required") and its arguments a JSON object valid against the tool's parameters (`{}`
// for a tool without parameters, as vLLM constrains it) — streamed and not, the
// streamed call the same as the whole.
func TestForcedToolCall(t *testing.T) {
	// A short template: the shared model's context is 512 tokens, and Qwen2.5's tool
	// preamble alone takes 400 of them.
	tmpl, err := chat.Parse(`{% for m in messages %}{{ m.content }}{% endfor %}` +
		`{% if tools %} Tools: {% for t in tools %}{{ t.function.name }} {% endfor %}{% endif %}`)
	if err != nil {
		t.Fatal(err)
	}
	for _, syntax := range []toolcall.Syntax{toolcall.Hermes, toolcall.Llama3JSON} {
		s := startStackWith(t, stackOptions{http: true, tools: syntax, chat: tmpl})
		forcedCalls(t, s, syntax)
	}
}

func forcedCalls(t *testing.T, s *stack, syntax toolcall.Syntax) {
	tools := []any{
		map[string]any{"type": "function", "function": map[string]any{"name": "get_weather", "description": "The weather in a city.",
			"parameters": map[string]any{"type": "object", "properties": map[string]any{"city": map[string]any{"type": "string"}}, "required": []string{"city"}}}},
		map[string]any{"type": "function", "function": map[string]any{"name": "add", "description": "Add two numbers.",
			"parameters": map[string]any{"type": "object", "properties": map[string]any{"a": map[string]any{"type": "integer"}, "b": map[string]any{"type": "integer"}},
				"required": []string{"a", "b"}, "additionalProperties": false}}},
		// No parameters: an empty parameter list, as OpenAI's API reads it.
		map[string]any{"type": "function", "function": map[string]any{"name": "now", "description": "The time."}},
	}
	msgs := []any{map[string]any{"role": "user", "content": "What is the weather in Paris? Once upon a time"}}
	for _, c := range []struct {
		name   string
		choice any
		names  []string // the calls allowed
	}{
		{"named", map[string]any{"type": "function", "function": map[string]any{"name": "add"}}, []string{"add"}},
		{"named weather", map[string]any{"type": "function", "function": map[string]any{"name": "get_weather"}}, []string{"get_weather"}},
		{"named without parameters", map[string]any{"type": "function", "function": map[string]any{"name": "now"}}, []string{"now"}},
		{"required", "required", []string{"get_weather", "add", "now"}},
	} {
		var whole string
		for _, stream := range []bool{false, true} {
			body, _ := json.Marshal(map[string]any{"model": "specd-target", "messages": msgs, "tools": tools, "tool_choice": c.choice,
				"max_tokens": 160, "temperature": 0, "stream": stream})
			res, err := http.Post(s.http+"/chat/completions", "application/json", bytes.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			name, args, finish := readToolCall(t, res, stream)
			what := fmt.Sprintf("%v %s", syntax, c.name)
			if stream {
				what += ", streamed"
			}
			if finish != "tool_calls" {
				t.Fatalf("%s: finish_reason %q, want tool_calls", what, finish)
			}
			if !strings.Contains(strings.Join(c.names, " "), name) || name == "" {
				t.Errorf("%s: called %q, want one of %v", what, name, c.names)
			}
			var a map[string]any
			if err := json.Unmarshal([]byte(args), &a); err != nil {
				t.Fatalf("%s: arguments %q: %v", what, args, err)
			}
			switch name {
			case "add":
				if x, ok := a["a"].(float64); !ok || x != float64(int64(x)) || len(a) != 2 {
					t.Errorf("%s: add(%s): want integers a and b alone", what, args)
				}
			case "get_weather":
				if _, ok := a["city"].(string); !ok {
					t.Errorf("%s: get_weather(%s): want a city", what, args)
				}
			case "now":
				if len(a) != 0 {
					t.Errorf("%s: now(%s): want no arguments, {}", what, args)
				}
			}
			t.Logf("%s: %s(%s)", what, name, args)
			if stream && name+args != whole {
				t.Errorf("%s: %s(%s), want the unstreamed call %s", what, name, args, whole)
			}
			whole = name + args
		}
	}
	if syntax == toolcall.Hermes {
		cutInClosingTag(t, s, msgs, tools)
		tooBig(t, s, msgs)
	}
}

// tooBig: a forced call whose tools' parameters make a schema over the limit is a 400
// naming tools and saying it is the forced call's schema — not response_format,
// which the client did not send.
func tooBig(t *testing.T, s *stack, msgs []any) {
	long := map[string]any{"type": "function", "function": map[string]any{"name": "f", "parameters": map[string]any{"type": "object",
		"properties": map[string]any{"a": map[string]any{"type": "string", "description": strings.Repeat("y", 70_000)}}}}}
	body, _ := json.Marshal(map[string]any{"model": "specd-target", "messages": msgs, "tools": []any{long}, "tool_choice": "required", "max_tokens": 8})
	res, err := http.Post(s.http+"/chat/completions", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var out struct {
		Error struct {
			Message string `json:"message"`
			Param   string `json:"param"`
		} `json:"error"`
	}
	if err := json.NewDecoder(res.Body).Decode(&out); err != nil {
		t.Fatal(err)
	}
	if res.StatusCode != http.StatusBadRequest || out.Error.Param != "tools" || !strings.Contains(out.Error.Message, "tool_choice") {
		t.Errorf("a forced call over 70 kB of parameters: %s, param %q: %s; want a 400 naming tools and the forced call", res.Status, out.Error.Param, out.Error.Message)
	}
}

// cutInClosingTag: a forced Hermes call whose reply max_tokens cuts after the call's
// JSON, in the closing </tool_call> the grammar appends, is still the call (finish
// tool_calls), streamed and not, as a block left unclosed is.
func cutInClosingTag(t *testing.T, s *stack, msgs, tools []any) {
	choice := map[string]any{"type": "function", "function": map[string]any{"name": "get_weather"}}
	ask := func(maxTokens int, stream bool) *http.Response {
		body, _ := json.Marshal(map[string]any{"model": "specd-target", "messages": msgs, "tools": tools, "tool_choice": choice,
			"max_tokens": maxTokens, "temperature": 0, "stream": stream})
		res, err := http.Post(s.http+"/chat/completions", "application/json", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	// The tokens of the whole reply, the last of which hold the closing tag.
	res := ask(160, false)
	var out struct {
		Usage struct {
			CompletionTokens int `json:"completion_tokens"`
		} `json:"usage"`
	}
	err := json.NewDecoder(res.Body).Decode(&out)
	res.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	n := out.Usage.CompletionTokens
	for cut := n - 3; cut < n; cut++ {
		for _, stream := range []bool{false, true} {
			name, args, finish := readToolCall(t, ask(cut, stream), stream)
			if finish != "tool_calls" || name != "get_weather" {
				t.Errorf("max_tokens %d of %d (stream %v): %s(%s), finish %s; want the call, finish tool_calls", cut, n, stream, name, args, finish)
			}
		}
	}
}

// readToolCall reads a chat response's (or stream's) only tool call and finish reason.
func readToolCall(t *testing.T, res *http.Response, stream bool) (name, args, finish string) {
	t.Helper()
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		var b bytes.Buffer
		b.ReadFrom(res.Body)
		t.Fatalf("%s: %s", res.Status, b.String())
	}
	type call struct {
		Index    int `json:"index"`
		Function struct {
			Name      string `json:"name"`
			Arguments string `json:"arguments"`
		} `json:"function"`
	}
	if !stream {
		var out struct {
			Choices []struct {
				Message struct {
					Content   *string `json:"content"`
					ToolCalls []call  `json:"tool_calls"`
				} `json:"message"`
				FinishReason string `json:"finish_reason"`
			} `json:"choices"`
		}
		if err := json.NewDecoder(res.Body).Decode(&out); err != nil {
			t.Fatal(err)
		}
		ch := out.Choices[0]
		if len(ch.Message.ToolCalls) != 1 {
			content := ""
			if ch.Message.Content != nil {
				content = *ch.Message.Content
			}
			t.Fatalf("%d tool calls, want 1 (finish %s): %q", len(ch.Message.ToolCalls), ch.FinishReason, content)
		}
		return ch.Message.ToolCalls[0].Function.Name, ch.Message.ToolCalls[0].Function.Arguments, ch.FinishReason
	}
	var b bytes.Buffer
	b.ReadFrom(res.Body)
	for _, line := range strings.Split(b.String(), "\n") {
		data, ok := strings.CutPrefix(line, "data: ")
		if !ok || data == "[DONE]" {
			continue
		}
		var chunk struct {
			Choices []struct {
				Delta struct {
					ToolCalls []call `json:"tool_calls"`
				} `json:"delta"`
				FinishReason *string `json:"finish_reason"`
			} `json:"choices"`
		}
		if err := json.Unmarshal([]byte(data), &chunk); err != nil {
			t.Fatalf("chunk %q: %v", data, err)
		}
		for _, ch := range chunk.Choices {
			for _, c := range ch.Delta.ToolCalls {
				if c.Index != 0 {
					t.Fatalf("a second tool call (index %d)", c.Index)
				}
				name += c.Function.Name
				args += c.Function.Arguments
			}
			if ch.FinishReason != nil {
				finish = *ch.FinishReason
			}
		}
	}
	return name, args, finish
}
