"""Corrupt and hostile files: each is detected and named, never used silently (checkpoints, the
LLM cache, data files)."""

from __future__ import annotations

import json
import sqlite3

import numpy as np
import pytest
import torch

from rso_lib.data._io import iter_jsonl
from rso_lib.data.records import DataError
from rso_lib.experts.planner import Planner, make_tiny_encoder
from rso_lib.llm.cache import CachedLLM
from rso_lib.llm.scripted import ScriptedLLM
from rso_lib.train.checkpoint import CheckpointError, latest_checkpoint, load_checkpoint, save_checkpoint


@pytest.fixture(scope="module")
def planner(tmp_path_factory):
    enc = make_tiny_encoder(tmp_path_factory.mktemp("enc"), seed=0)
    return Planner.from_config(encoder=str(enc), seed=0)


def _truncate(path, keep=0.5):
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def test_truncated_checkpoint_falls_back_to_the_previous_one(planner, tmp_path, capsys):
    opt = torch.optim.AdamW(planner.parameters(), lr=1e-3)
    save_checkpoint(tmp_path, 1, model=planner, optimizer=opt, state={"step": 1})
    newest = save_checkpoint(tmp_path, 2, model=planner, optimizer=opt, state={"step": 2})
    _truncate(newest / "model" / "model.safetensors")
    got = latest_checkpoint(tmp_path)
    assert got.name == "step-00000001"
    err = capsys.readouterr().err
    assert str(newest) in err and "unreadable" in err and (tmp_path / "corrupt-step-00000002").is_dir()
    assert load_checkpoint(got, model=planner, optimizer=opt)["step"] == 1
    # nothing readable left: said, not silently restarted
    _truncate(got / "optimizer.pt", 0.3)
    with pytest.raises(CheckpointError, match="no readable checkpoint under"):
        latest_checkpoint(tmp_path)


def test_a_failed_checkpoint_write_names_the_directory_and_leaves_nothing_behind(planner, tmp_path, monkeypatch):
    # A full disk makes torch.save raise "basic_ios::clear: iostream error" (CI saw it): the error
    # must name where and how much space is left, the partial copy must go, LATEST must not move.
    opt = torch.optim.AdamW(planner.parameters(), lr=1e-3)
    save_checkpoint(tmp_path, 1, model=planner, optimizer=opt)
    real_save = torch.save

    def full_disk(obj, f, *a, **k):
        if str(f).endswith("optimizer.pt"):
            raise RuntimeError("basic_ios::clear: iostream error")
        return real_save(obj, f, *a, **k)

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(OSError, match=r"could not write checkpoint step 2 under .*iostream error.*MiB free"):
        save_checkpoint(tmp_path, 2, model=planner, optimizer=opt)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["LATEST", "step-00000001"]
    assert latest_checkpoint(tmp_path).name == "step-00000001"


def test_garbage_cache_file_is_moved_aside_and_rebuilt(tmp_path, capsys):
    path = tmp_path / "llm.sqlite"
    path.write_bytes(b"this is not a database" * 100)
    llm = CachedLLM(ScriptedLLM(option_probs=lambda m, o: [0.25, 0.75]), path)
    assert llm.score_options([[{"role": "user", "content": "x"}]], ["a", "b"]).tolist() == [[0.25, 0.75]]
    assert "is corrupt" in capsys.readouterr().err and list(tmp_path.glob("llm.sqlite.corrupt-*"))


def test_edited_cache_rows_are_recomputed_not_used(tmp_path):
    path = tmp_path / "llm.sqlite"
    inner = ScriptedLLM(option_probs=lambda m, o: [0.25, 0.75])
    msgs = [[{"role": "user", "content": "x"}]]
    CachedLLM(inner, path).score_options(msgs, ["a", "b"])
    db = sqlite3.connect(path)  # someone edits the stored probabilities
    key, value = db.execute("SELECT key, value FROM kv").fetchone()
    entry = json.loads(value)
    entry["r"] = [0.0, 1.0]
    db.execute("UPDATE kv SET value = ? WHERE key = ?", (json.dumps(entry), key))
    db.commit()
    db.close()
    again = CachedLLM(inner, path)
    assert np.allclose(again.score_options(msgs, ["a", "b"]), [[0.25, 0.75]])
    assert again.stats()["rejected"] == 1 and again.stats()["misses"] == 1


def test_one_undecodable_jsonl_line_is_skipped_and_named(tmp_path):
    p = tmp_path / "d.jsonl"
    p.write_bytes(b'{"a": 1}\n{"a": "\xff\xfe"}\n{"a": 3}\n')
    issues = []
    rows = list(iter_jsonl(p, issues))
    assert [r["a"] for _, r in rows] == [1, 3]
    assert issues[0].line == 2 and "not UTF-8" in issues[0].message and issues[0].path == str(p)


def test_garbage_knowledge_base_names_file_and_line(tmp_path):
    from rso_lib.data.kb import load_redial_kb

    (tmp_path / "redial").mkdir()
    bad = tmp_path / "redial" / "id2info.json"
    bad.write_bytes(b'{"1": {"name": "ok"}}\n\x89PNG garbage')
    with pytest.raises(DataError) as e:
        load_redial_kb(bad)
    assert str(e.value).startswith(f"{bad}:2: not UTF-8") and "column 1" in str(e.value)


def test_duplicate_dialogue_in_a_split_is_reported(tmp_path):
    from rso_lib.data.targets import REDIAL_TEST, _split_rows

    f = tmp_path / REDIAL_TEST
    f.parent.mkdir(parents=True)
    rows = [{"dialog_id": d, "dialog": [], "user_id": "u", "genre_dict": ["drama"]} for d in ("a", "b", "a")]
    f.write_text("".join(json.dumps(r) + "\n" for r in rows))
    issues = []
    got = _split_rows("redial", tmp_path, "test", issues)
    assert [r[0] for r in got] == ["a", "b"]
    assert len(issues) == 1 and issues[0].line == 3 and "duplicate dialog_id a (first at line 1)" in issues[0].message


# ------------------------------------------------------------------ transcripts
def test_interleaved_transcript_is_moved_aside_and_not_used(tmp_path, capsys):
    from engine_fixtures import make_engine, targets

    from rso_lib.dialogue.transcript import read_rows, validate_transcript

    path = tmp_path / "t.jsonl"
    clean = make_engine(max_turns=3, tmp_path=tmp_path)[0].run(targets(3, ("western",)), path)  # 3 turns each
    rows = [json.loads(x) for x in path.read_text().splitlines()]
    d2 = [r for r in rows if r["dialog_id"] == "d2"]
    assert [r["turn"] for r in d2] == [0, 1, 2]
    # what two concurrent writers leave: d2's turns 0,0,1,2,1,2 (every line alone is valid)
    bad = [r for r in rows if r["dialog_id"] != "d2"] + [d2[0], d2[0], d2[1], d2[2], d2[1], d2[2]]
    path.write_text("".join(json.dumps(r) + "\n" for r in bad))
    assert len(read_rows(path)) == len(bad)
    capsys.readouterr()
    again = make_engine(max_turns=3, tmp_path=tmp_path)[0].run(targets(3, ("western",)), path)
    err = capsys.readouterr().err
    aside = tmp_path / "t.jsonl.invalid-1"
    assert f"transcript {path} is invalid" in err and "turns 0,0,1,2,1,2 are not 0..5 in order" in err
    assert "t.jsonl.invalid-1" in err and aside.read_text().count("\n") == len(bad)
    # the dialogues were simulated again, into a fresh and valid transcript with the same turns
    assert validate_transcript(path)["turns_per_dialogue"] == {"d0": 3, "d1": 3, "d2": 3}
    assert [[t.reply for t in e.turns] for e in again] == [[t.reply for t in e.turns] for e in clean]
    # an undecodable transcript is named the same way (and the next aside name is taken)
    path.write_bytes(path.read_bytes()[:50] + b"\xff\xfe\n")
    make_engine(max_turns=3, tmp_path=tmp_path)[0].run(targets(3, ("western",)), path)
    err = capsys.readouterr().err
    assert "not UTF-8 text" in err and (tmp_path / "t.jsonl.invalid-2").exists()
    assert validate_transcript(path)["dialogues"] == 3


# ------------------------------------------------------------------ hostile data files (issue 25)
def _with_bad_byte(lines: list[bytes], k: int, at: int = 12) -> list[bytes]:
    """Line ``k`` with a 0xff byte after its first ``at`` bytes (column ``at + 1``)."""
    out = list(lines)
    out[k] = out[k][:at] + b"\xff" + out[k][at:]
    return out


def test_invalid_byte_in_a_dialog_tsv_skips_that_row_only_and_names_file_line_column(tmp_path):
    from hostile_files import dialog_tsv, write

    from rso_lib.data.inspired import load_dialog_tsv

    lines, keys = dialog_tsv(6)
    path = write(tmp_path / "dev.tsv", _with_bad_byte(lines, 3))  # line 4: utterance 2
    dialogues, issues = load_dialog_tsv(path)
    got = {(d.dialog_id, u["utt_id"]) for d in dialogues for u in d.meta["utterances"]}
    assert got == set(keys) - {keys[2]}
    assert [str(i) for i in issues] == [f"{path}:4: not UTF-8 (byte 0xff at column 13) (skipped)"]
    # a header that is not UTF-8 is fatal, named
    write(path, _with_bad_byte(lines, 0))
    with pytest.raises(DataError, match=r"dev.tsv:1: header not UTF-8 \(byte 0xff at column 13\)"):
        load_dialog_tsv(path)


def test_invalid_byte_in_a_survey_tsv_skips_that_row_only(tmp_path):
    from hostile_files import seeker_demographic, seeker_personality, write

    from rso_lib.data.personas import SEEKER_DEMOGRAPHIC, SEEKER_PERSONALITY, load_seeker_personas

    demo, users = seeker_demographic(5)
    pers, _ = seeker_personality(5)
    write(tmp_path / SEEKER_DEMOGRAPHIC, _with_bad_byte(demo, 2))  # user_1's row
    write(tmp_path / SEEKER_PERSONALITY, _with_bad_byte(pers, 4))  # user_3's scores
    personas, issues = load_seeker_personas(tmp_path)
    assert sorted(personas) == users  # user_1 still has a personality row, user_3 a demographic one
    assert personas["user_1"].fields["age_group"] is None and "big5" not in personas["user_3"].fields
    assert [(i.path.rsplit("/", 1)[-1], i.line, i.action) for i in issues] == [
        ("seeker_demographic.tsv", 3, "skipped"),
        ("seeker_personality.tsv", 5, "skipped"),
    ]
    assert all("not UTF-8 (byte 0xff at column 13)" in i.message for i in issues)


def test_tsv_field_over_csv_limit_is_read_and_over_the_declared_bound_is_named(tmp_path, monkeypatch):
    from hostile_files import dialog_tsv, write

    from rso_lib.data import _io
    from rso_lib.data.inspired import load_dialog_tsv

    lines, keys = dialog_tsv(4)
    long = "w" * 200_000  # csv's default field limit is 131,072: this raised a bare _csv.Error
    lines[2] = lines[2].replace(b"utterance 1", long.encode())
    path = write(tmp_path / "dev.tsv", lines)
    dialogues, issues = load_dialog_tsv(path)
    assert not issues and any(long in t.text for d in dialogues for t in d.turns)
    monkeypatch.setattr(_io, "MAX_FIELD_CHARS", 100_000)
    dialogues, issues = load_dialog_tsv(path)
    assert len([u for d in dialogues for u in d.meta["utterances"]]) == 3
    assert [str(i) for i in issues] == [
        f"{path}:3 [text]: field of 200,039 characters, over the bound of 100,000 (skipped)"
    ]


def test_csv_field_over_the_csv_limit_skips_that_row_and_names_its_line(tmp_path):
    from hostile_files import profile_csv, write

    from rso_lib.data.personas import PCCRS_PROFILES, load_pccrs_personas

    lines, keys = profile_csv(4)
    lines[1] = lines[1].replace(b"long text 1", b"z" * 200_000)
    lines[2] = _with_bad_byte(lines, 2)[2]
    write(tmp_path / PCCRS_PROFILES, lines)
    personas, issues = load_pccrs_personas(tmp_path)
    assert [p.user_id for p in personas] == [keys[0], keys[3]]
    assert [(i.line, i.action) for i in issues] == [(2, "skipped"), (3, "skipped")]
    assert "field larger than field limit" in issues[0].message and "not UTF-8" in issues[1].message


@pytest.mark.parametrize("depth", [65, 200_000])
def test_deeply_nested_json_lines_are_skipped_and_named_not_recursion_errors(tmp_path, depth):
    from hostile_files import redial_jsonl, strategy_split, write

    from rso_lib.data.inspired import load_strategy_split
    from rso_lib.data.redial import load_redial_jsonl

    deep = b"[" * depth + b"]" * depth
    lines, keys = strategy_split(4)
    lines[1] = lines[1].replace(b'"genre_dict": ["Action"]', b'"genre_dict": ' + deep)
    write(tmp_path / "inspired" / "strategy" / "inspired-test.txt", lines)
    dialogues, issues = load_strategy_split(tmp_path, "test")
    assert [d.dialog_id for d in dialogues] == [keys[0], keys[2], keys[3]]
    assert [(i.line, i.action) for i in issues] == [(2, "skipped")]
    assert "nested deeper than 64 levels at column" in issues[0].message
    lines, keys = redial_jsonl(3)
    lines[0] = lines[0][:-2] + b', "x": ' + deep + b"}\n"
    dialogues, issues = load_redial_jsonl(write(tmp_path / "r.jsonl", lines))
    assert [d.dialog_id for d in dialogues] == keys[1:] and issues[0].line == 1


def test_deeply_nested_knowledge_base(tmp_path):
    from hostile_files import kb_json, write

    from rso_lib.data.kb import load_redial_kb

    lines, keys = kb_json(4)
    lines[2] = lines[2].replace(b'"plot": "x"', b'"plot": ' + b"[" * 100 + b"]" * 100)  # parses, too deep
    kb = load_redial_kb(write(tmp_path / "id2info.json", lines))
    assert [it.item_id for it in kb] == [keys[0], keys[2], keys[3]]
    assert [(i.field, i.action) for i in kb.issues] == [(keys[1], "skipped")]
    lines[2] = lines[2].replace(b"[" * 100, b"[" * 200_000).replace(b"]" * 100, b"]" * 200_000)
    with pytest.raises(DataError, match=r"id2info.json:3: not valid JSON: nested deeper than 64 levels at column"):
        load_redial_kb(write(tmp_path / "id2info.json", lines))


def test_other_readers_name_deep_or_undecodable_input(tmp_path):
    from hostile_files import params_yaml, sft_jsonl, transcript, write

    from rso_lib.data.sft import read_sft_examples
    from rso_lib.dialogue.transcript import TranscriptError, read_rows
    from rso_lib.run import ParamsError, load_params

    lines, _ = transcript()
    lines[1] = lines[1][:-2] + b', "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}\n"
    with pytest.raises(TranscriptError, match=r"t.jsonl:2: invalid JSON \(nested deeper than 64 levels\)"):
        read_rows(write(tmp_path / "t.jsonl", lines))
    lines, _ = sft_jsonl(3)
    lines[1] = lines[1].replace(b'"turn_index": 2', b'"turn_index": Infinity')
    issues = []
    assert len(read_sft_examples(write(tmp_path / "s.jsonl", lines), issues)) == 2
    assert issues[0].line == 2 and "cannot convert float infinity" in issues[0].message
    lines, _ = params_yaml()
    with pytest.raises(ParamsError, match=r"p.yaml:2: not UTF-8 \(byte 0xff at column 5\)"):
        load_params([write(tmp_path / "p.yaml", _with_bad_byte(lines, 1, at=4))])
    with pytest.raises(ParamsError, match="p.yaml: not valid YAML: nested too deeply"):
        load_params([write(tmp_path / "p.yaml", [b"common: " + b"[" * 100_000 + b"]" * 100_000 + b"\n"])])
