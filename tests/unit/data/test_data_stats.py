"""Table II and the strategy distribution on the real files."""

from __future__ import annotations

import math

import pytest

from rso_lib.data.stats import PAPER_TABLE2, load_all, split_stats, strategy_distribution, table2


@pytest.fixture(scope="module")
def loaded(data_dir):
    return load_all(data_dir)


def test_table2(loaded, data_dir):
    t = table2(loaded).set_index("dataset")
    ins = t.loc["INSPIRED"]
    assert (ins.dialogues, ins.utterances) == (999, 35686)
    assert (ins.paper_dialogues, ins.paper_utterances, ins.paper_items) == (1001, 35811, 1783)
    red = t.loc["ReDial"]
    assert red.paper_dialogues == PAPER_TABLE2["ReDial"]["dialogues"] == 10006
    if not (data_dir / "redial" / "train_data.jsonl").is_file():  # shared copy: valid_data + redial-test
        assert (red.dialogues, red.utterances) == (1000 + 198, 12395 + 2545)
        assert red.unique_items == 2019 and red.item_mentions == 6327
    if not (data_dir / "inspired" / "dialog" / "train.tsv").is_file():
        assert ins.unique_items == 563  # dev + test only: partial


def test_split_stats(loaded):
    s = split_stats(loaded).set_index(["dataset", "split"])
    assert s.loc[("INSPIRED", "train"), "dialogues"] == 801
    assert s.loc[("INSPIRED", "valid"), "utterances"] == 3538
    assert s.loc[("INSPIRED", "test"), "unique_items"] == 311
    assert s.loc[("ReDial", "valid"), "dialogues"] == 1000
    assert math.isnan(s.loc[("ReDial", "test (RSO)"), "unique_items"])


def test_strategy_distribution(loaded):
    d = strategy_distribution(loaded.inspired_strategy).set_index("strategy")
    assert len(d) == 14
    assert d.share_all.sum() == pytest.approx(1.0)
    assert d.count_all.sum() == 14662 + 1860 + 1764
    assert d.loc["credibility", "count_train"] == 2101
    assert d.share_all.idxmax() == "credibility" and 0.14 < d.loc["credibility", "share_all"] < 0.145
    assert d.share_all.idxmin() == "rephrase_preference"
