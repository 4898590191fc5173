package tokenizer

import "unicode/utf8"

// GPT-2's byte-level alphabet: byte-level BPE vocabularies spell every byte as one
// printable character, so that a piece is a string of characters with no spaces or
// control codes in it. The printable Latin-1 bytes ('!'..'~', '¡'..'¬', '®'..'ÿ') stand
// for themselves; the other 68 bytes, in increasing order, are U+0100, U+0101, …
// (so ' ' is 'Ġ' U+0120 and '\n' is 'Ċ' U+010A).

// byteChar is the UTF-8 spelling of each byte's character.
var byteChar [256]string

// charByte maps the characters of the alphabet (all below U+0144) back to their byte;
// -1 marks a character outside the alphabet.
var charByte [0x144]int16

func init() {
	for i := range charByte {
		charByte[i] = -1
	}
	next := rune(0x100)
	for b := range 256 {
		r := rune(b)
		if !(b >= '!' && b <= '~' || b >= 0xA1 && b <= 0xAC || b >= 0xAE) {
			r = next
			next++
		}
		byteChar[b] = string(r)
		charByte[r] = int16(b)
	}
}

// unByteLevel turns a piece spelled in the byte-level alphabet back into the bytes it
// stands for. A character outside the alphabet (which no byte-level merge produces, but
// a hand-edited vocabulary may hold) is kept as its own UTF-8 bytes.
func unByteLevel(piece string) string {
	out := make([]byte, 0, len(piece))
	for i := 0; i < len(piece); {
		r, n := utf8.DecodeRuneInString(piece[i:])
		valid := r != utf8.RuneError || n > 1
		if valid && int(r) < len(charByte) && charByte[r] >= 0 {
			out = append(out, byte(charByte[r]))
		} else {
			out = append(out, piece[i:i+n]...)
		}
		i += n
	}
	return string(out)
}

// asCodePoints returns text as llama.cpp reads it before a byte-level BPE vocabulary
// splits it (unicode_cpts_from_utf8, each code point then written back as UTF-8): a
// lead byte with its continuation bytes is taken for the code point it spells, even an
// overlong form (written back in the shortest one) or a surrogate (kept); any other
// byte, and a sequence beyond U+10FFFF (on which llama.cpp gives up), becomes U+FFFD.
// Valid UTF-8 comes back as it is.
func asCodePoints(text string) string {
	if utf8.ValidString(text) {
		return text
	}
	out := make([]byte, 0, len(text)+16)
	for i := 0; i < len(text); {
		c := text[i]
		var n int
		var cp rune
		switch {
		case c < 0x80:
			out = append(out, c)
			i++
			continue
		case c&0x40 == 0: // a continuation byte with no lead
		case c&0x20 == 0:
			n, cp = 2, rune(c&0x1f)
		case c&0x10 == 0:
			n, cp = 3, rune(c&0x0f)
		case c&0x08 == 0:
			n, cp = 4, rune(c&0x07)
		}
		ok := n > 0 && i+n <= len(text)
		for k := 1; ok && k < n; k++ {
			b := text[i+k]
			ok = b&0xc0 == 0x80
			cp = cp<<6 | rune(b&0x3f)
		}
		if !ok || cp > utf8.MaxRune {
			out = append(out, "\uFFFD"...)
			i++
			continue
		}
		out = appendCodePoint(out, cp)
		i += n
	}
	return string(out)
}

// appendCodePoint appends cp in UTF-8's shortest form, surrogates included (which
// utf8.AppendRune would write as U+FFFD).
func appendCodePoint(b []byte, cp rune) []byte {
	switch {
	case cp < 0x80:
		return append(b, byte(cp))
	case cp < 0x800:
		return append(b, 0xc0|byte(cp>>6), 0x80|byte(cp&0x3f))
	case cp < 0x10000:
		return append(b, 0xe0|byte(cp>>12), 0x80|byte(cp>>6&0x3f), 0x80|byte(cp&0x3f))
	}
	return append(b, 0xf0|byte(cp>>18), 0x80|byte(cp>>12&0x3f), 0x80|byte(cp>>6&0x3f), 0x80|byte(cp&0x3f))
}
