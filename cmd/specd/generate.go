package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/specd-dev/specd/chat"
	"github.com/specd-dev/specd/generate"
	specdv1 "github.com/specd-dev/specd/proto/specd/v1"
	"github.com/specd-dev/specd/services"
	"github.com/specd-dev/specd/services/openaihttp"
)

// clientOptions are the flags of the client commands.
type clientOptions struct {
	addr    string
	model   string // the requests' model (empty: the router's choice)
	timeout time.Duration
	keyFile string
	tls     clientTLSOptions
}

func (o *clientOptions) addFlags(fs *flag.FlagSet) {
	fs.StringVar(&o.addr, "addr", defaultRouterAddr, "router address")
	fs.DurationVar(&o.timeout, "timeout", 5*time.Minute, "deadline for the whole request")
	fs.StringVar(&o.keyFile, "api-key-file", "", "file holding the API key to send (a router with --api-keys demands one); empty: none")
	o.tls.addFlags(fs)
}

// addModelFlag adds --model, for the commands that generate.
func (o *clientOptions) addModelFlag(fs *flag.FlagSet) {
	fs.StringVar(&o.model, "model", "", "model to ask for, by the name the router lists (ListModels, /v1/models); empty: any verifier's. A key limited to models (models=) needs it")
}

// validate refuses a --timeout that leaves a request no time.
func (o *clientOptions) validate() error {
	if o.timeout <= 0 {
		return usagef("--timeout %v: want a positive duration", o.timeout)
	}
	return nil
}

// specOptions are the speculation flags of the client commands.
type specOptions struct {
	gamma, maxGamma int
	noSpec          bool
	mode            string
}

func (o *specOptions) addFlags(fs *flag.FlagSet) {
	fs.IntVar(&o.gamma, "gamma", 0, "fixed draft tokens per round (0: adaptive)")
	fs.IntVar(&o.maxGamma, "max-gamma", 0, "cap on the adaptive gamma (0: the server's)")
	fs.BoolVar(&o.noSpec, "no-spec", false, "decode plainly on the verifier, no draft")
	fs.StringVar(&o.mode, "mode", "", "verification mode for sampling: coupled or rejection (default: the server's)")
}

func (o *specOptions) proto() (*specdv1.SpeculationOptions, error) {
	so := &specdv1.SpeculationOptions{Disabled: o.noSpec, Gamma: uint32(max(o.gamma, 0)), MaxGamma: uint32(max(o.maxGamma, 0))}
	if o.gamma < 0 || o.maxGamma < 0 || o.gamma > math.MaxUint32 || o.maxGamma > math.MaxUint32 {
		return nil, usagef("--gamma and --max-gamma must be in 0..%d", uint32(math.MaxUint32))
	}
	switch o.mode {
	case "":
	case "coupled":
		so.Mode = specdv1.VerificationMode_VERIFICATION_MODE_COUPLED
	case "rejection":
		so.Mode = specdv1.VerificationMode_VERIFICATION_MODE_REJECTION
	default:
		return nil, usagef("--mode %q: want coupled or rejection", o.mode)
	}
	return so, nil
}

// generateResult is `specd generate --json`.
type generateResult struct {
	OutputIDs            []int32 `json:"output_ids"`
	Text                 string  `json:"text"`
	FinishReason         string  `json:"finish_reason"`
	PromptTokens         int     `json:"prompt_tokens"`
	CachedPromptTokens   int     `json:"cached_prompt_tokens"`
	Tokens               int     `json:"tokens"`
	Rounds               int     `json:"rounds"`
	Drafted              int     `json:"drafted"`
	Accepted             int     `json:"accepted"`
	LookupTokens         int     `json:"lookup_tokens"`
	LookupAccepted       int     `json:"lookup_accepted"`
	AcceptanceRate       float64 `json:"acceptance_rate"`
	MeanAcceptedPerRound float64 `json:"mean_accepted_per_round"`
	TimeToFirstToken     float64 `json:"time_to_first_token_seconds"`
	TokensPerSecond      float64 `json:"tokens_per_second"`
	WallSeconds          float64 `json:"wall_seconds"`
	MeanRoundTrip        float64 `json:"mean_round_trip_seconds"`
	Mode                 string  `json:"mode"`
	Verifier             string  `json:"verifier"`
	Draft                string  `json:"draft"`
	Fallbacks            int     `json:"fallbacks"`
	DraftRefusals        int     `json:"draft_refusals"`
	Failovers            int     `json:"failovers"`
	// Logprobs: with --logprobs, one per output id.
	Logprobs []tokenLogprob `json:"logprobs,omitempty"`
	// firstChunk is the client's time to first token: from sending the request to
	// receiving the first chunk with a token (zero when none came).
	firstChunk time.Duration
}

// tokenLogprob is a generated token's log-probability in `specd generate --json`, with
// the likeliest tokens at its position (--top-logprobs).
type tokenLogprob struct {
	Token   string         `json:"token"` // its text; part of a character as "bytes:\xe4\xbd" (openaihttp.TokenText)
	Logprob float32        `json:"logprob"`
	Top     []topLogprobJS `json:"top,omitempty"`
	raw     []byte         // the token's bytes, which text mode quotes
}

type topLogprobJS struct {
	ID      int32   `json:"id"`
	Token   string  `json:"token"`
	Logprob float32 `json:"logprob"`
	raw     []byte
}

// logprobJSON converts a token's log-probabilities for --json.
func logprobJSON(lp *specdv1.TokenLogprob) tokenLogprob {
	out := tokenLogprob{Token: openaihttp.TokenText(lp.GetToken()), Logprob: lp.GetLogprob(), raw: lp.GetToken()}
	for _, t := range lp.GetTop() {
		out.Top = append(out.Top, topLogprobJS{ID: t.GetTokenId(), Token: openaihttp.TokenText(t.GetToken()), Logprob: t.GetLogprob(), raw: t.GetToken()})
	}
	return out
}

// checkLogprobFlags refuses --top-logprobs without --logprobs, and more than the
// API's bound.
func checkLogprobFlags(logprobs bool, top uint) error {
	switch {
	case top > 0 && !logprobs:
		return usagef("--top-logprobs needs --logprobs")
	case top > generate.MaxTopLogprobs:
		return usagef("--top-logprobs %d: at most %d", top, generate.MaxTopLogprobs)
	}
	return nil
}

// printLogprobs writes one line per token to w: its id, bytes and log-probability,
// then the likeliest tokens.
func printLogprobs(w io.Writer, ids []int32, lps []tokenLogprob) {
	for i, lp := range lps {
		fmt.Fprintf(w, "%5d %-20q %9.4f", ids[i], lp.raw, lp.Logprob)
		for _, t := range lp.Top {
			fmt.Fprintf(w, "  %q %.4f", t.raw, t.Logprob)
		}
		fmt.Fprintln(w)
	}
}

func finishName(f specdv1.FinishReason) string {
	switch f {
	case specdv1.FinishReason_FINISH_REASON_EOS:
		return "eos"
	case specdv1.FinishReason_FINISH_REASON_LENGTH:
		return "length"
	case specdv1.FinishReason_FINISH_REASON_STOP_STRING:
		return "stop"
	case specdv1.FinishReason_FINISH_REASON_CONTEXT:
		return "context"
	case specdv1.FinishReason_FINISH_REASON_TOOL_CALL:
		return "tool_call"
	}
	return "unspecified"
}

func modeName(m specdv1.VerificationMode) string {
	switch m {
	case specdv1.VerificationMode_VERIFICATION_MODE_GREEDY:
		return "greedy"
	case specdv1.VerificationMode_VERIFICATION_MODE_COUPLED:
		return "coupled"
	case specdv1.VerificationMode_VERIFICATION_MODE_REJECTION:
		return "rejection"
	}
	return ""
}

// collect runs one streamed generation, passing text deltas to onText.
func collect(ctx context.Context, c specdv1.GenerationServiceClient, req *specdv1.GenerateRequest, onText func(string) error) (generateResult, error) {
	res := generateResult{OutputIDs: []int32{}}
	t0 := time.Now()
	st, err := c.Generate(ctx, req)
	if err != nil {
		return res, err
	}
	for {
		msg, err := st.Recv()
		if errors.Is(err, io.EOF) {
			return res, errors.New("stream ended without a final message")
		}
		if err != nil {
			return res, err
		}
		if ch := msg.GetChunk(); ch != nil {
			if res.firstChunk == 0 && len(ch.GetTokenIds()) > 0 {
				res.firstChunk = time.Since(t0)
			}
			if n, m := len(ch.GetLogprobs()), len(ch.GetTokenIds()); req.GetLogprobs() && n != m {
				return res, fmt.Errorf("the server sent %d log-probabilities for %d tokens in one chunk, not one for each", n, m)
			}
			res.OutputIDs = append(res.OutputIDs, ch.GetTokenIds()...)
			for _, lp := range ch.GetLogprobs() {
				res.Logprobs = append(res.Logprobs, logprobJSON(lp))
			}
			res.Text += ch.GetText()
			if onText != nil && ch.GetText() != "" {
				if err := onText(ch.GetText()); err != nil {
					return res, err
				}
			}
			continue
		}
		f := msg.GetFinal()
		st.Recv() // the stream's end, so that it closes cleanly
		s := f.GetStats()
		res.WallSeconds = time.Since(t0).Seconds()
		res.FinishReason = finishName(f.GetFinishReason())
		res.PromptTokens, res.Tokens = int(s.GetPromptTokens()), int(s.GetCompletionTokens())
		res.CachedPromptTokens = int(s.GetCachedPromptTokens())
		res.Rounds, res.Drafted, res.Accepted = int(s.GetRounds()), int(s.GetDraftedTokens()), int(s.GetAcceptedTokens())
		res.LookupTokens, res.LookupAccepted = int(s.GetLookupTokens()), int(s.GetLookupAcceptedTokens())
		res.AcceptanceRate, res.MeanAcceptedPerRound = float64(s.GetAcceptanceRate()), float64(s.GetMeanAcceptedPerRound())
		res.TimeToFirstToken = s.GetTimeToFirstToken().AsDuration().Seconds()
		res.TokensPerSecond = s.GetDecodeTokensPerSecond()
		res.MeanRoundTrip = s.GetMeanRoundTrip().AsDuration().Seconds()
		res.Mode, res.Verifier, res.Draft = modeName(s.GetMode()), s.GetVerifier().GetAddress(), s.GetDraft().GetAddress()
		res.Fallbacks, res.DraftRefusals, res.Failovers = int(s.GetFallbacks()), int(s.GetDraftRefusals()), int(s.GetFailovers())
		return res, nil
	}
}

func generateCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("generate", flag.ContinueOnError)
	var co clientOptions
	var so samplingOptions
	var sp specOptions
	co.addFlags(fs)
	co.addModelFlag(fs)
	so.addFlags(fs)
	sp.addFlags(fs)
	// Greedy by default, as the API is with sampling unset.
	fs.Lookup("temp").DefValue = "0"
	so.temp = 0
	var prompt, messages, sessionKey, domain, kwargs string
	var asJSON, noGen, cont, logprobs bool
	var topLogprobs uint
	fs.BoolVar(&logprobs, "logprobs", false, "report each token's log-probability under the model (with --json in its output, else one line per token on stderr)")
	fs.UintVar(&topLogprobs, "top-logprobs", 0, "with --logprobs: also the N likeliest tokens at each position (at most 20)")
	fs.StringVar(&prompt, "p", "", "prompt text")
	fs.StringVar(&prompt, "prompt", "", "same as -p")
	fs.StringVar(&messages, "messages", "", `instead of -p: a JSON file of a conversation, [{"role": "user", "content": "Hi"}, ...], rendered by the verifier with its model's chat template`)
	fs.BoolVar(&noGen, "no-generation-prompt", false, "with --messages: do not open an assistant turn (the conversation as the template renders it, its last turn closed; implied by --continue-final-message, which it may go with, as vLLM wants add_generation_prompt false beside continue_final_message)")
	fs.BoolVar(&cont, "continue-final-message", false, "with --messages: continue the final (assistant) message's text, the output being the continuation (vLLM's continue_final_message)")
	fs.StringVar(&kwargs, "chat-template-kwargs", "", `with --messages: JSON object of extra template variables, e.g. '{"enable_thinking": false}' (vLLM's chat_template_kwargs)`)
	fs.StringVar(&sessionKey, "session", "", "session key for verifier affinity")
	fs.StringVar(&domain, "domain", "", "domain label for metrics")
	fs.BoolVar(&asJSON, "json", false, "print one JSON object instead of streaming text")
	if err := parseFlags(fs, args, stderr); err != nil {
		return err
	}
	if err := co.validate(); err != nil {
		return err
	}
	if (prompt == "") == (messages == "") {
		return usagef("give a prompt (-p) or a conversation (--messages), one of them")
	}
	switch {
	case messages == "" && (noGen || cont || kwargs != ""):
		return usagef("--no-generation-prompt, --continue-final-message and --chat-template-kwargs need --messages")
	}
	if _, err := chat.ParseVars(kwargs); err != nil {
		return usagef("--chat-template-kwargs: %v", err)
	}
	if err := checkLogprobFlags(logprobs, topLogprobs); err != nil {
		return err
	}
	var msgs []*specdv1.ChatMessage
	if messages != "" {
		ms, err := readMessages(messages)
		if err != nil {
			return usageError{fmt.Errorf("--messages: %w", err)}
		}
		for _, m := range ms {
			msgs = append(msgs, &specdv1.ChatMessage{Role: m.Role, Content: m.Content})
		}
	}
	params, err := so.params()
	if err != nil {
		return err
	}
	rf, err := so.responseFormat()
	if err != nil {
		return err
	}
	spo, err := sp.proto()
	if err != nil {
		return err
	}
	cc, err := co.dial()
	if err != nil {
		return err
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(ctx, co.timeout)
	defer cancel()
	req := &specdv1.GenerateRequest{Model: co.model, Prompt: prompt, MaxTokens: uint32(so.maxTokens), Sampling: services.SamplingToProto(params),
		Stop: so.stop, StopTokenIds: so.stopIDs, IgnoreEos: so.ignoreEOS, ResponseFormat: rf, Speculation: spo, SessionKey: sessionKey, Domain: domain, Messages: msgs,
		Logprobs: logprobs, TopLogprobs: uint32(min(topLogprobs, math.MaxUint32)), ContinueFinalMessage: cont, ChatTemplateKwargs: kwargs}
	if noGen {
		req.AddGenerationPrompt = new(false)
	}
	var onText func(string) error
	echoed := false // the prompt goes out with the first text, so a refusal prints none of it
	echo := func() {
		if !echoed {
			echoed = true
			fmt.Fprint(stdout, prompt) // a conversation's rendering is the server's: only the answer is printed
		}
	}
	if !asJSON {
		onText = func(s string) error { echo(); _, err := io.WriteString(stdout, s); return err }
	}
	res, err := collect(ctx, specdv1.NewGenerationServiceClient(cc), req, onText)
	if err != nil {
		if s, ok := status.FromError(err); ok && s.Code() == codes.InvalidArgument {
			return usageError{errors.New(s.Message())}
		}
		return err
	}
	if asJSON {
		return json.NewEncoder(stdout).Encode(res)
	}
	echo()
	fmt.Fprintln(stdout)
	printLogprobs(stderr, res.OutputIDs, res.Logprobs)
	fmt.Fprintf(stderr, "%d tokens (%s), %.1f tok/s, %d rounds, acceptance %.0f%%, %.2f accepted per round, first token %.0f ms\n",
		res.Tokens, res.FinishReason, res.TokensPerSecond, res.Rounds, 100*res.AcceptanceRate, res.MeanAcceptedPerRound, 1000*res.TimeToFirstToken)
	return nil
}
