package llama2c_test

import (
	"encoding/binary"
	"errors"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"unsafe"

	"github.com/specd-dev/specd/gguf"
	"github.com/specd-dev/specd/internal/testmodels"
	"github.com/specd-dev/specd/llama2c"
)

// TestLayout checks that Parse carves the arrays in run.c's order: in a file whose i-th
// float is i, each slice must start at the index the layout implies.
func TestLayout(t *testing.T) {
	for _, c := range []llama2c.Config{tiny, func() llama2c.Config { c := tiny; c.SharedClassifier = false; return c }()} {
		ck, err := llama2c.Parse(checkpoint(c))
		if err != nil {
			t.Fatal(err)
		}
		if ck.Config != c {
			t.Errorf("Config = %+v, want %+v", ck.Config, c)
		}
		kv := c.KVDim()
		next := 0
		expect := func(name string, s []float32, n int) {
			t.Helper()
			if len(s) != n || cap(s) != n || s[0] != float32(next) || s[n-1] != float32(next+n-1) {
				t.Errorf("%s = %d floats from %v, want %d from %d", name, len(s), s[0], n, next)
			}
			next += n
		}
		expect("Embedding", ck.Embedding, c.Vocab*c.Dim)
		fields := []struct {
			name string
			get  func(llama2c.Layer) []float32
			n    int
		}{
			{"AttnNorm", func(l llama2c.Layer) []float32 { return l.AttnNorm }, c.Dim},
			{"Wq", func(l llama2c.Layer) []float32 { return l.Wq }, c.Dim * c.Dim},
			{"Wk", func(l llama2c.Layer) []float32 { return l.Wk }, kv * c.Dim},
			{"Wv", func(l llama2c.Layer) []float32 { return l.Wv }, kv * c.Dim},
			{"Wo", func(l llama2c.Layer) []float32 { return l.Wo }, c.Dim * c.Dim},
			{"FFNNorm", func(l llama2c.Layer) []float32 { return l.FFNNorm }, c.Dim},
			{"W1", func(l llama2c.Layer) []float32 { return l.W1 }, c.HiddenDim * c.Dim},
			{"W2", func(l llama2c.Layer) []float32 { return l.W2 }, c.Dim * c.HiddenDim},
			{"W3", func(l llama2c.Layer) []float32 { return l.W3 }, c.HiddenDim * c.Dim},
		}
		for _, fd := range fields { // stacked: all layers of one array, then the next array
			for i, l := range ck.Layers {
				expect(fd.name+"["+string(rune('0'+i))+"]", fd.get(l), fd.n)
			}
		}
		expect("FinalNorm", ck.FinalNorm, c.Dim)
		next += c.SeqLen * c.HeadSize() // freq_cis_real and freq_cis_imag
		if c.SharedClassifier {
			if &ck.Classifier[0] != &ck.Embedding[0] || len(ck.Classifier) != len(ck.Embedding) {
				t.Error("shared Classifier is not the Embedding slice")
			}
		} else {
			expect("Classifier", ck.Classifier, c.Vocab*c.Dim)
		}
	}
}

// TestUnalignedParse checks that bytes not 4-byte aligned are decoded into a copy with the
// same values, not viewed through a misaligned pointer.
func TestUnalignedParse(t *testing.T) {
	data := checkpoint(tiny)
	buf := make([]byte, len(data)+1)
	odd := buf[1:]
	if uintptr(unsafe.Pointer(&buf[0]))%4 == 0 {
		copy(odd, data)
	} else {
		odd = buf[:len(data)]
		copy(odd, data)
	}
	aligned, err := llama2c.Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	unaligned, err := llama2c.Parse(odd)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(aligned.Layers, unaligned.Layers) || !reflect.DeepEqual(aligned.Embedding, unaligned.Embedding) {
		t.Error("Parse of misaligned bytes differs from Parse of aligned bytes")
	}
}

func TestParseErrors(t *testing.T) {
	good := checkpoint(tiny)
	sep := tiny
	sep.SharedClassifier = false
	for _, tc := range []struct {
		name    string
		data    []byte
		want    error
		mention string
	}{
		{"empty", nil, llama2c.ErrTruncated, "0 bytes"},
		{"short header", good[:27], llama2c.ErrTruncated, "27 bytes"},
		{"dim 0", header(0, 6, 2, 2, 1, 5, 3), llama2c.ErrInvalidHeader, "dim = 0"},
		{"hidden negative", header(4, -6, 2, 2, 1, 5, 3), llama2c.ErrInvalidHeader, "hidden_dim = -6"},
		{"layers 0", header(4, 6, 0, 2, 1, 5, 3), llama2c.ErrInvalidHeader, "n_layers = 0"},
		{"heads 0", header(4, 6, 2, 0, 1, 5, 3), llama2c.ErrInvalidHeader, "n_heads = 0"},
		{"kv heads 0", header(4, 6, 2, 2, 0, 5, 3), llama2c.ErrInvalidHeader, "n_kv_heads = 0"},
		{"vocab 0", header(4, 6, 2, 2, 1, 0, 3), llama2c.ErrInvalidHeader, "vocab_size = 0"},
		{"seq_len 0", header(4, 6, 2, 2, 1, 5, 0), llama2c.ErrInvalidHeader, "seq_len = 0"},
		{"heads do not divide dim", header(6, 6, 2, 4, 1, 5, 3), llama2c.ErrInvalidHeader, "dim = 6 is not a multiple of n_heads = 4"},
		{"kv heads do not divide heads", header(12, 6, 2, 3, 2, 5, 3), llama2c.ErrInvalidHeader, "n_heads = 3 is not a multiple of n_kv_heads = 2"},
		{"odd head size", header(6, 6, 2, 2, 1, 5, 3), llama2c.ErrInvalidHeader, "head size dim/n_heads = 6/2 = 3 is odd"},
		{"version 1 export", append([]byte("ak42\x01\x00\x00\x00"), make([]byte, 248)...), llama2c.ErrVersion, "export version 1"},
		{"one float short", good[:len(good)-4], llama2c.ErrTruncated, "shared classifier"},
		{"one byte short", good[:len(good)-1], llama2c.ErrTruncated, "implies"},
		{"one float long", append(append([]byte(nil), good...), 0, 0, 0, 0), llama2c.ErrTrailingData, "implies"},
		{"classifier but vocab > 0", append(append([]byte(nil), good...), make([]byte, 4*tiny.Vocab*tiny.Dim)...), llama2c.ErrTrailingData, "shared classifier, vocab_size > 0"},
		{"vocab < 0 without classifier", append(header(4, 6, 2, 2, 1, -5, 3), good[28:]...), llama2c.ErrTruncated, "separate classifier, vocab_size < 0"},
		{"huge", header(1<<30, math.MaxInt32, math.MaxInt32, 2, 1, math.MinInt32, math.MaxInt32), llama2c.ErrTruncated, "implies"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ck, err := llama2c.Parse(tc.data)
			if !errors.Is(err, tc.want) {
				t.Fatalf("Parse error = %v, want %v", err, tc.want)
			}
			if ck != nil {
				t.Error("Parse returned a Checkpoint with an error")
			}
			if !strings.Contains(err.Error(), tc.mention) {
				t.Errorf("Parse error = %q, want it to mention %q", err, tc.mention)
			}
		})
	}
	if _, err := llama2c.Parse(checkpoint(sep)); err != nil {
		t.Errorf("Parse(separate classifier) error = %v", err)
	}
}

// TestTruncatedEverywhere cuts a valid checkpoint at every length.
func TestTruncatedEverywhere(t *testing.T) {
	data := checkpoint(tiny)
	for n := range len(data) {
		if _, err := llama2c.Parse(data[:n]); !errors.Is(err, llama2c.ErrTruncated) {
			t.Fatalf("Parse(first %d of %d bytes) error = %v, want ErrTruncated", n, len(data), err)
		}
	}
}

// TestStories checks stories260K.bin against the facts in ../shared/models/README.md.
func TestStories(t *testing.T) {
	ck, err := llama2c.Open(testmodels.ForTest(t, "stories260K.bin"))
	if err != nil {
		t.Fatal(err)
	}
	defer ck.Close()
	want := llama2c.Config{Dim: 64, HiddenDim: 172, Layers: 5, Heads: 8, KVHeads: 4, Vocab: 512, SeqLen: 512, SharedClassifier: true}
	if ck.Config != want {
		t.Errorf("Config = %+v, want %+v", ck.Config, want)
	}
	if &ck.Classifier[0] != &ck.Embedding[0] {
		t.Error("Classifier is not the Embedding (the classifier is shared)")
	}
	if err := ck.Close(); err != nil {
		t.Errorf("Close() = %v", err)
	}
	if ck.Embedding != nil || ck.Layers != nil {
		t.Error("Close left the weight slices set")
	}
	if err := ck.Close(); err != nil {
		t.Errorf("second Close() = %v", err)
	}
}

// TestStoriesMatchesGGUF checks that stories260K.bin and its GGUF conversion hold the same
// weights, and so pins down the orientation: llama2.c's row-major [out][in] matrix is
// byte for byte the GGUF tensor with Dims {in, out} (ne0 = in, the row length). No
// transpose, and no permutation of the Q and K rows: llama2.c's RoPE rotates adjacent
// pairs, as GGML's default (non-NeoX) RoPE does.
func TestStoriesMatchesGGUF(t *testing.T) {
	ck, err := llama2c.Open(testmodels.ForTest(t, "stories260K.bin"))
	if err != nil {
		t.Fatal(err)
	}
	defer ck.Close()
	g, err := gguf.Open(testmodels.ForTest(t, "stories260K-f32.gguf"))
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()

	c := ck.Config
	check := func(name string, got []float32, dims ...uint64) {
		t.Helper()
		info, data, err := g.Tensor(name)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(info.Dims, dims) {
			t.Errorf("GGUF %s dims %v, want %v", name, info.Dims, dims)
		}
		if len(data) != 4*len(got) {
			t.Fatalf("GGUF %s has %d bytes, llama2c %d floats", name, len(data), len(got))
		}
		for i, x := range got {
			if y := math.Float32frombits(binary.LittleEndian.Uint32(data[4*i:])); y != x {
				t.Fatalf("%s[%d]: GGUF %v, llama2c %v", name, i, y, x)
			}
		}
	}
	d, h, kv := uint64(c.Dim), uint64(c.HiddenDim), uint64(c.KVDim())
	check("token_embd.weight", ck.Embedding, d, uint64(c.Vocab))
	check("output_norm.weight", ck.FinalNorm, d)
	for i, l := range ck.Layers {
		p := "blk." + string(rune('0'+i)) + "."
		check(p+"attn_norm.weight", l.AttnNorm, d)
		check(p+"attn_q.weight", l.Wq, d, d)
		check(p+"attn_k.weight", l.Wk, d, kv)
		check(p+"attn_v.weight", l.Wv, d, kv)
		check(p+"attn_output.weight", l.Wo, d, d)
		check(p+"ffn_norm.weight", l.FFNNorm, d)
		check(p+"ffn_gate.weight", l.W1, d, h)
		check(p+"ffn_down.weight", l.W2, h, d)
		check(p+"ffn_up.weight", l.W3, d, h)
	}
}

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty.bin")
	short := filepath.Join(dir, "short.bin")
	if err := os.WriteFile(empty, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	good := checkpoint(tiny)
	if err := os.WriteFile(short, good[:len(good)-8], 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		path string
		want error
	}{
		{filepath.Join(dir, "missing.bin"), os.ErrNotExist},
		{empty, llama2c.ErrTruncated},
		{short, llama2c.ErrTruncated},
	} {
		if _, err := llama2c.Open(tc.path); !errors.Is(err, tc.want) {
			t.Errorf("Open(%s) error = %v, want %v", tc.path, err, tc.want)
		}
	}
}
