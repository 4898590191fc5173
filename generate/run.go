package generate

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/specd-dev/specd/model"
	"github.com/specd-dev/specd/sample"
	"github.com/specd-dev/specd/tokenizer"
)

// ErrNoToken is returned when the logits leave the sampler no token to draw — NaN or
// infinite logits, which a model gives only when its numbers overflowed. Nothing is
// committed from those logits.
var ErrNoToken = errors.New("the model's logits leave no token to draw (NaN or infinite)")

// Request is one plain generation.
type Request struct {
	Prompt   []int32 // must not be empty
	Sampling sample.Params
	Limits   Limits
	// Logprobs: each token streamed carries its log-probabilities (Token.Logprobs), with
	// the TopLogprobs likeliest tokens.
	Logprobs    bool
	TopLogprobs int
}

// Token is one generated token as streamed: its id, absolute position and the text
// that became visible with it (possibly empty), and how likely it was when the request
// asked (nil otherwise).
type Token struct {
	ID       int32
	Pos      int
	Text     string
	Logprobs *Logprobs
}

// Logprobs is how likely a generated token was under the model's own distribution at
// its position — the log-softmax of the logits, before temperature and filters — and
// which tokens were likeliest there.
type Logprobs struct {
	Logprob float32
	Bytes   []byte // the token's bytes (tokenizer.TokenBytes)
	// Text is what the token adds to the decoded text where it stands
	// (tokenizer.Decoder.Next): "" for a control token or a byte that begins a
	// character, the whole character for the token that completes it.
	Text string
	Top  []TopLogprob // most likely first, equal logits by lower id
}

// TopLogprob is one of the likeliest tokens at a position.
type TopLogprob struct {
	ID      int32
	Logprob float32
	Bytes   []byte
	Text    string // what it would have added to the text there, as Logprobs.Text
}

// Peeker tells what a token would add to a text being decoded, without adding it: a
// *tokenizer.Decoder, or an Output.
type Peeker interface{ Peek(id int32) string }

// MaxTopLogprobs is the most likeliest tokens a request may ask for at each position.
const MaxTopLogprobs = 20

// NewLogprobs returns how likely id was at a position whose logits are given, with the
// top likeliest tokens there (at most MaxTopLogprobs), their bytes from tok and their
// text from at, which stands where id is decoded (before it).
func NewLogprobs(logits []float32, id int32, top int, tok *tokenizer.Tokenizer, at Peeker) *Logprobs {
	buf, _ := scratchPool.Get().(*[]float32)
	if buf == nil {
		buf = new([]float32)
	}
	var lse float64
	lse, *buf = sample.LogSumExp(logits, *buf)
	scratchPool.Put(buf)
	lp := &Logprobs{Logprob: float32(float64(logits[id]) - lse), Bytes: tok.TokenBytes(id), Text: at.Peek(id)}
	if top = min(top, MaxTopLogprobs); top > 0 {
		var ids [MaxTopLogprobs]int32
		best := sample.TopIDs(ids[:0], logits, top)
		lp.Top = make([]TopLogprob, len(best))
		for i, t := range best {
			lp.Top[i] = TopLogprob{ID: t, Logprob: float32(float64(logits[t]) - lse), Bytes: tok.TokenBytes(t), Text: at.Peek(t)}
		}
	}
	return lp
}

// scratchPool holds the buffers NewLogprobs runs the softmax in, a vocabulary's worth.
var scratchPool sync.Pool

// Stats times a generation.
type Stats struct {
	PromptTokens int
	Tokens       int
	Prefill      time.Duration // forward pass over the prompt
	Decode       time.Duration // from the first generated token to the last
	FirstToken   time.Duration // from the start to the first token
}

// ErrEmptyPrompt is returned by Run for a request without prompt tokens.
var ErrEmptyPrompt = errors.New("empty prompt")

// Prefill makes st's cache hold exactly prompt and returns the logits after its last
// token. Cached positions that already match prompt are reused.
func Prefill(st *model.State, prompt []int32) ([]float32, error) {
	if len(prompt) == 0 {
		return nil, ErrEmptyPrompt
	}
	keep := min(st.Seq.Len(), len(prompt)-1)
	st.Seq.Truncate(keep)
	return st.Forward(prompt[keep:], false)
}

// Run decodes plainly on st: prefill, then one forward pass per token, sampling each
// token with the noise of its absolute position. emit receives every token; an error
// from emit or a done ctx stops the loop and is returned. On return the cache holds the
// prompt and every generated token that was fed back.
func Run(ctx context.Context, st *model.State, req Request, emit func(Token) error) (*Output, Stats, error) {
	t0 := time.Now()
	m := st.Model()
	lim := req.Limits
	lim.MinTokens = req.Sampling.MinTokens // stop strings wait as long as the ends
	out := NewOutput(m.Tok, req.Prompt, lim)
	stats := Stats{PromptTokens: len(req.Prompt)}
	logits, err := Prefill(st, req.Prompt)
	if err != nil {
		return out, stats, err
	}
	stats.Prefill = time.Since(t0)
	smp := sample.New(req.Sampling)
	smp.SetPrompt(req.Prompt)
	smp.SetEnds(req.Limits.Ends())
	var tDecode time.Time
	for {
		if err := ctx.Err(); err != nil {
			return out, stats, err
		}
		pos := out.Next()
		id := smp.Sample(logits, pos)
		if id < 0 {
			return out, stats, fmt.Errorf("%w: at position %d", ErrNoToken, pos)
		}
		smp.Observe(id)
		var lp *Logprobs
		if req.Logprobs {
			lp = NewLogprobs(logits, id, req.TopLogprobs, m.Tok, out) // before id is pushed: its text where it stands
		}
		text := out.Push(id)
		if len(out.IDs) == 1 && stats.FirstToken == 0 {
			stats.FirstToken = time.Since(t0)
			tDecode = time.Now()
		}
		if len(out.IDs) > stats.Tokens {
			stats.Tokens = len(out.IDs)
			tok := Token{ID: id, Pos: pos, Text: text}
			tok.Logprobs = lp
			if err := emit(tok); err != nil {
				return out, stats, err
			}
		} else if text != "" {
			if err := emit(Token{ID: -1, Pos: pos, Text: text}); err != nil {
				return out, stats, err
			}
		}
		if out.Done() {
			break
		}
		if logits, err = st.Forward([]int32{id}, false); err != nil {
			return out, stats, err
		}
	}
	if !tDecode.IsZero() {
		stats.Decode = time.Since(tDecode)
	}
	return out, stats, nil
}
