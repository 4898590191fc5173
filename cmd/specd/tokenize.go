package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strconv"
	"strings"

	"github.com/specd-dev/specd/gguf"
	"github.com/specd-dev/specd/model"
	"github.com/specd-dev/specd/modelpath"
	"github.com/specd-dev/specd/tokenizer"
	"github.com/specd-dev/specd/tokenizer/ggufvocab"
)

// tokenizeOptions are the flags of `specd tokenize`.
type tokenizeOptions struct {
	models, model, tokenizer string
	prompt, file             string
	special, bos, asJSON     bool
	promptSet                bool
}

func (o *tokenizeOptions) addFlags(fs *flag.FlagSet) {
	fs.StringVar(&o.models, "models", "", "model directory (default $"+modelpath.EnvVar+", else ../shared/models, else the user cache)")
	fs.StringVar(&o.model, "m", "", "model or vocabulary-only GGUF: a file path or a name in the model directory")
	fs.StringVar(&o.model, "model", "", "same as -m")
	fs.StringVar(&o.tokenizer, "tokenizer", "", "tokenizer.bin for llama2.c checkpoints (default: beside the checkpoint)")
	fs.StringVar(&o.prompt, "p", "", "text to tokenize")
	fs.StringVar(&o.prompt, "prompt", "", "same as -p")
	fs.StringVar(&o.file, "file", "", "read the text from this file (- for standard input), byte for byte")
	fs.StringVar(&o.file, "f", "", "same as --file")
	fs.BoolVar(&o.special, "special", false, "parse special-token text such as <|im_start|> into its token")
	fs.BoolVar(&o.bos, "bos", false, "add BOS first if the vocabulary asks for it (tokenizer.ggml.add_bos_token), and then EOS last if it asks for that too (tokenizer.ggml.add_eos_token), as llama-tokenize does without --no-bos")
	fs.BoolVar(&o.asJSON, "json", false, `print {"ids": [...]} instead of ids separated by spaces`)
}

func (o *tokenizeOptions) validate() error {
	switch {
	case o.model == "":
		return usagef("no model (-m)")
	case o.promptSet == (o.file != ""):
		return usagef("give exactly one of -p and -f/--file")
	}
	return nil
}

func tokenizeCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("tokenize", flag.ContinueOnError)
	var o tokenizeOptions
	o.addFlags(fs)
	if err := parseFlags(fs, args, stderr); err != nil {
		return err
	}
	o.promptSet = flagSet(fs, "p") || flagSet(fs, "prompt")
	if err := o.validate(); err != nil {
		return err
	}
	text := o.prompt
	if o.file != "" {
		b, err := readInput(o.file)
		if err != nil {
			return usageError{fmt.Errorf("--file: %w", err)}
		}
		text = string(b)
	}
	tok, err := o.load(ctx, stderr)
	if err != nil {
		return err
	}
	// llama-tokenize adds special tokens (BOS, and EOS where the vocabulary asks for it)
	// only when the vocabulary asks for BOS.
	ids := tok.Tokenize(text, o.bos && tok.AddBOS(), o.special)
	if o.asJSON {
		if ids == nil {
			ids = []int32{}
		}
		return json.NewEncoder(stdout).Encode(struct {
			IDs []int32 `json:"ids"`
		}{ids})
	}
	var sb strings.Builder
	for i, id := range ids {
		if i > 0 {
			sb.WriteByte(' ')
		}
		sb.WriteString(strconv.Itoa(int(id)))
	}
	sb.WriteByte('\n')
	_, err = io.WriteString(stdout, sb.String())
	return err
}

// load reads the vocabulary of the model: from GGUF metadata alone (so a vocabulary-only
// file works), or for a llama2.c checkpoint through the model loader.
func (o *tokenizeOptions) load(ctx context.Context, progress io.Writer) (*tokenizer.Tokenizer, error) {
	path, err := modelFile(ctx, modelpath.Dir(o.models), o.model, progress)
	if err != nil {
		return nil, err
	}
	f, err := gguf.Open(path)
	switch {
	case err == nil:
		defer f.Close()
		tok, err := ggufvocab.Load(f)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		return tok, nil
	case errors.Is(err, gguf.ErrNotGGUF):
		m, err := model.Load(path, model.LoadOptions{Tokenizer: o.tokenizer})
		if errors.Is(err, fs.ErrNotExist) {
			return nil, usageError{err}
		}
		if err != nil {
			return nil, fmt.Errorf("load: %w", err)
		}
		defer m.Close()
		return m.Tok, nil
	default:
		return nil, fmt.Errorf("%s: %w", path, err)
	}
}

// readInput reads the file at path, or standard input for "-".
func readInput(path string) ([]byte, error) {
	if path == "-" {
		return io.ReadAll(os.Stdin)
	}
	return os.ReadFile(path)
}
