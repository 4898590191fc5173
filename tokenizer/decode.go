package tokenizer

import "unicode/utf8"

// Decode returns the text of ids, as SentencePiece's Decode does:
//   - BOS, EOS and control tokens decode to nothing; ids out of range are skipped;
//   - '▁' in a piece (SpaceIsMeta vocabularies) becomes ' ';
//   - the first piece that produces text loses its leading space if it has one: the
//     dummy prefix Encode added (only that piece: "▁▁a" decodes to " a"; not with
//     NoDummyPrefix);
//   - byte tokens contribute their bytes, and any byte sequence that is not valid UTF-8
//     becomes U+FFFD, one per invalid byte (an incomplete sequence at the end included);
//   - UNK decodes to " ⁇ " (SentencePiece's unk surface).
//
// Decode(Encode(text, b)) == text for valid UTF-8 text, given byte tokens for whatever
// characters the vocabulary lacks, except that a literal '▁' comes back as ' ' from a
// SpaceIsMeta vocabulary (as in SentencePiece), and that text after a user-defined piece
// comes back with the dummy-prefix space Encode gave it (as from llama.cpp). Invalid
// bytes come back as U+FFFD.
//
// llama.cpp's llama_detokenize differs in one respect: with BOS first it keeps the dummy
// space. Decode follows SentencePiece, so that a prompt round-trips.
//
// With a byte-level BPE vocabulary, a piece's characters map back to the bytes they
// spell; user-defined pieces are their own text; control and unknown tokens give
// nothing; there is no dummy prefix to drop. Decode(Encode(text, b)) == text for any
// valid UTF-8 text, and a piece that ends inside a character is completed by the next.
func (t *Tokenizer) Decode(ids []int32) string { return t.decode(ids, false) }

// DecodeSpecial is Decode, except that BOS, EOS and control tokens give their piece as
// the vocabulary spells it ("<s>", "<|im_end|>"), as Hugging Face's decode does by
// default and llama-server's /detokenize does: for showing token ids, not for a
// prompt's round trip. Text after such a token keeps its leading space, as there:
// SentencePiece's BOS then "▁Hello" decode to "<s> Hello".
func (t *Tokenizer) DecodeSpecial(ids []int32) string { return t.decode(ids, true) }

func (t *Tokenizer) decode(ids []int32, special bool) string {
	raw := make([]byte, 0, 4*len(ids))
	atStart := true
	for _, id := range ids {
		if special && id >= 0 && int(id) < len(t.types) && (id == t.bos || id == t.eos || t.types[id] == TypeControl) {
			raw = append(raw, t.pieces[id]...)
			atStart = false
			continue
		}
		raw = t.appendRaw(raw, id, &atStart)
	}
	if utf8.Valid(raw) {
		return string(raw)
	}
	out, _ := appendValid(make([]byte, 0, len(raw)+8), raw, true)
	return string(out)
}

// TokenBytes returns the bytes id stands for in the middle of a text — what Decode adds
// for it after other text: a byte token's byte, a piece's text with its leading space,
// a byte-level piece's bytes (perhaps part of a UTF-8 character). Tokens that decode to
// nothing (control tokens, BOS and EOS, a byte-level vocabulary's unknown token) give
// their piece as the vocabulary spells it, to show them, as vLLM's and llama-server's
// log-probabilities do. An id outside the vocabulary gives nil.
func (t *Tokenizer) TokenBytes(id int32) []byte {
	if id < 0 || int(id) >= len(t.types) {
		return nil
	}
	atStart := false
	if b := t.appendRaw(nil, id, &atStart); len(b) > 0 {
		return b
	}
	return []byte(t.pieces[id])
}

// appendRaw appends the bytes of id to dst, before UTF-8 validation. atStart is true
// while no piece has produced text and no dummy-prefix space has been dropped.
func (t *Tokenizer) appendRaw(dst []byte, id int32, atStart *bool) []byte {
	if id < 0 || int(id) >= len(t.types) || id == t.bos || id == t.eos {
		return dst
	}
	switch t.types[id] {
	case TypeControl:
		return dst
	case TypeByte:
		*atStart = false
		b, _ := parseByteToken(t.pieces[id]) // New checked it
		return append(dst, b)
	case TypeUnknown:
		if t.bpe != nil {
			return dst // llama.cpp's BPE shows nothing for it
		}
		*atStart = false
		return append(dst, unkSurface...)
	}
	s := t.surface[id]
	if *atStart && t.leadSpace[id] && !t.noPrefix {
		s = s[1:] // the space symbol decodes to one ' '
		*atStart = false
	}
	if s != "" {
		*atStart = false
	}
	return append(dst, s...)
}

// appendValid appends the UTF-8 characters at the front of src to dst, with U+FFFD for
// each invalid byte, and returns how many bytes of src it consumed. Unless final, it stops
// before an incomplete sequence at the end of src that more bytes could complete.
//
// Stopping only there makes validation compose: by the definition of utf8.FullRune, what
// DecodeRune reads from a full prefix does not depend on the bytes after it, so
// validating a stream in pieces cut this way gives the same text as validating it whole.
func appendValid(dst, src []byte, final bool) ([]byte, int) {
	i := 0
	for i < len(src) {
		rest := src[i:]
		if !final && !utf8.FullRune(rest) {
			break
		}
		r, n := utf8.DecodeRune(rest)
		if r == utf8.RuneError && n == 1 {
			dst = utf8.AppendRune(dst, utf8.RuneError)
		} else {
			dst = append(dst, rest[:n]...)
		}
		i += n
	}
	return dst, i
}

// completeLen is the number of bytes appendValid(dst, src, false) consumes.
func completeLen(src []byte) int {
	i := 0
	for i < len(src) && utf8.FullRune(src[i:]) {
		_, n := utf8.DecodeRune(src[i:])
		i += n
	}
	return i
}

// Decoder turns generated ids into text as they arrive, for streaming. It holds back the
// bytes of a character that byte tokens have only begun, so each piece of text it returns
// is valid UTF-8 and final. A Decoder is used by one goroutine.
type Decoder struct {
	t       *Tokenizer
	atStart bool
	pending []byte // bytes not yet returned: at most an incomplete UTF-8 sequence between calls
}

// NewDecoder returns a Decoder that continues after prev, the ids whose text has already
// been shown (the prompt, typically, BOS included): prev decides whether the next piece's
// leading space is the dummy prefix (it is only if prev produced no text), and an
// incomplete character at the end of prev is completed by the new ids. The Decoder keeps
// no reference to prev.
//
// Let emitted(prev) be the text a Decoder returns from Next for prev's ids. Then
// emitted(prev) followed by every Next(id) result and Flush() equals Decode(prev + ids).
// When prev ends with a whole character, as an encoded prompt does, emitted(prev) is
// Decode(prev).
func (t *Tokenizer) NewDecoder(prev []int32) *Decoder {
	d := &Decoder{t: t, atStart: true}
	for _, id := range prev {
		d.pending = t.appendRaw(d.pending, id, &d.atStart)
		n := completeLen(d.pending)
		d.pending = append(d.pending[:0], d.pending[n:]...)
	}
	return d
}

// Next returns the text that id completes: "" for control tokens and for a byte that
// starts or continues an incomplete character.
func (d *Decoder) Next(id int32) string {
	d.pending = d.t.appendRaw(d.pending, id, &d.atStart)
	return d.take(false)
}

// Peek returns what Next(id) would return, and leaves the Decoder as it is: the text id
// would add where the Decoder stands (for the likeliest tokens of a position, say).
func (d *Decoder) Peek(id int32) string {
	var buf [16]byte
	save, atStart := append(buf[:0], d.pending...), d.atStart
	text := d.Next(id)
	d.pending, d.atStart = append(d.pending[:0], save...), atStart
	return text
}

// Flush returns what is still held back, an incomplete character, as U+FFFD per byte,
// and leaves the Decoder empty. Call it when the sequence ends.
func (d *Decoder) Flush() string {
	return d.take(true)
}

func (d *Decoder) take(final bool) string {
	if utf8.Valid(d.pending) { // the common case: whole characters only (or nothing)
		s := string(d.pending)
		d.pending = d.pending[:0]
		return s
	}
	out, n := appendValid(nil, d.pending, final)
	d.pending = append(d.pending[:0], d.pending[n:]...)
	return string(out)
}
