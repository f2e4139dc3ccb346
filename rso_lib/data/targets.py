"""Simulation targets (RSO / PC-CRS protocol): who the simulated user is and which genres they want.

* INSPIRED test: ``inspired/inspired_dialog_ids2user_id_and_genre_dict.jsonl`` (99 rows,
  ``{dialog_id, user_id, genre_dict: [genres]}``) joined to ``inspired-test.txt`` (order and the
  set of dialogues come from the split file; a mapping row overrides the split's own
  user_id / genre_dict). For ``train`` the split file's own ``user_id`` / ``genre_dict`` are used;
  ``valid`` has no ``genre_dict`` (DataError).
* ReDial test: ``redial/redial_dialog_ids2user_id_and_genre_dict.jsonl`` (198 rows) joined to
  ``redial/redial-test.txt``; user ids point at INSPIRED seekers.

The persona is the INSPIRED seeker persona of that ``user_id``
(:func:`rso_lib.data.personas.load_seeker_personas`). A user without survey rows gets a neutral
persona and an Issue (none in the shared data). 8 INSPIRED test targets have an empty genre list:
:func:`apply_genre_rule` gives them the authors' substitute, "action" (an empty target is covered
by no item).
"""

from __future__ import annotations

import warnings
from pathlib import Path

from rso_lib.data._io import iter_jsonl
from rso_lib.data.kb import normalise_genres
from rso_lib.data.personas import load_seeker_personas
from rso_lib.data.records import DataError, Issue, Persona, SimTarget
from rso_lib.paths import temp_sibling

INSPIRED_MAP = "inspired/inspired_dialog_ids2user_id_and_genre_dict.jsonl"
REDIAL_MAP = "redial/redial_dialog_ids2user_id_and_genre_dict.jsonl"
REDIAL_TEST = "redial/redial-test.txt"


def _genres(v) -> list[str] | None:
    """A genre list normalised like the knowledge base's, or None if ``v`` is not a list."""
    return normalise_genres(v) if isinstance(v, list) else None


def _read_map(path: Path, issues: list[Issue]) -> dict[str, tuple[str, list[str], int]]:
    out: dict[str, tuple[str, list[str], int]] = {}
    for lineno, obj in iter_jsonl(path, issues, "dialogue -> user/genre mapping"):
        did, uid, g = obj.get("dialog_id"), obj.get("user_id"), _genres(obj.get("genre_dict"))
        if not did or not uid or g is None:
            bad = "dialog_id" if not did else "user_id" if not uid else "genre_dict"
            issues.append(Issue(str(path), lineno, bad, f"missing or invalid {bad}", "skipped"))
            continue
        out[str(did)] = (str(uid), g, lineno)
    return out


def _split_rows(
    dataset: str, data_dir: Path, split: str, issues: list[Issue]
) -> list[tuple[str, str | None, list[str] | None, str, int]]:
    """(dialog_id, user_id, genres, path, line) for each dialogue of the split, in file order."""
    if dataset == "inspired":
        from rso_lib.data.inspired import strategy_split_path

        path = strategy_split_path(data_dir, split)
    elif dataset == "redial":
        if split != "test":
            raise ValueError("ReDial simulation targets exist for split='test' only (redial-test.txt)")
        path = data_dir / REDIAL_TEST
    else:
        raise ValueError(f"unknown dataset {dataset!r}; expected 'inspired' or 'redial'")
    rows = []
    first_line: dict[str, int] = {}
    for lineno, obj in iter_jsonl(path, issues, f"{dataset} {split} dialogues"):
        did = obj.get("dialog_id")
        if not did:
            issues.append(Issue(str(path), lineno, "dialog_id", "missing dialog_id", "skipped"))
            continue
        if str(did) in first_line:  # a repeated dialogue would be simulated (and counted) twice
            issues.append(
                Issue(
                    str(path),
                    lineno,
                    "dialog_id",
                    f"duplicate dialog_id {did} (first at line {first_line[str(did)]})",
                    "skipped",
                )
            )
            continue
        first_line[str(did)] = lineno
        rows.append((str(did), obj.get("user_id"), _genres(obj.get("genre_dict")), str(path), lineno))
    return rows


def load_sim_targets_with_issues(
    data_dir: str | Path, dataset: str = "inspired", split: str = "test"
) -> tuple[list[SimTarget], list[Issue]]:
    """:func:`load_sim_targets` that also returns the non-fatal Issues."""
    data_dir = Path(data_dir)
    issues: list[Issue] = []
    rows = _split_rows(dataset, data_dir, split, issues)
    mapping: dict[str, tuple[str, list[str], int]] = {}
    if split == "test":
        mapping = _read_map(data_dir / (INSPIRED_MAP if dataset == "inspired" else REDIAL_MAP), issues)
    personas, p_issues = load_seeker_personas(data_dir)
    issues += p_issues
    targets: list[SimTarget] = []
    for did, uid, genres, path, lineno in rows:
        if did in mapping:
            uid, genres, _ = mapping[did]
        if not uid or genres is None:
            if split == "valid" and dataset == "inspired":
                raise DataError(
                    path,
                    "the INSPIRED valid split has no genre_dict: simulation targets exist for train and test only",
                    line=lineno,
                    field="genre_dict",
                )
            missing = "user_id" if not uid else "genre_dict"
            issues.append(
                Issue(
                    path,
                    lineno,
                    missing,
                    f"dialogue {did} has no {missing} (not in the mapping file either)",
                    "skipped",
                )
            )
            continue
        persona = personas.get(uid)
        if persona is None:
            issues.append(
                Issue(path, lineno, "user_id", f"user {uid} has no seeker survey row: neutral persona used", "kept")
            )
            persona = Persona(
                user_id=uid,
                description="You are looking for a movie to watch and chat with a "
                "recommender about it, answering in one or two short sentences.",
                fields={"missing_survey": True},
            )
        targets.append(SimTarget(dialog_id=did, dataset=dataset, user_id=uid, persona=persona, target_genres=genres))
    unmatched = set(mapping) - {r[0] for r in rows}
    for did in sorted(unmatched):
        issues.append(
            Issue(
                str(data_dir / (INSPIRED_MAP if dataset == "inspired" else REDIAL_MAP)),
                mapping[did][2],
                "dialog_id",
                f"dialogue {did} is not in the {split} split",
                "skipped",
            )
        )
    if not targets:
        raise DataError(rows[0][3] if rows else data_dir, f"no simulation target for {dataset}/{split}")
    return targets, issues


def load_sim_targets(data_dir: str | Path, dataset: str = "inspired", split: str = "test") -> list[SimTarget]:
    """Simulation targets of a dataset split (INSPIRED: 99 test, ReDial: 198 test), in split-file
    order. Non-fatal problems are emitted as ``warnings.warn`` (use
    :func:`load_sim_targets_with_issues` to get them as :class:`Issue` records).

    Args:
        data_dir: data directory.
        dataset: ``"inspired"`` | ``"redial"``.
        split: ``"test"`` (default); INSPIRED also ``"train"``.
    """
    targets, issues = load_sim_targets_with_issues(data_dir, dataset, split)
    # Shifted survey rows are a known, handled quirk of the survey files: only warn about
    # problems with the targets themselves.
    for i in issues:
        if not i.path.endswith(".tsv"):
            warnings.warn(str(i), stacklevel=2)
    return targets


def targets_path(profile: str, dataset: str) -> Path:
    """``runs/<profile>/data/targets_<dataset>.jsonl`` (written by notebook 01)."""
    from rso_lib.paths import run_dir

    return run_dir(profile) / "data" / f"targets_{dataset}.jsonl"


def write_sim_targets(path: str | Path, targets: list[SimTarget]) -> int:
    """JSONL, one :class:`SimTarget` a line (``dataclasses.asdict``), atomic write."""
    import dataclasses
    import json
    import os

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_sibling(path)
    with tmp.open("w", encoding="utf-8") as f:
        for t in targets:
            f.write(json.dumps(dataclasses.asdict(t), ensure_ascii=False, sort_keys=True) + "\n")
    os.replace(tmp, path)
    return len(targets)


def read_sim_targets(path: str | Path) -> list[SimTarget]:
    """Read :func:`write_sim_targets` output; a bad line raises :class:`DataError` naming it."""
    issues: list[Issue] = []
    out: list[SimTarget] = []
    for lineno, o in iter_jsonl(Path(path), issues, "simulation targets"):
        try:
            p = o["persona"]
            out.append(
                SimTarget(
                    str(o["dialog_id"]),
                    o["dataset"],
                    str(o["user_id"]),
                    Persona(str(p["user_id"]), p["description"], dict(p.get("fields") or {})),
                    list(o["target_genres"]),
                )
            )
        except (KeyError, TypeError) as e:
            raise DataError(path, f"bad simulation target: missing {e}", line=lineno) from e
    if issues:
        i = issues[0]
        raise DataError(path, i.message, line=i.line)
    return out


GENRE_RULES = ("all", "first")
#: The authors' target for a user with no listed genre (``env.py``: ``common_genre_dict[0]``).
EMPTY_TARGET_SUBSTITUTE = "action"


def apply_genre_rule(targets: list[SimTarget], rule: str = "all") -> list[SimTarget]:
    """Which of a user's listed genres are the simulation target (``GENRE_RULE``).

    * ``"all"``: every listed genre; a target item must cover them all (stricter than the
      authors: with the ReDial catalogue 20 of 99 INSPIRED test users are then unreachable).
    * ``"first"``: the first listed genre only, as the authors' evaluation uses the mapping files
      (every test user stays in).

    Under both rules a user with no listed genre gets the authors' substitute
    (:data:`EMPTY_TARGET_SUBSTITUTE`, "action"), never an empty target: an empty target is
    covered by no item (:meth:`rso_lib.data.kb.KnowledgeBase.covers`).
    """
    import dataclasses

    if rule not in GENRE_RULES:
        raise ValueError(f"GENRE_RULE must be one of {GENRE_RULES}, got {rule!r}")
    out = []
    for t in targets:
        g = list(t.target_genres) or [EMPTY_TARGET_SUBSTITUTE]
        out.append(dataclasses.replace(t, target_genres=g[:1] if rule == "first" else g))
    return out


def split_reachable(targets: list[SimTarget], kb) -> tuple[list[SimTarget], list[SimTarget]]:
    """Split targets into (reachable, unreachable) for a catalogue.

    A target is reachable when at least one catalogue item covers all its target genres. With the
    default ReDial catalogue (``id2info.json``), 20 of the 99 INSPIRED test targets ask for 3-6
    genres that no movie covers: no system can succeed on them, so evaluation leaves them out and
    reports how many (the paper's authors match against INSPIRED's own movie database, which a
    user can supply as ``movie_database.tsv``). ``kb`` is a :class:`~rso_lib.data.kb.KnowledgeBase`.
    """
    kept, dropped = [], []
    for t in targets:
        (kept if kb.valid_targets(t.target_genres) else dropped).append(t)
    return kept, dropped
