package chat

import (
	"fmt"
	"strings"
	"time"
)

// strftime formats t as Python's datetime.strftime does on glibc in the C locale, for
// the directives of the switch below (those chat templates use, and a few more); a "-"
// flag (%-d) drops the padding, as glibc does. Any other directive is written as it
// is, as glibc leaves unknown ones.
func strftime(t time.Time, format string) string {
	var sb strings.Builder
	for i := 0; i < len(format); i++ {
		c := format[i]
		if c != '%' || i+1 >= len(format) {
			sb.WriteByte(c)
			continue
		}
		start := i
		i++
		pad := true
		if format[i] == '-' && i+1 < len(format) {
			pad = false
			i++
		}
		num := func(n, width int) {
			if pad {
				fmt.Fprintf(&sb, "%0*d", width, n)
			} else {
				fmt.Fprintf(&sb, "%d", n)
			}
		}
		switch format[i] {
		case '%':
			sb.WriteByte('%')
		case 'a':
			sb.WriteString(t.Weekday().String()[:3])
		case 'A':
			sb.WriteString(t.Weekday().String())
		case 'b', 'h':
			sb.WriteString(t.Month().String()[:3])
		case 'B':
			sb.WriteString(t.Month().String())
		case 'd':
			num(t.Day(), 2)
		case 'e':
			if pad {
				fmt.Fprintf(&sb, "%2d", t.Day())
			} else {
				num(t.Day(), 1)
			}
		case 'H':
			num(t.Hour(), 2)
		case 'I':
			num((t.Hour()+11)%12+1, 2)
		case 'j':
			num(t.YearDay(), 3)
		case 'm':
			num(int(t.Month()), 2)
		case 'M':
			num(t.Minute(), 2)
		case 'p':
			if t.Hour() < 12 {
				sb.WriteString("AM")
			} else {
				sb.WriteString("PM")
			}
		case 'S':
			num(t.Second(), 2)
		case 'y':
			num(t.Year()%100, 2)
		case 'Y':
			sb.WriteString(fmt.Sprint(t.Year()))
		case 'Z':
			name, _ := t.Zone()
			sb.WriteString(name)
		default:
			if layout, ok := layouts[format[i]]; ok {
				sb.WriteString(t.Format(layout))
			} else {
				sb.WriteString(format[start : i+1])
			}
		}
	}
	return sb.String()
}

// layouts are the directives that stand for a fixed composition, as Go layouts.
var layouts = map[byte]string{
	'z': "-0700",
	'F': "2006-01-02",
	'T': "15:04:05",
	'D': "01/02/06",
	'x': "01/02/06",
	'X': "15:04:05",
	'c': "Mon Jan _2 15:04:05 2006",
}
