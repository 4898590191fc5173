package ggufvocab_test

import (
	"slices"
	"testing"
)

// TestInvalidUTF8 checks text that is not valid UTF-8 (a Latin-1 file given to specd
// tokenize --file, say) against llama.cpp: before a byte-level BPE vocabulary splits
// text, llama.cpp reads it as code points, a byte that starts no complete sequence as
// U+FFFD and an overlong form as the code point it spells. The ids are llama-tokenize's
// (b4748, ../shared/tools), made with
//
//	printf 'TEXT' > t.txt; llama-tokenize -m VOCAB -f t.txt --ids --no-bos --no-parse-special --log-disable
//
// Left out: sequences above U+10FFFF, on which llama-tokenize aborts ("invalid codepoint").
func TestInvalidUTF8(t *testing.T) {
	cases := []struct {
		vocab, text string
		want        []int32
	}{
		{"ggml-vocab-qwen2.gguf", "caf\xe9 au lait", []int32{68796, 5691, 7906, 1187, 275}},
		{"ggml-vocab-qwen2.gguf", "x\xe4aby", []int32{87, 5691, 6115}},
		{"ggml-vocab-qwen2.gguf", "x\xc0\x80y", []int32{87, 188, 88}},
		{"ggml-vocab-qwen2.gguf", "x\xe0\x80\x80y", []int32{87, 188, 88}},
		{"ggml-vocab-qwen2.gguf", "x\xed\xa0\x80y", []int32{87, 169, 63219, 88}},
		{"ggml-vocab-qwen2.gguf", "xy\xe4\xb8", []int32{4130, 9973}},
		{"ggml-vocab-qwen2.gguf", "x\xf0\x9f\x98y", []int32{87, 57332, 88}},
		{"ggml-vocab-qwen2.gguf", " \x80\x80 hello\xff\xfe world", []int32{220, 9973, 23811, 9973, 1879}},
		{"ggml-vocab-qwen2.gguf", "\xf8\x88\x80\x80\x80", []int32{23479, 5691}},
		{"ggml-vocab-qwen2.gguf", "123\xe9456", []int32{16, 17, 18, 5691, 19, 20, 21}},
		{"ggml-vocab-llama-bpe.gguf", "caf\xe9 au lait", []int32{69896, 5809, 8065, 1208, 275}},
		{"ggml-vocab-llama-bpe.gguf", "x\xe4aby", []int32{87, 5809, 6243}},
		{"ggml-vocab-llama-bpe.gguf", "x\xc0\x80y", []int32{87, 188, 88}},
		{"ggml-vocab-llama-bpe.gguf", "x\xe0\x80\x80y", []int32{87, 188, 88}},
		{"ggml-vocab-llama-bpe.gguf", "x\xed\xa0\x80y", []int32{87, 169, 64319, 88}},
		{"ggml-vocab-llama-bpe.gguf", "xy\xe4\xb8", []int32{4223, 10178}},
		{"ggml-vocab-llama-bpe.gguf", "x\xf0\x9f\x98y", []int32{87, 58432, 88}},
		{"ggml-vocab-llama-bpe.gguf", " \x80\x80 hello\xff\xfe world", []int32{220, 10178, 24748, 10178, 1917}},
		{"ggml-vocab-llama-bpe.gguf", "\xf8\x88\x80\x80\x80", []int32{24378, 5809}},
		{"ggml-vocab-llama-bpe.gguf", "123\xe9456", []int32{4513, 5809, 10961}},
		{"ggml-vocab-gpt-2.gguf", "caf\xe9 au lait", []int32{66, 1878, 4210, 35851, 300, 4548}},
		{"ggml-vocab-gpt-2.gguf", "x\xe4aby", []int32{87, 4210, 3930}},
		{"ggml-vocab-gpt-2.gguf", "x\xc0\x80y", []int32{87, 188, 88}},
		{"ggml-vocab-gpt-2.gguf", "x\xe0\x80\x80y", []int32{87, 188, 88}},
		{"ggml-vocab-gpt-2.gguf", "x\xed\xa0\x80y", []int32{87, 169, 254, 222, 88}},
		{"ggml-vocab-gpt-2.gguf", "xy\xe4\xb8", []int32{5431, 6353}},
		{"ggml-vocab-gpt-2.gguf", "x\xf0\x9f\x98y", []int32{87, 48585, 88}},
		{"ggml-vocab-gpt-2.gguf", " \x80\x80 hello\xff\xfe world", []int32{220, 6353, 23748, 6353, 995}},
		{"ggml-vocab-gpt-2.gguf", "\xf8\x88\x80\x80\x80", []int32{12100, 4210}},
		{"ggml-vocab-gpt-2.gguf", "123\xe9456", []int32{10163, 4210, 29228}},
		{"ggml-vocab-deepseek-coder.gguf", "caf\xe9 au lait", []int32{66, 2623, 10006, 23482, 446, 260}},
		{"ggml-vocab-deepseek-coder.gguf", "x\xe4aby", []int32{87, 10006, 5781}},
		{"ggml-vocab-deepseek-coder.gguf", "x\xc0\x80y", []int32{87, 175, 88}},
		{"ggml-vocab-deepseek-coder.gguf", "x\xe0\x80\x80y", []int32{87, 175, 88}},
		{"ggml-vocab-deepseek-coder.gguf", "x\xed\xa0\x80y", []int32{87, 167, 241, 209, 88}},
		{"ggml-vocab-deepseek-coder.gguf", "xy\xe4\xb8", []int32{5073, 16258}},
		{"ggml-vocab-deepseek-coder.gguf", "x\xf0\x9f\x98y", []int32{87, 16258, 10006, 88}},
		{"ggml-vocab-deepseek-coder.gguf", " \x80\x80 hello\xff\xfe world", []int32{207, 16258, 14104, 78, 16258, 1835}},
		{"ggml-vocab-deepseek-coder.gguf", "\xf8\x88\x80\x80\x80", []int32{16258, 16258, 10006}},
		{"ggml-vocab-deepseek-coder.gguf", "123\xe9456", []int32{16, 17, 18, 10006, 19, 20, 21}},
		{"ggml-vocab-starcoder.gguf", "caf\xe9 au lait", []int32{28709, 8448, 13279, 475, 1149}},
		{"ggml-vocab-starcoder.gguf", "x\xe4aby", []int32{125, 8448, 17157}},
		{"ggml-vocab-starcoder.gguf", "x\xc0\x80y", []int32{125, 212, 126}},
		{"ggml-vocab-starcoder.gguf", "x\xe0\x80\x80y", []int32{125, 212, 126}},
		{"ggml-vocab-starcoder.gguf", "x\xed\xa0\x80y", []int32{125, 205, 278, 246, 126}},
		{"ggml-vocab-starcoder.gguf", "xy\xe4\xb8", []int32{2223, 15466}},
		{"ggml-vocab-starcoder.gguf", "x\xf0\x9f\x98y", []int32{125, 15466, 8448, 126}},
		{"ggml-vocab-starcoder.gguf", " \x80\x80 hello\xff\xfe world", []int32{244, 15466, 17966, 15466, 5810}},
		{"ggml-vocab-starcoder.gguf", "\xf8\x88\x80\x80\x80", []int32{39315, 8448}},
		{"ggml-vocab-starcoder.gguf", "123\xe9456", []int32{54, 55, 56, 8448, 57, 58, 59}},
	}
	for _, c := range cases {
		tok := loadVocab(t, c.vocab)
		if got := tok.Encode(c.text, false); !slices.Equal(got, c.want) {
			t.Errorf("%s: Encode(%q) = %v, want %v", c.vocab, c.text, got, c.want)
		}
	}
}
