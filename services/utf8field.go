package services

import (
	"fmt"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// maxUTF8Depth bounds how deep invalidUTF8Field follows nested messages; specd's
// messages nest a few levels.
const maxUTF8Depth = 32

// invalidUTF8Field returns the field of the message that b encodes (of type md)
// that holds a string that is not valid UTF-8, spelled as error messages name
// fields: "prompt", "messages[1].content", "tools[0].function.name" (a map's
// entries count as its elements; specd's maps hold no strings). It returns ""
// when it finds none: b does not parse, or the string lies deeper than
// maxUTF8Depth.
//
// Protobuf's decoder refuses such a string without saying where it is; this
// walks the wire bytes again, on that error path only, to say it.
func invalidUTF8Field(b []byte, md protoreflect.MessageDescriptor) string {
	return invalidUTF8In(b, md, 0)
}

func invalidUTF8In(b []byte, md protoreflect.MessageDescriptor, depth int) string {
	seen := map[protowire.Number]int{} // elements of each repeated field so far
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return ""
		}
		b = b[n:]
		fd := md.Fields().ByNumber(num)
		if fd == nil || typ != protowire.BytesType {
			if n = protowire.ConsumeFieldValue(num, typ, b); n < 0 {
				return ""
			}
			b = b[n:]
			continue
		}
		v, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return ""
		}
		b = b[n:]
		name := string(fd.Name())
		if fd.IsList() {
			name = fmt.Sprintf("%s[%d]", name, seen[num])
			seen[num]++
		}
		switch {
		case fd.Kind() == protoreflect.StringKind:
			if !utf8.Valid(v) {
				return name
			}
		case fd.Kind() == protoreflect.MessageKind:
			if depth < maxUTF8Depth {
				if inner := invalidUTF8In(v, fd.Message(), depth+1); inner != "" {
					return name + "." + inner
				}
			}
		}
	}
	return ""
}
