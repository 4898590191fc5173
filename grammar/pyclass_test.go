package grammar

import (
	"encoding/json"
	"fmt"
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
	n := 0
	for _, row := range tsvRows(t, "testdata/python-re/classes.tsv") {
		q, rs := row[0], strings.Join(row[1:], " ")
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

// TestRegexFoldAsPython: with i, a negated class of one character X leaves out every
// character Python's re.fullmatch takes for (?i)[X] (testdata/python-re/fold.tsv,
// written by Python itself), and X itself writes only such characters.
func TestRegexFoldAsPython(t *testing.T) {
	n := 0
	for _, row := range tsvRows(t, "testdata/python-re/fold.tsv") {
		xs, rs := row[0], strings.Join(row[1:], " ")
		x, err := strconv.ParseInt(xs, 16, 32)
		if err != nil {
			t.Fatalf("bad row %q", row)
		}
		var py []span
		for _, r := range strings.Fields(rs) {
			c, err := strconv.ParseInt(r, 16, 32)
			if err != nil {
				t.Fatalf("bad row %q", row)
			}
			py = append(py, span{rune(c), rune(c)})
		}
		py = normalize(py, false)
		esc := fmt.Sprintf(`\U%08x`, x)
		for _, tc := range []struct {
			p       string
			negated bool
		}{{`(?i)[^` + esc + `]`, true}, {`(?i)` + esc, false}, {`(?i)[` + esc + `]`, false}} {
			f, err := RegexFormat(tc.p)
			if err != nil {
				t.Errorf("RegexFormat(%q): %v", tc.p, err)
				continue
			}
			got := soleClass(t, f)
			switch in := intersect(got, py); {
			case tc.negated && len(in) > 0:
				t.Errorf("%q (%c) writes %v, which Python's (?i)[%c] takes", tc.p, rune(x), in, rune(x))
			case !tc.negated && size(in) != size(got):
				t.Errorf("%q (%c) writes %v, Python's (?i)[%c] only %v", tc.p, rune(x), got, rune(x), py)
			}
		}
		n++
	}
	if n < 2000 {
		t.Fatalf("%d characters, want the file's", n)
	}
}
