package tokenizer

import (
	"context"
	"fmt"
	"sort"
	"strings"
)

// Strip is what whitespace a special token removes next to it when it is split out of a
// text: llama.cpp's token attributes LLAMA_TOKEN_ATTR_LSTRIP and _RSTRIP (Hugging Face's
// AddedToken lstrip and rstrip). Whitespace is the six ASCII bytes of C's isspace:
// space, \t, \n, \v, \f and \r.
type Strip uint8

const (
	// StripLeft removes the whitespace that ends the raw text before the token.
	StripLeft Strip = 1 << iota
	// StripRight removes the whitespace that starts the raw text after the token.
	StripRight
)

// specialToken is a piece that is split out of text before encoding, as llama.cpp's
// tokenizer_st_partition does: a user-defined piece always, a control or unknown one
// only when special tokens are parsed.
type specialToken struct {
	text    string
	id      int32
	control bool  // control or unknown: split out only by EncodeSpecial
	strip   Strip // whitespace removed next to it
}

// collectSpecials lists t's special pieces, longest first (then by id), the order in
// which they are split out, with their Strip from strip. It returns an error wrapping
// ErrInvalidVocab for an id of strip out of range or an unknown Strip bit.
func (t *Tokenizer) collectSpecials(strip map[int32]Strip) error {
	for id, s := range strip {
		switch {
		case id < 0 || int(id) >= len(t.pieces):
			return fmt.Errorf("%w: strip id %d out of range [0,%d)", ErrInvalidVocab, id, len(t.pieces))
		case s&^(StripLeft|StripRight) != 0:
			return fmt.Errorf("%w: strip of id %d is %#x", ErrInvalidVocab, id, uint8(s))
		}
	}
	for i, p := range t.pieces {
		sp := specialToken{text: p, id: int32(i), strip: strip[int32(i)]}
		switch tt := t.types[i]; {
		case p == "":
		case tt == TypeUserDefined:
			t.specials = append(t.specials, sp)
		case tt == TypeControl || tt == TypeUnknown:
			sp.control = true
			t.specials = append(t.specials, sp)
		}
	}
	sort.SliceStable(t.specials, func(a, b int) bool { return len(t.specials[a].text) > len(t.specials[b].text) })
	return nil
}

// fragment is a special token (id >= 0) or a stretch of raw text, text[start:end].
type fragment struct {
	start, end int
	id         int32
}

// partition cuts text into raw stretches and special tokens. Each special piece in turn,
// longest first, is found in the raw stretches left so far, left to right. The whitespace
// a token strips goes from the stretch it was found in: before it back to the stretch's
// start at most (an earlier special token's), after it up to the next non-space.
func (t *Tokenizer) partition(text string, parseSpecial bool) []fragment {
	if text == "" {
		return nil
	}
	frags := []fragment{{0, len(text), -1}}
	var next []fragment
	for _, sp := range t.specials {
		if sp.control && !parseSpecial || !strings.Contains(text, sp.text) {
			continue
		}
		next = next[:0]
		for _, f := range frags {
			for f.id < 0 && f.start < f.end {
				i := strings.Index(text[f.start:f.end], sp.text)
				if i < 0 {
					break
				}
				left := f.start + i
				if sp.strip&StripLeft != 0 {
					for left > f.start && isSpace(text[left-1]) {
						left--
					}
				}
				if left > f.start {
					next = append(next, fragment{f.start, left, -1})
				}
				next = append(next, fragment{id: sp.id})
				f.start += i + len(sp.text)
				if sp.strip&StripRight != 0 {
					for f.start < f.end && isSpace(text[f.start]) {
						f.start++
					}
				}
			}
			if f.id >= 0 || f.start < f.end {
				next = append(next, f)
			}
		}
		frags, next = next, frags
	}
	return frags
}

// isSpace reports whether c is whitespace for Strip: C's isspace in the "C" locale, which
// llama.cpp calls on each byte.
func isSpace(c byte) bool {
	return c == ' ' || '\t' <= c && c <= '\r'
}

// EncodeSpecial is Encode, except that text spelling a control or unknown token (such
// as "<|im_start|>" or "<s>") becomes that token, as llama.cpp does with parse_special.
// User-defined pieces are always split out, as by Encode. With a SentencePiece
// vocabulary, raw text after a special token gets the dummy-prefix space, as at the start
// of a text.
// Use it for text the caller trusts to contain markup, such as a rendered chat
// template; never for user input, which could then forge turns.
func (t *Tokenizer) EncodeSpecial(text string, addBOS bool) []int32 {
	return t.encodeFragments(text, addBOS, true, nil)
}

// encodeFragments encodes text split into special tokens and raw stretches. It gives
// up, with the ids so far, when stop (nil: never) reports true.
func (t *Tokenizer) encodeFragments(text string, addBOS, parseSpecial bool, stop func() bool) []int32 {
	ids := make([]int32, 0, len(text)/3+2)
	if addBOS && t.bos >= 0 {
		ids = append(ids, t.bos)
	}
	sc := scratch{stop: stop}
	afterSpecial := true
	for _, f := range t.partition(text, parseSpecial) {
		if stop != nil && stop() {
			return ids
		}
		if f.id >= 0 {
			ids = append(ids, f.id)
			afterSpecial = true
			continue
		}
		if t.bpe != nil {
			ids = t.encodeBPE(ids, text[f.start:f.end], &sc)
		} else {
			ids = t.encodeSPM(ids, text[f.start:f.end], afterSpecial && !t.noPrefix, stop)
		}
		afterSpecial = false
	}
	return ids
}

// Tokenize encodes text as llama.cpp's llama_tokenize(text, add_special, parse_special)
// does. With addSpecial, BOS comes first when the vocabulary asks for it (AddBOS) and EOS
// last when it asks for that (AddEOS, tokenizer.ggml.add_eos_token); with parseSpecial,
// special-token text becomes its token, as in EncodeSpecial, else as in Encode.
func (t *Tokenizer) Tokenize(text string, addSpecial, parseSpecial bool) []int32 {
	return t.tokenize(text, addSpecial, parseSpecial, nil)
}

// TokenizeContext is Tokenize that gives up when ctx ends, returning ctx's error: a
// long text costs about a second of CPU per megabyte, which a client that has gone
// must not keep spending. It looks at ctx between special-token fragments, between
// pre-tokenized words (every stopEvery) and between merges (every stopEvery).
func (t *Tokenizer) TokenizeContext(ctx context.Context, text string, addSpecial, parseSpecial bool) ([]int32, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	ids := t.tokenize(text, addSpecial, parseSpecial, func() bool { return ctx.Err() != nil })
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return ids, nil
}

// tokenize is Tokenize, giving up when stop (nil: never) reports true.
func (t *Tokenizer) tokenize(text string, addSpecial, parseSpecial bool, stop func() bool) []int32 {
	var ids []int32
	if parseSpecial {
		ids = t.encodeFragments(text, addSpecial && t.addBOS, true, stop)
	} else {
		ids = t.encodeText(text, addSpecial && t.addBOS, stop)
	}
	if addSpecial && t.addEOS {
		ids = append(ids, t.eos)
	}
	return ids
}
