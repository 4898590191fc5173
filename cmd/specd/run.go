package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"math"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/specd-dev/specd/generate"
	"github.com/specd-dev/specd/grammar"
	"github.com/specd-dev/specd/kernels"
	"github.com/specd-dev/specd/kvcache"
	specdv1 "github.com/specd-dev/specd/proto/specd/v1"
	"github.com/specd-dev/specd/sample"
	"github.com/specd-dev/specd/services"
)

// samplingOptions are the sampling flags shared by run and the client.
type samplingOptions struct {
	temp       float64
	topK       int
	topP, minP float64
	seed       seedFlag
	maxTokens  int
	stop       stringList
	stopIDs    idList // ids that end the text besides the vocabulary's
	ignoreEOS  bool
	bias       biasList
	minTokens  int
	// Penalties on tokens already seen (sample.Params).
	repeatPenalty, frequencyPenalty, presencePenalty float64
	// The response format: its type, and a schema (inline JSON or @FILE); or a GBNF
	// grammar (inline or @FILE), a regular expression, or choices.
	format, jsonSchema string
	grammar, regex     string
	grammarFile        string // --grammar-file F: --grammar @F, as llama.cpp spells it
	choices            stringList
}

type stringList []string

// seedFlag is --seed: any value of the gRPC API's SamplingParams.seed, a
// uint64, so that the CLI reproduces the text a client in another language
// got with a seed of 2^63 or above. -1 (the flag's default) leaves it unset:
// a seed is picked at random.
type seedFlag struct {
	v   uint64
	set bool // false: -1, pick one at random
}

func (s *seedFlag) String() string {
	if !s.set {
		return "-1"
	}
	return strconv.FormatUint(s.v, 10)
}

func (s *seedFlag) Set(v string) error {
	if v == "-1" {
		*s = seedFlag{}
		return nil
	}
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		return fmt.Errorf("want an integer from 0 to %d, or -1 for a random seed: %w", uint64(math.MaxUint64), err)
	}
	*s = seedFlag{v: n, set: true}
	return nil
}

// biasList is the repeatable --logit-bias: ID=BIAS, or llama.cpp's ID+BIAS and
// ID-BIAS; a later entry for an id replaces an earlier one.
type biasList map[int32]float32

func (l *biasList) String() string {
	var s []string
	for _, id := range slices.Sorted(maps.Keys(*l)) {
		s = append(s, fmt.Sprintf("%d=%g", id, (*l)[id]))
	}
	return strings.Join(s, ",")
}

func (l *biasList) Set(v string) error {
	i := strings.IndexAny(v, "=+-")
	if i <= 0 {
		return fmt.Errorf("%q: want ID=BIAS (or ID+BIAS, ID-BIAS)", v)
	}
	id, err := strconv.ParseInt(v[:i], 10, 32)
	if err != nil || id < 0 {
		return fmt.Errorf("%q: %q is not a token id", v, v[:i])
	}
	num := v[i+1:]
	if v[i] == '-' {
		num = v[i:]
	}
	b, err := strconv.ParseFloat(num, 32)
	if err != nil || !(b >= -sample.MaxLogitBias && b <= sample.MaxLogitBias) {
		return fmt.Errorf("%q: want a bias in [-%d, %d]", v, sample.MaxLogitBias, sample.MaxLogitBias)
	}
	if *l == nil {
		*l = biasList{}
	}
	(*l)[int32(id)] = float32(b)
	return nil
}

// idList is a repeatable flag of token ids.
type idList []int32

func (l *idList) String() string {
	var s []string
	for _, id := range *l {
		s = append(s, strconv.Itoa(int(id)))
	}
	return strings.Join(s, ",")
}

func (l *idList) Set(v string) error {
	id, err := strconv.ParseInt(v, 10, 32)
	if err != nil || id < 0 {
		return fmt.Errorf("%q: want a token id (an integer ≥ 0)", v)
	}
	*l = append(*l, int32(id))
	return nil
}

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

func (o *samplingOptions) addFlags(fs *flag.FlagSet) {
	fs.Float64Var(&o.temp, "temp", 0.8, "temperature; 0 is greedy")
	fs.IntVar(&o.topK, "top-k", 0, "keep the K most likely tokens; 0 is off")
	fs.Float64Var(&o.topP, "top-p", 1, "nucleus sampling threshold in (0, 1]")
	fs.Float64Var(&o.minP, "min-p", 0, "drop tokens below min-p × the top probability")
	fs.Var(&o.seed, "seed", "sampling seed, 0 to 2^64-1 as the gRPC API takes it; -1 (the default) picks one at random")
	fs.IntVar(&o.maxTokens, "n", 128, "maximum number of new tokens; 0: up to the model's context")
	fs.IntVar(&o.maxTokens, "max-tokens", 128, "same as -n")
	fs.Var(&o.stop, "stop", "stop string (repeatable)")
	fs.Var(&o.stopIDs, "stop-token-id", "token id that ends the text, besides the vocabulary's end-of-generation ids (repeatable)")
	fs.Var(&o.bias, "logit-bias", "ID=BIAS: add BIAS in [-100, 100] to token ID's logit before sampling (repeatable; -100 bans it)")
	fs.IntVar(&o.minTokens, "min-tokens", 0, "the ids that end the text cannot be drawn, nor a --stop string end it, before this many tokens")
	fs.BoolVar(&o.ignoreEOS, "ignore-eos", false, "do not end at the vocabulary's end-of-generation ids: run to -n, a stop string or --stop-token-id (fixed-length benchmarks)")
	fs.Float64Var(&o.repeatPenalty, "repeat-penalty", 1, "divide the positive logit (multiply the negative) of tokens in the prompt or output; 1 is off")
	fs.Float64Var(&o.frequencyPenalty, "frequency-penalty", 0, "subtract this from a token's logit per time it occurs in the output; in [-2, 2]")
	fs.Float64Var(&o.presencePenalty, "presence-penalty", 0, "subtract this from a token's logit if it occurs in the output; in [-2, 2]")
	fs.StringVar(&o.format, "response-format", "", "what the output must be: text, json_object (one JSON object) or json_schema (with --json-schema)")
	fs.StringVar(&o.jsonSchema, "json-schema", "", "a JSON Schema the output must satisfy, inline or @FILE (implies --response-format json_schema)")
	fs.StringVar(&o.jsonSchema, "j", "", "same as --json-schema")
	fs.StringVar(&o.grammar, "grammar", "", "a GBNF grammar (llama.cpp's format, rule root the start) the output must be a sentence of, inline or @FILE")
	fs.StringVar(&o.grammarFile, "grammar-file", "", "same as --grammar @FILE")
	fs.StringVar(&o.regex, "regex", "", "a regular expression (Python's syntax, as vLLM's guided_regex) the whole output must match")
	fs.Var(&o.choices, "choice", "the output must be exactly one of these: one --choice is split at commas (a,b,c); repeated, each value is one choice")
}

// readArg returns v, or the contents of file F for v = @F.
func readArg(flag, v string) (string, error) {
	name, ok := strings.CutPrefix(v, "@")
	if !ok {
		return v, nil
	}
	b, err := os.ReadFile(name)
	if err != nil {
		return "", usagef("--%s: %v", flag, err)
	}
	return string(b), nil
}

// ruleFormat is the response format --grammar, --regex or --choice asks for (nil:
// none), refused with --response-format or --json-schema and with one another.
func (o *samplingOptions) ruleFormat() (*specdv1.ResponseFormat, error) {
	if o.grammarFile != "" {
		if o.grammar != "" {
			return nil, usagef("--grammar and --grammar-file: give one of them")
		}
		b, err := os.ReadFile(o.grammarFile)
		if err != nil {
			return nil, usagef("--grammar-file: %v", err)
		}
		o.grammar, o.grammarFile = string(b), ""
	}
	var set []string
	for _, f := range []struct {
		name string
		on   bool
	}{{"--response-format", o.format != ""}, {"--json-schema", o.jsonSchema != ""}, {"--grammar", o.grammar != ""},
		{"--regex", o.regex != ""}, {"--choice", len(o.choices) > 0}} {
		if f.on {
			set = append(set, f.name)
		}
	}
	if len(set) > 1 && !(len(set) == 2 && set[0] == "--response-format" && set[1] == "--json-schema") {
		return nil, usagef("%s: give one of them", strings.Join(set, " and "))
	}
	switch {
	case o.grammar != "":
		g, err := readArg("grammar", o.grammar)
		if err != nil {
			return nil, err
		}
		return &specdv1.ResponseFormat{Type: specdv1.ResponseFormatType_RESPONSE_FORMAT_TYPE_GRAMMAR, Grammar: g}, nil
	case o.regex != "":
		return &specdv1.ResponseFormat{Type: specdv1.ResponseFormatType_RESPONSE_FORMAT_TYPE_REGEX, Regex: o.regex}, nil
	case len(o.choices) == 1:
		return &specdv1.ResponseFormat{Type: specdv1.ResponseFormatType_RESPONSE_FORMAT_TYPE_CHOICE, Choices: strings.Split(o.choices[0], ",")}, nil
	case len(o.choices) > 1:
		return &specdv1.ResponseFormat{Type: specdv1.ResponseFormatType_RESPONSE_FORMAT_TYPE_CHOICE, Choices: o.choices}, nil
	}
	return nil, nil
}

// responseFormat is the response format the flags ask for (nil: free text), checked as
// a server checks it.
func (o *samplingOptions) responseFormat() (*specdv1.ResponseFormat, error) {
	rf, err := o.ruleFormat()
	if err != nil || rf != nil {
		return o.checkFormat(rf, err)
	}
	schema, err := readArg("json-schema", o.jsonSchema)
	if err != nil {
		return nil, err
	}
	rf = &specdv1.ResponseFormat{JsonSchema: schema}
	switch o.format {
	case "", "json_schema":
		if schema == "" {
			if o.format == "" {
				return nil, nil
			}
			return nil, usagef("--response-format json_schema: give the schema with --json-schema")
		}
		rf.Type = specdv1.ResponseFormatType_RESPONSE_FORMAT_TYPE_JSON_SCHEMA
	case "text":
		rf.Type = specdv1.ResponseFormatType_RESPONSE_FORMAT_TYPE_TEXT
	case "json_object":
		rf.Type = specdv1.ResponseFormatType_RESPONSE_FORMAT_TYPE_JSON_OBJECT
	default:
		return nil, usagef("--response-format %q: want text, json_object or json_schema", o.format)
	}
	if schema != "" && rf.Type != specdv1.ResponseFormatType_RESPONSE_FORMAT_TYPE_JSON_SCHEMA {
		return nil, usagef("--json-schema goes with --response-format json_schema, not %s", o.format)
	}
	return o.checkFormat(rf, nil)
}

// checkFormat checks rf as a server does.
func (o *samplingOptions) checkFormat(rf *specdv1.ResponseFormat, err error) (*specdv1.ResponseFormat, error) {
	if err != nil {
		return nil, err
	}
	f, err := services.FormatFromProto(rf)
	if err != nil {
		return nil, usageError{err}
	}
	if f.Kind() != grammar.Text && o.ignoreEOS && len(o.stopIDs) == 0 {
		return nil, usagef("%s: a constrained output ends with an end-of-generation id: with --ignore-eos, give --stop-token-id", formatFlag(rf))
	}
	return rf, nil
}

// formatFlag names the flag that asked for rf.
func formatFlag(rf *specdv1.ResponseFormat) string {
	switch rf.GetType() {
	case specdv1.ResponseFormatType_RESPONSE_FORMAT_TYPE_GRAMMAR:
		return "--grammar"
	case specdv1.ResponseFormatType_RESPONSE_FORMAT_TYPE_REGEX:
		return "--regex"
	case specdv1.ResponseFormatType_RESPONSE_FORMAT_TYPE_CHOICE:
		return "--choice"
	}
	return "--response-format"
}

func (o *samplingOptions) params() (sample.Params, error) {
	if o.maxTokens < 0 || o.maxTokens > math.MaxUint32 {
		return sample.Params{}, usagef("-n %d: want 0 (up to the context) to %d", o.maxTokens, uint32(math.MaxUint32))
	}
	if o.maxTokens > 0 && o.minTokens > o.maxTokens {
		// The gRPC API refuses it too (sampling.min_tokens): the minimum could never be met.
		return sample.Params{}, usagef("--min-tokens %d: more than -n %d", o.minTokens, o.maxTokens)
	}
	if !(o.topP > 0 && o.topP <= 1) {
		return sample.Params{}, usagef("--top-p %v: want a value in (0, 1]", o.topP)
	}
	seed := o.seed.v
	if !o.seed.set {
		seed = rand.Uint64() >> 1
	}
	if !(o.repeatPenalty > 0) {
		return sample.Params{}, usagef("--repeat-penalty %v: want a value in (0, %v] (1 is off)", o.repeatPenalty, sample.MaxRepetitionPenalty)
	}
	p := sample.Params{Temperature: float32(o.temp), TopK: o.topK, TopP: float32(o.topP), MinP: float32(o.minP), Seed: seed,
		RepetitionPenalty: float32(o.repeatPenalty), FrequencyPenalty: float32(o.frequencyPenalty), PresencePenalty: float32(o.presencePenalty),
		MinTokens: o.minTokens}
	for _, id := range slices.Sorted(maps.Keys(o.bias)) {
		p.LogitBias = append(p.LogitBias, sample.Bias{ID: id, Value: o.bias[id]})
	}
	if err := p.Validate(); err != nil {
		return p, usageError{err}
	}
	return p, nil
}

type runResult struct {
	Model                  string  `json:"model"`
	Quant                  string  `json:"quant"`
	Threads                int     `json:"threads"`
	Kernels                string  `json:"kernels"`
	Seed                   uint64  `json:"seed"`
	PromptIDs              []int32 `json:"prompt_ids"`
	OutputIDs              []int32 `json:"output_ids"`
	Text                   string  `json:"text"`
	FinishReason           string  `json:"finish_reason"`
	PrefillTokensPerSecond float64 `json:"prefill_tokens_per_second"`
	DecodeTokensPerSecond  float64 `json:"decode_tokens_per_second"`
	// Logprobs: with --logprobs, one per output id, as specd generate prints them.
	Logprobs []tokenLogprob `json:"logprobs,omitempty"`
}

func runCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	var eo engineOptions
	var so samplingOptions
	eo.addFlags(fs, "specd-target-q8_0")
	so.addFlags(fs)
	var prompt, promptFile string
	var asJSON, noWarmup, logprobs, escape bool
	var topLogprobs uint
	fs.BoolVar(&logprobs, "logprobs", false, "report each token's log-probability under the model (with --json in its output, else one line per token on stderr)")
	fs.UintVar(&topLogprobs, "top-logprobs", 0, "with --logprobs: also the N likeliest tokens at each position (at most 20)")
	fs.BoolVar(&noWarmup, "no-warmup", false, "skip the warm-up pass before the prompt")
	fs.StringVar(&prompt, "p", "", "prompt text")
	fs.StringVar(&prompt, "prompt", "", "same as -p")
	fs.StringVar(&promptFile, "f", "", "read the prompt from this file (- for standard input); as llama-cli -f, one trailing line feed is dropped")
	fs.StringVar(&promptFile, "file", "", "same as -f")
	fs.BoolVar(&escape, "e", false, `read \n \r \t \' \" \\ and \xHH in the prompt (-p or -f) as the bytes they stand for, as llama-cli does by default (default: the prompt as given)`)
	fs.BoolVar(&escape, "escape", false, "same as -e")
	fs.BoolVar(&asJSON, "json", false, "print one JSON object instead of streaming text")
	if err := parseFlags(fs, args, stderr); err != nil {
		return err
	}
	if err := eo.validate(); err != nil {
		return err
	}
	params, err := so.params()
	if err != nil {
		return err
	}
	if promptFile != "" {
		if prompt != "" {
			return usagef("-p and -f: give one of them")
		}
		b, err := readInput(promptFile)
		if err != nil {
			return usageError{fmt.Errorf("-f: %w", err)}
		}
		// llama-cli -f (b4748) drops one trailing line feed, the one an editor ends a
		// file with: a prompt file gives the tokens its text given to -p does.
		prompt = strings.TrimSuffix(string(b), "\n")
	}
	if escape {
		prompt = processEscapes(prompt)
	}
	if prompt == "" {
		return usagef("empty prompt (-p or -f)")
	}
	if err := checkLogprobFlags(logprobs, topLogprobs); err != nil {
		return err
	}
	m, err := eo.load(ctx, stderr)
	if err != nil {
		return err
	}
	defer m.Close()
	pool := kernels.NewPool(eo.threads)
	defer pool.Close()
	kv, err := m.NewKVPool(eo.kvBudget, eo.kvTypeValue())
	if err != nil {
		return usageError{err}
	}
	ids := m.Tok.Prompt(prompt) // as a verifier encodes a text prompt
	// -n 0, or more than fits, runs to the end of the context (finish "context").
	if so.maxTokens == 0 || len(ids)+so.maxTokens > m.Context {
		so.maxTokens = max(1, m.Context-len(ids))
	}
	seq := kv.NewSeq()
	defer seq.Release()
	st := m.NewState(pool, seq, 64)
	for _, id := range so.stopIDs {
		if int(id) >= m.Vocab {
			return usagef("--stop-token-id %d: outside the vocabulary of %d", id, m.Vocab)
		}
	}
	for _, b := range params.LogitBias {
		if int(b.ID) >= m.Vocab {
			return usagef("--logit-bias %d: outside the vocabulary of %d", b.ID, m.Vocab)
		}
	}
	rf, err := so.responseFormat()
	if err != nil {
		return err
	}
	format, err := services.FormatFromProto(rf)
	if err != nil {
		return usageError{err}
	}
	if g := format.Grammar(m.Tok); g != nil {
		params.Grammar = g
	}
	req := generate.Request{Prompt: ids, Sampling: params, Limits: generate.Limits{
		MaxTokens: so.maxTokens, Context: m.Context, Stop: so.stop,
	}, Logprobs: logprobs, TopLogprobs: int(topLogprobs)}
	req.Limits.EndAt(m.Tok.EOG(), m.Tok.BOS(), m.StopAtBOS, so.stopIDs, so.ignoreEOS)
	if len(ids) >= m.Context {
		return usagef("prompt of %d tokens does not fit the context of %d", len(ids), m.Context)
	}
	if !noWarmup {
		// As llama.cpp does before its first real pass (it also clears its whole KV
		// buffer at load): fault in the KV memory this request will use and warm the
		// state, so that the prompt's timing does not include page faults.
		kv.Reserve(len(ids) + so.maxTokens)
		if err := st.Warm(); err != nil && !errors.Is(err, kvcache.ErrExhausted) {
			return err // a budget too small to warm up may still hold this request
		}
	}
	if !asJSON {
		fmt.Fprint(stdout, prompt)
	}
	var lps []tokenLogprob
	out, stats, err := generate.Run(ctx, st, req, func(t generate.Token) error {
		if t.Logprobs != nil {
			lps = append(lps, logprobJSON(services.LogprobsToProto(t.Logprobs)))
		}
		if !asJSON && t.Text != "" {
			_, err := io.WriteString(stdout, t.Text)
			return err
		}
		return nil
	})
	if err != nil {
		return err
	}
	if !asJSON {
		fmt.Fprintln(stdout)
		printLogprobs(stderr, out.IDs, lps)
		fmt.Fprintf(stderr, "%d prompt tokens at %.0f tok/s, %d new tokens at %.0f tok/s (%s)\n",
			stats.PromptTokens, rate(stats.PromptTokens, stats.Prefill.Seconds()),
			stats.Tokens, rate(stats.Tokens-1, stats.Decode.Seconds()), out.Reason)
		return nil
	}
	res := runResult{
		Model: m.Name, Quant: m.Quant.String(), Threads: pool.Threads(), Kernels: kernels.Impl(), Seed: params.Seed,
		PromptIDs: ids, OutputIDs: out.IDs, Text: out.Text(), FinishReason: out.Reason.String(),
		PrefillTokensPerSecond: rate(stats.PromptTokens, stats.Prefill.Seconds()),
		DecodeTokensPerSecond:  rate(stats.Tokens-1, stats.Decode.Seconds()),
		Logprobs:               lps,
	}
	if res.OutputIDs == nil {
		res.OutputIDs = []int32{}
	}
	enc := json.NewEncoder(stdout)
	return enc.Encode(res)
}

func rate(n int, secs float64) float64 {
	if n <= 0 || secs <= 0 {
		return 0
	}
	return float64(n) / secs
}
