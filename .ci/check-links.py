#!/usr/bin/env python3
"""Relative links in the repo's Markdown must resolve: the file exists and,
for `file.md#anchor` or `#anchor`, a heading of that file has that anchor
(GitHub's slug rule). External links (http, https, mailto) are not fetched.
Prints one line per broken link and exits 1 if there is any."""
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def md_files():
    out = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "*.md"],
                         cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return [f for f in out.split("\n") if f and os.path.exists(os.path.join(ROOT, f))]


def slug(heading):
    s = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return s.replace(" ", "-")


def strip_code(text):
    """The text without fenced blocks and inline code (links there are not links)."""
    lines, fence = [], False
    for line in text.split("\n"):
        if line.lstrip().startswith("```"):
            fence = not fence
            lines.append("")
            continue
        lines.append("" if fence else line)
    return "\n".join(lines)


def anchors(path, cache={}):
    if path not in cache:
        seen, out = {}, set()
        for line in strip_code(open(path, encoding="utf-8").read()).split("\n"):
            m = re.match(r"#{1,6} (.*)", line)
            if m:
                s = slug(re.sub(r"\s#+\s*$", "", m.group(1)))
                n = seen.get(s, 0)
                seen[s] = n + 1
                out.add(s if n == 0 else f"{s}-{n}")
        cache[path] = out
    return cache[path]


LINK = re.compile(r"\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")


def check(rel):
    path = os.path.join(ROOT, rel)
    text = re.sub(r"`[^`\n]*`", "", strip_code(open(path, encoding="utf-8").read()))
    bad = []
    for m in LINK.finditer(text):
        target = m.group(1)
        if re.match(r"[a-z][a-z0-9+.-]*:", target):
            continue
        file_part, _, anchor = target.partition("#")
        dest = os.path.normpath(os.path.join(os.path.dirname(path), file_part)) if file_part else path
        line = text.count("\n", 0, m.start()) + 1
        if not os.path.exists(dest):
            bad.append(f"{rel}:{line}: `{target}`: no such file")
        elif anchor and dest.endswith(".md") and anchor not in anchors(dest):
            bad.append(f"{rel}:{line}: `{target}`: no heading with anchor `#{anchor}`")
    return bad


def main():
    files = md_files()
    bad = [b for f in files for b in check(f)]
    for b in bad:
        print(b)
    print(f"links: {len(files)} Markdown files checked, {len(bad)} broken link(s)")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
