package model_test

import (
	"errors"
	"testing"

	"github.com/specd-dev/specd/gguf"
	"github.com/specd-dev/specd/internal/testmodels"
	"github.com/specd-dev/specd/model"
	"github.com/specd-dev/specd/sample"
)

// kquantsLanded turns on the teacher-forced comparison of the Q4_K_M architecture files.
// While it is false those files must still be refused for their tensor types (the test
// checks it), so the day kernels decode Q4_K and Q6_K that check fails and this line is
// the one to change.
const kquantsLanded = false

// agreement is how often a model's argmax after each forced position equals llama.cpp's:
// over all positions, and over those where llama.cpp's winner beat its runner-up by at
// least clearMargin (where the order of a sum cannot flip it).
type agreement struct {
	all, allSame     int
	clear, clearSame int
}

const clearMargin = 0.1

func (a agreement) pctAll() float64   { return 100 * float64(a.allSame) / float64(a.all) }
func (a agreement) pctClear() float64 { return 100 * float64(a.clearSame) / float64(a.clear) }

// teacherForced runs each row's forced sequence through st in one pass and compares the
// argmax after every forced position with the row's llama.cpp argmax.
func teacherForced(t *testing.T, st *model.State, rows []refRow) agreement {
	t.Helper()
	m := st.Model()
	var a agreement
	for _, r := range rows {
		if len(r.Margin) != len(r.LlamaTop1) || len(r.ForcedIDs) < len(r.LlamaTop1) {
			t.Fatalf("%s %s: %d argmaxes, %d margins, %d forced ids", r.File, r.ID, len(r.LlamaTop1), len(r.Margin), len(r.ForcedIDs))
		}
		seq := append(append([]int32(nil), r.PromptIDs...), r.ForcedIDs[:len(r.LlamaTop1)-1]...)
		st.Seq.Truncate(0)
		logits, err := st.Forward(seq, true)
		if err != nil {
			t.Fatal(err)
		}
		for i, want := range r.LlamaTop1 {
			row := len(r.PromptIDs) - 1 + i
			same := sample.Argmax(logits[row*m.Vocab:(row+1)*m.Vocab]) == want
			a.all++
			if same {
				a.allSame++
			}
			if r.Margin[i] >= clearMargin {
				a.clear++
				if same {
					a.clearSame++
				}
			}
		}
	}
	return a
}

// TestArchTeacherForced compares specd's argmax after every forced position with
// llama.cpp's on the architecture files: arch-qwen2 (qwen2: Q/K/V biases, NEOX RoPE,
// θ 1e6) and arch-llama3 (llama in Llama-3.1 shape: rope_freqs.weight, untied output,
// GQA 8/2). Issue 13's target: equal on ≥ 99.5% of the positions where llama.cpp's margin
// is ≥ 0.1, and on ≥ 97% of all.
func TestArchTeacherForced(t *testing.T) {
	byFile := map[string][]refRow{}
	for _, r := range readRefs(t, "llamacpp_teacher_forced_arch.jsonl") {
		byFile[r.File] = append(byFile[r.File], r)
	}
	cases := []struct {
		file   string
		kquant bool // needs the Q4_K and Q6_K kernels (see kquantsLanded)
	}{
		{"arch-qwen2-f16.gguf", false},
		{"arch-qwen2-q4_k_m.gguf", true},
		{"arch-llama3-f16.gguf", false},
		{"arch-llama3-q4_k_m.gguf", true},
	}
	for _, c := range cases {
		delete(byFile, c.file)
	}
	for file := range byFile {
		t.Errorf("the reference has rows for %s, which this test does not check", file)
	}
	rows := readRefs(t, "llamacpp_teacher_forced_arch.jsonl")
	for _, c := range cases {
		t.Run(c.file, func(t *testing.T) {
			if c.kquant && !kquantsLanded {
				_, err := model.Load(testmodels.ForTest(t, c.file), model.LoadOptions{})
				if !errors.Is(err, gguf.ErrUnsupportedType) {
					t.Fatalf("Load(%s) = %v, want ErrUnsupportedType until K-quants land; if they have, set kquantsLanded", c.file, err)
				}
				return
			}
			var mine []refRow
			for _, r := range rows {
				if r.File == c.file {
					mine = append(mine, r)
				}
			}
			if len(mine) == 0 {
				t.Fatalf("no reference rows for %s", c.file)
			}
			m := load(t, c.file, nil)
			a := teacherForced(t, newState(t, m, 2, 64), mine)
			t.Logf("%s (%s): argmax equal to llama.cpp's on %.2f%% of %d positions with margin ≥ %.1f, %.2f%% of all %d",
				c.file, m.Arch, a.pctClear(), a.clear, clearMargin, a.pctAll(), a.all)
			if a.pctClear() < 99.5 || a.pctAll() < 97 {
				t.Errorf("%s: agreement with llama.cpp %.2f%% (margin ≥ %.1f) and %.2f%% (all), want ≥ 99.5%% and ≥ 97%%",
					c.file, a.pctClear(), clearMargin, a.pctAll())
			}
		})
	}
}
