package tokenizer

import (
	"fmt"
	"sort"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/dlclark/regexp2/v2"
)

// Pre-tokenization cuts text into words before byte-level BPE merges inside each word.
// A vocabulary names its rules in tokenizer.ggml.pre; each type is a list of split
// patterns applied in turn, as llama.cpp's llama-vocab.cpp defines them: every pattern
// cuts each piece the previous patterns left into its matches and the gaps between them.
//
// The patterns use look-ahead (\s+(?!\S)), which Go's regexp lacks. The three patterns
// almost every vocabulary uses — GPT-2's, Llama 3's and Qwen2's — and the lone \p{N} run
// as hand-written scanners over Unicode categories (see BenchmarkPreTokenize: several
// times faster than a backtracking engine, and linear by construction); every other
// pattern runs on regexp2, a backtracking engine with look-ahead. The categories are Go's
// unicode tables; llama.cpp's differ only where the Unicode versions do.

// The split patterns that have hand-written scanners. The GPT-2 and Llama 3 scanners
// reproduce llama.cpp's own hand-written ones (unicode.cpp), which it uses for exactly
// these two patterns; Qwen2's pattern runs there on std::regex, and its scanner follows
// the regular expression (they differ only on unassigned code points).
const (
	patGPT2   = `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)`
	patLlama3 = `(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
	patQwen2  = `(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
	patDigit  = `\p{N}`
)

// The other patterns, transcribed from llama.cpp's llama-vocab.cpp (whose adaptations of
// the Hugging Face originals they keep). A pattern's `$` (deepseek-llm) is written `\z`:
// regexp2 follows .NET, where `$` also matches before a final newline.
const (
	patQwen35 = `(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
	patPoro   = ` ?[^(\s|.,!?…。，、।۔،)]+`
	patTekken = `[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))*((?=[\p{L}])([^A-Z]))+|[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))+((?=[\p{L}])([^A-Z]))*|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+`
	patGPT4o  = `[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))*((?=[\p{L}])([^A-Z]))+(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))+((?=[\p{L}])([^A-Z]))*(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+`
	// deepseek-llm's letters: Latin, Greek, Cyrillic, Armenian, Georgian, Cherokee, … as
	// explicit ranges, not \p{L}.
	patDeepseekLetters = "\\s?[A-Za-z\u00B5\u00C0-\u00D6\u00D8-\u00F6\u00F8-\u01BA\u01BC-\u01BF\u01C4-\u0293\u0295-\u02AF\u0370-\u0373\u0376\u0377\u037B-\u037D\u037F\u0386\u0388-\u038A\u038C\u038E-\u03A1\u03A3-\u03F5\u03F7-\u0481\u048A-\u052F\u0531-\u0556\u10A0-\u10C5\u13A0-\u13F5\u13F8-\u13FD\u1C90-\u1CBA\u1CBD-\u1CBF\u1D00-\u1D2B\u1D6B-\u1D77\u1D79-\u1D9A\u1E00-\u1F15\u1F18-\u1F1D\u1F20-\u1F45\u1F48-\u1F4D\u1F50-\u1F57\u1F59\u1F5B\u1F5D\u1F5F-\u1F7D\u1F80-\u1FB4\u1FB6-\u1FBC\u1FBE\u1FC2-\u1FC4\u1FC6-\u1FCC\u1FD0-\u1FD3\u1FD6-\u1FDB\u1FE0-\u1FEC\u1FF2-\u1FF4\u1FF6-\u1FFC\u2102\u2107\u210A-\u2113\u2115\u2119-\u211D\u2124\u2126\u2128\u212A-\u212D\u212F-\u2134\u2139\u213C-\u213F\u2145-\u2149\u214E\u2183\u2184\u2C00-\u2C7B\u2C7E-\u2CE4\u2CEB-\u2CEE\u2CF2\u2CF3\uA640-\uA66D\uA680-\uA69B\uA722-\uA76F\uA771-\uA787\uA78B-\uA78E\uAB70-\uABBF\uFB00-\uFB06\uFB13-\uFB17\uFF21-\uFF3A\uFF41-\uFF5A\U00010400-\U0001044F\U000104B0-\U000104D3\U000104D8-\U000104FB\U00010C80-\U00010CB2\U00010CC0-\U00010CF2\U000118A0-\U000118DF\U0001E900-\U0001E943]+"
	patDeepseekV3Words = "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\\r\\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
	patFalconPunct     = "[\\p{P}\\$\\+<=>\\^~\\|`]+"
)

// preType is one pre-tokenizer type: its split patterns and the defaults llama.cpp ties
// to it.
type preType struct {
	id       string // the first name registered: aliases share it
	patterns []string
	// ignoreMerges: a word that is itself a piece is emitted whole, without merging
	// (Llama 3's tokenizer.json sets ignore_merges).
	ignoreMerges bool
	// addBOS: llama.cpp's add_bos_token when the file does not say.
	addBOS bool
	// noBOS: the type has no BOS token at all (llama.cpp's chatglm).
	noBOS bool
}

// preTypes maps the tokenizer.ggml.pre names llama.cpp knows to their rules; aliases
// share an entry.
var preTypes = func() map[string]*preType {
	m := map[string]*preType{}
	add := func(t *preType, names ...string) {
		t.id = names[0]
		for _, n := range names {
			m[n] = t
		}
	}
	add(&preType{patterns: []string{`[\p{P}\$\+<=>\^~\|]+`, patGPT2, `\p{N}+`, `[0-9][0-9][0-9]`}}, "default")
	add(&preType{patterns: []string{patLlama3}, ignoreMerges: true, addBOS: true},
		"llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral")
	add(&preType{patterns: []string{patLlama3}}, "dbrx", "smaug-bpe")
	add(&preType{patterns: []string{patLlama3}, noBOS: true}, "chatglm-bpe", "glm4")
	add(&preType{patterns: []string{"[\r\n]", patDeepseekLetters, `\s?[!-/:-~！-／：-～‘-‟　-。]+`, `\s+\z`, `[一-龥ࠀ-一가-퟿]+`, `\p{N}+`}},
		"deepseek-llm")
	add(&preType{patterns: []string{"[\r\n]", `\s?\p{L}+`, `\s?\p{P}+`, `[一-龥ࠀ-一가-퟿]+`, patDigit}}, "deepseek-coder")
	add(&preType{patterns: []string{`\p{N}{1,3}`, `[一-龥぀-ゟ゠-ヿ]+`, patDeepseekV3Words}}, "deepseek-v3")
	add(&preType{patterns: []string{patFalconPunct, patGPT2, `[0-9][0-9][0-9]`}}, "falcon")
	add(&preType{patterns: []string{patDigit, patGPT2}},
		"starcoder", "refact", "command-r", "smollm", "codeshell", "exaone", "minerva-7b")
	add(&preType{patterns: []string{patGPT2}},
		"gpt-2", "phi-2", "jina-es", "jina-de", "jina-v1-en", "jina-v2-es", "jina-v2-de", "jina-v2-code",
		"gigachat", "roberta-bpe", "mpt", "olmo", "jais", "exaone4")
	add(&preType{patterns: []string{patQwen2}}, "qwen2", "deepseek-r1-qwen", "stablelm2", "megrez")
	add(&preType{patterns: []string{patQwen35}}, "qwen35")
	add(&preType{patterns: []string{patPoro}}, "poro-chat", "bloom", "gpt3-finnish")
	add(&preType{patterns: []string{patPoro, patDigit}}, "viking")
	add(&preType{patterns: []string{patTekken}, ignoreMerges: true, addBOS: true}, "tekken")
	add(&preType{patterns: []string{
		`<sentinel:[0-9]+>`, `(IMGIMG)((A|B|C|D|E|F|G|H|I){1,4})Z`, "([\\t\\n]|    |  )", patDigit,
		"[\\p{P}!-/:-@\\[-`{-~]", patGPT2,
	}, addBOS: true}, "chameleon")
	add(&preType{patterns: []string{patGPT4o}}, "gpt-4o", "llama4")
	return m
}()

// PreTokenizers returns the tokenizer.ggml.pre names this package supports, sorted.
func PreTokenizers() []string {
	names := make([]string, 0, len(preTypes))
	for n := range preTypes {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// DefaultAddBOS reports whether llama.cpp adds BOS to a prompt for a byte-level BPE
// vocabulary of pre-tokenizer type pre when the file has no tokenizer.ggml.add_bos_token.
// It is false for an unknown type.
func DefaultAddBOS(pre string) bool {
	t := preTypes[canonicalPre(pre)]
	return t != nil && t.addBOS
}

// HasBOS reports whether llama.cpp gives a byte-level BPE vocabulary of type pre a BOS
// token by default (chatglm's has none unless its file names one; ggufvocab gives no
// byte-level vocabulary a BOS its file does not name).
func HasBOS(pre string) bool {
	t := preTypes[canonicalPre(pre)]
	return t == nil || !t.noBOS
}

// canonicalPre maps a missing type to "default", as llama.cpp does.
func canonicalPre(pre string) string {
	if pre == "" {
		return "default"
	}
	return pre
}

// ErrUnknownPreTokenizer is returned (wrapped, naming the type) by New for a byte-level
// BPE vocabulary whose Pre is not one of PreTokenizers().
var ErrUnknownPreTokenizer = fmt.Errorf("%w: unknown pre-tokenizer type", ErrInvalidVocab)

// splitter cuts s.chars[s.start:s.end] into pieces, appending the end of each piece (an
// index into s.chars) to ends; the last one appended is s.end.
type splitter interface {
	split(s *span, ends []int) []int
}

// preTokenizer is a compiled preType.
type preTokenizer struct {
	name      string // the canonical tokenizer.ggml.pre name
	kind      *preType
	stages    []splitter
	needRegex bool // some stage runs regexp2 and needs span.rx
}

func newPreTokenizer(name string) (*preTokenizer, error) {
	name = canonicalPre(name)
	t, ok := preTypes[name]
	if !ok {
		return nil, fmt.Errorf("%w %q (supported: %v)", ErrUnknownPreTokenizer, name, PreTokenizers())
	}
	p := &preTokenizer{name: name, kind: t}
	for _, pat := range t.patterns {
		st, err := compileSplit(pat)
		if err != nil {
			return nil, fmt.Errorf("%w: pre-tokenizer %q: pattern %q: %w", ErrInvalidVocab, name, pat, err)
		}
		if _, ok := st.(regexSplit); ok {
			p.needRegex = true
		}
		p.stages = append(p.stages, st)
	}
	return p, nil
}

// compileSplit returns the scanner of a pattern: a hand-written one when there is one.
func compileSplit(pat string) (splitter, error) {
	switch pat {
	case patGPT2:
		return gpt2Split{}, nil
	case patLlama3:
		return llama3Split{maxDigits: 3}, nil
	case patQwen2:
		return llama3Split{maxDigits: 1, regexUndefined: true}, nil
	case patDigit:
		return digitSplit{}, nil
	}
	collapsed := usesCategories(pat)
	if collapsed {
		pat = collapsePattern(pat)
	}
	re, err := regexp2.Compile(pat, regexp2.None)
	if err != nil {
		return nil, err
	}
	return regexSplit{re: re, collapsed: collapsed}, nil
}

// llama.cpp runs a pattern that names Unicode categories (\p{L}, …) on a "collapsed"
// copy of the text: ASCII stays, every other code point becomes one placeholder per
// category (white space becomes '\v'), and each \p{X} in the pattern becomes a class
// of X's placeholder and X's ASCII members. The ASCII members it lists are Unicode's,
// except that '~' is in no category: so \p{S} does not match '~'. Collapsing the same way
// reproduces that.
var categoryASCII = map[string]struct {
	placeholder rune
	ascii       string
}{
	`\p{N}`: {0xD1, `0-9`}, `\p{L}`: {0xD2, `A-Za-z`}, `\p{Lu}`: {0xD2, `A-Za-z`}, `\p{Ll}`: {0xD2, `A-Za-z`},
	`\p{Lt}`: {0xD2, `A-Za-z`}, `\p{Lm}`: {0xD2, `A-Za-z`}, `\p{Lo}`: {0xD2, `A-Za-z`},
	`\p{P}`: {0xD3, `!-#%-*,-/:-;?-@\[-\]_\{\}`}, `\p{M}`: {0xD4, ``}, `\p{S}`: {0xD5, `\$\+<->\^` + "`" + `\|`},
}

const collapsedOther = 0xD0 // placeholder of a code point in none of the categories

// usesCategories reports whether pat names a Unicode category that llama.cpp collapses.
func usesCategories(pat string) bool {
	for c := range categoryASCII {
		if strings.Contains(pat, c) {
			return true
		}
	}
	return false
}

// collapsePattern rewrites each \p{X} of pat as llama.cpp does.
func collapsePattern(pat string) string {
	var b strings.Builder
	inside := false
	for i := 0; i < len(pat); i++ {
		c := pat[i]
		switch {
		case c == '[' && (i == 0 || pat[i-1] != '\\'):
			inside = true
		case inside && c == ']' && pat[i-1] != '\\':
			inside = false
		case c == '\\' && strings.HasPrefix(pat[i:], `\p{`):
			if j := strings.IndexByte(pat[i:], '}'); j > 0 {
				if cat, ok := categoryASCII[pat[i:i+j+1]]; ok {
					if !inside {
						b.WriteByte('[')
					}
					b.WriteRune(cat.placeholder)
					b.WriteString(cat.ascii)
					if !inside {
						b.WriteByte(']')
					}
					i += j
					continue
				}
			}
		}
		b.WriteByte(c)
	}
	return b.String()
}

// collapse returns the placeholder of a non-ASCII code point r with classes f.
func collapse(r rune, f uint8) rune {
	switch {
	case f&fSpace != 0:
		return '\v'
	case f&fLetter != 0:
		return 0xD2
	case f&fNumber != 0:
		return 0xD1
	case unicode.Is(unicode.P, r):
		return 0xD3
	case unicode.Is(unicode.M, r):
		return 0xD4
	case unicode.Is(unicode.S, r):
		return 0xD5
	}
	return collapsedOther
}

// Character classes of a code point, as the scanners need them.
const (
	fLetter uint8 = 1 << iota // \p{L}
	fNumber                   // \p{N}
	fSpace                    // \s: the White_Space property
	fOther                    // any other assigned code point
)

var asciiFlags = func() (t [utf8.RuneSelf]uint8) {
	for c := range t {
		t[c] = charFlags(rune(c))
	}
	return t
}()

// charFlags classifies r. An unassigned code point gets 0.
func charFlags(r rune) uint8 {
	var f uint8
	switch {
	case unicode.IsLetter(r):
		f = fLetter
	case unicode.IsNumber(r):
		f = fNumber
	case unicode.In(r, unicode.M, unicode.P, unicode.S, unicode.Z, unicode.C):
		f = fOther
	}
	if unicode.IsSpace(r) {
		f |= fSpace
	}
	return f
}

// span is the text a splitter works on: the code points of one fragment of text (an
// invalid byte is one U+FFFD) with their classes, and the range to split.
type span struct {
	chars []rune
	flags []uint8
	// rx is chars with every non-ASCII white space as '\v' and is set when a regexp2
	// stage runs: llama.cpp hands its regular expressions the text that way, so that a
	// pattern's literal characters never match white space. cx is the collapsed text
	// (see collapsePattern), set when a stage needs it.
	rx, cx     []rune
	start, end int
	// undefinedIsOther makes an unassigned code point count as "other" punctuation, as
	// the regular expressions see it, rather than as nothing, as llama.cpp's
	// hand-written GPT-2 and Llama 3 scanners do.
	undefinedIsOther bool
}

// flag returns the classes of chars[i], 0 outside [start, end).
func (s *span) flag(i int) uint8 {
	if i < s.start || i >= s.end {
		return 0
	}
	f := s.flags[i]
	if f == 0 && s.undefinedIsOther {
		f = fOther
	}
	return f
}

// char returns chars[i], or -1 outside [start, end).
func (s *span) char(i int) rune {
	if i < s.start || i >= s.end {
		return -1
	}
	return s.chars[i]
}

// cut appends end to ends unless it adds an empty piece.
func cut(ends []int, s *span, end int) []int {
	last := s.start
	if n := len(ends); n > 0 && ends[n-1] > last {
		last = ends[n-1]
	}
	if end > last {
		ends = append(ends, end)
	}
	return ends
}

// contraction returns the length (2 or 3) of an English contraction — 's 't 're 've 'm
// 'll 'd, ASCII letters of either case when fold is set — at chars[pos] == '\”, or 0.
func contraction(s *span, pos int, fold bool) int {
	lower := func(r rune) rune {
		if fold && 'A' <= r && r <= 'Z' {
			return r + ('a' - 'A')
		}
		return r
	}
	switch lower(s.char(pos + 1)) {
	case 's', 't', 'm', 'd':
		return 2
	}
	if pos+2 >= s.end {
		return 0
	}
	switch string([]rune{lower(s.char(pos + 1)), lower(s.char(pos + 2))}) {
	case "re", "ve", "ll":
		return 3
	}
	return 0
}

// spaceEnd returns the end of the word at pos by the white-space alternatives of the
// GPT-2 and Llama 3 patterns, or pos+1 when none matches: '\s*[\r\n]+' (with newlines
// set) up to the last newline of the run, else '\s+(?!\S)' leaving the run's last space
// to the word after it, else '\s+'.
func spaceEnd(s *span, pos int, newlines bool) int {
	n, lastNewline := 0, 0
	for s.flag(pos+n)&fSpace != 0 {
		if c := s.chars[pos+n]; c == '\r' || c == '\n' {
			lastNewline = pos + n + 1
		}
		n++
	}
	switch {
	case newlines && lastNewline > 0:
		return lastNewline
	case n > 1 && pos+n < s.end:
		return pos + n - 1
	case n > 0:
		return pos + n
	}
	return pos + 1
}

// otherEnd returns the end of the run of characters at pos that are not white space,
// letters or numbers (and are assigned, or count as assigned: see span).
func otherEnd(s *span, pos int) int {
	for g := s.flag(pos); g&(fSpace|fLetter|fNumber) == 0 && g != 0; g = s.flag(pos) {
		pos++
	}
	return pos
}

// gpt2Split scans patGPT2.
type gpt2Split struct{}

func (gpt2Split) split(s *span, ends []int) []int {
	const word = fSpace | fLetter | fNumber
	for pos := s.start; pos < s.end; {
		c, f := s.chars[pos], s.flag(pos)
		if c == '\'' && pos+1 < s.end {
			if n := contraction(s, pos, false); n > 0 {
				pos += n
				ends = cut(ends, s, pos)
				continue
			}
		}
		f2, lead := f, 0
		if c == ' ' {
			f2, lead = s.flag(pos+1), 1
		}
		if class := f2 & (fLetter | fNumber); class != 0 { // ' ?\p{L}+' and ' ?\p{N}+'
			pos += lead
			for s.flag(pos)&class != 0 {
				pos++
			}
			ends = cut(ends, s, pos)
			continue
		}
		if f2&word == 0 && f2 != 0 { // ' ?[^\s\p{L}\p{N}]+'
			pos = otherEnd(s, pos+lead)
			ends = cut(ends, s, pos)
			continue
		}
		pos = spaceEnd(s, pos, false)
		ends = cut(ends, s, pos)
	}
	return cut(ends, s, s.end)
}

// llama3Split scans patLlama3 (maxDigits 3) and patQwen2 (maxDigits 1).
type llama3Split struct {
	maxDigits      int
	regexUndefined bool // see span.undefinedIsOther
}

func (l llama3Split) split(s *span, ends []int) []int {
	const word = fSpace | fLetter | fNumber
	s.undefinedIsOther = l.regexUndefined
	defer func() { s.undefinedIsOther = false }()
	for pos := s.start; pos < s.end; {
		c, f := s.chars[pos], s.flag(pos)
		if c == '\'' && pos+1 < s.end {
			if n := contraction(s, pos, true); n > 0 {
				pos += n
				ends = cut(ends, s, pos)
				continue
			}
		}
		// [^\r\n\p{L}\p{N}]?\p{L}+
		if c != '\r' && c != '\n' && f&fNumber == 0 && (f&fLetter != 0 || s.flag(pos+1)&fLetter != 0) {
			pos++
			for s.flag(pos)&fLetter != 0 {
				pos++
			}
			ends = cut(ends, s, pos)
			continue
		}
		// \p{N}{1,maxDigits}
		if f&fNumber != 0 {
			for ini := pos; s.flag(pos)&fNumber != 0; {
				if pos++; pos-ini >= l.maxDigits {
					ends = cut(ends, s, pos)
					ini = pos
				}
			}
			ends = cut(ends, s, pos)
			continue
		}
		// ' ?[^\s\p{L}\p{N}]+[\r\n]*'
		f2, lead := f, 0
		if c == ' ' {
			f2, lead = s.flag(pos+1), 1
		}
		if f2&word == 0 && f != 0 {
			pos = otherEnd(s, pos+lead)
			for r := s.char(pos); r == '\r' || r == '\n'; r = s.char(pos) {
				pos++
			}
			ends = cut(ends, s, pos)
			continue
		}
		pos = spaceEnd(s, pos, true)
		ends = cut(ends, s, pos)
	}
	return cut(ends, s, s.end)
}

// digitSplit scans patDigit: each number character alone.
type digitSplit struct{}

func (digitSplit) split(s *span, ends []int) []int {
	for pos := s.start; pos < s.end; pos++ {
		if s.flags[pos]&fNumber != 0 {
			ends = cut(ends, s, pos)
			ends = cut(ends, s, pos+1)
		}
	}
	return cut(ends, s, s.end)
}

// regexSplit runs a pattern on regexp2, on the collapsed text if collapsed. Should the
// engine fail (it bounds its backtracking stack), the span stays one piece.
type regexSplit struct {
	re        *regexp2.Regexp
	collapsed bool
}

func (r regexSplit) split(s *span, ends []int) []int {
	text := s.rx
	if r.collapsed {
		text = s.cx
	}
	matches, err := r.re.FindAllRunesIndex(text[s.start:s.end], -1)
	if err == nil {
		for _, m := range matches {
			ends = cut(ends, s, s.start+m[0])
			ends = cut(ends, s, s.start+m[1])
		}
	}
	return cut(ends, s, s.end)
}

// words appends to dst the byte ranges [start, end) of text's words, in order; they
// cover text. sc holds reusable buffers.
func (p *preTokenizer) words(text string, sc *scratch, dst [][2]int) [][2]int {
	sc.chars, sc.offs, sc.flags = sc.chars[:0], sc.offs[:0], sc.flags[:0]
	for i := 0; i < len(text); {
		r, n := utf8.DecodeRuneInString(text[i:])
		sc.chars = append(sc.chars, r)
		sc.offs = append(sc.offs, i)
		if r < utf8.RuneSelf {
			sc.flags = append(sc.flags, asciiFlags[r])
		} else {
			sc.flags = append(sc.flags, charFlags(r))
		}
		i += n
	}
	sc.offs = append(sc.offs, len(text))
	s := span{chars: sc.chars, flags: sc.flags}
	if p.needRegex {
		sc.rx = append(sc.rx[:0], sc.chars...)
		sc.cx = append(sc.cx[:0], sc.chars...)
		for i, r := range sc.chars {
			if r < utf8.RuneSelf {
				continue
			}
			if sc.flags[i]&fSpace != 0 {
				sc.rx[i] = '\v'
			}
			sc.cx[i] = collapse(r, sc.flags[i])
		}
		s.rx, s.cx = sc.rx, sc.cx
	}
	bounds := append(sc.bounds[:0], len(sc.chars))
	for _, st := range p.stages {
		next := sc.next[:0]
		prev := 0
		for _, b := range bounds {
			s.start, s.end = prev, b
			next = st.split(&s, next)
			prev = b
		}
		sc.bounds, sc.next = next, bounds
		bounds = next
	}
	prev := 0
	for _, b := range bounds {
		dst = append(dst, [2]int{sc.offs[prev], sc.offs[b]})
		prev = b
	}
	return dst
}
