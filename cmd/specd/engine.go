package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"runtime"
	"strings"

	"github.com/specd-dev/specd/ggml"
	"github.com/specd-dev/specd/kernels"
	"github.com/specd-dev/specd/model"
	"github.com/specd-dev/specd/modelpath"
)

// engineOptions are the flags of every command that loads a model.
type engineOptions struct {
	models    string
	model     string
	tokenizer string
	quant     string
	threads   int
	kvBudget  int64
	kvType    string
	context   int

	// prefix is what the command line puts before this service's flag names: "" for
	// the service's own command, "draft-" for the draft's flags in up. Errors name the
	// flags as the operator typed them.
	prefix string
}

// flag is the command-line spelling of this service's flag name.
func (o *engineOptions) flag(name string) string { return "--" + o.prefix + name }

func (o *engineOptions) addFlags(fs *flag.FlagSet, defModel string) {
	fs.StringVar(&o.models, "models", "", "model directory (default $"+modelpath.EnvVar+", else ../shared/models, else the user cache)")
	fs.StringVar(&o.model, "m", defModel, "model: a file path, a name in the model directory, or hf:ORG/REPO[:QUANT|:FILE] (pulled from Hugging Face on first use)")
	fs.StringVar(&o.model, "model", defModel, "same as -m")
	fs.StringVar(&o.tokenizer, "tokenizer", "", "tokenizer.bin for llama2.c checkpoints (default: beside the checkpoint)")
	fs.StringVar(&o.quant, "quant", "", "convert weights at load: q8_0, q4_0, bf16, f16 or f32 (default: as stored)")
	fs.IntVar(&o.threads, "threads", min(2, runtime.NumCPU()), "compute threads")
	fs.IntVar(&o.threads, "t", min(2, runtime.NumCPU()), "same as --threads")
	fs.Int64Var(&o.kvBudget, "kv-budget", 256<<20, "KV cache budget in bytes")
	fs.StringVar(&o.kvType, "kv-type", "f32", "KV cache entry type: f32 or f16")
	fs.IntVar(&o.context, "ctx-size", 0, "context length in positions, at most the model's trained length (default: all of it)")
	fs.IntVar(&o.context, "c", 0, "same as --ctx-size")
}

func (o *engineOptions) validate() error {
	if o.model == "" {
		if o.prefix != "" {
			return usagef("%s: empty model path", o.flag("model"))
		}
		return usagef("empty model path (-m)")
	}
	if o.threads < 1 || o.threads > 256 {
		return usagef("%s %d: want 1..256", o.flag("threads"), o.threads)
	}
	if o.context < 0 {
		return usagef("%s %d: want a positive number of positions, or 0 for the model's", o.flag("ctx-size"), o.context)
	}
	if o.kvBudget <= 0 {
		return usagef("%s %d: want a positive number of bytes", o.flag("kv-budget"), o.kvBudget)
	}
	if o.quant != "" {
		t, err := ggml.ParseType(o.quant)
		if err != nil {
			return usagef("%s: %v", o.flag("quant"), err)
		}
		if !kernels.CanQuantize(t) {
			return usagef("%s %v: specd reads this type but cannot convert to it yet (want q8_0, q4_0, bf16, f16 or f32)", o.flag("quant"), t)
		}
	}
	if t, err := ggml.ParseType(o.kvType); err != nil || (t != ggml.F32 && t != ggml.F16) {
		return usagef("%s %q: want f32 or f16", o.flag("kv-type"), o.kvType)
	}
	return nil
}

// pull resolves an hf: -m to a file, pulling it when it is not local yet (progress on
// progress), and keeps the path in its place, so that a later load finds the file
// without the network.
func (o *engineOptions) pull(ctx context.Context, progress io.Writer) error {
	if !strings.HasPrefix(o.model, hfPrefix) {
		// Loaded later (under up, the draft only once the verifier serves): a missing
		// file is found now, before anything listens or logs.
		_, err := modelFile(ctx, modelpath.Dir(o.models), o.model, progress)
		return err
	}
	p, err := modelFile(ctx, modelpath.Dir(o.models), o.model, progress)
	if err != nil {
		return err
	}
	o.model = p
	return nil
}

// load resolves (see pull) and loads the model; a missing file is a usage error.
func (o *engineOptions) load(ctx context.Context, progress io.Writer) (*model.Model, error) {
	path, err := modelFile(ctx, modelpath.Dir(o.models), o.model, progress)
	if err != nil {
		return nil, err
	}
	lo := model.LoadOptions{Tokenizer: o.tokenizer, Context: o.context}
	if o.quant != "" {
		t, _ := ggml.ParseType(o.quant)
		lo.Quant = &t
	}
	m, err := model.Load(path, lo)
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, model.ErrContextLength) {
		return nil, usageError{err}
	}
	if err != nil {
		return nil, fmt.Errorf("load: %w", err)
	}
	return m, nil
}

func (o *engineOptions) kvTypeValue() ggml.Type {
	t, _ := ggml.ParseType(o.kvType)
	return t
}
