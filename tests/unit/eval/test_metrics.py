"""Metrics on hand-computed cases (paper section IV-C)."""

import math

import pytest

from rso_lib.eval import metrics as M


def test_dist2_hand_computed():
    # "a b a b" -> bigrams (a,b),(b,a),(a,b): 2 distinct / 3; "a b" -> (a,b): 1 more, not distinct
    d = M.distinct_n(["A b a b", "a B"], n=2)
    assert (d.distinct, d.total) == (2, 4)
    assert d.value == pytest.approx(0.5)


def test_dist2_does_not_cross_replies_and_counts_punctuation():
    d = M.distinct_n(["hi", "there !"], n=2)
    assert (d.distinct, d.total) == (1, 1)  # no ("hi","there") bigram across replies
    assert math.isnan(M.distinct_n([], 2).value)
    assert M.distinct_n(["one"], 1).value == 1.0


@pytest.mark.parametrize(
    "pre,post,true,status,value",
    [
        (2, 4, 5, M.PRS_OK, 1 - (5 - 4) / (5 - 2)),  # 2/3
        (2, 2, 5, M.PRS_OK, 0.0),  # no movement
        (2, 5, 5, M.PRS_OK, 1.0),  # full movement
        (3, 1, 5, M.PRS_OK, 1 - 4 / 2),  # moved away: -1
        (4, 3, 2, M.PRS_OVER, None),  # post > true: counted apart (checked first)
        (3, 3, 3, M.PRS_EXCLUDED, None),  # pre == true
        (3, 2, 3, M.PRS_EXCLUDED, None),
        (None, 3, 4, M.PRS_MISSING, None),
        (2.0, float("nan"), 4.0, M.PRS_MISSING, None),
    ],
)
def test_prs_cases(pre, post, true, status, value):
    c = M.persuasiveness(pre, post, true)
    assert c.status == status
    if value is None:
        assert c.value is None
    else:
        assert c.value == pytest.approx(value)


def test_prs_min_gap_for_expected_ratings():
    # true - pre = 0.1: with the default gap 0.5 excluded (else PRS = 1 - 0.6/0.1 = -5)
    assert M.persuasiveness(2.9, 2.4, 3.0, intentions="expected").status == M.PRS_EXCLUDED
    assert M.persuasiveness(2.9, 2.4, 3.0, min_gap=0.0, intentions="expected").value == pytest.approx(-5.0)
    # integer ratings one apart are never excluded
    assert M.persuasiveness(3, 3, 4).value == pytest.approx(0.0)


def test_prs_with_expected_ratings_pre_above_true():
    # pre 4.5 > true 3.0, post 3.0: the dialogue brought the intention to the true level -> 1
    assert M.persuasiveness(4.5, 3.0, 3.0).value == pytest.approx(1.0)


def test_summarise_prs_counts():
    cases = [M.persuasiveness(*t) for t in [(2, 4, 5), (2, 5, 5), (4, 3, 2), (3, 3, 3), (None, 1, 1)]]
    s = M.summarise_prs(cases, seed=0)
    assert (s.n, s.n_over, s.n_excluded, s.n_missing) == (2, 1, 1, 1)
    assert s.mean == pytest.approx((2 / 3 + 1.0) / 2)


def test_credibility_skips_unparsed_turns():
    assert M.credibility([5, None, 2]) == pytest.approx(3.5)
    assert M.credibility([None]) is None
    assert M.credibility([]) is None


def test_rec_success_and_conversion():
    assert M.rec_success(["Action", "comedy"], ["comedy"]) == 1.0
    assert M.rec_success(["action"], ["comedy", "action"]) == 0.0
    assert M.rec_success(None, ["comedy"]) == 0.0
    assert M.conversion_success(True) == 1.0 and M.conversion_success(False) == 0.0


def test_recall_at_k():
    ranking = ["m1", "m2", "m3", "m4", "m5", "m6"]
    valid = {"m3", "m9"}
    assert M.recall_at_k(ranking, valid, 1) == 0.0
    assert M.recall_at_k(ranking, valid, 5) == 1.0
    assert M.recall_at_k(["m6", "m3"], lambda i: i == "m6", 1) == 1.0
    assert M.recall_at_k([], valid, 5) == 0.0
    with pytest.raises(ValueError):
        M.recall_at_k(ranking, valid, 0)


def test_summarise_mean_ci_missing_and_seed():
    vals = [1.0, 0.0, 1.0, 1.0, None, float("nan")]
    s = M.summarise(vals, seed=3)
    assert (s.n, s.n_missing) == (4, 2)
    assert s.mean == pytest.approx(0.75)
    assert 0.0 <= s.ci_low <= s.mean <= s.ci_high <= 1.0
    assert M.summarise(vals, seed=3) == s  # seeded
    one = M.summarise([2.0])
    assert one.mean == 2.0 and math.isnan(one.ci_low)
    assert math.isnan(M.summarise([]).mean)


def test_bootstrap_ci_constant_values_collapse():
    assert M.bootstrap_ci([3.0] * 5) == (3.0, 3.0)


def test_prs_whole_intentions_follow_the_authors_integer_rules():
    # score mode's expected ratings: post 0.17 above true is not "over" on the rating scale
    assert M.persuasiveness(3.2, 4.27, 4.1, intentions="expected").status == M.PRS_OVER
    c = M.persuasiveness(3.2, 4.27, 4.1)  # whole: (3, 4, 4)
    assert c.status == M.PRS_OK and c.value == pytest.approx(1.0)
    # pre and true round to the same rating: excluded, whatever min_gap says
    assert M.persuasiveness(3.6, 3.0, 4.4, min_gap=0.0).status == M.PRS_EXCLUDED
    assert M.persuasiveness(3.6, 3.0, 4.4, min_gap=0.0, intentions="expected").status == M.PRS_OK
    # halves round up (not to even), so 2.5 and 3.5 are different ratings
    assert M.persuasiveness(2.5, 3.5, 3.5).value == pytest.approx(1.0)
    # over on whole ratings: post a full rating above true
    assert M.persuasiveness(2.0, 4.6, 4.1).status == M.PRS_OVER
    with pytest.raises(ValueError, match="intentions"):
        M.persuasiveness(2, 3, 4, intentions="rounded")
    with pytest.raises(ValueError, match="intentions"):  # a typo fails even where a value is missing
        M.persuasiveness(None, 3, 4, intentions="rounded")
