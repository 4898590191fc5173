package model_test

import (
	"fmt"
	"math"
	"testing"

	"github.com/specd-dev/specd/gguf"
	"github.com/specd-dev/specd/internal/testmodels"
	"github.com/specd-dev/specd/kernels"
	"github.com/specd-dev/specd/model"
	"github.com/specd-dev/specd/sample"
)

// naiveLogits is a reference forward pass written independently of the package: float64
// throughout, one position at a time, every step spelled out (it shares only the GGUF
// parser and the dequantization of weights with what it checks). It reads the
// architecture from the file itself and runs llama, qwen2 and qwen3 blocks without RoPE
// scaling, returning the logits after every token of ids.
func naiveLogits(t *testing.T, path string, ids []int32) [][]float64 {
	t.Helper()
	f, err := gguf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	arch, _ := f.String("general.architecture")
	num := func(k string, def float64) float64 {
		v, ok := f.Lookup(arch + "." + k)
		if !ok {
			return def
		}
		if x, ok := v.Uint(); ok {
			return float64(x)
		}
		x, _ := v.Float()
		return x
	}
	if _, ok := f.Lookup(arch + ".rope.scaling.type"); ok {
		t.Fatalf("%s: the naive reference has no RoPE scaling", path)
	}
	dim, layers := int(num("embedding_length", 0)), int(num("block_count", 0))
	heads := int(num("attention.head_count", 0))
	kvHeads := int(num("attention.head_count_kv", float64(heads)))
	hd := int(num("attention.key_length", float64(dim/heads)))
	rd := int(num("rope.dimension_count", float64(hd)))
	base, eps := num("rope.freq_base", 10000), num("attention.layer_norm_rms_epsilon", 1e-5)
	neox := arch == "qwen2" || arch == "qwen3"
	tensors := map[string][]float64{}
	get := func(name string) []float64 {
		if x, ok := tensors[name]; ok {
			return x
		}
		info, data, err := f.Tensor(name)
		if err != nil {
			return nil
		}
		x := make([]float32, info.Elements())
		if err := kernels.Dequantize(info.Type, x, data); err != nil {
			t.Fatal(err)
		}
		out := make([]float64, len(x))
		for i, v := range x {
			out[i] = float64(v)
		}
		tensors[name] = out
		return out
	}
	// mul returns w·x for a matrix of len(w)/len(x) rows.
	mul := func(w, x []float64) []float64 {
		out := make([]float64, len(w)/len(x))
		for r := range out {
			for c, v := range x {
				out[r] += w[r*len(x)+c] * v
			}
		}
		return out
	}
	norm := func(x, w []float64) []float64 {
		ss := 0.0
		for _, v := range x {
			ss += v * v
		}
		s := 1 / math.Sqrt(ss/float64(len(x))+eps)
		out := make([]float64, len(x))
		for i, v := range x {
			out[i] = v * s * w[i]
		}
		return out
	}
	freqs := get("rope_freqs.weight")
	rope := func(head []float64, pos int) {
		for i := range rd / 2 {
			theta := float64(pos) * math.Pow(base, -2*float64(i)/float64(rd))
			if freqs != nil {
				theta /= freqs[i]
			}
			a, b := 2*i, 2*i+1
			if neox {
				a, b = i, i+rd/2
			}
			x, y := head[a], head[b]
			head[a] = x*math.Cos(theta) - y*math.Sin(theta)
			head[b] = x*math.Sin(theta) + y*math.Cos(theta)
		}
	}
	embed, out := get("token_embd.weight"), get("output.weight")
	if out == nil {
		out = embed
	}
	type cache struct{ k, v [][]float64 }
	caches := make([]cache, layers)
	var logits [][]float64
	for pos, id := range ids {
		x := append([]float64(nil), embed[int(id)*dim:(int(id)+1)*dim]...)
		for l := range layers {
			p := fmt.Sprintf("blk.%d.", l)
			h := norm(x, get(p+"attn_norm.weight"))
			q, k, v := mul(get(p+"attn_q.weight"), h), mul(get(p+"attn_k.weight"), h), mul(get(p+"attn_v.weight"), h)
			for _, bias := range []struct {
				vec  []float64
				name string
			}{{q, "attn_q.bias"}, {k, "attn_k.bias"}, {v, "attn_v.bias"}} {
				for i, b := range get(p + bias.name) {
					bias.vec[i] += b
				}
			}
			qn, kn := get(p+"attn_q_norm.weight"), get(p+"attn_k_norm.weight")
			for hh := 0; hh < len(q); hh += hd {
				if qn != nil {
					copy(q[hh:hh+hd], norm(q[hh:hh+hd], qn))
				}
				rope(q[hh:hh+hd], pos)
			}
			for hh := 0; hh < len(k); hh += hd {
				if kn != nil {
					copy(k[hh:hh+hd], norm(k[hh:hh+hd], kn))
				}
				rope(k[hh:hh+hd], pos)
			}
			c := &caches[l]
			c.k, c.v = append(c.k, k), append(c.v, v)
			att := make([]float64, heads*hd)
			for hh := range heads {
				kh := hh / (heads / kvHeads)
				scores := make([]float64, pos+1)
				top := math.Inf(-1)
				for j := range scores {
					for i := range hd {
						scores[j] += q[hh*hd+i] * c.k[j][kh*hd+i]
					}
					scores[j] /= math.Sqrt(float64(hd))
					top = max(top, scores[j])
				}
				sum := 0.0
				for j := range scores {
					scores[j] = math.Exp(scores[j] - top)
					sum += scores[j]
				}
				for j, s := range scores {
					for i := range hd {
						att[hh*hd+i] += s / sum * c.v[j][kh*hd+i]
					}
				}
			}
			for i, o := range mul(get(p+"attn_output.weight"), att) {
				x[i] += o
			}
			h = norm(x, get(p+"ffn_norm.weight"))
			g, u := mul(get(p+"ffn_gate.weight"), h), mul(get(p+"ffn_up.weight"), h)
			for i := range g {
				g[i] = g[i] / (1 + math.Exp(-g[i])) * u[i]
			}
			for i, o := range mul(get(p+"ffn_down.weight"), g) {
				x[i] += o
			}
		}
		logits = append(logits, mul(out, norm(x, get("output_norm.weight"))))
	}
	return logits
}

// argmaxMargin returns the index of the largest value and by how much it beats the next.
func argmaxMargin(x []float64) (int, float64) {
	best, second := 0, math.Inf(-1)
	for i, v := range x[1:] {
		switch {
		case v > x[best]:
			best, second = i+1, x[best]
		case v > second:
			second = v
		}
	}
	return best, x[best] - second
}

// TestNaiveMatchesLlamaCpp checks the naive reference itself: on the shared qwen2 and
// llama-3 files its argmax is llama.cpp's wherever llama.cpp's margin is clear.
func TestNaiveMatchesLlamaCpp(t *testing.T) {
	rows := readRefs(t, "llamacpp_teacher_forced_arch.jsonl")
	for _, file := range []string{"arch-qwen2-f16.gguf", "arch-llama3-f16.gguf"} {
		t.Run(file, func(t *testing.T) {
			var r *refRow
			for i := range rows {
				if rows[i].File == file {
					r = &rows[i]
					break
				}
			}
			if r == nil {
				t.Fatalf("no reference row for %s", file)
			}
			n := 48 // forced positions: the naive pass is slow
			seq := append(append([]int32(nil), r.PromptIDs...), r.ForcedIDs[:n-1]...)
			logits := naiveLogits(t, testmodels.ForTest(t, file), seq)
			for i := range n {
				got, _ := argmaxMargin(logits[len(r.PromptIDs)-1+i])
				if r.Margin[i] >= clearMargin && int32(got) != r.LlamaTop1[i] {
					t.Errorf("%s %s forced position %d: naive argmax %d, llama.cpp %d (margin %.3f)", file, r.ID, i, got, r.LlamaTop1[i], r.Margin[i])
				}
			}
		})
	}
}

// TestQwen3AgainstNaive checks qwen3 (per-head RMSNorm on Q and K before NEOX RoPE, heads
// wider than dim/heads, no biases), which llama.cpp b4748 cannot run, against the naive
// reference on the synthetic qwen3 model: logits within float32 rounding of float64 and
// the same argmax wherever the reference's margin is clear.
func TestQwen3AgainstNaive(t *testing.T) {
	paths, _ := synthFiles(t)
	path := paths["synth-qwen3.gguf"]
	m, err := model.Load(path, model.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if m.Arch != "qwen3" || m.QDim() == m.Dim || !m.Rope.Neox || m.Blocks[0].QNorm == nil {
		t.Fatalf("synth-qwen3: arch %s, QDim %d, Dim %d, NEOX %v: not the qwen3 shape the test is for", m.Arch, m.QDim(), m.Dim, m.Rope.Neox)
	}
	st := newState(t, m, 2, 64)
	rows := readRefs(t, "llamacpp_teacher_forced_arch.jsonl")
	clear, same, worst := 0, 0, 0.0
	for _, r := range rows[:2] {
		seq := append(append([]int32(nil), r.PromptIDs...), r.ForcedIDs[:40]...)
		want := naiveLogits(t, path, seq)
		st.Seq.Truncate(0)
		got, err := st.Forward(seq, true)
		if err != nil {
			t.Fatal(err)
		}
		for pos, w := range want {
			g := got[pos*m.Vocab : (pos+1)*m.Vocab]
			for i := range w {
				worst = max(worst, math.Abs(float64(g[i])-w[i]))
			}
			top, margin := argmaxMargin(w)
			if margin >= clearMargin {
				clear++
				if sample.Argmax(g) == int32(top) {
					same++
				} else {
					t.Errorf("%s position %d: argmax %d, reference %d (margin %.3f)", r.ID, pos, sample.Argmax(g), top, margin)
				}
			}
		}
	}
	t.Logf("synth-qwen3: argmax equal on %d of %d positions with margin ≥ %.1f; largest logit difference %.2g", same, clear, clearMargin, worst)
	if worst > 1e-3 {
		t.Errorf("largest logit difference from the float64 reference = %.3g, want ≤ 1e-3", worst)
	}
}
