package services

import (
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	specdv1 "github.com/specd-dev/specd/proto/specd/v1"
)

// badString is protobufjs's encoding of a lone surrogate ("\uD800"), as a
// JavaScript client sends a string cut in the middle of an emoji: not UTF-8.
const badString = "a \xed\xa0\x80 b"

// withBadString marshals m after put has set one of its strings to a marker,
// and replaces the marker's bytes on the wire with badString (the Go
// marshaller refuses invalid UTF-8 itself).
func withBadString(t testing.TB, m *specdv1.GenerateRequest, put func(*specdv1.GenerateRequest, string)) []byte {
	t.Helper()
	const marker = "MARKERS" // as long as badString, so lengths on the wire stay right
	if len(marker) != len(badString) {
		t.Fatalf("marker of %d bytes, badString of %d", len(marker), len(badString))
	}
	put(m, marker)
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return []byte(strings.Replace(string(b), marker, badString, 1))
}

func TestInvalidUTF8Field(t *testing.T) {
	chat := func() *specdv1.GenerateRequest {
		return &specdv1.GenerateRequest{MaxTokens: 4, Stop: []string{"x", "y", "z"}, Messages: []*specdv1.ChatMessage{
			{Role: "user", Content: "hi"},
			{Role: "assistant", ToolCalls: []*specdv1.ToolCall{{Id: "a"}, {Function: &specdv1.FunctionCall{Name: "f", Arguments: "{}"}}}},
		}, Tools: []*specdv1.Tool{{Function: &specdv1.FunctionDefinition{Name: "f"}}},
			Sampling: &specdv1.SamplingParams{LogitBias: map[int32]float32{5: 1}}}
	}
	for _, tc := range []struct {
		want string
		put  func(*specdv1.GenerateRequest, string)
	}{
		{"prompt", func(m *specdv1.GenerateRequest, s string) { m.Prompt = s }},
		{"stop[2]", func(m *specdv1.GenerateRequest, s string) { m.Stop[2] = s }},
		{"messages[1].content", func(m *specdv1.GenerateRequest, s string) { m.Messages[1].Content = s }},
		{"messages[1].tool_calls[1].function.arguments", func(m *specdv1.GenerateRequest, s string) { m.Messages[1].ToolCalls[1].Function.Arguments = s }},
		{"tools[0].function.name", func(m *specdv1.GenerateRequest, s string) { m.Tools[0].Function.Name = s }},
		{"tools[1].function.description", func(m *specdv1.GenerateRequest, s string) {
			m.Tools = append(m.Tools, &specdv1.Tool{Function: &specdv1.FunctionDefinition{Description: s}})
		}},
	} {
		b := withBadString(t, chat(), tc.put)
		if err := proto.Unmarshal(b, &specdv1.GenerateRequest{}); err == nil || !strings.Contains(err.Error(), "invalid UTF-8") {
			t.Fatalf("%s: the test's message decodes with %v, want protobuf's invalid UTF-8 error", tc.want, err)
		}
		if got := invalidUTF8Field(b, (&specdv1.GenerateRequest{}).ProtoReflect().Descriptor()); got != tc.want {
			t.Errorf("invalidUTF8Field(%s) = %q, want %q", tc.want, got, tc.want)
		}
	}
	md := (&specdv1.GenerateRequest{}).ProtoReflect().Descriptor()
	valid, err := proto.Marshal(chat())
	if err != nil {
		t.Fatal(err)
	}
	// Only a prompt, its bad bytes last: cut, the string's length overruns the message.
	bad := withBadString(t, &specdv1.GenerateRequest{}, func(m *specdv1.GenerateRequest, s string) { m.Prompt = s })
	for name, b := range map[string][]byte{
		"valid":                        valid,
		"cut in its bad string":        bad[:len(bad)-3],
		"string as a varint":           protowire.AppendVarint(protowire.AppendTag(nil, 2, protowire.VarintType), 7),
		"unknown field with bad bytes": protowire.AppendString(protowire.AppendTag(nil, 99, protowire.BytesType), badString),
	} {
		if got := invalidUTF8Field(b, md); got != "" {
			t.Errorf("invalidUTF8Field(%s) = %q, want \"\"", name, got)
		}
	}
}

// FuzzInvalidUTF8Field: on any bytes the walk ends without a panic, names no
// field where protobuf decodes the message, and names one wherever protobuf
// refuses it for invalid UTF-8.
func FuzzInvalidUTF8Field(f *testing.F) {
	f.Add([]byte{})
	f.Add(withBadString(f, &specdv1.GenerateRequest{}, func(m *specdv1.GenerateRequest, s string) { m.Prompt = s }))
	f.Add(withBadString(f, &specdv1.GenerateRequest{Messages: []*specdv1.ChatMessage{{Role: "user"}}},
		func(m *specdv1.GenerateRequest, s string) { m.Messages[0].Content = s }))
	f.Add(withBadString(f, &specdv1.GenerateRequest{Tools: []*specdv1.Tool{{Function: &specdv1.FunctionDefinition{}}}},
		func(m *specdv1.GenerateRequest, s string) { m.Tools[0].Function.Parameters = s }))
	md := (&specdv1.GenerateRequest{}).ProtoReflect().Descriptor()
	f.Fuzz(func(t *testing.T, b []byte) {
		got := invalidUTF8Field(b, md)
		err := proto.Unmarshal(b, &specdv1.GenerateRequest{})
		switch {
		case err == nil && got != "":
			t.Errorf("invalidUTF8Field = %q for a message protobuf decodes", got)
		case err != nil && strings.Contains(err.Error(), "invalid UTF-8") && got == "":
			t.Errorf("invalidUTF8Field = \"\" where protobuf says %v", err)
		}
	})
}
