"""INSPIRED (Hayati et al., 2020) loaders.

* :func:`load_strategy_split`: the RSO authors' strategy-labelled splits
  ``inspired/strategy/inspired-{train,valid,test}.txt`` (801 / 99 / 99 dialogues). JSON lines
  ``{dialog_id, dialog: [{text, speaker, strategy}], user_id, genre_dict}`` (valid has no
  ``genre_dict``); strategies in Title Case, ``"NaN"`` on seeker turns.
* :func:`load_dialog_tsv`: the original dialog TSVs ``inspired/dialog/{train,dev,test}.tsv``
  (19 columns, tab-separated without quoting, ``QUOTATION_MARK`` for ``"``, the strategy in ``expert_label``).

Label policy (both loaders): a label that is none of the 14 strategies on a recommender turn is an
:class:`Issue` naming file, line and field; the turn is KEPT with ``strategy=None`` (so that the
dialogue history stays complete) and :func:`rso_lib.data.sft.build_sft_examples` makes no SFT
example for it. Seeker turns always get ``strategy=None``.
"""

from __future__ import annotations

import ast
import math
from pathlib import Path
from typing import Any

from rso_lib.data._io import iter_jsonl, read_tsv
from rso_lib.data.records import RECOMMENDER, SEEKER, DataError, Dialogue, Issue, Turn
from rso_lib.strategies import UnknownStrategyError, normalise_strategy

SPLITS = ("train", "valid", "test")
QUOTE_TOKEN = "QUOTATION_MARK"
_MISSING = {"", "nan", "none", "null"}


def restore_quotes(text: str) -> str:
    """INSPIRED writes ``"`` as the literal token ``QUOTATION_MARK``; put the quote back."""
    return text.replace(QUOTE_TOKEN, '"')


def strategy_split_path(data_dir: str | Path, split: str) -> Path:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    return Path(data_dir) / "inspired" / "strategy" / f"inspired-{split}.txt"


def _speaker(raw: Any) -> str | None:
    s = str(raw or "").strip().upper()
    return s if s in (SEEKER, RECOMMENDER) else None


def _label(raw: Any, speaker: str, path: Path, lineno: int, fieldname: str, issues: list[Issue]) -> str | None:
    """Canonical strategy for a turn, or None (seeker / missing / unknown -> Issue)."""
    missing = raw is None or (isinstance(raw, float) and math.isnan(raw)) or str(raw).strip().lower() in _MISSING
    if speaker != RECOMMENDER:
        return None  # seekers carry "NaN"; a stray seeker label is not a recommender strategy
    if missing:
        issues.append(Issue(str(path), lineno, fieldname, "recommender turn without a strategy label", "kept"))
        return None
    try:
        return normalise_strategy(str(raw))
    except UnknownStrategyError as e:
        issues.append(Issue(str(path), lineno, fieldname, str(e), "kept"))
        return None


def load_strategy_split(data_dir: str | Path, split: str) -> tuple[list[Dialogue], list[Issue]]:
    """Load one strategy-labelled INSPIRED split.

    Args:
        data_dir: data directory holding ``inspired/strategy/``.
        split: ``"train"`` | ``"valid"`` | ``"test"``.

    Returns:
        ``(dialogues, issues)``. Each Dialogue has ``source="inspired"``, ``split``, turns with
        speaker / text (QUOTATION_MARK restored) / canonical snake_case strategy (``None`` for
        seekers), and ``meta = {"user_id", "genre_dict" (lower-cased list or None), "line"}``.

    Non-fatal: a broken JSON line, a line without ``dialog_id`` or ``dialog`` list -> skipped;
    a turn with an unknown speaker -> turn skipped; an unknown strategy label -> turn kept with
    ``strategy=None``. Fatal: missing or empty file, no valid line.
    """
    path = strategy_split_path(data_dir, split)
    issues: list[Issue] = []
    out: list[Dialogue] = []
    for lineno, obj in iter_jsonl(path, issues, f"INSPIRED strategy split {split}"):
        did, dialog = obj.get("dialog_id"), obj.get("dialog")
        if not did:
            issues.append(Issue(str(path), lineno, "dialog_id", "missing dialog_id", "skipped"))
            continue
        if not isinstance(dialog, list):
            issues.append(Issue(str(path), lineno, "dialog", "missing or non-list dialog", "skipped"))
            continue
        turns: list[Turn] = []
        for k, t in enumerate(dialog):
            spk = _speaker(t.get("speaker") if isinstance(t, dict) else None)
            if spk is None:
                issues.append(
                    Issue(
                        str(path),
                        lineno,
                        f"dialog[{k}].speaker",
                        f"unknown speaker {t.get('speaker') if isinstance(t, dict) else t!r}",
                        "skipped",
                    )
                )
                continue
            strat = _label(t.get("strategy"), spk, path, lineno, f"dialog[{k}].strategy", issues)
            turns.append(Turn(speaker=spk, text=restore_quotes(str(t.get("text", ""))), strategy=strat))
        genres = obj.get("genre_dict")
        out.append(
            Dialogue(
                dialog_id=str(did),
                turns=turns,
                source="inspired",
                split=split,
                meta={
                    "user_id": obj.get("user_id"),
                    "genre_dict": [str(g).strip().lower() for g in genres] if isinstance(genres, list) else None,
                    "line": lineno,
                },
            )
        )
    return out, issues


# ---------------------------------------------------------------------------------------------
# Original dialog TSVs
# ---------------------------------------------------------------------------------------------

TSV_COLUMNS = (
    "dialog_id",
    "utt_id",
    "speaker",
    "turn_id",
    "text",
    "text_with_placeholder",
    "movies",
    "genres",
    "people_names",
    "movie_dict",
    "genre_dict",
    "actor_dict",
    "director_dict",
    "others_dict",
    "expert_label",
    "second_label",
    "fine_label",
    "coarse_label",
    "movie_id",
)
REQUIRED_TSV_COLUMNS = ("dialog_id", "speaker", "text", "expert_label")
DICT_COLUMNS = ("movie_dict", "genre_dict", "actor_dict", "director_dict", "others_dict")
LIST_COLUMNS = ("movies", "genres", "people_names")
TSV_SPLIT_FILES = {"train": "train.tsv", "valid": "dev.tsv", "test": "test.tsv"}


class _NanName(ast.NodeTransformer):
    """``nan`` inside a dict literal (one dev row has ``{'x': nan}``) -> ``None`` before
    ``ast.literal_eval``, which accepts only literals."""

    def visit_Name(self, node: ast.Name) -> ast.AST:
        if node.id in ("nan", "NaN"):
            return ast.copy_location(ast.Constant(value=None), node)
        return node


def parse_literal(text: str) -> Any:
    """Parse a Python dict/list literal from the dataset (never model output). ``nan`` -> None.

    Raises ValueError / SyntaxError on anything that is not a literal."""
    tree = ast.parse(text.strip(), mode="eval")
    tree = ast.fix_missing_locations(_NanName().visit(tree))
    return ast.literal_eval(tree)


def tsv_path(data_dir: str | Path, split: str) -> Path:
    if split not in TSV_SPLIT_FILES:
        raise ValueError(f"unknown split {split!r}; expected one of {tuple(TSV_SPLIT_FILES)}")
    return Path(data_dir) / "inspired" / "dialog" / TSV_SPLIT_FILES[split]


def _utterance(
    r: dict[str, str], path: Path, lineno: int, parsed: dict[str, Any], issues: list[Issue]
) -> dict[str, Any]:
    """The per-utterance extras of one TSV row (ids, labels, lists, parsed dict literals); a
    malformed literal is an Issue, its raw text kept under ``<column>_raw``. ``parsed`` caches
    each distinct literal string across rows."""
    utt: dict[str, Any] = {"line": lineno}
    for c in ("utt_id", "turn_id", "second_label", "fine_label", "coarse_label", "movie_id"):
        if c in r:
            v = r[c].strip()
            utt[c] = None if v.lower() in _MISSING else v
    for c in LIST_COLUMNS:
        if c in r:  # "comedy;  drama" -> ["comedy", "drama"]
            utt[c] = [p.strip() for p in r[c].split(";") if p.strip() and p.strip().lower() not in _MISSING]
    for c in DICT_COLUMNS:
        if c not in r:
            continue
        v = r[c].strip()
        if v.lower() in _MISSING:
            utt[c] = None
            continue
        # The dict columns repeat the same literal on every row of a dialogue: parse each
        # distinct string once (5x faster), hand every row its own shallow copy.
        if v not in parsed:
            try:
                parsed[v] = parse_literal(v)
            except (ValueError, SyntaxError, TypeError, RecursionError, MemoryError) as e:
                parsed[v] = e
        val = parsed[v]
        if isinstance(val, Exception):
            issues.append(Issue(str(path), lineno, c, f"malformed literal ({type(val).__name__}): {v[:60]!r}", "kept"))
            utt[c] = None
            utt[c + "_raw"] = v
        else:
            utt[c] = val.copy() if isinstance(val, (dict, list)) else val
    return utt


def load_dialog_tsv(path: str | Path, split: str | None = None) -> tuple[list[Dialogue], list[Issue]]:
    """Load an INSPIRED dialog TSV (``train.tsv`` / ``dev.tsv`` / ``test.tsv``).

    Read with quoting off (a row is a line split at tabs, :func:`rso_lib.data._io.read_tsv`):
    quotes in the text are the token ``QUOTATION_MARK`` (restored to ``"``). ``expert_label`` is
    the strategy (the dataset README calls it ``first_label``). ``movies`` / ``genres`` /
    ``people_names`` are ``;``-separated lists. ``*_dict`` columns are parsed with ``ast.literal_eval`` (``nan``
    -> ``None``); a malformed one is an :class:`Issue` and the raw string is kept in
    ``meta["utterances"][i][col + "_raw"]``.

    Returns ``(dialogues, issues)`` in file order; every Dialogue's ``meta`` holds
    ``utterances``: per turn ``{line, utt_id, turn_id, movies, genres, people_names, <dicts>,
    second_label, fine_label, coarse_label, movie_id}``.

    Fatal: missing/empty file, a required column absent from the header. Non-fatal: a row with
    the wrong number of fields, an unknown speaker, bytes that are not UTF-8 or a field longer
    than :data:`rso_lib.data._io.MAX_FIELD_CHARS` (skipped), an unknown strategy label (kept,
    ``strategy=None``), a malformed dict literal (kept).
    """
    path = Path(path)
    split = split or {v: k for k, v in TSV_SPLIT_FILES.items()}.get(path.name, path.stem)
    issues: list[Issue] = []
    dialogues: dict[str, Dialogue] = {}
    parsed: dict[str, Any] = {}  # literal string -> parsed value or the exception it raised
    header, rows = read_tsv(path, "INSPIRED dialog TSV", issues, REQUIRED_TSV_COLUMNS)
    idx = {c: i for i, c in enumerate(header)}
    for lineno, row in rows:
        if not any(x.strip() for x in row):
            continue
        if len(row) != len(header):
            issues.append(Issue(str(path), lineno, None, f"{len(row)} fields, header has {len(header)}", "skipped"))
            continue
        r = {c: row[i] for c, i in idx.items()}
        spk = _speaker(r["speaker"])
        if spk is None:
            issues.append(Issue(str(path), lineno, "speaker", f"unknown speaker {r['speaker']!r}", "skipped"))
            continue
        did = r["dialog_id"].strip()
        if not did:
            issues.append(Issue(str(path), lineno, "dialog_id", "empty dialog_id", "skipped"))
            continue
        strat = _label(r["expert_label"], spk, path, lineno, "expert_label", issues)
        utt = _utterance(r, path, lineno, parsed, issues)
        movies = utt.get("movies") or []
        d = dialogues.get(did)
        if d is None:
            d = dialogues[did] = Dialogue(
                dialog_id=did, turns=[], source="inspired", split=split, meta={"utterances": [], "line": lineno}
            )
        d.turns.append(Turn(speaker=spk, text=restore_quotes(r["text"]), strategy=strat, movies=movies))
        d.meta["utterances"].append(utt)
    if not dialogues:
        raise DataError(path, "no valid utterance row after the header", line=2)
    return list(dialogues.values()), issues


def load_dialog_split(data_dir: str | Path, split: str) -> tuple[list[Dialogue], list[Issue]]:
    """:func:`load_dialog_tsv` for ``train`` (train.tsv), ``valid`` (dev.tsv), ``test`` (test.tsv)."""
    return load_dialog_tsv(tsv_path(data_dir, split), split)
