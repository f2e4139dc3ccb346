"""Resuming from a transcript (``finished_episodes``): what a rerun keeps, what it drops from the
file and when it refuses. Rows are built directly, no engine or model involved."""

from __future__ import annotations

import json

import pytest

from rso_lib.data.records import Persona, SimTarget
from rso_lib.dialogue.transcript import TurnRecord, finished_episodes, record_to_row, validate_transcript


def target(dialog_id: str) -> SimTarget:
    return SimTarget(dialog_id, "inspired", f"u-{dialog_id}", Persona(f"u-{dialog_id}", "You like films."), ["horror"])


def rows_of(system: str, dialog_id: str, n_turns: int, finished: bool) -> list[dict]:
    """``n_turns`` valid rows of one dialogue; the last is marked done only if ``finished``."""
    out = []
    for k in range(n_turns):
        done = finished and k == n_turns - 1
        rec = TurnRecord(
            turn=k,
            history_before=[],
            strategy=None,
            strategy_index=None,
            strategy_prob=None,
            strategy_entropy=None,
            preference="",
            retrieved=[],
            retrieval_scores=[],
            ranking=[],
            chosen_item=None,
            chooser_probs=[],
            reply=f"{dialog_id} reply {k}",
            refinements=0,
            mentioned_item=None,
            user_reply=f"{dialog_id} answer {k}",
            user_action="inquire",
            covers_target=None,
            p_accept=None,
            accepted=False,
            reward=0.5,
            rating=3.0,
            stop=False,
            done=done,
            stop_reason="max_turns" if done else None,
            parse_failures={"chooser": 1} if k == 0 else {},
        )
        out.append(record_to_row(system, target(dialog_id), rec, f"{dialog_id} opens"))
    return out


def write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_no_transcript_yet_means_nothing_finished_and_no_file(tmp_path):
    path = tmp_path / "t.jsonl"
    assert finished_episodes(path, "RSO", [target("d0")]) == {}
    assert not path.exists()


def test_partly_written_dialogue_is_dropped_from_the_file_and_not_returned(tmp_path):
    path = tmp_path / "t.jsonl"
    d0, d1, d2 = rows_of("RSO", "d0", 2, True), rows_of("RSO", "d1", 2, False), rows_of("RSO", "d2", 1, True)
    write(path, [d0[0], d1[0], d0[1], d1[1], d2[0]])  # interleaved as the lockstep engine writes them
    t0, t1 = target("d0"), target("d1")
    got = finished_episodes(path, "RSO", [t0, t1])
    assert set(got) == {"d0"}  # d1 unfinished; d2 finished but not asked for
    ep = got["d0"]
    assert ep.target is t0 and ep.system == "RSO" and ep.user_open == "d0 opens"
    assert [t.reply for t in ep.turns] == ["d0 reply 0", "d0 reply 1"]
    assert [x.text for x in ep.turns[1].history_before] == ["d0 opens", "d0 reply 0", "d0 answer 0"]
    assert ep.stop_reason == "max_turns" and ep.parse_failures == {"chooser": 1}
    # d1's rows are gone from the file, the finished dialogues' rows stay (d2's too)
    kept = [json.loads(x) for x in path.read_text().splitlines()]
    assert [(r["dialog_id"], r["turn"]) for r in kept] == [("d0", 0), ("d0", 1), ("d2", 0)]
    assert validate_transcript(path)["finished"] == 2


def test_transcript_without_partial_dialogues_is_not_rewritten(tmp_path):
    path = tmp_path / "t.jsonl"
    write(path, rows_of("RSO", "d0", 2, True))
    inode = path.stat().st_ino
    assert set(finished_episodes(path, "RSO", [target("d0"), target("d1")])) == {"d0"}
    assert path.stat().st_ino == inode  # an atomic rewrite would have replaced the file


def test_transcript_of_another_system_raises_naming_the_file(tmp_path):
    path = tmp_path / "t.jsonl"
    write(path, rows_of("RSO", "d0", 1, True) + rows_of("PROMPT_ONLY", "d1", 2, False))
    before = path.read_bytes()
    with pytest.raises(ValueError, match=r"t\.jsonl: transcript holds system\(s\) \['PROMPT_ONLY'\], not RSO"):
        finished_episodes(path, "RSO", [target("d0"), target("d1")])
    assert path.read_bytes() == before  # nothing dropped from a file that is not this system's
