"""Small shared readers: JSON lines with per-line error reporting, file checks.

Fatal vs. non-fatal, the same in every loader of :mod:`rso_lib.data`:

* fatal (:class:`DataError`, nothing returned): the file is missing or empty, or its structure is
  unusable as a whole (a required column is absent from the header, the top-level JSON is of the
  wrong type), or no valid row is left at all.
* non-fatal (:class:`Issue`, loading goes on): one line/row is broken (bad JSON, missing or
  mistyped field: the line is *skipped*), or one field of a row is bad (unknown strategy label,
  malformed dict literal, unresolvable ``@id``: the row is *kept* with that field emptied or the
  raw text left in place). Every Issue names the file, the 1-based line and the field.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rso_lib.data.records import DataError, Issue


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


def iter_jsonl(path: Path, issues: list[Issue], what: str = "JSON lines") -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line_number, object)`` for each JSON-object line of ``path``.

    Blank lines are ignored; a line that is not valid JSON or not an object becomes an
    :class:`Issue` (skipped). Raises :class:`DataError` if the file is missing/empty or holds no
    valid line at all.
    """
    path = require_file(path, what)
    n_ok = 0
    with path.open("rb") as f:  # bytes: one undecodable line is that line's problem, not the file's
        for lineno, raw in enumerate(f, start=1):
            try:
                line = raw.decode("utf-8-sig" if lineno == 1 else "utf-8")
            except UnicodeDecodeError as e:
                issues.append(
                    Issue(
                        str(path),
                        lineno,
                        None,
                        f"not UTF-8 (byte {raw[e.start]:#04x} at column {e.start + 1})",
                        "skipped",
                    )
                )
                continue
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                issues.append(
                    Issue(str(path), lineno, None, f"broken JSON line: {e.msg} at column {e.colno}", "skipped")
                )
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
