package serve_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/specd-dev/specd/grammar"
	specdv1 "github.com/specd-dev/specd/proto/specd/v1"
	"github.com/specd-dev/specd/sample"
	"github.com/specd-dev/specd/services"
)

// TestRuleFormats: under a GBNF grammar, a regular expression or a choice, the output
// through the services is a sentence of it, and speculating with the draft (which
// compiles the same format from Start) gives plain decoding's tokens under the same
// constraint, greedy and coupled; the OpenAI front door takes each under every name
// llama.cpp and vLLM give it, with the same text, and a bad grammar, pattern or list is
// a 400 naming the parameter the client used (INVALID_ARGUMENT naming the field over
// gRPC).
func TestRuleFormats(t *testing.T) {
	s := startStackWith(t, stackOptions{http: true})
	ctx := context.Background()
	prompt := s.target.Tok.Prompt("Tom is a boy. He is three. He is sad.\nName: Tom\nAge: 3\nMood: sad\n" +
		"Lily is a girl. She is five. She is happy.\n")
	const n = 48
	const g = "root ::= \"Name: \" name \"\\nAge: \" [0-9]{1,2} \"\\nMood: \" (\"happy\" | \"sad\") \"\\n\"\nname ::= [A-Z] [a-z]{1,12}\n"
	const re = `Name: [A-Z][a-z]+\nAge: \d{1,2}\n(Mood: (happy|sad)\n)?`
	choices := []string{"Name: Lily", "Name: Tom", "Name: Sue"}
	gf, err := grammar.GBNFFormat(g)
	if err != nil {
		t.Fatal(err)
	}
	rf, err := grammar.RegexFormat(re)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := grammar.ChoiceFormat(choices)
	if err != nil {
		t.Fatal(err)
	}
	formats := []struct {
		name   string
		rf     *specdv1.ResponseFormat
		format grammar.Format
	}{
		{"grammar", &specdv1.ResponseFormat{Type: specdv1.ResponseFormatType_RESPONSE_FORMAT_TYPE_GRAMMAR, Grammar: g}, gf},
		{"regex", &specdv1.ResponseFormat{Type: specdv1.ResponseFormatType_RESPONSE_FORMAT_TYPE_REGEX, Regex: re}, rf},
		{"choice", &specdv1.ResponseFormat{Type: specdv1.ResponseFormatType_RESPONSE_FORMAT_TYPE_CHOICE, Choices: choices}, cf},
	}
	var accepted uint32
	texts := map[string]string{} // greedy, per format
	for _, f := range formats {
		for _, c := range []struct {
			sp   sample.Params
			mode specdv1.VerificationMode
		}{
			{sample.Params{TopP: 1}, specdv1.VerificationMode_VERIFICATION_MODE_UNSPECIFIED},
			{sample.Params{Temperature: 0.7, TopP: 1, Seed: 11}, specdv1.VerificationMode_VERIFICATION_MODE_COUPLED},
		} {
			sp := c.sp
			sp.Grammar = f.format.Grammar(s.target.Tok)
			want := s.plainIDs(t, prompt, n, sp)
			r, err := s.client.Complete(ctx, &specdv1.GenerateRequest{PromptIds: prompt, MaxTokens: n, Sampling: services.SamplingToProto(c.sp),
				ResponseFormat: f.rf, Speculation: &specdv1.SpeculationOptions{Gamma: 4, Mode: c.mode}})
			if err != nil {
				t.Fatalf("%s %v: %v", f.name, c.mode, err)
			}
			if got := r.GetTokenIds(); !slices.Equal(got, want) {
				t.Errorf("%s %v: %v, want plain decoding under the constraint %v", f.name, c.mode, got, want)
			}
			accepted += r.GetStats().GetAcceptedTokens()
			prefix, whole := f.format.Check([]byte(r.GetText()))
			ended := r.GetFinishReason() == specdv1.FinishReason_FINISH_REASON_EOS
			if !prefix || ended && !whole || c.sp.Greedy() && !ended {
				t.Errorf("%s %v: %q (%v): prefix %v, whole %v; want a whole sentence ended by EOS", f.name, c.mode, r.GetText(), r.GetFinishReason(), prefix, whole)
			}
			if c.sp.Greedy() {
				texts[f.name] = r.GetText()
			}
		}
	}
	if accepted == 0 {
		t.Errorf("no draft token was accepted in any case: the draft's proposals were not checked")
	}
	t.Logf("greedy outputs %q, %d draft tokens accepted", texts, accepted)

	oc := s.openaiClient()
	complete := func(key string, v any) (*openai.Completion, error) {
		return oc.Completions.New(ctx, openai.CompletionNewParams{Model: "specd-target", Prompt: openai.CompletionNewParamsPromptUnion{OfArrayOfTokens: int64s(prompt)},
			MaxTokens: openai.Int(n), Temperature: openai.Float(0)}, option.WithJSONSet(key, v))
	}
	for _, x := range []struct {
		format, key string
		v           any
	}{
		{"grammar", "grammar", g},
		{"grammar", "guided_grammar", g},
		{"grammar", "structured_outputs", map[string]any{"grammar": g}},
		{"regex", "guided_regex", re},
		{"regex", "structured_outputs", map[string]any{"regex": re}},
		{"choice", "guided_choice", choices},
		{"choice", "structured_outputs", map[string]any{"choice": choices}},
	} {
		resp, err := complete(x.key, x.v)
		if err != nil {
			t.Fatalf("%s: %v", x.key, err)
		}
		if got := resp.Choices[0].Text; got != texts[x.format] || resp.Choices[0].FinishReason != "stop" {
			t.Errorf("%s (%s): %q (%s), want the gRPC API's %q, ended", x.key, x.format, got, resp.Choices[0].FinishReason, texts[x.format])
		}
	}
	for _, bad := range []struct {
		key, param, msg string
		v               any
	}{
		{"grammar", "grammar", "left recursion", "root ::= root \"a\""},
		{"guided_grammar", "guided_grammar", "want ::=", "start: \"a\" // Lark"},
		{"guided_regex", "guided_regex", "look-arounds", "a(?=b)"},
		{"structured_outputs", "structured_outputs.regex", "back-references", map[string]any{"regex": `(a)\1`}},
		{"guided_choice", "guided_choice", "choice 1 is empty", []string{"a", ""}},
		{"structured_outputs", "structured_outputs.grammar", "not defined", map[string]any{"grammar": "root ::= x"}},
	} {
		_, err := complete(bad.key, bad.v)
		var oe *openai.Error
		if !errors.As(err, &oe) || oe.StatusCode != 400 || oe.Param != bad.param || !strings.HasPrefix(oe.Message, bad.param+": ") || !strings.Contains(oe.Message, bad.msg) {
			t.Errorf("%s %v: %v; want a 400 naming %s and saying %q", bad.key, bad.v, err, bad.param, bad.msg)
		}
	}

	for _, bad := range []struct {
		rf    *specdv1.ResponseFormat
		field string
	}{
		{&specdv1.ResponseFormat{Type: specdv1.ResponseFormatType_RESPONSE_FORMAT_TYPE_GRAMMAR, Grammar: "root ::= x"}, "response_format.grammar: "},
		{&specdv1.ResponseFormat{Type: specdv1.ResponseFormatType_RESPONSE_FORMAT_TYPE_GRAMMAR}, "response_format.grammar: "},
		{&specdv1.ResponseFormat{Type: specdv1.ResponseFormatType_RESPONSE_FORMAT_TYPE_REGEX, Regex: `\bx`}, "response_format.regex: "},
		{&specdv1.ResponseFormat{Type: specdv1.ResponseFormatType_RESPONSE_FORMAT_TYPE_CHOICE}, "response_format.choices: "},
		{&specdv1.ResponseFormat{Type: specdv1.ResponseFormatType_RESPONSE_FORMAT_TYPE_JSON_OBJECT, Regex: "a"}, "response_format.regex: "},
		{&specdv1.ResponseFormat{Type: specdv1.ResponseFormatType_RESPONSE_FORMAT_TYPE_REGEX, Regex: "a", Choices: []string{"a"}}, "response_format.choices: "},
		{&specdv1.ResponseFormat{Type: specdv1.ResponseFormatType_RESPONSE_FORMAT_TYPE_CHOICE, Choices: []string{"a"}, Prefix: "<"}, "response_format.prefix: "},
		{&specdv1.ResponseFormat{Type: specdv1.ResponseFormatType_RESPONSE_FORMAT_TYPE_GRAMMAR, Grammar: strings.Repeat(" ", services.MaxSchemaBytes+1)}, "response_format.grammar: "},
	} {
		_, err := s.client.Complete(ctx, &specdv1.GenerateRequest{PromptIds: prompt, MaxTokens: 4, ResponseFormat: bad.rf})
		if st, _ := status.FromError(err); st.Code() != codes.InvalidArgument || !strings.HasPrefix(st.Message(), bad.field) {
			t.Errorf("%v: %v; want INVALID_ARGUMENT naming %q", bad.rf, err, bad.field)
		}
	}
}
