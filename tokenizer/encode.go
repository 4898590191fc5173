package tokenizer

import "unicode/utf8"

// Encode returns the ids of text, preceded by BOS when addBOS is set (pass AddBOS() for
// the model's own choice). It follows SentencePiece's BPE encoding as llama.cpp's SPM
// tokenizer and llama2.c's run.c reproduce it:
//
//  0. User-defined pieces are split out of the text first, longest first, as llama.cpp
//     and Hugging Face's Llama tokenizers do, taking the whitespace next to them that
//     Vocab.Strip says; each stretch of text between them is encoded on its own by the
//     steps below.
//  1. A non-empty stretch gets the dummy-prefix space in front (unless the vocabulary
//     has NoDummyPrefix); with a SpaceIsMeta vocabulary every ' ' becomes '▁'. Nothing
//     else is normalized.
//  2. The text is split into UTF-8 characters; a byte that is not part of a valid
//     character is a unit of its own.
//  3. While some adjacent pair of units concatenates to a normal or unused piece, the
//     pair whose piece has the highest score (the leftmost among equal scores) merges.
//  4. Each unit becomes its piece's id; an unused piece is emitted as the two units it
//     was merged from, recursively; a character without a piece becomes the <0xNN>
//     tokens of its bytes, or one UNK when the vocabulary lacks one of them.
//
// A literal '▁' in the text of a SpaceIsMeta vocabulary is read as a space, as
// SentencePiece does: it decodes to ' '. Encode never fails; any bytes are accepted.
// A text longer than 256 MiB is encoded in consecutive chunks (cut before a space where
// one is near), which can tokenize differently from a whole encoding at the cuts but
// still decodes to the text.
//
// With a byte-level BPE vocabulary (Model ByteLevelBPE) Encode follows llama.cpp's BPE
// tokenizer instead: user-defined pieces are split out of the text whole; the rest is
// cut into words by the vocabulary's pre-tokenizer (Vocab.Pre); each word's bytes, spelled
// in GPT-2's byte-level alphabet, merge pair by pair in the order of Vocab.Merges. There
// is no dummy prefix. Control-token text stays text (see EncodeSpecial). Any bytes are
// accepted and come back from Decode unchanged.
func (t *Tokenizer) Encode(text string, addBOS bool) []int32 {
	return t.encodeText(text, addBOS, nil)
}

// encodeText is Encode, giving up when stop (nil: never) reports true.
func (t *Tokenizer) encodeText(text string, addBOS bool, stop func() bool) []int32 {
	if t.bpe != nil || len(t.user) > 0 {
		return t.encodeFragments(text, addBOS, false, stop)
	}
	ids := make([]int32, 0, len(text)/3+2)
	if addBOS {
		ids = append(ids, t.bos)
	}
	return t.encodeSPM(ids, text, !t.noPrefix, stop)
}

// encodeSPM appends the SentencePiece ids of text, in chunks of at most maxChunk bytes,
// with the dummy prefix before the first if prefix is set. It gives up, with the ids
// so far, when stop (nil: never) reports true.
func (t *Tokenizer) encodeSPM(ids []int32, text string, prefix bool, stop func() bool) []int32 {
	for first := prefix; text != ""; first = false {
		chunk := text
		if len(chunk) > maxChunk {
			chunk = text[:cutChunk(text, maxChunk)]
		}
		ids = t.encode(ids, chunk, first, stop)
		text = text[len(chunk):]
		if stop != nil && stop() {
			return ids
		}
	}
	return ids
}

// maxChunk is the most bytes of text Encode merges at once, so that offsets into the
// normalized text (up to three times as long) fit in int32. Tests lower it.
var maxChunk = 1 << 28

// cutChunk returns where to end a chunk of at most n bytes of s (n < len(s)): before the
// last space in the second half of s[:n], else at the start of the character at n.
func cutChunk(s string, n int) int {
	for i := n; i > n/2; i-- {
		if s[i] == ' ' {
			return i
		}
	}
	for i := n; i > n-utf8.UTFMax && i > 0; i-- {
		if utf8.RuneStart(s[i]) {
			return i
		}
	}
	return n
}

// encode appends the ids of a non-empty text, with the dummy prefix if prefix is set
// (stop, nil or not, as for encodeSPM: what it appends after giving up is no
// tokenization).
func (t *Tokenizer) encode(ids []int32, text string, prefix bool, stop func() bool) []int32 {
	e := encoder{t: t, text: t.normalize(text, prefix), stop: stop}
	e.split()
	e.mergeAll()
	for i := int32(0); i >= 0; i = e.syms[i].next {
		s := &e.syms[i]
		ids = e.emit(ids, s.start, s.end, s.id)
	}
	return ids
}

// normalize adds the dummy prefix (if prefix is set) and, for SpaceIsMeta vocabularies,
// spells spaces '▁'. Replacing the byte 0x20 is safe in any byte string: it never occurs
// inside a UTF-8 multi-byte sequence.
func (t *Tokenizer) normalize(text string, prefix bool) []byte {
	if !t.spaceIsMeta {
		b := make([]byte, 0, len(text)+1)
		if prefix {
			b = append(b, ' ')
		}
		return append(b, text...)
	}
	spaces := 1
	for i := 0; i < len(text); i++ {
		if text[i] == ' ' {
			spaces++
		}
	}
	b := make([]byte, 0, len(text)+spaces*(len(metaSpace)-1)+1)
	if prefix {
		b = append(b, metaSpace...)
	}
	for i := 0; i < len(text); i++ {
		if c := text[i]; c == ' ' {
			b = append(b, metaSpace...)
		} else {
			b = append(b, c)
		}
	}
	return b
}

// symbol is one unit of the normalized text, text[start:end], in a doubly linked list.
// A unit merged into its left neighbour is dead: end == start.
type symbol struct {
	start, end int32
	prev, next int32 // neighbours' indices, -1 at the ends
	id         int32 // the piece's id, or -1 for a character the vocabulary lacks
	frozen     bool  // a user-defined piece: never merges
}

// bigram is a candidate merge of symbols left and right (adjacent when it was queued)
// into the piece id spanning text[syms[left].start:end].
type bigram struct {
	score       float32
	left, right int32
	end         int32
	id          int32
}

// halves records how an unused piece at text[start:end] was formed: from the pieces
// left (text[start:mid]) and right (text[mid:end]).
type halves struct {
	mid, left, right int32
}

// encoder holds the working state of one Encode call.
type encoder struct {
	t      *Tokenizer
	text   []byte
	syms   []symbol
	queue  []bigram          // a binary max-heap ordered by before
	splits map[uint64]halves // nil until an unused piece is formed
	stop   func() bool       // gives mergeAll up when it reports true; nil: never
}

// split cuts the text into its initial units.
func (e *encoder) split() {
	t := e.t
	e.syms = make([]symbol, 0, utf8.RuneCount(e.text))
	for i := 0; i < len(e.text); {
		n, id, frozen := 0, int32(-1), false
		for _, l := range t.userLens {
			if i+l <= len(e.text) {
				if uid, ok := t.user[string(e.text[i:i+l])]; ok {
					n, id, frozen = l, uid, true
					break
				}
			}
		}
		if n == 0 {
			_, n = utf8.DecodeRune(e.text[i:]) // size 1 for an invalid byte
			if pid, ok := t.merge[string(e.text[i:i+n])]; ok {
				id = pid
			}
		}
		k := int32(len(e.syms))
		e.syms = append(e.syms, symbol{start: int32(i), end: int32(i + n), prev: k - 1, next: k + 1, id: id, frozen: frozen})
		i += n
	}
	e.syms[len(e.syms)-1].next = -1
}

// stopEvery is how many merges (or pre-tokenized words) pass between two calls of a
// tokenization's stop function: about 0.1 ms of work.
const stopEvery = 1024

// mergeAll applies merges, best first, until no adjacent pair forms a piece or e.stop
// reports true.
func (e *encoder) mergeAll() {
	e.queue = make([]bigram, 0, 2*len(e.syms))
	for i := 1; i < len(e.syms); i++ {
		e.consider(int32(i-1), int32(i))
	}
	for n := 1; len(e.queue) > 0; n++ {
		if e.stop != nil && n%stopEvery == 0 && e.stop() {
			return
		}
		b := e.pop()
		l, r := &e.syms[b.left], &e.syms[b.right]
		// Stale: one side was merged away, or the right side grew since b was queued.
		if l.end == l.start || r.end == r.start || r.end != b.end {
			continue
		}
		if e.t.types[b.id] == TypeUnused {
			if e.splits == nil {
				e.splits = make(map[uint64]halves)
			}
			e.splits[spanKey(l.start, b.end)] = halves{mid: l.end, left: l.id, right: r.id}
		}
		l.end, l.id = b.end, b.id
		l.next = r.next
		if r.next >= 0 {
			e.syms[r.next].prev = b.left
		}
		r.end = r.start
		if l.prev >= 0 {
			e.consider(l.prev, b.left)
		}
		if l.next >= 0 {
			e.consider(b.left, l.next)
		}
	}
}

// consider queues the merge of adjacent symbols l and r if their text is a piece.
func (e *encoder) consider(l, r int32) {
	sl, sr := &e.syms[l], &e.syms[r]
	if sl.frozen || sr.frozen || int(sr.end-sl.start) > e.t.maxMerge {
		return
	}
	id, ok := e.t.merge[string(e.text[sl.start:sr.end])]
	if !ok {
		return
	}
	e.push(bigram{score: e.t.scores[id], left: l, right: r, end: sr.end, id: id})
}

// emit appends the ids for the final unit text[start:end] with piece id.
func (e *encoder) emit(ids []int32, start, end, id int32) []int32 {
	t := e.t
	if id >= 0 {
		if t.types[id] == TypeUnused {
			if s, ok := e.splits[spanKey(start, end)]; ok {
				ids = e.emit(ids, start, s.mid, s.left)
				return e.emit(ids, s.mid, end, s.right)
			}
		}
		return append(ids, id)
	}
	for _, c := range e.text[start:end] {
		if t.byteID[c] < 0 {
			return append(ids, t.unk) // New guarantees unk >= 0 here
		}
	}
	for _, c := range e.text[start:end] {
		ids = append(ids, t.byteID[c])
	}
	return ids
}

func spanKey(start, end int32) uint64 { return uint64(uint32(start))<<32 | uint64(uint32(end)) }

// before orders the queue: higher score first, then the leftmost pair.
func before(a, b *bigram) bool {
	return a.score > b.score || (a.score == b.score && a.left < b.left)
}

func (e *encoder) push(b bigram) {
	e.queue = append(e.queue, b)
	q := e.queue
	i := len(q) - 1
	for i > 0 {
		p := (i - 1) / 2
		if !before(&b, &q[p]) {
			break
		}
		q[i] = q[p]
		i = p
	}
	q[i] = b
}

func (e *encoder) pop() bigram {
	q := e.queue
	top := q[0]
	last := q[len(q)-1]
	q = q[:len(q)-1]
	e.queue = q
	if len(q) == 0 {
		return top
	}
	// Sift the hole at the root down, then drop the last entry into it.
	i := 0
	for {
		c := 2*i + 1
		if c >= len(q) {
			break
		}
		if c+1 < len(q) && before(&q[c+1], &q[c]) {
			c++
		}
		if !before(&q[c], &last) {
			break
		}
		q[i] = q[c]
		i = c
	}
	q[i] = last
	return top
}
