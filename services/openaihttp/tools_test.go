package openaihttp_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"google.golang.org/protobuf/proto"

	specdv1 "github.com/specd-dev/specd/proto/specd/v1"
	"github.com/specd-dev/specd/services"
	"github.com/specd-dev/specd/services/openaihttp"
	"github.com/specd-dev/specd/toolcall"
)

// weatherTool is a tool as OpenAI's clients send it.
var weatherTool = map[string]any{"type": "function", "function": map[string]any{
	"name": "get_weather", "description": "The weather in a city now.",
	"parameters": map[string]any{"type": "object", "properties": map[string]any{"city": map[string]any{"type": "string"}}, "required": []string{"city"}}}}

// wantTools is weatherTool as the router gets it.
var wantTools = []*specdv1.Tool{{Type: "function", Function: &specdv1.FunctionDefinition{Name: "get_weather", Description: "The weather in a city now.",
	Parameters: `{"properties":{"city":{"type":"string"}},"required":["city"],"type":"object"}`}}}

// replyStub answers every request with text, finishing with the end-of-sequence
// token, in chunks of the given sizes (the rest in one), after checking that the
// request carries the tools the test sent; *got records the request's tools.
func replyStub(t *testing.T, text string, sizes []int, got *[]*specdv1.Tool) *stub {
	return &stub{generate: func(r *specdv1.GenerateRequest, st specdv1.GenerationService_GenerateServer) error {
		*got = r.GetTools()
		rest := text
		for _, n := range append(sizes, len(text)) {
			n = min(n, len(rest))
			if n == 0 {
				continue
			}
			if err := st.Send(&specdv1.GenerateResponse{Event: &specdv1.GenerateResponse_Chunk{Chunk: &specdv1.TokenChunk{TokenIds: []int32{1}, Text: rest[:n]}}}); err != nil {
				return err
			}
			rest = rest[n:]
		}
		return st.Send(&specdv1.GenerateResponse{Event: &specdv1.GenerateResponse_Final{Final: &specdv1.Final{FinishReason: specdv1.FinishReason_FINISH_REASON_EOS,
			Stats: &specdv1.Stats{PromptTokens: 5, CompletionTokens: 9}}}})
	}}
}

// TestToolCallsAnswered: with --tool-call-parser, a chat request's tools reach the
// router, and a reply holding tool calls is answered as OpenAI's API answers one —
// message.tool_calls with ids "call_…", type function and the arguments as JSON text,
// the content the text around them (null when none), finish_reason "tool_calls" —
// and a reply without calls as an ordinary answer; read by OpenAI's own Go client.
func TestToolCallsAnswered(t *testing.T) {
	for _, c := range []struct {
		name    string
		syntax  toolcall.Syntax
		reply   string
		content string // "": null
		calls   []toolcall.Call
		finish  string
	}{
		{"hermes with text", toolcall.Hermes, "Let me check.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>",
			"Let me check.", []toolcall.Call{{Name: "get_weather", Arguments: `{"city":"Paris"}`}}, "tool_calls"},
		{"hermes two calls", toolcall.Hermes, "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Rome\"}}\n</tool_call>",
			"", []toolcall.Call{{Name: "get_weather", Arguments: `{"city":"Paris"}`}, {Name: "get_weather", Arguments: `{"city":"Rome"}`}}, "tool_calls"},
		{"hermes answer", toolcall.Hermes, "It is warm.", "It is warm.", nil, "stop"},
		{"hermes malformed", toolcall.Hermes, "<tool_call>{\"name\": }</tool_call>", "<tool_call>{\"name\": }</tool_call>", nil, "stop"},
		{"llama3_json call", toolcall.Llama3JSON, `{"name": "get_weather", "parameters": {"city": "Paris"}}`,
			"", []toolcall.Call{{Name: "get_weather", Arguments: `{"city":"Paris"}`}}, "tool_calls"},
		{"llama3_json answer", toolcall.Llama3JSON, "It is warm.", "It is warm.", nil, "stop"},
	} {
		t.Run(c.name, func(t *testing.T) {
			var got []*specdv1.Tool
			base := serveStubWith(t, replyStub(t, c.reply, []int{3, 5, 1, 7}, &got), 0, func(h *openaihttp.Handler) { h.SetToolParser(c.syntax) })
			cl := client(base)
			params := openai.ChatCompletionNewParams{Model: "big", Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("How warm is Paris?")}}
			tools := option.WithJSONSet("tools", []any{weatherTool})
			resp, err := cl.Chat.Completions.New(context.Background(), params, tools)
			if err != nil {
				t.Fatal(err)
			}
			checkTools(t, got)
			ch := resp.Choices[0]
			if ch.FinishReason != c.finish {
				t.Errorf("finish_reason = %q, want %q", ch.FinishReason, c.finish)
			}
			if ch.Message.Content != c.content || ch.Message.JSON.Content.Valid() != (c.content != "") {
				t.Errorf("content = %q (present: %v), want %q (null when empty)", ch.Message.Content, ch.Message.JSON.Content.Valid(), c.content)
			}
			checkCalls(t, ch.Message.ToolCalls, c.calls)

			// Streamed, the accumulated message is the same.
			st := cl.Chat.Completions.NewStreaming(context.Background(), params, tools, option.WithJSONSet("stream_options", map[string]any{"include_usage": true}))
			acc, _ := readToolStream(t, st)
			checkTools(t, got)
			sc := acc.Choices[0]
			if sc.FinishReason != c.finish || sc.Message.Content != c.content {
				t.Errorf("streamed: finish_reason %q, content %q; want %q, %q", sc.FinishReason, sc.Message.Content, c.finish, c.content)
			}
			var calls []openai.ChatCompletionMessageToolCallUnion
			for _, tc := range sc.Message.ToolCalls {
				calls = append(calls, tc)
			}
			checkCalls(t, calls, c.calls)
		})
	}
}

// TestParallelToolCallsFalse: parallel_tool_calls false asks the router to end the
// generation after the first call (stop_after_tool_call in the parser's syntax), and
// answers a reply that holds several calls anyway with the first alone (as vLLM
// does), streamed and not; null and true ask for no such end and answer every call.
func TestParallelToolCallsFalse(t *testing.T) {
	reply := "Both.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>\n" +
		"<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Rome\"}}\n</tool_call>"
	paris, rome := toolcall.Call{Name: "get_weather", Arguments: `{"city":"Paris"}`}, toolcall.Call{Name: "get_weather", Arguments: `{"city":"Rome"}`}
	var got []*specdv1.Tool
	var stopAfter []string // each request's stop_after_tool_call
	router := replyStub(t, reply, []int{3, 5, 1, 7}, &got)
	reply1 := router.generate
	router.generate = func(r *specdv1.GenerateRequest, st specdv1.GenerationService_GenerateServer) error {
		stopAfter = append(stopAfter, r.GetStopAfterToolCall())
		return reply1(r, st)
	}
	base := serveStubWith(t, router, 0, func(h *openaihttp.Handler) { h.SetToolParser(toolcall.Hermes) })
	cl := client(base)
	params := openai.ChatCompletionNewParams{Model: "big", Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("How warm are Paris and Rome?")}}
	for _, c := range []struct {
		name      string
		parallel  any // nil: not sent
		want      []toolcall.Call
		stopAfter string // the router is asked to end after the first call in this syntax
	}{
		{"not sent", nil, []toolcall.Call{paris, rome}, ""},
		{"true", true, []toolcall.Call{paris, rome}, ""},
		{"false", false, []toolcall.Call{paris}, "hermes"},
	} {
		t.Run(c.name, func(t *testing.T) {
			stopAfter = nil
			opts := []option.RequestOption{option.WithJSONSet("tools", []any{weatherTool})}
			if c.parallel != nil {
				opts = append(opts, option.WithJSONSet("parallel_tool_calls", c.parallel))
			}
			resp, err := cl.Chat.Completions.New(context.Background(), params, opts...)
			if err != nil {
				t.Fatal(err)
			}
			ch := resp.Choices[0]
			if ch.FinishReason != "tool_calls" || ch.Message.Content != "Both." {
				t.Errorf("finish_reason %q, content %q; want tool_calls, Both.", ch.FinishReason, ch.Message.Content)
			}
			checkCalls(t, ch.Message.ToolCalls, c.want)
			acc, _ := readToolStream(t, cl.Chat.Completions.NewStreaming(context.Background(), params, opts...))
			sc := acc.Choices[0]
			if sc.FinishReason != "tool_calls" || sc.Message.Content != "Both." {
				t.Errorf("streamed: finish_reason %q, content %q; want tool_calls, Both.", sc.FinishReason, sc.Message.Content)
			}
			var calls []openai.ChatCompletionMessageToolCallUnion
			for _, tc := range sc.Message.ToolCalls {
				calls = append(calls, tc)
			}
			checkCalls(t, calls, c.want)
			if want := []string{c.stopAfter, c.stopAfter}; !slices.Equal(stopAfter, want) {
				t.Errorf("stop_after_tool_call = %q, want %q", stopAfter, want)
			}
		})
	}
}

// checkTools: the router got weatherTool.
func checkTools(t *testing.T, got []*specdv1.Tool) {
	t.Helper()
	if len(got) != len(wantTools) || !proto.Equal(got[0], wantTools[0]) {
		t.Errorf("the router got tools %v, want %v", got, wantTools)
	}
}

// checkCalls compares a reply's tool calls with the calls expected, and checks their
// ids and type.
func checkCalls(t *testing.T, got []openai.ChatCompletionMessageToolCallUnion, want []toolcall.Call) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%d tool calls, want %d", len(got), len(want))
	}
	ids := map[string]bool{}
	for i, tc := range got {
		if !strings.HasPrefix(tc.ID, "call_") || ids[tc.ID] || tc.Type != "function" {
			t.Errorf("call %d: id %q, type %q; want a fresh call_ id, type function", i, tc.ID, tc.Type)
		}
		ids[tc.ID] = true
		if tc.Function.Name != want[i].Name || tc.Function.Arguments != want[i].Arguments {
			t.Errorf("call %d = %s(%s), want %s(%s)", i, tc.Function.Name, tc.Function.Arguments, want[i].Name, want[i].Arguments)
		}
	}
}

// TestToolsRefused: tools a server cannot honour are a 400 naming the parameter —
// without a tool call parser, a named function that is not a tool, a forced call with
// a response format or parameters the grammar cannot take, a tool of another type,
// and what the router finds wrong with a tool (its field's path kept in the message);
// tool_choice "none" takes tools away, with or without a parser; "required" and a
// named function reach the router as a response format of one call in the parser's
// syntax.
func TestToolsRefused(t *testing.T) {
	var got []*specdv1.Tool
	var gotFormat *specdv1.ResponseFormat
	router := &stub{complete: func(_ context.Context, r *specdv1.GenerateRequest) (*specdv1.CompleteResponse, error) {
		got, gotFormat = r.GetTools(), r.GetResponseFormat()
		if _, err := services.ParseRequest(r); err != nil {
			return nil, services.Status(err)
		}
		return &specdv1.CompleteResponse{Text: "<tool_call>{\"name\": \"get_weather\"}</tool_call>", FinishReason: specdv1.FinishReason_FINISH_REASON_EOS}, nil
	}}
	plain := serveStub(t, router, 0)
	hermes := serveStubWith(t, router, 0, func(h *openaihttp.Handler) { h.SetToolParser(toolcall.Hermes) })
	tool := func(name string) map[string]any {
		return map[string]any{"type": "function", "function": map[string]any{"name": name}}
	}
	for _, c := range []struct {
		name   string
		base   string
		extra  map[string]any
		param  string // "": 200
		inMsg  string
		called bool // the reply is answered as a tool call
	}{
		{"no parser", plain, map[string]any{"tools": []any{weatherTool}}, "tools", "--tool-call-parser", false},
		{"no parser, tool_choice none", plain, map[string]any{"tools": []any{weatherTool}, "tool_choice": "none"}, "", "", false},
		{"tool_choice none", hermes, map[string]any{"tools": []any{weatherTool}, "tool_choice": "none"}, "", "", false},
		{"tool_choice auto", hermes, map[string]any{"tools": []any{weatherTool}, "tool_choice": "auto"}, "", "", true},
		{"tool_choice required", hermes, map[string]any{"tools": []any{weatherTool, tool("other")}, "tool_choice": "required"}, "", "", true},
		{"named function", hermes, map[string]any{"tools": []any{weatherTool, tool("other")}, "tool_choice": map[string]any{"type": "function", "function": map[string]any{"name": "get_weather"}}}, "", "", true},
		{"named function not among the tools", hermes, map[string]any{"tools": []any{weatherTool}, "tool_choice": map[string]any{"type": "function", "function": map[string]any{"name": "f"}}}, "tool_choice", "not among the tools", false},
		{"tool_choice unknown", hermes, map[string]any{"tools": []any{weatherTool}, "tool_choice": "always"}, "tool_choice", "always", false},
		{"tool_choice malformed", hermes, map[string]any{"tools": []any{weatherTool}, "tool_choice": map[string]any{"type": "function"}}, "tool_choice", "named function", false},
		{"required and response_format", hermes, map[string]any{"tools": []any{weatherTool}, "tool_choice": "required", "response_format": map[string]any{"type": "json_object"}}, "response_format", "forces a tool call", false},
		{"required, parameters outside the subset", hermes, map[string]any{"tool_choice": "required", "tools": []any{map[string]any{"type": "function", "function": map[string]any{"name": "f",
			"parameters": map[string]any{"type": "object", "properties": map[string]any{"x": map[string]any{"type": "string", "pattern": "(?=a)"}}}}}}}, "tools", "look-arounds", false},
		{"tool_choice without tools", hermes, map[string]any{"tool_choice": "auto"}, "tool_choice", "without tools", false},
		{"tool type", hermes, map[string]any{"tools": []any{map[string]any{"type": "retrieval", "function": map[string]any{"name": "f"}}}}, "tools", "retrieval", false},
		{"duplicate names", hermes, map[string]any{"tools": []any{weatherTool, tool("get_weather")}}, "tools", "tools[1].function.name", false},
		{"missing name", hermes, map[string]any{"tools": []any{tool("")}}, "tools", "tools[0].function.name", false},
		{"bad schema type", hermes, map[string]any{"tools": []any{map[string]any{"type": "function", "function": map[string]any{"name": "f",
			"parameters": map[string]any{"type": "object", "properties": map[string]any{"x": map[string]any{"type": "float"}}}}}}}, "tools", "tools[0].function.parameters.properties.x.type", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			got = nil
			req := map[string]any{"model": "big", "messages": []any{map[string]any{"role": "user", "content": "Hi"}}}
			for k, v := range c.extra {
				req[k] = v
			}
			body, _ := json.Marshal(req)
			res, err := http.Post(c.base+"/chat/completions", "application/json", bytes.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			defer res.Body.Close()
			var out struct {
				Error struct {
					Message string
					Param   string
				}
				Choices []struct {
					FinishReason string `json:"finish_reason"`
				}
			}
			if err := json.NewDecoder(res.Body).Decode(&out); err != nil {
				t.Fatal(err)
			}
			if c.param != "" {
				if res.StatusCode != http.StatusBadRequest || out.Error.Param != c.param || !strings.Contains(out.Error.Message, c.inMsg) {
					t.Errorf("%s, param %q, %q; want 400 naming %s, saying %q", res.Status, out.Error.Param, out.Error.Message, c.param, c.inMsg)
				}
				return
			}
			if res.StatusCode != http.StatusOK {
				t.Fatalf("%s: %s", res.Status, out.Error.Message)
			}
			if wantFinish := map[bool]string{true: "tool_calls", false: "stop"}[c.called]; out.Choices[0].FinishReason != wantFinish {
				t.Errorf("finish_reason %q, want %q", out.Choices[0].FinishReason, wantFinish)
			}
			if (len(got) > 0) != c.called {
				t.Errorf("the router got %d tools; want them only when the model may call them", len(got))
			}
			forced := c.extra["tool_choice"] != nil && c.extra["tool_choice"] != "auto" && c.extra["tool_choice"] != "none"
			if forced {
				// One Hermes call of the named tool (of either tool when required).
				f, err := services.FormatFromProto(gotFormat)
				if err != nil || gotFormat.GetPrefix() != "<tool_call>\n" || gotFormat.GetSuffix() != "\n</tool_call>" {
					t.Fatalf("forced call: format %v (%v); want a JSON schema in <tool_call> tags", gotFormat, err)
				}
				for _, call := range []struct {
					text string
					ok   bool
				}{
					{`{"name": "get_weather", "arguments": {"city": "Paris"}}`, true},
					{`{"arguments": {}, "name": "other"}`, c.extra["tool_choice"] == "required"},
					{`{"name": "get_weather"}`, false},
					{`{"name": "f", "arguments": {}}`, false},
				} {
					_, whole := f.Check([]byte("<tool_call>\n" + call.text + "\n</tool_call>"))
					if whole != call.ok {
						t.Errorf("forced call: %s whole %v, want %v", call.text, whole, call.ok)
					}
				}
			} else if gotFormat != nil {
				t.Errorf("the router got a response format %v without a forced call", gotFormat)
			}
		})
	}
}

// TestAllowedTools: tool_choice allowed_tools (OpenAI's newer form) gives the model
// only the tools it lists, by name; mode "auto" lets it answer, "required" forces a
// call of one of them. A listed name that is not a tool, another mode and an empty
// list are 400s naming tool_choice.
func TestAllowedTools(t *testing.T) {
	var got []*specdv1.Tool
	var gotFormat *specdv1.ResponseFormat
	router := &stub{complete: func(_ context.Context, r *specdv1.GenerateRequest) (*specdv1.CompleteResponse, error) {
		got, gotFormat = r.GetTools(), r.GetResponseFormat()
		if _, err := services.ParseRequest(r); err != nil {
			return nil, services.Status(err)
		}
		return &specdv1.CompleteResponse{Text: "<tool_call>{\"name\": \"get_weather\"}</tool_call>", FinishReason: specdv1.FinishReason_FINISH_REASON_EOS}, nil
	}}
	base := serveStubWith(t, router, 0, func(h *openaihttp.Handler) { h.SetToolParser(toolcall.Hermes) })
	fn := func(name string) map[string]any {
		return map[string]any{"type": "function", "function": map[string]any{"name": name}}
	}
	allowed := func(mode string, names ...string) map[string]any {
		list := []any{}
		for _, n := range names {
			list = append(list, fn(n))
		}
		return map[string]any{"type": "allowed_tools", "allowed_tools": map[string]any{"mode": mode, "tools": list}}
	}
	tools := []any{weatherTool, fn("other"), fn("third")}
	for _, c := range []struct {
		name   string
		choice map[string]any
		param  string   // "": 200
		inMsg  string   // with param
		given  []string // the tools the router gets
		forced []string // the calls a forced format takes; nil: no format
	}{
		{"auto, one", allowed("auto", "other"), "", "", []string{"other"}, nil},
		{"auto, two", allowed("auto", "third", "get_weather"), "", "", []string{"get_weather", "third"}, nil},
		{"required, two", allowed("required", "get_weather", "third"), "", "", []string{"get_weather", "third"}, []string{"get_weather", "third"}},
		{"not a tool", allowed("auto", "other", "f"), "tool_choice", `"f" is not among the tools`, nil, nil},
		{"mode none", allowed("none", "other"), "tool_choice", `mode "none"`, nil, nil},
		{"no tools", allowed("auto"), "tool_choice", "no tools", nil, nil},
		{"no name", allowed("auto", ""), "tool_choice", "tool 0", nil, nil},
		// A name listed twice in tools reaches the router twice, which refuses it.
		{"allowed tool twice among the tools", allowed("auto", "other"), "tools", "tools[2].function.name", nil, nil},
		// What the router finds wrong with an allowed tool names it by the client's index.
		{"allowed tool with a bad schema", allowed("auto", "third", "bad"), "tools", "tools[3].function.parameters.properties.x.type", nil, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, gotFormat = nil, nil
			body, _ := json.Marshal(map[string]any{"model": "big", "messages": []any{map[string]any{"role": "user", "content": "Hi"}},
				"tools": tools, "tool_choice": c.choice})
			switch c.name {
			case "allowed tool twice among the tools":
				body, _ = json.Marshal(map[string]any{"model": "big", "messages": []any{map[string]any{"role": "user", "content": "Hi"}},
					"tools": []any{fn("other"), weatherTool, fn("other")}, "tool_choice": c.choice})
			case "allowed tool with a bad schema":
				bad := map[string]any{"type": "function", "function": map[string]any{"name": "bad",
					"parameters": map[string]any{"type": "object", "properties": map[string]any{"x": map[string]any{"type": "float"}}}}}
				body, _ = json.Marshal(map[string]any{"model": "big", "messages": []any{map[string]any{"role": "user", "content": "Hi"}},
					"tools": append(slices.Clone(tools), bad), "tool_choice": c.choice})
			}
			res, err := http.Post(base+"/chat/completions", "application/json", bytes.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			defer res.Body.Close()
			var out struct {
				Error struct{ Message, Param string }
			}
			if err := json.NewDecoder(res.Body).Decode(&out); err != nil {
				t.Fatal(err)
			}
			if c.param != "" {
				if res.StatusCode != http.StatusBadRequest || out.Error.Param != c.param || !strings.Contains(out.Error.Message, c.inMsg) {
					t.Errorf("%s, param %q, %q; want 400 naming %s, saying %q", res.Status, out.Error.Param, out.Error.Message, c.param, c.inMsg)
				}
				return
			}
			if res.StatusCode != http.StatusOK {
				t.Fatalf("%s: %s", res.Status, out.Error.Message)
			}
			var names []string
			for _, tl := range got {
				names = append(names, tl.GetFunction().GetName())
			}
			if !slices.Equal(names, c.given) {
				t.Errorf("the router got tools %v, want %v", names, c.given)
			}
			if c.forced == nil {
				if gotFormat != nil {
					t.Errorf("mode auto: the router got a response format %v", gotFormat)
				}
				return
			}
			f, err := services.FormatFromProto(gotFormat)
			if err != nil {
				t.Fatalf("forced call: format %v (%v)", gotFormat, err)
			}
			for _, call := range []struct{ name, args string }{{"get_weather", `{"city": "Paris"}`}, {"other", "{}"}, {"third", "{}"}} {
				_, whole := f.Check([]byte("<tool_call>\n{\"name\": \"" + call.name + "\", \"arguments\": " + call.args + "}\n</tool_call>"))
				if want := slices.Contains(c.forced, call.name); whole != want {
					t.Errorf("forced call of %s: whole %v, want %v", call.name, whole, want)
				}
			}
		})
	}
}

// piecesStub answers every request with the pieces of text, one chunk each, then a
// final message with finish reason fr.
func piecesStub(pieces []string, fr specdv1.FinishReason) *stub {
	return &stub{generate: func(r *specdv1.GenerateRequest, st specdv1.GenerationService_GenerateServer) error {
		for _, p := range pieces {
			if err := st.Send(&specdv1.GenerateResponse{Event: &specdv1.GenerateResponse_Chunk{Chunk: &specdv1.TokenChunk{TokenIds: []int32{1}, Text: p}}}); err != nil {
				return err
			}
		}
		return st.Send(&specdv1.GenerateResponse{Event: &specdv1.GenerateResponse_Final{Final: &specdv1.Final{FinishReason: fr,
			Stats: &specdv1.Stats{PromptTokens: 5, CompletionTokens: uint32(len(pieces))}}}})
	}}
}

// wireChunk is a chat chunk as it was sent, each field that may be absent a pointer.
type wireChunk struct {
	Choices []struct {
		Delta struct {
			Content   *string `json:"content"`
			ToolCalls []struct {
				Index    int     `json:"index"`
				ID       *string `json:"id"`
				Type     *string `json:"type"`
				Function struct {
					Name      *string `json:"name"`
					Arguments *string `json:"arguments"`
				} `json:"function"`
			} `json:"tool_calls"`
		} `json:"delta"`
		FinishReason *string `json:"finish_reason"`
	} `json:"choices"`
}

// toolDeltas is what the tool call deltas of a stream held, per call index.
type toolDeltas struct {
	args   []int // per call: the deltas that added to its arguments
	finish int   // the chunk that carried the finish reason, counted from 0
	chunks int
}

// readToolStream reads a chat stream of one choice into OpenAI's accumulator,
// checking each chunk as OpenAI's API shapes tool call deltas: the first delta of
// call i (calls counted from 0, in order) has the index, an id "call_…", type
// "function", the name and arguments ""; every later one only the index and a
// non-empty piece of the arguments; nothing after the finish reason but usage. It
// returns the accumulator and what the deltas were, and fails on a stream error.
func readToolStream(t *testing.T, st interface {
	Next() bool
	Current() openai.ChatCompletionChunk
	Err() error
}) (openai.ChatCompletionAccumulator, toolDeltas) {
	t.Helper()
	acc, d, err := readToolStreamErr(t, st)
	if err != nil {
		t.Fatal(err)
	}
	return acc, d
}

// readToolStreamErr is readToolStream, returning the stream's error.
func readToolStreamErr(t *testing.T, st interface {
	Next() bool
	Current() openai.ChatCompletionChunk
	Err() error
}) (openai.ChatCompletionAccumulator, toolDeltas, error) {
	t.Helper()
	var acc openai.ChatCompletionAccumulator
	d := toolDeltas{finish: -1}
	for ; st.Next(); d.chunks++ {
		chunk := st.Current()
		if !acc.AddChunk(chunk) {
			t.Fatalf("the accumulator refused chunk %s", chunk.RawJSON())
		}
		var w wireChunk
		if err := json.Unmarshal([]byte(chunk.RawJSON()), &w); err != nil {
			t.Fatal(err)
		}
		for _, ch := range w.Choices {
			if d.finish >= 0 {
				t.Errorf("chunk %s after the finish reason", chunk.RawJSON())
			}
			if ch.FinishReason != nil {
				d.finish = d.chunks
			}
			for _, tc := range ch.Delta.ToolCalls {
				f := tc.Function
				switch {
				case tc.Index == len(d.args):
					if tc.ID == nil || !strings.HasPrefix(*tc.ID, "call_") || tc.Type == nil || *tc.Type != "function" || f.Name == nil || *f.Name == "" || f.Arguments == nil || *f.Arguments != "" {
						t.Errorf("first delta of call %d in %s: want index, id call_…, type function, the name and arguments \"\"", tc.Index, chunk.RawJSON())
					}
					d.args = append(d.args, 0)
				case tc.Index < len(d.args):
					if tc.ID != nil || tc.Type != nil || f.Name != nil || f.Arguments == nil || *f.Arguments == "" {
						t.Errorf("later delta of call %d in %s: want only the index and a piece of the arguments", tc.Index, chunk.RawJSON())
					}
					d.args[tc.Index]++
				default:
					t.Errorf("delta of call %d in %s before call %d began", tc.Index, chunk.RawJSON(), len(d.args))
				}
			}
		}
	}
	return acc, d, st.Err()
}

// TestToolCallsStreamed: a streamed chat completion sends each call as OpenAI's API
// and vLLM do — its start with the name, then its arguments piece by piece as the
// model writes them — so that OpenAI's own Go client accumulates exactly the message
// the unstreamed response has for the same text: content, names, arguments and
// finish reason, whatever pieces the text came in.
func TestToolCallsStreamed(t *testing.T) {
	for _, c := range []struct {
		name     string
		syntax   toolcall.Syntax
		reply    string
		minDelta int // at least this many argument deltas for the first call, when the reply comes in small pieces
	}{
		{"hermes", toolcall.Hermes, "Let me check the weather for both cities.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\", \"unit\": \"celsius\", \"days\": [1, 2, 3]}}\n</tool_call>\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Zürich\"}}\n</tool_call>", 5},
		{"hermes name after arguments", toolcall.Hermes, "<tool_call>{\"arguments\": {\"city\": \"東京\"}, \"name\": \"get_weather\"}</tool_call>", 1},
		{"hermes no arguments", toolcall.Hermes, "<tool_call>{\"name\": \"get_weather\"}</tool_call>", 1},
		{"llama3_json", toolcall.Llama3JSON, "<|python_tag|>{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Paris\", \"note\": \"a; b } c\"}}; {\"name\": \"get_weather\", \"parameters\": {\"city\": \"Rome\"}}", 5},
		{"hermes answer", toolcall.Hermes, "It is 21 °C in Paris, and <tool_call> is how I would call a tool.", 0},
		{"llama3_json answer", toolcall.Llama3JSON, "It is warm.", 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			// The unstreamed response for the same text.
			var got []*specdv1.Tool
			base := serveStubWith(t, replyStub(t, c.reply, nil, &got), 0, func(h *openaihttp.Handler) { h.SetToolParser(c.syntax) })
			params := openai.ChatCompletionNewParams{Model: "big", Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("How warm is Paris?")}}
			tools := option.WithJSONSet("tools", []any{weatherTool})
			cl := client(base)
			resp, err := cl.Chat.Completions.New(context.Background(), params, tools)
			if err != nil {
				t.Fatal(err)
			}
			want := resp.Choices[0]

			for _, size := range []int{1, 2, 3, 5, 8, 64} {
				// Pieces of size characters: the gRPC API's text is whole characters.
				var pieces []string
				for rest := []rune(c.reply); len(rest) > 0; {
					n := min(size, len(rest))
					pieces, rest = append(pieces, string(rest[:n])), rest[n:]
				}
				base := serveStubWith(t, piecesStub(pieces, specdv1.FinishReason_FINISH_REASON_EOS), 0, func(h *openaihttp.Handler) { h.SetToolParser(c.syntax) })
				cl := client(base)
				st := cl.Chat.Completions.NewStreaming(context.Background(), params, tools)
				acc, d := readToolStream(t, st)
				ch := acc.Choices[0]
				if ch.FinishReason != want.FinishReason || ch.Message.Content != want.Message.Content {
					t.Errorf("pieces of %d: finish_reason %q, content %q; unstreamed %q, %q", size, ch.FinishReason, ch.Message.Content, want.FinishReason, want.Message.Content)
				}
				var calls []openai.ChatCompletionMessageToolCallUnion
				for _, tc := range ch.Message.ToolCalls {
					calls = append(calls, tc)
				}
				var wantCalls []toolcall.Call
				for _, tc := range want.Message.ToolCalls {
					wantCalls = append(wantCalls, toolcall.Call{Name: tc.Function.Name, Arguments: tc.Function.Arguments})
				}
				checkCalls(t, calls, wantCalls)
				if d.finish != d.chunks-1 {
					t.Errorf("pieces of %d: finish reason in chunk %d of %d, want the last", size, d.finish, d.chunks)
				}
				if size == 1 && len(wantCalls) > 0 && d.args[0] < c.minDelta {
					t.Errorf("a byte at a time: the first call's arguments came in %d deltas, want at least %d", d.args[0], c.minDelta)
				}
			}
		})
	}
}

// TestToolCallsStreamedEarly: a call's name and the start of its arguments reach the
// client before the model has finished writing them.
func TestToolCallsStreamedEarly(t *testing.T) {
	release := make(chan struct{})
	router := &stub{generate: func(r *specdv1.GenerateRequest, st specdv1.GenerationService_GenerateServer) error {
		for _, p := range []string{"<tool_call>\n{\"name\": \"get_weather\", ", "\"arguments\": {\"city\": \"Pa"} {
			if err := st.Send(&specdv1.GenerateResponse{Event: &specdv1.GenerateResponse_Chunk{Chunk: &specdv1.TokenChunk{TokenIds: []int32{1}, Text: p}}}); err != nil {
				return err
			}
		}
		select {
		case <-release:
		case <-st.Context().Done():
			return st.Context().Err()
		}
		if err := st.Send(&specdv1.GenerateResponse{Event: &specdv1.GenerateResponse_Chunk{Chunk: &specdv1.TokenChunk{TokenIds: []int32{1}, Text: "ris\"}}\n</tool_call>"}}}); err != nil {
			return err
		}
		return st.Send(&specdv1.GenerateResponse{Event: &specdv1.GenerateResponse_Final{Final: &specdv1.Final{FinishReason: specdv1.FinishReason_FINISH_REASON_EOS}}})
	}}
	base := serveStubWith(t, router, 0, func(h *openaihttp.Handler) { h.SetToolParser(toolcall.Hermes) })
	params := openai.ChatCompletionNewParams{Model: "big", Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("How warm is Paris?")}}
	cl := client(base)
	st := cl.Chat.Completions.NewStreaming(context.Background(), params, option.WithJSONSet("tools", []any{weatherTool}))
	var name, args string
	for name == "" || args != `{"city":"Pa` {
		if !st.Next() {
			t.Fatalf("the stream ended (%v) with name %q, arguments %q: want get_weather and {\"city\":\"Pa before the model went on", st.Err(), name, args)
		}
		for _, ch := range st.Current().Choices {
			for _, tc := range ch.Delta.ToolCalls {
				name += tc.Function.Name
				args += tc.Function.Arguments
			}
		}
	}
	close(release)
	for st.Next() {
		for _, ch := range st.Current().Choices {
			for _, tc := range ch.Delta.ToolCalls {
				args += tc.Function.Arguments
			}
		}
	}
	if err := st.Err(); err != nil || name != "get_weather" || args != `{"city":"Paris"}` {
		t.Errorf("name %q, arguments %q, err %v; want get_weather, {\"city\":\"Paris\"}", name, args, err)
	}
}

// TestToolCallsStreamedBroken: a reply whose call breaks after its start was sent —
// here cut by max_tokens inside the arguments — keeps what was sent, sends the rest
// of the reply as content with the reply's own finish reason, and ends the stream
// with an error event, so that the client is told rather than left with arguments
// that do not parse; unstreamed, the same reply is an answer.
func TestToolCallsStreamedBroken(t *testing.T) {
	reply := []string{"Checking. ", "<tool_call>\n{\"name\": \"get_weather\", ", "\"arguments\": {\"city\": ", "\"Par"}
	base := serveStubWith(t, piecesStub(reply, specdv1.FinishReason_FINISH_REASON_LENGTH), 0, func(h *openaihttp.Handler) { h.SetToolParser(toolcall.Hermes) })
	cl := client(base)
	params := openai.ChatCompletionNewParams{Model: "big", Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("How warm is Paris?")}}
	tools := option.WithJSONSet("tools", []any{weatherTool})
	resp, err := cl.Chat.Completions.New(context.Background(), params, tools)
	if err != nil {
		t.Fatal(err)
	}
	whole := strings.Join(reply, "")
	if ch := resp.Choices[0]; ch.Message.Content != whole || len(ch.Message.ToolCalls) != 0 || ch.FinishReason != "length" {
		t.Errorf("unstreamed: content %q, %d calls, finish %q; want the reply as content, length", ch.Message.Content, len(ch.Message.ToolCalls), ch.FinishReason)
	}

	st := cl.Chat.Completions.NewStreaming(context.Background(), params, tools, option.WithJSONSet("stream_options", map[string]any{"include_usage": true}))
	acc, d, err := readToolStreamErr(t, st)
	var e *openai.Error
	if err == nil || !strings.Contains(err.Error(), "malformed") || !strings.Contains(err.Error(), "invalid_tool_call") {
		t.Errorf("stream error %v (%T, %v), want an error event saying the tool call is malformed", err, err, errors.As(err, &e))
	}
	ch := acc.Choices[0]
	if ch.FinishReason != "length" || len(d.args) != 1 {
		t.Errorf("finish_reason %q, %d calls begun; want length and the one call sent", ch.FinishReason, len(d.args))
	}
	if want := "Checking. " + strings.Join(reply[1:], ""); ch.Message.Content != want {
		t.Errorf("content %q, want %q: the rest of the reply", ch.Message.Content, want)
	}
	if acc.Usage.PromptTokens != 5 {
		t.Errorf("usage %+v, want the usage chunk before the error", acc.Usage)
	}
}

// TestToolCallsStreamedBrokenChoice: with n = 2, a choice whose call breaks does not
// cut the other short: both end, the other with its calls and "tool_calls", and the
// error event that follows names the choice that broke.
func TestToolCallsStreamedBrokenChoice(t *testing.T) {
	replies := map[uint64][]string{
		1: {"<tool_call>{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Par", "is\"} oops</tool_call>"},
		2: {"<tool_call>{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Ro", "me\"}}</tool_call>"},
	}
	router := &stub{generate: func(r *specdv1.GenerateRequest, st specdv1.GenerationService_GenerateServer) error {
		return piecesStub(replies[r.GetSampling().GetSeed()], specdv1.FinishReason_FINISH_REASON_EOS).generate(r, st)
	}}
	base := serveStubWith(t, router, 0, func(h *openaihttp.Handler) { h.SetToolParser(toolcall.Hermes) })
	cl := client(base)
	params := openai.ChatCompletionNewParams{Model: "big", N: openai.Int(2), Seed: openai.Int(1),
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("How warm is it?")}}
	st := cl.Chat.Completions.NewStreaming(context.Background(), params, option.WithJSONSet("tools", []any{weatherTool}))
	var acc openai.ChatCompletionAccumulator
	for st.Next() {
		acc.AddChunk(st.Current())
	}
	if err := st.Err(); err == nil || !strings.Contains(err.Error(), "choice 0:") || strings.Contains(err.Error(), "choice 1") {
		t.Errorf("stream error %v, want one naming choice 0 alone", err)
	}
	if len(acc.Choices) != 2 {
		t.Fatalf("%d choices, want 2", len(acc.Choices))
	}
	if ch := acc.Choices[0]; ch.FinishReason != "stop" || ch.Message.Content != strings.Join(replies[1], "") {
		t.Errorf("choice 0: finish %q, content %q; want stop and the reply", ch.FinishReason, ch.Message.Content)
	}
	ch := acc.Choices[1]
	if ch.FinishReason != "tool_calls" || ch.Message.Content != "" || len(ch.Message.ToolCalls) != 1 || ch.Message.ToolCalls[0].Function.Arguments != `{"city":"Rome"}` {
		t.Errorf("choice 1: finish %q, content %q, calls %+v; want tool_calls and get_weather({\"city\":\"Rome\"})", ch.FinishReason, ch.Message.Content, ch.Message.ToolCalls)
	}
}
