package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/specd-dev/specd/internal/testmodels"
)

// TestLlamaCppFlagSpellings: the flags a llama-cli user types (-c, -t, -f, -j,
// --grammar-file) do what their specd spellings do.
func TestLlamaCppFlagSpellings(t *testing.T) {
	dir := t.TempDir()
	prompt := filepath.Join(dir, "prompt.txt")
	gbnf := filepath.Join(dir, "yn.gbnf")
	twoLF := filepath.Join(dir, "crlf.txt")
	for name, text := range map[string]string{prompt: "Once upon a time\n", twoLF: "Once upon a time\n\n", gbnf: `root ::= "yes" | "no"` + "\n"} {
		if err := os.WriteFile(name, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	base := []string{"run", "-m", "stories260K", "--temp", "0", "--json"}
	for _, c := range []struct {
		name       string
		llama, own []string
		wantOut    int // output tokens (-1: not checked)
	}{
		{"-c", []string{"-p", "Once upon a time", "-c", "12", "-n", "0"}, []string{"-p", "Once upon a time", "--ctx-size", "12", "-n", "0"}, 12 - 5},
		{"-t", []string{"-p", "Once upon a time", "-t", "1", "-n", "8"}, []string{"-p", "Once upon a time", "--threads", "1", "-n", "8"}, 8},
		// llama-cli -f drops the file's last line feed: its prompt was [1 403 407 261 378]
		// (--verbose-prompt, stories260K), as -p "Once upon a time" gives.
		{"-f", []string{"-f", prompt, "-n", "8"}, []string{"-p", "Once upon a time", "-n", "8"}, 8},
		{"-f one line feed", []string{"-f", twoLF, "-n", "8"}, []string{"-p", "Once upon a time\n", "-n", "8"}, 8},
		{"-j", []string{"-p", "Once upon a time", "-j", `{"type":"integer"}`, "-n", "8"}, []string{"-p", "Once upon a time", "--json-schema", `{"type":"integer"}`, "-n", "8"}, -1},
		{"--grammar-file", []string{"-p", "Is it?", "--grammar-file", gbnf}, []string{"-p", "Is it?", "--grammar", "@" + gbnf}, -1},
	} {
		t.Run(c.name, func(t *testing.T) {
			var got [2]runResult
			for i, args := range [][]string{c.llama, c.own} {
				stdout, stderr, code := run(t, append(slices.Clone(base), args...)...)
				if code != 0 {
					t.Fatalf("run %q: exit %d: %s", args, code, stderr)
				}
				if err := json.Unmarshal([]byte(stdout), &got[i]); err != nil {
					t.Fatal(err)
				}
			}
			if !slices.Equal(got[0].PromptIDs, got[1].PromptIDs) || !slices.Equal(got[0].OutputIDs, got[1].OutputIDs) {
				t.Errorf("%q: prompt %v output %v, want %v %v as with %q", c.llama, got[0].PromptIDs, got[0].OutputIDs, got[1].PromptIDs, got[1].OutputIDs, c.own)
			}
			if c.wantOut >= 0 && len(got[0].OutputIDs) != c.wantOut {
				t.Errorf("%q: %d output tokens, want %d", c.llama, len(got[0].OutputIDs), c.wantOut)
			}
		})
	}
}

// TestLlamaCppFlagHints: a llama.cpp flag specd does not take is refused with what
// to type instead; a mistyped flag is not given a hint.
func TestLlamaCppFlagHints(t *testing.T) {
	gbnf := filepath.Join(t.TempDir(), "none.gbnf")
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"run", "-m", "stories260K", "-p", "x", "-ngl", "99"}, "-ngl (a llama.cpp flag; in specd: no equivalent, it runs on the CPU only"},
		{[]string{"run", "-m", "stories260K", "-p", "x", "-s", "3"}, "in specd: --seed"},
		{[]string{"run", "-m", "stories260K", "-p", "x", "--n-predict", "3"}, "in specd: -n"},
		{[]string{"run", "-m", "stories260K", "-p", "x", "-ctk", "f16"}, "in specd: --kv-type f32|f16"},
		{[]string{"run", "-m", "stories260K", "-p", "x", "-no-cnv"}, "run only completes the prompt"},
		{[]string{"score", "-m", "stories260K", "--ids", "1", "-b", "512"}, "in specd: --max-block"},
		{[]string{"run", "-hf", "ggml-org/x"}, "in specd: -m hf:ORG/REPO[:QUANT]"},
		{[]string{"run", "-m", "stories260K", "-p", "x", "-nglx", "1"}, "flag provided but not defined: -nglx"},
		{[]string{"tokenize", "-m", "stories260K", "-p", "x", "--ids"}, "in specd: no flag, tokenize prints ids"},
		{[]string{"tokenize", "-m", "stories260K", "-p", "x", "--no-bos"}, "unless given --bos"},
		{[]string{"tokenize", "-m", "stories260K", "-p", "x", "--no-parse-special"}, "unless given --special"},
		{[]string{"tokenize", "-m", "stories260K", "-p", "x", "-f", gbnf}, "give exactly one of -p and -f/--file"},
		{[]string{"run", "-m", "stories260K", "-p", "x", "--grammar-file", gbnf}, "--grammar-file: open " + gbnf},
		{[]string{"run", "-m", "stories260K", "-p", "x", "--grammar-file", gbnf, "--grammar", "root ::= \"a\""}, "--grammar and --grammar-file: give one of them"},
		{[]string{"run", "-m", "stories260K", "-f", gbnf}, "-f: open " + gbnf},
		{[]string{"run", "-m", "stories260K", "-p", "x", "-f", gbnf}, "-p and -f: give one of them"},
	} {
		t.Run(c.args[len(c.args)-2], func(t *testing.T) { checkRefused(t, c.args, 2, c.want) })
	}
}

// TestTokenizeFileFlag: tokenize -f is --file, as llama-tokenize -f: the file byte for
// byte (llama-tokenize keeps a trailing line feed, unlike llama-cli).
func TestTokenizeFileFlag(t *testing.T) {
	p := filepath.Join(t.TempDir(), "p.txt")
	if err := os.WriteFile(p, []byte("Once upon a time\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	stdout, stderr, code := run(t, "tokenize", "-m", "stories260K", "-f", p, "--bos")
	// llama-tokenize -m stories260K-f32.gguf -f p.txt --ids: [1, 403, 407, 261, 378, 13]
	if want := "1 403 407 261 378 13\n"; code != 0 || stdout != want {
		t.Errorf("tokenize -f: exit %d, %q (%s), want %q", code, stdout, stderr, want)
	}
}

func TestProcessEscapes(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{``, ``},
		{`plain`, `plain`},
		{`A\nB`, "A\nB"},
		{`\r\t\'\"\\`, "\r\t'\"\\"},
		{`A\x41\q\tB`, "AA\\q\tB"},
		{`\x4`, `\x4`},
		{`\x41`, "A"},
		{`\xZZ`, `\xZZ`},
		{`\x0a\x0A`, "\n\n"},
		{`end\`, `end\`},
		{`\\n`, `\n`},
	} {
		if got := processEscapes(c.in); got != c.want {
			t.Errorf("processEscapes(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

func FuzzProcessEscapes(f *testing.F) {
	for _, s := range []string{`A\nB`, `\x41\q`, `\`, `\x`, `\x4`, "\\\xff", `\\\\x41`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got := processEscapes(s)
		if len(got) > len(s) {
			t.Errorf("processEscapes(%q) = %q: longer than its input", s, got)
		}
		if !strings.Contains(s, `\`) && got != s {
			t.Errorf("processEscapes(%q) = %q: changed a text without escapes", s, got)
		}
	})
}

// TestRunEscape: run -e reads escapes as llama-cli does by default; the prompt ids are
// llama-cli's (b4748, --verbose-prompt, stories260K-f32.gguf) for the same -p and -f.
func TestRunEscape(t *testing.T) {
	file := filepath.Join(t.TempDir(), "esc.txt")
	if err := os.WriteFile(file, []byte(`A\nB`+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		args []string
		want []int32
	}{
		{[]string{"-p", `A\x41\q\tB`, "-e"}, []int32{1, 410, 447, 447, 500, 456, 12, 445}},
		{[]string{"-f", file, "--escape"}, []int32{1, 410, 447, 13, 445}},
		{[]string{"-p", `A\nB`}, []int32{1, 410, 447, 500, 416, 445}}, // llama-cli --no-escape
	} {
		stdout, stderr, code := run(t, append([]string{"run", "-m", "stories260K-f32", "-n", "1", "--temp", "0", "--json"}, c.args...)...)
		if code != 0 {
			t.Fatalf("run %q: exit %d: %s", c.args, code, stderr)
		}
		var res runResult
		if err := json.Unmarshal([]byte(stdout), &res); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(res.PromptIDs, c.want) {
			t.Errorf("run %q: prompt ids %v, want %v", c.args, res.PromptIDs, c.want)
		}
	}
}

// TestQuantizeLlamaCommandLine: llama-quantize's command line ([--pure]
// [--allow-requantize] IN OUT TYPE) writes the file -m IN -o OUT --type TYPE writes;
// a K-quant mix is refused naming what specd writes.
func TestQuantizeLlamaCommandLine(t *testing.T) {
	src := testmodels.ForTest(t, "specd-draft-f16.gguf")
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a.gguf"), filepath.Join(dir, "b.gguf")
	if _, stderr, code := run(t, "quantize", "--pure", "--allow-requantize", src, a, "Q4_0"); code != 0 {
		t.Fatalf("quantize IN OUT Q4_0: exit %d: %s", code, stderr)
	}
	if _, stderr, code := run(t, "quantize", "-m", src, "-o", b, "--type", "q4_0"); code != 0 {
		t.Fatalf("quantize -m -o --type: exit %d: %s", code, stderr)
	}
	ab, _ := os.ReadFile(a)
	bb, _ := os.ReadFile(b)
	if len(ab) == 0 || !bytes.Equal(ab, bb) {
		t.Errorf("quantize IN OUT Q4_0 wrote %d bytes, -m -o --type %d; want the same file", len(ab), len(bb))
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"quantize", src, a, "Q4_K_M"}, "--type Q4_K_M: specd quantize writes q8_0, q4_0, f16 or f32"},
		{[]string{"quantize", src, a, "q8_0", "extra"}, "want IN OUT [TYPE]"},
		{[]string{"quantize", src}, "want IN OUT [TYPE]"},
		{[]string{"quantize", "-m", src, a, "q8_0"}, "either as arguments or as -m, -o and --type"},
	} {
		t.Run(strings.Join(c.args[2:], " "), func(t *testing.T) { checkRefused(t, c.args, 2, c.want) })
	}
}
