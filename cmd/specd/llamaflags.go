package main

import "strings"

// llamaFlags maps flags of llama.cpp's programs (b4748: llama-cli, llama-server,
// llama-perplexity) that specd does not take to what a user of llama.cpp should type
// instead. Flags specd takes under llama.cpp's name (-m, -p, -f, -n, -c, -t, --temp,
// --top-k, --top-p, --min-p, --seed, --repeat-penalty, --grammar, --grammar-file, -j)
// are not here.
var llamaFlags = map[string]string{
	"s": "--seed", "predict": "-n", "n-predict": "-n",
	"ctk": "--kv-type f32|f16 (one type for keys and values)", "cache-type-k": "--kv-type f32|f16 (one type for keys and values)",
	"ctv": "--kv-type f32|f16 (one type for keys and values)", "cache-type-v": "--kv-type f32|f16 (one type for keys and values)",
	"r": "--stop STRING", "reverse-prompt": "--stop STRING",
	"l":  "--logit-bias ID=BIAS (or ID+BIAS, ID-BIAS)",
	"jf": "--json-schema @FILE", "json-schema-file": "--json-schema @FILE",
	"hf": "-m hf:ORG/REPO[:QUANT]", "hfr": "-m hf:ORG/REPO[:QUANT]", "hf-repo": "-m hf:ORG/REPO[:QUANT]",
	"hff": "-m hf:ORG/REPO:FILE.gguf", "hf-file": "-m hf:ORG/REPO:FILE.gguf",
	"hft": "the HF_TOKEN environment variable", "hf-token": "the HF_TOKEN environment variable",
	"md": "specd up --draft-model DRAFT", "model-draft": "specd up --draft-model DRAFT",
	"draft-max": "--max-gamma (verifier and up) or --gamma (generate)", "draft": "--max-gamma (verifier and up) or --gamma (generate)",
	"port": "specd up --http-listen HOST:PORT (the OpenAI-compatible API)", "host": "specd up --http-listen HOST:PORT (the OpenAI-compatible API)",
	"ngl":              "no equivalent, it runs on the CPU only: drop the flag",
	"n-gpu-layers":     "no equivalent, it runs on the CPU only: drop the flag",
	"gpu-layers":       "no equivalent, it runs on the CPU only: drop the flag",
	"no-cnv":           "no equivalent, run only completes the prompt: drop the flag",
	"no-conversation":  "no equivalent, run only completes the prompt: drop the flag",
	"cnv":              "specd generate --messages FILE.json through specd up (specd run has no chat mode)",
	"conversation":     "specd generate --messages FILE.json through specd up (specd run has no chat mode)",
	"repeat-last-n":    "no equivalent, --repeat-penalty looks at the whole prompt and output",
	"b":                "--max-block on verifier and draft (run and score use blocks of 64 tokens)",
	"batch-size":       "--max-block on verifier and draft (run and score use blocks of 64 tokens)",
	"ub":               "--max-block on verifier and draft (run and score use blocks of 64 tokens)",
	"ubatch-size":      "--max-block on verifier and draft (run and score use blocks of 64 tokens)",
	"ids":              "no flag, tokenize prints ids (--json for a JSON list)",
	"no-bos":           "no flag, tokenize adds no BOS unless given --bos (llama-tokenize adds it unless given --no-bos)",
	"no-parse-special": "no flag, tokenize reads special-token text as text unless given --special (llama-tokenize parses it unless given --no-parse-special)",
	"stdin":            "--file -",
	"no-escape":        "no flag, run takes the prompt as given unless given -e (llama-cli reads escapes unless given --no-escape)",
	"log-disable":      "no flag, specd logs nothing here",
	"mirostat":         "no equivalent, specd does not implement Mirostat sampling",
	"typical":          "no equivalent, specd does not implement locally typical sampling",
	"dry-multiplier":   "no equivalent, specd does not implement DRY sampling",
	"xtc-probability":  "no equivalent, specd does not implement XTC sampling",
}

// llamaHint returns what to type instead of the llama.cpp flag that err (from
// flag.FlagSet.Parse) says is not defined, or "" when err is about another flag.
func llamaHint(err error) string {
	name, ok := strings.CutPrefix(err.Error(), "flag provided but not defined: -")
	if !ok {
		return ""
	}
	name = strings.TrimPrefix(name, "-")
	h, ok := llamaFlags[name]
	if !ok {
		return ""
	}
	return "a llama.cpp flag; in specd: " + h
}

// processEscapes turns the escape sequences llama-cli reads in a prompt (-e, its
// default in b4748: common's string_process_escapes) into the bytes they stand for:
// \n \r \t \' \" \\ and \xHH (two hex digits). Any other backslash, and one that
// ends the text, is kept as it is with what follows it.
func processEscapes(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '\\' || i+1 == len(s) {
			b.WriteByte(c)
			continue
		}
		i++
		switch s[i] {
		case 'n':
			b.WriteByte('\n')
		case 'r':
			b.WriteByte('\r')
		case 't':
			b.WriteByte('\t')
		case '\'', '"', '\\':
			b.WriteByte(s[i])
		case 'x':
			if i+2 < len(s) {
				if v, ok := hexByte(s[i+1], s[i+2]); ok {
					b.WriteByte(v)
					i += 2
					break
				}
			}
			b.WriteString(`\x`)
		default:
			b.WriteByte('\\')
			b.WriteByte(s[i])
		}
	}
	return b.String()
}

// hexByte is the byte two hex digits spell.
func hexByte(hi, lo byte) (byte, bool) {
	h, ok1 := hexDigit(hi)
	l, ok2 := hexDigit(lo)
	return h<<4 | l, ok1 && ok2
}

func hexDigit(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}
