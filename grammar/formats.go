package grammar

// The formats the matcher enforces, each a charRule written by hand from its RFC. Each
// accepts a subset of what its RFC allows, chosen so that the text is also what
// Pydantic, zod and Python's and JavaScript's parsers take, and says which. Any other
// format is an annotation (JSON Schema 2020-12 §7.2: format asserts nothing unless a
// validator opts in) and is ignored.

// formats are the enforced formats, by name.
var formats = map[string]charRule{
	"date-time": dateTime{date: true, time: true},
	"date":      dateTime{date: true},
	"time":      dateTime{time: true},
	"duration":  duration{},
	"uuid":      uuid{},
	"ipv4":      ipv4{},
	"hostname":  hostname{},
	"email":     email{},
	"uri":       uri{},
	"ipv6":      ipv6{},
	// Pydantic's UUID1 … UUID8: the version digit, and RFC 9562's variant, which
	// Python's uuid needs to report a version at all.
	"uuid1": uuid{version: '1'}, "uuid3": uuid{version: '3'}, "uuid4": uuid{version: '4'}, "uuid5": uuid{version: '5'},
	"uuid6": uuid{version: '6'}, "uuid7": uuid{version: '7'}, "uuid8": uuid{version: '8'},
}

// zodPatterns are the regular expressions zod 4's z.toJSONSchema writes beside a format
// (zod.email(), .uuid(), .iso.datetime(), .iso.date(), .ipv4()), each with the automaton
// that accepts its language, or a subset of it that is also within the format. Any
// other pattern beside an enforced format is refused: the pattern's automaton
// (pattern.go) and the format's are not intersected.
var zodPatterns = map[string]map[string]charRule{
	"email": {
		`^(?:[A-Za-z0-9_'+\-]+\.)*[A-Za-z0-9_'+\-]*[A-Za-z0-9_+-]@(?:[A-Za-z0-9][A-Za-z0-9\-]*\.)+[A-Za-z]{2,}$`: email{},
	},
	"uuid": {
		`^([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[1-8][0-9a-fA-F]{3}-[89abAB][0-9a-fA-F]{3}-[0-9a-fA-F]{12}|00000000-0000-0000-0000-000000000000|ffffffff-ffff-ffff-ffff-ffffffffffff)$`: uuid{zod: true},
	},
	"date-time": {
		`^(?:(?:\d\d[2468][048]|\d\d[13579][26]|\d\d0[48]|[02468][048]00|[13579][26]00)-02-29|\d{4}-(?:(?:0[13578]|1[02])-(?:0[1-9]|[12]\d|3[01])|(?:0[469]|11)-(?:0[1-9]|[12]\d|30)|(?:02)-(?:0[1-9]|1\d|2[0-8])))T(?:(?:[01]\d|2[0-3]):[0-5]\d:[0-5]\d(?:\.\d+)?(?:Z))$`: dateTime{date: true, time: true, zOnly: true},
	},
	"date": {
		`^(?:(?:\d\d[2468][048]|\d\d[13579][26]|\d\d0[48]|[02468][048]00|[13579][26]00)-02-29|\d{4}-(?:(?:0[13578]|1[02])-(?:0[1-9]|[12]\d|3[01])|(?:0[469]|11)-(?:0[1-9]|[12]\d|30)|(?:02)-(?:0[1-9]|1\d|2[0-8])))$`: dateTime{date: true},
	},
	"ipv4": {
		`^(?:(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9][0-9]|[0-9])\.){3}(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9][0-9]|[0-9])$`: ipv4{},
	},
}

func digit(r rune) (int, bool) {
	if r >= '0' && r <= '9' {
		return int(r - '0'), true
	}
	return 0, false
}

func isAlpha(r rune) bool { return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' }

func isAlnum(r rune) bool { _, d := digit(r); return d || isAlpha(r) }

func isHex(r rune) bool { return isAlnum(r) && (r <= '9' || r|0x20 <= 'f') }

// dateTime is RFC 3339's full-date ("date"), full-time ("time": with its offset, as
// JSON Schema asks) or date-time: days checked against their month and leap years,
// "T" and "Z" in capitals, seconds to 59 (no leap second), at most maxFrac digits of a
// second (Python's datetime keeps microseconds), offsets "Z" or ±hh:mm (only "Z" where
// zOnly: zod's default).
//
// Its state: the position (below), the year, the month, and the tens digit of the day
// or hour being read, packed.
type dateTime struct{ date, time, zOnly bool }

const (
	maxFrac = 6
	// Positions: 0-3 year, 4 '-', 5-6 month, 7 '-', 8-9 day, 10 'T' (or the end of a
	// date), 11-12 hour, 13 ':', 14-15 minute, 16 ':', 17-18 second, 19 after the
	// seconds, 20 after '.', 21 in the fraction, 22-23 the offset's hour, 24 ':',
	// 25-26 its minute, 27 the end.
	dtEnd = 27
)

type dtState struct {
	pos, year, month, tens, frac int
}

func (s dtState) pack() uint32 {
	return uint32(s.pos) | uint32(s.year)<<5 | uint32(s.month)<<19 | uint32(s.tens)<<23 | uint32(s.frac)<<25
}

func unpackDT(v uint32) dtState {
	return dtState{pos: int(v & 31), year: int(v >> 5 & (1<<14 - 1)), month: int(v >> 19 & 15), tens: int(v >> 23 & 3), frac: int(v >> 25 & 15)}
}

func (d dateTime) start() uint32 {
	if !d.date {
		return dtState{pos: 11}.pack()
	}
	return 0
}

func daysIn(month, year int) int {
	switch month {
	case 2:
		if year%4 == 0 && (year%100 != 0 || year%400 == 0) {
			return 29
		}
		return 28
	case 4, 6, 9, 11:
		return 30
	}
	return 31
}

func (d dateTime) next(v uint32, r rune) (uint32, bool) {
	s := unpackDT(v)
	n, isDigit := digit(r)
	ok := false
	switch s.pos {
	case 0, 1, 2, 3:
		ok, s.year = isDigit, s.year*10+n
	case 4, 7:
		ok = r == '-'
	case 5:
		ok, s.tens = isDigit && n <= 1, n
	case 6:
		ok, s.month = isDigit && (s.tens == 0 && n >= 1 || s.tens == 1 && n <= 2), s.tens*10+n
	case 8:
		ok, s.tens = isDigit && n*10 <= daysIn(s.month, s.year), n
	case 9:
		day := s.tens*10 + n
		ok = isDigit && day >= 1 && day <= daysIn(s.month, s.year)
	case 10:
		ok = r == 'T' && d.time
	case 11, 22:
		ok, s.tens = isDigit && n <= 2, n
	case 12, 23:
		ok = isDigit && (s.tens < 2 || n <= 3)
	case 13, 16, 24:
		ok = r == ':'
	case 14, 17, 25:
		ok = isDigit && n <= 5
	case 15, 18, 26:
		ok = isDigit
	case 19, 21:
		switch {
		case r == '.' && s.pos == 19:
			ok = true
		case isDigit && s.pos == 21:
			ok, s.frac = s.frac < maxFrac, s.frac+1
			s.pos-- // stays in the fraction
		case r == 'Z':
			return dtState{pos: dtEnd}.pack(), true
		case (r == '+' || r == '-') && !d.zOnly:
			s.pos = 21 // on to 22
			ok = true
		}
	case 20:
		ok, s.frac = isDigit, 1
	}
	if !ok {
		return 0, false
	}
	s.pos++
	if s.pos == 10 && !d.time {
		s.pos = dtEnd
	}
	return s.pack(), true
}

func (d dateTime) final(v uint32) bool { return unpackDT(v).pos == dtEnd }

func (d dateTime) rest(v uint32) int {
	p := unpackDT(v).pos
	switch {
	case p == dtEnd:
		return 0
	case p < 10 && !d.time:
		return 10 - p
	case p <= 19:
		return 19 - p + 1
	case p == 20:
		return 2
	case p == 21:
		return 1
	}
	return dtEnd - p
}

// duration is RFC 3339's duration (Appendix A): P, then weeks, or years, months and
// days in that order with none skipped between the first and the last given, and a time
// part after T likewise; whole numbers only, each of at most maxDigits digits.
//
// Its state: the last unit written (below) and the digits of the number being read.
type duration struct{}

const (
	durNone = iota // nothing yet: P comes first
	durP           // after P
	durY           // after a number of years
	durMo          // months
	durD           // days
	durT           // after T
	durH           // hours
	durMi          // minutes
	durS           // seconds
	durW           // weeks
)

func (duration) start() uint32 { return durNone }

// after is the unit a number may be followed by after last: in the date part the
// next one down (years, months, days; or weeks right after P), in the time part too.
func durUnit(last int, r rune) (int, bool) {
	switch {
	case last == durP && r == 'Y', last == durP && r == 'W', last == durP && r == 'M', last == durP && r == 'D':
		return map[rune]int{'Y': durY, 'W': durW, 'M': durMo, 'D': durD}[r], true
	case last == durY && r == 'M':
		return durMo, true
	case last == durMo && r == 'D':
		return durD, true
	case last == durT && r == 'H':
		return durH, true
	case last == durT && r == 'M', last == durH && r == 'M':
		return durMi, true
	case last == durT && r == 'S', last == durMi && r == 'S':
		return durS, true
	}
	return 0, false
}

func (duration) next(v uint32, r rune) (uint32, bool) {
	last, digits := int(v&15), int(v>>4)
	_, isDigit := digit(r)
	switch {
	case last == durNone:
		return durP, r == 'P'
	case isDigit:
		switch last {
		case durP, durY, durMo, durT, durH, durMi:
			if digits < maxDigits {
				return uint32(last) | uint32(digits+1)<<4, true
			}
		}
	case digits > 0:
		if u, ok := durUnit(last, r); ok {
			return uint32(u), true
		}
	case r == 'T':
		switch last {
		case durP, durY, durMo, durD:
			return durT, true
		}
	}
	return 0, false
}

func (duration) final(v uint32) bool {
	switch v & 15 {
	case durNone, durP, durT:
		return false
	}
	return v>>4 == 0
}

func (d duration) rest(v uint32) int {
	switch {
	case v>>4 > 0:
		return 1 // a unit
	case v == durNone:
		return 3 // P1D
	case v == durP || v == durT:
		return 2
	}
	return 0
}

// uuid is RFC 9562's hex-and-hyphens form, either case; with zod, zod's pattern: the
// version 1-8 and the variant 8, 9, a or b, or else the nil or the max UUID; with a
// version, that version and the variant 8, 9, a or b.
//
// Its state: the position (bits 0-5), and for zod the forms ruled out so far (bit 8
// the versioned one, 9 nil, 10 max).
type uuid struct {
	zod     bool
	version rune // the version digit, where one is asked (0: any)
}

func (uuid) start() uint32 { return 0 }

func (u uuid) next(v uint32, r rune) (uint32, bool) {
	pos := int(v & 63)
	switch pos {
	case 8, 13, 18, 23:
		return v + 1, r == '-'
	case 36:
		return 0, false
	}
	if !isHex(r) {
		return 0, false
	}
	switch {
	case u.version == 0:
	case pos == 14 && r != u.version, pos == 19 && !(r == '8' || r == '9' || r|0x20 == 'a' || r|0x20 == 'b'):
		return 0, false
	}
	if u.zod {
		if pos == 14 && (r < '1' || r > '8') || pos == 19 && !(r == '8' || r == '9' || r|0x20 == 'a' || r|0x20 == 'b') {
			v |= 1 << 8
		}
		if r != '0' {
			v |= 1 << 9
		}
		if r != 'f' {
			v |= 1 << 10
		}
		if v&(7<<8) == 7<<8 {
			return 0, false
		}
	}
	return v + 1, true
}

func (uuid) final(v uint32) bool { return v&63 == 36 }
func (uuid) rest(v uint32) int   { return 36 - int(v&63) }

// ipv4 is a dotted quad of decimal numbers 0-255 without leading zeros (RFC 2673's
// dotted-quad, as JSON Schema asks, and zod's pattern).
//
// Its state: the number's index (bits 0-1), its value so far (2-10), digits (11-12).
type ipv4 struct{}

func (ipv4) start() uint32 { return 0 }

func (ipv4) next(v uint32, r rune) (uint32, bool) {
	octet, val, digits := v&3, v>>2&511, v>>11&3
	if n, ok := digit(r); ok {
		switch {
		case digits == 0:
			return octet | uint32(n)<<2 | 1<<11, true
		case val == 0 || val*10+uint32(n) > 255:
			return 0, false
		}
		return octet | (val*10+uint32(n))<<2 | (digits+1)<<11, true
	}
	if r == '.' && digits > 0 && octet < 3 {
		return octet + 1, true
	}
	return 0, false
}

func (ipv4) final(v uint32) bool { return v&3 == 3 && v>>11&3 > 0 }

func (ipv4) rest(v uint32) int {
	n := int(3-v&3) * 2
	if v>>11&3 == 0 {
		n++
	}
	return n
}

// hostname is RFC 1123's: labels of letters, digits and hyphens, 1-63 characters, not
// beginning or ending with a hyphen, separated by dots, 253 characters at most.
//
// Its state: the characters so far (bits 0-8), the label's (9-14), whether the last
// was a hyphen (15), and for email's domain whether a dot came (16) and whether the
// label is letters only (17).
type hostname struct{}

const (
	hostMax  = 253
	labelMax = 63
)

type hostState struct {
	total, label        int
	hyphen, dot, letter bool
}

func (h hostState) pack() uint32 {
	v := uint32(h.total) | uint32(h.label)<<9
	for i, b := range []bool{h.hyphen, h.dot, h.letter} {
		if b {
			v |= 1 << (15 + i)
		}
	}
	return v
}

func unpackHost(v uint32) hostState {
	return hostState{total: int(v & 511), label: int(v >> 9 & 63), hyphen: v&(1<<15) != 0, dot: v&(1<<16) != 0, letter: v&(1<<17) != 0}
}

// step is h after r, and whether r may come (without regard to the room left).
func (h hostState) step(r rune) (hostState, bool) {
	switch {
	case isAlnum(r):
		h.label++
		h.hyphen = false
		h.letter = h.letter && isAlpha(r)
	case r == '-' && h.label > 0:
		h.label++
		h.hyphen, h.letter = true, false
	case r == '.' && h.label > 0 && !h.hyphen:
		h.label, h.dot, h.letter = 0, true, true
		h.total++
		return h, true
	default:
		return h, false
	}
	h.total++
	// A label's last character is not a hyphen: one that fills it is refused.
	return h, h.label < labelMax || h.label == labelMax && !h.hyphen
}

func (hostname) start() uint32 { return hostState{letter: true}.pack() }

func (hostname) next(v uint32, r rune) (uint32, bool) {
	h, ok := unpackHost(v).step(r)
	if !ok || h.total+hostRest(h) > hostMax {
		return 0, false
	}
	return h.pack(), true
}

func hostRest(h hostState) int {
	if h.label == 0 || h.hyphen {
		return 1
	}
	return 0
}

func (hostname) final(v uint32) bool { return hostRest(unpackHost(v)) == 0 }
func (hostname) rest(v uint32) int   { return hostRest(unpackHost(v)) }

// email is a practical subset of RFC 5321's Mailbox: a local part of dot-separated
// runs of letters, digits, '_', '+' and '-' (no quoted strings, 64 characters at most),
// '@', and a domain name of at least two labels (hostname's rules) whose last is two
// letters or more (no address literals). It is within zod's pattern too.
//
// Its state: the local part's characters (bits 0-6), whether its last was a dot or it
// is empty (7), whether the domain has begun (8), then the domain's hostState.
type email struct{}

const localMax = 64

func (email) start() uint32 { return 1 << 7 }

func localChar(r rune) bool { return isAlnum(r) || r == '_' || r == '+' || r == '-' }

func (email) next(v uint32, r rune) (uint32, bool) {
	local, dot := v&127, v&(1<<7) != 0
	if v&(1<<8) == 0 {
		switch {
		case localChar(r) && local < localMax:
			return local + 1, true
		case r == '.' && !dot && local+1 < localMax:
			return local + 1 | 1<<7, true
		case r == '@' && !dot:
			return 1<<8 | hostState{letter: true}.pack()<<9, true
		}
		return 0, false
	}
	h, ok := unpackHost(v >> 9).step(r)
	if !ok || h.total+domainRest(h) > hostMax {
		return 0, false
	}
	return 1<<8 | h.pack()<<9, true
}

// domainRest is the fewest characters that end an email's domain from h: a label if
// none is begun, a dot and a two-letter label unless the last label can end it.
func domainRest(h hostState) int {
	switch {
	case !h.dot && h.label == 0:
		return 4 // a.bc
	case h.dot && h.label == 0:
		return 2
	case h.dot && h.letter:
		return max(0, 2-h.label)
	case h.hyphen:
		return 4
	}
	return 3
}

func (email) final(v uint32) bool { return v&(1<<8) != 0 && domainRest(unpackHost(v>>9)) == 0 }

func (email) rest(v uint32) int {
	if v&(1<<8) != 0 {
		return domainRest(unpackHost(v >> 9))
	}
	if v&(1<<7) != 0 {
		return 6 // a@b.cd after an empty or dotted local part... a, @, and a.bc
	}
	return 5 // @a.bc
}

// uri is a practical subset of RFC 3986's URI: a scheme, "://", a host of unreserved
// characters (letters, digits, '-', '.', '_', '~'; not empty; no user information and
// no IP literal in brackets), an optional port of 1-5 digits, then a path, a query
// after '?' and a fragment after '#' of RFC 3986's characters for them (percent
// escapes included). "mailto:x" and "urn:…", which have no authority, are outside it.
//
// Its state: the part (bits 0-3, below), the port's digits (4-6), the hex digits of a
// percent escape still to come (7-8).
type uri struct{}

const (
	uriScheme0 = iota // the scheme's first letter
	uriScheme         // its other characters, or ':'
	uriSlash1         // the first '/' of "//"
	uriSlash2
	uriHost0 // the host's first character
	uriHost
	uriPort0 // after ':', the port's first digit
	uriPort
	uriPath
	uriQuery
	uriFragment
)

func (uri) start() uint32 { return uriScheme0 }

func unreserved(r rune) bool { return isAlnum(r) || r == '-' || r == '.' || r == '_' || r == '~' }

// pchar reports whether r stands as itself in a path segment (RFC 3986 §3.3, less the
// percent escape): unreserved, sub-delims, ':' and '@'.
func pchar(r rune) bool {
	switch r {
	case '!', '$', '&', '\'', '(', ')', '*', '+', ',', ';', '=', ':', '@':
		return true
	}
	return unreserved(r)
}

func (uri) next(v uint32, r rune) (uint32, bool) {
	part, port, pct := v&15, v>>4&7, v>>7&3
	if pct > 0 {
		if !isHex(r) {
			return 0, false
		}
		return part | (pct-1)<<7, true
	}
	switch part {
	case uriScheme0:
		return uriScheme, isAlpha(r)
	case uriScheme:
		switch {
		case isAlnum(r) || r == '+' || r == '-' || r == '.':
			return uriScheme, true
		case r == ':':
			return uriSlash1, true
		}
	case uriSlash1, uriSlash2:
		return part + 1, r == '/'
	case uriHost0:
		return uriHost, unreserved(r)
	case uriPort0, uriPort:
		if _, ok := digit(r); ok {
			return uriPort | (port+1)<<4, port < 5
		}
	}
	switch {
	case part == uriHost && unreserved(r):
		return uriHost, true
	case part == uriHost && r == ':':
		return uriPort0, true
	case part < uriHost || part == uriPort0:
		return 0, false
	}
	// After the host or the port, in the path, the query or the fragment.
	switch {
	case r == '#':
		return uriFragment, part < uriFragment
	case r == '?' && part >= uriQuery:
		return part, true
	case r == '?':
		return uriQuery, true
	case r == '/':
		return max(part, uriPath), true
	case part < uriPath:
		return 0, false
	case r == '%':
		return part | 2<<7, true
	}
	return part, pchar(r)
}

func (uri) final(v uint32) bool {
	part := v & 15
	return v>>7&3 == 0 && (part == uriHost || part >= uriPort)
}

func (uri) rest(v uint32) int {
	part, pct := v&15, int(v>>7&3)
	switch {
	case pct > 0:
		return pct
	case part <= uriHost0:
		return []int{5, 4, 3, 2, 1}[part] // a://b
	case part == uriPort0:
		return 1
	}
	return 0
}

// ipv6 is RFC 4291's text form (§2.2): eight groups of 1-4 hex digits separated by
// colons, one "::" standing for one or more groups of zeros, and the last two groups
// as a dotted quad (ipv4's); no zone index.
//
// Its state: the phase (bits 0-2, below), the groups before the current one (3-6),
// whether "::" came (7); in a group its digits (8-10), their value read as decimal
// (11-20) and whether they are all decimal digits (21); in the dotted quad, ipv4's state
// (from bit 8).
type ipv6 struct{}

const (
	v6Start    = iota // nothing yet
	v6Lead            // after a leading ':': the second comes
	v6Group           // in a group
	v6Colon           // after a ':' that ended a group
	v6Double          // right after "::"
	v6Quad            // in the dotted quad
	v6MaxGroup = 8
)

type v6State struct {
	phase, groups, digits, dec int
	double, decimal            bool
	quad                       uint32
}

func (s v6State) pack() uint32 {
	v := uint32(s.phase) | uint32(s.groups)<<3
	if s.double {
		v |= 1 << 7
	}
	if s.phase == v6Quad {
		return v | s.quad<<8
	}
	v |= uint32(s.digits)<<8 | uint32(s.dec)<<11
	if s.decimal {
		v |= 1 << 21
	}
	return v
}

func unpackV6(v uint32) v6State {
	s := v6State{phase: int(v & 7), groups: int(v >> 3 & 15), double: v&(1<<7) != 0}
	if s.phase == v6Quad {
		s.quad = v >> 8
		return s
	}
	s.digits, s.dec, s.decimal = int(v>>8&7), int(v>>11&1023), v&(1<<21) != 0
	return s
}

// most is the most groups written out the address may have: eight, seven beside "::".
func (s v6State) most() int {
	if s.double {
		return v6MaxGroup - 1
	}
	return v6MaxGroup
}

func (ipv6) start() uint32 { return v6State{}.pack() }

func (ipv6) next(v uint32, r rune) (uint32, bool) {
	s := unpackV6(v)
	if s.phase == v6Quad {
		q, ok := ipv4{}.next(s.quad, r)
		s.quad = q
		return s.pack(), ok
	}
	d, isDec := digit(r)
	switch {
	case isHex(r) && s.phase != v6Lead:
		if s.phase != v6Group { // a new group
			if s.groups+1 > s.most() {
				return 0, false
			}
			s.phase, s.digits, s.dec, s.decimal = v6Group, 0, 0, true
		}
		if s.digits == 4 {
			return 0, false
		}
		s.digits++
		s.decimal = s.decimal && isDec
		if s.decimal {
			s.dec = s.dec*10 + d
		}
		return s.pack(), true
	case r == ':' && s.phase == v6Start:
		s.phase = v6Lead
		return s.pack(), true
	case r == ':' && (s.phase == v6Lead || s.phase == v6Colon):
		if s.double {
			return 0, false
		}
		s.phase, s.double = v6Double, true
		return s.pack(), true
	case r == ':' && s.phase == v6Group:
		s.groups++
		// Another group must fit, or "::" (which needs none).
		if s.groups+1 > s.most() && (s.double || s.groups > v6MaxGroup-1) {
			return 0, false
		}
		s.phase = v6Colon
		return s.pack(), true
	case r == '.' && s.phase == v6Group:
		// The group was the dotted quad's first number: it and three more take the
		// place of two groups.
		if !s.decimal || s.dec > 255 || s.digits > 1 && s.dec < pow10i(s.digits-1) || s.groups+2 > s.most() || !s.double && s.groups+2 != v6MaxGroup {
			return 0, false
		}
		return v6State{phase: v6Quad, groups: s.groups, double: s.double, quad: 1}.pack(), true
	}
	return 0, false
}

// pow10i is 10^n for small n.
func pow10i(n int) int {
	p := 1
	for range n {
		p *= 10
	}
	return p
}

func (ipv6) final(v uint32) bool { return ipv6{}.rest(v) == 0 }

func (ipv6) rest(v uint32) int {
	s := unpackV6(v)
	switch s.phase {
	case v6Start:
		return 2 // ::
	case v6Lead:
		return 1
	case v6Double:
		return 0
	case v6Colon:
		return 1 // a group, or the second ':'
	case v6Quad:
		return ipv4{}.rest(s.quad)
	}
	if s.double || s.groups+1 == v6MaxGroup {
		return 0
	}
	return 2 // ::
}
