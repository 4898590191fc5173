package llama2c_test

import (
	"encoding/binary"
	"math"

	"github.com/specd-dev/specd/llama2c"
)

// header encodes the seven int32 of a checkpoint header.
func header(dim, hidden, layers, heads, kvHeads, vocab, seqLen int32) []byte {
	var b []byte
	for _, x := range []int32{dim, hidden, layers, heads, kvHeads, vocab, seqLen} {
		b = binary.LittleEndian.AppendUint32(b, uint32(x))
	}
	return b
}

// floatsAfter returns the number of float32 a checkpoint with header c holds.
func floatsAfter(c llama2c.Config) int {
	kv := c.Dim / c.Heads * c.KVHeads
	n := c.Vocab*c.Dim + c.Layers*(2*c.Dim+2*c.Dim*c.Dim+2*kv*c.Dim+3*c.HiddenDim*c.Dim) + c.Dim + c.SeqLen*(c.Dim/c.Heads)
	if !c.SharedClassifier {
		n += c.Vocab * c.Dim
	}
	return n
}

// checkpoint encodes a checkpoint whose i-th float32 (counting from the first after the
// header) is i, so that a test can tell from a value where in the file it came from.
func checkpoint(c llama2c.Config) []byte {
	vocab := int32(c.Vocab)
	if !c.SharedClassifier {
		vocab = -vocab
	}
	b := header(int32(c.Dim), int32(c.HiddenDim), int32(c.Layers), int32(c.Heads), int32(c.KVHeads), vocab, int32(c.SeqLen))
	for i := range floatsAfter(c) {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(float32(i)))
	}
	return b
}

// tiny is the smallest interesting config: grouped-query attention, two layers.
var tiny = llama2c.Config{Dim: 4, HiddenDim: 6, Layers: 2, Heads: 2, KVHeads: 1, Vocab: 5, SeqLen: 3, SharedClassifier: true}

// tokenizer encodes a tokenizer.bin.
func tokenizer(maxLen int32, tokens []string, scores []float32) []byte {
	b := binary.LittleEndian.AppendUint32(nil, uint32(maxLen))
	for i, t := range tokens {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(scores[i]))
		b = binary.LittleEndian.AppendUint32(b, uint32(len(t)))
		b = append(b, t...)
	}
	return b
}
