"""Where things live: the data directory (a parameter, never the repository), run outputs.

* data: ``DATA_DIR`` notebook parameter, else the ``RSO_DATA_DIR`` environment variable.
* ``runs/<profile>/``: executed notebooks, transcripts, checkpoints, caches (git-ignored).
* ``results/<profile>/``: tables (CSV, Markdown, LaTeX) and metric JSON.
* ``figures/<profile>/``: PNG + PDF.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

_PKG_ROOT = Path(__file__).resolve().parent.parent


#: A profile names folders (runs/<profile>/, results/<profile>/): plain names only, no paths.
PROFILE_NAME = re.compile(r"^[A-Za-z0-9_-]+$")


class MissingDataDirError(FileNotFoundError):
    pass


def repo_root() -> Path:
    """The checkout root: ``$RSO_ROOT`` if set, else the folder holding ``rso_lib`` (editable
    install), else the current directory."""
    env = os.environ.get("RSO_ROOT")
    if env:
        return Path(env).resolve()
    if (_PKG_ROOT / "pyproject.toml").exists():
        return _PKG_ROOT
    return Path.cwd()


def data_dir(param: str | os.PathLike | None = None) -> Path:
    """Resolve the data directory from the ``DATA_DIR`` parameter or ``$RSO_DATA_DIR``.

    Relative paths are taken from the repository root (so notebooks run from ``notebooks/`` and
    ``make`` run from the root agree)."""
    raw = str(param) if param not in (None, "") else os.environ.get("RSO_DATA_DIR", "")
    if not raw:
        raise MissingDataDirError(
            "no data directory: set the DATA_DIR parameter or the RSO_DATA_DIR environment variable "
            "(e.g. RSO_DATA_DIR=../shared/data), or run `python -m rso_lib.data.fetch --dest DIR` "
            "to download the official files"
        )
    p = Path(raw).expanduser()
    if not p.is_absolute():
        p = (repo_root() / p).resolve()
    if not p.is_dir():
        raise MissingDataDirError(f"data directory {p} does not exist (from DATA_DIR / RSO_DATA_DIR = {raw!r})")
    return p


def _sub(kind: str, profile: str) -> Path:
    p = repo_root() / kind / profile
    p.mkdir(parents=True, exist_ok=True)
    return p


def run_dir(profile: str) -> Path:
    return _sub("runs", profile)


def results_dir(profile: str) -> Path:
    return _sub("results", profile)


def figures_dir(profile: str) -> Path:
    return _sub("figures", profile)


def temp_sibling(path: str | os.PathLike) -> Path:
    """A unique temporary name beside ``path`` for an atomic write (write it, then ``os.replace``):
    pid + random suffix, so two processes writing the same file never share a temp file."""
    import secrets

    p = Path(path)
    return p.with_name(f".{p.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
