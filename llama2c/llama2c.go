// Package llama2c reads the model files of Andrej Karpathy's llama2.c: a checkpoint in the
// legacy format that run.c reads (a header of seven int32 and then float32 arrays) and a
// tokenizer.bin vocabulary. It checks every header field and the file size against each
// other, so a truncated or lying file gets an error naming the field, never a panic.
//
// Open memory-maps the checkpoint read-only. On a little-endian host the float32 slices of
// a Checkpoint are views of the mapping (no copy); on a big-endian host, or when the bytes
// given to Parse are not 4-byte aligned, the weights are decoded into a copy instead.
//
// The package knows the files, not the model: it computes nothing and depends only on the
// standard library. Format reference: run.c's read_checkpoint, memory_map_weights and
// build_tokenizer (https://github.com/karpathy/llama2.c).
package llama2c

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/bits"
	"os"
	"unsafe"

	"github.com/specd-dev/specd/internal/mmap"
)

// HeaderSize is the size in bytes of the checkpoint header, seven int32.
const HeaderSize = 7 * 4

// Sentinel errors, wrapped by the errors of Parse, Open, ParseTokenizer and ReadTokenizer;
// test for them with errors.Is.
var (
	// ErrTruncated means the file ends before what its header implies.
	ErrTruncated = errors.New("truncated")
	// ErrTrailingData means the file goes on after what its header implies.
	ErrTrailingData = errors.New("trailing data")
	// ErrInvalidHeader means a header field is out of range or inconsistent with another.
	ErrInvalidHeader = errors.New("invalid header")
	// ErrVersion means the checkpoint is in a newer llama2.c export format (magic "ak42")
	// rather than the legacy format run.c reads.
	ErrVersion = errors.New("unsupported checkpoint version")
	// ErrMalformed means a tokenizer entry is inconsistent: a negative length, or a token
	// longer than the declared maximum.
	ErrMalformed = errors.New("malformed")
)

// Config is the checkpoint header.
type Config struct {
	Dim       int // model width
	HiddenDim int // width of the feed-forward layer
	Layers    int
	Heads     int // query heads
	KVHeads   int // key/value heads (Heads for plain multi-head attention)
	Vocab     int // vocabulary size (always positive; the file's sign is SharedClassifier)
	SeqLen    int // maximum context
	// SharedClassifier is true when the output classifier is the token embedding (the
	// file's vocab_size is positive) and false when a separate wcls ends the file.
	SharedClassifier bool
}

// HeadSize returns the width of one attention head.
func (c Config) HeadSize() int { return c.Dim / c.Heads }

// KVDim returns the width of the keys and values of one layer, Dim*KVHeads/Heads.
func (c Config) KVDim() int { return c.HeadSize() * c.KVHeads }

// Checkpoint is a llama2.c model. Every matrix is row-major [out rows][in cols], as run.c's
// matmul reads it: Wq is Dim×Dim, Wk and Wv are KVDim×Dim, W1 and W3 are HiddenDim×Dim, W2 is
// Dim×HiddenDim, Embedding and Classifier are Vocab×Dim.
//
// The slices are views of the file (see the package comment) with their capacity limited
// to their length; they must not be modified, and after Close they must not be used.
type Checkpoint struct {
	Config
	Embedding  []float32
	Layers     []Layer
	FinalNorm  []float32
	Classifier []float32 // the same slice as Embedding when SharedClassifier

	mapping []byte // the mmap Close releases; nil for a Checkpoint made by Parse
}

// Layer holds the weights of one transformer block.
type Layer struct {
	AttnNorm, Wq, Wk, Wv, Wo, FFNNorm, W1, W2, W3 []float32
}

// Open memory-maps the checkpoint at path read-only and parses it. The file must not be
// truncated while it is mapped.
//
// Open returns the errors of Parse, and those of opening or mapping the file.
func Open(path string) (*Checkpoint, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("llama2c: %w", err)
	}
	defer fh.Close()
	st, err := fh.Stat()
	if err != nil {
		return nil, fmt.Errorf("llama2c: %w", err)
	}
	size := st.Size()
	if size <= 0 {
		_, err := Parse(nil)
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if uint64(size) > math.MaxInt {
		return nil, fmt.Errorf("llama2c: %s: %d bytes is too large to map", path, size)
	}
	data, err := mmap.File(fh, int(size))
	if err != nil {
		return nil, fmt.Errorf("llama2c: map %s: %w", path, err)
	}
	c, err := Parse(data)
	if err != nil {
		_ = mmap.Unmap(data)
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	c.mapping = data
	return c, nil
}

// Close releases the mapping made by Open and clears the weight slices of c. It is
// idempotent, and does nothing to the bytes of a Checkpoint made by Parse beyond clearing
// the slices.
func (c *Checkpoint) Close() error {
	c.Embedding, c.Layers, c.FinalNorm, c.Classifier = nil, nil, nil, nil
	if c.mapping == nil {
		return nil
	}
	m := c.mapping
	c.mapping = nil
	if err := mmap.Unmap(m); err != nil {
		return fmt.Errorf("llama2c: unmap: %w", err)
	}
	return nil
}

func errf(sentinel error, format string, args ...any) error {
	return fmt.Errorf("llama2c: %w: %s", sentinel, fmt.Sprintf(format, args...))
}

// ParseConfig decodes and checks the checkpoint header at the start of data.
//
// It returns ErrTruncated when data is shorter than the header, ErrVersion for a newer
// export format, and ErrInvalidHeader naming the field that is out of range.
func ParseConfig(data []byte) (Config, error) {
	if len(data) < HeaderSize {
		return Config{}, errf(ErrTruncated, "%d bytes, shorter than the %d-byte header", len(data), HeaderSize)
	}
	if string(data[:4]) == "ak42" {
		return Config{}, errf(ErrVersion, "export version %d (magic \"ak42\"); only the legacy format run.c reads is supported",
			int32(binary.LittleEndian.Uint32(data[4:])))
	}
	var h [7]int32
	for i := range h {
		h[i] = int32(binary.LittleEndian.Uint32(data[4*i:]))
	}
	names := [7]string{"dim", "hidden_dim", "n_layers", "n_heads", "n_kv_heads", "vocab_size", "seq_len"}
	for i, x := range h {
		if x <= 0 && names[i] != "vocab_size" {
			return Config{}, errf(ErrInvalidHeader, "%s = %d, want > 0", names[i], x)
		}
	}
	c := Config{
		Dim: int(h[0]), HiddenDim: int(h[1]), Layers: int(h[2]), Heads: int(h[3]), KVHeads: int(h[4]),
		Vocab: int(h[5]), SeqLen: int(h[6]), SharedClassifier: h[5] > 0,
	}
	switch {
	case c.Vocab == 0:
		return Config{}, errf(ErrInvalidHeader, "vocab_size = 0")
	case c.Vocab < 0:
		c.Vocab = -c.Vocab // int is 64 bits wide, so even -MinInt32 fits
	}
	if c.Dim%c.Heads != 0 {
		return Config{}, errf(ErrInvalidHeader, "dim = %d is not a multiple of n_heads = %d", c.Dim, c.Heads)
	}
	if c.Heads%c.KVHeads != 0 {
		return Config{}, errf(ErrInvalidHeader, "n_heads = %d is not a multiple of n_kv_heads = %d", c.Heads, c.KVHeads)
	}
	if c.HeadSize()%2 != 0 {
		return Config{}, errf(ErrInvalidHeader, "head size dim/n_heads = %d/%d = %d is odd; RoPE rotates pairs", c.Dim, c.Heads, c.HeadSize())
	}
	return c, nil
}

// layout lists the float32 arrays of a checkpoint in file order, in elements.
type layout struct {
	embedding, rmsAtt, wq, wk, wv, wo, rmsFFN, w1, w2, w3, rmsFinal, freqs, wcls uint64
}

// layoutOf returns the layout c implies and its total in floats; ok is false when that
// overflows.
func layoutOf(c Config) (l layout, total uint64, ok bool) {
	ok = true
	mul := func(xs ...int) uint64 {
		p := uint64(1)
		for _, x := range xs {
			hi, lo := bits.Mul64(p, uint64(x))
			if hi != 0 {
				ok = false
			}
			p = lo
		}
		return p
	}
	L := c.Layers
	l = layout{
		embedding: mul(c.Vocab, c.Dim),
		rmsAtt:    mul(L, c.Dim),
		wq:        mul(L, c.Dim, c.Dim),
		wk:        mul(L, c.KVDim(), c.Dim),
		wv:        mul(L, c.KVDim(), c.Dim),
		wo:        mul(L, c.Dim, c.Dim),
		rmsFFN:    mul(L, c.Dim),
		w1:        mul(L, c.HiddenDim, c.Dim),
		w2:        mul(L, c.Dim, c.HiddenDim),
		w3:        mul(L, c.HiddenDim, c.Dim),
		rmsFinal:  uint64(c.Dim),
		freqs:     mul(2, c.SeqLen, c.HeadSize()/2), // freq_cis_real and freq_cis_imag, skipped
	}
	if !c.SharedClassifier {
		l.wcls = l.embedding
	}
	for _, n := range []uint64{l.embedding, l.rmsAtt, l.wq, l.wk, l.wv, l.wo, l.rmsFFN, l.w1, l.w2, l.w3, l.rmsFinal, l.freqs, l.wcls} {
		var carry uint64
		total, carry = bits.Add64(total, n, 0)
		if carry != 0 || total > math.MaxInt64/4 {
			ok = false
		}
	}
	return l, total, ok
}

// Parse parses a checkpoint held in data. The Checkpoint's slices refer to data (see the
// package comment); data must not be modified while it is in use.
//
// Parse returns the errors of ParseConfig, ErrTruncated when data is shorter than the
// header implies and ErrTrailingData when it is longer.
func Parse(data []byte) (*Checkpoint, error) {
	cfg, err := ParseConfig(data)
	if err != nil {
		return nil, err
	}
	l, total, ok := layoutOf(cfg)
	if !ok {
		return nil, errf(ErrTruncated, "the header (%+v) implies more than 2^63 bytes", cfg)
	}
	want := HeaderSize + 4*total
	got := uint64(len(data))
	shared := "shared classifier, vocab_size > 0"
	if !cfg.SharedClassifier {
		shared = "separate classifier, vocab_size < 0"
	}
	switch {
	case got < want:
		return nil, errf(ErrTruncated, "%d bytes, the header (%s) implies %d", got, shared, want)
	case got > want:
		return nil, errf(ErrTrailingData, "%d bytes, the header (%s) implies %d", got, shared, want)
	}
	w := floats(data[HeaderSize:])
	next := func(n uint64) []float32 {
		s := w[:n:n]
		w = w[n:]
		return s
	}
	c := &Checkpoint{Config: cfg, Layers: make([]Layer, cfg.Layers)}
	c.Embedding = next(l.embedding)
	stacked := func(n uint64, field func(*Layer) *[]float32) {
		all := next(n)
		per := n / uint64(cfg.Layers)
		for i := range c.Layers {
			lo := uint64(i) * per
			*field(&c.Layers[i]) = all[lo : lo+per : lo+per]
		}
	}
	stacked(l.rmsAtt, func(y *Layer) *[]float32 { return &y.AttnNorm })
	stacked(l.wq, func(y *Layer) *[]float32 { return &y.Wq })
	stacked(l.wk, func(y *Layer) *[]float32 { return &y.Wk })
	stacked(l.wv, func(y *Layer) *[]float32 { return &y.Wv })
	stacked(l.wo, func(y *Layer) *[]float32 { return &y.Wo })
	stacked(l.rmsFFN, func(y *Layer) *[]float32 { return &y.FFNNorm })
	stacked(l.w1, func(y *Layer) *[]float32 { return &y.W1 })
	stacked(l.w2, func(y *Layer) *[]float32 { return &y.W2 })
	stacked(l.w3, func(y *Layer) *[]float32 { return &y.W3 })
	c.FinalNorm = next(l.rmsFinal)
	next(l.freqs)
	if cfg.SharedClassifier {
		c.Classifier = c.Embedding
	} else {
		c.Classifier = next(l.wcls)
	}
	return c, nil
}

// littleEndian reports whether the host stores a float32 as the file does.
var littleEndian = binary.NativeEndian.Uint16([]byte{1, 0}) == 1

// floats returns the little-endian float32 values in b: a view of b when the host is
// little-endian and b is 4-byte aligned, a decoded copy otherwise.
func floats(b []byte) []float32 {
	n := len(b) / 4
	if n == 0 {
		return nil
	}
	if littleEndian && uintptr(unsafe.Pointer(&b[0]))%4 == 0 {
		return unsafe.Slice((*float32)(unsafe.Pointer(&b[0])), n)
	}
	out := make([]float32, n)
	for i := range out {
		out[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return out
}
