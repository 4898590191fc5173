package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/specd-dev/specd/ggml"
	"github.com/specd-dev/specd/gguf"
	"github.com/specd-dev/specd/kernels"
	"github.com/specd-dev/specd/modelpath"
)

// llamaFileType is general.file_type as llama.cpp numbers it (LLAMA_FTYPE_*).
var llamaFileType = map[ggml.Type]uint32{ggml.F32: 0, ggml.F16: 1, ggml.Q4_0: 2, ggml.Q8_0: 7}

// quantizeCmd converts every 2-D tensor of a GGUF file to one type, as llama.cpp's
// `llama-quantize --pure` does (norms and other 1-D tensors stay F32), producing the
// same tensor bytes.
func quantizeCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("quantize", flag.ContinueOnError)
	var models, in, out, typ string
	fs.StringVar(&models, "models", "", "model directory (default $"+modelpath.EnvVar+", else ../shared/models)")
	fs.StringVar(&in, "m", "", "input GGUF model: a path, a name in the model directory, or hf:ORG/REPO[:QUANT|:FILE]")
	fs.StringVar(&out, "o", "", "output GGUF file")
	fs.StringVar(&typ, "type", "q8_0", "target type: q8_0, q4_0, f16 or f32")
	// llama-quantize's command line: [--pure] [--allow-requantize] IN OUT TYPE. specd
	// always converts every 2-D tensor to TYPE, whatever type it has.
	fs.Bool("pure", false, "accepted for llama-quantize's command line: specd quantize always converts every 2-D tensor to the one type")
	fs.Bool("allow-requantize", false, "accepted for llama-quantize's command line: specd quantize converts quantized tensors too")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: specd quantize -m IN -o OUT [--type TYPE]\n   or: specd quantize IN OUT [TYPE]   (as llama-quantize)\n\n")
		fs.PrintDefaults()
	}
	pos, err := parseFlagsAndArgs(fs, args, stderr)
	if err != nil {
		return err
	}
	switch {
	case len(pos) == 0:
	case len(pos) > 3 || len(pos) < 2:
		return usagef("want IN OUT [TYPE] (as llama-quantize) or -m IN -o OUT, got %d arguments", len(pos))
	case in != "" || out != "" || (len(pos) == 3 && flagSet(fs, "type")):
		return usagef("give the input, output and type either as arguments or as -m, -o and --type, not both")
	default:
		in, out = pos[0], pos[1]
		if len(pos) == 3 {
			typ = pos[2]
		}
	}
	to, err := ggml.ParseType(typ)
	if err != nil {
		if strings.HasPrefix(strings.ToLower(typ), "iq") || strings.Contains(strings.ToLower(typ), "_k") {
			return usagef("--type %s: specd quantize writes q8_0, q4_0, f16 or f32; K-quant and IQ mixes are llama-quantize's (specd runs the files it writes)", typ)
		}
		return usagef("--type: %v", err)
	}
	if _, ok := llamaFileType[to]; !ok {
		return usagef("--type %v: specd reads this type but cannot write it yet (want q8_0, q4_0, f16 or f32)", to)
	}
	if in == "" || out == "" {
		return usagef("need -m INPUT and -o OUTPUT")
	}
	path, err := modelFile(ctx, modelpath.Dir(models), in, stderr)
	if err != nil {
		return err
	}
	f, err := gguf.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	var kv []gguf.KV
	for _, e := range f.KV {
		switch e.Key {
		case "general.file_type", "general.quantization_version", gguf.AlignmentKey:
			continue
		}
		kv = append(kv, e)
	}
	kv = append(kv, gguf.KV{Key: "general.file_type", Value: gguf.NewUint32(llamaFileType[to])})
	if to == ggml.Q8_0 || to == ggml.Q4_0 {
		kv = append(kv, gguf.KV{Key: "general.quantization_version", Value: gguf.NewUint32(2)})
	}
	var tensors []gguf.TensorData
	converted := 0
	for _, ti := range f.Tensors {
		_, data, err := f.Tensor(ti.Name)
		if err != nil {
			return err
		}
		td := gguf.TensorData{Name: ti.Name, Dims: ti.Dims, Type: ti.Type, Data: data}
		if len(ti.Dims) == 2 && ti.Type != to {
			if _, err := to.RowBytes(int(ti.Dims[0])); err == nil {
				m, err := kernels.NewMatrix(ti.Type, int(ti.Dims[1]), int(ti.Dims[0]), data)
				if err != nil {
					return fmt.Errorf("tensor %s: %w", ti.Name, err)
				}
				c, err := kernels.Convert(m, to)
				if err != nil {
					return fmt.Errorf("tensor %s: %w", ti.Name, err)
				}
				td.Type, td.Data = to, c.Data
				converted++
			}
		}
		tensors = append(tensors, td)
	}
	w, err := os.Create(out)
	if err != nil {
		return usageError{err}
	}
	bw := bufio.NewWriterSize(w, 1<<20)
	if err := gguf.Write(bw, kv, tensors, f.Alignment); err != nil {
		w.Close()
		return err
	}
	if err := bw.Flush(); err != nil {
		w.Close()
		return err
	}
	if err := w.Close(); err != nil {
		return err
	}
	fmt.Fprintf(stderr, "%s: %d of %d tensors converted to %v\n", out, converted, len(tensors), to)
	return nil
}
