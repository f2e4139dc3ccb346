"""Hypothesis settings and byte-level corruptions shared by the fuzz tests.

``make test`` runs every fuzz target with :data:`EXAMPLES` generated examples (default 40) and a
fixed seed (``derandomize``): the same examples on every run, seconds in all. A developer's longer
run::

    RSO_FUZZ_EXAMPLES=5000 pytest tests/integration/test_fuzz_loaders.py tests/integration/test_fuzz_server.py -q
    RSO_FUZZ_EXAMPLES=5000 RSO_FUZZ_RANDOM=1 pytest tests/integration/test_fuzz_*.py -q   # new examples each run
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

EXAMPLES = int(os.environ.get("RSO_FUZZ_EXAMPLES", "40"))
FUZZ = settings(
    max_examples=EXAMPLES,
    derandomize=not os.environ.get("RSO_FUZZ_RANDOM"),
    deadline=None,  # a 1 MB field takes longer than hypothesis' default 200 ms on a busy machine
    database=None,  # nothing written under .hypothesis/: the run is fixed by the seed
    suppress_health_check=list(HealthCheck),
    print_blob=True,
)

#: Bytes that are not UTF-8: a lone 0xff, a truncated 2-byte sequence, an encoded surrogate, a
#: stray continuation byte, a code point over U+10FFFF.
BAD_UTF8 = (b"\xff", b"\xc3", b"\xed\xa0\x80", b"\x80", b"\xf4\x90\x80\x80")
#: JSON values of every type, nested a little (the "wrong type" corruption).
JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats()  # NaN and Infinity too: json.dumps writes them as Python's parser reads them
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)
#: JSON tokens Python's parser accepts but most code does not expect.
ODD_JSON = (b"NaN", b"Infinity", b"-Infinity", b"1e999", b"9" * 5000, b'"\\ud800"', b"[]", b"{}", b"null", b'""')


@dataclass
class Corrupted:
    """A corrupted file: its lines and the indices of the lines the corruption touched (a
    truncation touches the line it cuts and every line after it)."""

    lines: list[bytes]
    touched: set[int]
    how: str


def _insert(line: bytes, pos: int, data: bytes) -> bytes:
    return line[:pos] + data + line[pos:]


@st.composite
def corrupt(draw, lines: list[bytes], json_lines: bool = False) -> Corrupted:
    """One byte-level corruption of ``lines``: bytes that are not UTF-8, a truncation, a huge
    field, deep nesting, a wrong-typed JSON value, random bytes, a deleted span, a duplicated
    line, or an odd JSON token."""
    kinds = ["bad_utf8", "truncate", "huge", "deep", "random", "delete", "duplicate", "odd"]
    kinds += ["wrong_type"] if json_lines else []
    how = draw(st.sampled_from(kinds))
    k = draw(st.integers(0, len(lines) - 1))
    line = lines[k]
    pos = draw(st.integers(0, max(0, len(line) - 1)))
    out = list(lines)
    if how == "truncate":
        total = sum(len(x) for x in lines)
        cut = draw(st.integers(0, total - 1))
        data = b"".join(lines)[:cut]
        out = data.splitlines(keepends=True)
        first = len(out) - 1 if out and not out[-1].endswith(b"\n") else len(out)
        return Corrupted(out, set(range(max(first, 0), len(lines))), how)
    if how == "duplicate":
        out.insert(k, line)
        return Corrupted(out, {k, k + 1}, how)  # both copies are "touched": either may be dropped
    if json_lines and how in ("deep", "odd", "wrong_type"):  # replace one value: the JSON stays valid
        raw = None
        if how == "deep":
            d = draw(st.sampled_from([65, 1_000, 100_000]))
            raw = b"[" * d + b"]" * d
        elif how == "odd":
            raw = draw(st.sampled_from(ODD_JSON))
        out[k] = _replace_value(line, draw, raw)
    elif how == "bad_utf8":
        out[k] = _insert(line, pos, draw(st.sampled_from(BAD_UTF8)))
    elif how == "huge":
        out[k] = _insert(line, pos, b"h" * draw(st.sampled_from([140_000, 1_100_000])))
    elif how == "deep":
        d = draw(st.sampled_from([65, 1_000, 100_000]))
        out[k] = _insert(line, pos, b"[" * d + b"]" * d)
    elif how == "random":
        out[k] = _insert(line, pos, draw(st.binary(min_size=1, max_size=12)))
    elif how == "delete":
        n = draw(st.integers(1, max(1, len(line) // 2)))
        out[k] = line[:pos] + line[pos + n :]
    elif how == "odd":
        out[k] = _insert(line, pos, draw(st.sampled_from(ODD_JSON)))
    touched = {k}
    if not out[k].endswith(b"\n"):  # its line end is gone: it ran into the next line
        touched.add(k + 1)
    return Corrupted(b"".join(out).splitlines(keepends=True), touched, how)


_SENTINEL = "\x00rso-fuzz\x00"


def _replace_value(line: bytes, draw, raw: bytes | None = None) -> bytes:
    """The JSON line with one value (at any depth) replaced by ``raw`` JSON text, or by a random
    value of a random type when ``raw`` is None."""
    try:
        obj = json.loads(line)
    except ValueError:
        return line
    paths = []
    stack = [((), obj)]
    while stack:
        path, node = stack.pop()
        if path:
            paths.append(path)
        items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
        stack.extend(((*path, key), v) for key, v in items)
    if not paths:
        return line
    path = draw(st.sampled_from(sorted(paths, key=repr)))
    parent = obj
    for key in path[:-1]:
        parent = parent[key]
    parent[path[-1]] = _SENTINEL if raw is not None else draw(JSON_VALUES)
    text = (json.dumps(obj) + "\n").encode()
    return text.replace(json.dumps(_SENTINEL).encode(), raw) if raw is not None else text
