package grammar

import (
	"math/rand/v2"
	"testing"
)

// deadEndSchemas use every keyword whose matcher state could lead where no byte can
// follow: bounded strings and formats, bounded numbers, unique items, counted keys.
var deadEndSchemas = []string{
	`{"type":"string","format":"date-time"}`,
	`{"type":"string","format":"date-time","maxLength":25}`,
	`{"type":"string","format":"time"}`,
	`{"type":"string","format":"date"}`,
	`{"type":"string","format":"duration","maxLength":6}`,
	`{"type":"string","format":"uuid"}`,
	`{"type":"string","format":"ipv4","minLength":7}`,
	`{"type":"string","format":"hostname","maxLength":5}`,
	`{"type":"string","format":"email","maxLength":8}`,
	`{"type":"string","format":"email"}`,
	`{"type":"string","format":"uri","maxLength":12}`,
	`{"type":"string","format":"ipv6"}`,
	`{"type":"string","format":"ipv6","maxLength":9}`,
	`{"type":"string","minLength":3,"maxLength":4}`,
	`{"type":"number","exclusiveMinimum":0.25,"exclusiveMaximum":0.2500001}`,
	`{"type":"number","minimum":-1e-16,"maximum":1e-16}`,
	`{"type":"number","minimum":99.5,"maximum":100}`,
	`{"type":"number","exclusiveMinimum":-3,"maximum":-2.75}`,
	`{"type":"integer","multipleOf":7,"minimum":-20,"maximum":20}`,
	`{"type":"integer","multipleOf":1000000007}`,
	`{"type":"array","items":{"enum":["a","ab","abc",true,1]},"uniqueItems":true}`,
	`{"type":"object","properties":{"a":{"type":"null"},"b":{"type":"null"},"c":{"type":"null"}},"required":["c"],"maxProperties":2,"minProperties":2}`,
	`{"type":"object","properties":{"a":{"type":"null"}},"required":["a"],"additionalProperties":{"type":"null"},"maxProperties":2}`,
	`{"type":"array","prefixItems":[{"type":"string","format":"uuid"},{"type":"boolean"}],"items":false,"minItems":1}`,
	`{"type":"string","pattern":"^[A-Z]{3}-\\d{4}$"}`,
	`{"type":"string","pattern":"^(é|ü|世界|[α-ω]|😀)+$","maxLength":5}`,
	`{"type":"string","pattern":"^[^a-z]*[\u4e00-\u4e0f]$","maxLength":3}`,
	`{"type":"string","pattern":"^(ab|c+)$","minLength":3,"maxLength":4}`,
	`{"type":"string","pattern":"^(aa)+$","minLength":3,"maxLength":5}`,
	`{"type":"string","pattern":"x\"y|\\\\","maxLength":6}`,
	`{"type":"string","pattern":"^\\s\\S$"}`,
	`{"type":"object","propertyNames":{"pattern":"^[a-z]{2}(é|\\d)$"},"additionalProperties":{"type":"null"},"maxProperties":2}`,
	`{"type":"object","propertyNames":{"minLength":2,"maxLength":3},"properties":{"ab":{"type":"null"}},"additionalProperties":{"type":"null"}}`,
	`{"type":"string","format":"uuid","pattern":"^([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[1-8][0-9a-fA-F]{3}-[89abAB][0-9a-fA-F]{3}-[0-9a-fA-F]{12}|00000000-0000-0000-0000-000000000000|ffffffff-ffff-ffff-ffff-ffffffffffff)$"}`,
}

// TestNoDeadEnds: random walks byte by byte, each byte drawn from those the matcher
// allows, never reach a state that is not whole and that no byte continues: the mask
// never leads a model where it cannot finish.
func TestNoDeadEnds(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 11))
	for _, schema := range deadEndSchemas {
		root := mustSchema(t, schema)
		wholes := 0
		for walk := range 120 {
			alts, text := start(root, "", ""), []byte{}
			for len(text) < 300 {
				var next [][]*frame
				var bytes []byte
				for b := range 256 {
					if a := stepAll(nil, alts, byte(b)); len(a) > 0 {
						next, bytes = append(next, a), append(bytes, byte(b))
					}
				}
				whole := accepting(alts)
				if len(next) == 0 {
					if !whole {
						t.Fatalf("%s, walk %d: %q is a dead end", schema, walk, text)
					}
					break
				}
				if whole && rng.IntN(4) == 0 {
					break
				}
				// Mostly ASCII, so that the walk gets through formats.
				i := rng.IntN(len(bytes))
				for try := 0; try < 8 && bytes[i] >= 0x80; try++ {
					i = rng.IntN(len(bytes))
				}
				alts, text = next[i], append(text, bytes[i])
			}
			if accepting(alts) {
				wholes++
			}
		}
		if wholes == 0 {
			t.Errorf("%s: no walk reached a whole value", schema)
		}
	}
}
