"""The one writer of BENCHMARKS.md: each benchmark owns one section, between
`<!-- NAME:begin (written by WRITER) -->` and `<!-- NAME:end -->`, and replaces it whole.

    python3 scripts/benchmarks.py NAME WRITER < body.md   # from any language (bench.mjs)
    from benchmarks import write_section                  # from Python (sys.path: scripts/)

A section that is not there yet is appended. Everything outside the markers (the page's
introduction, notes written by hand) is left as it is.
"""

import os
import re
import sys

PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "BENCHMARKS.md")


def write_section(name, writer, body, path=PATH):
    """Replaces section `name` with `body` (Markdown, without the markers); returns the
    section as written."""
    if not re.fullmatch(r"[a-z0-9-]+", name):
        raise ValueError(f"section name {name!r}: use a-z, 0-9 and -")
    section = f"<!-- {name}:begin (written by {writer}) -->\n{body.strip()}\n<!-- {name}:end -->\n"
    text = open(path).read() if os.path.exists(path) else "# Benchmarks\n"
    pattern = re.compile(rf"<!-- {name}:begin.*?<!-- {name}:end -->\n?", re.S)
    if pattern.search(text):
        text = pattern.sub(lambda _: section, text, count=1)
    else:
        text = text.rstrip("\n") + "\n\n" + section
    with open(path, "w") as f:
        f.write(text)
    return section


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: python3 scripts/benchmarks.py NAME WRITER < body.md")
    print(write_section(sys.argv[1], sys.argv[2], sys.stdin.read()), end="")


if __name__ == "__main__":
    main()
