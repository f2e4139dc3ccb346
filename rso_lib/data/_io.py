"""Small shared readers: JSON lines and TSV rows with per-line error reporting, file checks.

Fatal vs. non-fatal, the same in every loader of :mod:`rso_lib.data`:

* fatal (:class:`DataError`, nothing returned): the file is missing or empty, or its structure is
  unusable as a whole (a required column is absent from the header, the top-level JSON is of the
  wrong type), or no valid row is left at all.
* non-fatal (:class:`Issue`, loading goes on): one line/row is broken (bad JSON, JSON nested
  deeper than :data:`MAX_JSON_DEPTH`, bytes that are not UTF-8, a field longer than
  :data:`MAX_FIELD_CHARS`, missing or mistyped field: the line is *skipped*), or one field of a
  row is bad (unknown strategy label, malformed dict literal, unresolvable ``@id``: the row is
  *kept* with that field emptied or the raw text left in place). Every Issue names the file, the
  1-based line and the field (or column).
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from rso_lib.data.records import DataError, Issue

#: Deepest JSON nesting a data file may hold. The datasets nest at most 4 levels (a dialogue's
#: turn's field); a bound far below Python's recursion limit keeps every later ``str()``/``repr()``
#: of a parsed value safe, and a deeper line is reported instead of raising ``RecursionError``.
MAX_JSON_DEPTH = 64
#: Longest TSV field accepted (characters). INSPIRED's longest field is a few KiB; ``csv``'s default
#: limit (131,072) raised a bare ``_csv.Error`` with no file or line. A longer field is reported and
#: its row skipped: no utterance, title or literal in these files is a megabyte long.
MAX_FIELD_CHARS = 1_000_000


class BadJSON(ValueError):
    """A JSON text that cannot be used: ``msg`` and the 0-based character offset ``pos`` (or None)."""

    def __init__(self, msg: str, pos: int | None = None):
        self.msg, self.pos = msg, pos
        super().__init__(msg if pos is None else f"{msg} at offset {pos}")


_JSON_BRACKETS = re.compile(r'"(?:[^"\\]++|\\.)*+"|[\[\]{}]')


def _first_too_deep(text: str, limit: int) -> int | None:
    """Offset of the first bracket that opens level ``limit + 1`` (strings skipped), or None."""
    depth = 0
    for m in _JSON_BRACKETS.finditer(text):
        c = m.group()
        if c in "[{":
            depth += 1
            if depth > limit:
                return m.start()
        elif c in "]}":
            depth -= 1
    return None


def nested_deeper_than(obj: Any, limit: int) -> bool:
    """True if ``obj`` (parsed JSON) nests lists/dicts more than ``limit`` levels (no recursion)."""
    stack = [(obj, 1)]
    while stack:
        o, d = stack.pop()
        vals = o.values() if isinstance(o, dict) else o if isinstance(o, list) else None
        if vals is None:
            continue
        if d > limit:
            return True
        stack.extend((v, d + 1) for v in vals if isinstance(v, (dict, list)))
    return False


def parse_json(text: str, max_depth: int | None = MAX_JSON_DEPTH) -> Any:
    """``json.loads(text)``; every way it can fail is a :class:`BadJSON` (never ``RecursionError``
    or the integer-digits ``ValueError``), and so is nesting deeper than ``max_depth``."""
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        raise BadJSON(e.msg, e.pos) from None
    except RecursionError:
        limit = max_depth or MAX_JSON_DEPTH
        raise BadJSON(f"nested deeper than {limit} levels", _first_too_deep(text, limit)) from None
    except ValueError as e:  # an integer of more than sys.get_int_max_str_digits() (4,300) digits
        m = re.search(rf"\d{{{sys.get_int_max_str_digits() + 1},}}", text)
        raise BadJSON(str(e).split(";")[0], m.start() if m else None) from None
    if max_depth is not None and text.count("[") + text.count("{") > max_depth and nested_deeper_than(obj, max_depth):
        raise BadJSON(f"nested deeper than {max_depth} levels", _first_too_deep(text, max_depth))
    return obj


def line_col(text: str, pos: int) -> tuple[int, int]:
    """1-based (line, column) of offset ``pos`` in ``text``."""
    return text.count("\n", 0, pos) + 1, pos - (text.rfind("\n", 0, pos) + 1) + 1


def require_file(path: str | Path, what: str) -> Path:
    """Return ``path`` as a Path; raise :class:`DataError` if it is missing or empty."""
    path = Path(path)
    if not path.is_file():
        raise DataError(
            path,
            f"file not found ({what}); set DATA_DIR / RSO_DATA_DIR or run `python -m rso_lib.data.fetch --dest DIR`",
        )
    if path.stat().st_size == 0:
        raise DataError(path, f"empty file ({what})", line=1)
    return path


def _not_utf8(raw: bytes, e: UnicodeDecodeError) -> str:
    return f"not UTF-8 (byte {raw[e.start]:#04x} at column {e.start + 1})"


def iter_jsonl(path: Path, issues: list[Issue], what: str = "JSON lines") -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line_number, object)`` for each JSON-object line of ``path``.

    Blank lines are ignored; a line that is not UTF-8, not valid JSON, nested deeper than
    :data:`MAX_JSON_DEPTH` or not an object becomes an :class:`Issue` (skipped). Raises
    :class:`DataError` if the file is missing/empty or holds no valid line at all.
    """
    path = require_file(path, what)
    n_ok = 0
    with path.open("rb") as f:  # bytes: one undecodable line is that line's problem, not the file's
        for lineno, raw in enumerate(f, start=1):
            try:
                line = raw.decode("utf-8-sig" if lineno == 1 else "utf-8")
            except UnicodeDecodeError as e:
                issues.append(Issue(str(path), lineno, None, _not_utf8(raw, e), "skipped"))
                continue
            if not line.strip():
                continue
            try:
                obj = parse_json(line)
            except BadJSON as e:
                at = "" if e.pos is None else f" at column {e.pos + 1}"
                issues.append(Issue(str(path), lineno, None, f"broken JSON line: {e.msg}{at}", "skipped"))
                continue
            if not isinstance(obj, dict):
                issues.append(
                    Issue(str(path), lineno, None, f"expected a JSON object, got {type(obj).__name__}", "skipped")
                )
                continue
            n_ok += 1
            yield lineno, obj
    if n_ok == 0:
        raise DataError(path, f"no valid JSON object line ({what})", line=1)


def _physical_lines(f: IO[bytes]) -> Iterator[bytes]:
    """The lines of a binary file without their ends; ``\\r\\n``, ``\\n`` and a lone ``\\r`` each
    end a line, as they did for ``csv`` over a file opened with ``newline=""``."""
    for raw in f:
        body = raw[:-1] if raw.endswith(b"\n") else raw
        if body.endswith(b"\r"):
            body = body[:-1]
        yield from body.split(b"\r")


def iter_text_lines(path: Path, issues: list[Issue]) -> Iterator[tuple[int, str | None]]:
    """``(line_number, text)`` per physical line of ``path`` (a leading BOM dropped); an
    undecodable line is an :class:`Issue` (skipped) and comes as ``(line_number, None)``."""
    with path.open("rb") as f:
        for lineno, raw in enumerate(_physical_lines(f), start=1):
            try:
                yield lineno, raw.decode("utf-8-sig" if lineno == 1 else "utf-8")
            except UnicodeDecodeError as e:
                issues.append(Issue(str(path), lineno, None, _not_utf8(raw, e), "skipped"))
                yield lineno, None


def read_tsv(
    path: str | Path, what: str, issues: list[Issue], required: tuple[str, ...] = ()
) -> tuple[list[str], Iterator[tuple[int, list[str]]]]:
    """Header and rows of a tab-separated file without quoting (INSPIRED's format: a row is a
    line split at tabs, quotes are plain characters).

    Returns ``(header, rows)``: the stripped header names and an iterator of ``(line_number,
    fields)`` over the lines after it, blank ones included (each loader decides about those).
    A line that is not UTF-8 or has a field longer than :data:`MAX_FIELD_CHARS` is an
    :class:`Issue` naming file, line and column and is skipped. Fatal (:class:`DataError`):
    missing/empty file, a header that is blank or not UTF-8, a ``required`` column missing.
    """
    path = require_file(path, what)
    lines = iter_text_lines(path, issues)
    _, first = next(lines, (1, ""))
    if first is None:
        raise DataError(path, f"header {issues.pop().message} ({what})", line=1)
    header = [h.strip() for h in first.split("\t")]
    if not any(header):
        raise DataError(path, f"empty file (no header row; {what})", line=1)
    for c in required:
        if c not in header:
            raise DataError(path, f"missing column {c!r} (header has: {', '.join(header)})", line=1, field=c)

    def rows() -> Iterator[tuple[int, list[str]]]:
        for lineno, text in lines:
            if text is None:  # not UTF-8: the Issue is recorded
                continue
            fields = text.split("\t")
            long = next((k for k, v in enumerate(fields) if len(v) > MAX_FIELD_CHARS), None)
            if long is not None:
                name = header[long] if long < len(header) else f"column {long + 1}"
                issues.append(
                    Issue(
                        str(path),
                        lineno,
                        name,
                        f"field of {len(fields[long]):,} characters, over the bound of {MAX_FIELD_CHARS:,}",
                        "skipped",
                    )
                )
                continue
            yield lineno, fields

    return header, rows()


def read_text_utf8(path: str | Path, what: str) -> str:
    """The whole file as UTF-8 text; undecodable bytes are a :class:`DataError` naming the file,
    the line and the column (not a bare ``UnicodeDecodeError ... position 0``)."""
    path = require_file(path, what)
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        col = e.start - (data.rfind(b"\n", 0, e.start) + 1) + 1
        raise DataError(
            path, f"not UTF-8 text ({what}): byte {data[e.start]:#04x} at column {col}", line=line
        ) from None
