package services

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/specd-dev/specd/chat"
	"github.com/specd-dev/specd/generate"
	"github.com/specd-dev/specd/grammar"
	"github.com/specd-dev/specd/router"
	"google.golang.org/protobuf/types/known/durationpb"

	speculationv1 "github.com/specd-dev/specd/proto/specd/speculation/v1"
	specdv1 "github.com/specd-dev/specd/proto/specd/v1"
	"github.com/specd-dev/specd/sample"
	"github.com/specd-dev/specd/spec"
	"github.com/specd-dev/specd/toolcall"
)

// Request is a validated public generation request.
type Request struct {
	Prompt    string
	PromptIDs []int32
	// Messages is a conversation to render with the model's chat template (nil: the
	// prompt is Prompt or PromptIDs); AddGenerationPrompt ends it with an assistant
	// turn's opening.
	Messages            []chat.Message
	AddGenerationPrompt bool
	// ContinueFinal: the output continues the final (assistant) message instead of
	// answering it; only with Messages, never with AddGenerationPrompt.
	ContinueFinal bool
	// Vars are the chat template's extra variables (chat_template_kwargs); only with
	// Messages.
	Vars chat.Vars
	// Tools are the tools the chat template describes to the model (nil: none);
	// only with Messages.
	Tools          []chat.Tool
	MaxTokens      int // 0: up to the model's context
	Sampling       sample.Params
	Stop           []string
	StopTokenIDs   []int32         // ids that end the output besides the vocabulary's (checked against it by the verifier)
	IgnoreEOS      bool            // do not end at the vocabulary's end-of-generation ids
	ToolCall       toolcall.Syntax // end after the first whole tool call in this syntax (0: no such end)
	Spec           bool            // speculate (false: plain decoding)
	MaxGamma       int             // 0: adaptive with the server's cap
	Gamma          int             // > 0: fixed γ
	Mode           spec.Mode       // 0: the server's default
	Logprobs       bool            // report each token's log-probability
	TopLogprobs    int             // with Logprobs or PromptLogprobs: the likeliest tokens at each position
	PromptLogprobs bool            // report the prompt's tokens' log-probabilities
	Format         grammar.Format  // what the output must be (the zero Format: free text)
}

// Limits on a request's stop strings. Every committed token of a request is checked
// against all of them on the verifier's one engine goroutine, which runs every
// request's passes: unbounded, one request's 100,000 stop strings cost 40 ms a token
// and slowed every request sharing the verifier that much per pass.
const (
	MaxStops        = 16
	MaxStopBytes    = 256
	MaxStopTokenIDs = 64
	// MaxSchemaBytes bounds a response format's schema document (and its grammar, its
	// regular expression or its choices together), MaxAffixBytes the
	// text around the document.
	MaxSchemaBytes = 64 << 10
	MaxAffixBytes  = 256
)

// ParseRequest validates a public request, naming the first bad field. An unset seed
// is drawn at random here, once, so that a resumed request keeps the same seed.
func ParseRequest(r *specdv1.GenerateRequest) (q Request, err error) {
	given := 0
	for _, set := range []bool{r.GetPrompt() != "", len(r.GetPromptIds()) > 0, len(r.GetMessages()) > 0} {
		if set {
			given++
		}
	}
	switch {
	case given == 0:
		return q, BadField("prompt", "empty: set prompt, prompt_ids or messages")
	case given > 1:
		return q, BadField("prompt", "set one of prompt, prompt_ids and messages, not several")
	}
	q.Prompt, q.PromptIDs, q.MaxTokens, q.Stop = r.GetPrompt(), r.GetPromptIds(), int(r.GetMaxTokens()), r.GetStop()
	if ms := r.GetMessages(); len(ms) > 0 {
		q.Messages = make([]chat.Message, len(ms))
		for i, m := range ms {
			if m.GetRole() == "" {
				return q, BadField(fmt.Sprintf("messages[%d].role", i), "empty: say who speaks (system, user, assistant, tool)")
			}
			q.Messages[i] = chat.Message{Role: m.GetRole(), Content: m.GetContent(), Name: m.GetName(), ToolCallID: m.GetToolCallId()}
			if calls := m.GetToolCalls(); len(calls) > 0 {
				if m.GetRole() != "assistant" {
					return q, BadField(fmt.Sprintf("messages[%d].tool_calls", i), "only an assistant message makes tool calls, not a %q one", m.GetRole())
				}
				q.Messages[i].ToolCalls = make([]chat.ToolCall, len(calls))
				for j, c := range calls {
					field := fmt.Sprintf("messages[%d].tool_calls[%d]", i, j)
					fn := c.GetFunction()
					switch {
					case c.GetType() != "" && c.GetType() != "function":
						return q, BadField(field+".type", "%q: only function calls", c.GetType())
					case fn.GetName() == "":
						return q, BadField(field+".function.name", "empty: name the function called")
					}
					if err := chat.CheckArguments(fn.GetArguments()); err != nil {
						return q, BadField(field+".function.arguments", "%v", err)
					}
					q.Messages[i].ToolCalls[j] = chat.ToolCall{ID: c.GetId(), Type: c.GetType(), Function: chat.FunctionCall{Name: fn.GetName(), Arguments: fn.GetArguments()}}
				}
			}
		}
		q.ContinueFinal = r.GetContinueFinalMessage()
		q.AddGenerationPrompt = r.AddGenerationPrompt == nil && !q.ContinueFinal || r.GetAddGenerationPrompt()
		if q.ContinueFinal {
			last := q.Messages[len(q.Messages)-1]
			switch {
			case q.AddGenerationPrompt:
				return q, BadField("continue_final_message", "not with add_generation_prompt true: continuing the final message excludes starting a new turn")
			case last.Role != "assistant":
				return q, BadField("continue_final_message", "the final message is %q's: only an assistant message is continued", last.Role)
			case strings.TrimSpace(last.Content) == "":
				return q, BadField("continue_final_message", "the final message has no content to continue")
			}
		}
		if q.Vars, err = chat.ParseVars(r.GetChatTemplateKwargs()); err != nil {
			return q, BadField("chat_template_kwargs", "%v", err)
		}
	}
	switch {
	case len(q.Messages) == 0 && r.GetContinueFinalMessage():
		return q, BadField("continue_final_message", "needs messages: it continues the final one")
	case len(q.Messages) == 0 && strings.TrimSpace(r.GetChatTemplateKwargs()) != "":
		return q, BadField("chat_template_kwargs", "needs messages: a chat template renders them")
	}
	if ts := r.GetTools(); len(ts) > 0 {
		if len(q.Messages) == 0 {
			return q, BadField("tools", "tools need messages: a chat template describes them to the model")
		}
		q.Tools = make([]chat.Tool, len(ts))
		for i, t := range ts {
			fn := t.GetFunction()
			q.Tools[i] = chat.Tool{Type: t.GetType(), Function: chat.FunctionDefinition{Name: fn.GetName(), Description: fn.GetDescription(), Parameters: fn.GetParameters()}}
		}
		if err := chat.CheckTools(q.Tools); err != nil {
			var fe *chat.FieldError
			if errors.As(err, &fe) {
				return q, BadField("tools"+fe.Field, "%s", fe.Msg)
			}
			return q, err
		}
	}
	if len(q.Stop) > MaxStops {
		return q, BadField("stop", "%d stop strings: at most %d", len(q.Stop), MaxStops)
	}
	for i, s := range q.Stop {
		if s == "" {
			return q, BadField("stop", "stop string %d is empty", i)
		}
		if len(s) > MaxStopBytes {
			return q, BadField("stop", "stop string %d is %d bytes: at most %d", i, len(s), MaxStopBytes)
		}
	}
	q.StopTokenIDs, q.IgnoreEOS = r.GetStopTokenIds(), r.GetIgnoreEos()
	if len(q.StopTokenIDs) > MaxStopTokenIDs {
		return q, BadField("stop_token_ids", "%d ids: at most %d", len(q.StopTokenIDs), MaxStopTokenIDs)
	}
	for i, id := range q.StopTokenIDs {
		if id < 0 {
			return q, BadField("stop_token_ids", "id %d at index %d is negative", id, i)
		}
	}
	if name := r.GetStopAfterToolCall(); name != "" {
		if q.ToolCall, err = toolcall.ParseSyntax(name); err != nil {
			return q, BadField("stop_after_tool_call", "%v", err)
		}
	}
	if q.Format, err = FormatFromProto(r.GetResponseFormat()); err != nil {
		return q, err
	}
	if q.Format.Kind() != grammar.Text && q.ContinueFinal {
		return q, BadField("continue_final_message", "not with a response_format: the format constrains the output from its start, and a continued message has begun already")
	}
	if q.Format.Kind() != grammar.Text && q.IgnoreEOS && len(q.StopTokenIDs) == 0 {
		return q, BadField("response_format", "a document ends the output with an end-of-generation id: with ignore_eos, give stop_token_ids")
	}
	q.Logprobs, q.TopLogprobs, q.PromptLogprobs = r.GetLogprobs(), int(r.GetTopLogprobs()), r.GetPromptLogprobs()
	switch {
	case q.TopLogprobs > generate.MaxTopLogprobs:
		return q, BadField("top_logprobs", "%d: at most %d", q.TopLogprobs, generate.MaxTopLogprobs)
	case q.TopLogprobs > 0 && !q.Logprobs && !q.PromptLogprobs:
		return q, BadField("top_logprobs", "%d without logprobs or prompt_logprobs: set one of them too", q.TopLogprobs)
	}
	sp := r.GetSampling()
	q.Sampling, err = SamplingFromProto(sp)
	if err != nil {
		var pe *sample.ParamError
		if errors.As(err, &pe) {
			return q, BadField("sampling."+pe.Field, "%s", pe.Msg)
		}
		return q, err
	}
	if sp == nil || sp.Seed == nil {
		q.Sampling.Seed = rand.Uint64()
	}
	if q.MaxTokens > 0 && q.Sampling.MinTokens > q.MaxTokens {
		return q, BadField("sampling.min_tokens", "%d: more than max_tokens %d", q.Sampling.MinTokens, q.MaxTokens)
	}
	so := r.GetSpeculation()
	q.Spec = !so.GetDisabled()
	q.MaxGamma = int(so.GetMaxGamma())
	if q.MaxGamma > 64 {
		return q, BadField("speculation.max_gamma", "%d: at most 64", q.MaxGamma)
	}
	if q.Gamma = int(so.GetGamma()); q.Gamma > 64 {
		return q, BadField("speculation.gamma", "%d: at most 64", q.Gamma)
	}
	switch so.GetMode() {
	case specdv1.VerificationMode_VERIFICATION_MODE_UNSPECIFIED:
	case specdv1.VerificationMode_VERIFICATION_MODE_GREEDY:
		if t := q.Sampling.Temperature; !q.Sampling.Greedy() {
			return q, BadField("speculation.mode", "greedy verification needs temperature 0, not %v", t)
		}
	case specdv1.VerificationMode_VERIFICATION_MODE_COUPLED:
		q.Mode = spec.Coupled
	case specdv1.VerificationMode_VERIFICATION_MODE_REJECTION:
		q.Mode = spec.Rejection
	default:
		return q, BadField("speculation.mode", "unknown mode %v", so.GetMode())
	}
	return q, nil
}

// FormatFromProto validates a response format (nil: free text), naming the bad field.
func FormatFromProto(rf *specdv1.ResponseFormat) (grammar.Format, error) {
	f, err := formatFromProto(rf)
	if err != nil || f.Kind() == grammar.Text {
		return f, err
	}
	for _, a := range []struct{ field, text string }{{"prefix", rf.GetPrefix()}, {"suffix", rf.GetSuffix()}} {
		if len(a.text) > MaxAffixBytes {
			return grammar.Format{}, BadField("response_format."+a.field, "%d bytes: at most %d", len(a.text), MaxAffixBytes)
		}
	}
	return f.Wrapped(rf.GetPrefix(), rf.GetSuffix()), nil
}

func formatFromProto(rf *specdv1.ResponseFormat) (grammar.Format, error) {
	schema := rf.GetJsonSchema()
	for _, c := range []struct {
		field string
		set   bool
		t     specdv1.ResponseFormatType
	}{
		{"json_schema", schema != "", specdv1.ResponseFormatType_RESPONSE_FORMAT_TYPE_JSON_SCHEMA},
		{"grammar", rf.GetGrammar() != "", specdv1.ResponseFormatType_RESPONSE_FORMAT_TYPE_GRAMMAR},
		{"regex", rf.GetRegex() != "", specdv1.ResponseFormatType_RESPONSE_FORMAT_TYPE_REGEX},
		{"choices", len(rf.GetChoices()) > 0, specdv1.ResponseFormatType_RESPONSE_FORMAT_TYPE_CHOICE},
	} {
		if c.set && rf.GetType() != c.t {
			return grammar.Format{}, BadField("response_format."+c.field, "only with type %v, not %v", c.t, rf.GetType())
		}
	}
	switch rf.GetType() {
	case specdv1.ResponseFormatType_RESPONSE_FORMAT_TYPE_GRAMMAR, specdv1.ResponseFormatType_RESPONSE_FORMAT_TYPE_REGEX,
		specdv1.ResponseFormatType_RESPONSE_FORMAT_TYPE_CHOICE:
		if rf.GetPrefix() != "" || rf.GetSuffix() != "" {
			return grammar.Format{}, BadField("response_format.prefix", "only around a JSON document, not with %v", rf.GetType())
		}
		return ruleFormat(rf)
	}
	switch rf.GetType() {
	case specdv1.ResponseFormatType_RESPONSE_FORMAT_TYPE_UNSPECIFIED, specdv1.ResponseFormatType_RESPONSE_FORMAT_TYPE_TEXT:
		if rf.GetPrefix() != "" || rf.GetSuffix() != "" {
			return grammar.Format{}, BadField("response_format.prefix", "only around a JSON document, not free text")
		}
		return grammar.Format{}, nil
	case specdv1.ResponseFormatType_RESPONSE_FORMAT_TYPE_JSON_OBJECT:
		return grammar.ObjectFormat(), nil
	case specdv1.ResponseFormatType_RESPONSE_FORMAT_TYPE_JSON_SCHEMA:
		switch {
		case schema == "":
			return grammar.Format{}, BadField("response_format.json_schema", "empty: give the JSON Schema the output must satisfy")
		case len(schema) > MaxSchemaBytes:
			return grammar.Format{}, BadField("response_format.json_schema", "%d bytes: at most %d", len(schema), MaxSchemaBytes)
		}
		f, err := grammar.SchemaFormat([]byte(schema))
		if err != nil {
			return grammar.Format{}, BadField("response_format.json_schema", "%v", err)
		}
		return f, nil
	}
	return grammar.Format{}, BadField("response_format.type", "unknown type %v", rf.GetType())
}

// ruleFormat validates a grammar, a regular expression or a list of choices.
func ruleFormat(rf *specdv1.ResponseFormat) (grammar.Format, error) {
	var (
		field, text string
		f           grammar.Format
		err         error
	)
	switch rf.GetType() {
	case specdv1.ResponseFormatType_RESPONSE_FORMAT_TYPE_GRAMMAR:
		field, text = "grammar", rf.GetGrammar()
	case specdv1.ResponseFormatType_RESPONSE_FORMAT_TYPE_REGEX:
		field, text = "regex", rf.GetRegex()
	default:
		// The choices' size is summed, never their text joined: a million one-byte
		// choices (within a 4 MB message) took the square of that to join.
		field = "choices"
		if n := len(rf.GetChoices()); n > grammar.MaxChoices {
			return f, BadField("response_format.choices", "%d choices: at most %d", n, grammar.MaxChoices)
		}
	}
	size := len(text)
	for _, c := range rf.GetChoices() {
		size += len(c)
	}
	switch {
	case text == "" && field != "choices":
		return f, BadField("response_format."+field, "empty: give the %s the output must match", field)
	case size > MaxSchemaBytes:
		return f, BadField("response_format."+field, "%d bytes: at most %d", size, MaxSchemaBytes)
	}
	switch field {
	case "grammar":
		f, err = grammar.GBNFFormat(text)
	case "regex":
		f, err = grammar.RegexFormat(text)
	default:
		f, err = grammar.ChoiceFormat(rf.GetChoices())
	}
	if err != nil {
		return grammar.Format{}, BadField("response_format."+field, "%v", err)
	}
	return f, nil
}

// FormatToProto converts a validated response format (nil for free text).
func FormatToProto(f grammar.Format) *specdv1.ResponseFormat {
	var rf *specdv1.ResponseFormat
	switch f.Kind() {
	case grammar.JSONObject:
		rf = &specdv1.ResponseFormat{Type: specdv1.ResponseFormatType_RESPONSE_FORMAT_TYPE_JSON_OBJECT}
	case grammar.JSONSchema:
		rf = &specdv1.ResponseFormat{Type: specdv1.ResponseFormatType_RESPONSE_FORMAT_TYPE_JSON_SCHEMA, JsonSchema: string(f.Schema())}
	case grammar.GBNF:
		return &specdv1.ResponseFormat{Type: specdv1.ResponseFormatType_RESPONSE_FORMAT_TYPE_GRAMMAR, Grammar: f.Source()}
	case grammar.Regex:
		return &specdv1.ResponseFormat{Type: specdv1.ResponseFormatType_RESPONSE_FORMAT_TYPE_REGEX, Regex: f.Source()}
	case grammar.Choice:
		return &specdv1.ResponseFormat{Type: specdv1.ResponseFormatType_RESPONSE_FORMAT_TYPE_CHOICE, Choices: f.Choices()}
	default:
		return nil
	}
	rf.Prefix, rf.Suffix = f.Affixes()
	return rf
}

// ModeToProto converts a verification mode.
func ModeToProto(m spec.Mode) specdv1.VerificationMode {
	switch m {
	case spec.Coupled:
		return specdv1.VerificationMode_VERIFICATION_MODE_COUPLED
	case spec.Rejection:
		return specdv1.VerificationMode_VERIFICATION_MODE_REJECTION
	}
	return specdv1.VerificationMode_VERIFICATION_MODE_UNSPECIFIED
}

// SamplingToProto converts sampling parameters (with the seed always set).
func SamplingToProto(p sample.Params) *specdv1.SamplingParams {
	out := &specdv1.SamplingParams{Temperature: p.Temperature, TopK: uint32(p.TopK), TopP: &p.TopP, MinP: &p.MinP, Seed: &p.Seed,
		FrequencyPenalty: p.FrequencyPenalty, PresencePenalty: p.PresencePenalty, MinTokens: uint32(p.MinTokens)}
	if p.RepetitionPenalty != 0 {
		out.RepetitionPenalty = &p.RepetitionPenalty
	}
	if len(p.LogitBias) > 0 {
		out.LogitBias = make(map[int32]float32, len(p.LogitBias))
		for _, b := range p.LogitBias {
			out.LogitBias[b.ID] = b.Value
		}
	}
	return out
}

// SamplingFromProto converts sampling parameters, with an unset top_p as 1 (off), and
// validates them (sample.Params.Validate).
func SamplingFromProto(sp *specdv1.SamplingParams) (sample.Params, error) {
	p := sample.Params{Temperature: sp.GetTemperature(), TopK: int(sp.GetTopK()), TopP: 1, MinP: sp.GetMinP(), Seed: sp.GetSeed(),
		RepetitionPenalty: sp.GetRepetitionPenalty(), FrequencyPenalty: sp.GetFrequencyPenalty(), PresencePenalty: sp.GetPresencePenalty(),
		MinTokens: int(min(sp.GetMinTokens(), math.MaxInt32))}
	if lb := sp.GetLogitBias(); len(lb) > 0 {
		if len(lb) > sample.MaxLogitBiasSize {
			return p, &sample.ParamError{Field: "logit_bias", Msg: fmt.Sprintf("%d entries: at most %d", len(lb), sample.MaxLogitBiasSize)}
		}
		p.LogitBias = make([]sample.Bias, 0, len(lb))
		for id, v := range lb {
			p.LogitBias = append(p.LogitBias, sample.Bias{ID: id, Value: v})
		}
		slices.SortFunc(p.LogitBias, func(a, b sample.Bias) int { return cmp.Compare(a.ID, b.ID) })
	}
	if sp != nil && sp.TopP != nil {
		p.TopP = sp.GetTopP()
	}
	if sp != nil && sp.RepetitionPenalty != nil && !(sp.GetRepetitionPenalty() > 0) {
		return p, &sample.ParamError{Field: "repetition_penalty", Msg: fmt.Sprintf("%v: must be in (0, %v] (1 is off)", sp.GetRepetitionPenalty(), sample.MaxRepetitionPenalty)}
	}
	return p, p.Validate()
}

// ProposalToProto converts a proposal.
func ProposalToProto(p spec.Proposal) *speculationv1.Proposal {
	out := &speculationv1.Proposal{Round: p.Round, BaseSeq: p.Base, StartPosition: uint32(p.Start), Tokens: p.Tokens, BranchOf: p.BranchOf,
		Drafting: Duration(p.Drafting)}
	for _, d := range p.Dists {
		out.Probs = append(out.Probs, &speculationv1.Distribution{Ids: d.IDs, Probs: d.Probs})
	}
	return out
}

// ProposalFromProto converts a proposal received from a draft.
func ProposalFromProto(p *speculationv1.Proposal) spec.Proposal {
	out := spec.Proposal{Round: p.GetRound(), Base: p.GetBaseSeq(), Start: int(p.GetStartPosition()), Tokens: p.GetTokens(), BranchOf: p.GetBranchOf(),
		Drafting: max(p.GetDrafting().AsDuration(), 0)}
	for _, d := range p.GetProbs() {
		out.Dists = append(out.Dists, sample.NewDist(d.GetIds(), d.GetProbs()))
	}
	return out
}

// Duration converts a duration, nil for zero.
func Duration(d time.Duration) *durationpb.Duration {
	if d == 0 {
		return nil
	}
	return durationpb.New(d)
}

// VerdictToProto converts a verdict.
func VerdictToProto(v spec.Verdict) *speculationv1.Verdict {
	return &speculationv1.Verdict{Round: v.Round, Seq: v.Seq, Accepted: uint32(v.Accepted), Position: uint32(v.Position), Tokens: v.Tokens,
		NextGamma: uint32(v.NextGamma), FirstGamma: uint32(v.FirstGamma), Rollback: v.Rollback}
}

// VerdictFromProto converts a verdict received from a verifier.
func VerdictFromProto(v *speculationv1.Verdict) spec.Verdict {
	return spec.Verdict{Round: v.GetRound(), Seq: v.GetSeq(), Accepted: int(v.GetAccepted()), Position: int(v.GetPosition()), Tokens: v.GetTokens(),
		NextGamma: int(v.GetNextGamma()), FirstGamma: int(v.GetFirstGamma()), Rollback: v.GetRollback()}
}

// finishes pairs each finish reason with its proto value.
var finishes = []struct {
	f generate.Finish
	p specdv1.FinishReason
}{
	{generate.EOS, specdv1.FinishReason_FINISH_REASON_EOS},
	{generate.Length, specdv1.FinishReason_FINISH_REASON_LENGTH},
	{generate.StopString, specdv1.FinishReason_FINISH_REASON_STOP_STRING},
	{generate.Context, specdv1.FinishReason_FINISH_REASON_CONTEXT},
	{generate.ToolCall, specdv1.FinishReason_FINISH_REASON_TOOL_CALL},
}

// FinishToProto converts a finish reason.
func FinishToProto(f generate.Finish) specdv1.FinishReason {
	for _, x := range finishes {
		if x.f == f {
			return x.p
		}
	}
	return specdv1.FinishReason_FINISH_REASON_UNSPECIFIED
}

// FinishFromProto converts a finish reason received from a verifier.
func FinishFromProto(p specdv1.FinishReason) generate.Finish {
	for _, x := range finishes {
		if x.p == p {
			return x.f
		}
	}
	return generate.Running
}

// FinalFromProto converts a verifier's final message.
func FinalFromProto(f *specdv1.Final) *router.Final {
	s := f.GetStats()
	out := &router.Final{Reason: FinishFromProto(f.GetFinishReason()), Stats: router.Stats{
		PromptTokens: int(s.GetPromptTokens()), CompletionTokens: int(s.GetCompletionTokens()), CachedPromptTokens: int(s.GetCachedPromptTokens()),
		Rounds: int(s.GetRounds()), DraftedTokens: int(s.GetDraftedTokens()), AcceptedTokens: int(s.GetAcceptedTokens()),
		LookupTokens: int(s.GetLookupTokens()), LookupAcceptedTokens: int(s.GetLookupAcceptedTokens()),
		AcceptanceRate: s.GetAcceptanceRate(), MeanAcceptedPerRound: s.GetMeanAcceptedPerRound(), DecodeTokensPerSecond: s.GetDecodeTokensPerSecond(),
		TimeToFirstToken: s.GetTimeToFirstToken().AsDuration(), Total: s.GetTotalDuration().AsDuration(),
		MeanRoundTrip: s.GetMeanRoundTrip().AsDuration(), QueueWait: s.GetQueueWait().AsDuration(),
		Verifier:  router.Served{Address: s.GetVerifier().GetAddress(), Model: s.GetVerifier().GetModel()},
		Draft:     router.Served{Address: s.GetDraft().GetAddress(), Model: s.GetDraft().GetModel()},
		Fallbacks: int(s.GetFallbacks()), DraftRefusals: int(s.GetDraftRefusals()), Failovers: int(s.GetFailovers()),
	}}
	if lp := f.GetEndLogprobs(); lp != nil {
		out.EndLogprobs = LogprobsFromProto(lp)
	}
	switch s.GetMode() {
	case specdv1.VerificationMode_VERIFICATION_MODE_GREEDY:
		out.Stats.Mode.Greedy = true
	case specdv1.VerificationMode_VERIFICATION_MODE_COUPLED:
		out.Stats.Mode.Mode = spec.Coupled
	case specdv1.VerificationMode_VERIFICATION_MODE_REJECTION:
		out.Stats.Mode.Mode = spec.Rejection
	}
	return out
}

// LogprobsToProto converts a token's log-probabilities; nil for nil.
func LogprobsToProto(lp *generate.Logprobs) *specdv1.TokenLogprob {
	if lp == nil {
		return nil
	}
	out := &specdv1.TokenLogprob{Logprob: lp.Logprob, Token: lp.Bytes, Text: lp.Text}
	if len(lp.Top) > 0 {
		out.Top = make([]*specdv1.TopLogprob, len(lp.Top))
		for i, t := range lp.Top {
			out.Top[i] = &specdv1.TopLogprob{TokenId: t.ID, Logprob: t.Logprob, Token: t.Bytes, Text: t.Text}
		}
	}
	return out
}

// LogprobsFromProto converts a token's log-probabilities received from a verifier.
func LogprobsFromProto(p *specdv1.TokenLogprob) *generate.Logprobs {
	lp := &generate.Logprobs{Logprob: p.GetLogprob(), Bytes: p.GetToken(), Text: p.GetText()}
	if top := p.GetTop(); len(top) > 0 {
		lp.Top = make([]generate.TopLogprob, len(top))
		for i, t := range top {
			lp.Top[i] = generate.TopLogprob{ID: t.GetTokenId(), Logprob: t.GetLogprob(), Bytes: t.GetToken(), Text: t.GetText()}
		}
	}
	return lp
}

// ProgressToProto converts an attempt's progress for the router.
func ProgressToProto(p router.Progress) *speculationv1.Progress {
	return &speculationv1.Progress{
		Rounds: uint32(p.Rounds), DraftedTokens: uint32(p.DraftedTokens), AcceptedTokens: uint32(p.AcceptedTokens),
		LookupTokens: uint32(p.LookupTokens), LookupAcceptedTokens: uint32(p.LookupAcceptedTokens),
		Fallbacks: uint32(p.Fallbacks), DraftRefusals: uint32(p.DraftRefusals),
		RoundTrips: uint32(p.RoundTrips), RoundTripTotal: Duration(p.RoundTripTotal), QueueWait: Duration(p.QueueWait),
	}
}

// ProgressFromProto converts an attempt's progress received from a verifier; nil when
// it sent none.
func ProgressFromProto(p *speculationv1.Progress) *router.Progress {
	if p == nil {
		return nil
	}
	return &router.Progress{
		Rounds: int(p.GetRounds()), DraftedTokens: int(p.GetDraftedTokens()), AcceptedTokens: int(p.GetAcceptedTokens()),
		LookupTokens: int(p.GetLookupTokens()), LookupAcceptedTokens: int(p.GetLookupAcceptedTokens()),
		Fallbacks: int(p.GetFallbacks()), DraftRefusals: int(p.GetDraftRefusals()),
		RoundTrips: int(p.GetRoundTrips()), RoundTripTotal: p.GetRoundTripTotal().AsDuration(),
		QueueWait: p.GetQueueWait().AsDuration(),
	}
}

// FinalToProto converts a generation's end for the public API.
func FinalToProto(f *router.Final) *specdv1.Final {
	s := f.Stats
	out := &specdv1.Stats{
		PromptTokens: uint32(s.PromptTokens), CompletionTokens: uint32(s.CompletionTokens), CachedPromptTokens: uint32(s.CachedPromptTokens),
		Rounds: uint32(s.Rounds), DraftedTokens: uint32(s.DraftedTokens), AcceptedTokens: uint32(s.AcceptedTokens),
		LookupTokens: uint32(s.LookupTokens), LookupAcceptedTokens: uint32(s.LookupAcceptedTokens),
		AcceptanceRate: s.AcceptanceRate, MeanAcceptedPerRound: s.MeanAcceptedPerRound, DecodeTokensPerSecond: s.DecodeTokensPerSecond,
		TimeToFirstToken: Duration(s.TimeToFirstToken), TotalDuration: Duration(s.Total),
		MeanRoundTrip: Duration(s.MeanRoundTrip), QueueWait: Duration(s.QueueWait),
		Fallbacks: uint32(s.Fallbacks), DraftRefusals: uint32(s.DraftRefusals), Failovers: uint32(s.Failovers), Mode: ModeToProto(s.Mode.Mode),
	}
	if s.Mode.Greedy {
		out.Mode = specdv1.VerificationMode_VERIFICATION_MODE_GREEDY
	}
	if s.Verifier != (router.Served{}) {
		out.Verifier = &specdv1.Endpoint{Address: s.Verifier.Address, Model: s.Verifier.Model}
	}
	if s.Draft != (router.Served{}) {
		out.Draft = &specdv1.Endpoint{Address: s.Draft.Address, Model: s.Draft.Model}
	}
	pf := &specdv1.Final{FinishReason: FinishToProto(f.Reason), Stats: out}
	if f.EndLogprobs != nil {
		pf.EndLogprobs = LogprobsToProto(f.EndLogprobs)
	}
	return pf
}
