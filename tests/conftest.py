"""Shared pytest fixtures.

``data_dir``: the real data directory ($RSO_DATA_DIR, else ../shared/data next to the repository
root); tests that need it are skipped with the reason when it is absent.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from repo_paths import REPO_ROOT


@pytest.fixture(scope="session")
def data_dir() -> Path:
    raw = os.environ.get("RSO_DATA_DIR") or "../shared/data"
    p = Path(raw).expanduser()
    if not p.is_absolute():
        p = (REPO_ROOT / p).resolve()
    if not p.is_dir():
        pytest.skip(
            f"real data directory not found: {p} (set RSO_DATA_DIR to the data directory, "
            "e.g. RSO_DATA_DIR=../shared/data, or fetch it with `python -m rso_lib.data.fetch --dest DIR`)"
        )
    return p
