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
