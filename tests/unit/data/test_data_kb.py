"""Knowledge base: real id2info.json + INSPIRED movie_database.tsv loader on tmp files."""

from __future__ import annotations

import json

import pytest

from rso_lib.data.kb import KnowledgeBase, load_inspired_kb, load_kb, load_redial_kb, normalise_title, split_title_year
from rso_lib.data.records import DataError, Item


@pytest.fixture(scope="module")
def kb(data_dir):
    return load_kb(data_dir)


def test_redial_kb_size_and_fields(kb):
    assert len(kb) == 6583
    assert kb.issues == []
    it = kb.get("151656")
    assert (it.title, it.year, it.genres) == ("Police Academy", 1984, ["comedy"])
    assert it.name == "Police Academy (1984)" and it.imdb_id == "tt0087928"
    assert "Hugh Wilson" in it.facts()
    # every genre lower-case; 570 names carry no year
    assert all(g == g.lower() for i in kb for g in i.genres)
    assert sum(i.year is None for i in kb) == 570


def test_split_and_normalise():
    assert split_title_year("Police Academy  (1984)") == ("Police Academy", 1984)
    assert split_title_year("2001: A Space Odyssey (1968)") == ("2001: A Space Odyssey", 1968)
    assert split_title_year("Back to the Future") == ("Back to the Future", None)
    assert normalise_title("The Matrix") == normalise_title("matrix, the") == "matrix"
    assert normalise_title("Amélie") == normalise_title("AMELIE")
    assert normalise_title("Fast & Furious") == normalise_title("fast and furious")


def test_lookup(kb):
    assert kb.lookup("police academy (1984)").item_id == "151656"
    assert kb.lookup("Police Academy", 1984).item_id == "151656"
    assert kb.lookup("Friends with Benefits", 1950) is None  # a different year is a different movie
    # id2info has "Police Academy (1984)" and a year-less duplicate: an unknown year falls back to it
    assert kb.lookup("Police Academy", 1950).item_id == "81006"
    assert kb.lookup("The Matrix").title == "The Matrix"  # no year in the KB, none asked
    assert kb.lookup("The Matrix", 1999).item_id == "85036"  # exact year beats the year-less duplicate 140395
    assert kb.lookup("no such movie at all xyz") is None


def test_covers_and_valid_targets(kb):
    assert kb.covers("151656", ["Comedy"])
    assert not kb.covers("151656", ["comedy", "drama"])
    assert not kb.covers("151656", [])  # an empty target is covered by nothing (no free hits)
    assert not kb.covers("does-not-exist", [])
    t = kb.valid_targets(["action", "adventure", "thriller"])
    assert len(t) == 58
    assert all({"action", "adventure", "thriller"} <= set(kb.get(i).genres) for i in t)
    # brute force agrees, on a second genre set
    brute = [i.item_id for i in kb if {"crime", "drama"} <= set(i.genres)]
    assert kb.valid_targets(["Drama", "crime"]) == brute
    assert kb.valid_targets([]) == []  # an empty target: no item is a hit


def test_redial_kb_errors(tmp_path):
    p = tmp_path / "id2info.json"
    p.write_text("")
    with pytest.raises(DataError, match="id2info.json.*empty"):
        load_redial_kb(p)
    p.write_text('{"1": {"name": "A (2000)", "genre": ["Drama"]},\n "2": {"genre": []}')
    with pytest.raises(DataError, match=r"id2info.json:2"):
        load_redial_kb(p)
    p.write_text(json.dumps({"1": {"name": "A (2000)", "genre": ["Drama"]}, "2": {"genre": []}}))
    kb = load_redial_kb(p)
    assert len(kb) == 1 and kb.issues[0].field == "2.name" and kb.issues[0].action == "skipped"


def test_inspired_kb_tsv(tmp_path):
    p = tmp_path / "movie_database.tsv"
    p.write_text(
        "title\tyear\tgenre\tdirector\tactors\tshort_plot\n"
        "Joker (2019)\t2019\tCrime, Drama, Thriller\tTodd Phillips\tJoaquin Phoenix, Robert De Niro\tA man.\n"
        "\t2000\tDrama\t\t\t\n"
        "Frozen II\t2019\tAnimation|Family\t\t\t\n",
        encoding="utf-8",
    )
    kb = load_inspired_kb(p)
    assert len(kb) == 2
    j = kb.lookup("joker", 2019)
    assert j.genres == ["crime", "drama", "thriller"] and j.stars == ["Joaquin Phoenix", "Robert De Niro"]
    assert kb.lookup("Frozen II").year == 2019
    assert [(i.line, i.field, i.action) for i in kb.issues] == [(3, "title", "skipped")]
    p.write_text("name_of_film\tyear\nX\t2000\n")
    with pytest.raises(DataError, match=r"movie_database.tsv:1 \[title\]"):
        load_inspired_kb(p)


def test_load_kb_inspired_missing_says_how(tmp_path):
    with pytest.raises(DataError, match="rso_lib.data.fetch"):
        load_kb(tmp_path, source="inspired")


def test_handbuilt_kb():
    kb = KnowledgeBase([Item("a", "X", 2000, ["Drama", "drama", "Comedy"])])
    assert kb.get("a").genres == ["drama", "comedy"] and "a" in kb and list(kb)[0].item_id == "a"
