package tokenizer

import (
	"sort"
	"strings"
)

// specialToken is a piece that is split out of text before encoding, as llama.cpp's
// tokenizer_st_partition does: a user-defined piece always, a control or unknown one
// only when special tokens are parsed.
type specialToken struct {
	text    string
	id      int32
	control bool // control or unknown: split out only by EncodeSpecial
}

// collectSpecials lists t's special pieces, longest first (then by id), the order in
// which they are split out.
func (t *Tokenizer) collectSpecials() {
	for i, p := range t.pieces {
		switch tt := t.types[i]; {
		case p == "":
		case tt == TypeUserDefined:
			t.specials = append(t.specials, specialToken{text: p, id: int32(i)})
		case tt == TypeControl || tt == TypeUnknown:
			t.specials = append(t.specials, specialToken{text: p, id: int32(i), control: true})
		}
	}
	sort.SliceStable(t.specials, func(a, b int) bool { return len(t.specials[a].text) > len(t.specials[b].text) })
}

// fragment is a special token (id >= 0) or a stretch of raw text, text[start:end].
type fragment struct {
	start, end int
	id         int32
}

// partition cuts text into raw stretches and special tokens. Each special piece in turn,
// longest first, is found in the raw stretches left so far, left to right.
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
				if i > 0 {
					next = append(next, fragment{f.start, f.start + i, -1})
				}
				next = append(next, fragment{id: sp.id})
				f.start += i + len(sp.text)
			}
			if f.id >= 0 || f.start < f.end {
				next = append(next, f)
			}
		}
		frags, next = next, frags
	}
	return frags
}

// EncodeSpecial is Encode, except that text spelling a control or unknown token (such
// as "<|im_start|>" or "<s>") becomes that token, as llama.cpp does with parse_special.
// User-defined pieces are always split out, as by Encode. With a SentencePiece
// vocabulary, raw text after a special token gets the dummy-prefix space, as at the start
// of a text.
// Use it for text the caller trusts to contain markup, such as a rendered chat
// template; never for user input, which could then forge turns.
func (t *Tokenizer) EncodeSpecial(text string, addBOS bool) []int32 {
	return t.encodeFragments(text, addBOS, true)
}

// encodeFragments encodes text split into special tokens and raw stretches.
func (t *Tokenizer) encodeFragments(text string, addBOS, parseSpecial bool) []int32 {
	ids := make([]int32, 0, len(text)/3+2)
	if addBOS && t.bos >= 0 {
		ids = append(ids, t.bos)
	}
	var sc scratch
	afterSpecial := true
	for _, f := range t.partition(text, parseSpecial) {
		if f.id >= 0 {
			ids = append(ids, f.id)
			afterSpecial = true
			continue
		}
		if t.bpe != nil {
			ids = t.encodeBPE(ids, text[f.start:f.end], &sc)
		} else {
			ids = t.encodeSPM(ids, text[f.start:f.end], afterSpecial && !t.noPrefix)
		}
		afterSpecial = false
	}
	return ids
}
