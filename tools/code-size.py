#!/usr/bin/env python3
"""Lists Rust files over 800 lines and functions over 70 lines (STYLE.md).

Usage: tools/code-size.py [DIR ...]   (default: crates tests)
A function is measured from its `fn` line to the line of its closing brace,
found by counting braces outside strings, chars and comments (good enough
for this code base). Exits 1 if anything is over a limit.
"""
import os
import re
import sys

FILE_MAX = 800
FN_MAX = 70
FN_START = re.compile(r'^\s*(pub(\([^)]*\))?\s+)?(async\s+)?(const\s+)?(unsafe\s+)?fn\s+(\w+)')


def strip(line, in_block):
    """The line without strings, chars and comments; whether a block comment continues."""
    out, i = [], 0
    while i < len(line):
        if in_block:
            end = line.find('*/', i)
            if end < 0:
                return ''.join(out), True
            i, in_block = end + 2, False
            continue
        c = line[i]
        if line.startswith('//', i):
            break
        if line.startswith('/*', i):
            in_block, i = True, i + 2
            continue
        if c == '"':
            j = i + 1
            while j < len(line) and line[j] != '"':
                j += 2 if line[j] == '\\' else 1
            i = j + 1
            continue
        if c == "'" and re.match(r"'(\\.|[^\\'])'", line[i:]):
            i += len(re.match(r"'(\\.|[^\\'])'", line[i:]).group(0))
            continue
        out.append(c)
        i += 1
    return ''.join(out), in_block


def check(path):
    lines = open(path, encoding='utf-8').read().split('\n')
    problems = []
    if len(lines) > FILE_MAX:
        problems.append(f'{path}: {len(lines)} lines (limit {FILE_MAX})')
    in_block = False
    stack = []  # (name, start line, depth at start)
    depth = 0
    pending = None
    for n, raw in enumerate(lines, 1):
        code, in_block = strip(raw, in_block)
        m = FN_START.match(code)
        if m and pending is None:
            pending = (m.group(6), n)
        for c in code:
            if c == '{':
                depth += 1
                if pending is not None:
                    stack.append((pending[0], pending[1], depth))
                    pending = None
            elif c == '}':
                if stack and stack[-1][2] == depth:
                    name, start, _ = stack.pop()
                    length = n - start + 1
                    if length > FN_MAX:
                        problems.append(f'{path}:{start}: fn {name} is {length} lines (limit {FN_MAX})')
                depth -= 1
            elif c == ';' and pending is not None:
                pending = None
    return problems


def main():
    roots = sys.argv[1:] or ['crates', 'tests']
    problems = []
    for root in roots:
        for dirpath, _, files in os.walk(root):
            if '/target' in dirpath:
                continue
            for name in sorted(files):
                if name.endswith('.rs'):
                    problems.extend(check(os.path.join(dirpath, name)))
    print('\n'.join(problems) if problems else 'every file and function is within its limit')
    return 1 if problems else 0


if __name__ == '__main__':
    sys.exit(main())
