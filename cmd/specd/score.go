package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"

	"github.com/specd-dev/specd/kernels"
	"github.com/specd-dev/specd/sample"
)

type scoreResult struct {
	Model      string    `json:"model"`
	Quant      string    `json:"quant"`
	IDs        []int32   `json:"ids"`
	Argmax     []int32   `json:"argmax"`
	Logprobs   []float64 `json:"logprobs"`
	Perplexity *float64  `json:"perplexity"` // nil (null) for one id: nothing was predicted
}

func parseIDs(s string) ([]int32, error) {
	var ids []int32
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		v, err := strconv.ParseInt(f, 10, 32)
		if err != nil {
			return nil, usagef("--ids: %q is not a token id", f)
		}
		ids = append(ids, int32(v))
	}
	if len(ids) == 0 {
		return nil, usagef("--ids: no token ids")
	}
	return ids, nil
}

func scoreCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("score", flag.ContinueOnError)
	var eo engineOptions
	eo.addFlags(fs, "specd-target-q8_0")
	var idList, file string
	var asJSON bool
	var chunks int
	fs.StringVar(&idList, "ids", "", "comma-separated token ids (include the BOS)")
	fs.StringVar(&file, "f", "", "perplexity of a text file (- for standard input) as llama-perplexity computes it: chunks of --ctx-size tokens, each starting with BOS, the second half of each scored")
	fs.StringVar(&file, "file", "", "same as -f")
	fs.IntVar(&chunks, "chunks", -1, "with -f: score at most this many chunks (-1: all), as llama-perplexity --chunks")
	fs.BoolVar(&asJSON, "json", false, "print one JSON object")
	if err := parseFlags(fs, args, stderr); err != nil {
		return err
	}
	if err := eo.validate(); err != nil {
		return err
	}
	if (idList == "") == (file == "") {
		return usagef("give exactly one of --ids and -f")
	}
	if file != "" {
		return perplexityCmd(ctx, eo, file, chunks, asJSON, stdout, stderr)
	}
	if flagSet(fs, "chunks") {
		return usagef("--chunks goes with -f")
	}
	ids, err := parseIDs(idList)
	if err != nil {
		return err
	}
	m, err := eo.load(ctx, stderr)
	if err != nil {
		return err
	}
	defer m.Close()
	for _, id := range ids {
		if id < 0 || int(id) >= m.Vocab {
			return usagef("--ids: token %d outside the vocabulary of %d", id, m.Vocab)
		}
	}
	if len(ids) > m.Context {
		return usagef("--ids: %d tokens exceed the context of %d", len(ids), m.Context)
	}
	pool := kernels.NewPool(eo.threads)
	defer pool.Close()
	kv, err := m.NewKVPool(eo.kvBudget, eo.kvTypeValue())
	if err != nil {
		return usageError{err}
	}
	seq := kv.NewSeq()
	defer seq.Release()
	st := m.NewState(pool, seq, 64)
	logits, err := st.Forward(ids, true)
	if err != nil {
		return err
	}
	res := scoreResult{Model: m.Name, Quant: m.Quant.String(), IDs: ids, Logprobs: []float64{}}
	nll := 0.0
	for i := range ids {
		row := logits[i*m.Vocab : (i+1)*m.Vocab]
		res.Argmax = append(res.Argmax, sample.Argmax(row))
		if i+1 < len(ids) {
			lp := logProb(row, ids[i+1])
			res.Logprobs = append(res.Logprobs, lp)
			nll -= lp
		}
	}
	ppl := "-"
	if n := len(res.Logprobs); n > 0 {
		res.Perplexity = new(math.Exp(nll / float64(n)))
		ppl = strconv.FormatFloat(*res.Perplexity, 'f', 4, 64)
	}
	if asJSON {
		return json.NewEncoder(stdout).Encode(res)
	}
	fmt.Fprintf(stdout, "%5s %7s %7s %10s\n", "pos", "id", "argmax", "logprob")
	for i, id := range ids {
		lp := "-"
		if i < len(res.Logprobs) {
			lp = strconv.FormatFloat(res.Logprobs[i], 'f', 4, 64)
		}
		fmt.Fprintf(stdout, "%5d %7d %7d %10s\n", i, id, res.Argmax[i], lp)
	}
	fmt.Fprintf(stdout, "perplexity %s over %d predictions\n", ppl, len(res.Logprobs))
	return nil
}

// logProb returns log softmax(logits)[id], computed in float64.
func logProb(logits []float32, id int32) float64 {
	mx := float64(logits[sample.Argmax(logits)])
	sum := 0.0
	for _, v := range logits {
		sum += math.Exp(float64(v) - mx)
	}
	return float64(logits[id]) - mx - math.Log(sum)
}
