"""INSPIRED loaders on the real files + malformed-input tests on tmp files."""

from __future__ import annotations

import json

import pytest

from rso_lib.data.inspired import (
    TSV_COLUMNS,
    load_dialog_split,
    load_dialog_tsv,
    load_strategy_split,
    parse_literal,
)
from rso_lib.data.records import RECOMMENDER, SEEKER, DataError
from rso_lib.strategies import STRATEGIES


@pytest.fixture(scope="module")
def splits(data_dir):
    return {s: load_strategy_split(data_dir, s) for s in ("train", "valid", "test")}


@pytest.fixture(scope="module")
def tsvs(data_dir):
    return {s: load_dialog_split(data_dir, s) for s in ("valid", "test")}


def test_strategy_split_counts(splits):
    n = {s: len(d) for s, (d, _) in splits.items()}
    assert n == {"train": 801, "valid": 99, "test": 99}
    assert sum(n.values()) == 999
    assert {s: sum(len(x.turns) for x in d) for s, (d, _) in splits.items()} == {
        "train": 28710,
        "valid": 3538,
        "test": 3438,
    }
    assert all(iss == [] for _, iss in splits.values())
    assert len({x.dialog_id for d, _ in splits.values() for x in d}) == 999  # no id in two splits


def test_utterance_rows_35686(splits, tsvs):
    """35,686 = the train split's utterances (train.tsv is not in the shared copy) + every row of
    dev.tsv + every row of test.tsv."""
    train_rows = sum(len(x.turns) for x in splits["train"][0])
    tsv_rows = sum(len(x.turns) for d, _ in tsvs.values() for x in d)
    assert train_rows + tsv_rows == 35686


def test_strategy_labels(splits):
    train, _ = splits["train"]
    rec = [t for d in train for t in d.turns if t.speaker == RECOMMENDER]
    assert all(t.strategy in STRATEGIES for t in rec)  # snake_case, all labelled
    assert all(t.strategy is None for d in train for t in d.turns if t.speaker == SEEKER)
    assert {t.strategy for t in rec} == set(STRATEGIES)  # all 14 occur
    assert len(rec) == 14662
    cred = sum(t.strategy == "credibility" for t in rec) / len(rec)
    assert 0.13 < cred < 0.15  # ~14% credibility
    first = train[0]
    assert (first.turns[0].text, first.turns[0].strategy) == ("Hi there!", "no_strategy")
    assert first.meta["user_id"] == "user_364" and first.meta["genre_dict"] == ["action", "comedy"]
    assert splits["valid"][0][0].meta["genre_dict"] is None  # valid has no genre_dict
    assert not any("QUOTATION_MARK" in t.text for d in train for t in d.turns)
    assert any('"Black Widow"' in t.text for t in first.turns)


def test_splits_match_tsv_row_for_row(splits, tsvs):
    for s in ("valid", "test"):
        a, b = splits[s][0], {d.dialog_id: d for d in tsvs[s][0]}
        assert {d.dialog_id for d in a} == set(b)  # same dialogues (in another order)
        for x in a:
            y = b[x.dialog_id]
            assert [(t.speaker, t.text, t.strategy) for t in x.turns] == [
                (t.speaker, t.text, t.strategy) for t in y.turns
            ]


def test_tsv_real_dicts_and_issues(tsvs):
    dev, issues = tsvs["valid"]
    assert len(dev) == 99
    # dev.tsv: one conversation's movie_dict lacks a quote; reported per row, rows kept
    assert {(i.field, i.action) for i in issues} == {("movie_dict", "kept")}
    assert issues[0].line == 2896 and issues[0].path.endswith("dev.tsv")
    assert sum(len(d.turns) for d in dev) == 3538  # no row lost
    utt = dev[0].meta["utterances"][0]
    assert isinstance(utt["movie_dict"], dict) and isinstance(utt["genre_dict"], dict)
    nxt = dev[0].meta["utterances"][1]
    assert (
        nxt["movie_dict"] == utt["movie_dict"] and nxt["movie_dict"] is not utt["movie_dict"]
    )  # parsed once, not shared
    assert tsvs["test"][1] == []
    # the `movies` column is a ';'-separated list
    assert any(len(t.movies) > 1 for d in tsvs["test"][0] for t in d.turns)


def test_parse_literal_nan():
    assert parse_literal("{'a': nan, 'b': 1}") == {"a": None, "b": 1}
    with pytest.raises(SyntaxError):
        parse_literal("{'a': 0, 'b: 1}")
    with pytest.raises(ValueError):
        parse_literal("__import__('os')")  # never evaluated


# ---------------------------------------------------------------------------------------------
# malformed input
# ---------------------------------------------------------------------------------------------


def _row(did, spk, text, label, movie_dict="{}"):
    r = dict.fromkeys(TSV_COLUMNS, "")
    r.update(dialog_id=did, utt_id="1", speaker=spk, turn_id="1", text=text, movie_dict=movie_dict, expert_label=label)
    return "\t".join(r[c] for c in TSV_COLUMNS)


def test_tsv_missing_column(tmp_path):
    p = tmp_path / "dev.tsv"
    cols = [c for c in TSV_COLUMNS if c != "expert_label"]
    p.write_text("\t".join(cols) + "\n" + "\t".join(["x"] * len(cols)) + "\n")
    with pytest.raises(DataError) as e:
        load_dialog_tsv(p)
    assert e.value.path == str(p) and e.value.line == 1 and e.value.field == "expert_label"
    assert "dev.tsv:1 [expert_label]" in str(e.value)


def test_tsv_empty_file(tmp_path):
    p = tmp_path / "test.tsv"
    p.write_text("")
    with pytest.raises(DataError, match="test.tsv:1.*empty"):
        load_dialog_tsv(p)


def test_tsv_unknown_label_and_bad_rows_kept(tmp_path):
    p = tmp_path / "dev.tsv"
    p.write_text(
        "\n".join(
            [
                "\t".join(TSV_COLUMNS),
                _row("d1", "RECOMMENDER", "Hi QUOTATION_MARKthereQUOTATION_MARK", "offer_help"),
                _row("d1", "SEEKER", "hello", ""),
                _row("d1", "RECOMMENDER", "Trust me", "mind_control"),  # line 4: unknown label
                _row("d1", "RECOMMENDER", "See it", "encouragement", "{'A (2000)': 0, 'B: 1}"),  # line 5: bad dict
                "d1\tonly\tthree",  # line 6: wrong field count
                _row("d1", "ROBOT", "beep", "no_strategy"),  # line 7: unknown speaker
                _row("d2", "RECOMMENDER", "Bye", "No Strategy"),
            ]
        )
        + "\n"
    )
    dialogues, issues = load_dialog_tsv(p)
    assert [d.dialog_id for d in dialogues] == ["d1", "d2"]
    d1 = dialogues[0]
    assert [t.strategy for t in d1.turns] == ["offer_help", None, None, "encouragement"]
    assert d1.turns[0].text == 'Hi "there"'
    assert d1.meta["utterances"][3]["movie_dict_raw"] == "{'A (2000)': 0, 'B: 1}"
    got = [(i.line, i.field, i.action) for i in issues]
    assert got == [
        (4, "expert_label", "kept"),
        (5, "movie_dict", "kept"),
        (6, None, "skipped"),
        (7, "speaker", "skipped"),
    ]
    assert all(i.path == str(p) for i in issues)
    assert "mind_control" in issues[0].message and "dev.tsv:4 [expert_label]" in str(issues[0])


def _split_dir(tmp_path, lines):
    d = tmp_path / "inspired" / "strategy"
    d.mkdir(parents=True)
    (d / "inspired-train.txt").write_text("\n".join(lines) + "\n")
    return tmp_path


def test_strategy_split_broken_json_and_unknown_label(tmp_path):
    good = {
        "dialog_id": "a",
        "user_id": "u1",
        "genre_dict": ["Action"],
        "dialog": [
            {"text": "Hi", "speaker": "RECOMMENDER", "strategy": "Offer Help"},
            {"text": "yo", "speaker": "SEEKER", "strategy": "NaN"},
            {"text": "Trust me", "speaker": "RECOMMENDER", "strategy": "Hypnosis"},
        ],
    }
    root = _split_dir(
        tmp_path,
        [
            json.dumps(good),
            '{"dialog_id": "b", "dialog": [',
            json.dumps({"dialog_id": "c"}),
            json.dumps(dict(good, dialog_id="d")),
        ],
    )
    ds, issues = load_strategy_split(root, "train")
    assert [d.dialog_id for d in ds] == ["a", "d"]  # valid rows kept
    assert [t.strategy for t in ds[0].turns] == ["offer_help", None, None]
    assert ds[0].meta["genre_dict"] == ["action"]
    got = [(i.line, i.field, i.action) for i in issues]
    assert got == [
        (1, "dialog[2].strategy", "kept"),
        (2, None, "skipped"),
        (3, "dialog", "skipped"),
        (4, "dialog[2].strategy", "kept"),
    ]
    assert all(i.path.endswith("inspired-train.txt") for i in issues)
    assert "broken JSON" in issues[1].message


def test_strategy_split_empty_and_missing(tmp_path):
    root = _split_dir(tmp_path, [""])
    with pytest.raises(DataError, match="inspired-train.txt:1"):
        load_strategy_split(root, "train")
    with pytest.raises(DataError, match="inspired-test.txt.*not found"):
        load_strategy_split(root, "test")
    with pytest.raises(ValueError):
        load_strategy_split(root, "dev")
