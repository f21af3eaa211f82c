"""Code on the page: satlib's own source, whole or as an excerpt, never a copy.

    print(source(SATLoss.forward))                       # the function as it runs, dedented
    print(excerpt(run_epoch, omit={"if ddp.enabled": "several processes: add up every rank's sums"}))

`excerpt` leaves out whole statements (an `if` with its body, a `with` block) and puts one line in their
place, `... # <why>`, at their indentation, so a reader sees where something was left out and what it
does. A statement to leave out is named by how its first line starts; a name that matches no statement
raises, so a chapter whose excerpt no longer fits the code stops instead of printing something else.
"""

from __future__ import annotations

import ast
import inspect
import textwrap
from collections.abc import Mapping


def source(obj: object) -> str:
    """`obj`'s source (a function, method or class), dedented."""
    return textwrap.dedent(inspect.getsource(obj))


def excerpt(obj: object, omit: Mapping[str, str]) -> str:
    """`obj`'s dedented source with every statement whose first line starts with a key of `omit` replaced by
    `... # omit[key]` at the statement's indentation. Raises ValueError for a key that matches no statement."""
    text = source(obj)
    lines = text.splitlines()
    spans: list[tuple[int, int, str]] = []  # (first, last) line indices, 0-based inclusive, and the note
    matched = set()
    for node in ast.walk(ast.parse(text)):
        if not isinstance(node, ast.stmt) or isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        first = lines[node.lineno - 1].strip()
        for start, note in omit.items():
            if first.startswith(start):
                spans.append((node.lineno - 1, node.end_lineno - 1, note))
                matched.add(start)
    missing = [start for start in omit if start not in matched]
    if missing:
        raise ValueError(f"{getattr(obj, '__qualname__', obj)}: no statement starts with {missing}")
    kept, skip_to = [], -1
    for first, last, note in sorted(spans):
        if first <= skip_to:  # inside a statement left out already
            continue
        kept.append((first, last, note))
        skip_to = last
    out, index = [], 0
    for first, last, note in kept:
        out += lines[index:first]
        indent = lines[first][:len(lines[first]) - len(lines[first].lstrip())]
        out.append(f"{indent}...  # {note}")
        index = last + 1
    out += lines[index:]
    return "\n".join(out) + "\n"
