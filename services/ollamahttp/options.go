package ollamahttp

import (
	"bytes"
	"encoding/json"
	"math"
	"slices"
	"strings"
	"time"

	specdv1 "github.com/specd-dev/specd/proto/specd/v1"
)

// Ollama's defaults for the sampling options a request leaves out (its
// api.DefaultOptions): a request without options samples as Ollama would, not
// greedily as specd's gRPC API does.
const (
	DefaultTemperature = 0.8
	DefaultTopK        = 40
	DefaultTopP        = 0.9
	// DefaultRepeatLastN is the window of Ollama's penalties: the last 64 tokens.
	DefaultRepeatLastN = 64
)

// options are a request's options, decoded: a nil pointer is an option not sent (or
// sent as null, which Ollama takes as not sent).
type options struct {
	temperature, topP, minP, typicalP, tfsZ               *float64
	repeatPenalty, presencePenalty, frequencyPenalty      *float64
	topK, seed, numPredict, repeatLastN, numCtx, mirostat *int64
	penalizeNewline                                       *bool
	stop                                                  []string
	mirostatTau, mirostatEta                              *float64 // without mirostat they do nothing
}

// parseOptions decodes raw, a request's options, as Ollama's Options.FromMap does: a
// number for a float, a number for an integer (a fraction truncated, as Ollama
// truncates it), a boolean, an array of strings for stop.
func parseOptions(raw map[string]json.RawMessage) (*options, error) {
	o := &options{}
	floats := map[string]**float64{"temperature": &o.temperature, "top_p": &o.topP, "min_p": &o.minP, "typical_p": &o.typicalP,
		"tfs_z": &o.tfsZ, "repeat_penalty": &o.repeatPenalty, "presence_penalty": &o.presencePenalty,
		"frequency_penalty": &o.frequencyPenalty, "mirostat_tau": &o.mirostatTau, "mirostat_eta": &o.mirostatEta}
	ints := map[string]**int64{"top_k": &o.topK, "seed": &o.seed, "num_predict": &o.numPredict, "repeat_last_n": &o.repeatLastN,
		"num_ctx": &o.numCtx, "mirostat": &o.mirostat}
	keys := make([]string, 0, len(raw))
	for k := range raw {
		keys = append(keys, k)
	}
	slices.Sort(keys) // the first bad option named is the same every time
	for _, k := range keys {
		v := bytes.TrimSpace(raw[k])
		if string(v) == "null" {
			continue
		}
		name := "options." + k
		if dst, ok := floats[k]; ok {
			var f float64
			if err := json.Unmarshal(v, &f); err != nil {
				return nil, badRequest(name, "want a number")
			}
			*dst = &f
			continue
		}
		if dst, ok := ints[k]; ok {
			var f float64
			if err := json.Unmarshal(v, &f); err != nil {
				return nil, badRequest(name, "want an integer")
			}
			if !(f > math.MinInt64 && f < math.MaxInt64) {
				return nil, badRequest(name, "%v: out of range", f)
			}
			n := int64(f)
			*dst = &n
			continue
		}
		switch {
		case k == "penalize_newline":
			var b bool
			if err := json.Unmarshal(v, &b); err != nil {
				return nil, badRequest(name, "want a boolean")
			}
			o.penalizeNewline = &b
		case k == "stop":
			if err := json.Unmarshal(v, &o.stop); err != nil {
				return nil, badRequest(name, "want an array of strings")
			}
		default:
			// The options that choose how Ollama runs a model, not what it writes
			// (num_thread, num_gpu, main_gpu, num_batch, low_vram, f16_kv, logits_all,
			// vocab_only, use_mmap, use_mlock, numa), num_keep (only a context shift
			// reads it, and specd never shifts), and options Ollama itself does not
			// know, which it ignores too: taken and ignored, whatever their value.
		}
	}
	return o, nil
}

// sampling is the request's sampling parameters, stop strings and length limit in
// req: each option mapped exactly, or refused by name where specd cannot do what
// Ollama would. What depends on the model's context (num_ctx, repeat_last_n) is
// checked by window once the model is known.
func (o *options) apply(req *specdv1.GenerateRequest) error {
	sp := &specdv1.SamplingParams{Temperature: DefaultTemperature, TopK: DefaultTopK}
	topP := float32(DefaultTopP)
	sp.TopP = &topP
	if t := o.temperature; t != nil {
		if *t < 0 {
			return badRequest("options.temperature", "%v: want 0 or more", *t)
		}
		sp.Temperature = float32(*t)
	}
	if k := o.topK; k != nil {
		// Ollama keeps every token for a top_k of 0 or less, as specd's 0 does.
		sp.TopK = uint32(min(max(*k, 0), math.MaxUint32))
	}
	if p := o.topP; p != nil {
		switch {
		case *p >= 1:
			sp.TopP = nil // Ollama clamps to 1: off
		case *p <= 0:
			return badRequest("options.top_p", "%v: want a number in (0, 1] (1 is off)", *p)
		default:
			v := float32(*p)
			sp.TopP = &v
		}
	}
	if m := o.minP; m != nil && *m > 0 {
		v := float32(min(*m, 1)) // Ollama clamps to [0, 1]; 0 is off
		sp.MinP = &v
	}
	if s := o.seed; s != nil && *s != -1 {
		v := uint64(*s) // -1 is Ollama's "random"; any other value seeds the draws
		sp.Seed = &v
	}
	for _, x := range []struct {
		name string
		v    *float64
		off  float64
		why  string
	}{
		{"typical_p", o.typicalP, 1, "locally typical sampling is not supported"},
		{"tfs_z", o.tfsZ, 1, "tail-free sampling is not supported"},
	} {
		if x.v != nil && *x.v != x.off {
			return badRequest("options."+x.name, "%v: %s (%v is off)", *x.v, x.why, x.off)
		}
	}
	if m := o.mirostat; m != nil && *m != 0 {
		return badRequest("options.mirostat", "%d: Mirostat sampling is not supported (0 is off)", *m)
	}
	if err := o.penalties(sp); err != nil {
		return err
	}
	req.Sampling = sp
	if n := o.numPredict; n != nil {
		switch {
		case *n == -1 || *n == -2 || *n == 0:
			// -1 (no limit) and -2 (fill the context): the output runs until the end
			// of text or the context; Ollama takes 0 as no limit too. specd ends at a
			// full context (done_reason "length"), where Ollama's -1 would shift it.
			req.MaxTokens = 0
		case *n < 0:
			return badRequest("options.num_predict", "%d: want a count, or -1 (no limit) or -2 (fill the context)", *n)
		case *n > math.MaxUint32:
			req.MaxTokens = math.MaxUint32
		default:
			req.MaxTokens = uint32(*n)
		}
	}
	for i, s := range o.stop {
		if s == "" {
			return badRequest("options.stop", "stop string %d is empty", i)
		}
	}
	req.Stop = o.stop
	return nil
}

// penalties maps repeat_penalty, presence_penalty and frequency_penalty. Ollama
// (llama.cpp's sampler) applies all three over the last repeat_last_n tokens of the
// prompt and output; 0 turns them off. specd's repetition penalty covers the whole
// prompt and output, which is Ollama's with repeat_last_n -1 (the whole context), so
// repeat_penalty is taken with a window that covers the context (checked in window);
// specd's presence and frequency penalties count the output alone (OpenAI's
// definition), so those are refused unless off.
func (o *options) penalties(sp *specdv1.SamplingParams) error {
	if o.repeatLastN != nil && *o.repeatLastN < -1 {
		return badRequest("options.repeat_last_n", "%d: want a count, 0 (off) or -1 (the whole context)", *o.repeatLastN)
	}
	if o.repeatLastN != nil && *o.repeatLastN == 0 {
		return nil // no window: no penalty applies, whatever its value
	}
	for _, x := range []struct {
		name string
		v    *float64
	}{{"presence_penalty", o.presencePenalty}, {"frequency_penalty", o.frequencyPenalty}} {
		if x.v != nil && *x.v != 0 {
			return badRequest("options."+x.name, "%v: not supported here: Ollama counts the last repeat_last_n tokens of prompt and output, specd the output alone "+
				"(send it to /v1/chat/completions or /v1/completions, which define it so)", *x.v)
		}
	}
	if p := o.repeatPenalty; p != nil && *p != 1 {
		if !(*p > 0 && *p <= 100) {
			return badRequest("options.repeat_penalty", "%v: want a number in (0, 100] (1 is off)", *p)
		}
		v := float32(*p)
		sp.RepetitionPenalty = &v
	}
	if o.penalizeNewline != nil && !*o.penalizeNewline && sp.RepetitionPenalty != nil {
		return badRequest("options.penalize_newline", "false: not supported with repeat_penalty (specd penalizes every token alike)")
	}
	return nil
}

// window checks the options that depend on the model's context length ctx: num_ctx
// at or above it (Ollama caps a larger one at the model's own; a smaller one would
// make Ollama truncate the prompt or shift the context, which specd does not do), and
// repeat_last_n covering it when a repetition penalty applies.
func (o *options) window(ctx int, sp *specdv1.SamplingParams) *Error {
	if n := o.numCtx; n != nil && *n > 0 && *n < int64(ctx) {
		return badRequest("options.num_ctx", "%d: this model runs with its whole context of %d tokens, which specd does not shrink: send %d or more, or leave it out (limit the output with num_predict)", *n, ctx, ctx)
	}
	if sp.GetRepetitionPenalty() == 0 {
		return nil
	}
	last := int64(DefaultRepeatLastN)
	if o.repeatLastN != nil {
		last = *o.repeatLastN
	}
	if last != -1 && last < int64(ctx) {
		return badRequest("options.repeat_penalty", "with repeat_last_n %d: specd penalizes every token of the prompt and output, not the last %d: send repeat_last_n -1 (the whole context, %d tokens) to ask for that", last, last, ctx)
	}
	return nil
}

// stream reports the stream parameter: nil is true, as in Ollama's API.
func stream(s *bool) bool { return s == nil || *s }

// keepAlive checks keep_alive, which cannot change how long specd keeps a model (as
// long as it runs): a duration string ("5m", "-1s"), a number of seconds, or null. It
// reports whether it is zero, which with nothing to generate is Ollama's call to
// unload the model.
func keepAlive(raw json.RawMessage) (zero bool, err error) {
	v := bytes.TrimSpace(raw)
	if len(v) == 0 || string(v) == "null" {
		return false, nil
	}
	var f float64
	if json.Unmarshal(v, &f) == nil {
		return f == 0, nil
	}
	var s string
	if err := json.Unmarshal(v, &s); err != nil {
		return false, badRequest("keep_alive", "want a duration (\"5m\") or a number of seconds")
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return false, badRequest("keep_alive", "%q: %v", s, err)
	}
	return d == 0, nil
}

// isOn reports whether a raw JSON parameter is set to something other than null,
// false, 0 or "".
func isOn(raw json.RawMessage) bool {
	switch strings.TrimSpace(string(raw)) {
	case "", "null", "false", "0", `""`:
		return false
	}
	return true
}
