// Package ggufvocab reads a tokenizer vocabulary from a GGUF file's tokenizer.ggml.*
// metadata, as llama.cpp's llama_vocab::load does, and builds a tokenizer.Tokenizer from
// it. It knows the GGUF keys and llama.cpp's defaults; the algorithms live in tokenizer.
// It reads metadata only, so a vocabulary-only GGUF (no tensors) loads like a model.
package ggufvocab

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/specd-dev/specd/gguf"
	"github.com/specd-dev/specd/tokenizer"
)

// ErrUnsupported is returned (wrapped) by Read for a tokenizer.ggml.model other than
// "llama" (SentencePiece) and "gpt2" (byte-level BPE).
var ErrUnsupported = errors.New("unsupported tokenizer model")

// specialKeys are the special ids beyond BOS, EOS and UNK that llama.cpp reads, by the
// NAME of tokenizer.ggml.NAME_token_id ("seperator" is the GGUF spelling).
var specialKeys = []string{
	"eot", "eom", "padding", "seperator", "mask",
	"fim_pre", "fim_suf", "fim_mid", "fim_pad", "fim_rep", "fim_sep",
}

// Open reads the vocabulary of the GGUF file at path and builds its Tokenizer.
func Open(path string) (*tokenizer.Tokenizer, error) {
	f, err := gguf.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	tok, err := Load(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return tok, nil
}

// Load builds the Tokenizer of f's vocabulary (see Read).
func Load(f *gguf.File) (*tokenizer.Tokenizer, error) {
	v, err := Read(f)
	if err != nil {
		return nil, err
	}
	return tokenizer.New(v)
}

// Read returns f's vocabulary. A file without tokenizer.ggml.model is read as
// SentencePiece. Defaults follow llama.cpp: SentencePiece has BOS 1, EOS 2, UNK 0 and adds
// BOS; byte-level BPE has no BOS, EOS or UNK unless the file names them (llama.cpp's
// placeholder 11 is left out) and adds BOS as its pre-tokenizer type does (Llama 3 yes,
// Qwen2 no) unless tokenizer.ggml.add_bos_token says. SentencePiece puts a space in front
// of a text unless tokenizer.ggml.add_space_prefix is false. Tokens spelled like end-of-turn
// and fill-in-the-middle markers are control tokens whatever their file type, as in
// llama.cpp (see controlLooking).
//
// Errors: ErrUnsupported for another model; a missing token list or merges, a key of the
// wrong type, or a BOS, EOS or UNK id outside the vocabulary (naming the key); the
// errors of tokenizer.New (an unknown pre-tokenizer type among them). An out-of-range
// extra special id is dropped, as llama.cpp drops it.
func Read(f *gguf.File) (tokenizer.Vocab, error) {
	model, err := optional(f.String("tokenizer.ggml.model"))
	if err != nil {
		return tokenizer.Vocab{}, err
	}
	var v tokenizer.Vocab
	switch model {
	case "", "llama":
		v = tokenizer.Vocab{Model: tokenizer.SentencePiece, BOS: 1, EOS: 2, UNK: 0, AddBOS: true, SpaceIsMeta: true}
	case "gpt2":
		v = tokenizer.Vocab{Model: tokenizer.ByteLevelBPE, BOS: -1, EOS: -1, UNK: -1}
	default:
		return v, fmt.Errorf("%w %q (want llama or gpt2)", ErrUnsupported, model)
	}
	if v.Tokens, err = f.Strings("tokenizer.ggml.tokens"); err != nil {
		return v, err
	}
	n := len(v.Tokens)
	scores, err := optional(f.Float32s("tokenizer.ggml.scores"))
	if errors.Is(err, gguf.ErrWrongType) { // llama.cpp also takes integer scores
		var iscores []int32
		if iscores, err = f.Int32s("tokenizer.ggml.scores"); err == nil {
			scores = make([]float32, len(iscores))
			for i, x := range iscores {
				scores[i] = float32(x)
			}
		}
	}
	switch {
	case err != nil:
		return v, err
	case scores == nil && v.Model == tokenizer.SentencePiece:
		return v, fmt.Errorf("tokenizer.ggml.scores: %w (a SentencePiece vocabulary ranks merges by score)", gguf.ErrNotFound)
	}
	types, err := optional(f.Int32s("tokenizer.ggml.token_type"))
	if err != nil {
		return v, err
	}
	// llama.cpp reads the first n entries of longer arrays (and refuses shorter ones,
	// as New does).
	if len(scores) > n {
		scores = scores[:n]
	}
	if len(types) > n {
		types = types[:n]
	}
	v.Scores = scores
	if types != nil {
		v.Types = make([]tokenizer.TokenType, len(types))
		for i, t := range types {
			v.Types[i] = tokenizer.TokenType(t)
		}
	}
	if v.Model == tokenizer.ByteLevelBPE {
		if v.Merges, err = f.Strings("tokenizer.ggml.merges"); err != nil {
			return v, err
		}
		if v.Pre, err = optional(f.String("tokenizer.ggml.pre")); err != nil {
			return v, err
		}
		v.AddBOS = tokenizer.DefaultAddBOS(v.Pre)
	}
	for _, id := range []struct {
		key string
		dst *int32
	}{{"tokenizer.ggml.bos_token_id", &v.BOS}, {"tokenizer.ggml.eos_token_id", &v.EOS}, {"tokenizer.ggml.unknown_token_id", &v.UNK}} {
		x, err := f.Uint(id.key)
		switch {
		case errors.Is(err, gguf.ErrNotFound):
			continue
		case err != nil:
			return v, err
		case x >= uint64(n):
			return v, fmt.Errorf("%s = %d is outside the vocabulary of %d", id.key, x, n)
		}
		*id.dst = int32(x)
	}
	if v.Model == tokenizer.ByteLevelBPE {
		for _, name := range specialKeys {
			x, err := f.Uint("tokenizer.ggml." + name + "_token_id")
			switch {
			case errors.Is(err, gguf.ErrNotFound):
				continue
			case err != nil:
				return v, err
			case x < uint64(n):
				if v.SpecialIDs == nil {
					v.SpecialIDs = map[string]int32{}
				}
				v.SpecialIDs[name] = int32(x)
			}
		}
	}
	v.Types = controlLooking(f, v.Tokens, v.Types)
	if v.Model == tokenizer.SentencePiece {
		prefix, err := f.Bool("tokenizer.ggml.add_space_prefix")
		switch {
		case err == nil:
			v.NoDummyPrefix = !prefix
		case !errors.Is(err, gguf.ErrNotFound):
			return v, err
		}
	}
	addBOS, err := f.Bool("tokenizer.ggml.add_bos_token")
	switch {
	case err == nil:
		v.AddBOS = addBOS
	case !errors.Is(err, gguf.ErrNotFound):
		return v, err
	}
	if v.AddBOS && v.BOS < 0 {
		return v, fmt.Errorf("tokenizer.ggml.add_bos_token is true but there is no BOS token (tokenizer.ggml.bos_token_id)")
	}
	if v.AddEOS, err = optional(f.Bool("tokenizer.ggml.add_eos_token")); err != nil {
		return v, err
	}
	if v.AddEOS && v.EOS < 0 {
		return v, fmt.Errorf("tokenizer.ggml.add_eos_token is true but there is no EOS token (tokenizer.ggml.eos_token_id)")
	}
	if v.Strip, err = stripRules(f, v); err != nil {
		return v, err
	}
	return v, nil
}

// stripRules returns the whitespace that special tokens strip, set as llama.cpp b4748's
// loader sets the token attributes LSTRIP and RSTRIP ("set attributes by model/tokenizer
// name" in llama_vocab::impl::load), since GGUF has no key for them:
//
//   - A tokenizer.ggml.pre containing "jina-v2-de", "jina-v2-es" or "jina-v2-code": the
//     token "<mask>" strips the whitespace before it.
//   - Otherwise a general.name containing "phi-3" or "phi3" (in lower case): every special
//     token (control, unknown and user-defined) strips the whitespace after it, and so does
//     "</s>" whatever its type, but "<unk>", "<s>" and "<|endoftext|>".
//
// A token text the vocabulary lacks is passed over (llama.cpp b4748 refuses such a file
// with an exception; later versions warn and go on). Of duplicated texts the last id is
// taken, as llama.cpp's text-to-id map keeps it.
func stripRules(f *gguf.File, v tokenizer.Vocab) (map[int32]tokenizer.Strip, error) {
	name, err := optional(f.String("general.name"))
	if err != nil {
		return nil, err
	}
	pre, err := optional(f.String("tokenizer.ggml.pre"))
	if err != nil {
		return nil, err
	}
	lastID := func(text string) (int32, bool) {
		for i := len(v.Tokens) - 1; i >= 0; i-- {
			if v.Tokens[i] == text {
				return int32(i), true
			}
		}
		return 0, false
	}
	containsAny := func(s string, subs ...string) bool {
		return slices.ContainsFunc(subs, func(sub string) bool { return strings.Contains(s, sub) })
	}
	strip := map[int32]tokenizer.Strip{}
	switch {
	case containsAny(pre, "jina-v2-de", "jina-v2-es", "jina-v2-code"):
		if id, ok := lastID("<mask>"); ok {
			strip[id] = tokenizer.StripLeft
		}
	case containsAny(strings.ToLower(name), "phi-3", "phi3"):
		for i := range v.Tokens {
			if isSpecial(v, int32(i)) {
				strip[int32(i)] = tokenizer.StripRight
			}
		}
		if id, ok := lastID("</s>"); ok {
			strip[id] = tokenizer.StripRight
		}
		for _, text := range []string{"<unk>", "<s>", "<|endoftext|>"} {
			if id, ok := lastID(text); ok {
				delete(strip, id)
			}
		}
	}
	if len(strip) == 0 {
		return nil, nil
	}
	return strip, nil
}

// isSpecial reports whether id is a control, unknown or user-defined token of v, with the
// type tokenizer.New infers where v gives none (UNK is unknown, BOS and EOS are control).
func isSpecial(v tokenizer.Vocab, id int32) bool {
	var tt tokenizer.TokenType
	if int(id) < len(v.Types) {
		tt = v.Types[id]
	}
	switch tt {
	case tokenizer.TypeControl, tokenizer.TypeUnknown, tokenizer.TypeUserDefined:
		return true
	case 0:
		return id == v.UNK || id == v.BOS || id == v.EOS
	}
	return false
}

// Texts that llama.cpp's loader (b4748, llama_vocab::load) takes for a special id the file
// does not name, by the NAME of tokenizer.ggml.NAME_token_id.
var controlByName = []struct {
	name  string
	texts []string
}{
	{"eot", []string{"<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<EOT>", "<｜end▁of▁sentence｜>"}},
	{"eom", []string{"<|eom_id|>"}},
	{"fim_pre", []string{"<|fim_prefix|>", "<fim-prefix>", "<｜fim▁begin｜>", "<PRE>"}},
	{"fim_suf", []string{"<|fim_suffix|>", "<fim-suffix>", "<｜fim▁hole｜>", "<SUF>"}},
	{"fim_mid", []string{"<|fim_middle|>", "<fim-middle>", "<｜fim▁end｜>", "<MID>"}},
	{"fim_pad", []string{"<|fim_pad|>", "<fim-pad>", "<PAD>"}},
	{"fim_rep", []string{"<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>"}},
	{"fim_sep", []string{"<|file_sep|>"}},
}

// controlEOG are the end-of-generation texts llama.cpp b4748 makes control tokens
// whatever the file names.
var controlEOG = []string{"<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|eom_id|>", "<EOT>"}

// controlLooking returns types with every control-looking token made a control token, as
// llama.cpp's loader does ("control-looking token … its type will be overridden"): the
// end-of-generation texts always, and the texts of an end-of-turn, end-of-message or
// fill-in-the-middle id the file does not name. Files from older converters and
// fine-tunes (DeepSeek Coder's FIM markers, ChatML on Mistral) have them as user-defined
// or normal, which would split them out of raw text. llama.cpp takes only the first match
// of a name, in hash order; real vocabularies have one. types may be nil (all inferred).
func controlLooking(f *gguf.File, tokens []string, types []tokenizer.TokenType) []tokenizer.TokenType {
	if types != nil && len(types) != len(tokens) {
		return types // tokenizer.New refuses it
	}
	control := map[string]bool{}
	for _, t := range controlEOG {
		control[t] = true
	}
	for _, c := range controlByName {
		if x, err := f.Uint("tokenizer.ggml." + c.name + "_token_id"); err == nil && x < uint64(len(tokens)) {
			continue // named by the file
		}
		for _, t := range c.texts {
			control[t] = true
		}
	}
	for i, p := range tokens {
		if !control[p] || types != nil && types[i] == tokenizer.TypeControl {
			continue
		}
		if types == nil {
			types = make([]tokenizer.TokenType, len(tokens))
		}
		types[i] = tokenizer.TypeControl
	}
	return types
}

// optional turns a missing key into the zero value.
func optional[T any](x T, err error) (T, error) {
	if errors.Is(err, gguf.ErrNotFound) {
		var zero T
		return zero, nil
	}
	return x, err
}
