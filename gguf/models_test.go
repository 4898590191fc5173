package gguf_test

import (
	"bytes"
	"errors"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/specd-dev/specd/ggml"
	"github.com/specd-dev/specd/gguf"
	"github.com/specd-dev/specd/internal/testmodels"
)

// TestTargetMetadata checks the facts ../shared/models/README.md states about the target.
func TestTargetMetadata(t *testing.T) {
	f, err := gguf.Open(testmodels.ForTest(t, "specd-target-q8_0.gguf"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()

	if f.Version != 3 || f.Alignment != 32 {
		t.Errorf("Version, Alignment = %d, %d, want 3, 32", f.Version, f.Alignment)
	}
	if s, err := f.String("general.architecture"); err != nil || s != "llama" {
		t.Errorf(`String("general.architecture") = %q, %v, want "llama", nil`, s, err)
	}
	for _, tc := range []struct {
		key  string
		want uint64
	}{
		{"llama.embedding_length", 512},
		{"llama.block_count", 8},
		{"llama.attention.head_count", 8},
		{"llama.attention.head_count_kv", 4},
		{"llama.feed_forward_length", 1408},
		{"llama.context_length", 512},
		{"llama.vocab_size", 4096},
	} {
		if got, err := f.Uint(tc.key); err != nil || got != tc.want {
			t.Errorf("Uint(%q) = %d, %v, want %d, nil", tc.key, got, err, tc.want)
		}
	}
	if eps, err := f.Float("llama.attention.layer_norm_rms_epsilon"); err != nil || float32(eps) != 1e-5 {
		t.Errorf("Float(rms epsilon) = %g, %v, want 1e-5, nil", eps, err)
	}
	if bos, err := f.Bool("tokenizer.ggml.add_bos_token"); err != nil || !bos {
		t.Errorf("Bool(add_bos_token) = %v, %v, want true, nil", bos, err)
	}
	tokens, err := f.Strings("tokenizer.ggml.tokens")
	if err != nil || len(tokens) != 4096 || tokens[0] != "<unk>" || tokens[1] != "<s>" || tokens[2] != "</s>" {
		t.Errorf("Strings(tokens) = %d tokens starting %q, %v; want 4096 starting <unk> <s> </s>", len(tokens), tokens[:min(3, len(tokens))], err)
	}
	if scores, err := f.Float32s("tokenizer.ggml.scores"); err != nil || len(scores) != 4096 {
		t.Errorf("Float32s(scores) = %d scores, %v, want 4096", len(scores), err)
	}
	if types, err := f.Int32s("tokenizer.ggml.token_type"); err != nil || len(types) != 4096 {
		t.Errorf("Int32s(token_type) = %d types, %v, want 4096", len(types), err)
	}

	if len(f.Tensors) != 74 {
		t.Errorf("len(Tensors) = %d, want 74 (embedding, 8 layers of 9, output norm; tied classifier)", len(f.Tensors))
	}
	info, data, err := f.Tensor("token_embd.weight")
	if err != nil {
		t.Fatal(err)
	}
	want := gguf.TensorInfo{Name: "token_embd.weight", Dims: []uint64{512, 4096}, Type: ggml.Q8_0, Offset: info.Offset, Size: 4096 * 512 / 32 * 34}
	if !reflect.DeepEqual(info, want) {
		t.Errorf("Tensor(token_embd.weight) = %+v, want %+v", info, want)
	}
	if uint64(len(data)) != info.Size || cap(data) != len(data) {
		t.Errorf("len, cap of token_embd.weight data = %d, %d, want %d, %d", len(data), cap(data), info.Size, info.Size)
	}
	if _, _, err := f.Tensor("output.weight"); !errors.Is(err, gguf.ErrNotFound) {
		t.Errorf("Tensor(output.weight) error = %v, want ErrNotFound (the classifier is tied)", err)
	}
	for _, ti := range f.Tensors {
		wantType := ggml.Q8_0
		if strings.HasSuffix(ti.Name, "norm.weight") {
			wantType = ggml.F32
		}
		if ti.Type != wantType {
			t.Errorf("tensor %s type %v, want %v", ti.Name, ti.Type, wantType)
		}
	}
}

// TestDraftTypes checks that the F16 draft holds F16 matrices and F32 norms.
func TestDraftTypes(t *testing.T) {
	f, err := gguf.Open(testmodels.ForTest(t, "specd-draft-f16.gguf"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if n, err := f.Uint("llama.embedding_length"); err != nil || n != 192 {
		t.Errorf("Uint(embedding_length) = %d, %v, want 192", n, err)
	}
	if len(f.Tensors) != 38 {
		t.Errorf("len(Tensors) = %d, want 38", len(f.Tensors))
	}
	for _, ti := range f.Tensors {
		want := ggml.F16
		if strings.HasSuffix(ti.Name, "norm.weight") {
			want = ggml.F32
		}
		if ti.Type != want {
			t.Errorf("tensor %s type %v, want %v", ti.Name, ti.Type, want)
		}
	}
	info, _, err := f.Tensor("token_embd.weight")
	if err != nil || !reflect.DeepEqual(info.Dims, []uint64{192, 4096}) || info.Size != 192*4096*2 {
		t.Errorf("Tensor(token_embd.weight) = %+v, %v, want dims [192 4096], %d bytes", info, err, 192*4096*2)
	}
}

// TestStoriesMetadata checks the GGUF conversion of llama2.c's stories260K.
func TestStoriesMetadata(t *testing.T) {
	f, err := gguf.Open(testmodels.ForTest(t, "stories260K-f32.gguf"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, tc := range []struct {
		key  string
		want uint64
	}{
		{"llama.embedding_length", 64},
		{"llama.block_count", 5},
		{"llama.attention.head_count", 8},
		{"llama.attention.head_count_kv", 4},
		{"llama.feed_forward_length", 172},
		{"llama.vocab_size", 512},
	} {
		if got, err := f.Uint(tc.key); err != nil || got != tc.want {
			t.Errorf("Uint(%q) = %d, %v, want %d, nil", tc.key, got, err, tc.want)
		}
	}
	if len(f.Tensors) != 2+5*9 {
		t.Errorf("len(Tensors) = %d, want %d", len(f.Tensors), 2+5*9)
	}
	for _, ti := range f.Tensors {
		if ti.Type != ggml.F32 {
			t.Errorf("tensor %s type %v, want f32", ti.Name, ti.Type)
		}
	}
	info, _, err := f.Tensor("blk.0.ffn_down.weight")
	if err != nil || !reflect.DeepEqual(info.Dims, []uint64{172, 64}) {
		t.Errorf("Tensor(blk.0.ffn_down.weight) = %+v, %v, want dims [172 64] (rows of hidden_dim)", info, err)
	}
}

// TestModelsRoundTrip parses every shared GGUF file both ways (Open and Parse), writes it
// back with Write and checks that llama.cpp's layout is reproduced byte for byte: the same
// header, the same packing, the same padding.
func TestModelsRoundTrip(t *testing.T) {
	for _, name := range []string{
		"stories260K-f32.gguf", "specd-draft-f16.gguf", "specd-draft-q8_0.gguf",
		"specd-draft-q4_0.gguf", "specd-target-q8_0.gguf",
	} {
		t.Run(name, func(t *testing.T) {
			path := testmodels.ForTest(t, name)
			raw, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			mapped, err := gguf.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer mapped.Close()
			parsed, err := gguf.Parse(raw)
			if err != nil {
				t.Fatal(err)
			}
			if !sameMetadata(mapped, parsed) {
				t.Fatal("Open and Parse disagree on the metadata")
			}
			var tensors []gguf.TensorData
			for _, ti := range mapped.Tensors {
				_, data, err := mapped.Tensor(ti.Name)
				if err != nil {
					t.Fatal(err)
				}
				tensors = append(tensors, gguf.TensorData{Name: ti.Name, Dims: ti.Dims, Type: ti.Type, Data: data})
			}
			var buf bytes.Buffer
			if err := gguf.Write(&buf, mapped.KV, tensors, mapped.Alignment); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(buf.Bytes(), raw) {
				t.Errorf("Write(Parse(file)) differs from the file (%d bytes, want %d) at byte %d",
					buf.Len(), len(raw), firstDiff(buf.Bytes(), raw))
			}
		})
	}
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// sameMetadata reports whether a and b have the same version, alignment, metadata and
// tensor infos.
func sameMetadata(a, b *gguf.File) bool {
	if a.Version != b.Version || a.Alignment != b.Alignment || len(a.KV) != len(b.KV) ||
		!reflect.DeepEqual(a.Tensors, b.Tensors) {
		return false
	}
	for i := range a.KV {
		if a.KV[i].Key != b.KV[i].Key || !a.KV[i].Value.Equal(b.KV[i].Value) {
			return false
		}
	}
	return true
}

// TestClose checks that metadata outlives Close and tensor data does not.
func TestClose(t *testing.T) {
	f, err := gguf.Open(testmodels.ForTest(t, "stories260K-f32.gguf"))
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatalf("Close() = %v", err)
	}
	if err := f.Close(); err != nil {
		t.Errorf("second Close() = %v, want nil", err)
	}
	if _, _, err := f.Tensor("token_embd.weight"); !errors.Is(err, gguf.ErrClosed) {
		t.Errorf("Tensor after Close: error %v, want ErrClosed", err)
	}
	if toks, err := f.Strings("tokenizer.ggml.tokens"); err != nil || len(toks) != 512 {
		t.Errorf("Strings(tokens) after Close = %d tokens, %v, want 512", len(toks), err)
	}
}

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	empty := dir + "/empty.gguf"
	notGGUF := dir + "/model.bin"
	if err := os.WriteFile(empty, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(notGGUF, []byte("\x40\x00\x00\x00 a llama2.c checkpoint"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		path string
		want error
	}{
		{dir + "/missing.gguf", os.ErrNotExist},
		{empty, gguf.ErrTruncated},
		{notGGUF, gguf.ErrNotGGUF},
	} {
		if _, err := gguf.Open(tc.path); !errors.Is(err, tc.want) {
			t.Errorf("Open(%s) error = %v, want %v", tc.path, err, tc.want)
		}
	}
}

// BenchmarkOpen measures opening the target: mapping it and parsing its metadata (a
// 4096-token vocabulary and 74 tensor infos); no weight is read.
func BenchmarkOpen(b *testing.B) {
	path := testmodels.ForTest(b, "specd-target-q8_0.gguf")
	for b.Loop() {
		f, err := gguf.Open(path)
		if err != nil {
			b.Fatal(err)
		}
		f.Close()
	}
}
