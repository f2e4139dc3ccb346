"""PLM baselines (UniCRS, BARCOR): knowledge graphs, examples, overfitting a handful of real
dialogues, bitwise-exact resume after a crash, and an end-to-end engine run."""

from __future__ import annotations

import contextlib
import json

import pytest
import torch

from rso_lib.baselines.barcor import BARCOR, BARCORConfig
from rso_lib.baselines.examples import SLOT, build_examples
from rso_lib.baselines.kg import EntityLinker, build_kg, mask_items
from rso_lib.baselines.train import PLMTrainConfig, train_plm


@pytest.fixture(scope="module")
def world(data_dir):
    """A real sub-catalogue (300 ReDial movies + the movies of three real recommender turns) and
    three training examples from three dialogues, each naming one different movie."""
    from rso_lib.data.kb import KnowledgeBase, load_kb
    from rso_lib.data.redial import load_redial_split

    full = load_kb(data_dir)
    dialogues, _ = load_redial_split(data_dir, "valid")
    kg_full = build_kg("redial", full, data_dir)
    exs = build_examples(dialogues[:10], full, EntityLinker(kg_full, full))
    picked, seen = [], set()
    for e in exs:  # one per dialogue, each naming one movie
        if len(e.targets) == 1 and not {e.targets[0], e.dialog_id} & seen and len(e.context) >= 2:
            picked.append(e)
            seen |= {e.targets[0], e.dialog_id}
        if len(picked) == 3:
            break
    assert len(picked) == 3
    keep = list(dict.fromkeys(sorted(full.items)[:300] + [e.targets[0] for e in picked]))
    kb = KnowledgeBase([full.get(i) for i in keep], source="redial-subset")
    kg = build_kg("kb", kb)
    # rebuild the examples on the sub-catalogue's graph (entity ids differ from the full graph's)
    by_id = {d.dialog_id: d for d in dialogues[:10]}
    sub = build_examples([by_id[d] for d in dict.fromkeys(e.dialog_id for e in picked)], kb, EntityLinker(kg, kb))
    want = {(e.dialog_id, e.response) for e in picked}
    sub = [e for e in sub if (e.dialog_id, e.response) in want]
    assert [e.targets for e in sub] == [e.targets for e in picked]
    return {"kb": kb, "kg": kg, "examples": sub, "full": full, "kg_full": kg_full}


def test_redial_kg_files_and_kb_fact_graph(world):
    kg = world["kg_full"]
    s = kg.summary()
    assert s["source"] == "redial-kg" and s["items"] == 6583 and s["relations"] == 8
    assert s["edges"] % 2 == 0  # every edge has its inverse
    h, r, t = (int(x) for x in kg.edges[0])
    assert any((row == [t, r + 4, h]).all() for row in kg.edges[len(kg.edges) // 2 :][:50])
    shining = world["full"].lookup("The Shining (1980)")
    assert kg.entities[kg.item_entity[shining.item_id]] == "The Shining (1980)"
    # the fact graph: an item is linked to its genres and director
    kb, fkg = world["kb"], world["kg"]
    it = next(iter(kb))
    heads = fkg.edges[fkg.edges[:, 0] == fkg.item_entity[it.item_id]]
    linked = {fkg.entities[t] for _, _, t in heads}
    assert set(it.genres) <= linked and set(it.director) <= linked


def test_linker_and_slot_masking(world):
    full, kg = world["full"], world["kg_full"]
    lk = EntityLinker(kg, full)
    names = lambda t: [kg.entities[e] for e in lk.link(t)]  # noqa: E731
    assert names("Have you seen The Shining (1980)? It is a horror classic") == ["The Shining (1980)", "horror"]
    assert names("Have you seen Frozen 2?") == []  # a sequel the catalogue lacks is not "Frozen"
    assert names("How about Avengers: Endgame?") == []
    assert names("the lake was frozen") == []
    assert mask_items("I loved The Shining (1980) a lot", ["The Shining"]) == f"I loved {SLOT} a lot"
    e = world["examples"][0]
    assert SLOT in e.response and e.targets and full.items[e.targets[0]].title not in e.response


def _barcor(world, seed=0):
    torch.manual_seed(seed)
    return BARCOR(BARCORConfig(kg_source="kb", d_model=64, ffn=128, max_context_tokens=64), world["kg"], world["kb"])


@contextlib.contextmanager
def _torch_threads(n: int):
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


@pytest.fixture(scope="module")
def trained_barcor(world, tmp_path_factory):
    # One thread, whatever the kit chose for this machine: with two, the R-GCN's scatter-add sums
    # in a varying order (see _one_thread below), so the trained model -- and whether it passes
    # the overfitting checks -- depended on how busy the machine was (one failure, at load 4).
    with _torch_threads(1):
        m = _barcor(world)
        cfg = PLMTrainConfig(stages=[["rec", 30], ["conv", 40]], batch_size=3, lr=3e-3, ckpt_every=0)
        metrics = train_plm(m, world["examples"], cfg, tmp_path_factory.mktemp("barcor"))
    return m, metrics


def test_barcor_overfits(world, trained_barcor):
    m, metrics = trained_barcor
    st = metrics["stages"]
    assert st["rec"]["last_loss"] < 0.3 * st["rec"]["first_loss"]
    assert st["conv"]["last_loss"] < 0.3 * st["conv"]["first_loss"]
    scores = m.item_scores([e.context for e in world["examples"]])
    assert [m.item_ids[j] for j in scores.argmax(1)] == [e.targets[0] for e in world["examples"]]
    # it learned the reply templates, slot included
    outs = m.generate([e.context for e in world["examples"]], max_new_tokens=30)
    assert sum(o == e.response.strip() for o, e in zip(outs, world["examples"])) >= 2, outs


class _Crash(RuntimeError):
    pass


def _crash_at(step):
    def f(rec):
        if rec["step"] == step:
            raise _Crash

    return f


def _assert_same(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    diff = [k for k in sa if not torch.equal(sa[k], sb[k])]
    assert not diff, f"weights differ in {diff[:5]}"


@pytest.fixture(autouse=True)
def _one_thread():
    """Bitwise resume is checked at one torch thread: with several, the R-GCN's CPU scatter-add
    (``index_add_`` and the backward of indexing) sums in a varying order, so even two
    uninterrupted runs differ in the last bits (measured: 2 threads fail this check, 1 passes)."""
    with _torch_threads(1):
        yield


def _resume_case(make, examples, stages, tmp_path, crash_at, ckpt_every):
    cfg = PLMTrainConfig(stages=stages, batch_size=2, lr=3e-3, ckpt_every=ckpt_every, seed=3)
    full = make()
    m_full = train_plm(full, examples, cfg, tmp_path / "full")
    part = make()
    with pytest.raises(_Crash):
        train_plm(part, examples, cfg, tmp_path / "part", on_step=_crash_at(crash_at))
    resumed = make()  # a fresh process would rebuild the model from its seed, then resume
    m_res = train_plm(resumed, examples, cfg, tmp_path / "part")
    _assert_same(full, resumed)
    assert [r["loss"] for r in m_res["history"]] == [r["loss"] for r in m_full["history"]]
    assert (tmp_path / "part" / "model" / "model.safetensors").is_file()
    return full


def test_barcor_resume_is_exact(world, tmp_path):
    _resume_case(
        lambda: _barcor(world), world["examples"], [["rec", 4], ["conv", 4]], tmp_path, crash_at=6, ckpt_every=3
    )
    # a checkpoint of another run is refused
    with pytest.raises(ValueError, match="different run"):
        train_plm(
            _barcor(world), world["examples"], PLMTrainConfig(stages=[["rec", 5]], ckpt_every=3), tmp_path / "part"
        )


def test_save_load_round_trip(world, trained_barcor, tmp_path):
    from rso_lib.baselines.registry import load_plm

    m, _ = trained_barcor
    m.save(tmp_path / "m")
    meta = json.loads((tmp_path / "m" / "plm.json").read_text())
    assert meta["kind"] == "barcor" and meta["config"]["kg_source"] == "kb"
    back = load_plm(tmp_path / "m", world["kb"])
    h = [e.context for e in world["examples"]]
    assert torch.equal(back.item_scores(h), m.item_scores(h))
    with pytest.raises(ValueError, match="knowledge graph differs"):
        load_plm(tmp_path / "m", list(world["kb"])[:-1])


@pytest.mark.slow
def test_unicrs_overfits_and_resumes_exactly(world, tmp_path):
    """The real frozen SmolLM2-135M + MiniLM, an R-GCN over the fact graph, 3 dialogues."""
    from rso_lib.baselines.unicrs import UniCRS, UniCRSConfig

    ucfg = UniCRSConfig(
        kg_source="kb",
        max_context_tokens=40,
        max_encoder_tokens=24,
        max_entities=8,
        task_prompts=4,
        max_response_tokens=16,
    )

    def make(dropout=0.1):
        torch.manual_seed(0)
        return UniCRS(UniCRSConfig(**{**ucfg.__dict__, "dropout": dropout}), world["kg"], world["kb"])

    exs = world["examples"]
    m = make(dropout=0.0)
    cfg = PLMTrainConfig(stages=[["pretrain", 1], ["rec", 8], ["conv", 4]], batch_size=3, lr=5e-3, ckpt_every=0)
    metrics = train_plm(m, exs, cfg, tmp_path / "fit")
    st = metrics["stages"]
    assert st["rec"]["last_loss"] < 0.5 * st["rec"]["first_loss"], st
    conv = [r["loss"] for r in metrics["history"] if r["task"] == "conv"]
    assert conv[-1] < conv[0], conv
    scores = m.item_scores([e.context for e in exs])
    assert [m.item_ids[j] for j in scores.argmax(1)] == [e.targets[0] for e in exs]
    # resume across a stage boundary, dropout on (its RNG state is part of the checkpoint)
    _resume_case(make, exs, [["pretrain", 1], ["rec", 1], ["conv", 2]], tmp_path, crash_at=3, ckpt_every=2)


def test_engine_runs_barcor_end_to_end(world, trained_barcor, tmp_path):
    """build_system("BARCOR", plm=model) with the agenda simulator: the ranking is the model's,
    the reply is its generator's, and the transcript is valid."""
    from rso_lib.data.records import Persona, SimTarget
    from rso_lib.dialogue.config import EngineConfig
    from rso_lib.dialogue.systems import build_system
    from rso_lib.dialogue.transcript import validate_transcript
    from rso_lib.llm.scripted import ScriptedLLM

    m, _ = trained_barcor
    kb = world["kb"]
    tgts = [
        SimTarget(f"t{i}", "redial", f"u{i}", Persona(f"u{i}", "a movie fan"), list(kb.items[e.targets[0]].genres[:1]))
        for i, e in enumerate(world["examples"][:2])
    ]
    with pytest.raises(ValueError, match="needs a trained model"):
        build_system("BARCOR", EngineConfig(reward="simulator"), kb=kb, llms={"actor": ScriptedLLM()})
    with pytest.raises(ValueError, match="got a barcor model"):
        build_system("UNICRS", EngineConfig(reward="simulator"), kb=kb, llms={"actor": ScriptedLLM()}, plm=m)
    actor_llm = ScriptedLLM()
    cfg = EngineConfig(reward="simulator", max_turns=3, rank_n=20)
    eng = build_system("BARCOR", cfg, kb=kb, llms={"actor": actor_llm}, plm=m)
    eps = eng.run(tgts, tmp_path / "t.jsonl")
    validate_transcript(tmp_path / "t.jsonl")
    assert actor_llm.chat_calls == []  # the LLM never spoke for the system
    assert eng.stats.calls and any(role == "actor" for _, role, _ in eng.stats.calls)
    for ep in eps:
        for t in ep.turns:
            assert len(t.ranking) == 20 and t.retrieved == t.ranking[:1] and t.reply
            assert t.ranking == m_rank(m, t.history_before, exclude=set())[:20] or t.turn > 0
    # the model's own first-turn ranking is what the transcript holds
    assert eps[0].turns[0].ranking[0] == m_rank(m, eps[0].turns[0].history_before, set())[0]


def m_rank(m, history, exclude):
    s = m.item_scores([history])[0]
    return [m.item_ids[j] for j in torch.argsort(-s, stable=True).tolist() if m.item_ids[j] not in exclude]


def test_backbones_by_directory_gpt2_roberta_bart(world, tmp_path):
    """The paper profile names DialoGPT-small (GPT-2), RoBERTa-base and BART-base by hub id; the
    same code paths take any directory. Tiny random models of those three architectures, saved
    with the packaged tokenizers, stand in for them here (no hub offline): one step of every
    stage, then ranking and generation."""
    from transformers import (
        AutoTokenizer,
        BartConfig,
        BartForConditionalGeneration,
        GPT2Config,
        GPT2LMHeadModel,
        RobertaConfig,
        RobertaModel,
    )

    from rso_lib.baselines.common import resolve_causal_lm, resolve_text_encoder
    from rso_lib.baselines.unicrs import UniCRS, UniCRSConfig

    gtok = AutoTokenizer.from_pretrained(resolve_causal_lm("embedded"))
    etok = AutoTokenizer.from_pretrained(resolve_text_encoder("all-MiniLM-L6-v2"))
    torch.manual_seed(0)
    GPT2LMHeadModel(GPT2Config(vocab_size=len(gtok), n_embd=32, n_layer=2, n_head=2, n_positions=512)).save_pretrained(
        tmp_path / "gpt2"
    )
    gtok.save_pretrained(tmp_path / "gpt2")
    RobertaModel(
        RobertaConfig(
            vocab_size=len(etok),
            hidden_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=64,
            pad_token_id=etok.pad_token_id,
        )
    ).save_pretrained(tmp_path / "roberta")
    etok.save_pretrained(tmp_path / "roberta")
    BartForConditionalGeneration(
        BartConfig(
            vocab_size=len(gtok),
            d_model=32,
            encoder_layers=1,
            decoder_layers=1,
            encoder_attention_heads=2,
            decoder_attention_heads=2,
            encoder_ffn_dim=64,
            decoder_ffn_dim=64,
            pad_token_id=gtok.pad_token_id or 0,
            eos_token_id=gtok.eos_token_id,
            decoder_start_token_id=gtok.eos_token_id,
        )
    ).save_pretrained(tmp_path / "bart")
    gtok.save_pretrained(tmp_path / "bart")
    exs, hs = world["examples"], [e.context for e in world["examples"]]
    u = UniCRS(
        UniCRSConfig(
            generator=str(tmp_path / "gpt2"),
            text_encoder=str(tmp_path / "roberta"),
            kg_source="kb",
            max_context_tokens=32,
            max_encoder_tokens=16,
        ),
        world["kg"],
        world["kb"],
    )
    b = BARCOR(BARCORConfig(backbone=str(tmp_path / "bart"), kg_source="kb"), world["kg"], world["kb"])
    for m, tasks in ((u, ("pretrain", "rec", "conv")), (b, ("rec", "conv"))):
        for task in tasks:
            loss = m.loss(exs, task)
            assert torch.isfinite(loss)
            loss.backward()
        m.eval()
        assert m.item_scores(hs).shape == (3, len(world["kb"]))
        assert len(m.generate(hs, max_new_tokens=5)) == 3


def test_registry_names_the_known_kinds(world, tmp_path):
    from rso_lib.baselines.registry import MODELS, load_plm, make_model

    assert set(MODELS) == {"unicrs", "barcor"}
    with pytest.raises(ValueError, match=r"make_model: unknown PLM baseline 'bart' \(unicrs \| barcor\)"):
        make_model("bart", None, world["kb"], {})
    (tmp_path / "plm.json").write_text('{"kind": "gpt"}')
    with pytest.raises(ValueError, match=r"plm.json: unknown PLM baseline 'gpt'"):
        load_plm(tmp_path, world["kb"])
