#!/usr/bin/env python3
"""Writes fold.tsv: for each character X that has a case (or that Python's re pairs
with another under re.IGNORECASE), the characters with a case that Python's
re.fullmatch takes for (?i)[X] without re.ASCII: X (hex), a tab, those characters
(hex) separated by spaces. A negated class (?i)[^X] must leave every one of them out.
Run with the Python whose re the test should follow (3.11.7 wrote the file)."""
import re
import sys


def cased(c):
    s = chr(c)
    return s.lower() != s or s.upper() != s or s.casefold() != s or s.title() != s


def main():
    chars = sorted({c for c in range(0x30000) if not 0xD800 <= c <= 0xDFFF and cased(c)} |
                   {0x131, 0x130, 0x17F, 0x3C2, 0x345, 0x1FBE})
    out = sys.stdout
    out.write("# made by fold.py with Python %s\n" % sys.version.split()[0])
    for x in chars:
        r = re.compile("(?i)[" + re.escape(chr(x)) + "]")
        out.write("%x\t%s\n" % (x, " ".join("%x" % c for c in chars if r.fullmatch(chr(c)))))


if __name__ == "__main__":
    main()
