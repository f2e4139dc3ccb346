"""ReDial loaders on the real files + malformed-input tests on tmp files."""

from __future__ import annotations

import json

import pytest

from rso_lib.data.records import RECOMMENDER, SEEKER, DataError
from rso_lib.data.redial import UNKNOWN, load_redial_jsonl, load_redial_split, load_redial_test_txt, resolve_mentions


@pytest.fixture(scope="module")
def valid(data_dir):
    return load_redial_split(data_dir, "valid")


def test_valid_counts_and_roles(valid):
    ds, issues = valid
    assert len(ds) == 1000
    assert sum(len(d.turns) for d in ds) == 12395
    d = ds[0]
    assert d.dialog_id == "16162"
    # initiator 271 = seeker, respondent 147 = recommender; the respondent speaks first here
    assert [t.speaker for t in d.turns[:2]] == [RECOMMENDER, SEEKER]
    assert d.turns[1].text == "Hi im looking for a good horroe movie like The Babadook (2014)"
    assert d.turns[2].movies == ["The Shining (1980)", "What Lies Beneath (2000)"]
    assert d.meta["initiatorQuestions"]["202190"] == {"suggested": 1, "seen": 1, "liked": 1}
    assert d.meta["respondentQuestions"]["131178"]["seen"] == 2
    assert d.meta["movieMentions"]["202190"] == "The Shining (1980)"  # double space cleaned


def test_valid_unresolvable_mention_reported(valid):
    ds, issues = valid
    # the real file has exactly one @id missing from its movieMentions (line 119, 4th message)
    assert [(i.line, i.field, i.action) for i in issues] == [(119, "messages[3].text", "kept")]
    assert issues[0].path.endswith("valid_data.jsonl") and "@115908" in issues[0].message
    d = next(d for d in ds if d.meta["line"] == 119)
    assert d.turns[3].text == "I really liked @115908"


def test_redial_test_txt(data_dir):
    ds, issues = load_redial_test_txt(data_dir)
    assert len(ds) == 198 and issues == []
    assert sum(len(d.turns) for d in ds) == 2545
    d = ds[0]
    assert d.dialog_id == "20001" and d.meta["user_id"] == "user_188"
    assert d.meta["genre_dict"] == ["crime", "drama", "thriller"]
    assert "Police Academy (1984)" in d.turns[1].text  # whitespace normalised
    if not (data_dir / "redial" / "test_data.jsonl").is_file():
        assert d.meta["roles"] == "unknown" and {t.speaker for t in d.turns} == {UNKNOWN}


def test_resolve_mentions():
    text, titles, bad = resolve_mentions("like @1 and @2 or @3", {"1": "A  (2000)", "2": None})
    assert text == "like A (2000) and @2 or @3" and titles == ["A (2000)"] and bad == ["2", "3"]


def _rec(cid, msgs, mentions, **kw):
    return {
        "conversationId": cid,
        "initiatorWorkerId": 1,
        "respondentWorkerId": 2,
        "messages": [{"senderWorkerId": s, "text": t} for s, t in msgs],
        "movieMentions": mentions,
        "initiatorQuestions": {},
        "respondentQuestions": {},
        **kw,
    }


def test_raw_malformed(tmp_path):
    p = tmp_path / "train_data.jsonl"
    lines = [
        json.dumps(_rec("c1", [(1, "hi, like @10?"), (2, "try @11 or @99")], {"10": "X (2001)", "11": "Y  (2002)"})),
        '{"conversationId": "c2", "messages": [',  # line 2: broken JSON
        json.dumps({"conversationId": "c3", "messages": []}),  # line 3: no worker ids
        "",
        json.dumps(_rec("c5", [(1, "hello"), (7, "intruder"), (2, "hey")], {})),  # line 5: unknown sender
    ]
    p.write_text("\n".join(lines) + "\n")
    ds, issues = load_redial_jsonl(p)
    assert [d.dialog_id for d in ds] == ["c1", "c5"] and ds[0].split == "train"
    assert [t.text for t in ds[0].turns] == ["hi, like X (2001)?", "try Y (2002) or @99"]
    assert [t.speaker for t in ds[1].turns] == [SEEKER, RECOMMENDER]
    got = [(i.line, i.field, i.action) for i in issues]
    assert got == [
        (1, "messages[1].text", "kept"),
        (2, None, "skipped"),
        (3, "initiatorWorkerId", "skipped"),
        (5, "messages[1].senderWorkerId", "skipped"),
    ]
    assert "@99" in issues[0].message and all(i.path == str(p) for i in issues)


def test_raw_empty_file(tmp_path):
    p = tmp_path / "test_data.jsonl"
    p.write_text("")
    with pytest.raises(DataError, match="test_data.jsonl:1.*empty"):
        load_redial_jsonl(p)
    p.write_text("not json\n")
    with pytest.raises(DataError, match="no valid JSON"):
        load_redial_jsonl(p)


def test_test_txt_roles_from_official_file(tmp_path):
    (tmp_path / "redial").mkdir()
    (tmp_path / "redial" / "redial-test.txt").write_text(
        json.dumps(
            {
                "dialog_id": "c1",
                "dialog": ["what do you like?", "horror", "try It"],
                "user_id": "u",
                "genre_dict": ["Horror"],
            }
        )
        + "\n"
    )
    ds, _ = load_redial_test_txt(tmp_path)
    assert ds[0].meta["roles"] == "unknown"
    (tmp_path / "redial" / "test_data.jsonl").write_text(
        json.dumps(_rec("c1", [(2, "what do"), (2, "you like?"), (1, "horror"), (2, "try It")], {})) + "\n"
    )
    ds, _ = load_redial_test_txt(tmp_path)
    assert ds[0].meta["roles"] == "official"
    assert [t.speaker for t in ds[0].turns] == [RECOMMENDER, SEEKER, RECOMMENDER]
