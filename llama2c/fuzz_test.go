package llama2c_test

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/specd-dev/specd/internal/testmodels"
	"github.com/specd-dev/specd/llama2c"
)

var update = flag.Bool("update", false, "rewrite the generated fuzz seeds in testdata/fuzz")

// FuzzParse checks that Parse never panics, fails only with a sentinel, and that what it
// accepts has slices of the sizes the header implies and reads the same from misaligned
// bytes (the copying path) as from aligned ones (the view path).
//
// The real stories260K checkpoint (read from the shared directory) seeds it besides the
// committed synthetic seeds.
func FuzzParse(f *testing.F) {
	f.Add(readShared(f, "stories260K.bin"))
	f.Fuzz(func(t *testing.T, data []byte) {
		ck, err := llama2c.Parse(data)
		if err != nil {
			if ck != nil || !isSentinel(err) {
				t.Fatalf("Parse error %v (checkpoint %v): want a sentinel and no Checkpoint", err, ck != nil)
			}
			return
		}
		c := ck.Config
		sizes := map[string]int{
			"AttnNorm": c.Dim, "Wq": c.Dim * c.Dim, "Wk": c.KVDim() * c.Dim, "Wv": c.KVDim() * c.Dim,
			"Wo": c.Dim * c.Dim, "FFNNorm": c.Dim, "W1": c.HiddenDim * c.Dim, "W2": c.Dim * c.HiddenDim, "W3": c.HiddenDim * c.Dim,
		}
		if len(ck.Embedding) != c.Vocab*c.Dim || len(ck.Classifier) != c.Vocab*c.Dim || len(ck.FinalNorm) != c.Dim || len(ck.Layers) != c.Layers {
			t.Fatalf("Parse(%+v): embedding %d, classifier %d, final norm %d, %d layers", c, len(ck.Embedding), len(ck.Classifier), len(ck.FinalNorm), len(ck.Layers))
		}
		for i, l := range ck.Layers {
			for name, s := range layerSlices(l) {
				if len(s) != sizes[name] {
					t.Fatalf("layer %d %s: %d floats, want %d", i, name, len(s), sizes[name])
				}
			}
		}
		shifted := make([]byte, len(data)+1)
		copy(shifted[1:], data)
		other, err := llama2c.Parse(shifted[1:])
		if err != nil {
			t.Fatalf("Parse of the same bytes at another address: %v", err)
		}
		if !sameBits(ck.Embedding, other.Embedding) || !sameBits(ck.Classifier, other.Classifier) || !sameBits(ck.FinalNorm, other.FinalNorm) {
			t.Fatal("Parse of the same bytes at another address gives other weights")
		}
		for i := range ck.Layers {
			a, b := layerSlices(ck.Layers[i]), layerSlices(other.Layers[i])
			for name := range a {
				if !sameBits(a[name], b[name]) {
					t.Fatalf("layer %d %s differs at another address", i, name)
				}
			}
		}
	})
}

// FuzzParseTokenizer checks that ParseTokenizer never panics or allocates by an unchecked
// count, fails only with an error, and that what it accepts encodes back to the same bytes.
//
// The real tok512.bin (read from the shared directory) seeds it with its vocabulary size.
func FuzzParseTokenizer(f *testing.F) {
	f.Add(readShared(f, "tok512.bin"), 512)
	f.Fuzz(func(t *testing.T, data []byte, vocabSize int) {
		v, err := llama2c.ParseTokenizer(data, vocabSize)
		if err != nil {
			if v != nil {
				t.Fatalf("ParseTokenizer error %v with a Vocab", err)
			}
			return
		}
		if len(v.Tokens) != vocabSize || len(v.Scores) != vocabSize {
			t.Fatalf("ParseTokenizer(%d) = %d tokens, %d scores", vocabSize, len(v.Tokens), len(v.Scores))
		}
		for i, s := range v.Tokens {
			if len(s) > v.MaxTokenLen {
				t.Fatalf("token %d is %d bytes, longer than MaxTokenLen %d", i, len(s), v.MaxTokenLen)
			}
		}
		if again := tokenizer(int32(v.MaxTokenLen), v.Tokens, v.Scores); !bytes.Equal(again, data) {
			t.Fatal("encoding the parsed vocabulary does not give the input back")
		}
	})
}

// readShared returns the bytes of a shared model file.
func readShared(tb testing.TB, name string) []byte {
	tb.Helper()
	data, err := os.ReadFile(testmodels.ForTest(tb, name))
	if err != nil {
		tb.Fatal(err)
	}
	return data
}

func isSentinel(err error) bool {
	for _, s := range []error{llama2c.ErrTruncated, llama2c.ErrTrailingData, llama2c.ErrInvalidHeader, llama2c.ErrVersion, llama2c.ErrMalformed} {
		if errors.Is(err, s) {
			return true
		}
	}
	return false
}

func layerSlices(l llama2c.Layer) map[string][]float32 {
	return map[string][]float32{
		"AttnNorm": l.AttnNorm, "Wq": l.Wq, "Wk": l.Wk, "Wv": l.Wv, "Wo": l.Wo,
		"FFNNorm": l.FFNNorm, "W1": l.W1, "W2": l.W2, "W3": l.W3,
	}
}

func sameBits(a, b []float32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
			return false
		}
	}
	return true
}

// seedFiles returns the committed fuzz seeds: for each fuzz target, named files holding
// the target's arguments in the corpus encoding.
func seedFiles() map[string]map[string]string {
	sep := tiny
	sep.SharedClassifier = false
	mha := llama2c.Config{Dim: 4, HiddenDim: 2, Layers: 1, Heads: 1, KVHeads: 1, Vocab: 3, SeqLen: 1, SharedClassifier: true}
	bytesArg := func(b []byte) string { return fmt.Sprintf("[]byte(%q)\n", b) }
	tok := tokenizer(6, []string{"<unk>", "\n<s>\n", "\n</s>\n", "<0x0A>", " a", "\xe2\x80\x8a"}, []float32{0, 0, 0, 0, -1, -2.5})
	return map[string]map[string]string{
		"FuzzParse": {
			"tiny-gqa":            bytesArg(checkpoint(tiny)),
			"tiny-own-classifier": bytesArg(checkpoint(sep)),
			"mha-one-layer":       bytesArg(checkpoint(mha)),
			"header-only":         bytesArg(header(64, 172, 5, 8, 4, 512, 512)),
			"export-v1":           bytesArg(append([]byte("ak42\x01\x00\x00\x00"), make([]byte, 24)...)),
		},
		"FuzzParseTokenizer": {
			"six-tokens":      bytesArg(tok) + "int(6)\n",
			"fewer-than-file": bytesArg(tok) + "int(4)\n",
			"empty-tokens":    bytesArg(tokenizer(0, []string{"", ""}, []float32{1, 2})) + "int(2)\n",
		},
	}
}

// TestSeedCorpus checks that the committed seeds are what seedFiles makes today; run with
// -update to rewrite them.
func TestSeedCorpus(t *testing.T) {
	for target, files := range seedFiles() {
		dir := filepath.Join("testdata", "fuzz", target)
		for name, args := range files {
			want := "go test fuzz v1\n" + args
			path := filepath.Join(dir, "seed-"+name)
			if *update {
				if err := os.MkdirAll(dir, 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, []byte(want), 0o644); err != nil {
					t.Fatal(err)
				}
				continue
			}
			got, err := os.ReadFile(path)
			if err != nil || string(got) != want {
				t.Errorf("seed %s is stale or missing (%v); run go test -run TestSeedCorpus -update", path, err)
			}
		}
	}
}
