"""Small valid data files in every format the kit reads, for the adversarial and fuzz tests.

Each builder returns the file as a list of lines (bytes, each ending in ``\\n``) and the key by
which each data line's record can be found in what the loader returns, so that a test can corrupt
one line and check that every other record is still there.
"""

from __future__ import annotations

import json
from pathlib import Path

from rso_lib.data.inspired import TSV_COLUMNS
from rso_lib.strategies import STRATEGIES

_GENRES = ("action", "comedy", "drama", "horror", "romance")


def _jl(obj) -> bytes:
    return (json.dumps(obj) + "\n").encode()


def dialog_tsv(n: int = 6) -> tuple[list[bytes], list[tuple[str, str]]]:
    """INSPIRED dialog TSV: header + ``n`` utterances of 2 dialogues; keys ``(dialog_id, utt_id)``."""
    lines = [("\t".join(TSV_COLUMNS) + "\n").encode()]
    keys = []
    for i in range(n):
        did, spk = f"d{i % 2}.pkl", ("RECOMMENDER" if i % 3 == 0 else "SEEKER")
        row = {c: "" for c in TSV_COLUMNS}
        row |= {"dialog_id": did, "utt_id": str(i), "speaker": spk, "turn_id": str(i // 2)}
        row |= {"text": f"utterance {i} about QUOTATION_MARKJawsQUOTATION_MARK", "movies": "Jaws (1975)"}
        row |= {"movie_dict": "{'Jaws (1975)': 0}", "genre_dict": "{'horror': 0}"}
        row |= {"expert_label": "credibility" if spk == "RECOMMENDER" else ""}
        lines.append(("\t".join(row[c] for c in TSV_COLUMNS) + "\n").encode())
        keys.append((did, str(i)))
    return lines, keys


def strategy_split(n: int = 5) -> tuple[list[bytes], list[str]]:
    """RSO strategy-labelled INSPIRED split (JSON lines); keys: dialog ids."""
    lines, keys = [], []
    for i in range(n):
        dialog = [
            {"text": f"hello {i}", "speaker": "RECOMMENDER", "strategy": STRATEGIES[i % len(STRATEGIES)]},
            {"text": "I like action", "speaker": "SEEKER", "strategy": "NaN"},
        ]
        lines.append(_jl({"dialog_id": f"s{i}", "dialog": dialog, "user_id": f"user_{i}", "genre_dict": ["Action"]}))
        keys.append(f"s{i}")
    return lines, keys


def redial_jsonl(n: int = 5) -> tuple[list[bytes], list[str]]:
    """ReDial raw records; keys: conversation ids."""
    lines, keys = [], []
    for i in range(n):
        msgs = [
            {"messageId": 1, "text": "Hi, any horror film?", "senderWorkerId": 10},
            {"messageId": 2, "text": f"Try @{100 + i}", "senderWorkerId": 20},
        ]
        rec = {
            "conversationId": str(1000 + i),
            "initiatorWorkerId": 10,
            "respondentWorkerId": 20,
            "messages": msgs,
            "movieMentions": {str(100 + i): f"Film {i}  (1990)"},
            "initiatorQuestions": {str(100 + i): {"suggested": 1, "seen": 0, "liked": 1}},
            "respondentQuestions": {},
        }
        lines.append(_jl(rec))
        keys.append(str(1000 + i))
    return lines, keys


def redial_test_txt(n: int = 5) -> tuple[list[bytes], list[str]]:
    """The RSO authors' ``redial-test.txt``; keys: dialog ids."""
    lines = [_jl({"dialog_id": f"r{i}", "dialog": ["hi", f"try film {i}"], "user_id": f"user_{i}"}) for i in range(n)]
    for i in range(n):
        lines[i] = _jl({**json.loads(lines[i]), "genre_dict": [_GENRES[i % len(_GENRES)]]})
    return lines, [f"r{i}" for i in range(n)]


def target_map(n: int = 5, prefix: str = "s") -> tuple[list[bytes], list[str]]:
    """dialogue -> user/genre mapping JSON lines; keys: dialog ids."""
    lines = [
        _jl({"dialog_id": f"{prefix}{i}", "user_id": f"user_{i}", "genre_dict": [_GENRES[i % len(_GENRES)]]})
        for i in range(n)
    ]
    return lines, [f"{prefix}{i}" for i in range(n)]


def sft_jsonl(n: int = 5) -> tuple[list[bytes], list[tuple[str, int]]]:
    """SFT examples as notebook 01 writes them; keys ``(dialog_id, turn_index)``."""
    lines, keys = [], []
    for i in range(n):
        hist = [{"speaker": "SEEKER", "text": "hi"}, {"speaker": "RECOMMENDER", "text": "hello", "strategy": "opinion"}]
        lines.append(_jl({"dialog_id": f"f{i}", "turn_index": 2, "strategy": STRATEGIES[i % 14], "history": hist}))
        keys.append((f"f{i}", 2))
    return lines, keys


def kb_json(n: int = 5) -> tuple[list[bytes], list[str]]:
    """ReDial ``id2info.json``, one entry a line (as one JSON object); keys: item ids."""
    lines = [b"{\n"]
    for i in range(n):
        info = {"name": f"Film {i} (199{i % 10})", "genre": [_GENRES[i % 5]], "plot": "x", "director": ["D"]}
        lines.append(f'"{500 + i}": {json.dumps(info)}{"," if i < n - 1 else ""}\n'.encode())
    lines.append(b"}\n")
    return lines, [str(500 + i) for i in range(n)]


def movie_db_tsv(n: int = 5) -> tuple[list[bytes], list[str]]:
    """INSPIRED ``movie_database.tsv``; keys: movie ids."""
    lines = [b"movie_id\ttitle\tyear\tgenre\tdirector\tactors\tshort_plot\n"]
    for i in range(n):
        lines.append(f"m{i}\tFilm {i}\t199{i}\tAction, Drama\tD\tA|B\tplot {i}\n".encode())
    return lines, [f"m{i}" for i in range(n)]


DEMO_HEADER = (
    "seeker_survey_id\trole\tseeker_id\tcase\treason\tage_group\tgender\trace\tdegree\tjob"
    "\tmarital_status\tpolitical_view\treligion\trecommender_id\tdate"
)
PERS_HEADER = "User_ID\tExtrovert\tAgreeable\tConscientious\tNeurotic\tOpen\tConformity"


def seeker_demographic(n: int = 5) -> tuple[list[bytes], list[str]]:
    """INSPIRED seeker demographics survey; keys: user ids."""
    lines = [(DEMO_HEADER + "\n").encode()]
    for i in range(n):
        lines.append(
            f"b_{i}\tSEEKER\tuser_{i}\taccept\tliked it\t25 - 34\tFemale\tAsian\tBachelor\tEmployed"
            f"\tMarried\tModerate\tNone\tuser_x\t2019-11-29\n".encode()
        )
    return lines, [f"user_{i}" for i in range(n)]


def seeker_personality(n: int = 5) -> tuple[list[bytes], list[str]]:
    """INSPIRED seeker personality survey; keys: user ids."""
    lines = [(PERS_HEADER + "\n").encode()]
    for i in range(n):
        lines.append(f"user_{i}\t{1 + i % 6}\t4.5\t3\t2\t5.5\t4\n".encode())
    return lines, [f"user_{i}" for i in range(n)]


def profile_csv(n: int = 5) -> tuple[list[bytes], list[str]]:
    """PC-CRS ``profile.csv`` (BOM, no header, quoted cells); keys: persona user ids."""
    lines = []
    for i in range(n):
        pre = "\ufeff" if i == 0 else ""
        lines.append(f'{pre}Boredom---Age group=Adults,{i},"long text {i}, with a comma","short {i}"\n'.encode())
    return lines, [f"pccrs_{i}" for i in range(n)]


def transcript_row(dialog_id: str, turn: int, done: bool) -> dict:
    """One valid ``rso.transcript/1`` line."""
    return {
        "schema": "rso.transcript/1",
        "system": "RSO",
        "dialog_id": dialog_id,
        "turn": turn,
        "dataset": "inspired",
        "user_id": "user_1",
        "target_genres": ["action"],
        "persona": "You are a person." if turn == 0 else None,
        "user_open": "Hi" if turn == 0 else None,
        "strategy": "opinion",
        "strategy_index": 8,
        "strategy_prob": 0.5,
        "strategy_entropy": 1.0,
        "preference": "",
        "retrieved": ["1", "2"],
        "retrieval_scores": [0.9, 0.8],
        "ranking": ["1", "2", "3"],
        "chosen_item": "1",
        "chooser_probs": [0.6, 0.4],
        "reply": "Try Jaws.",
        "refinements": 0,
        "mentioned_item": "1",
        "user_reply": "ok",
        "user_action": "inquire",
        "covers_target": True,
        "p_accept": 0.3,
        "accepted": False,
        "reward": 0.5,
        "rating": 3.0,
        "stop": False,
        "done": done,
        "stop_reason": "max_turns" if done else None,
        "parse_failures": {},
    }


def transcript(n_dialogues: int = 3, turns: int = 2) -> tuple[list[bytes], list[tuple[str, int]]]:
    """A finished transcript; keys ``(dialog_id, turn)``."""
    lines, keys = [], []
    for d in range(n_dialogues):
        for t in range(turns):
            lines.append(_jl(transcript_row(f"t{d}", t, t == turns - 1)))
            keys.append((f"t{d}", t))
    return lines, keys


def params_yaml() -> tuple[list[bytes], list[str]]:
    """A params file; keys: section names."""
    text = "common:\n  SEED: 0\n  N_DIALOGUES: 4\n01_data:\n  GENRE_RULE: all\n03_rl:\n  LR: 0.0001\n"
    return [ln.encode() + b"\n" for ln in text.splitlines()], ["common", "01_data", "03_rl"]


def write(path: Path, lines: list[bytes]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"".join(lines))
    return path
