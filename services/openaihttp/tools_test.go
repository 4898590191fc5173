package openaihttp_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
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

			// Streamed: the text before the calls as content as it comes, the calls
			// in one delta, then finish_reason.
			st := cl.Chat.Completions.NewStreaming(context.Background(), params, tools, option.WithJSONSet("stream_options", map[string]any{"include_usage": true}))
			var acc openai.ChatCompletionAccumulator
			var content strings.Builder
			callChunks, finishes := 0, 0
			for st.Next() {
				chunk := st.Current()
				if !acc.AddChunk(chunk) {
					t.Fatalf("the accumulator refused chunk %s", chunk.RawJSON())
				}
				for _, ch := range chunk.Choices {
					content.WriteString(ch.Delta.Content)
					if len(ch.Delta.ToolCalls) > 0 {
						callChunks++
						if ch.FinishReason != "" || content.Len() != len(c.content) {
							t.Errorf("tool calls in chunk %s, want them after the content, before the finish", chunk.RawJSON())
						}
					}
					if ch.FinishReason != "" {
						finishes++
					}
				}
			}
			if err := st.Err(); err != nil {
				t.Fatal(err)
			}
			checkTools(t, got)
			if content.String() != c.content {
				t.Errorf("streamed content = %q, want %q", content.String(), c.content)
			}
			if want := min(1, len(c.calls)); callChunks != want || finishes != 1 {
				t.Errorf("%d chunks with tool calls, %d with a finish reason; want %d and 1", callChunks, finishes, want)
			}
			sc := acc.Choices[0]
			if sc.FinishReason != c.finish {
				t.Errorf("streamed finish_reason = %q, want %q", sc.FinishReason, c.finish)
			}
			var calls []openai.ChatCompletionMessageToolCallUnion
			for _, tc := range sc.Message.ToolCalls {
				calls = append(calls, tc)
			}
			checkCalls(t, calls, c.calls)
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
// without a tool call parser, tool_choice "required" or a named function, a tool of
// another type, and what the router finds wrong with a tool (its field's path kept in
// the message); tool_choice "none" takes tools away, with or without a parser.
func TestToolsRefused(t *testing.T) {
	var got []*specdv1.Tool
	router := &stub{complete: func(_ context.Context, r *specdv1.GenerateRequest) (*specdv1.CompleteResponse, error) {
		got = r.GetTools()
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
		{"tool_choice required", hermes, map[string]any{"tools": []any{weatherTool}, "tool_choice": "required"}, "tool_choice", "required", false},
		{"named function", hermes, map[string]any{"tools": []any{weatherTool}, "tool_choice": map[string]any{"type": "function", "function": map[string]any{"name": "get_weather"}}}, "tool_choice", "named", false},
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
		})
	}
}
