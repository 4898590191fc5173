package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strings"

	"github.com/specd-dev/specd/ggml"
	"github.com/specd-dev/specd/kernels"
	"github.com/specd-dev/specd/model"
)

// pplResult is what score -f prints.
type pplResult struct {
	Model       string  `json:"model"`
	Quant       string  `json:"quant"`
	Tokens      int     `json:"tokens"`   // of the whole text, BOS included
	CtxSize     int     `json:"ctx_size"` // tokens per chunk
	Predictions int     `json:"predictions"`
	Perplexity  float64 `json:"perplexity"`
	// StdErr is llama-perplexity's "+/-": the standard error of the mean negative
	// log-likelihood times the perplexity (0 for a single prediction).
	StdErr float64 `json:"stderr"`
	// Running is the perplexity over chunks 1..i after chunk i, llama-perplexity's [i].
	Running []float64 `json:"running"`
}

// minPerplexityCtx is the smallest chunk that scores anything: the second half of a
// chunk of n tokens holds n-1-n/2 predictions.
const minPerplexityCtx = 4

// perplexity scores ids as llama-perplexity (llama.cpp b4748, examples/perplexity,
// without --ppl-stride) does: the text's tokens (BOS first where the vocabulary asks
// for one) are cut into len(ids)/n whole chunks of n tokens, the rest dropped; each
// chunk runs in a fresh context with its first token replaced by BOS (where the
// vocabulary asks for BOS), and only the second half is scored: the logits after
// positions n/2 … n-2 against the tokens that follow them. Positions near the start
// of a chunk see little context; llama.cpp leaves them out so that every scored
// token sees at least n/2 others. maxChunks < 0 scores all of them.
func perplexity(ctx context.Context, m *model.Model, pool *kernels.Pool, budget int64, kvType ggml.Type, ids []int32, n, maxChunks int) (pplResult, error) {
	res := pplResult{Model: m.Name, Quant: m.Quant.String(), Tokens: len(ids), CtxSize: n}
	chunks := len(ids) / n
	if maxChunks >= 0 {
		chunks = min(chunks, maxChunks)
	}
	kv, err := m.NewKVPool(budget, kvType)
	if err != nil {
		return res, usageError{err}
	}
	seq := kv.NewSeq()
	defer seq.Release()
	st := m.NewState(pool, seq, 64)
	first := n / 2
	chunk := make([]int32, n)
	nll, nll2 := 0.0, 0.0
	for c := range chunks {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		copy(chunk, ids[c*n:(c+1)*n])
		if m.Tok.AddBOS() {
			chunk[0] = m.Tok.BOS()
		}
		seq.Truncate(0)
		logits, err := st.Forward(chunk, true)
		if err != nil {
			return res, err
		}
		for j := first; j < n-1; j++ {
			lp := logProb(logits[j*m.Vocab:(j+1)*m.Vocab], chunk[j+1])
			nll -= lp
			nll2 += lp * lp
			res.Predictions++
		}
		res.Running = append(res.Running, math.Exp(nll/float64(res.Predictions)))
	}
	if res.Predictions == 0 {
		return res, nil
	}
	cnt := float64(res.Predictions)
	mean := nll / cnt
	res.Perplexity = math.Exp(mean)
	if v := nll2/cnt - mean*mean; v > 0 && res.Predictions > 1 {
		res.StdErr = math.Sqrt(v/(cnt-1)) * res.Perplexity
	}
	return res, nil
}

// perplexityCmd is score -f.
func perplexityCmd(ctx context.Context, eo engineOptions, file string, maxChunks int, asJSON bool, stdout, stderr io.Writer) error {
	if maxChunks < -1 || maxChunks == 0 {
		return usagef("--chunks %d: want a positive number, or -1 for all", maxChunks)
	}
	b, err := readInput(file)
	if err != nil {
		return usageError{fmt.Errorf("-f: %w", err)}
	}
	m, err := eo.load(ctx, stderr)
	if err != nil {
		return err
	}
	defer m.Close()
	n := m.Context // --ctx-size, else the model's trained length
	if n < minPerplexityCtx {
		return usagef("--ctx-size %d: want at least %d tokens per chunk", n, minPerplexityCtx)
	}
	// As llama-perplexity: add_special (BOS where the vocabulary asks for it), special-
	// token text read as text.
	ids, err := m.Tok.TokenizeContext(ctx, string(b), true, false)
	if err != nil {
		return err
	}
	if len(ids) < n {
		return usagef("-f: %d tokens, fewer than one chunk of --ctx-size %d", len(ids), n)
	}
	pool := kernels.NewPool(eo.threads)
	defer pool.Close()
	res, err := perplexity(ctx, m, pool, eo.kvBudget, eo.kvTypeValue(), ids, n, maxChunks)
	if err != nil {
		return err
	}
	if asJSON {
		return json.NewEncoder(stdout).Encode(res)
	}
	var sb strings.Builder
	for i, p := range res.Running {
		fmt.Fprintf(&sb, "[%d]%.4f,", i+1, p)
	}
	fmt.Fprintln(stdout, sb.String())
	fmt.Fprintf(stdout, "%d tokens, %d chunks of %d, %d predictions\n", res.Tokens, len(res.Running), n, res.Predictions)
	fmt.Fprintf(stdout, "Final estimate: PPL = %.4f +/- %.5f\n", res.Perplexity, res.StdErr)
	return nil
}
