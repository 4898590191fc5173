package grammar

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"unicode/utf8"
)

// refMatch reports whether text is a whole sentence of rs, by a different road than
// the matcher's stacks: the set of places each rule can end when it starts at a
// character, by plain recursion over the rules (memoized), on the whole text at once.
func refMatch(rs *ruleSet, text string) bool {
	if !utf8.ValidString(text) {
		return false
	}
	cs := []rune(text)
	// ends[(pos, at)]: where the rest of an alternative from element pos, begun at
	// character at, can end.
	memo := map[[2]int32][]int{}
	var ends func(pos int32, at int) []int
	ruleEnds := func(rule int32, at int) []int {
		set := map[int]bool{}
		for _, a := range rs.starts[rule] {
			for _, j := range ends(a, at) {
				set[j] = true
			}
		}
		var v []int
		for j := range set {
			v = append(v, j)
		}
		return v
	}
	ends = func(pos int32, at int) []int {
		key := [2]int32{pos, int32(at)}
		if v, ok := memo[key]; ok {
			return v
		}
		var v []int
		switch e := rs.elems[pos]; e.kind {
		case eEnd:
			v = []int{at}
		case eChar:
			if at < len(cs) && contains(rs.classes[e.arg], cs[at]) {
				v = ends(pos+1, at+1)
			}
		case eRef:
			set := map[int]bool{}
			for _, j := range ruleEnds(e.arg, at) {
				for _, k := range ends(pos+1, j) {
					set[k] = true
				}
			}
			for k := range set {
				v = append(v, k)
			}
		}
		memo[key] = v
		return v
	}
	for _, j := range ruleEnds(rs.root, 0) {
		if j == len(cs) {
			return true
		}
	}
	return false
}

// diffGrammars are grammars FuzzRulesDiff checks texts against: recursion, nested
// repetitions, ambiguity, classes with multi-byte characters.
var diffGrammars = []string{
	arith,
	`root ::= "(" root ")" root | ""`,
	"root ::= (a | b)* c?\na ::= \"ab\" | \"a\"\nb ::= \"b\"{1,3}\nc ::= [^ab]",
	`root ::= [a-zé世]{2,5} ("-" [0-9]+)?`,
	"root ::= x{0,3} y\nx ::= \"a\" | \"aa\"\ny ::= \"a\"?",
	`root ::= (. | "\n")* "."`,
	"root ::= list\nlist ::= \"[\" (item (\",\" item)*)? \"]\"\nitem ::= list | [0-9]",
}

func FuzzRulesDiff(f *testing.F) {
	for i, s := range []string{"1+2=3\n", "(())()", "abbbabx", "éa世-12", "aaaa", "ab\n.", "[1,[2,[]]]", "", "a"} {
		f.Add(uint8(i), s)
	}
	f.Fuzz(func(t *testing.T, which uint8, text string) {
		g := diffGrammars[int(which)%len(diffGrammars)]
		fm, err := GBNFFormat(g)
		if err != nil {
			t.Fatal(err)
		}
		checkAgainstRef(t, fm.rules, text[:min(len(text), 256)])
	})
}

// checkAgainstRef checks the matcher on text against refMatch (every prefix of a
// sentence the matcher takes is one it took on the way: a state it refuses is final).
func checkAgainstRef(t *testing.T, rs *ruleSet, text string) {
	t.Helper()
	s, short := rs.start(), false
	for i := 0; i < len(text) && s.set != nil; i++ {
		s = rs.step(s, text[i])
		if s.set != nil && s.set.short {
			short = true
		}
	}
	whole := s.whole()
	if short {
		return // the bounds dropped alternatives: not the grammar's language
	}
	if want := refMatch(rs, text); whole != want {
		t.Fatalf("%q: matcher says whole %v, reference %v", text, whole, want)
	}
}

// FuzzGBNF: any text given as a grammar is taken or refused with an ErrGrammar, never
// a panic or a hang; a grammar taken agrees with the reference on any text.
func FuzzGBNF(f *testing.F) {
	for _, g := range diffGrammars {
		f.Add(g, "aa")
	}
	for _, g := range []string{`root ::= ("a"?)*`, `root ::= x`, "root ::= a\na ::= root", `root ::= [\x00-\U0010FFFF]+`,
		"root ::= \"a\"{2,3} # c\n", `root ::= "\uD800"`, `root ::= ((("a")))`, `root ::= "a"{1000}`,
		`root ::= <[5]>`, `root ::= "a" !<`, `root ::= [a\-z]`, "root ::= \"a\"{2,\n3}", "root ::= (\"a\"{2,\n3})", `root ::= "a"{,3}`,
		"root ::= x\r\nx ::= \"a\" |", `root ::= [^]`, `root ::= ("a"?){2,4}`, `root ::= [^]+`, `root ::= "a" []`,
		`root ::= "\x00"`, `root ::= [\x00-\x01]`, `root ::= .*`} {
		f.Add(g, "aaa")
	}
	langs, _ := filepath.Glob(filepath.Join("testdata", "gbnf-lang", "*.gbnf"))
	for _, name := range langs {
		g, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(string(g), "1. e4")
	}
	f.Fuzz(func(t *testing.T, g, text string) {
		fm, err := GBNFFormat(g)
		if err != nil {
			if !errors.Is(err, ErrGrammar) {
				t.Fatalf("%q: %v does not wrap ErrGrammar", g, err)
			}
			return
		}
		text = text[:min(len(text), 64)]
		checkAgainstRef(t, fm.rules, text)
	})
}
