package tokenizer

import (
	"fmt"
	"math"
	"strings"
)

// bpe is what a byte-level BPE vocabulary adds to a Tokenizer: the pre-tokenizer and the
// merge table.
//
// Merging works on symbols: interned strings, each the text of a token or of something a
// merge forms. Ids below the vocabulary size are the tokens themselves; the others
// (merge results or operands that are no token, rare and harmless in real vocabularies)
// are numbered after them, and their text is kept for the fallback at the end.
type bpe struct {
	pre          *preTokenizer
	ignoreMerges bool
	sym          map[string]int32  // text → symbol; a token's text maps to its id
	extra        []string          // text of symbol n+i
	byteSym      [256]int32        // the symbol of each byte's character
	merges       map[uint64]merged // (left, right) symbols → the merge
}

// merged is one entry of the merge table: its rank (lower merges first) and the symbol
// it forms.
type merged struct {
	rank, sym int32
}

func pairKey(l, r int32) uint64 { return uint64(uint32(l))<<32 | uint64(uint32(r)) }

// newBPE builds the merge table of t, whose pieces and types are set.
func newBPE(t *Tokenizer, merges []string, pre string) (*bpe, error) {
	p, err := newPreTokenizer(pre)
	if err != nil {
		return nil, err
	}
	n := len(t.pieces)
	b := &bpe{pre: p, ignoreMerges: p.kind.ignoreMerges, sym: make(map[string]int32, n), merges: make(map[uint64]merged, len(merges))}
	for i, piece := range t.pieces {
		if piece == "" {
			continue
		}
		if old, dup := b.sym[piece]; dup {
			return nil, fmt.Errorf("%w: piece %q has ids %d and %d", ErrInvalidVocab, piece, old, i)
		}
		b.sym[piece] = int32(i)
	}
	intern := func(s string) int32 {
		if id, ok := b.sym[s]; ok {
			return id
		}
		id := int32(n + len(b.extra))
		b.extra = append(b.extra, s)
		b.sym[s] = id
		return id
	}
	for c := range b.byteSym {
		b.byteSym[c] = intern(byteChar[c])
	}
	var joined []byte
	for rank, m := range merges {
		// "left right", split at the first space after the first byte, as llama.cpp
		// does. A line with no such space can never match; llama.cpp keeps it as a
		// pair of empty strings, which takes its rank and does nothing else.
		sp := -1
		if len(m) > 1 {
			if k := strings.IndexByte(m[1:], ' '); k >= 0 {
				sp = k + 1
			}
		}
		if sp < 0 || sp == len(m)-1 {
			continue
		}
		l, r := intern(m[:sp]), intern(m[sp+1:])
		key := pairKey(l, r)
		if _, dup := b.merges[key]; dup {
			continue // the first rank wins
		}
		joined = append(append(joined[:0], m[:sp]...), m[sp+1:]...)
		sym, ok := b.sym[string(joined)] // no allocation: the result is nearly always a piece
		if !ok {
			sym = intern(string(joined))
		}
		b.merges[key] = merged{rank: int32(rank), sym: sym}
	}
	return b, nil
}

// bpeSym is one symbol of a word being merged, in a doubly linked list; id is -1 once
// the symbol has been merged into its left neighbour.
type bpeSym struct {
	id, prev, next int32
}

// bpePair is a candidate merge of adjacent symbols left and right, whose symbols were
// lid and rid when it was queued.
type bpePair struct {
	rank, left, right, lid, rid, sym int32
}

// scratch holds the buffers of one Encode call, reused from word to word.
type scratch struct {
	chars        []rune
	rx, cx       []rune
	offs         []int
	flags        []uint8
	bounds, next []int
	words        [][2]int
	syms         []bpeSym
	queue        []bpePair
	spelled      []byte
	// seen maps a word to its ids, remembered[from:to].
	seen       map[string][2]int32
	remembered []int32
	stop       func() bool // gives the encoding up when it reports true; nil: never
}

// encodeBPE appends the ids of raw text (no special tokens in it) to ids. Text that is
// not valid UTF-8 is first read as llama.cpp reads it (see asCodePoints).
//
// Words repeat: the ids of each distinct short word are remembered for the rest of the
// call (sc.seen), which halves the time on natural text.
func (t *Tokenizer) encodeBPE(ids []int32, text string, sc *scratch) []int32 {
	text = asCodePoints(text)
	sc.words = t.bpe.pre.words(text, sc, sc.words[:0])
	if sc.seen == nil {
		sc.seen = make(map[string][2]int32)
	}
	for i, w := range sc.words {
		if sc.stop != nil && i%stopEvery == stopEvery-1 && sc.stop() {
			return ids
		}
		word := text[w[0]:w[1]]
		if len(word) > maxRemembered {
			ids = t.mergeWord(ids, word, sc)
			continue
		}
		if r, ok := sc.seen[word]; ok {
			ids = append(ids, sc.remembered[r[0]:r[1]]...)
			continue
		}
		n := len(ids)
		ids = t.mergeWord(ids, word, sc)
		start := int32(len(sc.remembered))
		sc.remembered = append(sc.remembered, ids[n:]...)
		sc.seen[word] = [2]int32{start, int32(len(sc.remembered))}
	}
	return ids
}

// maxRemembered is the longest word, in bytes, whose ids encodeBPE remembers.
const maxRemembered = 32

// mergeWord appends the ids of one word: its bytes as symbols, then merges, lowest rank
// first (the leftmost among equal ranks), until no adjacent pair has a merge.
func (t *Tokenizer) mergeWord(ids []int32, word string, sc *scratch) []int32 {
	b := t.bpe
	if word == "" {
		return ids
	}
	if b.ignoreMerges && len(word) > 1 {
		sc.spelled = sc.spelled[:0]
		for i := 0; i < len(word); i++ {
			sc.spelled = append(sc.spelled, byteChar[word[i]]...)
		}
		if id, ok := b.sym[string(sc.spelled)]; ok && int(id) < len(t.pieces) {
			return append(ids, id)
		}
	}
	syms := sc.syms[:0]
	for i := 0; i < len(word); i++ {
		syms = append(syms, bpeSym{id: b.byteSym[word[i]], prev: int32(i - 1), next: int32(i + 1)})
	}
	syms[len(syms)-1].next = -1
	sc.syms = syms
	sc.queue = sc.queue[:0]
	for i := 1; i < len(syms); i++ {
		t.considerPair(sc, int32(i-1), int32(i))
	}
	for len(sc.queue) > 0 {
		p := popPair(sc)
		l, r := &syms[p.left], &syms[p.right]
		if l.id != p.lid || r.id != p.rid || l.next != p.right {
			continue // stale: a side has merged since p was queued
		}
		l.id = p.sym
		l.next = r.next
		if r.next >= 0 {
			syms[r.next].prev = p.left
		}
		r.id = -1
		if l.prev >= 0 {
			t.considerPair(sc, l.prev, p.left)
		}
		if l.next >= 0 {
			t.considerPair(sc, p.left, l.next)
		}
	}
	n := int32(len(t.pieces))
	for i := int32(0); i >= 0; i = syms[i].next {
		id := syms[i].id
		if id < n {
			ids = append(ids, id)
			continue
		}
		// A symbol that is no token: llama.cpp emits the tokens of its single bytes,
		// where there are any.
		text := b.extra[id-n]
		for j := 0; j < len(text); j++ {
			if bid, ok := b.sym[text[j:j+1]]; ok && bid < n {
				ids = append(ids, bid)
			}
		}
	}
	return ids
}

// considerPair queues the merge of adjacent symbols l and r if the table has one.
func (t *Tokenizer) considerPair(sc *scratch, l, r int32) {
	lid, rid := sc.syms[l].id, sc.syms[r].id
	m, ok := t.bpe.merges[pairKey(lid, rid)]
	if !ok {
		return
	}
	pushPair(sc, bpePair{rank: m.rank, left: l, right: r, lid: lid, rid: rid, sym: m.sym})
}

// pairBefore orders the queue: lower rank first, then the leftmost pair. The queue is
// the same binary heap as the SentencePiece encoder's (encode.go), written out for this
// item type: a generic version makes every pushed item escape to the heap.
func pairBefore(a, b *bpePair) bool {
	return a.rank < b.rank || a.rank == b.rank && a.left < b.left
}

func pushPair(sc *scratch, p bpePair) {
	sc.queue = append(sc.queue, p)
	q := sc.queue
	i := len(q) - 1
	for i > 0 {
		parent := (i - 1) / 2
		if !pairBefore(&p, &q[parent]) {
			break
		}
		q[i] = q[parent]
		i = parent
	}
	q[i] = p
}

func popPair(sc *scratch) bpePair {
	q := sc.queue
	top, last := q[0], q[len(q)-1]
	q = q[:len(q)-1]
	sc.queue = q
	if len(q) == 0 {
		return top
	}
	i := 0
	for {
		c := 2*i + 1
		if c >= len(q) {
			break
		}
		if c+1 < len(q) && pairBefore(&q[c+1], &q[c]) {
			c++
		}
		if !pairBefore(&q[c], &last) {
			break
		}
		q[i] = q[c]
		i = c
	}
	q[i] = last
	return top
}

// newByteLevel is New for a ByteLevelBPE vocabulary.
func newByteLevel(v Vocab) (*Tokenizer, error) {
	n := len(v.Tokens)
	switch {
	case n == 0:
		return nil, fmt.Errorf("%w: no tokens", ErrInvalidVocab)
	case n > math.MaxInt32/2:
		return nil, fmt.Errorf("%w: %d tokens do not fit int32 ids", ErrInvalidVocab, n)
	case v.Scores != nil && len(v.Scores) != n:
		return nil, fmt.Errorf("%w: %d scores for %d tokens", ErrInvalidVocab, len(v.Scores), n)
	case v.Types != nil && len(v.Types) != n:
		return nil, fmt.Errorf("%w: %d types for %d tokens", ErrInvalidVocab, len(v.Types), n)
	}
	valid := func(id int32) bool { return id == -1 || id >= 0 && int(id) < n }
	for _, s := range []struct {
		name string
		id   int32
	}{{"BOS", v.BOS}, {"EOS", v.EOS}, {"UNK", v.UNK}} {
		if !valid(s.id) {
			return nil, fmt.Errorf("%w: %s id %d out of range [0,%d) and not -1", ErrInvalidVocab, s.name, s.id, n)
		}
	}
	t := &Tokenizer{
		pieces:    append([]string(nil), v.Tokens...),
		scores:    make([]float32, n),
		types:     make([]TokenType, n),
		bos:       v.BOS,
		eos:       v.EOS,
		unk:       v.UNK,
		addBOS:    v.AddBOS && v.BOS >= 0,
		addEOS:    v.AddEOS && v.EOS >= 0,
		space:     " ",
		surface:   make([]string, n),
		leadSpace: make([]bool, n),
	}
	copy(t.scores, v.Scores)
	for name, id := range v.SpecialIDs {
		if id < 0 || int(id) >= n {
			return nil, fmt.Errorf("%w: special token %s id %d out of range [0,%d)", ErrInvalidVocab, name, id, n)
		}
		if t.specialIDs == nil {
			t.specialIDs = make(map[string]int32, len(v.SpecialIDs))
		}
		t.specialIDs[name] = id
	}
	for i := range t.byteID {
		t.byteID[i] = -1
	}
	// A byte-level vocabulary has no <0xNN> pieces to recognize: a missing type is
	// unknown for UNK, control for BOS and EOS, normal otherwise.
	infer := func(id int32, _ string) TokenType {
		switch id {
		case v.UNK:
			return TypeUnknown
		case v.BOS, v.EOS:
			return TypeControl
		}
		return TypeNormal
	}
	for i, p := range t.pieces {
		tt, err := t.entryType(i, v.Types, infer)
		if err != nil {
			return nil, err
		}
		switch tt {
		case TypeNormal, TypeUnused:
			t.surface[i] = unByteLevel(p)
		case TypeUserDefined:
			t.surface[i] = p
		}
	}
	var err error
	if t.bpe, err = newBPE(t, v.Merges, v.Pre); err != nil {
		return nil, err
	}
	if err := t.collectSpecials(v.Strip); err != nil {
		return nil, err
	}
	t.hash = t.computeHashBPE(v.Merges)
	return t, nil
}
