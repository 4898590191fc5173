// Package model is the llama-architecture transformer: weights loaded from a GGUF or a
// llama2.c file, a forward pass over one token or a block of tokens that writes a paged
// KV cache, and the tokenizer that comes with the file.
//
// The forward pass is batch-invariant: the logits of a position are bitwise identical
// whether it was computed alone or inside a block of any size, at any thread count. Every
// per-token step (norms, RoPE, attention, activation) runs the same code for each token
// of a block, and the matrix products come from kernels, whose outputs depend only on
// the row and the token. Speculative verification relies on this.
//
// The package knows nothing of gRPC or services.
package model

import (
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"

	"github.com/specd-dev/specd/ggml"
	"github.com/specd-dev/specd/gguf"
	"github.com/specd-dev/specd/kernels"
	"github.com/specd-dev/specd/llama2c"
	"github.com/specd-dev/specd/tokenizer"
	"github.com/specd-dev/specd/tokenizer/ggufvocab"
)

// ErrFormat is wrapped by Load for files that are not a supported model.
var ErrFormat = errors.New("unsupported model file")

// ErrContextLength is wrapped by Load when LoadOptions.Context is negative or longer
// than the model's trained context.
var ErrContextLength = errors.New("context length out of range")

// Config is the shape of a model.
type Config struct {
	Name       string
	Arch       string // "llama", "qwen2" or "qwen3" (see Architectures)
	Format     string // "gguf" or "llama2c"
	Dim        int    // embedding width
	Layers     int
	Heads      int
	KVHeads    int
	HeadDim    int // width of one head's query, key and value; Dim/Heads unless the file says otherwise (qwen3, Mistral Nemo)
	FFN        int // hidden width of the SwiGLU feed-forward
	Vocab      int
	Context    int // trained context length
	Rope       Rope
	NormEps    float32
	StopAtBOS  bool // the model ends a text with BOS (llama2.c checkpoints)
	FileType   ggml.Type
	Parameters uint64
}

// Rope describes the rotary position embedding: which dimensions of a head turn, in
// which pairs, and by which angle at each position. The angle of pair i at position p is
// p·Base^(−2i/Dim)/Freqs[i], then scaled as Scaling says (llama.cpp's definitions).
type Rope struct {
	Dim  int     // leading dimensions of each head that turn
	Base float32 // θ
	// Neox pairs dimension i with i+Dim/2 (GPT-NeoX style: qwen2, qwen3) instead of 2i
	// with 2i+1 (llama).
	Neox bool
	// Freqs divides the angle of each pair (Dim/2 of them): the rope_freqs.weight tensor
	// of Llama 3.1 and later. nil means no division.
	Freqs []float32
	// Scaling is how the angles stretch to a longer context: RopeNone, RopeLinear (every
	// angle divided by Factor) or RopeYarn (high frequencies kept, low ones divided by
	// Factor, a ramp between; rotated values scaled by 1 + 0.1·ln Factor).
	Scaling    string
	Factor     float32 // context stretch factor; 1 when there is none
	OrigCtx    int     // the context the model was trained on before stretching (yarn)
	AttnFactor float32 // extra scale of rotated values (rope.scaling.attn_factor); 1 when none
}

// Rope scaling types, as rope.scaling.type names them.
const (
	RopeNone   = "none"
	RopeLinear = "linear"
	RopeYarn   = "yarn"
)

// KVDim is the width of one layer's key (or value) at one position.
func (c Config) KVDim() int { return c.KVHeads * c.HeadDim }

// QDim is the width of one position's queries: Heads × HeadDim (Dim unless the file gives
// HeadDim: qwen3, Mistral Nemo).
func (c Config) QDim() int { return c.Heads * c.HeadDim }

// Layer holds one transformer block's weights.
type Layer struct {
	AttnNorm, FFNNorm []float32
	Wq, Wk, Wv, Wo    *kernels.Matrix
	Gate, Down, Up    *kernels.Matrix
	// Bq, Bk and Bv are added to the query, key and value projections (qwen2); nil when
	// the file has none.
	Bq, Bk, Bv []float32
	// QNorm and KNorm are RMSNorm weights (HeadDim each) applied to every head of the
	// queries and keys before RoPE (qwen3); nil when the architecture has none.
	QNorm, KNorm []float32
}

// Model is a loaded model. It is immutable and safe to share between goroutines; each
// generation runs its own State.
type Model struct {
	Config
	Embed     *kernels.Matrix // token embedding, Vocab rows of Dim
	FinalNorm []float32
	Output    *kernels.Matrix // classifier; == Embed when tied
	Blocks    []Layer         // the transformer blocks, Config.Layers of them
	Tok       *tokenizer.Tokenizer
	// ChatTemplate is the file's tokenizer.chat_template, the Jinja source that turns a
	// conversation into a prompt; empty when the file has none (llama2.c checkpoints
	// never do).
	ChatTemplate string
	Quant        ggml.Type // the dominant weight type after loading
	Path         string

	// Per rotated pair, what its RoPE angle is made of (see initRope): the frequency, and
	// yarn's ramp (nil without yarn); the frequency scale and the scale of cos and sin.
	ropeFreq, ropeRamp    []float64
	ropeScale, ropeMScale float64
	closer                io.Closer
}

// LoadOptions tune Load.
type LoadOptions struct {
	// Quant converts weight matrices to this type at load; nil keeps the file's types.
	// Matrices whose width is not a multiple of the target block size stay as they are.
	Quant *ggml.Type
	// Tokenizer is the tokenizer.bin path for llama2.c checkpoints; empty looks for
	// tokenizer.bin, then tok<vocab>.bin, beside the checkpoint.
	Tokenizer string
	// Context caps the positions a sequence may use (llama.cpp's --ctx-size); 0 keeps the
	// trained context length. It may not exceed the trained length. Nothing is allocated
	// for positions up front: a Batch's attention scores grow with the positions its
	// passes reach, and RoPE angles are computed per pass.
	Context int
}

// Load reads a model file (GGUF v3, or a llama2.c .bin checkpoint) and its tokenizer.
func Load(path string, opts LoadOptions) (*Model, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	var magic [4]byte
	_, err = io.ReadFull(f, magic[:])
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("%s: %w: too short to be a model (%v)", path, ErrFormat, err)
	}
	var m *Model
	if string(magic[:]) == "GGUF" {
		m, err = loadGGUF(path)
	} else {
		m, err = loadLlama2c(path, opts.Tokenizer)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	m.Path = path
	if err := m.finish(opts); err != nil {
		m.Close()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return m, nil
}

// Close releases the file mapping. The model must not be used afterwards.
func (m *Model) Close() error {
	if m.closer == nil {
		return nil
	}
	err := m.closer.Close()
	m.closer = nil
	return err
}

func loadGGUF(path string) (*Model, error) {
	f, err := gguf.Open(path)
	if err != nil {
		return nil, err
	}
	m, err := fromGGUF(f)
	if err != nil {
		f.Close()
		return nil, err
	}
	m.closer = f
	return m, nil
}

// Architectures lists the values of general.architecture that Load runs.
var Architectures = []string{"llama", "qwen2", "qwen3"}

// presence says whether an architecture's blocks carry a kind of tensor.
type presence int

const (
	absent presence = iota
	optional
	required
)

// archSpec is what sets an architecture apart from llama's block: RMSNorm, attention with
// RoPE, SwiGLU feed-forward.
type archSpec struct {
	neox    bool     // RoPE turns the two halves of a head, not adjacent pairs
	qkvBias presence // biases on the Q, K and V projections
	qkNorm  presence // RMSNorm on each head of Q and K before RoPE
	// ropeFreqs is rope_freqs.weight, which divides each RoPE angle (Llama 3.1 and later);
	// llama.cpp's qwen2 and qwen3 have none and refuse a file that carries one.
	ropeFreqs presence
}

var archSpecs = map[string]archSpec{
	"llama": {qkvBias: optional, ropeFreqs: optional}, // llama.cpp accepts llama files with Q/K/V biases
	"qwen2": {neox: true, qkvBias: required},
	"qwen3": {neox: true, qkNorm: required},
}

// ErrArchitecture is wrapped by Load for a GGUF file of an architecture it does not run.
var ErrArchitecture = errors.New("unsupported architecture")

// hyper reads the hyperparameters of a GGUF file of architecture arch from its
// <arch>.* metadata.
func hyper(f *gguf.File, arch string) (Config, error) {
	c := Config{Arch: arch, Format: "gguf"}
	c.Name, _ = f.String("general.name")
	key := func(k string) string { return arch + "." + k }
	// u reads an integer key into dst; an absent optional key leaves dst as it is.
	u := func(k string, dst *int, req bool) error {
		v, err := f.Uint(key(k))
		switch {
		case errors.Is(err, gguf.ErrNotFound) && !req:
			return nil
		case err != nil:
			return fmt.Errorf("%w: %w", ErrFormat, err)
		case v > 1<<30:
			return fmt.Errorf("%w: %s = %d is out of range", ErrFormat, key(k), v)
		}
		*dst = int(v)
		return nil
	}
	// fl reads a float key into dst; an absent optional key leaves dst as it is.
	fl := func(k string, dst *float32, req bool) error {
		v, err := f.Float(key(k))
		switch {
		case errors.Is(err, gguf.ErrNotFound) && !req:
			return nil
		case err != nil:
			return fmt.Errorf("%w: %w", ErrFormat, err)
		case math.IsNaN(v) || math.IsInf(v, 0) || math.Abs(v) > math.MaxFloat32:
			return fmt.Errorf("%w: %s = %v is out of range", ErrFormat, key(k), v)
		}
		*dst = float32(v)
		return nil
	}
	for _, k := range []struct {
		key string
		dst *int
		req bool
	}{
		{"embedding_length", &c.Dim, true},
		{"block_count", &c.Layers, true},
		{"attention.head_count", &c.Heads, true},
		{"feed_forward_length", &c.FFN, true},
		{"context_length", &c.Context, true},
		{"attention.head_count_kv", &c.KVHeads, false},
	} {
		if err := u(k.key, k.dst, k.req); err != nil {
			return c, err
		}
	}
	if c.KVHeads == 0 {
		c.KVHeads = c.Heads
	}
	if c.Heads <= 0 {
		return c, fmt.Errorf("%w: head_count %d", ErrFormat, c.Heads)
	}
	// Heads are Dim/Heads wide unless the file says otherwise, as in llama.cpp.
	c.HeadDim = c.Dim / c.Heads
	vdim := c.HeadDim
	if err := errors.Join(u("attention.key_length", &c.HeadDim, false), u("attention.value_length", &vdim, false)); err != nil {
		return c, err
	}
	if vdim != c.HeadDim {
		return c, fmt.Errorf("%w: attention.value_length %d differs from key_length %d: not supported", ErrFormat, vdim, c.HeadDim)
	}
	if c.HeadDim*c.Heads != c.Dim && c.Arch == "qwen2" {
		// llama.cpp's qwen2 blocks project to Dim-wide queries; its llama blocks (Mistral
		// Nemo: 32 heads of 128 in 5120) and qwen3 blocks take the heads' width from the file.
		return c, fmt.Errorf("%w: %d heads of %d do not make embedding_length %d", ErrFormat, c.Heads, c.HeadDim, c.Dim)
	}
	r := &c.Rope
	r.Dim, r.Base, r.Factor, r.AttnFactor, r.OrigCtx = c.HeadDim, 10000, 1, 1, c.Context
	var factor float32
	factorKey := "rope.scaling.factor"
	if _, ok := f.Lookup(key(factorKey)); !ok {
		factorKey = "rope.scale_linear" // the key's older name
	}
	for _, err := range []error{
		u("rope.dimension_count", &r.Dim, false),
		fl("rope.freq_base", &r.Base, false),
		// Required, as in llama.cpp: models differ (Llama 1e-5, Qwen2 1e-6), and no
		// default is right for a file that does not say.
		fl("attention.layer_norm_rms_epsilon", &c.NormEps, true),
		u("rope.scaling.original_context_length", &r.OrigCtx, false),
		fl("rope.scaling.attn_factor", &r.AttnFactor, false),
		fl(factorKey, &factor, false),
	} {
		if err != nil {
			return c, err
		}
	}
	// llama.cpp reads an absent type as linear and an absent or zero factor as 1, so a
	// file with neither is unscaled.
	r.Scaling = RopeLinear
	if s, err := f.String(key("rope.scaling.type")); err == nil {
		r.Scaling = s
	} else if !errors.Is(err, gguf.ErrNotFound) {
		return c, fmt.Errorf("%w: %w", ErrFormat, err)
	}
	switch r.Scaling {
	case RopeNone, RopeLinear, RopeYarn:
	default:
		return c, fmt.Errorf("%w: %s = %q (supported: none, linear, yarn)", ErrFormat, key("rope.scaling.type"), r.Scaling)
	}
	if factor != 0 {
		r.Factor = factor
	}
	if r.Factor == 1 && r.Scaling == RopeLinear {
		r.Scaling = RopeNone
	}
	if r.Scaling == RopeNone {
		r.Factor = 1 // llama.cpp never scales when the type says none, whatever the factor
	}
	switch {
	case !(r.Factor > 0) || r.Factor > 1<<20:
		return c, fmt.Errorf("%w: rope scaling factor %v is out of range", ErrFormat, factor)
	case !(r.Base > 1) || !(r.AttnFactor > 0) || !(c.NormEps >= 0):
		return c, fmt.Errorf("%w: rope.freq_base %v, rope.scaling.attn_factor %v, layer_norm_rms_epsilon %v out of range",
			ErrFormat, r.Base, r.AttnFactor, c.NormEps)
	case r.Scaling == RopeYarn && r.OrigCtx <= 0:
		return c, fmt.Errorf("%w: yarn RoPE scaling needs rope.scaling.original_context_length, got %d", ErrFormat, r.OrigCtx)
	}
	if arch == "llama" && r.Dim != c.HeadDim {
		// llama.cpp turns every dimension of a llama head and refuses a file that says
		// otherwise; no reference runs a llama with part of each head turned.
		return c, fmt.Errorf("%w: %s %d differs from the head size %d: not supported for llama",
			ErrFormat, key("rope.dimension_count"), r.Dim, c.HeadDim)
	}
	r.Neox = archSpecs[arch].neox
	return c, nil
}

func fromGGUF(f *gguf.File) (*Model, error) {
	arch, err := f.String("general.architecture")
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrFormat, err)
	}
	spec, ok := archSpecs[arch]
	if !ok {
		return nil, fmt.Errorf("%w %q (supported: %s)", ErrArchitecture, arch, strings.Join(Architectures, ", "))
	}
	c, err := hyper(f, arch)
	if err != nil {
		return nil, err
	}
	tok, err := ggufTokenizer(f)
	if err != nil {
		return nil, err
	}
	c.Vocab = tok.VocabSize()
	m := &Model{Config: c, Tok: tok}
	m.ChatTemplate, err = f.String("tokenizer.chat_template")
	if err != nil && !errors.Is(err, gguf.ErrNotFound) {
		return nil, fmt.Errorf("%w: %w", ErrFormat, err)
	}
	used := make(map[string]bool, len(f.Tensors))
	// tensor returns the named tensor after checking its dims; an absent tensor is nil
	// data when it is not required.
	tensor := func(name string, req bool, dims ...int) (gguf.TensorInfo, []byte, error) {
		info, data, err := f.Tensor(name)
		if errors.Is(err, gguf.ErrNotFound) && !req {
			return info, nil, nil
		}
		if err != nil {
			return info, nil, fmt.Errorf("%w: %w", ErrFormat, err)
		}
		used[name] = true
		ok := len(info.Dims) == len(dims)
		for i := 0; ok && i < len(dims); i++ {
			ok = info.Dims[i] == uint64(dims[i])
		}
		if !ok {
			return info, nil, fmt.Errorf("%w: tensor %s has dims %v, want %v", ErrFormat, name, info.Dims, dims)
		}
		return info, data, nil
	}
	mat := func(name string, rows, cols int) (*kernels.Matrix, error) {
		info, data, err := tensor(name, true, cols, rows)
		if err != nil {
			return nil, err
		}
		return kernels.NewMatrix(info.Type, rows, cols, data)
	}
	vec := func(name string, n int, req bool) ([]float32, error) {
		info, data, err := tensor(name, req, n)
		if err != nil || data == nil {
			return nil, err
		}
		out := make([]float32, n)
		if err := kernels.Dequantize(info.Type, out, data); err != nil {
			return nil, fmt.Errorf("tensor %s: %w", name, err)
		}
		return out, nil
	}
	if m.Embed, err = mat("token_embd.weight", c.Vocab, c.Dim); err != nil {
		return nil, err
	}
	m.FileType = m.Embed.Type
	if m.FinalNorm, err = vec("output_norm.weight", c.Dim, true); err != nil {
		return nil, err
	}
	m.Output = m.Embed // tied unless the file has its own classifier
	if _, _, err := f.Tensor("output.weight"); err == nil {
		if m.Output, err = mat("output.weight", c.Vocab, c.Dim); err != nil {
			return nil, err
		}
	}
	if spec.ropeFreqs != absent {
		if m.Rope.Freqs, err = vec("rope_freqs.weight", m.Rope.Dim/2, spec.ropeFreqs == required); err != nil {
			return nil, err
		}
	}
	for i, x := range m.Rope.Freqs {
		if !(x > 0) || math.IsInf(float64(x), 0) {
			return nil, fmt.Errorf("%w: rope_freqs.weight[%d] = %v, want a positive number", ErrFormat, i, x)
		}
	}
	qd, kv, hd := c.QDim(), c.KVDim(), c.HeadDim
	// Every block has nine tensors at least: a count the file cannot hold is an error,
	// not an allocation of that many blocks.
	if c.Layers > len(f.Tensors)/9 {
		return nil, fmt.Errorf("%w: block_count %d, but the file's %d tensors cannot hold that many blocks", ErrFormat, c.Layers, len(f.Tensors))
	}
	m.Blocks = make([]Layer, c.Layers)
	for i := range m.Blocks {
		l := &m.Blocks[i]
		p := fmt.Sprintf("blk.%d.", i)
		var errs []error
		v := func(dst *[]float32, name string, n int, req bool) {
			var e error
			*dst, e = vec(p+name, n, req)
			errs = append(errs, e)
		}
		v(&l.AttnNorm, "attn_norm.weight", c.Dim, true)
		v(&l.FFNNorm, "ffn_norm.weight", c.Dim, true)
		if spec.qkvBias != absent {
			v(&l.Bq, "attn_q.bias", qd, spec.qkvBias == required)
			v(&l.Bk, "attn_k.bias", kv, spec.qkvBias == required)
			v(&l.Bv, "attn_v.bias", kv, spec.qkvBias == required)
			if (l.Bq == nil) != (l.Bk == nil) || (l.Bq == nil) != (l.Bv == nil) {
				errs = append(errs, fmt.Errorf("%w: block %d has biases on some of Q, K, V but not all", ErrFormat, i))
			}
		}
		if spec.qkNorm != absent {
			v(&l.QNorm, "attn_q_norm.weight", hd, spec.qkNorm == required)
			v(&l.KNorm, "attn_k_norm.weight", hd, spec.qkNorm == required)
		}
		for _, w := range []struct {
			dst        **kernels.Matrix
			name       string
			rows, cols int
		}{
			{&l.Wq, "attn_q", qd, c.Dim},
			{&l.Wk, "attn_k", kv, c.Dim},
			{&l.Wv, "attn_v", kv, c.Dim},
			{&l.Wo, "attn_output", c.Dim, qd},
			{&l.Gate, "ffn_gate", c.FFN, c.Dim},
			{&l.Down, "ffn_down", c.Dim, c.FFN},
			{&l.Up, "ffn_up", c.FFN, c.Dim},
		} {
			var e error
			*w.dst, e = mat(p+w.name+".weight", w.rows, w.cols)
			errs = append(errs, e)
		}
		if err := errors.Join(errs...); err != nil {
			return nil, err
		}
	}
	// llama.cpp refuses a file with tensors its architecture does not use, and so do we:
	// a bias or norm left out would silently change what the model computes.
	for _, t := range f.Tensors {
		if !used[t.Name] {
			return nil, fmt.Errorf("%w: tensor %s is not part of a %s model", ErrFormat, t.Name, arch)
		}
	}
	return m, nil
}

func ggufTokenizer(f *gguf.File) (*tokenizer.Tokenizer, error) {
	tok, err := ggufvocab.Load(f)
	if errors.Is(err, ggufvocab.ErrUnsupported) {
		return nil, fmt.Errorf("%w: %w", ErrFormat, err)
	}
	return tok, err
}

func loadLlama2c(path, tokPath string) (*Model, error) {
	ck, err := llama2c.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%w (not GGUF; read as llama2.c: %w)", ErrFormat, err)
	}
	m, err := fromLlama2c(ck, path, tokPath)
	if err != nil {
		ck.Close()
		return nil, err
	}
	m.closer = ck
	return m, nil
}

func fromLlama2c(ck *llama2c.Checkpoint, path, tokPath string) (*Model, error) {
	cc := ck.Config
	c := Config{
		Name: filepath.Base(path), Arch: "llama", Format: "llama2c",
		Dim: cc.Dim, Layers: cc.Layers, Heads: cc.Heads, KVHeads: cc.KVHeads, FFN: cc.HiddenDim,
		Vocab: cc.Vocab, Context: cc.SeqLen, NormEps: 1e-5, StopAtBOS: true,
		FileType: ggml.F32,
	}
	c.HeadDim = c.Dim / c.Heads
	c.Rope = Rope{Dim: c.HeadDim, Base: 10000, Scaling: RopeNone, Factor: 1, OrigCtx: c.Context, AttnFactor: 1}
	if tokPath == "" {
		dir := filepath.Dir(path)
		for _, cand := range []string{"tokenizer.bin", fmt.Sprintf("tok%d.bin", c.Vocab)} {
			if _, err := os.Stat(filepath.Join(dir, cand)); err == nil {
				tokPath = filepath.Join(dir, cand)
				break
			}
		}
		if tokPath == "" {
			return nil, fmt.Errorf("no tokenizer.bin or tok%d.bin beside the checkpoint (give one with --tokenizer)", c.Vocab)
		}
	}
	tv, err := llama2c.ReadTokenizer(tokPath, c.Vocab)
	if err != nil {
		return nil, err
	}
	tok, err := tokenizer.New(tokenizer.Vocab{Tokens: tv.Tokens, Scores: tv.Scores, BOS: 1, EOS: 2, UNK: 0, AddBOS: true})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", tokPath, err)
	}
	m := &Model{Config: c, Tok: tok}
	f32 := func(data []float32, rows, cols int) (*kernels.Matrix, error) {
		return kernels.NewMatrix(ggml.F32, rows, cols, f32Bytes(data))
	}
	kv := c.KVDim()
	var errs []error
	add := func(dst **kernels.Matrix, data []float32, rows, cols int) {
		var err error
		*dst, err = f32(data, rows, cols)
		errs = append(errs, err)
	}
	add(&m.Embed, ck.Embedding, c.Vocab, c.Dim)
	m.Output = m.Embed
	if !cc.SharedClassifier {
		add(&m.Output, ck.Classifier, c.Vocab, c.Dim)
	}
	m.FinalNorm = ck.FinalNorm
	m.Blocks = make([]Layer, c.Layers)
	for i, src := range ck.Layers {
		l := &m.Blocks[i]
		l.AttnNorm, l.FFNNorm = src.AttnNorm, src.FFNNorm
		add(&l.Wq, src.Wq, c.Dim, c.Dim)
		add(&l.Wk, src.Wk, kv, c.Dim)
		add(&l.Wv, src.Wv, kv, c.Dim)
		add(&l.Wo, src.Wo, c.Dim, c.Dim)
		add(&l.Gate, src.W1, c.FFN, c.Dim)
		add(&l.Down, src.W2, c.Dim, c.FFN)
		add(&l.Up, src.W3, c.FFN, c.Dim)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return m, nil
}

// maxScores bounds heads × context length: a Batch whose passes reach the whole context
// keeps that many float32 attention scores per token of a pass (256 MiB at the bound).
// Qwen2.5-14B-1M's 40 heads of 1010000 positions fit; a file's claim of more is not
// allocated on its word.
const maxScores = 1 << 26

// finish validates the shape, converts weights for opts.Quant and precomputes RoPE.
func (m *Model) finish(opts LoadOptions) error {
	c := &m.Config
	switch {
	case opts.Context < 0 || opts.Context > c.Context:
		return fmt.Errorf("%w: %d, want 1..%d (the trained context length), or 0 for all of it", ErrContextLength, opts.Context, c.Context)
	case opts.Context > 0:
		c.Context = opts.Context
	}
	switch {
	case c.Dim <= 0 || c.Layers <= 0 || c.Heads <= 0 || c.FFN <= 0 || c.Vocab <= 0 || c.Context <= 0:
		return fmt.Errorf("%w: non-positive dimension in %+v", ErrFormat, *c)
	case c.KVHeads <= 0 || c.Heads%c.KVHeads != 0:
		return fmt.Errorf("%w: head_count %d is not a multiple of head_count_kv %d", ErrFormat, c.Heads, c.KVHeads)
	case c.HeadDim <= 0 || c.HeadDim%2 != 0 || c.Rope.Dim <= 0 || c.Rope.Dim%2 != 0 || c.Rope.Dim > c.HeadDim:
		return fmt.Errorf("%w: head dimension %d / rope dimension %d must be even, rope ≤ head", ErrFormat, c.HeadDim, c.Rope.Dim)
	case c.HeadDim > 1<<14 || c.QDim() > 1<<20:
		return fmt.Errorf("%w: %d heads of %d are too wide", ErrFormat, c.Heads, c.HeadDim)
	case c.Context > 1<<20:
		return fmt.Errorf("%w: context length %d is too large", ErrFormat, c.Context)
	case c.Heads*c.Context > maxScores:
		return fmt.Errorf("%w: attention scores for %d heads over %d positions are too large: cap the context (--ctx-size)",
			ErrFormat, c.Heads, c.Context)
	}
	if m.Tok.VocabSize() != c.Vocab {
		return fmt.Errorf("%w: tokenizer has %d tokens, model %d", ErrFormat, m.Tok.VocabSize(), c.Vocab)
	}
	tied := m.Output == m.Embed
	// Matrices converted or packed at load are not read from the mapped file again
	// (see gguf.File.Release).
	rel, _ := m.closer.(interface{ Release([]byte) error })
	if opts.Quant != nil {
		conv := func(w **kernels.Matrix) error {
			if (*w).Type == *opts.Quant {
				return nil
			}
			if _, err := opts.Quant.RowBytes((*w).Cols); err != nil {
				return nil // cannot be blocked at this width: keep the file's type
			}
			nw, err := kernels.Convert(*w, *opts.Quant)
			if err != nil {
				return err
			}
			old := *w
			*w = nw
			if rel != nil {
				return rel.Release(old.Data)
			}
			return nil
		}
		all := []**kernels.Matrix{&m.Embed}
		if !tied {
			all = append(all, &m.Output)
		}
		for i := range m.Blocks {
			l := &m.Blocks[i]
			all = append(all, &l.Wq, &l.Wk, &l.Wv, &l.Wo, &l.Gate, &l.Down, &l.Up)
		}
		for _, w := range all {
			if err := conv(w); err != nil {
				return err
			}
		}
		if tied {
			m.Output = m.Embed
		}
	}
	// Products read packed copies of the quantized weights where the kernels have a
	// faster layout for them (see kernels.Matrix.Pack); embedding lookups keep the file's.
	// Q8_0 and Q4_0 matrices under 2^17 weights (in the shared pair, the draft's layers;
	// its 4096×192 classifier is packed, in tiles) stay unpacked: packing them saves
	// time — tiling all of the Q8_0 draft made a 16-token pass 0.6 ms against 1.15 ms —
	// but it moved the draft files' teacher-forced agreement with llama.cpp under the
	// 99% the engine is held to (Q4_0 99.3% → 98.96%, Q8_0 99.22% → 98.96%: a few
	// near-ties rounded the other way). The other quantized types (K-quants…) are
	// packed whatever their size: unpacked, they run on portable Go.
	//
	// A packed matrix's bytes in the file are not read again (the embedding's rows are,
	// so a tied classifier's stay): the file's pages of it leave the resident set, so
	// that a served model holds one copy of its weights, not two (see gguf.File.Release).
	pack := func(w *kernels.Matrix) error {
		if w.Rows*w.Cols < 1<<17 && (w.Type == ggml.Q8_0 || w.Type == ggml.Q4_0) {
			return nil
		}
		if w.Pack(); rel == nil || !w.Packed() || w == m.Embed {
			return nil
		}
		return rel.Release(w.Data)
	}
	if err := pack(m.Output); err != nil {
		return err
	}
	for _, l := range m.Blocks {
		for _, w := range []*kernels.Matrix{l.Wq, l.Wk, l.Wv, l.Wo, l.Gate, l.Down, l.Up} {
			if err := pack(w); err != nil {
				return err
			}
		}
	}
	m.Quant = m.Blocks[0].Wq.Type
	var n uint64
	count := func(w *kernels.Matrix) { n += uint64(w.Rows * w.Cols) }
	count(m.Embed)
	if !tied {
		count(m.Output)
	}
	for _, l := range m.Blocks {
		for _, w := range []*kernels.Matrix{l.Wq, l.Wk, l.Wv, l.Wo, l.Gate, l.Down, l.Up} {
			count(w)
		}
		n += uint64(len(l.AttnNorm) + len(l.FFNNorm) + len(l.Bq) + len(l.Bk) + len(l.Bv) + len(l.QNorm) + len(l.KNorm))
	}
	c.Parameters = n + uint64(len(m.FinalNorm))
	m.initRope()
	return nil
}
