// Package tokenizer turns text into token ids and back with the two vocabularies GGUF
// files carry under tokenizer.ggml.*: SentencePiece-style BPE (tokenizer.ggml.model
// "llama": scored pieces, also what llama2.c's tokenizer.bin stores) and byte-level BPE
// (tokenizer.ggml.model "gpt2": GPT-2, Llama 3, Qwen2, … with ranked merges and a
// pre-tokenizer named by tokenizer.ggml.pre).
//
// Encoding follows SentencePiece's BPE model (and llama.cpp's SPM tokenizer, which
// reproduces it): a dummy-prefix space, no other normalization, greedy merging of the
// adjacent pair whose concatenation is the best-scored piece, and byte fallback for
// characters the vocabulary lacks. Decoding follows SentencePiece's Decode, including the
// removal of the dummy-prefix space and U+FFFD for invalid byte sequences.
//
// Byte-level BPE follows llama.cpp's BPE tokenizer (llama-vocab.cpp), whose behaviour the
// Hugging Face tokenizers define: see Encode and the pre-tokenizer types in
// pretokenize.go.
//
// The package depends on the standard library and, for the split patterns that need
// look-ahead, on github.com/dlclark/regexp2. It reads no files: the model loader (the
// ggufvocab package, llama2c) fills a Vocab and calls New. A Tokenizer is immutable and safe for
// concurrent use; a Decoder is not.
package tokenizer

import (
	"errors"
	"fmt"
	"math"
	"sort"
	"strings"
)

// TokenType is the kind of a vocabulary entry, numbered as GGUF's
// tokenizer.ggml.token_type and SentencePiece's ModelProto.SentencePiece.Type.
type TokenType int32

// Token types. The zero value means "not given": New infers the type as it does when
// Vocab.Types is nil.
const (
	TypeNormal      TokenType = 1 // a piece formed by BPE merges (or a single character)
	TypeUnknown     TokenType = 2 // <unk>: stands for text the vocabulary cannot spell
	TypeControl     TokenType = 3 // <s>, </s>: never produced from text, decodes to nothing
	TypeUserDefined TokenType = 4 // matched in the text as a whole, never split or merged
	TypeUnused      TokenType = 5 // may be formed by a merge, but is emitted as its two halves
	TypeByte        TokenType = 6 // <0xNN>: one byte of byte fallback
)

func (tt TokenType) String() string {
	switch tt {
	case 0:
		return "unspecified"
	case TypeNormal:
		return "normal"
	case TypeUnknown:
		return "unknown"
	case TypeControl:
		return "control"
	case TypeUserDefined:
		return "user-defined"
	case TypeUnused:
		return "unused"
	case TypeByte:
		return "byte"
	}
	return fmt.Sprintf("TokenType(%d)", int32(tt))
}

// metaSpace is SentencePiece's visible space, U+2581 LOWER ONE EIGHTH BLOCK.
const metaSpace = "\u2581"

// unkSurface is what an <unk> token decodes to: SentencePiece's default unk_surface.
const unkSurface = " \u2047 "

// Model is a tokenization algorithm, as GGUF's tokenizer.ggml.model names it.
type Model uint8

const (
	// SentencePiece is SentencePiece's BPE ("llama"): merges ranked by piece score.
	SentencePiece Model = iota
	// ByteLevelBPE is GPT-2's byte-level BPE ("gpt2"): ranked merges over bytes spelled
	// in a printable alphabet, after a pre-tokenizer cuts the text into words.
	ByteLevelBPE
)

func (m Model) String() string {
	switch m {
	case SentencePiece:
		return "llama"
	case ByteLevelBPE:
		return "gpt2"
	}
	return fmt.Sprintf("Model(%d)", uint8(m))
}

// Vocab is a vocabulary as a model file stores it. New copies what it keeps, so the
// caller may reuse the slices afterwards.
type Vocab struct {
	// Model is the algorithm; the zero value is SentencePiece.
	Model Model
	// Tokens holds the piece of each id. Scores (same length) rank merges: the higher,
	// the earlier a pair is merged. A ByteLevelBPE vocabulary ranks by Merges instead and
	// may leave Scores nil.
	Tokens []string
	Scores []float32
	// Merges (ByteLevelBPE only) are tokenizer.ggml.merges: "left right", the first
	// merged first.
	Merges []string
	// Pre (ByteLevelBPE only) is tokenizer.ggml.pre, the pre-tokenizer type; "" means
	// "default", as in llama.cpp. PreTokenizers lists the supported types.
	Pre string
	// SpecialIDs (ByteLevelBPE only) holds the special ids beyond BOS, EOS and UNK that
	// the file names, keyed by the name in its key tokenizer.ggml.NAME_token_id ("eot",
	// "eom", "padding", "fim_pre", …). Nil when there are none. Each id must be valid.
	SpecialIDs map[string]int32
	// Types has one entry per id, or is nil: then (and for any zero entry) the type is
	// inferred: UNK is unknown, BOS and EOS are control, "<0xNN>" is byte, the rest normal.
	Types []TokenType
	// BOS and EOS must be valid ids (ByteLevelBPE: or -1 for none). UNK is a valid id,
	// or -1 when the vocabulary has a byte token for each of the 256 byte values (so
	// nothing ever needs <unk>) or is ByteLevelBPE.
	BOS, EOS, UNK int32
	// AddBOS records whether the model expects BOS before a prompt
	// (tokenizer.ggml.add_bos_token). Encode does not consult it; Tokenize (and so
	// Prompt and ChatPrompt) puts BOS first when asked to add special tokens.
	AddBOS bool
	// AddEOS records whether the model expects EOS after a prompt
	// (tokenizer.ggml.add_eos_token): Tokenize (and so Prompt and ChatPrompt) appends it
	// when asked to add special tokens, as llama.cpp does. It needs a valid EOS id.
	AddEOS bool
	// Strip gives the special tokens (control, unknown, user-defined) that remove the
	// whitespace next to them when they are split out of a text, by id; nil for none.
	// llama.cpp sets these attributes by model name (see package ggufvocab). An entry
	// for a token that is not special has no effect. Each id must be valid.
	Strip map[int32]Strip
	// SpaceIsMeta is true for SentencePiece and GGUF vocabularies, whose pieces spell a
	// space as U+2581 '▁'; false for llama2.c's tokenizer.bin, which stores ' ' itself.
	SpaceIsMeta bool
	// NoDummyPrefix (SentencePiece only) turns off the dummy-prefix space: Encode puts no
	// space in front of a text and Decode keeps a leading space. GGUF says so with
	// tokenizer.ggml.add_space_prefix false (Gemma; SentencePiece's add_dummy_prefix).
	NoDummyPrefix bool
}

// ErrInvalidVocab is returned (wrapped, naming the problem) by New for a vocabulary it
// cannot use.
var ErrInvalidVocab = errors.New("tokenizer: invalid vocabulary")

// Tokenizer encodes and decodes with one vocabulary. Build it with New.
type Tokenizer struct {
	pieces []string
	scores []float32
	types  []TokenType

	bos, eos, unk int32
	addBOS        bool
	addEOS        bool
	space         string // the piece spelling of a space: metaSpace or " "
	spaceIsMeta   bool
	noPrefix      bool // Vocab.NoDummyPrefix

	// merge maps the text of every piece that BPE may form (normal and unused) to its id;
	// for duplicated pieces the lowest id wins.
	merge    map[string]int32
	maxMerge int // the longest key of merge, in bytes
	// user maps user-defined pieces to their ids; userLens lists their distinct byte
	// lengths, longest first. Both are empty for most vocabularies.
	user     map[string]int32
	userLens []int
	// byteID is the id of each byte's <0xNN> token, or -1.
	byteID [256]int32

	// surface is the decoded text of each normal, user-defined and unused id (spaces
	// restored); leadSpace marks those whose piece starts with the space, so the dummy
	// prefix can be dropped from the first one.
	surface   []string
	leadSpace []bool

	// specials are the pieces split out of text before encoding, longest first.
	specials []specialToken
	// bpe is set for a ByteLevelBPE vocabulary; specialIDs holds its Vocab.SpecialIDs.
	bpe        *bpe
	specialIDs map[string]int32

	hash string
}

// New checks v and builds a Tokenizer from it. It returns an error wrapping
// ErrInvalidVocab when the slices' lengths disagree, a special id is out of range, a type
// or score is invalid (NaN), or a byte token is not spelled "<0xNN>". Duplicate pieces are
// allowed; when text could match several ids, the lowest one is used.
//
// A ByteLevelBPE vocabulary is also refused (ErrUnknownPreTokenizer, naming it) for a Pre
// this package does not know, and for a piece that occurs twice.
func New(v Vocab) (*Tokenizer, error) {
	switch v.Model {
	case SentencePiece:
	case ByteLevelBPE:
		return newByteLevel(v)
	default:
		return nil, fmt.Errorf("%w: model %v", ErrInvalidVocab, v.Model)
	}
	n := len(v.Tokens)
	switch {
	case n == 0:
		return nil, fmt.Errorf("%w: no tokens", ErrInvalidVocab)
	case n > math.MaxInt32:
		return nil, fmt.Errorf("%w: %d tokens do not fit int32 ids", ErrInvalidVocab, n)
	case len(v.Scores) != n:
		return nil, fmt.Errorf("%w: %d scores for %d tokens", ErrInvalidVocab, len(v.Scores), n)
	case v.Types != nil && len(v.Types) != n:
		return nil, fmt.Errorf("%w: %d types for %d tokens", ErrInvalidVocab, len(v.Types), n)
	}
	inRange := func(id int32) bool { return id >= 0 && int(id) < n }
	if !inRange(v.BOS) {
		return nil, fmt.Errorf("%w: BOS id %d out of range [0,%d)", ErrInvalidVocab, v.BOS, n)
	}
	if !inRange(v.EOS) {
		return nil, fmt.Errorf("%w: EOS id %d out of range [0,%d)", ErrInvalidVocab, v.EOS, n)
	}
	if !inRange(v.UNK) && v.UNK != -1 {
		return nil, fmt.Errorf("%w: UNK id %d out of range [0,%d) and not -1", ErrInvalidVocab, v.UNK, n)
	}

	t := &Tokenizer{
		pieces:      append([]string(nil), v.Tokens...),
		scores:      append([]float32(nil), v.Scores...),
		types:       make([]TokenType, n),
		bos:         v.BOS,
		eos:         v.EOS,
		unk:         v.UNK,
		addBOS:      v.AddBOS,
		addEOS:      v.AddEOS,
		space:       " ",
		spaceIsMeta: v.SpaceIsMeta,
		noPrefix:    v.NoDummyPrefix,
		merge:       make(map[string]int32, n),
		surface:     make([]string, n),
		leadSpace:   make([]bool, n),
	}
	if v.SpaceIsMeta {
		t.space = metaSpace
	}
	for i := range t.byteID {
		t.byteID[i] = -1
	}

	infer := func(id int32, piece string) TokenType { return inferType(id, piece, &v) }
	for i, p := range t.pieces {
		id := int32(i)
		tt, err := t.entryType(i, v.Types, infer)
		if err != nil {
			return nil, err
		}
		switch tt {
		case TypeNormal, TypeUnused, TypeUserDefined:
			t.surface[i] = p
			if v.SpaceIsMeta {
				t.surface[i] = strings.ReplaceAll(p, metaSpace, " ")
			}
			t.leadSpace[i] = strings.HasPrefix(p, t.space)
			if p == "" {
				break
			}
			if tt == TypeUserDefined {
				if t.user == nil {
					t.user = make(map[string]int32)
				}
				if _, dup := t.user[p]; !dup {
					t.user[p] = id
				}
				break
			}
			if _, dup := t.merge[p]; !dup {
				t.merge[p] = id
				t.maxMerge = max(t.maxMerge, len(p))
			}
		}
	}
	if t.unk < 0 {
		for b, id := range t.byteID {
			if id < 0 {
				return nil, fmt.Errorf("%w: UNK is -1 but there is no byte token <0x%02X>", ErrInvalidVocab, b)
			}
		}
	}
	if len(t.user) > 0 {
		seen := map[int]bool{}
		for p := range t.user {
			if !seen[len(p)] {
				seen[len(p)] = true
				t.userLens = append(t.userLens, len(p))
			}
		}
		sort.Sort(sort.Reverse(sort.IntSlice(t.userLens)))
	}
	if err := t.collectSpecials(v.Strip); err != nil {
		return nil, err
	}
	t.hash = t.computeHash()
	return t, nil
}

// entryType checks the score and type of id i, infers a missing type with infer,
// records the type and, for a byte token, its byte, and returns the type.
func (t *Tokenizer) entryType(i int, types []TokenType, infer func(id int32, piece string) TokenType) (TokenType, error) {
	id, p := int32(i), t.pieces[i]
	if s := t.scores[i]; s != s {
		return 0, fmt.Errorf("%w: score of id %d (%q) is NaN", ErrInvalidVocab, id, p)
	}
	var tt TokenType
	if types != nil {
		tt = types[i]
	}
	if tt < 0 || tt > TypeByte {
		return 0, fmt.Errorf("%w: id %d (%q) has type %d", ErrInvalidVocab, id, p, int32(tt))
	}
	if tt == 0 {
		tt = infer(id, p)
	}
	t.types[i] = tt
	if tt == TypeByte {
		b, ok := parseByteToken(p)
		if !ok {
			return 0, fmt.Errorf("%w: byte token %d is %q, want <0xNN>", ErrInvalidVocab, id, p)
		}
		if t.byteID[b] < 0 {
			t.byteID[b] = id
		}
	}
	return tt, nil
}

// inferType is the type of a token when the vocabulary does not give one.
func inferType(id int32, piece string, v *Vocab) TokenType {
	switch {
	case id == v.UNK:
		return TypeUnknown
	case id == v.BOS || id == v.EOS:
		return TypeControl
	}
	if _, ok := parseByteToken(piece); ok {
		return TypeByte
	}
	return TypeNormal
}

// parseByteToken reads SentencePiece's spelling of a byte token, "<0xNN>" with two hex
// digits (either case).
func parseByteToken(p string) (byte, bool) {
	if len(p) != 6 || p[:3] != "<0x" || p[5] != '>' {
		return 0, false
	}
	hi, ok1 := hexDigit(p[3])
	lo, ok2 := hexDigit(p[4])
	return hi<<4 | lo, ok1 && ok2
}

func hexDigit(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	}
	return 0, false
}

// VocabSize returns the number of ids; valid ids are [0, VocabSize()).
func (t *Tokenizer) VocabSize() int { return len(t.pieces) }

// BOS returns the beginning-of-sequence id.
func (t *Tokenizer) BOS() int32 { return t.bos }

// EOS returns the end-of-sequence id.
func (t *Tokenizer) EOS() int32 { return t.eos }

// UNK returns the unknown-token id, or -1 when the vocabulary has none.
func (t *Tokenizer) UNK() int32 { return t.unk }

// AddBOS reports whether the model expects BOS before a prompt (Vocab.AddBOS).
func (t *Tokenizer) AddBOS() bool { return t.addBOS }

// AddEOS reports whether the model expects EOS after a prompt (Vocab.AddEOS).
func (t *Tokenizer) AddEOS() bool { return t.addEOS }

// Model returns the vocabulary's algorithm.
func (t *Tokenizer) Model() Model {
	if t.bpe != nil {
		return ByteLevelBPE
	}
	return SentencePiece
}

// Pre returns the pre-tokenizer type of a ByteLevelBPE vocabulary ("default" when the
// file named none), or "" for SentencePiece.
func (t *Tokenizer) Pre() string {
	if t.bpe == nil {
		return ""
	}
	return t.bpe.pre.name
}

// SpecialID returns the id of the named special token of a ByteLevelBPE vocabulary
// (Vocab.SpecialIDs), and whether there is one.
func (t *Tokenizer) SpecialID(name string) (int32, bool) {
	id, ok := t.specialIDs[name]
	return id, ok
}

// Piece returns the vocabulary entry of id as stored (with '▁' for spaces when the
// vocabulary uses it), or "" for an id out of range.
func (t *Tokenizer) Piece(id int32) string {
	if id < 0 || int(id) >= len(t.pieces) {
		return ""
	}
	return t.pieces[id]
}

// Type returns the type of id (given or inferred), or 0 for an id out of range.
func (t *Tokenizer) Type(id int32) TokenType {
	if id < 0 || int(id) >= len(t.types) {
		return 0
	}
	return t.types[id]
}

// Hash returns a hex SHA-256 of everything that decides what the ids mean: each id's
// type, score and piece, the BOS, EOS and UNK ids, and NoDummyPrefix. Two tokenizers with
// the same Hash decode every id alike and encode alike any text without a literal '▁', so
// a draft and a verifier may share token ids only when their Hashes agree. Trailing
// "[PAD<id>]" entries, which converters add to fill a token list up to the embedding
// matrix, are left out: two vocabularies that differ only in those hash alike, and a
// verifier may then commit an id past the draft's vocabulary (which the draft refuses,
// ending its speculation for that request). The hash does not depend on
// how the vocabulary spells a space ('▁' or ' '), on the text of control tokens (which
// never appear in text), or on AddBOS, so a GGUF vocabulary and the llama2.c
// tokenizer.bin it was converted from hash alike. It is stable across builds. Neither
// does it cover Strip or AddEOS, which change how text encodes next to special tokens and
// at its end but not what an id means: llama.cpp sets Strip by model name. AddBOS and
// AddEOS decide a prompt's ids (Prompt, ChatPrompt), but only a verifier turns text into
// ids; a draft is sent those ids and never encodes text, so a draft whose file differs
// from its verifier's in them drafts for the very ids the verifier checks, and the output
// stays the verifier's.
//
// A byte-level BPE vocabulary hashes under another definition (computeHashBPE) that
// covers, besides the above, the merges, the pre-tokenizer type, the text of control
// tokens and the other special ids (Vocab.SpecialIDs) but "padding".
func (t *Tokenizer) Hash() string { return t.hash }
