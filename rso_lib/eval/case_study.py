"""Paper Fig. 6 (case study), generated from transcripts: one INSPIRED dialogue turn of RSO --
its strategy, inferred preference, retrieved facts and reply -- beside the prompt-only system's
reply to the same simulated user at the same turn.

The turn is picked by a fixed rule, never by hand: the first dialogue (test-split order) that both
systems ran in which RSO recommended an item with knowledge-base facts; its first such turn. When
no RSO turn recommended anything, the first turn of the first shared dialogue is shown.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from rso_lib.strategies import display_name


def case_study(rso_transcript: str | Path, baseline_transcript: str | Path, kb: Any) -> dict[str, Any]:
    """The Fig. 6 turn (see the module docstring) as a dict of plain strings.

    Args:
        rso_transcript / baseline_transcript: engine transcripts (``rso.transcript/1``) of RSO and
            of the prompt-only system on the same users.
        kb: the knowledge base (``get(item_id) -> Item``) for titles and facts.
    """
    from rso_lib.dialogue.transcript import read_episodes

    rso = read_episodes(rso_transcript)
    base = {e.dialog_id: e for e in read_episodes(baseline_transcript)}
    shared = [e for e in rso if e.dialog_id in base]
    if not shared:
        raise ValueError(f"{rso_transcript} and {baseline_transcript} share no finished dialogue")
    pick = next(
        ((e, k) for e in shared for k, t in enumerate(e.turns) if t.chosen_item and kb.get(t.chosen_item)),
        (shared[0], 0),
    )
    ep, k = pick
    t = ep.turns[k]
    b = base[ep.dialog_id]
    bt = b.turns[min(k, len(b.turns) - 1)]
    item = kb.get(t.chosen_item) if t.chosen_item else None
    history = "\n".join(f"{'User' if h.speaker == 'SEEKER' else 'System'}: {h.text}" for h in t.history_before)
    return {
        "dialog_id": ep.dialog_id,
        "turn": k + 1,
        "persona": ep.target.persona.description,
        "target_genres": ", ".join(ep.target.target_genres),
        "history": history,
        "strategy": display_name(t.strategy) if t.strategy else "(none)",
        "strategy_prob": t.strategy_prob,
        "preference": t.preference or "(none)",
        "retrieved": "; ".join(kb.get(i).name for i in t.retrieved[:5] if kb.get(i)) or "(none)",
        "item": item.name if item else "(no recommendation this turn)",
        "facts": item.facts() if item else "(none)",
        "rso_reply": t.reply,
        "rso_user_reply": t.user_reply,
        "baseline_system": b.system,
        "baseline_turn": min(k, len(b.turns) - 1) + 1,
        "baseline_reply": bt.reply,
        "baseline_user_reply": bt.user_reply,
    }


def case_study_markdown(c: dict[str, Any]) -> str:
    """Fig. 6 as Markdown (what ``results/<profile>/fig6_case_study.md`` holds)."""
    p = f"{c['strategy_prob']:.2f}" if c.get("strategy_prob") is not None else "-"
    return "\n".join(
        [
            f"**Fig. 6 (case study), INSPIRED dialogue `{c['dialog_id']}`, turn {c['turn']}**",
            "",
            f"*User persona:* {c['persona']}  ",
            f"*Target genres:* {c['target_genres']}",
            "",
            "*Dialogue so far:*",
            "",
            "```",
            c["history"],
            "```",
            "",
            f"**{c['baseline_system']} (no strategy optimisation), turn {c['baseline_turn']}:** {c['baseline_reply']}",
            "",
            "**RSO:**",
            "",
            f"1. Planner (macro strategy): **{c['strategy']}** (p = {p})",
            f"2. Preference Reasoner: {c['preference']}",
            f"3. Fact Retriever: candidates {c['retrieved']}; recommended **{c['item']}**; facts: {c['facts']}",
            f"4. Actor: {c['rso_reply']}",
            "",
            f"*User's answer to RSO:* {c['rso_user_reply']}",
        ]
    )


def transcript_table(transcript: str | Path, kb: Any, dialog_id: str | None = None) -> pd.DataFrame:
    """One dialogue of a transcript, a row per turn (the transcript viewer of notebook 04): the
    strategy and its probability, the inferred preference, the recommended item and its facts,
    the reply, the user's answer and the turn reward.

    Args:
        transcript: an engine transcript (``rso.transcript/1``).
        kb: the knowledge base (titles and facts of the recommended items).
        dialog_id: which dialogue (default: the first finished one).
    """
    from rso_lib.dialogue.transcript import read_episodes

    eps = read_episodes(transcript)
    if not eps:
        raise ValueError(f"{transcript}: no finished dialogue")
    ep = next((e for e in eps if e.dialog_id == dialog_id), None) if dialog_id else eps[0]
    if ep is None:
        raise KeyError(
            f"{transcript}: no finished dialogue {dialog_id!r} (have {', '.join(e.dialog_id for e in eps[:5])}...)"
        )
    rows = []
    for t in ep.turns:
        item = kb.get(t.chosen_item) if t.chosen_item else None
        rows.append(
            {
                "turn": t.turn + 1,
                "strategy": (
                    f"{display_name(t.strategy)} ({t.strategy_prob:.2f})"
                    if t.strategy and t.strategy_prob is not None
                    else display_name(t.strategy)
                    if t.strategy
                    else ""
                ),
                "preference": t.preference,
                "recommended": item.name if item else "",
                "facts": item.facts() if item else "",
                "reply": t.reply,
                "user": t.user_reply,
                "reward": t.reward,
                "stop": t.stop_reason or "",
            }
        )
    return pd.DataFrame(rows)
