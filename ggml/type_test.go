package ggml

import "testing"

// The sizes of ggml's block structs (ggml-common.h static_asserts).
func TestBlockBytes(t *testing.T) {
	tests := []struct {
		t            Type
		block, bytes int
	}{
		{F32, 1, 4}, {F16, 1, 2}, {BF16, 1, 2},
		{Q4_0, 32, 18}, {Q5_0, 32, 22}, {Q5_1, 32, 24}, {Q8_0, 32, 34}, {IQ4_NL, 32, 18},
		{Q2_K, 256, 84}, {Q3_K, 256, 110}, {Q4_K, 256, 144}, {Q5_K, 256, 176}, {Q6_K, 256, 210},
	}
	for _, tt := range tests {
		if got := tt.t.BlockSize(); got != tt.block {
			t.Errorf("%v.BlockSize() = %d, want %d", tt.t, got, tt.block)
		}
		if got := tt.t.BlockBytes(); got != tt.bytes {
			t.Errorf("%v.BlockBytes() = %d, want %d", tt.t, got, tt.bytes)
		}
		back, err := ParseType(tt.t.String())
		if err != nil || back != tt.t {
			t.Errorf("ParseType(%q) = %v, %v, want %v", tt.t.String(), back, err, tt.t)
		}
	}
}

func TestUnsupported(t *testing.T) {
	for _, typ := range []Type{3, 9, 15, 16, 29, 99} {
		if typ.Supported() {
			t.Errorf("%v.Supported() = true, want false", typ)
		}
		if _, err := typ.RowBytes(256); err == nil {
			t.Errorf("%v.RowBytes(256) succeeded, want an error", typ)
		}
	}
	for typ, want := range map[Type]string{3: "q4_1", 23: "iq4_xs", 31: "q4_0_4_4", 35: "tq2_0", 99: "type(99)"} {
		if got := typ.String(); got != want {
			t.Errorf("Type(%d).String() = %q, want %q", uint32(typ), got, want)
		}
		if _, err := ParseType(want); err == nil {
			t.Errorf("ParseType(%q) succeeded for an unsupported type", want)
		}
	}
	if _, err := ParseType("q9_9"); err == nil {
		t.Error(`ParseType("q9_9") succeeded, want an error`)
	}
	if _, err := Q4_K.RowBytes(255); err == nil {
		t.Error("Q4_K.RowBytes(255) succeeded, want an error")
	}
}
