"""User personas for the LLM user simulator.

* INSPIRED seeker surveys (``inspired/survey/seeker_demographic.tsv`` + ``seeker_personality.tsv``):
  one :class:`Persona` per seeker ``user_id`` with demographics and the Big-5 scores (1..6), and a
  second-person description written here (our wording). The RSO authors' simulation targets point
  at these user ids (both for INSPIRED and ReDial).
* PC-CRS personas (``personas/profile.csv``): 48 short personas, emotion x age group. The file
  has a UTF-8 BOM, no header, and 4 quoted columns: ``<Emotion>---Age group=<Group>``, index,
  long text, short text; one row a line.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rso_lib.data._io import iter_text_lines, read_tsv, require_file
from rso_lib.data.records import DataError, Issue, Persona

SEEKER_DEMOGRAPHIC = "inspired/survey/seeker_demographic.tsv"
SEEKER_PERSONALITY = "inspired/survey/seeker_personality.tsv"
PCCRS_PROFILES = "personas/profile.csv"

BIG5 = ("Extrovert", "Agreeable", "Conscientious", "Neurotic", "Open")
# (high, low) wording per Big-5 trait, on the survey's 1..6 scale (midpoint 3.5).
_BIG5_WORDS = {
    "Extrovert": ("outgoing and talkative", "reserved and quiet"),
    "Agreeable": ("friendly and easy to please", "critical and hard to please"),
    "Conscientious": ("careful and thorough when deciding", "spontaneous and quick to decide"),
    "Neurotic": ("easily worried or irritated", "calm and relaxed"),
    "Open": ("curious about new and unusual films", "drawn to familiar, conventional films"),
}
_AGE_RE = re.compile(r"^\d+ - \d+$|^\d+ or (older|younger)$")
_GENDERS = {"Female", "Male", "Other", "Prefer not to say"}
DEMOGRAPHIC_FIELDS = ("age_group", "gender", "race", "degree", "job", "marital_status", "political_view", "religion")


def _read_tsv(
    path: Path, what: str, required: tuple[str, ...], issues: list[Issue]
) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """Header and non-blank rows; undecodable lines and over-long fields are Issues (skipped)."""
    header, rows = read_tsv(path, what, issues, required)
    return header, [(i, r) for i, r in rows if any(c.strip() for c in r)]


def _realign(rec: dict[str, Any], path: Path, lineno: int, issues: list[Issue]) -> dict[str, Any]:
    """A few demographic rows are shifted by one column (an empty age group dropped, or one extra
    field before it). Re-align them and record an Issue; leave values we cannot place as None."""
    age = rec.get("age_group") or ""
    if _AGE_RE.match(age):
        return rec
    vals = [rec.get(c) for c in DEMOGRAPHIC_FIELDS]
    if age in _GENDERS:  # age group missing: everything from age_group on moved one left
        fixed = [None] + vals[:-1]
        issues.append(
            Issue(str(path), lineno, "age_group", f"age group missing ({age!r} is a gender); columns realigned", "kept")
        )
    elif len(vals) > 1 and _AGE_RE.match(vals[1] or ""):  # one extra field before the age group
        fixed = vals[1:] + [None]
        issues.append(
            Issue(
                str(path),
                lineno,
                "age_group",
                f"unexpected value {age!r} before the age group; columns realigned",
                "kept",
            )
        )
    else:
        issues.append(Issue(str(path), lineno, "age_group", f"not an age group: {age!r}", "kept"))
        fixed = [None] + vals[1:]
    rec.update(dict(zip(DEMOGRAPHIC_FIELDS, fixed)))
    return rec


def _score(v: str) -> float | None:
    try:
        x = float(v)
    except (TypeError, ValueError):
        return None
    return x if 1.0 <= x <= 6.0 else None


def describe_seeker(fields: dict[str, Any]) -> str:
    """Second-person persona text from survey fields (demographics + Big-5). Our own wording;
    political view and religion are kept in ``fields`` but not put into the prompt."""
    who = []
    age = fields.get("age_group")
    gender = (fields.get("gender") or "").lower()
    noun = {"female": "woman", "male": "man"}.get(gender, "person")
    who.append(
        f"You are a {age.replace(' - ', '-')}-year-old {noun}"
        if age and "-" in age
        else f"You are a {noun}" + (f" aged {age}" if age else "")
    )
    extra = [x for x in (fields.get("job"), fields.get("degree")) if x]
    text = who[0] + (f" ({'; '.join(extra)})" if extra else "") + "."
    traits = []
    big5 = fields.get("big5") or {}
    for t in BIG5:
        s = big5.get(t)
        if s is None:
            continue
        hi, lo = _BIG5_WORDS[t]
        if s >= 4.0:
            traits.append(hi)
        elif s <= 3.0:
            traits.append(lo)
    if traits:
        text += " In conversation you are " + "; ".join(traits) + "."
    text += (
        " You are looking for a movie to watch and chat with a recommender about it, answering in"
        " one or two short sentences as yourself."
    )
    return text


def load_seeker_personas(data_dir: str | Path) -> tuple[dict[str, Persona], list[Issue]]:
    """INSPIRED seeker personas keyed by ``user_id`` (``seeker_id`` / ``User_ID`` columns).

    A seeker with several survey rows (74 users took part more than once) keeps the first one;
    the survey ids of all are in ``fields["survey_ids"]``. Big-5 comes from the personality
    survey when the user has one (889 do). Shifted demographic rows are realigned (Issue, kept).
    """
    data_dir = Path(data_dir)
    issues: list[Issue] = []
    dpath, ppath = data_dir / SEEKER_DEMOGRAPHIC, data_dir / SEEKER_PERSONALITY
    header, rows = _read_tsv(dpath, "INSPIRED seeker demographics", ("seeker_id", "age_group", "gender"), issues)
    fields_by_user: dict[str, dict[str, Any]] = {}
    for lineno, r in rows:
        rec = {c: (r[i].strip() if i < len(r) and r[i].strip() else None) for i, c in enumerate(header)}
        uid = rec.get("seeker_id")
        if not uid:
            issues.append(Issue(str(dpath), lineno, "seeker_id", "row without a seeker_id", "skipped"))
            continue
        if uid in fields_by_user:
            fields_by_user[uid]["survey_ids"].append(rec.get("seeker_survey_id"))
            continue
        rec = _realign(rec, dpath, lineno, issues)
        f = {c: rec.get(c) for c in DEMOGRAPHIC_FIELDS}
        f["survey_ids"] = [rec.get("seeker_survey_id")]
        f["source_line"] = lineno
        fields_by_user[uid] = f
    pheader, prow = _read_tsv(ppath, "INSPIRED seeker personality", ("User_ID",) + BIG5, issues)
    for lineno, r in prow:
        rec = dict(zip(pheader, (c.strip() for c in r)))
        uid = rec.get("User_ID")
        if not uid:
            issues.append(Issue(str(ppath), lineno, "User_ID", "row without a User_ID", "skipped"))
            continue
        big5 = {}
        for t in BIG5:
            s = _score(rec.get(t, ""))
            if s is None:
                issues.append(Issue(str(ppath), lineno, t, f"score not in 1..6: {rec.get(t)!r}", "kept"))
            big5[t] = s
        values = {k: _score(v) for k, v in rec.items() if k not in ("User_ID",) + BIG5}
        f = fields_by_user.setdefault(uid, {c: None for c in DEMOGRAPHIC_FIELDS} | {"survey_ids": []})
        f["big5"], f["values"] = big5, values
    personas = {
        uid: Persona(user_id=uid, description=describe_seeker(f), fields=f) for uid, f in fields_by_user.items()
    }
    return personas, issues


def _csv_rows(path: Path, issues: list[Issue]) -> Iterator[tuple[int, list[str]]]:
    """``(line, fields)`` per line of a CSV file with standard quoting and no multi-line cells
    (PC-CRS's ``profile.csv``). Each line is parsed alone, so a line that is not UTF-8, has an
    unbalanced quote or a cell over ``csv``'s 131,072-character field limit costs that line only
    (an Issue, skipped), never the rows after it."""
    for lineno, text in iter_text_lines(path, issues):  # a leading BOM is dropped
        if text is None:
            continue
        try:
            row = next(csv.reader([text], strict=True), [])
        except csv.Error as e:
            issues.append(Issue(str(path), lineno, None, f"unreadable CSV line: {e}", "skipped"))
            continue
        yield lineno, row


def load_pccrs_personas(data_dir: str | Path) -> tuple[list[Persona], list[Issue]]:
    """PC-CRS ``profile.csv``: 48 personas. ``user_id = "pccrs_<index>"``, description = the
    short text (4th column), ``fields = {emotion, age_group, long_description}``.

    Non-fatal: a row with != 4 columns, a malformed key, a line that is not UTF-8 or that ``csv``
    cannot read (skipped). Fatal: missing/empty file, no valid row.
    """
    path = require_file(Path(data_dir) / PCCRS_PROFILES, "PC-CRS personas")
    issues: list[Issue] = []
    out: list[Persona] = []
    for lineno, row in _csv_rows(path, issues):
        if not row or not any(c.strip() for c in row):
            continue
        if len(row) != 4:
            issues.append(Issue(str(path), lineno, None, f"{len(row)} columns, expected 4", "skipped"))
            continue
        key, idx, long_text, short_text = (c.strip() for c in row)
        m = re.match(r"^(?P<emo>[^-]+)---Age group=(?P<age>.+)$", key)
        if not m:
            issues.append(
                Issue(str(path), lineno, "key", f"expected '<Emotion>---Age group=<Group>', got {key!r}", "skipped")
            )
            continue
        out.append(
            Persona(
                user_id=f"pccrs_{idx}",
                description=short_text or long_text,
                fields={
                    "emotion": m["emo"].strip(),
                    "age_group": m["age"].strip(),
                    "long_description": long_text,
                    "line": lineno,
                },
            )
        )
    if not out:
        raise DataError(path, "no valid persona row", line=1)
    return out, issues
