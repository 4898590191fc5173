package grammar

import (
	"strings"
	"testing"
)

// BenchmarkStepBytes: the matcher's steps alone, byte by byte through a long object (no
// vocabulary): what every Advance, Reset and mask walk is made of.
func BenchmarkStepBytes(b *testing.B) {
	doc := `{"items": [` + strings.Repeat(`{"name": "Lily", "age": 5, "tags": ["a girl", "happy"]}, `, 80) + `{}]}`
	alts := start(anyObject, "", "")
	for b.Loop() {
		if len(after(alts, []byte(doc))) == 0 {
			b.Fatal("refused")
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(doc)), "ns/byte")
}
