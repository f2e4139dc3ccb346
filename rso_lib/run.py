"""The papermill chain: run every numbered notebook in order on one params profile.

    python -m rso_lib.run --profile smoke            # what `make reproduce` runs
    python -m rso_lib.run --profile paper --from 03  # resume a paper-scale chain at 03_rl
    python -m rso_lib.run --profile smoke --check    # validate params files only, run nothing
    python -m rso_lib.run --strip                    # strip outputs from notebooks/ (before a commit)

Params files (``params/base.yaml`` then ``params/<profile>.yaml``, then any ``--params-file``;
later files override earlier ones, nested dicts merged key by key) have this shape::

    common:            # passed to every notebook that declares the key
      PROFILE: smoke
      SEED: 0
    02_sft:            # passed to notebooks/02_sft.ipynb only
      SFT_EPOCHS: 1

papermill only *warns* about a parameter a notebook does not declare; a typo would then run the
whole chain with the default silently. This runner fails instead: every key of a notebook's
section must be declared in that notebook's ``parameters`` cell, every ``common`` key by at least
one notebook, and every section must name an existing notebook.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import nbformat
import yaml

from rso_lib.paths import repo_root, run_dir


class ParamsError(ValueError):
    pass


def notebooks(root: Path | None = None) -> list[Path]:
    """The numbered notebooks ``notebooks/NN_*.ipynb`` in chain order."""
    nb_dir = (root or repo_root()) / "notebooks"
    return sorted(p for p in nb_dir.glob("[0-9][0-9]_*.ipynb"))


def declared_parameters(nb_path: Path) -> dict[str, Any]:
    """Names (and literal default values) assigned in the notebook's cell tagged ``parameters``.

    Raises ParamsError if there is no such cell, more than one, or a value is not a literal (the
    parameters cell must stay a list of annotated literals: derived values go in the next cell)."""
    nb = nbformat.read(nb_path, as_version=4)
    cells = [c for c in nb.cells if c.cell_type == "code" and "parameters" in c.get("metadata", {}).get("tags", [])]
    if len(cells) != 1:
        raise ParamsError(f"{nb_path}: expected exactly one code cell tagged 'parameters', found {len(cells)}")
    out: dict[str, Any] = {}
    tree = ast.parse(cells[0].source, filename=str(nb_path))
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            name, value = node.targets[0].id, node.value
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
            name, value = node.target.id, node.value
        elif isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):  # a docstring / note
            continue
        else:
            raise ParamsError(f"{nb_path}: parameters cell line {node.lineno}: only `NAME = literal` assignments are allowed")
        try:
            out[name] = ast.literal_eval(value)
        except ValueError as exc:
            raise ParamsError(f"{nb_path}: parameters cell line {node.lineno}: {name} is not a literal ({exc})") from None
    return out


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def load_params(files: list[Path]) -> dict[str, dict[str, Any]]:
    """Merge params files in order. Each top-level key is ``common`` or a notebook stem."""
    merged: dict[str, dict[str, Any]] = {}
    for f in files:
        try:
            data = yaml.safe_load(Path(f).read_text()) or {}
        except yaml.YAMLError as exc:
            raise ParamsError(f"{f}: not valid YAML: {exc}") from None
        if not isinstance(data, dict):
            raise ParamsError(f"{f}: expected a mapping of sections (common, <notebook stem>...), got {type(data).__name__}")
        for section, values in data.items():
            if not isinstance(values, dict):
                raise ParamsError(f"{f}: section {section!r} must be a mapping of NAME: value")
            merged[section] = _merge(merged.get(section, {}), values)
    return merged


def plan(params: dict[str, dict[str, Any]], nbs: list[Path]) -> dict[Path, dict[str, Any]]:
    """The parameters each notebook gets, after checking every name (see module docstring)."""
    declared = {nb: declared_parameters(nb) for nb in nbs}
    stems = {nb.stem: nb for nb in nbs}
    errors = [f"section {s!r} names no notebook (have: {', '.join(stems)})" for s in params if s != "common" and s not in stems]
    common = params.get("common", {})
    for key in common:
        if not any(key in d for d in declared.values()):
            errors.append(f"common key {key!r} is declared by no notebook")
    out: dict[Path, dict[str, Any]] = {}
    for nb in nbs:
        section = params.get(nb.stem, {})
        for key in section:
            if key not in declared[nb]:
                errors.append(f"{nb.stem}: {key!r} is not declared in the notebook's parameters cell "
                              f"(declared: {', '.join(sorted(declared[nb]))})")
        out[nb] = {**{k: v for k, v in common.items() if k in declared[nb]}, **section}
    if errors:
        raise ParamsError("params do not match the notebooks:\n  " + "\n  ".join(errors))
    return out


def profile_files(profile: str, extra: list[Path] = ()) -> list[Path]:
    root = repo_root()
    prof = Path(profile) if profile.endswith((".yaml", ".yml")) else root / "params" / f"{profile}.yaml"
    files = [root / "params" / "base.yaml", prof, *extra]
    for f in files:
        if not f.exists():
            raise ParamsError(f"params file {f} not found (profiles: {', '.join(p.stem for p in (root / 'params').glob('*.yaml'))})")
    return files


def strip_outputs(nb_path: Path) -> bool:
    """Remove outputs and execution counts in place. Returns True if the file changed."""
    before = nb_path.read_text()
    nb = nbformat.reads(before, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
        cell.metadata.pop("papermill", None)
        cell.metadata.pop("execution", None)
    nb.metadata.pop("papermill", None)
    after = nbformat.writes(nb) + "\n"
    if after != before:
        nb_path.write_text(after)
    return after != before


def run_chain(profile: str, extra: list[Path] = (), only: list[str] | None = None, start: str | None = None) -> dict:
    import papermill as pm  # imported here: --check and --strip need no kernel machinery

    nbs = notebooks()
    params = load_params(profile_files(profile, list(extra)))
    params.setdefault("common", {}).setdefault("PROFILE", Path(profile).stem)
    todo = plan(params, nbs)
    name = params["common"]["PROFILE"]
    out_dir = run_dir(name) / "notebooks"
    out_dir.mkdir(parents=True, exist_ok=True)
    selected = [nb for nb in nbs if (not only or nb.stem in only or nb.stem[:2] in only)
                and (start is None or nb.stem >= start or nb.stem[:2] >= start)]
    if not selected:
        raise ParamsError(f"no notebook matches --only {only} / --from {start}")
    log = {"profile": name, "params_files": [str(f) for f in profile_files(profile, list(extra))], "notebooks": []}
    for nb in selected:
        t0 = time.time()
        print(f"[rso] {nb.name} with {json.dumps(todo[nb], sort_keys=True)}", flush=True)
        pm.execute_notebook(str(nb), str(out_dir / nb.name), parameters=todo[nb], cwd=str(nb.parent),
                            kernel_name="python3", progress_bar=False, log_output=False)
        dt = time.time() - t0
        print(f"[rso] {nb.name} done in {dt:.1f} s -> {out_dir / nb.name}", flush=True)
        log["notebooks"].append({"notebook": nb.name, "seconds": round(dt, 1), "parameters": todo[nb]})
    log["total_seconds"] = round(sum(n["seconds"] for n in log["notebooks"]), 1)
    (run_dir(name) / "chain.json").write_text(json.dumps(log, indent=2, default=str) + "\n")
    print(f"[rso] chain finished in {log['total_seconds']} s", flush=True)
    return log


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m rso_lib.run", description=__doc__.split("\n\n")[0])
    ap.add_argument("--profile", default="smoke", help="params/<profile>.yaml or a path to a YAML file (default smoke)")
    ap.add_argument("--params-file", action="append", type=Path, default=[], help="extra YAML applied last (repeatable)")
    ap.add_argument("--only", nargs="*", help="notebook stems or numbers to run (e.g. 01 02_sft)")
    ap.add_argument("--from", dest="start", help="run from this notebook number/stem on")
    ap.add_argument("--check", action="store_true", help="validate the params against the notebooks and exit")
    ap.add_argument("--strip", action="store_true", help="strip outputs from notebooks/*.ipynb and exit")
    args = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TQDM_DISABLE", "1")
    try:
        if args.strip:
            for nb in sorted((repo_root() / "notebooks").glob("*.ipynb")):
                if strip_outputs(nb):
                    print(f"stripped {nb}")
            return 0
        if args.check:
            params = load_params(profile_files(args.profile, args.params_file))
            todo = plan(params, notebooks())
            for nb, p in todo.items():
                print(f"{nb.name}: {json.dumps(p, sort_keys=True)}")
            return 0
        run_chain(args.profile, args.params_file, args.only, args.start)
    except ParamsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
