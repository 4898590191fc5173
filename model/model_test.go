package model_test

import (
	"bufio"
	"context"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/specd-dev/specd/generate"
	"github.com/specd-dev/specd/ggml"
	"github.com/specd-dev/specd/internal/testmodels"
	"github.com/specd-dev/specd/kernels"
	"github.com/specd-dev/specd/kvcache"
	"github.com/specd-dev/specd/model"
)

// refRow is one line of the golden reference files in ../shared/reference.
type refRow struct {
	Model      string          `json:"model"`
	File       string          `json:"file"`
	ID         string          `json:"id"`
	Prompt     string          `json:"prompt"`
	PromptIDs  []int32         `json:"prompt_ids"`
	OutputIDs  []int32         `json:"output_ids"`
	ForcedIDs  []int32         `json:"forced_ids"`
	LlamaTop1  []int32         `json:"llamacpp_top1"`
	Margin     []float64       `json:"llamacpp_margin"`
	Top5       [][][2]float64  `json:"top5"`
	Top5Logits [][][2]float64  `json:"top5_logits"`
	Stop       string          `json:"stop"`
	NOutput    int             `json:"n_output"`
	Extra      json.RawMessage `json:"-"`
}

func readRefs(t *testing.T, name string) []refRow {
	t.Helper()
	f, err := os.Open(filepath.Join(testmodels.ReferenceDir(t), name))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var rows []refRow
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		var r refRow
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		rows = append(rows, r)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return rows
}

func load(t testing.TB, name string, quant *ggml.Type) *model.Model {
	t.Helper()
	return loadPath(t, testmodels.ForTest(t, name), quant)
}

func loadPath(t testing.TB, path string, quant *ggml.Type) *model.Model {
	t.Helper()
	m, err := model.Load(path, model.LoadOptions{Quant: quant})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

func newState(t testing.TB, m *model.Model, threads, block int) *model.State {
	t.Helper()
	return newStateKV(t, m, threads, block, ggml.F32)
}

func greedy(t *testing.T, st *model.State, prompt []int32, n int, stopAtBOS bool) []int32 {
	t.Helper()
	m := st.Model()
	st.Seq.Truncate(0)
	out, _, err := generate.Run(context.Background(), st, generate.Request{
		Prompt: prompt,
		Limits: generate.Limits{MaxTokens: n, Context: m.Context, End: m.Tok.EOG(), BOS: m.Tok.BOS(), StopAtBOS: stopAtBOS},
	}, func(generate.Token) error { return nil })
	if err != nil {
		t.Fatal(err)
	}
	return out.IDs
}

// checkTop5 compares logits after the prompt and after each of the first reference
// output tokens with the reference top-5 (id, logit) pairs.
func checkTop5(t *testing.T, st *model.State, prompt, output []int32, top5 [][][2]float64, tol float64) {
	t.Helper()
	st.Seq.Truncate(0)
	logits, err := st.Forward(prompt, false)
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range top5 {
		if i > 0 {
			if logits, err = st.Forward(output[i-1:i], false); err != nil {
				t.Fatal(err)
			}
		}
		for _, p := range want {
			id, w := int(p[0]), p[1]
			if got := float64(logits[id]); math.Abs(got-w) > tol {
				t.Errorf("position %d: logit[%d] = %.6f, want %.6f (±%g)", len(prompt)-1+i, id, got, w, tol)
			}
		}
	}
}

func firstDiff(a, b []int32) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	if len(a) != len(b) {
		return min(len(a), len(b))
	}
	return -1
}

func TestStories260KMatchesLlama2c(t *testing.T) {
	for _, file := range []string{"stories260K.bin", "stories260K-f32.gguf"} {
		m := load(t, file, nil)
		st := newState(t, m, 2, 16)
		for _, ref := range []string{"stories260K_llama2c.jsonl", "stories260K_llama2c_stop_at_bos.jsonl"} {
			for _, r := range readRefs(t, ref) {
				t.Run(file+"/"+ref+"/"+r.Prompt, func(t *testing.T) {
					if got := m.Tok.Encode(r.Prompt, true); firstDiff(got, r.PromptIDs) >= 0 {
						t.Fatalf("Encode(%q) = %v, want %v", r.Prompt, got, r.PromptIDs)
					}
					stopAtBOS := r.Stop == "bos"
					n := r.NOutput
					if stopAtBOS {
						n = 256 // the reference stopped at BOS before this
					}
					got := greedy(t, st, r.PromptIDs, n, stopAtBOS)
					if i := firstDiff(got, r.OutputIDs); i >= 0 {
						t.Fatalf("greedy output differs at token %d: got %v, want %v", i, got[i:min(i+5, len(got))], r.OutputIDs[i:min(i+5, len(r.OutputIDs))])
					}
					checkTop5(t, st, r.PromptIDs, r.OutputIDs, r.Top5Logits, 1e-3)
				})
			}
		}
	}
}

func TestDraftF16MatchesFP32Reference(t *testing.T) {
	m := load(t, "specd-draft-f16.gguf", nil)
	st := newState(t, m, 2, 16)
	for _, r := range readRefs(t, "pair_f32.jsonl") {
		if r.Model != "draft" {
			continue
		}
		t.Run(r.ID, func(t *testing.T) {
			if got := m.Tok.Encode(r.Prompt, true); firstDiff(got, r.PromptIDs) >= 0 {
				t.Fatalf("Encode(%q) = %v, want %v", r.Prompt, got, r.PromptIDs)
			}
			got := greedy(t, st, r.PromptIDs, len(r.OutputIDs), false)
			if i := firstDiff(got, r.OutputIDs); i >= 0 {
				t.Fatalf("greedy output differs at token %d of %d", i, len(r.OutputIDs))
			}
			checkTop5(t, st, r.PromptIDs, r.OutputIDs, r.Top5, 1e-3)
		})
	}
}

// TestTeacherForcedAgreement compares the argmax after every forced position with
// llama.cpp's on the same quantized file.
func TestTeacherForcedAgreement(t *testing.T) {
	testTeacherForced(t, "pair_llamacpp_teacher_forced.jsonl", nil, func(t *testing.T, file string, a agreement) {
		if pl := a.pctAll(); pl < 99 {
			t.Errorf("%s: top-1 agreement with llama.cpp = %.1f%%, want ≥ 99%%", file, pl)
		}
	})
}

// TestTeacherForcedKQuant holds the K-quant target (Q4_K, Q6_K and Q5_0 tensors) to
// issue 13's bar: llama.cpp's argmax wherever it wins by a clear margin (≥ 0.1) on at
// least 99.5% of those positions, and on 97% of all. The reference's rows for a Q6_K
// requantization of the target are not checked here: that file is not shipped.
func TestTeacherForcedKQuant(t *testing.T) {
	testTeacherForced(t, "llamacpp_teacher_forced_kquant.jsonl", []string{"specd-target-q4_k_m.gguf"}, func(t *testing.T, file string, a agreement) {
		if pc := a.pctClear(); pc < 99.5 {
			t.Errorf("%s: top-1 agreement with llama.cpp where its margin is ≥ 0.1 = %.2f%%, want ≥ 99.5%%", file, pc)
		}
		if pl := a.pctAll(); pl < 97 {
			t.Errorf("%s: top-1 agreement with llama.cpp = %.2f%%, want ≥ 97%%", file, pl)
		}
	})
}

// testTeacherForced runs every forced sequence of the reference file ref (only the model
// files in only, if given) and hands each file's agreement to check.
func testTeacherForced(t *testing.T, ref string, only []string, check func(t *testing.T, file string, a agreement)) {
	byFile := map[string][]refRow{}
	var files []string
	for _, r := range readRefs(t, ref) {
		if only != nil && !slices.Contains(only, r.File) {
			continue
		}
		if byFile[r.File] == nil {
			files = append(files, r.File)
		}
		byFile[r.File] = append(byFile[r.File], r)
	}
	if len(files) == 0 {
		t.Fatalf("%s: no rows for %v", ref, only)
	}
	for _, file := range files {
		t.Run(file, func(t *testing.T) {
			a := teacherForced(t, newState(t, load(t, file, nil), 2, 64), byFile[file])
			t.Logf("%s: top-1 agreement with llama.cpp %.2f%% of %d positions, %.2f%% of the %d where its margin is ≥ %v",
				file, a.pctAll(), a.all, a.pctClear(), a.clear, clearMargin)
			check(t, file, a)
		})
	}
}

// TestBatchInvariance checks that the logits of every position are bitwise identical
// whether computed one token at a time or inside blocks of 2..16 tokens and a few wider
// ones (a batch of sequences' tokens), with 1 or 2 threads: the property that makes
// speculative greedy output equal plain output.
func TestBatchInvariance(t *testing.T) {
	f32 := ggml.F32
	cases := []struct {
		file  string
		quant *ggml.Type
	}{
		{"specd-target-q8_0.gguf", nil},
		{"specd-target-q8_0.gguf", &f32},
		{"specd-draft-f16.gguf", nil},
		{"specd-draft-q4_0.gguf", nil},
		{"specd-target-q4_k_m.gguf", nil},
		{"stories260K.bin", nil},
		{"arch-qwen2-f16.gguf", nil},
		{"arch-llama3-f16.gguf", nil},
	}
	blocks := []int{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 25, 40}
	if testing.Short() {
		blocks = []int{1, 2, 3, 4, 5, 6, 13}
	}
	for _, c := range cases {
		name := c.file
		if c.quant != nil {
			name += "/" + c.quant.String()
		}
		t.Run(name, func(t *testing.T) {
			m := load(t, c.file, c.quant)
			prompt := m.Tok.Encode("Once upon a time, in a quiet town by the sea,", true)
			cont := make([]int32, 40)
			for i := range cont {
				cont[i] = int32((i*7919 + 13) % m.Vocab)
			}
			run := func(threads, block, kvBlock int) []float32 {
				pool := kernels.NewPool(threads)
				t.Cleanup(pool.Close)
				kv, err := kvcache.NewPool(kvcache.Config{Layers: m.Layers, KVDim: m.KVDim(), BlockTokens: kvBlock, Budget: 64 << 20})
				if err != nil {
					t.Fatal(err)
				}
				st := m.NewState(pool, kv.NewSeq(), block)
				if _, err := st.Forward(prompt, false); err != nil {
					t.Fatal(err)
				}
				var all []float32
				for lo := 0; lo < len(cont); lo += block {
					l, err := st.Forward(cont[lo:min(lo+block, len(cont))], true)
					if err != nil {
						t.Fatal(err)
					}
					all = append(all, l...)
				}
				return all
			}
			want := run(1, 1, kvcache.DefaultBlockTokens)
			for threads := 1; threads <= 2; threads++ {
				for _, block := range blocks {
					// Odd KV block sizes put block boundaries everywhere: attention reads
					// the cache a block at a time, and results must not depend on it.
					kvBlock := []int{kvcache.DefaultBlockTokens, 5, 16}[block%3]
					got := run(threads, block, kvBlock)
					for i := range want {
						if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
							t.Fatalf("threads %d block %d kv block %d: logit %d of position %d = %v, want %v (block 1, thread 1)",
								threads, block, kvBlock, i%m.Vocab, len(prompt)+i/m.Vocab, got[i], want[i])
						}
					}
				}
			}
		})
	}
}

// TestF16KVCache: an F16 cache changes logits only by fp16 rounding of keys and values;
// greedy output stays on llama2.c's for the first tokens (the reference notes one of its
// prompts diverges at token 72 with an F16 cache, at a near-tie).
func TestF16KVCache(t *testing.T) {
	m := load(t, "stories260K.bin", nil)
	pool := kernels.NewPool(1)
	t.Cleanup(pool.Close)
	kv, err := m.NewKVPool(8<<20, ggml.F16)
	if err != nil {
		t.Fatal(err)
	}
	st := m.NewState(pool, kv.NewSeq(), 16)
	for _, r := range readRefs(t, "stories260K_llama2c.jsonl") {
		got := greedy(t, st, r.PromptIDs, 48, false)
		if i := firstDiff(got, r.OutputIDs[:48]); i >= 0 {
			t.Errorf("%q: F16 cache output differs at token %d", r.Prompt, i)
		}
		checkTop5(t, st, r.PromptIDs, r.OutputIDs, r.Top5Logits, 2e-2)
	}
}
