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
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import nbformat
import yaml

from rso_lib.dialogue.config import EngineConfig
from rso_lib.paths import PROFILE_NAME, repo_root, results_dir, run_dir


class ParamsError(ValueError):
    pass


class NotebookError(RuntimeError):
    """A notebook of the chain raised: one line for the user, the full trace in the executed copy."""


@contextmanager
def profile_lock(profile: str):
    """One chain per profile at a time: ``runs/<profile>/.chain.lock`` holds the running pid. A
    second run fails at once, naming the holder; a lock left by a process that is gone is taken
    over (and said so)."""
    d = run_dir(profile)
    d.mkdir(parents=True, exist_ok=True)
    lock = d / ".chain.lock"
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            break
        except FileExistsError:
            try:
                pid = int(lock.read_text().split()[0])
                os.kill(pid, 0)
            except (ValueError, IndexError, ProcessLookupError, FileNotFoundError):
                print(f"[rso] removing a stale lock {lock} (its process is gone)", flush=True)
                lock.unlink(missing_ok=True)
                continue
            except PermissionError:  # alive, another user's
                pass
            raise ParamsError(
                f"another chain of profile {profile!r} is running (pid {pid}, lock {lock}); wait for it to finish"
            ) from None
    else:
        raise ParamsError(f"could not take the lock {lock}")
    try:
        os.write(fd, f"{os.getpid()} {time.strftime('%Y-%m-%dT%H:%M:%S')}\n".encode())
        os.close(fd)
        yield lock
    finally:
        lock.unlink(missing_ok=True)


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
            raise ParamsError(
                f"{nb_path}: parameters cell line {node.lineno}: only `NAME = literal` assignments are allowed"
            )
        try:
            out[name] = ast.literal_eval(value)
        except ValueError as exc:
            raise ParamsError(
                f"{nb_path}: parameters cell line {node.lineno}: {name} is not a literal ({exc})"
            ) from None
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
            data = yaml.safe_load(Path(f).read_bytes().decode("utf-8")) or {}
        except UnicodeDecodeError as exc:
            b, at = exc.object, exc.start
            line, col = b.count(b"\n", 0, at) + 1, at - b.rfind(b"\n", 0, at)
            raise ParamsError(f"{f}:{line}: not UTF-8 (byte {b[at]:#04x} at column {col})") from None
        except yaml.YAMLError as exc:
            raise ParamsError(f"{f}: not valid YAML: {exc}") from None
        except RecursionError:  # PyYAML composes nested nodes recursively
            raise ParamsError(f"{f}: not valid YAML: nested too deeply") from None
        if not isinstance(data, dict):
            raise ParamsError(
                f"{f}: expected a mapping of sections (common, <notebook stem>...), got {type(data).__name__}"
            )
        for section, values in data.items():
            if not isinstance(values, dict):
                raise ParamsError(f"{f}: section {section!r} must be a mapping of NAME: value")
            merged[section] = _merge(merged.get(section, {}), values)
    return merged


#: Allowed ranges (inclusive; None = unbounded) and choices of the notebook parameters that are
#: not engine settings (the engine's: the field metadata of rso_lib.dialogue.config.EngineConfig).
#: A parameter's type is its notebook default's (an int is allowed where the default is a float).
RANGES: dict[str, tuple[float | None, float | None]] = {
    "SEED": (0, None),
    "N_DIALOGUES": (0, None),
    "N_BOOT": (1, None),
    "N_BINS": (1, None),
    "RL_EPOCHS": (1, None),
    "EPOCHS": (1, None),
    "DIALOGUES_PER_EPOCH": (1, None),
    "DIALOGUES_PER_UPDATE": (1, None),
    "BATCH_SIZE": (1, None),
    "MAX_LENGTH": (8, None),
    "LR": (0, None),
    "GAMMA": (0, 1),
    "BETA": (0, None),
    "JUDGE_SAMPLES": (1, None),
    "SAVE_EVERY_STEPS": (0, None),
    "ALPHA": (0, 1),
    "POWER": (0, 1),
    "MIN_PAIRED_N": (2, None),
    "N_PERM": (1, None),
    "PRS_MIN_GAP": (0, 4),
    # validity card (notebooks 03_validity, 04_validity_transcripts)
    "CARD_ITEMS": (1, None),
    "CARD_USERS": (1, None),
    "USER_EXCHANGES": (1, None),
    "REFERENCE_ITEMS": (0, None),
    "MIN_PAIR_ACCURACY": (0, 1),
    "MAX_FLIP_RATE": (0, 1),
    "MAX_PARSE_FAILURE_RATE": (0, 1),
    "MIN_REFERENCE_AGREEMENT": (-1, 1),
    "MIN_REWARD_ORDER": (0, 1),
    "MAX_NO_RECOMMENDATION_PASS_RATE": (0, 1),
    "MAX_REJECTION_PASS_RATE": (0, 1),
    "MIN_ACCEPTANCE_PASS_RATE": (0, 1),
    "MIN_ACCEPT_GAP": (-1, 1),
    "MAX_GENRE_REVEAL_RATE": (0, 1),
    "MAX_OPENING_LEAK_RATE": (0, 1),
    "MAX_LEAK_RATE": (0, 1),
    "MIN_SWAP_TAU": (-1, 1),
}
SUFFIX_RANGES = {"_MAX_TOKENS": (1, None), "_TEMPERATURE": (0, 2), "_EXAMPLES": (1, None)}
CHOICES: dict[str, tuple[str, ...]] = {
    "GENRE_RULE": ("all", "first"),
    "JUDGE_MODE": ("score", "sample", "reasoned"),
    "JUDGE_ITEM": ("most_similar", "presented"),
    "CRED_NO_ITEM": ("zero", "exclude"),
    "POST_EVIDENCE": ("recommender", "dialogue"),
    "PRS_INTENTIONS": ("whole", "expected"),
    "RECALL_RANKING": ("catalogue", "named"),
    "DIST2": ("per_response", "corpus"),
    "BASELINE": ("none", "mean", "normalise"),
    "CORRECTION": ("holm", "bh"),
    "CARD_DATASET": ("inspired", "redial"),
}


def _type_name(v: Any) -> str:
    return "bool" if isinstance(v, bool) else "number" if isinstance(v, (int, float)) else type(v).__name__


def _kb_source_problem(value: Any) -> str | None:
    from rso_lib.data.kb import kb_source_map  # stdlib-only module: --check stays light

    try:
        kb_source_map(value)
    except ValueError as exc:
        return str(exc)
    return None


def _rl_seeds_problem(value: Any) -> str | None:
    """RL_SEEDS: a list of distinct integers >= 0 (empty: one RL run with SEED)."""
    ok = isinstance(value, list) and all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in value)
    if not ok or len(set(value)) != len(value):
        return f"RL_SEEDS = {value!r}: a list of distinct integers >= 0 ([] = one RL run with SEED)"
    return None


def check_value(name: str, value: Any, default: Any) -> str | None:
    """Why ``value`` is not allowed for parameter ``name`` (whose notebook default is ``default``),
    or None when it is."""
    if name == "KB_SOURCE":  # a source for both datasets or {dataset: source}: not one type
        return _kb_source_problem(value)
    if name == "RL_SEEDS":
        return _rl_seeds_problem(value)
    if default is not None and value is not None:
        want, got = _type_name(default), _type_name(value)
        if want != got or (
            isinstance(default, int)
            and not isinstance(default, bool)
            and isinstance(value, float)
            and not float(value).is_integer()
        ):
            kind = "an integer" if isinstance(default, int) and not isinstance(default, bool) else f"a {want}"
            return f"{name} = {value!r}: expected {kind} (like the default {default!r})"
    if name == "PROFILE" and not (isinstance(value, str) and PROFILE_NAME.match(value)):
        return f"PROFILE = {value!r}: a plain name of letters, digits, '_' or '-' (it names runs/<PROFILE>/)"
    if name in EngineConfig.param_fields():  # an engine setting: its field's type, choices, range
        return EngineConfig.check_param(name, value)
    if name in CHOICES and value not in CHOICES[name]:
        return f"{name} = {value!r}: one of {', '.join(map(repr, CHOICES[name]))}"
    lo_hi = RANGES.get(name) or next((r for suf, r in SUFFIX_RANGES.items() if name.endswith(suf)), None)
    if lo_hi and isinstance(value, (int, float)) and not isinstance(value, bool):
        lo, hi = lo_hi
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            return f"{name} = {value!r}: outside [{lo}, {'inf' if hi is None else hi}]"
    return None


def plan(params: dict[str, dict[str, Any]], nbs: list[Path]) -> dict[Path, dict[str, Any]]:
    """The parameters each notebook gets, after checking every name (see module docstring)."""
    declared = {nb: declared_parameters(nb) for nb in nbs}
    stems = {nb.stem: nb for nb in nbs}
    errors = [
        f"section {s!r} names no notebook (have: {', '.join(stems)})"
        for s in params
        if s != "common" and s not in stems
    ]
    common = params.get("common", {})
    for key in common:
        if not any(key in d for d in declared.values()):
            errors.append(f"common key {key!r} is declared by no notebook")
    out: dict[Path, dict[str, Any]] = {}
    for nb in nbs:
        section = params.get(nb.stem, {})
        for key in section:
            if key not in declared[nb]:
                errors.append(
                    f"{nb.stem}: {key!r} is not declared in the notebook's parameters cell "
                    f"(declared: {', '.join(sorted(declared[nb]))})"
                )
        out[nb] = {**{k: v for k, v in common.items() if k in declared[nb]}, **section}
        for key, value in {**declared[nb], **out[nb]}.items():  # defaults too: a notebook edit is checked
            why = check_value(key, value, declared[nb].get(key))
            if why:
                errors.append(f"{nb.stem}: {why}")
    if errors:
        raise ParamsError("params do not match the notebooks:\n  " + "\n  ".join(errors))
    return out


def profile_files(profile: str, extra: list[Path] = ()) -> list[Path]:
    root = repo_root()
    prof = Path(profile) if profile.endswith((".yaml", ".yml")) else root / "params" / f"{profile}.yaml"
    files = [root / "params" / "base.yaml", prof, *extra]
    for f in files:
        if not f.exists():
            raise ParamsError(
                f"params file {f} not found (profiles: {', '.join(p.stem for p in (root / 'params').glob('*.yaml'))})"
            )
    return files


def strip_outputs(nb_path: Path, write: bool = True) -> bool:
    """Remove outputs and execution counts in place (``write=False``: only report). Returns True if
    the file has (had) any."""
    before = nb_path.read_text()
    nb = nbformat.reads(before, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
        cell.metadata.pop("papermill", None)
        cell.metadata.pop("execution", None)
    nb.metadata.pop("papermill", None)
    after = nbformat.writes(nb) + "\n"
    if after != before and write:
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
    selected = [
        nb
        for nb in nbs
        if (not only or nb.stem in only or nb.stem[:2] in only)
        and (start is None or nb.stem >= start or nb.stem[:2] >= start)
    ]
    unknown = [o for o in (only or []) if not any(nb.stem == o or nb.stem[:2] == o for nb in nbs)]
    if unknown or (start is not None and not any(nb.stem == start or nb.stem[:2] == start for nb in nbs)):
        raise ParamsError(
            f"no notebook named {', '.join(unknown) or start!r} (have: {', '.join(nb.stem for nb in nbs)})"
        )
    if not selected:
        raise ParamsError(f"no notebook matches --only {only} / --from {start}")
    log = {"profile": name, "params_files": [str(f) for f in profile_files(profile, list(extra))], "notebooks": []}
    with profile_lock(name):  # two chains of one profile would write the same transcripts
        for nb in selected:
            t0 = time.time()
            print(f"[rso] {nb.name} with {json.dumps(todo[nb], sort_keys=True)}", flush=True)
            try:
                pm.execute_notebook(
                    str(nb),
                    str(out_dir / nb.name),
                    parameters=todo[nb],
                    cwd=str(nb.parent),
                    kernel_name="python3",
                    progress_bar=False,
                    log_output=False,
                )
            except pm.PapermillExecutionError as exc:  # one clear line; the trace stays in the executed copy
                raise NotebookError(
                    f"{nb.name}, cell {exc.exec_count}: {exc.ename}: {exc.evalue} (full trace in {out_dir / nb.name})"
                ) from None
            dt = time.time() - t0
            print(f"[rso] {nb.name} done in {dt:.1f} s -> {out_dir / nb.name}", flush=True)
            log["notebooks"].append({"notebook": nb.name, "seconds": round(dt, 1), "parameters": todo[nb]})
    log["total_seconds"] = round(sum(n["seconds"] for n in log["notebooks"]), 1)
    (run_dir(name) / "chain.json").write_text(json.dumps(log, indent=2, default=str) + "\n")
    print(f"[rso] chain finished in {log['total_seconds']} s", flush=True)
    from rso_lib.results import write_json  # pandas: not needed by --check / --strip

    write_json(merge_chain_log(results_dir(name) / "chain.json", log), results_dir(name) / "chain.json")
    _report(name)
    return log


def merge_chain_log(path: Path, log: dict) -> dict:
    """The chain log kept beside the results: this run's notebooks, plus the notebooks of earlier
    runs that this one did not redo (``--only`` / ``--from``), marked ``earlier_run``, so that the
    results page's wall time covers every notebook whose output it shows."""
    from rso_lib.results import git_commit

    commit = git_commit()
    done = [{**n, "git_commit": commit} for n in log["notebooks"]]
    try:
        earlier = json.loads(path.read_text()).get("notebooks", []) if path.is_file() else []
    except ValueError:
        earlier = []  # a damaged log is replaced by this run's
    names = {n["notebook"] for n in done}
    kept = [{**n, "earlier_run": True} for n in earlier if isinstance(n, dict) and n.get("notebook") not in names]
    merged = sorted(kept + done, key=lambda n: str(n.get("notebook")))
    return {**log, "notebooks": merged, "total_seconds": round(sum(float(n["seconds"]) for n in merged), 1)}


def _report(profile: str) -> None:
    """Regenerate ``docs/results/<profile>.md`` from the finished chain's files."""
    from rso_lib.report import render

    try:
        page = render(profile, repo_root(), repo_root() / "docs" / "results")
    except (OSError, ValueError) as exc:  # the run's results stand; only their page is missing
        print(
            f"[rso] results page NOT written ({exc}): rerun `python -m rso_lib.report --profile {profile}`",
            file=sys.stderr,
            flush=True,
        )
        return
    print(f"[rso] results page: {page}", flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m rso_lib.run", description=__doc__.split("\n\n")[0])
    ap.add_argument("--profile", default="smoke", help="params/<profile>.yaml or a path to a YAML file (default smoke)")
    ap.add_argument(
        "--params-file", action="append", type=Path, default=[], help="extra YAML applied last (repeatable)"
    )
    ap.add_argument("--only", nargs="*", help="notebook stems or numbers to run (e.g. 01 02_sft)")
    ap.add_argument("--from", dest="start", help="run from this notebook number/stem on")
    ap.add_argument("--check", action="store_true", help="validate the params against the notebooks and exit")
    ap.add_argument(
        "--strip",
        action="store_true",
        help="strip outputs from notebooks/*.ipynb and exit (with --check: list notebooks that have "
        "outputs, change nothing, exit 1 if any)",
    )
    args = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TQDM_DISABLE", "1")
    try:
        if args.strip:
            dirty = [
                nb
                for nb in sorted((repo_root() / "notebooks").glob("*.ipynb"))
                if strip_outputs(nb, write=not args.check)
            ]
            for nb in dirty:
                print(f"{'has outputs (run make strip)' if args.check else 'stripped'}: {nb}")
            return 1 if dirty and args.check else 0
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
    except (NotebookError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
