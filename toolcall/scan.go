package toolcall

import "fmt"

// maxDepth is how deeply a call object's members may nest containers: encoding/json's
// limit (10000) on a member's value, which is what Parse decodes, plus the call object.
const maxDepth = 10000 + 1

// scanState is where a scanner is in the JSON text.
type scanState uint8

const (
	sValue      scanState = iota // a value is expected
	sFirstValue                  // after '[': a value or ']'
	sFirstKey                    // after '{': a key or '}'
	sKey                         // after ',' in an object: a key
	sColon                       // after a key: ':'
	sAfter                       // after a value in a container: ',' or its close
	sString                      // in a string
	sEscape                      // after '\' in a string
	sHex                         // in the hex digits of \u
	sMinus                       // after a number's '-'
	sZero                        // after a number's leading '0'
	sInt                         // in a number's integer digits
	sDot                         // after a number's '.'
	sFrac                        // in a number's fraction digits
	sE                           // after a number's 'e'
	sESign                       // after the exponent's sign
	sExp                         // in the exponent's digits
	sLiteral                     // in true, false or null
	sDone                        // the value has ended
)

// scanner checks one JSON value a byte at a time, by RFC 8259's grammar as
// encoding/json reads it (any byte from 0x20 up inside strings, invalid UTF-8
// included), and tells its caller what each byte is. The zero value expects a value.
type scanner struct {
	stack []byte    // the open containers, '{' or '['
	state scanState //
	key   bool      // the string being read is an object's key
	lit   string    // sLiteral: the bytes the literal still needs
	hex   int       // sHex: the hex digits still needed
}

// scanStep is what a byte was to a scanner.
type scanStep struct {
	space    bool // white space between tokens
	key      bool // a byte of an object's key, its quotes included
	keyEnd   bool // the key's closing quote
	punct    bool // a ':' or ',' between a container's members
	ended    bool // a value ended with this byte
	numEnded bool // a number ended just before this byte, which is not part of it
}

// depth is the number of containers open.
func (s *scanner) depth() int { return len(s.stack) }

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

// step reads the next byte c.
func (s *scanner) step(c byte) (scanStep, error) {
	var r scanStep
	switch s.state {
	case sValue, sFirstValue:
		if isSpace(c) {
			r.space = true
			return r, nil
		}
		if c == ']' && s.state == sFirstValue {
			return s.close(r)
		}
		return r, s.begin(c)
	case sFirstKey, sKey:
		switch {
		case isSpace(c):
			r.space = true
		case c == '}' && s.state == sFirstKey:
			return s.close(r)
		case c == '"':
			s.state, s.key, r.key = sString, true, true
		default:
			return r, s.fail(c, "looking for an object key")
		}
		return r, nil
	case sColon:
		switch {
		case isSpace(c):
			r.space = true
		case c == ':':
			s.state, r.punct = sValue, true
		default:
			return r, s.fail(c, "after an object key")
		}
		return r, nil
	case sAfter:
		top := s.stack[len(s.stack)-1]
		switch {
		case isSpace(c):
			r.space = true
		case c == ',':
			s.state, r.punct = sValue, true
			if top == '{' {
				s.state = sKey
			}
		case c == '}' && top == '{', c == ']' && top == '[':
			return s.close(r)
		default:
			return r, s.fail(c, "after a value")
		}
		return r, nil
	case sString:
		r.key = s.key
		switch {
		case c == '"':
			if s.key {
				s.key, r.keyEnd, s.state = false, true, sColon
			} else {
				s.end(&r)
			}
		case c == '\\':
			s.state = sEscape
		case c < 0x20:
			return r, s.fail(c, "in a string")
		}
		return r, nil
	case sEscape:
		r.key = s.key
		switch c {
		case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			s.state = sString
		case 'u':
			s.state, s.hex = sHex, 4
		default:
			return r, s.fail(c, "in a string escape")
		}
		return r, nil
	case sHex:
		r.key = s.key
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return r, s.fail(c, "in a \\u escape")
		}
		if s.hex--; s.hex == 0 {
			s.state = sString
		}
		return r, nil
	case sMinus:
		switch {
		case c == '0':
			s.state = sZero
		case '1' <= c && c <= '9':
			s.state = sInt
		default:
			return r, s.fail(c, "in a number")
		}
		return r, nil
	case sZero, sInt:
		switch {
		case '0' <= c && c <= '9' && s.state == sInt:
		case c == '.':
			s.state = sDot
		case c == 'e' || c == 'E':
			s.state = sE
		default:
			return s.endNumber(c)
		}
		return r, nil
	case sDot, sESign:
		if c < '0' || c > '9' {
			return r, s.fail(c, "in a number")
		}
		if s.state == sDot {
			s.state = sFrac
		} else {
			s.state = sExp
		}
		return r, nil
	case sFrac:
		switch {
		case '0' <= c && c <= '9':
		case c == 'e' || c == 'E':
			s.state = sE
		default:
			return s.endNumber(c)
		}
		return r, nil
	case sE:
		switch {
		case c == '+' || c == '-':
			s.state = sESign
		case '0' <= c && c <= '9':
			s.state = sExp
		default:
			return r, s.fail(c, "in a number's exponent")
		}
		return r, nil
	case sExp:
		if '0' <= c && c <= '9' {
			return r, nil
		}
		return s.endNumber(c)
	case sLiteral:
		if c != s.lit[0] {
			return r, s.fail(c, "in a literal")
		}
		if s.lit = s.lit[1:]; s.lit == "" {
			s.end(&r)
		}
		return r, nil
	}
	// sDone
	if isSpace(c) {
		r.space = true
		return r, nil
	}
	return r, s.fail(c, "after the value")
}

// begin starts the value whose first byte is c.
func (s *scanner) begin(c byte) error {
	switch {
	case c == '{' || c == '[':
		if len(s.stack) == maxDepth {
			return fmt.Errorf("JSON nested more than %d deep", maxDepth-1)
		}
		s.stack = append(s.stack, c)
		s.state = sFirstKey
		if c == '[' {
			s.state = sFirstValue
		}
	case c == '"':
		s.state = sString
	case c == '-':
		s.state = sMinus
	case c == '0':
		s.state = sZero
	case '1' <= c && c <= '9':
		s.state = sInt
	case c == 't':
		s.state, s.lit = sLiteral, "rue"
	case c == 'f':
		s.state, s.lit = sLiteral, "alse"
	case c == 'n':
		s.state, s.lit = sLiteral, "ull"
	default:
		return s.fail(c, "looking for a value")
	}
	return nil
}

// close ends the innermost container.
func (s *scanner) close(r scanStep) (scanStep, error) {
	s.stack = s.stack[:len(s.stack)-1]
	s.end(&r)
	return r, nil
}

// end notes that a value has ended.
func (s *scanner) end(r *scanStep) {
	r.ended = true
	s.state = sAfter
	if len(s.stack) == 0 {
		s.state = sDone
	}
}

// endNumber ends the number that c follows, and reads c.
func (s *scanner) endNumber(c byte) (scanStep, error) {
	var r scanStep
	s.end(&r)
	next, err := s.step(c)
	next.numEnded = true
	return next, err
}

// fail is the error for c, unexpected in context.
func (s *scanner) fail(c byte, context string) error {
	return fmt.Errorf("invalid character %q %s", c, context)
}
