package openaihttp_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	specdv1 "github.com/specd-dev/specd/proto/specd/v1"
	"github.com/specd-dev/specd/services"
	"github.com/specd-dev/specd/services/openaihttp"
	"github.com/specd-dev/specd/toolcall"
)

// TestForcedCallRefs: a forced call to a tool whose parameters refer to their own
// $defs and to themselves (as Pydantic writes nested and recursive models, within
// allOf as Pydantic 1 wraps them, and within tuples) keeps those references pointing
// into the parameters, not into the call around them.
func TestForcedCallRefs(t *testing.T) {
	var gotFormat *specdv1.ResponseFormat
	router := &stub{complete: func(_ context.Context, r *specdv1.GenerateRequest) (*specdv1.CompleteResponse, error) {
		gotFormat = r.GetResponseFormat()
		if _, err := services.ParseRequest(r); err != nil {
			return nil, services.Status(err)
		}
		return &specdv1.CompleteResponse{Text: `<tool_call>{"name": "route", "arguments": {"city": {"name": "Paris"}}}</tool_call>`, FinishReason: specdv1.FinishReason_FINISH_REASON_EOS}, nil
	}}
	base := serveStubWith(t, router, 0, func(h *openaihttp.Handler) { h.SetToolParser(toolcall.Hermes) })
	params := map[string]any{
		"$defs": map[string]any{"City": map[string]any{"type": "object", "properties": map[string]any{"name": map[string]any{"type": "string"}}, "required": []string{"name"}}},
		"type":  "object",
		"properties": map[string]any{
			"city": map[string]any{"$ref": "#/$defs/City"},
			"next": map[string]any{"anyOf": []any{map[string]any{"type": "null"}, map[string]any{"$ref": "#"}}},
			"via":  map[string]any{"allOf": []any{map[string]any{"$ref": "#/$defs/City"}}, "description": "a stop on the way"},
			"ends": map[string]any{"type": "array", "prefixItems": []any{map[string]any{"$ref": "#/$defs/City"}, map[string]any{"$ref": "#/$defs/City"}}, "items": false},
		},
		"required": []string{"city"},
	}
	other := map[string]any{"type": "function", "function": map[string]any{"name": "other", "parameters": map[string]any{
		"definitions": map[string]any{"City": map[string]any{"type": "integer"}}, "type": "object",
		"properties": map[string]any{"city": map[string]any{"$ref": "#/definitions/City"}}}}}
	for _, choice := range []any{"required", map[string]any{"type": "function", "function": map[string]any{"name": "route"}}} {
		req := map[string]any{"model": "m", "messages": []any{map[string]any{"role": "user", "content": "Go"}}, "tool_choice": choice,
			"tools": []any{map[string]any{"type": "function", "function": map[string]any{"name": "route", "parameters": params}}, other}}
		body, _ := json.Marshal(req)
		res, err := http.Post(base+"/chat/completions", "application/json", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		var out struct {
			Error struct{ Message, Param string }
		}
		err = json.NewDecoder(res.Body).Decode(&out)
		res.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		if res.StatusCode != http.StatusOK {
			t.Fatalf("tool_choice %v: %s: %s (%s)", choice, res.Status, out.Error.Message, out.Error.Param)
		}
		f, err := services.FormatFromProto(gotFormat)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range []struct {
			call string
			ok   bool
		}{
			{`{"name": "route", "arguments": {"city": {"name": "Paris"}}}`, true},
			{`{"name": "route", "arguments": {"city": {"name": "Paris"}, "next": {"city": {"name": "Lyon"}, "next": null}}}`, true},
			{`{"name": "route", "arguments": {"city": {"name": "Paris"}, "next": {"name": "route", "arguments": {"city": {"name": "Lyon"}}}}}`, false},
			{`{"name": "route", "arguments": {"city": "Paris"}}`, false},
			{`{"name": "route", "arguments": {"city": {"name": "Paris"}, "via": {"name": "Dijon"}, "ends": [{"name": "Paris"}, {"name": "Lyon"}]}}`, true},
			{`{"name": "route", "arguments": {"city": {"name": "Paris"}, "via": {"name": 3}}}`, false},
			{`{"name": "route", "arguments": {"city": {"name": "Paris"}, "ends": [{"name": "a"}, {"name": "b"}, {"name": "c"}]}}`, false},
			{`{"name": "other", "arguments": {"city": 3}}`, choice == "required"},
			{`{"name": "other", "arguments": {"city": {"name": "Paris"}}}`, false},
		} {
			if _, whole := f.Check([]byte("<tool_call>\n" + c.call + "\n</tool_call>")); whole != c.ok {
				t.Errorf("tool_choice %v: %s whole %v, want %v", choice, c.call, whole, c.ok)
			}
		}
	}
}

// TestForcedCallTooLarge: tools whose forced call's schema passes the router's bound
// on a schema are refused at the front door naming tools (and the forced call), not the
// response_format the client never sent.
func TestForcedCallTooLarge(t *testing.T) {
	router := &stub{complete: func(_ context.Context, r *specdv1.GenerateRequest) (*specdv1.CompleteResponse, error) {
		if _, err := services.ParseRequest(r); err != nil {
			return nil, services.Status(err)
		}
		return &specdv1.CompleteResponse{Text: `<tool_call>{"name": "t0", "arguments": {}}</tool_call>`, FinishReason: specdv1.FinishReason_FINISH_REASON_EOS}, nil
	}}
	base := serveStubWith(t, router, 0, func(h *openaihttp.Handler) { h.SetToolParser(toolcall.Hermes) })
	props := map[string]any{}
	for i := range 40 {
		props[fmt.Sprintf("property_with_a_long_name_%02d", i)] = map[string]any{"type": "string", "description": strings.Repeat("d", 20)}
	}
	var tools []any
	for i := range openaihttp.MaxForcedTools {
		tools = append(tools, map[string]any{"type": "function", "function": map[string]any{"name": fmt.Sprintf("t%d", i),
			"parameters": map[string]any{"type": "object", "properties": props}}})
	}
	body, _ := json.Marshal(map[string]any{"model": "m", "messages": []any{map[string]any{"role": "user", "content": "Go"}}, "tool_choice": "required", "tools": tools})
	if len(body) < services.MaxSchemaBytes {
		t.Fatalf("the request is %d bytes: the test needs a forced call's schema over %d", len(body), services.MaxSchemaBytes)
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
	if res.StatusCode != http.StatusBadRequest || out.Error.Param != "tools" || !strings.Contains(out.Error.Message, "tool_choice") {
		t.Errorf("%s, param %q: %s; want 400 naming tools and the forced call", res.Status, out.Error.Param, out.Error.Message)
	}
}
