package gguf_test

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/specd-dev/specd/gguf"
	"github.com/specd-dev/specd/internal/testmodels"
)

var update = flag.Bool("update", false, "rewrite the generated fuzz seeds in testdata/fuzz")

// FuzzParse checks that Parse never panics, reports every failure with a sentinel inside a
// *FormatError, and that whatever it accepts is consistent: every tensor's data is in
// bounds, every value can be read, and writing the file back and parsing it again gives
// the same metadata and data.
//
// Besides the committed seeds, the real files are seeds too (read from the shared
// directories, never copied here): a model with K-quant tensors, one in F32, and the
// vocabularies whose 100,000-entry arrays of strings and merges real files carry.
func FuzzParse(f *testing.F) {
	for _, path := range []string{
		testmodels.ForTest(f, "stories260K-f32.gguf"),
		testmodels.ForTest(f, "arch-qwen2-q4_k_m.gguf"),
		filepath.Join(testmodels.VocabDir(f), "ggml-vocab-llama-spm.gguf"),
		filepath.Join(testmodels.VocabDir(f), "ggml-vocab-qwen2.gguf"),
	} {
		data, err := os.ReadFile(path)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		file, err := gguf.Parse(data)
		if err != nil {
			var fe *gguf.FormatError
			if file != nil || !errors.As(err, &fe) || !isSentinel(err) {
				t.Fatalf("Parse error %v (file %v): want a *FormatError wrapping a sentinel and no File", err, file)
			}
			return
		}
		var tensors []gguf.TensorData
		for _, ti := range file.Tensors {
			info, b, err := file.Tensor(ti.Name)
			if err != nil || uint64(len(b)) != info.Size {
				t.Fatalf("Tensor(%q) = %d bytes, %v, want %d bytes", ti.Name, len(b), err, info.Size)
			}
			tensors = append(tensors, gguf.TensorData{Name: ti.Name, Dims: ti.Dims, Type: ti.Type, Data: b})
		}
		for _, x := range file.KV {
			touch(x.Value)
		}
		if file.Alignment > 1<<12 {
			return // writing would pad to the alignment: large, and not what this checks
		}
		var buf bytes.Buffer
		if err := gguf.Write(&buf, file.KV, tensors, file.Alignment); err != nil {
			t.Fatalf("Write(Parse(data)) error: %v", err)
		}
		again, err := gguf.Parse(buf.Bytes())
		if err != nil {
			t.Fatalf("Parse(Write(Parse(data))) error: %v", err)
		}
		if len(again.KV) != len(file.KV) {
			t.Fatalf("round trip: %d KVs, want %d", len(again.KV), len(file.KV))
		}
		for i := range file.KV {
			if again.KV[i].Key != file.KV[i].Key || !again.KV[i].Value.Equal(file.KV[i].Value) {
				t.Fatalf("round trip: KV[%d] = %q %v, want %q %v", i, again.KV[i].Key, again.KV[i].Value, file.KV[i].Key, file.KV[i].Value)
			}
		}
		for _, want := range tensors {
			_, got, err := again.Tensor(want.Name)
			if err != nil || !bytes.Equal(got, want.Data) {
				t.Fatalf("round trip: tensor %q changed (%v)", want.Name, err)
			}
		}
	})
}

func isSentinel(err error) bool {
	for _, s := range []error{gguf.ErrNotGGUF, gguf.ErrVersion, gguf.ErrTruncated, gguf.ErrMalformed, gguf.ErrUnsupportedType} {
		if errors.Is(err, s) {
			return true
		}
	}
	return false
}

// touch reads every part of v through the accessors.
func touch(v gguf.Value) {
	_ = v.String()
	v.Uint()
	v.Int()
	v.Float()
	v.Bool()
	v.Str()
	v.Strings()
	v.Float32s()
	v.Int32s()
	for i := range v.Len() {
		touch(v.Index(i))
	}
}

// TestSeedCorpus checks that the committed seeds of FuzzParse are what the generator makes
// today; run with -update to rewrite them.
func TestSeedCorpus(t *testing.T) {
	dir := filepath.Join("testdata", "fuzz", "FuzzParse")
	for name, data := range seeds(t) {
		if _, err := gguf.Parse(data); err != nil {
			t.Fatalf("seed %s does not parse: %v", name, err)
		}
		want := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", data)
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
