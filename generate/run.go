package generate

import (
	"context"
	"errors"
	"time"

	"github.com/specd-dev/specd/model"
	"github.com/specd-dev/specd/sample"
)

// Request is one plain generation.
type Request struct {
	Prompt   []int32 // must not be empty
	Sampling sample.Params
	Limits   Limits
}

// Token is one generated token as streamed: its id, absolute position and the text
// that became visible with it (possibly empty).
type Token struct {
	ID   int32
	Pos  int
	Text string
}

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
	out := NewOutput(m.Tok, req.Prompt, req.Limits)
	stats := Stats{PromptTokens: len(req.Prompt)}
	logits, err := Prefill(st, req.Prompt)
	if err != nil {
		return out, stats, err
	}
	stats.Prefill = time.Since(t0)
	smp := sample.New(req.Sampling)
	var tDecode time.Time
	for {
		if err := ctx.Err(); err != nil {
			return out, stats, err
		}
		pos := out.Next()
		id := smp.Sample(logits, pos)
		text := out.Push(id)
		if len(out.IDs) == 1 && stats.FirstToken == 0 {
			stats.FirstToken = time.Since(t0)
			tDecode = time.Now()
		}
		if len(out.IDs) > stats.Tokens {
			stats.Tokens = len(out.IDs)
			if err := emit(Token{ID: id, Pos: pos, Text: text}); err != nil {
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
