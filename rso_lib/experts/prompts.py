"""Prompt builders for the micro-level experts and the LLM user simulator.

Every prompt of the kit lives here, written for this kit (none is copied from the RSO or PC-CRS
code). Each builder returns one chat conversation (:data:`rso_lib.llm.protocol.Messages`); the
experts batch them. Prompts are kept short on purpose: the embedded default is a 135M-parameter
model whose context and attention are small, and the same prompts must also work with 7B models.

Conventions:

* the dialogue history is rendered by :func:`render_history` as ``User: ...`` / ``Assistant: ...``
  lines, the whole dialogue (Eq. 3: preferences are reasoned "from a global dialogue
  perspective"); a history longer than the model's context is cut by the backends' one
  documented truncation rule, never by a fixed window here;
* option-scored prompts (ratings, choices, accept/reject) end with an instruction whose answer is
  the option itself, and the caller passes the matching ``prefix`` (e.g. ``"Rating: "``).
"""

from __future__ import annotations

from collections.abc import Sequence

from rso_lib.data.records import RECOMMENDER, Turn
from rso_lib.llm.protocol import Messages

#: How many recent turns the prompts show: None = the whole dialogue (the paper's setting).
HISTORY_TURNS: int | None = None


def render_history(
    turns: Sequence[Turn], max_turns: int | None = HISTORY_TURNS, user: str = "User", system: str = "Assistant"
) -> str:
    """The dialogue (the last ``max_turns`` turns if given) as ``Name: text`` lines
    (``"(no conversation yet)"`` if empty)."""
    if not turns:
        return "(no conversation yet)"
    lines = []
    for t in list(turns) if max_turns is None else list(turns)[-max_turns:]:
        who = system if t.speaker == RECOMMENDER else user
        lines.append(f"{who}: {' '.join(t.text.split())}")
    return "\n".join(lines)


def _msgs(system: str, user: str) -> Messages:
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


# --------------------------------------------------------------------------------------------
# Preference Reasoner (Eq. 3)
# --------------------------------------------------------------------------------------------


def reasoner_prompt(history: Sequence[Turn], previous: str = "") -> Messages:
    """Ask for a one-sentence summary of what the user wants now (genres, mood, liked/disliked
    movies, people), updating the previous summary when there is one."""
    prev = f"\nEarlier summary: {previous}" if previous else ""
    return _msgs(
        "You read movie conversations and note what the user is looking for.",
        f"Conversation:\n{render_history(history)}{prev}\n\n"
        "In one short sentence, state the user's current movie preferences "
        "(genres, mood, movies or actors they like or dislike).",
    )


# --------------------------------------------------------------------------------------------
# Item chooser (which retrieved candidate to recommend)
# --------------------------------------------------------------------------------------------

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
#: The chooser's extra option: recommend nothing yet (the user's wishes are not clear enough).
NONE_OPTION = "None of these yet: ask the user more first"


def chooser_prompt(
    history: Sequence[Turn], preference: str, candidates: Sequence[str], labels: Sequence[str]
) -> Messages:
    """List the candidates (``labels[i]. candidates[i]``) and ask which one suits the user best."""
    listing = "\n".join(f"{lab}. {c}" for lab, c in zip(labels, candidates))
    pref = f"\nThe user wants: {preference}" if preference else ""
    return _msgs(
        "You pick the movie that best fits a user's wishes.",
        f"Conversation:\n{render_history(history)}{pref}\n\nCandidate movies:\n{listing}\n\n"
        "Which candidate fits the user best? Answer with the candidate only.",
    )


# --------------------------------------------------------------------------------------------
# Actor (Eq. 5) and its baseline variants
# --------------------------------------------------------------------------------------------

_ACTOR_ROLE = "You are a friendly movie recommender chatting with a user. Reply in one or two short sentences."


ACTOR_MODES = ("item", "candidates", "ask", "own")


def actor_prompt(
    history: Sequence[Turn],
    strategy_description: str | None,
    preference: str,
    facts: Sequence[str],
    item_name: str | None,
    candidate_names: Sequence[str] = (),
    mode: str | None = None,
) -> Messages:
    """The Actor's prompt (Eq. 5): strategy description, inferred preference, knowledge-base
    facts and what to do about a recommendation. Any input may be absent (ablations, baselines):

    * ``strategy_description`` None -> no strategy instruction (NO_PLANNER, PROMPT_ONLY, INTERCRS);
    * ``preference`` "" -> no preference line (NO_REASONER, baselines);
    * ``facts`` empty -> no facts (NO_RETRIEVER, PROMPT_ONLY, INTERCRS).

    ``mode`` (default: ``"item"`` if ``item_name`` else ``"candidates"`` / ``"ask"``):

    * ``"item"``: recommend ``item_name`` and name it;
    * ``"candidates"``: the model may pick one of ``candidate_names`` or keep asking (InterCRS,
      iEvaLM style);
    * ``"ask"``: no recommendation this turn (a preference-elicitation strategy, or the chooser
      found no candidate ready);
    * ``"own"``: no retrieval at all (QwenCRS / LlamaCRS): recommend from the model's own
      knowledge when it knows enough, else ask.
    """
    mode = mode or ("item" if item_name else "candidates" if candidate_names else "ask")
    if mode not in ACTOR_MODES:
        raise ValueError(f"actor_prompt: unknown mode {mode!r} ({' | '.join(ACTOR_MODES)})")
    parts = [f"Conversation:\n{render_history(history)}"]
    if preference:
        parts.append(f"What the user wants: {preference}")
    if facts:
        parts.append("Facts you may use:\n" + "\n".join(f"- {f}" for f in facts))
    if mode == "item" and item_name:
        parts.append(f"Movie to recommend: {item_name}")
    elif mode == "candidates" and candidate_names:
        parts.append("Movies you could recommend: " + "; ".join(candidate_names))
    if strategy_description:
        parts.append(f"How to reply: {strategy_description}")
    if mode == "item" and item_name:
        parts.append(f"Write your next reply to the user and mention {item_name} by name.")
    elif mode == "ask":
        parts.append("Write your next reply to the user. Do not recommend a movie yet.")
    elif mode == "own":
        parts.append(
            "Write your next reply to the user. If you know enough about what they want, "
            "recommend one movie by its title; otherwise ask about their preferences."
        )
    else:
        parts.append("Write your next reply to the user.")
    return _msgs(_ACTOR_ROLE, "\n\n".join(parts))


#: PC-CRS's credibility-aware explanation strategies (names from the PC-CRS paper; the one-line
#: descriptions are ours).
EXPLANATION_STRATEGIES: dict[str, str] = {
    "logical_appeal": "Explain with clear reasons how the movie matches what the user asked for.",
    "emotion_appeal": "Describe the feelings and experience the movie will give the user.",
    "framing": "Stress the benefits the user gains by watching the movie.",
    "evidence_based": "Support the recommendation with concrete facts about the movie.",
    "social_proof": "Mention that the movie is popular or well regarded by viewers.",
    "anchoring": "Start from a movie or feature the user liked and link it to the recommendation.",
}


def explanation_strategy_prompt(history: Sequence[Turn], item_name: str | None) -> Messages:
    """PC-CRS step 1: which explanation strategy to use now (option-scored over the names)."""
    names = ", ".join(n.replace("_", " ") for n in EXPLANATION_STRATEGIES)
    about = f" about {item_name}" if item_name else ""
    return _msgs(
        "You plan how a movie recommender should explain its suggestion.",
        f"Conversation:\n{render_history(history)}\n\nStrategies: {names}.\n"
        f"Which strategy should the next reply{about} use? Answer with the strategy name.",
    )


def self_check_prompt(reply: str, facts: Sequence[str]) -> Messages:
    """PC-CRS self-check: is every claim of the reply supported by the facts? (scored yes/no)."""
    fact_text = "\n".join(f"- {f}" for f in facts) or "- (no facts)"
    return _msgs(
        "You check movie recommendations for false claims.",
        f"Facts:\n{fact_text}\n\nReply: {reply}\n\n"
        "Is every claim in the reply supported by the facts? Answer yes or no.",
    )


def refine_prompt(history: Sequence[Turn], reply: str, facts: Sequence[str], item_name: str | None) -> Messages:
    """PC-CRS refinement: rewrite a reply that failed the self-check so it only states the facts."""
    fact_text = "\n".join(f"- {f}" for f in facts) or "- (no facts)"
    about = f" about {item_name}" if item_name else ""
    return _msgs(
        _ACTOR_ROLE,
        f"Conversation:\n{render_history(history)}\n\nFacts:\n{fact_text}\n\n"
        f"Draft reply{about}: {reply}\n\nThe draft may contain claims that the facts do not "
        "support. Rewrite it so that it is persuasive but states only supported facts.",
    )


# --------------------------------------------------------------------------------------------
# Rewarder (Eq. 9)
# --------------------------------------------------------------------------------------------

#: What the acceptance judge's answer starts with (the option-scoring prefix).
ACCEPTANCE_PREFIX = "Answer: "

#: The five answers of the acceptance judge, in the authors' option order 1-5 (our wording).
#: The keys are the level names of :data:`rso_lib.experts.rewarder.ACCEPTANCE_LEVELS`.
ACCEPTANCE_ANSWERS: dict[str, str] = {
    "no_recommendation": "The recommender has not recommended a specific movie yet.",
    "not_interested": "The seeker does not seem interested in the recommended movie.",
    "rejected": "The seeker has turned the recommended movie down.",
    "interested": "The seeker is interested in the recommended movie but has not decided yet.",
    "accepted": "The seeker has accepted the recommended movie.",
}


def acceptance_prompt(state: Sequence[Turn]) -> Messages:
    """Eq. 9's ``prompt_rwd`` as the authors' critic asks it: has the seeker accepted the
    recommendation? Five ordered answers (:data:`ACCEPTANCE_ANSWERS`), judged on the whole state
    ``s_{t+1}`` (the dialogue up to and including the seeker's answer to the system's reply). The
    judge sees only the conversation: no target, no knowledge-base facts."""
    options = "\n".join(f"{k}. {a}" for k, a in enumerate(ACCEPTANCE_ANSWERS.values(), start=1))
    return _msgs(
        "You read conversations between a movie Recommender and a Seeker and decide where the "
        "Seeker stands on the Recommender's suggestion.",
        f"Conversation:\n{render_history(state, user='Seeker', system='Recommender')}\n\n"
        "First check whether the Recommender has suggested a specific movie by name; if not, the "
        "answer is 1. Otherwise: the Seeker asking about the movie (plot, cast, details) without "
        "deciding is 4; the Seeker clearly saying they will watch it is 5; the Seeker refusing it "
        "or asking for something else instead is 3; the Seeker sounding unenthusiastic without "
        "refusing is 2. Count a movie as accepted only on an explicit yes.\n\n"
        f"Options:\n{options}\n\n"
        f'Has the Seeker accepted the recommendation? Answer with "{ACCEPTANCE_PREFIX}" and the '
        "option's number (1-5).",
    )


# --------------------------------------------------------------------------------------------
# LLM user simulator
# --------------------------------------------------------------------------------------------


def _genre_list(genres: Sequence[str]) -> str:
    g = list(genres)
    return g[0] if len(g) == 1 else ", ".join(g[:-1]) + " and " + g[-1] if g else "good"


def _persona_block(persona: str, genres: Sequence[str]) -> str:
    """The seeker's role (our wording of the authors' ``seeker_simulator.py`` and PC-CRS's seeker
    instruction): persona, target genres, and the rules of the protocol. It carries no
    knowledge-base fact: what the user learns about a movie comes from the recommender only."""
    return (
        f"You are a movie seeker chatting with a movie recommender. {persona}\n"
        + (
            f"You want a {genres[0]} movie.\n"
            if len(genres) == 1
            else f"You want a movie that is {_genre_list(genres)} at once.\n"
        )
        + "Rules:\n"
        "- You know little about movies: the recommender is your only source of information.\n"
        "- When a movie is recommended, ask about it (story, genre, cast) before you decide.\n"
        "- Accept a movie only once you are sure it has the genres you want; turn it down only "
        "once you know enough to see it does not fit, and then you may ask for another.\n"
        "- Give reasons that fit your personality. If asked what you like, describe it in your own words.\n"
        "- Speak as the seeker, casually, in one or two short sentences, without repeating yourself."
    )


def simulator_open_prompt(persona: str, genres: Sequence[str]) -> Messages:
    """The simulated user's first message, when it is written by the LLM (the authors' and
    PC-CRS's user opens with a fixed "Hello", ``USER_OPENING``)."""
    return _msgs(
        _persona_block(persona, genres),
        "Write your first message to the recommender: a greeting and the kind of movie you want.",
    )


#: What the user does about the movie under discussion (option-scored, then verbalised).
USER_DECISIONS = ("ask", "accept", "reject")


def simulator_reply_prompt(
    persona: str, genres: Sequence[str], history: Sequence[Turn], decision: str | None, item_name: str | None
) -> Messages:
    """The simulated user's next message. ``decision`` (one of :data:`USER_DECISIONS` or None) is
    decided beforehand by option scoring (see :mod:`rso_lib.dialogue.simulators`) and only
    verbalised here, so what the user says and what the transcript records agree."""
    if decision == "accept" and item_name:
        task = f"You have decided to watch {item_name}. Say so, with your reason, and thank the recommender."
    elif decision == "reject" and item_name:
        task = f"{item_name} is not what you want. Turn it down with your reason and ask for something else."
    elif decision == "ask" and item_name:
        task = f"Ask the recommender one question about {item_name} (its story, genre or cast)."
    else:
        task = "Reply to the recommender's last message, as the seeker, in one or two sentences."
    return _msgs(
        _persona_block(persona, genres),
        f"Conversation:\n{render_history(history, user='You', system='Recommender')}\n\n{task}",
    )


def simulator_decision_prompt(persona: str, genres: Sequence[str], history: Sequence[Turn], item_name: str) -> Messages:
    """What to do about ``item_name`` now, from what the recommender has said about it (option-scored
    over :data:`USER_DECISIONS`). Only the conversation is shown: no knowledge-base facts."""
    return _msgs(
        _persona_block(persona, genres),
        f"Conversation:\n{render_history(history, user='You', system='Recommender')}\n\n"
        f"The recommender suggests {item_name}. From what you have been told, what do you do now: "
        "ask (you need to know more about it), accept (you will watch it) or reject (it is not for "
        "you)? Answer ask, accept or reject.",
    )


def paraphrase_prompt(text: str) -> Messages:
    """Agenda simulator, optional: reword a template utterance without changing its meaning."""
    return _msgs(
        "You reword sentences.",
        f"Reword this message from a user to a movie recommender, keeping its meaning and any movie titles:\n{text}",
    )
