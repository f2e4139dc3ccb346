"""A run's results as one Markdown page: ``docs/results/<profile>.md`` plus its figures.

    python -m rso_lib.report --profile smoke                  # after `make reproduce`
    python -m rso_lib.report --profile cpu --root /tmp/out    # a chain run with RSO_ROOT=/tmp/out

Everything on the page is read from the run's output (``results/<profile>/*.md`` tables, their
``.meta.json`` provenance, ``figures/<profile>/*.png`` and the chain log ``chain.json``); nothing
is typed by hand. A table the run did not write is listed as "not run"; a provenance field the
meta files do not hold is reported as not recorded, never filled in. ``rso_lib.run`` calls this at
the end of a chain, so the page of a finished run is always up to date.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rso_lib.paths import PROFILE_NAME, repo_root
from rso_lib.results import git_commit


@dataclass(frozen=True)
class Section:
    title: str
    notebook: str
    tables: tuple[str, ...]
    figures: tuple[str, ...] = ()


#: The paper's artefacts in the paper's order, each with the notebook that writes it. A table or
#: figure of the run that is not named here still appears, under "Other tables / figures".
SECTIONS = (
    Section(
        "Table II: dataset statistics",
        "01_data_prep",
        ("table2_datasets", "table2_splits", "strategy_distribution_inspired"),
        ("strategy_distribution_inspired",),
    ),
    Section("Planner SFT", "02_sft", ("sft_history", "sft_metrics"), ("sft_curves", "sft_confusion")),
    Section("PLM baselines (BARCOR, UniCRS) training", "02_plm_baselines", ("plm_baselines",)),
    Section("Planner RL log", "03_rl", ("rl_log",), ("rl_curves",)),
    Section("Table III: systems compared", "04_eval_tables", ("table_iii",)),
    Section("Table IV: dialogue quality", "04_eval_tables", ("table_iv",), ("table_iv_cis",)),
    Section("Table V: recommendation accuracy", "04_eval_tables", ("table_v",), ("table_v_cis",)),
    Section("Fig. 6: case study", "04_eval_tables", (), ("fig6_case_study",)),
    Section(
        "Fig. 3: strategy distribution",
        "05_strategy_distribution",
        ("fig3_strategy_shares", "fig3_strategy_entropy", "rl_seeds_fig3", "fig3_strategy_turns"),
        ("fig3_strategy_distribution",),
    ),
    Section(
        "Fig. 5: ablations",
        "06_ablations",
        ("fig5_ablations", "fig5_ablation_metrics", "rl_seeds_fig5"),
        ("fig5_ablations",),
    ),
    Section("Fig. 4: backbone scale", "07_scale", ("fig4_scale",), ("fig4_scale",)),
    Section("Validity card", "validity", ("validity",), ("validity",)),
    Section("Claims: does this run support the paper?", "09_claims", ("claims",)),
    Section(
        "Per-dialogue values",
        "04-07",
        ("per_dialogue_main", "per_dialogue_ablations", "per_dialogue_rl_seeds", "per_dialogue_scale"),
    ),
)

#: Tables longer than this are cut on the page (the full CSV stays in results/<profile>/).
MAX_ROWS = 40


def _read_meta(results: Path) -> dict[str, dict[str, Any]]:
    """``{table: meta}`` for every ``<table>.meta.json``; an unreadable file is kept as an error
    entry so the page says so."""
    out = {}
    for p in sorted(results.glob("*.meta.json")):
        name = p.name[: -len(".meta.json")]
        try:
            out[name] = json.loads(p.read_text())
        except (OSError, ValueError) as exc:
            out[name] = {"_error": f"{p.name}: {exc}"}
    return out


def _distinct(metas: dict[str, dict], field: str) -> list[tuple[Any, list[str]]]:
    """The distinct values of ``field`` over the meta files, each with the tables that hold it
    (tables without the field are left out)."""
    groups: list[tuple[Any, list[str]]] = []
    for table, meta in metas.items():
        if field not in meta:
            continue
        for value, tables in groups:
            if value == meta[field]:
                tables.append(table)
                break
        else:
            groups.append((meta[field], [table]))
    return groups


def _missing(field: str, metas: dict[str, dict]) -> str:
    if not metas:
        return "not recorded (no `.meta.json` in the results directory)"
    return f"not recorded (no `{field}` field in any of the {len(metas)} `.meta.json` files)"


def _per_group(groups: list[tuple[Any, list[str]]], fmt) -> list[str]:
    if len(groups) == 1:
        return [fmt(groups[0][0])]
    return [f"{fmt(v)} (tables: {', '.join(t)})" for v, t in groups]


def _fmt_host(host: Any) -> str:
    if not isinstance(host, dict):
        return f"`{host}`"
    model = host.get("cpu_model", "CPU model not recorded")
    flags = host.get("cpu_flags")
    flag_txt = ", ".join(flags) if flags else ("none of avx2/avx512/bf16/amx" if flags == [] else "flags not recorded")
    return f"{model}; {host.get('cpu_count', '?')} logical CPUs; {host.get('machine', '?')}; flags: {flag_txt}"


def _precision(fingerprint: str) -> str:
    """The dtype field of an hf/vllm fingerprint (``model|dtype|ctx=...``), else "not recorded"."""
    parts = str(fingerprint).split("|")
    dtypes = [p for p in parts[1:] if p in {"float32", "bfloat16", "float16", "auto"}]
    return dtypes[0] if dtypes else "not recorded"


def _fmt_roles(roles: Any) -> list[str]:
    if not isinstance(roles, dict):
        return [f"`{roles}`"]
    rows = ["| role | backend | model | precision |", "|---|---|---|---|"]
    for role, d in sorted(roles.items()):
        d = d if isinstance(d, dict) else {}
        fp = d.get("fingerprint", "")
        rows.append(
            f"| {role} | {d.get('backend', 'not recorded')} | {d.get('model', 'not recorded')} | {_precision(fp)} |"
        )
    return rows


def _fmt_seconds(s: float) -> str:
    m, sec = divmod(round(float(s)), 60)
    return f"{m} min {sec} s" if m else f"{sec} s"


def _wall_time(chain: dict | None, chain_path: Path) -> list[str]:
    if chain is None:
        return [f"- Wall time: not recorded (no `{chain_path.name}` chain log; the chain was not run by `rso_lib.run`)"]
    nbs = chain.get("notebooks", [])
    total = sum(float(n.get("seconds", 0)) for n in nbs)
    out = [
        f"- Wall time: {_fmt_seconds(total)} over {len(nbs)} notebooks (sum of per-notebook times of `{chain_path.name}`)"
    ]
    for n in nbs:
        earlier = f", earlier run at {str(n['git_commit'])[:12]}" if n.get("earlier_run") else ""
        out.append(f"  - {n.get('notebook', '?')}: {_fmt_seconds(n.get('seconds', 0))}{earlier}")
    return out


def _header(profile: str, metas: dict[str, dict], chain: dict | None, chain_path: Path) -> list[str]:
    lines = [
        f"# Results of the `{profile}` profile",
        "",
        f"Generated by `python -m rso_lib.report --profile {profile}` from `results/{profile}/` and "
        f"`figures/{profile}/`; every number below is read from the run's files. Do not edit by hand.",
        "",
    ]
    bad = [m["_error"] for m in metas.values() if "_error" in m]
    commits = _distinct(metas, "git_commit")
    lines += [f"- Results computed at commit: {c}" for c in _per_group(commits, lambda v: f"`{v}`")] or [
        f"- Results computed at commit: {_missing('git_commit', metas)}"
    ]
    lines.append(f"- Page generated at commit: `{git_commit() or 'not a git checkout'}`")
    hosts = _distinct(metas, "host")
    lines += [f"- Machine: {h}" for h in _per_group(hosts, _fmt_host)] or [f"- Machine: {_missing('host', metas)}"]
    threads = _distinct(metas, "threads")
    lines += [f"- Torch threads: {t}" for t in _per_group(threads, _fmt_threads)] or [
        f"- Torch threads: {_missing('threads', metas)}"
    ]
    pkgs = _distinct(metas, "packages")
    lines += [f"- Packages: {p}" for p in _per_group(pkgs, _fmt_packages)] or [
        f"- Packages: {_missing('packages', metas)}"
    ]
    lines += _wall_time(chain, chain_path)
    lines += [f"- Unreadable meta file: {b}" for b in bad]
    lines += ["", "## Models per role", ""]
    roles = _distinct(metas, "llm_roles")
    if not roles:
        lines.append(f"LLM roles: {_missing('llm_roles', metas)}.")
    for value, tables in roles:
        if len(roles) > 1:
            lines += ["", f"Tables {', '.join(tables)}:", ""]
        lines += _fmt_roles(value)
    encoders = _distinct(metas, "planner_encoder")
    lines += ["", *(f"- Planner encoder: {e}" for e in _per_group(encoders, lambda v: f"`{v}`"))]
    if not encoders:
        lines.append(f"- Planner encoder: {_missing('planner_encoder', metas)}")
    return lines


def _time_by_role(metas: dict[str, dict]) -> list[str]:
    """Where the evaluation notebooks' time went: per table whose meta holds the engine's
    ``run_info`` (one entry per system x dataset run), the dialogues and turns run, the engine's
    wall time, each role's model time within it, and the post-hoc judging time (WI, PRS, Cred).
    Roles' times are inside the dialogue wall time; judging comes after it."""
    groups: dict[str, list[str]] = {}  # tables written from the same runs share one row
    for name, meta in sorted(metas.items()):
        info = meta.get("run_info")
        if isinstance(info, dict) and info:
            groups.setdefault(json.dumps(info, sort_keys=True, default=str), []).append(name)
    rows = []
    for key, names in groups.items():
        runs = [v for v in json.loads(key).values() if isinstance(v, dict)]
        roles: dict[str, float] = {}
        for v in runs:
            for role, sec in (v.get("model_s_by_role") or {}).items():
                roles[role] = roles.get(role, 0.0) + float(sec)
        wall = sum(float(v.get("wall_s", 0)) for v in runs)
        judge = sum(float(v.get("judge_s", 0)) for v in runs)
        turns = sum(int(v.get("turns", 0)) for v in runs)
        new = sum(int(v.get("new_dialogues", 0)) for v in runs)
        total = wall + judge
        share = f"{judge / total:.0%}" if total else "-"
        by_role = ", ".join(f"{r} {_fmt_seconds(sec)}" for r, sec in sorted(roles.items(), key=lambda kv: -kv[1]))
        rows.append(
            f"| {', '.join(f'`{n}`' for n in names)} | {len(runs)} | {new} | {turns} | {_fmt_seconds(wall)} | {by_role or '-'} "
            f"| {_fmt_seconds(judge)} | {share} |"
        )
    if not rows:
        return []
    return [
        "",
        "## Where the evaluation's time went",
        "",
        "From each table's `run_info` (the engine's timers): dialogues run in this chain (`new`; resumed ones",
        "are not timed again), system turns, the dialogues' wall time with each role's model time inside",
        "it, and the judging after the dialogues (WI, PRS, Cred), with its share of the two.",
        "",
        "| tables | runs | new dialogues | turns | dialogue wall | model time by role | judging | judging share |",
        "|---|---|---|---|---|---|---|---|",
        *rows,
    ]


def _fmt_threads(t: Any) -> str:
    if isinstance(t, dict):
        return f"{t.get('threads', '?')} of {t.get('cpus', '?')} CPUs ({t.get('source', 'source not recorded')})"
    return f"`{t}`"


def _fmt_packages(p: Any) -> str:
    if isinstance(p, dict):
        return ", ".join(f"{k} {v}" for k, v in sorted(p.items()))
    return f"`{p}`"


def _table_block(name: str, results: Path, max_rows: int) -> list[str]:
    md = (results / f"{name}.md").read_text().rstrip("\n").splitlines()
    body = [i for i, line in enumerate(md) if line.startswith("|")]
    n_rows = max(len(body) - 2, 0)  # header + separator
    if n_rows > max_rows:
        cut = body[0] + 2 + max_rows
        md = [*md[:cut], "", f"*First {max_rows} of {n_rows} rows; the full table is `results/<profile>/{name}.csv`.*"]
    return [f"### `{name}`", "", *md, ""]


def _figure_block(name: str, figures: Path, out_dir: Path, profile: str) -> list[str]:
    out_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(figures / f"{name}.png", out_dir / f"{name}.png")
    return [f"![{name}]({profile}/{name}.png)", ""]


def render(profile: str, root: Path, out: Path, max_rows: int = MAX_ROWS) -> Path:
    """Write ``out/<profile>.md`` (figures under ``out/<profile>/``) from ``root/results/<profile>``
    and ``root/figures/<profile>``. Returns the page's path."""
    if not PROFILE_NAME.match(profile):
        raise ValueError(f"profile {profile!r}: a plain name of letters, digits, '_' or '-'")
    results, figures = root / "results" / profile, root / "figures" / profile
    if not results.is_dir():
        raise FileNotFoundError(
            f"no results directory {results}: run `python -m rso_lib.run --profile {profile}` first"
        )
    metas = _read_meta(results)
    chain_path = results / "chain.json"
    chain = json.loads(chain_path.read_text()) if chain_path.is_file() else None
    fig_dir = out / profile
    if fig_dir.is_dir():  # figures of an earlier run must not outlive it
        shutil.rmtree(fig_dir)
    lines = _header(profile, metas, chain, chain_path)
    lines += _time_by_role(metas)
    tables = {p.stem for p in results.glob("*.md")}
    pngs = {p.stem for p in figures.glob("*.png")} if figures.is_dir() else set()
    named_t, named_f = set(), set()
    for sec in SECTIONS:
        named_t.update(sec.tables)
        named_f.update(sec.figures)
        have_t = [t for t in sec.tables if t in tables]
        have_f = [f for f in sec.figures if f in pngs]
        lines += ["", f"## {sec.title}", "", f"Notebook: `{sec.notebook}`.", ""]
        if not have_t and not have_f:
            lines.append("Not run: no table or figure of this section in the results.")
            continue
        for t in sec.tables:
            lines += _table_block(t, results, max_rows) if t in tables else [f"### `{t}`", "", "Not run.", ""]
        for f in have_f:
            lines += _figure_block(f, figures, fig_dir, profile)
    other_t, other_f = sorted(tables - named_t), sorted(pngs - named_f)
    if other_t or other_f:
        lines += ["", "## Other tables and figures of the run", ""]
        for t in other_t:
            lines += _table_block(t, results, max_rows)
        for f in other_f:
            lines += _figure_block(f, figures, fig_dir, profile)
    out.mkdir(parents=True, exist_ok=True)
    page = out / f"{profile}.md"
    page.write_text("\n".join(lines).rstrip("\n") + "\n")
    return page


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m rso_lib.report", description=__doc__.split("\n\n")[0])
    ap.add_argument("--profile", default="smoke", help="the profile whose results to render (default smoke)")
    ap.add_argument(
        "--root", type=Path, help="output root holding results/ and figures/ (default: $RSO_ROOT or the checkout)"
    )
    ap.add_argument("--out", type=Path, help="where the page goes (default: <root>/docs/results)")
    ap.add_argument("--max-rows", type=int, default=MAX_ROWS, help=f"rows shown per table (default {MAX_ROWS})")
    args = ap.parse_args(argv)
    root = (args.root or repo_root()).resolve()
    try:
        page = render(args.profile, root, (args.out or root / "docs" / "results").resolve(), args.max_rows)
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"[rso] results page: {page}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
