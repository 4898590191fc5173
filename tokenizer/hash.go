package tokenizer

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"hash"
	"math"
	"sort"
	"strconv"
	"strings"
)

// hasher writes the fields of a vocabulary into SHA-256: integers as 4 little-endian
// bytes, strings as their length and bytes.
type hasher struct {
	h   hash.Hash
	buf [4]byte
}

func newHasher(tag string) *hasher {
	h := &hasher{h: sha256.New()}
	h.h.Write([]byte(tag))
	return h
}

func (h *hasher) u32(x uint32) {
	binary.LittleEndian.PutUint32(h.buf[:], x)
	h.h.Write(h.buf[:])
}

func (h *hasher) str(s string) {
	h.u32(uint32(len(s)))
	h.h.Write([]byte(s))
}

// score writes a score; -0 and +0 rank alike, so they hash alike.
func (h *hasher) score(s float32) {
	if s == 0 {
		s = 0
	}
	h.u32(math.Float32bits(s))
}

func (h *hasher) sum() string { return hex.EncodeToString(h.h.Sum(nil)) }

// hashedLen is how many ids the hash covers: all but the trailing padding, the
// "[PAD<id>]" entries (unused; user-defined from older versions) that llama.cpp's
// converter adds to fill a token list up to the rows of the embedding matrix. Encoding
// never produces them, so a model padded to more rows (Qwen2.5-7B: 152064 ids) pairs
// with one padded to fewer (Qwen2.5-0.5B: 151936).
func (t *Tokenizer) hashedLen() int {
	n := len(t.pieces)
	for ; n > 0; n-- {
		tt := t.types[n-1]
		if tt != TypeUnused && tt != TypeUserDefined || t.pieces[n-1] != "[PAD"+strconv.Itoa(n-1)+"]" {
			break
		}
	}
	return n
}

// computeHash is Hash for a SentencePiece vocabulary.
func (t *Tokenizer) computeHash() string {
	h := newHasher("specd tokenizer vocabulary v1\x00")
	n := t.hashedLen()
	h.u32(uint32(n))
	for i, p := range t.pieces[:n] {
		tt := t.types[i]
		h.u32(uint32(tt))
		h.score(t.scores[i])
		switch {
		case tt == TypeControl:
			p = ""
		case !t.spaceIsMeta:
			p = strings.ReplaceAll(p, " ", metaSpace)
		}
		h.str(p)
	}
	h.u32(uint32(t.bos))
	h.u32(uint32(t.eos))
	h.u32(uint32(t.unk))
	if t.noPrefix { // written only when set, so that earlier hashes stand
		h.str("no dummy prefix")
	}
	return h.sum()
}

// computeHashBPE is Hash for a ByteLevelBPE vocabulary: each id's type, score and piece
// (control pieces included: EncodeSpecial reads them), every merge in order, the
// pre-tokenizer type (aliases that llama.cpp treats alike hash alike), and BOS, EOS, UNK
// and the other special ids but the padding id.
func (t *Tokenizer) computeHashBPE(merges []string) string {
	h := newHasher("specd tokenizer vocabulary v2 byte-level BPE\x00")
	h.str(t.bpe.pre.kind.id)
	n := t.hashedLen()
	h.u32(uint32(n))
	for i, p := range t.pieces[:n] {
		h.u32(uint32(t.types[i]))
		h.score(t.scores[i])
		h.str(p)
	}
	h.u32(uint32(len(merges)))
	for _, m := range merges {
		h.str(m)
	}
	h.u32(uint32(t.bos))
	h.u32(uint32(t.eos))
	h.u32(uint32(t.unk))
	names := make([]string, 0, len(t.specialIDs))
	for name := range t.specialIDs {
		// The padding id changes neither encoding, decoding nor where generation ends,
		// and uploaders of the same model set it differently.
		if name != "padding" {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	h.u32(uint32(len(names)))
	for _, name := range names {
		h.str(name)
		h.u32(uint32(t.specialIDs[name]))
	}
	return h.sum()
}
