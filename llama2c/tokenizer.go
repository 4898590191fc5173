package llama2c

import (
	"encoding/binary"
	"fmt"
	"math"
	"os"
)

// Vocab is a llama2.c tokenizer.bin: for each token id its bytes and its merge score.
type Vocab struct {
	Tokens      []string  // the bytes of each token (not necessarily valid UTF-8)
	Scores      []float32 // BPE merge priority of each token, higher first
	MaxTokenLen int       // the longest token, in bytes, as the file declares it
}

// ReadTokenizer reads a tokenizer.bin holding exactly vocabSize tokens (the checkpoint's
// Config.Vocab). It returns the errors of ParseTokenizer, and those of reading the file.
func ReadTokenizer(path string, vocabSize int) (*Vocab, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("llama2c: %w", err)
	}
	v, err := ParseTokenizer(data, vocabSize)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return v, nil
}

// ParseTokenizer parses a tokenizer.bin: an int32 max_token_length, then for each of
// vocabSize tokens a float32 score, an int32 length and that many bytes. The result copies
// what it needs from data.
//
// It returns ErrTruncated when data ends early, ErrTrailingData when it holds more than
// vocabSize tokens, and ErrMalformed for a negative length or a token longer than
// max_token_length.
func ParseTokenizer(data []byte, vocabSize int) (*Vocab, error) {
	if vocabSize <= 0 {
		return nil, fmt.Errorf("llama2c: tokenizer: vocab size %d, want > 0", vocabSize)
	}
	if len(data) < 4 {
		return nil, errf(ErrTruncated, "tokenizer: %d bytes, shorter than max_token_length", len(data))
	}
	maxLen := int32(binary.LittleEndian.Uint32(data))
	if maxLen < 0 {
		return nil, errf(ErrMalformed, "tokenizer: max_token_length = %d", maxLen)
	}
	// Each token takes at least its score and its length: bound vocabSize before
	// allocating for it.
	if vocabSize > (len(data)-4)/8 {
		return nil, errf(ErrTruncated, "tokenizer: %d bytes cannot hold %d tokens of at least 8 bytes each", len(data), vocabSize)
	}
	v := &Vocab{Tokens: make([]string, vocabSize), Scores: make([]float32, vocabSize), MaxTokenLen: int(maxLen)}
	off := 4
	for i := range vocabSize {
		if len(data)-off < 8 {
			return nil, errf(ErrTruncated, "tokenizer: token %d at byte %d: %d bytes left, want a score and a length", i, off, len(data)-off)
		}
		v.Scores[i] = math.Float32frombits(binary.LittleEndian.Uint32(data[off:]))
		n := int32(binary.LittleEndian.Uint32(data[off+4:]))
		switch {
		case n < 0:
			return nil, errf(ErrMalformed, "tokenizer: token %d at byte %d: length %d", i, off, n)
		case n > maxLen:
			return nil, errf(ErrMalformed, "tokenizer: token %d at byte %d: length %d exceeds max_token_length %d", i, off, n, maxLen)
		case int(n) > len(data)-off-8:
			return nil, errf(ErrTruncated, "tokenizer: token %d at byte %d: length %d, %d bytes left", i, off, n, len(data)-off-8)
		}
		off += 8
		v.Tokens[i] = string(data[off : off+int(n)])
		off += int(n)
	}
	if off != len(data) {
		return nil, errf(ErrTrailingData, "tokenizer: %d bytes after token %d (is the file for a vocabulary larger than %d?)", len(data)-off, vocabSize-1, vocabSize)
	}
	return v, nil
}
