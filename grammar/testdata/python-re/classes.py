#!/usr/bin/env python3
"""Writes classes.tsv: for each one-character pattern below, the code points Python's
re.fullmatch takes both with and without re.ASCII, as ranges "lo-hi" (hex), one
pattern a line: the pattern (a JSON string), a tab, the ranges separated by spaces.
Run with the Python whose re the test should follow (3.11.7 wrote the file)."""
import json
import re
import sys

PATTERNS = [
    r"\d", r"\w", r"\s", r"\D", r"\W", r"\S", r".", r"(?s).", r"[^\s\w]", r"[^\d]",
    r"[^\W\d_]", r"(?a)\W", r"(?i)[^a-z]", r"(?i)[^k]", r"(?i)[a-zµ]", r"(?i)[^\dµσs]",
    r"(?i)[^\u0130\u0131]", r"(?i)k", r"(?i)[^ǅ]", r"(?i)\W",
]


def main():
    out = sys.stdout
    out.write("# made by classes.py with Python %s\n" % sys.version.split()[0])
    for p in PATTERNS:
        uni, asc = re.compile(p), re.compile(p, re.ASCII)
        ranges, start = [], None
        for c in range(0x110001):
            ok = c < 0x110000 and not 0xD800 <= c <= 0xDFFF and bool(uni.fullmatch(chr(c))) and bool(asc.fullmatch(chr(c)))
            if ok and start is None:
                start = c
            if not ok and start is not None:
                ranges.append("%x-%x" % (start, c - 1))
                start = None
        out.write(json.dumps(p) + "\t" + " ".join(ranges) + "\n")


if __name__ == "__main__":
    main()
