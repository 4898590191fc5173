package services

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	specdv1 "github.com/specd-dev/specd/proto/specd/v1"
)

// fill sets every field of m, nested messages included, to a distinct non-zero value;
// a repeated field gets two elements.
func fill(m protoreflect.Message, seed int) {
	fields := m.Descriptor().Fields()
	for i := range fields.Len() {
		f := fields.Get(i)
		n := seed + i + 1
		if f.IsList() {
			l := m.Mutable(f).List()
			for k := range 2 {
				if f.Kind() == protoreflect.MessageKind {
					e := l.NewElement()
					fill(e.Message(), (n+k)*10)
					l.Append(e)
				} else {
					l.Append(value(f, m, n+k))
				}
			}
			continue
		}
		m.Set(f, value(f, m, n))
	}
}

// value is a distinct non-zero value n of field f of m (a filled message for a message
// field).
func value(f protoreflect.FieldDescriptor, m protoreflect.Message, n int) protoreflect.Value {
	var v protoreflect.Value
	switch f.Kind() {
	case protoreflect.Uint32Kind:
		v = protoreflect.ValueOfUint32(uint32(n))
	case protoreflect.Int32Kind:
		v = protoreflect.ValueOfInt32(int32(n))
	case protoreflect.Int64Kind:
		v = protoreflect.ValueOfInt64(int64(n))
	case protoreflect.FloatKind:
		v = protoreflect.ValueOfFloat32(float32(n) + 0.25)
	case protoreflect.DoubleKind:
		v = protoreflect.ValueOfFloat64(float64(n) + 0.5)
	case protoreflect.StringKind:
		v = protoreflect.ValueOfString(string(f.Name()))
	case protoreflect.BytesKind:
		v = protoreflect.ValueOfBytes([]byte(fmt.Sprint(f.Name(), n)))
	case protoreflect.EnumKind:
		vals := f.Enum().Values()
		v = protoreflect.ValueOfEnum(vals.Get(1 + n%(vals.Len()-1)).Number())
	case protoreflect.MessageKind:
		sub := m.NewField(f).Message()
		fill(sub, n*10)
		v = protoreflect.ValueOfMessage(sub)
	default:
		panic("fill: a field kind the test does not know: " + f.Kind().String())
	}
	return v
}

// TestFinalRoundTrip: a verifier's final message with every field set survives the
// router's typed Final unchanged, so no stat is lost on the way to the client — a field
// added to the proto and not to the conversion fails here. Each finish reason and each
// verification mode round-trips too.
func TestFinalRoundTrip(t *testing.T) {
	in := &specdv1.Final{}
	fill(in.ProtoReflect(), 0)
	in.PromptLogprobs = nil // deprecated and never set: they come in chunks
	if got := FinalToProto(FinalFromProto(in)); !proto.Equal(got, in) {
		t.Errorf("round trip:\n got %v\nwant %v", got, in)
	}
	reasons := specdv1.FinishReason(0).Descriptor().Values()
	for i := range reasons.Len() {
		r := specdv1.FinishReason(reasons.Get(i).Number())
		in := &specdv1.Final{FinishReason: r, Stats: &specdv1.Stats{}}
		if got := FinalToProto(FinalFromProto(in)); !proto.Equal(got, in) {
			t.Errorf("finish reason %v: round trip gives %v", r, got)
		}
	}
	modes := specdv1.VerificationMode(0).Descriptor().Values()
	for i := range modes.Len() {
		mode := specdv1.VerificationMode(modes.Get(i).Number())
		in := &specdv1.Final{FinishReason: specdv1.FinishReason_FINISH_REASON_EOS, Stats: &specdv1.Stats{Mode: mode}}
		if got := FinalToProto(FinalFromProto(in)); !proto.Equal(got, in) {
			t.Errorf("mode %v: round trip gives %v", mode, got)
		}
	}
}

// TestSamplingValidatorsAgree: the public request's parser and the conversion of a
// peer's sampling settings accept and refuse the same values — one validator
// (sample.Params.Validate) — and the public one names the field.
func TestSamplingValidatorsAgree(t *testing.T) {
	f := func(v float32) *float32 { return &v }
	for _, tc := range []struct {
		name string
		sp   *specdv1.SamplingParams
		bad  string // the field named, "" when valid
	}{
		{"unset", nil, ""},
		{"top_p 1", &specdv1.SamplingParams{Temperature: 0.7, TopP: f(1)}, ""},
		{"top_p 0.5", &specdv1.SamplingParams{Temperature: 0.7, TopP: f(0.5)}, ""},
		{"top_p 0", &specdv1.SamplingParams{Temperature: 0.7, TopP: f(0)}, "sampling.top_p"},
		{"top_p 1.5", &specdv1.SamplingParams{Temperature: 0.7, TopP: f(1.5)}, "sampling.top_p"},
		{"top_p NaN", &specdv1.SamplingParams{Temperature: 0.7, TopP: f(float32(math.NaN()))}, "sampling.top_p"},
		{"min_p 1.5", &specdv1.SamplingParams{Temperature: 0.7, MinP: f(1.5)}, "sampling.min_p"},
		{"temperature -1", &specdv1.SamplingParams{Temperature: -1}, "sampling.temperature"},
		{"temperature +Inf", &specdv1.SamplingParams{Temperature: float32(math.Inf(1))}, "sampling.temperature"},
	} {
		_, perr := ParseRequest(&specdv1.GenerateRequest{Prompt: "x", MaxTokens: 1, Sampling: tc.sp})
		_, cerr := SamplingFromProto(tc.sp)
		if (perr == nil) != (tc.bad == "") || (cerr == nil) != (tc.bad == "") {
			t.Errorf("%s: ParseRequest: %v, SamplingFromProto: %v; want both to fail: %v", tc.name, perr, cerr, tc.bad != "")
			continue
		}
		var fe *FieldError
		if tc.bad != "" && (!errors.As(perr, &fe) || fe.Field != tc.bad) {
			t.Errorf("%s: ParseRequest: %v, want a FieldError for %s", tc.name, perr, tc.bad)
		}
	}
}

// TestParseRequestInputs: exactly one of prompt, prompt_ids and messages; every message
// names its role; add_generation_prompt unset means true.
func TestParseRequestInputs(t *testing.T) {
	msgs := func(roles ...string) []*specdv1.ChatMessage {
		var out []*specdv1.ChatMessage
		for _, r := range roles {
			out = append(out, &specdv1.ChatMessage{Role: r, Content: "hi " + r})
		}
		return out
	}
	tools := func(params string, names ...string) []*specdv1.Tool {
		var out []*specdv1.Tool
		for _, n := range names {
			out = append(out, &specdv1.Tool{Function: &specdv1.FunctionDefinition{Name: n, Parameters: params}})
		}
		return out
	}
	no, yes := false, true
	for _, tc := range []struct {
		name string
		req  *specdv1.GenerateRequest
		bad  string // the field named, "" when valid
		gen  bool   // AddGenerationPrompt when valid
	}{
		{"nothing", &specdv1.GenerateRequest{}, "prompt", false},
		{"prompt", &specdv1.GenerateRequest{Prompt: "x"}, "", false},
		{"prompt_ids", &specdv1.GenerateRequest{PromptIds: []int32{1}}, "", false},
		{"messages", &specdv1.GenerateRequest{Messages: msgs("system", "user")}, "", true},
		{"messages without generation prompt", &specdv1.GenerateRequest{Messages: msgs("user"), AddGenerationPrompt: &no}, "", false},
		{"prompt and messages", &specdv1.GenerateRequest{Prompt: "x", Messages: msgs("user")}, "prompt", false},
		{"prompt_ids and messages", &specdv1.GenerateRequest{PromptIds: []int32{1}, Messages: msgs("user")}, "prompt", false},
		{"empty role", &specdv1.GenerateRequest{Messages: msgs("system", "user", "")}, "messages[2].role", false},
		{"logprobs", &specdv1.GenerateRequest{Prompt: "x", Logprobs: true, TopLogprobs: 20}, "", false},
		{"top_logprobs past 20", &specdv1.GenerateRequest{Prompt: "x", Logprobs: true, TopLogprobs: 21}, "top_logprobs", false},
		{"top_logprobs without logprobs", &specdv1.GenerateRequest{Prompt: "x", TopLogprobs: 2}, "top_logprobs", false},
		{"tools", &specdv1.GenerateRequest{Messages: msgs("user"), Tools: tools(`{"type":"object"}`, "a", "b")}, "", true},
		{"tools without messages", &specdv1.GenerateRequest{Prompt: "x", Tools: tools("", "a")}, "tools", false},
		{"duplicate tool", &specdv1.GenerateRequest{Messages: msgs("user"), Tools: tools("", "a", "a")}, "tools[1].function.name", false},
		{"nameless tool", &specdv1.GenerateRequest{Messages: msgs("user"), Tools: tools("", "a", "")}, "tools[1].function.name", false},
		{"bad schema type", &specdv1.GenerateRequest{Messages: msgs("user"), Tools: tools(`{"properties":{"x":{"type":"float"}}}`, "a")}, "tools[0].function.parameters.properties.x.type", false},
		// continue_final_message: add_generation_prompt unset is then false.
		{"continue", &specdv1.GenerateRequest{Messages: msgs("user", "assistant"), ContinueFinalMessage: true}, "", false},
		{"continue with add_generation_prompt", &specdv1.GenerateRequest{Messages: msgs("user", "assistant"), ContinueFinalMessage: true, AddGenerationPrompt: &yes}, "continue_final_message", false},
		{"continue a user message", &specdv1.GenerateRequest{Messages: msgs("assistant", "user"), ContinueFinalMessage: true}, "continue_final_message", false},
		{"continue an empty message", &specdv1.GenerateRequest{Messages: []*specdv1.ChatMessage{{Role: "assistant", Content: " "}}, ContinueFinalMessage: true}, "continue_final_message", false},
		{"continue without messages", &specdv1.GenerateRequest{Prompt: "x", ContinueFinalMessage: true}, "continue_final_message", false},
		{"continue into a format", &specdv1.GenerateRequest{Messages: msgs("user", "assistant"), ContinueFinalMessage: true,
			ResponseFormat: &specdv1.ResponseFormat{Type: specdv1.ResponseFormatType_RESPONSE_FORMAT_TYPE_JSON_OBJECT}}, "continue_final_message", false},
		{"chat_template_kwargs", &specdv1.GenerateRequest{Messages: msgs("user"), ChatTemplateKwargs: `{"enable_thinking": false}`}, "", true},
		{"chat_template_kwargs reserved", &specdv1.GenerateRequest{Messages: msgs("user"), ChatTemplateKwargs: `{"messages": []}`}, "chat_template_kwargs", false},
		{"chat_template_kwargs not an object", &specdv1.GenerateRequest{Messages: msgs("user"), ChatTemplateKwargs: `[]`}, "chat_template_kwargs", false},
		{"chat_template_kwargs without messages", &specdv1.GenerateRequest{Prompt: "x", ChatTemplateKwargs: `{"a": 1}`}, "chat_template_kwargs", false},
	} {
		q, err := ParseRequest(tc.req)
		var fe *FieldError
		switch {
		case tc.bad == "" && err != nil:
			t.Errorf("%s: ParseRequest = %v, want success", tc.name, err)
		case tc.bad != "" && (!errors.As(err, &fe) || fe.Field != tc.bad):
			t.Errorf("%s: ParseRequest = %v, want a FieldError for %s", tc.name, err, tc.bad)
		case tc.bad == "" && (len(q.Messages) != len(tc.req.GetMessages()) || q.AddGenerationPrompt != tc.gen):
			t.Errorf("%s: ParseRequest = %d messages, add_generation_prompt %v; want %d, %v", tc.name, len(q.Messages), q.AddGenerationPrompt, len(tc.req.GetMessages()), tc.gen)
		}
		if err == nil && (q.Logprobs != tc.req.GetLogprobs() || q.TopLogprobs != int(tc.req.GetTopLogprobs())) {
			t.Errorf("%s: ParseRequest = logprobs %v, top %d; want %v, %d", tc.name, q.Logprobs, q.TopLogprobs, tc.req.GetLogprobs(), tc.req.GetTopLogprobs())
		}
		if err == nil && q.ContinueFinal != tc.req.GetContinueFinalMessage() {
			t.Errorf("%s: ParseRequest = continue %v, want %v", tc.name, q.ContinueFinal, tc.req.GetContinueFinalMessage())
		}
		if err == nil && len(q.Tools) != len(tc.req.GetTools()) {
			t.Errorf("%s: ParseRequest = %d tools, want %d", tc.name, len(q.Tools), len(tc.req.GetTools()))
		}
		for i, m := range q.Messages {
			if err == nil && (m.Role != tc.req.Messages[i].Role || m.Content != tc.req.Messages[i].Content) {
				t.Errorf("%s: message %d = %+v, want %v", tc.name, i, m, tc.req.Messages[i])
			}
		}
	}
}

// TestParseRequestStops: stop strings are non-empty, at most MaxStopBytes long and
// at most MaxStops of them — a request's stop strings are checked on every token it
// commits, on the engine goroutine every request shares.
func TestParseRequestStops(t *testing.T) {
	long := strings.Repeat("e", MaxStopBytes)
	for _, tc := range []struct {
		name string
		stop []string
		ok   bool
	}{
		{"none", nil, true},
		{"the most", slices.Repeat([]string{long}, MaxStops), true},
		{"one too many", slices.Repeat([]string{"x"}, MaxStops+1), false},
		{"one too long", []string{"x", long + "e"}, false},
		{"empty", []string{"x", ""}, false},
	} {
		_, err := ParseRequest(&specdv1.GenerateRequest{Prompt: "x", Stop: tc.stop})
		var fe *FieldError
		switch {
		case tc.ok && err != nil:
			t.Errorf("%s: ParseRequest = %v, want success", tc.name, err)
		case !tc.ok && (!errors.As(err, &fe) || fe.Field != "stop"):
			t.Errorf("%s: ParseRequest = %v, want a FieldError for stop", tc.name, err)
		}
	}
}

// TestRuleFormatBounds: a grammar, a pattern or a list of choices over the bounds is a
// FieldError naming it, found without reading more of it than needed: a million
// one-byte choices (a 4 MB request) were joined one by one, which took the square of
// their number.
func TestRuleFormatBounds(t *testing.T) {
	many := slices.Repeat([]string{"a"}, 1<<20)
	big := strings.Repeat("a", MaxSchemaBytes+1)
	for _, tc := range []struct {
		name string
		rf   *specdv1.ResponseFormat
		bad  string
	}{
		{"many choices", &specdv1.ResponseFormat{Type: specdv1.ResponseFormatType_RESPONSE_FORMAT_TYPE_CHOICE, Choices: many}, "response_format.choices"},
		{"long choices", &specdv1.ResponseFormat{Type: specdv1.ResponseFormatType_RESPONSE_FORMAT_TYPE_CHOICE, Choices: []string{big[:MaxSchemaBytes/2], big[:MaxSchemaBytes/2+1]}}, "response_format.choices"},
		{"long grammar", &specdv1.ResponseFormat{Type: specdv1.ResponseFormatType_RESPONSE_FORMAT_TYPE_GRAMMAR, Grammar: big}, "response_format.grammar"},
		{"long regex", &specdv1.ResponseFormat{Type: specdv1.ResponseFormatType_RESPONSE_FORMAT_TYPE_REGEX, Regex: big}, "response_format.regex"},
		{"bad grammar", &specdv1.ResponseFormat{Type: specdv1.ResponseFormatType_RESPONSE_FORMAT_TYPE_GRAMMAR, Grammar: "root ::= (\"a\""}, "response_format.grammar"},
	} {
		_, err := FormatFromProto(tc.rf)
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Field != tc.bad {
			t.Errorf("%s: FormatFromProto = %v, want a FieldError for %s", tc.name, err, tc.bad)
		}
	}
}
