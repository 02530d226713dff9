#!/usr/bin/env python3
"""Lists the function definitions under a folder (default src/) longer than N lines (default 80),
longest first, and exits 1 when there is one.

Usage: scripts/function_lengths.py [N] [FOLDER]

A definition starts at a line indented 0 or 2 spaces (a free function, or a method defined in its
class body) that is not a type, namespace or variable declaration, and ends at the "}" with the
same indentation. Lambdas count as part of the function that holds them. The code follows
.clang-format, so this simple reading is exact enough to enforce the limit.
"""
import os, re, sys
limit = int(sys.argv[1]) if len(sys.argv) > 1 else 80
root = sys.argv[2] if len(sys.argv) > 2 else 'src'
out = []
skip = re.compile(r'^(namespace|struct|class|enum|union|using|template|static_assert|extern|#|//|}|typedef)')
for d, _, fs in os.walk(root):
    for f in fs:
        if not f.endswith(('.cc', '.h')): continue
        p = os.path.join(d, f)
        lines = open(p, errors='replace').read().split('\n')
        i = 0
        while i < len(lines):
            l = lines[i]
            ind = len(l) - len(l.lstrip(' '))
            body = l[ind:]
            if l and ind in (0, 2) and not skip.match(body) and '(' in body and not re.match(r'(if|for|while|switch|return|case|else|do)\b', body):
                # the signature runs until a line ending in "{" (a definition) or ";" (a declaration)
                j = i
                while j < len(lines) and not lines[j].rstrip().endswith(('{', ';')): j += 1
                if j < len(lines) and lines[j].rstrip().endswith('{') and '=' not in lines[i].split('(')[0]:
                    k = j + 1
                    while k < len(lines) and not lines[k].startswith(' ' * ind + '}'): k += 1
                    n = k - i + 1
                    if n > limit: out.append((n, p, i + 1, l.strip()[:100]))
                    i = k + 1
                    continue
                i = j + 1
                continue
            i += 1
for n, p, ln, name in sorted(out, reverse=True):
    print(f'{n:4d} {p}:{ln} {name}')
sys.exit(1 if out else 0)
