package grammar

import (
	"encoding/json"
	"os"
	"strconv"
	"strings"
	"testing"
)

// TestRegexClassesAsPython: the characters a one-character pattern lets specd write
// are among those Python's re.fullmatch takes for it both with and without re.ASCII
// (testdata/python-re/classes.tsv, written by Python itself), and miss few of them
// (Python's Unicode tables are not Go's, and \w here is a little wider than Python's,
// so \W a little narrower).
func TestRegexClassesAsPython(t *testing.T) {
	data, err := os.ReadFile("testdata/python-re/classes.tsv")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for line := range strings.Lines(string(data)) {
		if strings.HasPrefix(line, "#") {
			continue
		}
		q, rs, _ := strings.Cut(strings.TrimRight(line, "\n"), "\t")
		var p string
		if err := json.Unmarshal([]byte(q), &p); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		var py []span
		for _, r := range strings.Fields(rs) {
			a, b, _ := strings.Cut(r, "-")
			lo, err1 := strconv.ParseInt(a, 16, 32)
			hi, err2 := strconv.ParseInt(b, 16, 32)
			if err1 != nil || err2 != nil {
				t.Fatalf("%s: bad range %q", q, r)
			}
			py = append(py, span{rune(lo), rune(hi)})
		}
		f, err := RegexFormat(p)
		if err != nil {
			t.Errorf("RegexFormat(%q): %v", p, err)
			continue
		}
		got := intersect(soleClass(t, f), []span{{0, 0xD7FF}, {0xE000, maxRune}}) // surrogates are never UTF-8
		if extra := size(got) - size(intersect(got, py)); extra != 0 {
			t.Errorf("%q: specd writes %d characters Python's re.fullmatch refuses in one mode or both", p, extra)
		}
		missed := size(py) - size(intersect(got, py))
		if missed*100 > size(py) {
			t.Errorf("%q: specd writes %d of the %d characters Python takes", p, size(py)-missed, size(py))
		}
		t.Logf("%q: %d of Python's %d", p, size(py)-missed, size(py))
		n++
	}
	if n < 15 {
		t.Fatalf("%d patterns, want the file's", n)
	}
}

// soleClass is the class of a pattern that is one character.
func soleClass(t *testing.T, f Format) []span {
	t.Helper()
	rs := f.rules
	if len(rs.starts[rs.root]) != 1 {
		t.Fatalf("%q: not one character", rs.source)
	}
	e, end := rs.elems[rs.starts[rs.root][0]], rs.elems[rs.starts[rs.root][0]+1]
	if e.kind != eChar || end.kind != eEnd {
		t.Fatalf("%q: not one character", rs.source)
	}
	return rs.classes[e.arg]
}

// size is how many code points c holds.
func size(c []span) int {
	n := 0
	for _, s := range c {
		n += int(s.hi - s.lo + 1)
	}
	return n
}
