package deploy_test

import (
	"fmt"
	"math/big"
	"testing"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclparse"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
)

// hclBlock is a block of an HCL file (the file itself is a block with no type) with
// its attributes kept as expressions, evaluated on demand in the file's context: a
// Nomad job's variables are known only once the variable blocks are read.
type hclBlock struct {
	typ    string
	labels []string
	attrs  map[string]*hclsyntax.Attribute
	blocks []*hclBlock
	rng    hcl.Range
	ctx    *hcl.EvalContext
}

// parseHCL parses an HCL file in native syntax.
func parseHCL(t *testing.T, path string) *hclBlock {
	t.Helper()
	f, diags := hclparse.NewParser().ParseHCL(readFile(t, path), path)
	if diags.HasErrors() {
		t.Fatalf("%s: %v", path, diags)
	}
	body, ok := f.Body.(*hclsyntax.Body)
	if !ok {
		t.Fatalf("%s: not native HCL syntax", path)
	}
	return newHCLBlock("", nil, body, &hcl.EvalContext{})
}

func newHCLBlock(typ string, labels []string, body *hclsyntax.Body, ctx *hcl.EvalContext) *hclBlock {
	b := &hclBlock{typ: typ, labels: labels, attrs: body.Attributes, rng: body.SrcRange, ctx: ctx}
	for _, c := range body.Blocks {
		b.blocks = append(b.blocks, newHCLBlock(c.Type, c.Labels, c.Body, ctx))
	}
	return b
}

func (b *hclBlock) where() string { return fmt.Sprintf("%s:%d", b.rng.Filename, b.rng.Start.Line) }

// all returns the child blocks of a type.
func (b *hclBlock) all(typ string) []*hclBlock {
	var out []*hclBlock
	for _, c := range b.blocks {
		if c.typ == typ {
			out = append(out, c)
		}
	}
	return out
}

// one returns the only child block of a type, or nil (reporting a duplicate).
func (b *hclBlock) one(t *testing.T, typ string) *hclBlock {
	t.Helper()
	cs := b.all(typ)
	if len(cs) > 1 {
		t.Errorf("%s: %d %s blocks, want one", b.where(), len(cs), typ)
	}
	if len(cs) == 0 {
		return nil
	}
	return cs[0]
}

// get evaluates an attribute into a Go value (string, float64, bool, []any,
// map[string]any); nil when it is absent.
func (b *hclBlock) get(t *testing.T, name string) any {
	t.Helper()
	a, ok := b.attrs[name]
	if !ok {
		return nil
	}
	v, diags := a.Expr.Value(b.ctx)
	if diags.HasErrors() {
		t.Errorf("%s: %s: %v", b.where(), name, diags)
		return nil
	}
	return ctyToGo(v)
}

// str is a string attribute; "" when absent or not a string.
func (b *hclBlock) str(t *testing.T, name string) string {
	t.Helper()
	s, _ := b.get(t, name).(string)
	return s
}

// num is a number attribute; 0 when absent.
func (b *hclBlock) num(t *testing.T, name string) float64 {
	t.Helper()
	n, _ := b.get(t, name).(float64)
	return n
}

// strs is a list of strings; nil when absent.
func (b *hclBlock) strs(t *testing.T, name string) []string {
	t.Helper()
	var out []string
	for _, v := range asList(b.get(t, name)) {
		s, ok := v.(string)
		if !ok {
			t.Errorf("%s: %s: element %v is not a string", b.where(), name, v)
		}
		out = append(out, s)
	}
	return out
}

func asList(v any) []any { l, _ := v.([]any); return l }

func ctyToGo(v cty.Value) any {
	if v.IsNull() || !v.IsKnown() {
		return nil
	}
	ty := v.Type()
	switch {
	case ty == cty.String:
		return v.AsString()
	case ty == cty.Number:
		f, _ := v.AsBigFloat().Float64()
		return f
	case ty == cty.Bool:
		return v.True()
	case ty.IsListType() || ty.IsTupleType() || ty.IsSetType():
		out := []any{}
		for it := v.ElementIterator(); it.Next(); {
			_, e := it.Element()
			out = append(out, ctyToGo(e))
		}
		return out
	case ty.IsObjectType() || ty.IsMapType():
		out := map[string]any{}
		for k, e := range v.AsValueMap() {
			out[k] = ctyToGo(e)
		}
		return out
	}
	return v.GoString()
}

// goToCty is the inverse of ctyToGo for the values a variable default takes.
func goToCty(v any) cty.Value {
	switch x := v.(type) {
	case string:
		return cty.StringVal(x)
	case float64:
		return cty.NumberVal(big.NewFloat(x))
	case bool:
		return cty.BoolVal(x)
	case []any:
		if len(x) == 0 {
			return cty.EmptyTupleVal
		}
		var vs []cty.Value
		for _, e := range x {
			vs = append(vs, goToCty(e))
		}
		return cty.TupleVal(vs)
	case map[string]any:
		m := map[string]cty.Value{}
		for k, e := range x {
			m[k] = goToCty(e)
		}
		return cty.ObjectVal(m)
	}
	return cty.NullVal(cty.DynamicPseudoType)
}
