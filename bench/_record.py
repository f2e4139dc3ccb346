"""A bench's measurement as a committed file written by the bench itself (not a bench: `make bench`
skips files starting with ``_``).

Every bench that docs quote takes ``--out docs/bench/<name>.txt``: what it prints still goes to
the terminal, and when it finishes without an error the same lines are written to that file under
a header saying what produced them (command line, commit and whether the tree had uncommitted
changes, start time and wall time, CPU model, its precision flags and the precision ``dtype: auto``
picks there, thread settings, load average at start and end: other processes on the cores make
wall times upper bounds). The file's last line is the bench's own last line, its headline
``name=value``, so a docs page cites the file and quotes that line; ``tests/unit/test_docs_numbers.py``
checks that the quote matches. A bench that fails writes no file: a half measurement is not one.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import platform
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from rso_lib.paths import repo_root
from rso_lib.results import git_commit, machine

#: Header lines start with this, so a reader (and the docs test) can tell them from the output.
HEADER_PREFIX = "# "


def add_out_argument(ap: argparse.ArgumentParser) -> None:
    ap.add_argument(
        "--out",
        type=Path,
        default=None,
        help="also write the output, under a provenance header, to this file (e.g. docs/bench/<name>.txt)",
    )


class _Tee(io.TextIOBase):
    """Writes go to the terminal's stream and to a buffer (the file is written only on success)."""

    def __init__(self, stream):
        self.stream, self.buffer_ = stream, io.StringIO()

    def write(self, s: str) -> int:
        self.stream.write(s)
        return self.buffer_.write(s)

    def flush(self) -> None:
        self.stream.flush()


def _tree_state() -> str:
    commit = git_commit() or "not recorded (no git)"
    try:
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=repo_root(),
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return commit
    return f"{commit} + uncommitted changes" if dirty else commit


def _load() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "not recorded"


def header(argv: list[str], started: float, wall_s: float, load_start: str) -> list[str]:
    """The provenance lines of one finished run (no line of the bench's own output)."""
    host = machine()
    flags = host.get("cpu_flags")
    # the rule of rso_lib.llm.hf.cpu_supports_bf16, read from the same flags the header prints
    auto = "not recorded" if flags is None else ("bf16" if {"avx512_bf16", "amx_bf16"} & set(flags) else "fp32")
    threads = " ".join(f"{k}={os.environ[k]}" for k in ("OMP_NUM_THREADS", "RSO_THREADS") if k in os.environ)
    lines = [
        f"bench output written by the bench itself ({Path(argv[0]).name} --out); not edited by hand",
        f"command: {shlex.join(['python', *argv])}",
        f"commit: {_tree_state()}",
        f"started: {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(started))}; wall {wall_s:.0f} s",
        f"cpu: {host.get('cpu_model', 'not recorded')}; {host.get('cpu_count')} cores; "
        f"flags: {' '.join(flags) if flags else 'not recorded'}; dtype auto = {auto}",
        f"threads: {threads or 'not set'}; load average (1, 5, 15 min) at start {load_start}, at end {_load()}",
        f"python {platform.python_version()}",
    ]
    return [HEADER_PREFIX + line for line in lines]


@contextlib.contextmanager
def recorded(out: Path | None, argv: list[str] | None = None) -> Iterator[None]:
    """Tee stdout; on success write header + output to ``out`` (atomically). ``out=None``: no-op."""
    if out is None:
        yield
        return
    argv = list(sys.argv if argv is None else argv)
    started, t0, load_start = time.time(), time.perf_counter(), _load()
    tee = _Tee(sys.stdout)
    with contextlib.redirect_stdout(tee):
        yield
    body = tee.buffer_.getvalue()
    if not body.strip():
        raise RuntimeError(f"{out}: the bench printed nothing, so there is no measurement to record")
    text = "\n".join(header(argv, started, time.perf_counter() - t0, load_start)) + "\n" + body
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".partial")
    tmp.write_text(text if text.endswith("\n") else text + "\n")
    os.replace(tmp, out)
    print(f"(output recorded in {out})", file=sys.stderr)


def last_line(path: Path) -> str:
    """The headline of a recorded output: its last non-empty line that is not a header line."""
    lines = [x for x in path.read_text().splitlines() if x.strip() and not x.startswith(HEADER_PREFIX)]
    if not lines:
        raise ValueError(f"{path}: no bench output under the header")
    return lines[-1]
