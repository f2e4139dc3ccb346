"""SFT (Eq. 6) on real INSPIRED examples: loss maths, metrics, the loss falls, majority baseline."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from rso_lib.experts.planner import Planner, make_tiny_encoder
from rso_lib.strategies import STRATEGY_TO_ID
from rso_lib.train.sft import (
    SFTConfig,
    classification_metrics,
    confusion,
    epoch_order,
    evaluate,
    majority_baseline,
    sft_loss,
    subsample,
    train_sft,
)


@pytest.fixture(scope="module")
def examples(data_dir):
    from rso_lib.data.inspired import load_strategy_split
    from rso_lib.data.sft import build_sft_examples

    out = {}
    for split in ("train", "test"):
        dialogues, issues = load_strategy_split(data_dir, split)
        out[split] = build_sft_examples(dialogues)
    return out


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return make_tiny_encoder(tmp_path_factory.mktemp("tiny_enc"), seed=0)


def test_sft_loss_is_eq6_by_hand():
    logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 1.0, 3.0]])
    labels = torch.tensor([0, 1])
    # -(1/2) [log softmax(l0)[0] + log softmax(l1)[1]]
    by_hand = -0.5 * ((2 - math.log(math.exp(2) + 2)) + (1 - math.log(1 + math.e + math.exp(3))))
    assert float(sft_loss(logits, labels)) == pytest.approx(by_hand, rel=1e-6)


def test_epoch_order_is_a_function_of_seed_and_epoch():
    a = epoch_order(50, seed=0, epoch=1)
    assert sorted(a.tolist()) == list(range(50))
    assert np.array_equal(a, epoch_order(50, 0, 1))
    assert not np.array_equal(a, epoch_order(50, 0, 2))
    assert not np.array_equal(a, epoch_order(50, 1, 1))
    xs = list(range(100))
    s = subsample(xs, 10, seed=0)
    assert len(s) == 10 and s == sorted(s) and s == subsample(xs, 10, seed=0) and s != subsample(xs, 10, seed=1)
    assert subsample(xs, None, 0) == xs and subsample(xs, 1000, 0) == xs


def test_metrics_by_hand():
    y_true = [0, 0, 1, 1, 2]
    y_pred = [0, 1, 1, 1, 0]
    m = classification_metrics(y_true, y_pred)
    assert m["accuracy"] == pytest.approx(3 / 5)
    # F1: class0 p=1/2 r=1/2 -> 1/2; class1 p=2/3 r=1 -> 4/5; class2 0  => mean 13/30
    assert m["macro_f1"] == pytest.approx((0.5 + 0.8 + 0.0) / 3)
    cm = confusion(y_true, y_pred)
    assert (
        cm.shape == (14, 14) and cm.sum() == 5 and cm[0, 0] == 1 and cm[0, 1] == 1 and cm[1, 1] == 2 and cm[2, 0] == 1
    )
    from rso_lib.plots import plot_confusion

    fig = plot_confusion(cm)
    assert fig.axes
    with pytest.raises(ValueError):
        classification_metrics([], [])


def test_majority_baseline_on_inspired(examples):
    mb = majority_baseline(examples["train"], examples["test"])
    assert mb["strategy"] == "credibility"  # the most frequent label of INSPIRED train
    assert 0.10 < mb["accuracy"] < 0.18  # ~14% of recommender turns
    y = [STRATEGY_TO_ID[e.strategy] for e in examples["test"]]
    assert mb["accuracy"] == pytest.approx(np.mean(np.array(y) == STRATEGY_TO_ID["credibility"]))


def test_sft_loss_falls_on_real_inspired_tiny(examples, tiny_dir, tmp_path):
    """A small subset of real INSPIRED train: the Eq. 6 loss on those examples falls."""
    train = subsample(examples["train"], 48, seed=0)
    planner = Planner.from_config(str(tiny_dir), max_length=48, seed=0)
    before = evaluate(planner, train)["loss"]
    cfg = SFTConfig(encoder=str(tiny_dir), max_length=48, lr=3e-3, batch_size=16, epochs=4, log_every=0)
    res = train_sft(cfg, train, train[:16], tmp_path / "sft", planner=planner, log=lambda s: None)
    after = evaluate(res.planner, train)["loss"]
    assert after < before - 0.3, (before, after)
    assert len(res.step_losses) == 12 and len(res.history) == 4
    assert (res.planner_dir / "model.safetensors").is_file()
    assert np.mean(res.step_losses[-3:]) < np.mean(res.step_losses[:3])


@pytest.mark.slow
def test_sft_loss_falls_on_real_inspired_minilm(examples, tmp_path):
    """Same on the real MiniLM planner; also the held-out loss on other train examples falls."""
    train = subsample(examples["train"], 64, seed=0)
    held = subsample(examples["test"], 64, seed=0)
    planner = Planner.from_config(max_length=64, seed=0)
    before, before_held = evaluate(planner, train)["loss"], evaluate(planner, held)["loss"]
    cfg = SFTConfig(max_length=64, lr=2e-4, batch_size=16, epochs=2, log_every=0, select_best=False)
    res = train_sft(cfg, train, [], tmp_path / "sft", planner=planner, log=lambda s: None)
    after, after_held = evaluate(res.planner, train)["loss"], evaluate(res.planner, held)["loss"]
    assert after < before - 0.2, (before, after)
    assert after_held < before_held, (before_held, after_held)
