"""ReDial (Li et al., 2018) loaders.

* :func:`load_redial_jsonl`: the official raw record format, one conversation a line:
  ``{conversationId, initiatorWorkerId, respondentWorkerId, messages: [{messageId?, text,
  timeOffset?, senderWorkerId}], movieMentions: {id: "Title  (year)"}, initiatorQuestions,
  respondentQuestions}``. Files: ``redial/train_data.jsonl`` and ``redial/test_data.jsonl`` from
  the official ``redial_dataset.zip`` (see :mod:`rso_lib.data.fetch`), and ``redial/valid_data.jsonl``
  (PC-CRS's 1,000-dialogue copy in the same format plus extra per-message fields).
  The *initiator* is the seeker, the *respondent* the recommender. Movies appear in the text as
  ``@<movieId>`` and are replaced by their title from ``movieMentions``.
* :func:`load_redial_test_txt`: the RSO authors' ``redial/redial-test.txt`` (198 official test
  dialogues, ``{dialog_id, dialog: [str], user_id, genre_dict}``, titles already in the text,
  consecutive same-speaker messages merged). The file does not say who speaks: when the official
  ``test_data.jsonl`` is at hand the roles come from it (``meta["roles"] = "official"``);
  otherwise every turn has speaker :data:`UNKNOWN` (``meta["roles"] = "unknown"``): we do not
  guess.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from rso_lib.data._io import iter_jsonl
from rso_lib.data.records import RECOMMENDER, SEEKER, Dialogue, Issue, Turn

UNKNOWN = "UNKNOWN"  # speaker of a turn whose role the source file does not give
MENTION_RE = re.compile(r"@(\d+)")
REDIAL_FILES = {
    "train": "redial/train_data.jsonl",
    "valid": "redial/valid_data.jsonl",
    "test": "redial/test_data.jsonl",
}
REDIAL_TEST_TXT = "redial/redial-test.txt"


def clean_title(title: str) -> str:
    """``"The Shining  (1980)"`` -> ``"The Shining (1980)"`` (ReDial pads the year with 2 spaces)."""
    return " ".join(str(title).split())


def resolve_mentions(text: str, mentions: dict[str, Any]) -> tuple[str, list[str], list[str]]:
    """Replace each ``@<id>`` by its title. Returns ``(text, titles, unresolved_ids)``; an id with
    no (or an empty) ``movieMentions`` entry stays as ``@<id>`` in the text."""
    titles: list[str] = []
    unresolved: list[str] = []

    def sub(m: re.Match) -> str:
        mid = m.group(1)
        t = mentions.get(mid)
        if not t:
            unresolved.append(mid)
            return m.group(0)
        t = clean_title(t)
        titles.append(t)
        return t

    return MENTION_RE.sub(sub, text), titles, unresolved


def _parse_record(obj: dict[str, Any], path: Path, lineno: int, split: str, issues: list[Issue]) -> Dialogue | None:
    for key in ("conversationId", "initiatorWorkerId", "respondentWorkerId", "messages"):
        if key not in obj:
            issues.append(Issue(str(path), lineno, key, f"missing field {key!r}", "skipped"))
            return None
    if not isinstance(obj["messages"], list):
        issues.append(Issue(str(path), lineno, "messages", "messages is not a list", "skipped"))
        return None
    mentions = obj.get("movieMentions") or {}
    if isinstance(mentions, list):  # some ReDial copies store [[id, title], ...]
        mentions = {str(m[0]): m[1] for m in mentions if isinstance(m, (list, tuple)) and len(m) == 2}
    if not isinstance(mentions, dict):
        issues.append(
            Issue(str(path), lineno, "movieMentions", "movieMentions is not an object; @ids left unresolved", "kept")
        )
        mentions = {}
    mentions = {str(k): v for k, v in mentions.items()}
    roles = {str(obj["initiatorWorkerId"]): SEEKER, str(obj["respondentWorkerId"]): RECOMMENDER}
    turns: list[Turn] = []
    for k, m in enumerate(obj["messages"]):
        if not isinstance(m, dict) or "text" not in m:
            issues.append(Issue(str(path), lineno, f"messages[{k}]", "message without text", "skipped"))
            continue
        spk = roles.get(str(m.get("senderWorkerId")))
        if spk is None:
            issues.append(
                Issue(
                    str(path),
                    lineno,
                    f"messages[{k}].senderWorkerId",
                    f"sender {m.get('senderWorkerId')!r} is neither the initiator nor the respondent",
                    "skipped",
                )
            )
            continue
        text, titles, unresolved = resolve_mentions(str(m["text"]), mentions)
        for mid in unresolved:
            issues.append(
                Issue(
                    str(path),
                    lineno,
                    f"messages[{k}].text",
                    f"@{mid} not resolvable through movieMentions; left as @{mid}",
                    "kept",
                )
            )
        turns.append(Turn(speaker=spk, text=text, movies=titles))
    return Dialogue(
        dialog_id=str(obj["conversationId"]),
        turns=turns,
        source="redial",
        split=split,
        meta={
            "line": lineno,
            "initiatorWorkerId": obj["initiatorWorkerId"],
            "respondentWorkerId": obj["respondentWorkerId"],
            "movieMentions": {k: (clean_title(v) if v else None) for k, v in mentions.items()},
            "initiatorQuestions": obj.get("initiatorQuestions") or {},
            "respondentQuestions": obj.get("respondentQuestions") or {},
        },
    )


def load_redial_jsonl(path: str | Path, split: str | None = None) -> tuple[list[Dialogue], list[Issue]]:
    """Load a ReDial file in the official raw record format.

    Returns ``(dialogues, issues)``; ``meta`` keeps the worker ids, ``movieMentions`` (titles
    cleaned) and the questionnaires (``initiatorQuestions`` / ``respondentQuestions``:
    ``{movieId: {suggested, seen, liked}}``).

    Non-fatal: broken JSON line / missing top-level field (line skipped); message of an unknown
    sender (message skipped); unresolvable ``@id`` (kept as ``@id``, Issue names file:line and
    ``messages[k].text``). Fatal: missing/empty file, no valid line.
    """
    path = Path(path)
    split = split or next((s for s, f in REDIAL_FILES.items() if Path(f).name == path.name), path.stem)
    issues: list[Issue] = []
    out: list[Dialogue] = []
    for lineno, obj in iter_jsonl(path, issues, "ReDial records"):
        d = _parse_record(obj, path, lineno, split, issues)
        if d is not None:
            out.append(d)
    return out, issues


def load_redial_split(data_dir: str | Path, split: str) -> tuple[list[Dialogue], list[Issue]]:
    """``train`` / ``test`` (official archive) or ``valid`` (``valid_data.jsonl``)."""
    if split not in REDIAL_FILES:
        raise ValueError(f"unknown ReDial split {split!r}; expected one of {tuple(REDIAL_FILES)}")
    return load_redial_jsonl(Path(data_dir) / REDIAL_FILES[split], split)


def available_redial_splits(data_dir: str | Path) -> list[str]:
    """The raw-format splits present in ``data_dir`` (shared data: only ``valid``)."""
    return [s for s, f in REDIAL_FILES.items() if (Path(data_dir) / f).is_file()]


def _official_first_roles(data_dir: Path) -> dict[str, str]:
    """conversationId -> role of the first speaker, from the official test_data.jsonl if present."""
    p = data_dir / REDIAL_FILES["test"]
    if not p.is_file():
        return {}
    dialogues, _ = load_redial_jsonl(p, "test")
    return {d.dialog_id: d.turns[0].speaker for d in dialogues if d.turns}


def load_redial_test_txt(data_dir: str | Path) -> tuple[list[Dialogue], list[Issue]]:
    """Load ``redial/redial-test.txt`` (198 dialogues).

    ``meta = {"user_id", "genre_dict" (lower-cased), "roles": "official" | "unknown", "line"}``.
    Non-fatal: broken JSON line, missing ``dialog_id`` / ``dialog`` (skipped). Fatal: missing or
    empty file.
    """
    data_dir = Path(data_dir)
    path = data_dir / REDIAL_TEST_TXT
    issues: list[Issue] = []
    rows = list(iter_jsonl(path, issues, "RSO ReDial test dialogues"))
    first = _official_first_roles(data_dir)
    out: list[Dialogue] = []
    for lineno, obj in rows:
        did, dialog = obj.get("dialog_id"), obj.get("dialog")
        if not did or not isinstance(dialog, list):
            bad = "dialog_id" if not did else "dialog"
            issues.append(Issue(str(path), lineno, bad, f"missing or invalid {bad}", "skipped"))
            continue
        did = str(did)
        start = first.get(did)
        if start is None:
            speakers = [UNKNOWN] * len(dialog)
        else:  # messages were merged per speaker, so roles alternate from the first one
            other = RECOMMENDER if start == SEEKER else SEEKER
            speakers = [start if i % 2 == 0 else other for i in range(len(dialog))]
        turns = [Turn(speaker=s, text=" ".join(str(t).split())) for s, t in zip(speakers, dialog)]
        g = obj.get("genre_dict")
        out.append(
            Dialogue(
                did,
                turns,
                source="redial",
                split="test",
                meta={
                    "user_id": obj.get("user_id"),
                    "genre_dict": [str(x).strip().lower() for x in g] if isinstance(g, list) else None,
                    "roles": "official" if start is not None else "unknown",
                    "line": lineno,
                },
            )
        )
    return out, issues
