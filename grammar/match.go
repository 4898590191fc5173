package grammar

import (
	"encoding/json"
	"slices"
	"strings"
)

// A matcher state is a set of alternatives (anyOf branches still open), each the top
// frame of a stack that runs down to a kEnd frame. Frames are never changed once made:
// a step copies the top frame, so a state costs nothing to keep while a token's bytes
// are tried, and alternatives share the frames below their tops.
type frame struct {
	up     *frame
	n      *node
	kind   kind
	sub    uint8  // the kind's substate
	ws     uint8  // white space bytes in the current run (see white)
	aux    uint8  // strings: hex digits or UTF-8 continuation bytes still to come; numbers: 1 after a minus; objects: the property whose value comes (0: another key, i+1: property i)
	lo, hi byte   // strings: the range of the next UTF-8 continuation byte
	seen   uint64 // objects: the properties read, a bit each; arrays of unique enum values: the values given; bounded numbers: the integer part's value
	// x is, in strings, the character being decoded (the last one, between
	// characters; low 32 bits) and the state of the rule's automaton (high 32); in
	// bounded numbers with a fraction, the fraction's digits' value. (A frame of more
	// than 64 bytes took the next size class of allocation, 80: a draft's resets took
	// half as long again.)
	x     uint64
	count int    // objects: keys; arrays: items; strings with a rule: characters; numbers: digits in the current part; literals: bytes matched
	text  string // keys and enums: the bytes so far; literals: the word
}

func (f *frame) cp() rune       { return rune(uint32(f.x)) }
func (f *frame) fs() uint32     { return uint32(f.x >> 32) }
func (f *frame) setCP(c rune)   { f.x = f.x&^0xFFFFFFFF | uint64(uint32(c)) }
func (f *frame) setFS(s uint32) { f.x = f.x&0xFFFFFFFF | uint64(s)<<32 }

type kind uint8

const (
	kEnd     kind = iota // after the whole value: nothing more
	kValue               // a value of n is next, after optional white space
	kObject              // sub: obj*
	kKey                 // an object's key (up is the object)
	kArray               // sub: arr*
	kString              // sub: str*
	kNumber              // sub: num*
	kLiteral             // true, false or null
	kEnum                // one of n.enum
	kText                // literal text around the document (text; count: bytes matched)
)

const (
	objOpen  uint8 = iota // after '{'
	objKey                // a key is being read (the frame above)
	objColon              // after a key
	objValue              // its value is being read (the frame above)
	objNext               // after a value: ',' or '}'
	objComma              // after ',': a key
)

const (
	arrOpen  uint8 = iota // after '['
	arrItem               // an item is being read (the frame above)
	arrNext               // after an item: ',' or ']'
	arrComma              // after ',': an item
)

const (
	strChar   uint8 = iota // between characters
	strEscape              // after '\'
	strHex                 // in \uXXXX
	strCont                // in a multi-byte UTF-8 character
)

const (
	numMinus uint8 = iota
	numZero
	numInt
	numDot
	numFrac
	numE
	numESign
	numExp
)

// Bounds that keep a constrained model from running on where a grammar would let it
// (and white): the digits of each part of a number (as llama.cpp's grammars: 16), the
// bytes of an object key, and the alternatives kept open.
const (
	maxDigits = 16
	maxKey    = 256
	maxAlts   = 64
)

// start returns the state before any byte: prefix, a value of root, suffix, then the
// end.
func start(root *node, prefix, suffix string) []*frame {
	f := &frame{kind: kEnd}
	if suffix != "" {
		f = &frame{kind: kText, text: suffix, up: f}
	}
	f = &frame{kind: kValue, n: root, up: f}
	if prefix != "" {
		f = &frame{kind: kText, text: prefix, up: f}
	}
	return []*frame{f}
}

// stepAll appends to dst the state after byte b from alts, at most maxAlts of it.
func stepAll(dst, alts []*frame, b byte) []*frame {
	for _, f := range alts {
		dst = step(dst, f, b)
		if len(dst) >= maxAlts {
			return dst[:maxAlts]
		}
	}
	return dst
}

// accepting reports whether the text so far is a whole value.
func accepting(alts []*frame) bool {
	for _, f := range alts {
		if f.kind == kEnd || completes(f) && f.up.kind == kEnd {
			return true
		}
	}
	return false
}

// completes reports whether f, a number or an enum, may end here.
func completes(f *frame) bool {
	switch f.kind {
	case kNumber:
		switch {
		case f.n.bounded:
			return (f.sub == numZero || f.sub == numInt) && reachable(f, 0)
		case f.n.real != nil:
			return realCompletes(f)
		}
		return f.sub == numZero || f.sub == numInt || f.sub == numFrac || f.sub == numExp
	case kEnum:
		i, found := slices.BinarySearch(f.n.enum, f.text)
		return found && (!uniqueItem(f.up) || f.up.seen&(1<<i) == 0)
	}
	return false
}

// enumNext returns text followed by b, as a slice of a value of enum (sorted) that
// begins with it, and whether there is one: the first value not below text+b is one if
// any is. Neither the search nor the result copies text: building text+b at every
// byte cost the square of a long value (a 60 KB const, 3-13 ms a mask).
func enumNext(enum []string, text string, b byte) (string, bool) {
	n := len(text)
	i, _ := slices.BinarySearchFunc(enum, b, func(v string, b byte) int {
		// v against text+b.
		if c := strings.Compare(v[:min(len(v), n)], text); c != 0 {
			return c
		}
		switch {
		case len(v) == n:
			return -1 // text itself comes before text+b
		case v[n] < b:
			return -1
		case v[n] > b:
			return 1
		}
		return 0 // or longer: the first such is found either way
	})
	if i < len(enum) && len(enum[i]) > n && enum[i][:n] == text && enum[i][n] == b {
		return enum[i][:n+1], true
	}
	return "", false
}

func isWS(b byte) bool { return b == ' ' || b == '\n' || b == '\t' || b == '\r' }

// step appends to dst what f becomes after b (nothing when b cannot come next).
func step(dst []*frame, f *frame, b byte) []*frame {
	switch f.kind {
	case kValue:
		if isWS(b) {
			return white(dst, f, b)
		}
		return begin(dst, f.up, f.n, b)
	case kObject:
		return stepObject(dst, f, b)
	case kKey:
		return stepKey(dst, f, b)
	case kArray:
		return stepArray(dst, f, b)
	case kString:
		if f.n.str != nil {
			if g := stepRuled(f, b); g != nil {
				return append(dst, g)
			}
			return dst
		}
		if b == '"' && f.sub == strChar {
			return append(dst, finish(f.up))
		}
		if g := stringByte(f, b); g != nil {
			return append(dst, g)
		}
	case kNumber:
		return stepNumber(dst, f, b)
	case kLiteral:
		switch {
		case b != f.text[f.count]:
		case f.count+1 == len(f.text):
			return append(dst, finish(f.up))
		default:
			g := *f
			g.count++
			return append(dst, &g)
		}
	case kText:
		switch {
		case b != f.text[f.count]:
		case f.count+1 == len(f.text):
			return append(dst, f.up)
		default:
			g := *f
			g.count++
			return append(dst, &g)
		}
	case kEnum:
		if t, ok := enumNext(f.n.enum, f.text, b); ok && enumLeft(f.up, f.n.enum, t) {
			g := *f
			g.text = t
			return append(dst, &g)
		}
		if completes(f) {
			up := finish(f.up)
			if uniqueItem(f.up) {
				i, _ := slices.BinarySearch(f.n.enum, f.text)
				up.seen |= 1 << i // up is finish's copy
			}
			return step(dst, up, b)
		}
	}
	return dst
}

// uniqueItem reports whether up, the frame a value is read under, is an array of
// unique enum values.
func uniqueItem(up *frame) bool { return up.kind == kArray && up.n.unique }

// enumLeft reports whether some value of enum that begins with text may be read under
// up: any, unless up is an array of unique items that has them all already.
func enumLeft(up *frame, enum []string, text string) bool {
	if !uniqueItem(up) {
		return true
	}
	i, _ := slices.BinarySearch(enum, text)
	for ; i < len(enum) && strings.HasPrefix(enum[i], text); i++ {
		if up.seen&(1<<i) == 0 {
			return true
		}
	}
	return false
}

// White space between tokens is at most one space: JSON's readers ignore it, and a
// small model given more (llama.cpp's grammars allow a newline and 20 spaces or tabs)
// fills its output with it — the specd models wrote runs of tabs until max_tokens.
// f.ws counts the run so far.
func white(dst []*frame, f *frame, b byte) []*frame {
	if b != ' ' || f.ws > 0 {
		return dst
	}
	g := *f
	g.ws = 1
	return append(dst, &g)
}

// begin starts a value of n with its first byte b, under up.
func begin(dst []*frame, up *frame, n *node, b byte) []*frame {
	if n.anyOf != nil {
		for _, a := range n.anyOf {
			dst = begin(dst, up, a, b)
		}
		return dst
	}
	if n.enum != nil {
		if t, ok := enumNext(n.enum, "", b); ok && enumLeft(up, n.enum, t) {
			return append(dst, &frame{up: up, n: n, kind: kEnum, text: t})
		}
		return dst
	}
	f := &frame{up: up, n: n}
	switch {
	case b == '{' && n.types&tObject != 0:
		f.kind, f.sub = kObject, objOpen
	case b == '[' && n.types&tArray != 0:
		f.kind, f.sub = kArray, arrOpen
	case b == '"' && n.types&tString != 0:
		f.kind, f.sub = kString, strChar
		if n.str != nil && n.str.auto != nil {
			f.setFS(n.str.auto.start())
		}
	case n.types&(tNumber|tInteger) != 0 && (b == '-' || b >= '0' && b <= '9'):
		f.kind, f.count = kNumber, 1
		switch b {
		case '-':
			f.sub, f.count, f.aux = numMinus, 0, 1
			if n.bounded && n.lo >= 0 {
				return dst // no negative integer is allowed ("-0" is no use)
			}
		case '0':
			f.sub = numZero
		default:
			f.sub, f.seen = numInt, uint64(b-'0')
		}
		if n.bounded && b != '-' && !reachable(f, maxDigits-f.count) || n.real != nil && !realReachable(f) {
			return dst
		}
	case b == 't' && n.types&tBoolean != 0:
		f.kind, f.text, f.count = kLiteral, "true", 1
	case b == 'f' && n.types&tBoolean != 0:
		f.kind, f.text, f.count = kLiteral, "false", 1
	case b == 'n' && n.types&tNull != 0:
		f.kind, f.text, f.count = kLiteral, "null", 1
	default:
		return dst
	}
	return append(dst, f)
}

// pow10 are the powers of ten up to 10^maxDigits.
var pow10 = func() (p [maxDigits + 1]int64) {
	p[0] = 1
	for i := 1; i <= maxDigits; i++ {
		p[i] = 10 * p[i-1]
	}
	return p
}()

// reachable reports whether f, a bounded integer's digits so far, ends within its
// bounds after some number of further digits up to more (none after a lone 0): the
// integers with j more digits lie in [v·10^j, v·10^j + 10^j - 1] (negated after a
// minus), and one of those ranges must meet [lo, hi].
func reachable(f *frame, more int) bool {
	v := int64(f.seen) // at most maxDigits digits
	if f.sub == numZero {
		more = 0
	}
	for j := 0; j <= more; j++ {
		a := v * pow10[j]
		b := a + pow10[j] - 1
		if f.aux == 1 {
			a, b = -b, -a
		}
		if anyMultiple(max(a, f.n.lo), min(b, f.n.hi), f.n.mult) {
			return true
		}
	}
	return false
}

// finish returns up after the value it was reading ended.
func finish(up *frame) *frame {
	if up.kind == kEnd || up.kind == kText {
		return up
	}
	g := *up
	g.ws = 0
	if g.kind == kObject {
		g.sub = objNext
	} else { // kArray
		g.sub = arrNext
		g.count++
	}
	return &g
}

func stepObject(dst []*frame, f *frame, b byte) []*frame {
	switch f.sub {
	case objOpen, objComma:
		switch {
		case isWS(b):
			return white(dst, f, b)
		case b == '"' && keysLeft(f):
			g := *f
			g.sub, g.ws = objKey, 0
			k := &frame{up: &g, n: f.n, kind: kKey}
			if r := f.n.keys; r != nil && r.auto != nil {
				k.setFS(r.auto.start())
			}
			return append(dst, k)
		case b == '}' && f.sub == objOpen && requiredMet(f) && f.count >= f.n.minProps:
			return append(dst, finish(f.up))
		}
	case objColon:
		switch {
		case isWS(b):
			return white(dst, f, b)
		case b == ':':
			g := *f
			g.sub, g.ws = objValue, 0
			return append(dst, &frame{up: &g, n: valueOf(f), kind: kValue})
		}
	case objNext:
		switch {
		case isWS(b):
			return white(dst, f, b)
		case b == ',' && keysLeft(f):
			g := *f
			g.sub, g.ws = objComma, 0
			return append(dst, &g)
		case b == '}' && requiredMet(f) && f.count >= f.n.minProps:
			return append(dst, finish(f.up))
		}
	}
	return dst
}

// keysLeft reports whether the object may take another key.
func keysLeft(f *frame) bool {
	free, only := keyRule(f)
	if free {
		return true
	}
	for i, p := range f.n.props {
		if f.seen&(1<<i) == 0 && (!only || p.required) {
			return true
		}
	}
	return false
}

// keyRule says which keys the object f may take next: any (free), or only its
// properties not yet given, and of those only the required ones where maxProperties
// leaves no room for others.
func keyRule(f *frame) (free, onlyRequired bool) {
	if f.n.maxProps >= 0 {
		missing := 0
		for i, p := range f.n.props {
			if p.required && f.seen&(1<<i) == 0 {
				missing++
			}
		}
		if f.count+missing >= f.n.maxProps {
			return false, true
		}
	}
	return f.n.extra != nil, false
}

func requiredMet(f *frame) bool {
	for i, p := range f.n.props {
		if p.required && f.seen&(1<<i) == 0 {
			return false
		}
	}
	return true
}

// stepKey reads a key of the object f.up. Without other keys allowed, the key must be
// one of the properties not yet present, spelled as escapeKey spells it; with them,
// any string, and a property's name (so spelled) takes its schema.
func stepKey(dst []*frame, f *frame, b byte) []*frame {
	obj := f.up
	if free, only := keyRule(obj); !free {
		n := len(f.text)
		for i, p := range obj.n.props {
			// The text is a slice of the key (no copy per byte: see enumNext).
			if obj.seen&(1<<i) == 0 && (!only || p.required) && len(p.key) > n && p.key[n] == b && p.key[:n] == f.text {
				g := *f
				g.text = p.key[:n+1]
				return append(dst, &g)
			}
		}
		if b == '"' {
			if i := unseen(obj, f.text); i >= 0 && (!only || obj.n.props[i].required) {
				return append(dst, keyed(obj, i))
			}
		}
		return dst
	}
	if b == '"' && f.sub == strChar {
		if r := obj.n.keys; r != nil && !r.ends(f) {
			return dst // propertyNames: the key is not one of its strings
		}
		i := named(obj.n.props, f.text)
		switch {
		case i < 0:
			return append(dst, keyed(obj, -1))
		case obj.seen&(1<<i) == 0:
			return append(dst, keyed(obj, i))
		}
		return dst // a property given twice
	}
	if len(f.text) >= maxKey {
		return dst
	}
	var g *frame
	if r := obj.n.keys; r != nil {
		g = r.byteIn(f, b)
	} else {
		g = stringByte(f, b)
	}
	if g == nil {
		return dst
	}
	g.text += string([]byte{b})
	return append(dst, g)
}

// named returns the index of the property a key written as text (between its
// quotes) names, or -1: the one it decodes to, as a reader of the document sees it
// ("\u0061" is "a", and a U+2028 written as itself is the name compact JSON spells
// "\u2028").
func named(props []prop, text string) int {
	name := text // without a backslash the text is the name
	if strings.Contains(text, `\`) {
		if err := json.Unmarshal([]byte(`"`+text+`"`), &name); err != nil {
			return -1 // the matcher took only valid escapes: not reached
		}
	}
	return slices.IndexFunc(props, func(p prop) bool { return p.name == name })
}

// unseen returns the index of the property spelled key not yet in obj, or -1.
func unseen(obj *frame, key string) int {
	for i, p := range obj.n.props {
		if obj.seen&(1<<i) == 0 && p.key == key {
			return i
		}
	}
	return -1
}

// keyed returns obj after a key: property i (-1: another key).
func keyed(obj *frame, i int) *frame {
	g := *obj
	if i >= 0 {
		g.seen |= 1 << i
	}
	g.count++
	g.aux, g.sub, g.ws = uint8(i+1), objColon, 0
	return &g
}

// valueOf is the schema of the value after obj's key.
func valueOf(obj *frame) *node {
	if obj.aux == 0 {
		return obj.n.extra
	}
	return obj.n.props[obj.aux-1].schema
}

func stepArray(dst []*frame, f *frame, b byte) []*frame {
	switch f.sub {
	case arrOpen, arrComma:
		switch {
		case isWS(b):
			return white(dst, f, b)
		case b == ']' && f.sub == arrOpen && f.n.minItems == 0:
			return append(dst, finish(f.up))
		case f.n.maxItems >= 0 && f.count >= f.n.maxItems:
			return dst
		}
		it := itemAt(f.n, f.count)
		if it == nil {
			return dst
		}
		g := *f
		g.sub, g.ws = arrItem, 0
		return begin(dst, &g, it, b)
	case arrNext:
		switch {
		case isWS(b):
			return white(dst, f, b)
		case b == ',' && (f.n.maxItems < 0 || f.count < f.n.maxItems):
			g := *f
			g.sub, g.ws = arrComma, 0
			return append(dst, &g)
		case b == ']' && f.count >= f.n.minItems:
			return append(dst, finish(f.up))
		}
	}
	return dst
}

// stringByte returns f after b inside a string (b is not its closing quote), or nil
// when b cannot stand there: JSON's escapes, no control characters, and valid UTF-8
// (no overlong forms, no surrogates, nothing above U+10FFFF).
func stringByte(f *frame, b byte) *frame {
	g := *f
	var cp rune
	switch f.sub {
	case strChar:
		cp = rune(b)
		switch {
		case b == '\\':
			g.sub = strEscape
		case b < 0x20:
			return nil
		case b < 0x80:
		case b >= 0xC2 && b <= 0xDF:
			g.sub, g.aux, g.lo, g.hi, cp = strCont, 1, 0x80, 0xBF, rune(b&0x1F)
		case b == 0xE0:
			g.sub, g.aux, g.lo, g.hi, cp = strCont, 2, 0xA0, 0xBF, rune(b&0x0F)
		case b == 0xED:
			g.sub, g.aux, g.lo, g.hi, cp = strCont, 2, 0x80, 0x9F, rune(b&0x0F)
		case b >= 0xE1 && b <= 0xEF:
			g.sub, g.aux, g.lo, g.hi, cp = strCont, 2, 0x80, 0xBF, rune(b&0x0F)
		case b == 0xF0:
			g.sub, g.aux, g.lo, g.hi, cp = strCont, 3, 0x90, 0xBF, rune(b&0x07)
		case b >= 0xF1 && b <= 0xF3:
			g.sub, g.aux, g.lo, g.hi, cp = strCont, 3, 0x80, 0xBF, rune(b&0x07)
		case b == 0xF4:
			g.sub, g.aux, g.lo, g.hi, cp = strCont, 3, 0x80, 0x8F, rune(b&0x07)
		default:
			return nil
		}
	case strEscape:
		g.sub = strChar
		switch b {
		case '"', '\\', '/':
			cp = rune(b)
		case 'b':
			cp = '\b'
		case 'f':
			cp = '\f'
		case 'n':
			cp = '\n'
		case 'r':
			cp = '\r'
		case 't':
			cp = '\t'
		case 'u':
			g.sub, g.aux, cp = strHex, 4, 0
		default:
			return nil
		}
	case strHex:
		var d byte
		switch {
		case b >= '0' && b <= '9':
			d = b - '0'
		case b >= 'a' && b <= 'f':
			d = b - 'a' + 10
		case b >= 'A' && b <= 'F':
			d = b - 'A' + 10
		default:
			return nil
		}
		cp = f.cp()<<4 | rune(d)
		if g.aux--; g.aux == 0 {
			g.sub = strChar
		}
	case strCont:
		if b < f.lo || b > f.hi {
			return nil
		}
		g.lo, g.hi, cp = 0x80, 0xBF, f.cp()<<6|rune(b&0x3F)
		if g.aux--; g.aux == 0 {
			g.sub = strChar
		}
	}
	g.setCP(cp)
	return &g
}

func stepNumber(dst []*frame, f *frame, b byte) []*frame {
	digit := b >= '0' && b <= '9'
	real := f.n.types&tNumber != 0 // else integers only
	exp := real && f.n.real == nil // an exponent: not with bounds
	next := uint8(255)
	switch f.sub {
	case numMinus:
		switch {
		case b == '0':
			next = numZero
		case digit:
			next = numInt
		}
	case numZero, numInt:
		switch {
		case digit && f.sub == numInt:
			next = numInt
		case b == '.' && real:
			next = numDot
		case (b == 'e' || b == 'E') && exp:
			next = numE
		}
	case numDot:
		if digit {
			next = numFrac
		}
	case numFrac:
		switch {
		case digit:
			next = numFrac
		case (b == 'e' || b == 'E') && exp:
			next = numE
		}
	case numE:
		switch {
		case b == '+' || b == '-':
			next = numESign
		case digit:
			next = numExp
		}
	case numESign, numExp:
		if digit {
			next = numExp
		}
	}
	if next != 255 {
		g := *f
		switch {
		case !digit:
			g.count = 0
		case g.count >= maxDigits:
			return dst
		default:
			g.count++
		}
		g.sub = next
		switch {
		case f.n.bounded: // an integer: its digits so far, and one more
			g.seen = f.seen*10 + uint64(b-'0')
			if !reachable(&g, maxDigits-g.count) {
				return dst
			}
		case f.n.real != nil:
			switch {
			case digit && next == numFrac:
				g.x = f.x*10 + uint64(b-'0')
			case digit:
				g.seen = f.seen*10 + uint64(b-'0')
			}
			if !realReachable(&g) {
				return dst
			}
		}
		return append(dst, &g)
	}
	if completes(f) {
		return step(dst, finish(f.up), b)
	}
	return dst
}
