package grammar

import (
	"encoding/json"
	"fmt"
	"math/big"
	"strings"
	"testing"
)

// TestRealBounds: bounds on numbers with a fraction let out exactly the numbers within
// them (compared as exact rationals), and a prefix exactly when some number within
// them begins with it.
func TestRealBounds(t *testing.T) {
	// Every number of the form [-]d[d].[d[d]] and a few longer ones.
	var nums []string
	for i := range 200 {
		for _, frac := range []string{"", ".0", ".5", ".25", ".05", ".99", ".001"} {
			for _, sign := range []string{"", "-"} {
				nums = append(nums, fmt.Sprintf("%s%d%s", sign, i/2, frac))
			}
		}
	}
	nums = append(nums, "0.2500001", "0.2500000999999999", "-2.75", "-2.7500000000000001", "99.9999999999999999", "-0", "-0.0")
	for _, bounds := range []string{
		`"minimum":0,"maximum":100`,
		`"exclusiveMinimum":0,"exclusiveMaximum":3`,
		`"minimum":-2.75,"exclusiveMaximum":0.25`,
		`"exclusiveMinimum":-273.15,"maximum":1e4`,
		`"minimum":0.05,"maximum":0.05`,
		`"exclusiveMinimum":-1`,
		`"maximum":-0.001`,
		`"minimum":0.2500001`,
	} {
		root := mustSchema(t, `{"type":"number",`+bounds+`}`)
		var b map[string]any
		schema := mustDecode(t, `{`+bounds+`}`)
		b = schema.(map[string]any)
		within := func(s string) bool {
			x, _ := new(big.Rat).SetString(s)
			for k, v := range b {
				r, _ := new(big.Rat).SetString(fmt.Sprint(v))
				c := x.Cmp(r)
				switch {
				case k == "minimum" && c < 0, k == "exclusiveMinimum" && c <= 0, k == "maximum" && c > 0, k == "exclusiveMaximum" && c >= 0:
					return false
				}
			}
			return true
		}
		for _, s := range nums {
			if _, whole := run(root, s); whole != within(s) {
				t.Errorf("%s: %s whole %v, want %v", bounds, s, whole, !whole)
			}
			// Each prefix of a number within the bounds is allowed.
			if within(s) {
				for i := 1; i < len(s); i++ {
					if ok, _ := run(root, s[:i]); !ok {
						t.Errorf("%s: prefix %q of %s refused", bounds, s[:i], s)
					}
				}
			}
		}
		if ok, _ := run(root, "1e"); ok {
			t.Errorf("%s: an exponent allowed", bounds)
		}
	}
	// A prefix no number within the bounds begins with is refused at once.
	root := mustSchema(t, `{"type":"number","minimum":1.5,"maximum":2.25}`)
	for text, want := range map[string]bool{"1": true, "1.": true, "1.4": false, "1.5": true, "1.49": false, "2.": true, "2.3": false, "2.2": true, "2.26": false, "3": false, "-": false, "0": false, "2.250000": true, "2.2500001": false} {
		if ok, _ := run(root, text); ok != want {
			t.Errorf("[1.5, 2.25]: prefix %q allowed %v, want %v", text, ok, want)
		}
	}
}

func mustDecode(t *testing.T, s string) any {
	t.Helper()
	d := jsonNumberDecoder(s)
	var v any
	if err := d.Decode(&v); err != nil {
		t.Fatal(err)
	}
	return v
}

// TestMultipleOf: an integer multipleOf lets out its multiples within the bounds, and
// a prefix only when one of them begins with it.
func TestMultipleOf(t *testing.T) {
	root := mustSchema(t, `{"type":"integer","multipleOf":2.5,"minimum":-12,"maximum":31}`) // multiples of 5
	for v := -40; v <= 40; v++ {
		s := fmt.Sprint(v)
		want := v%5 == 0 && v >= -12 && v <= 31
		if _, whole := run(root, s); whole != want {
			t.Errorf("%s whole %v, want %v", s, whole, want)
		}
	}
	for text, want := range map[string]bool{"3": true, "4": false, "-1": true, "-2": false, "2": true, "1": true, "-": true} {
		if ok, _ := run(root, text); ok != want {
			t.Errorf("prefix %q allowed %v, want %v", text, ok, want)
		}
	}
}

// TestFormats: each format takes its values and refuses what is not one, and the
// strings' lengths are counted in characters.
func TestFormats(t *testing.T) {
	for _, c := range []struct {
		schema string
		yes    []string
		no     []string
	}{
		{`{"format":"date"}`, []string{"2024-02-29", "2000-02-29", "0000-01-01", "1999-12-31", "2023-04-30"},
			[]string{"1900-02-29", "2023-02-29", "2023-04-31", "2023-00-10", "2023-13-01", "2023-1-01", "2023-01-00", "20230101", "2023-01-32"}},
		{`{"format":"time"}`, []string{"00:00:00Z", "23:59:59.999999+14:00", "12:30:00-05:30", "08:00:00.1Z"},
			[]string{"24:00:00Z", "12:60:00Z", "12:00:60Z", "12:00:00", "12:00:00z", "12:00:00.1234567Z", "12:00:00+1:00", "12:00Z"}},
		{`{"format":"date-time"}`, []string{"2024-02-29T23:59:59Z", "1970-01-01T00:00:00.5+00:00"},
			[]string{"2024-02-29 23:59:59Z", "2024-02-29T23:59:59", "2024-02-30T00:00:00Z", "2024-02-29t23:59:59Z"}},
		{`{"format":"duration"}`, []string{"P1Y", "P1Y2M", "P1Y2M3D", "P3D", "P1M3D", "PT1H", "PT1H2M3S", "PT2M", "PT3S", "P1DT12H", "P2W", "P0D"},
			[]string{"P", "PT", "P1Y3D", "PT1H3S", "P1W2D", "P1.5D", "PT1.5S", "1D", "P1D2H", "P1DT", "p1d"}},
		{`{"format":"uuid"}`, []string{"123e4567-e89b-12d3-a456-426614174000", "ABCDEF00-0000-0000-0000-000000000000"},
			[]string{"123e4567e89b12d3a456426614174000", "123e4567-e89b-12d3-a456-42661417400", "123e4567-e89b-12d3-a456-4266141740000", "g23e4567-e89b-12d3-a456-426614174000"}},
		{`{"format":"ipv4"}`, []string{"0.0.0.0", "255.255.255.255", "192.168.1.10"},
			[]string{"256.0.0.0", "01.2.3.4", "1.2.3", "1.2.3.4.5", "1..2.3", "1.2.3.", "::1"}},
		{`{"format":"hostname"}`, []string{"localhost", "a.b-c.d", "xn--bcher-kva.example", "1.2.3.4", strings.Repeat("a", 63) + ".com"},
			[]string{"-a.com", "a-.com", "a..b", ".a", "a.", strings.Repeat("a", 64) + ".com", "a_b.com", "é.com"}},
		{`{"format":"email"}`, []string{"a@b.cd", "first.last+tag@sub.example-domain.org", "x_y-z@a1.io"},
			[]string{"a@b", "a@localhost", "a.@b.cd", ".a@b.cd", "a..b@c.de", "a@b.c", "a@b.c1", "a@-b.cd", "\"a\"@b.cd", "a@b.cd.", "a b@c.de", strings.Repeat("a", 65) + "@b.cd"}},
		{`{"format":"uuid4"}`, []string{"123e4567-e89b-42d3-a456-426614174000", "123E4567-E89B-42D3-B456-426614174000"},
			[]string{"123e4567-e89b-12d3-a456-426614174000", "123e4567-e89b-42d3-c456-426614174000", "00000000-0000-0000-0000-000000000000"}},
		{`{"format":"ipv6"}`, []string{"::", "::1", "1::", "1:2:3:4:5:6:7:8", "1:2:3:4:5:6:7::", "::2:3:4:5:6:7:8", "fe80::1:abcd", "::ffff:192.168.0.1", "1:2:3:4:5:6:1.2.3.4", "1::1.2.3.4", "ABCD:EF01::"},
			[]string{":", ":::", "1:2:3:4:5:6:7:8:9", "1:2:3:4:5:6:7", "1::2::3", "12345::", "1:2:3:4:5:6:7:1.2.3.4", "::01.2.3.4", "::1.2.3", "1:2:3:4:5:6:7:8::", "::1:2:3:4:5:6:7:8", "g::", "fe80::1%eth0", "1:"}},
		{`{"format":"uri"}`, []string{"https://example.com", "http://a:8080/p/a%20th?q=1&r=/x?y#frag/?", "s3://bucket/key", "x+y.z-w://h~.1_/"},
			[]string{"example.com", "https://", "https://a:", "https://a:123456", "https:/a", "1http://a", "https://a/%2", "https://a/%zz", "https://a/b c", "https://a#b#c", "mailto:x@y.z", "https://a!b"}},
		{`{"format":"not-a-format"}`, []string{"anything"}, nil},
		{`{"minLength":2,"maxLength":3}`, []string{"ab", "abc", "é😀", "\\n\\t", "\\u00e9a"}, []string{"a", "abcd", "😀", "é😀a😀", "\\ud83d\\ude00x"}},
	} {
		root := mustSchema(t, `{"type":"string",`+c.schema[1:])
		for _, s := range c.yes {
			if _, whole := run(root, `"`+s+`"`); !whole {
				t.Errorf("%s: %q refused", c.schema, s)
			}
		}
		for _, s := range c.no {
			if _, whole := run(root, `"`+s+`"`); whole {
				t.Errorf("%s: %q taken", c.schema, s)
			}
		}
	}
}

func jsonNumberDecoder(s string) *json.Decoder {
	d := json.NewDecoder(strings.NewReader(s))
	d.UseNumber()
	return d
}
