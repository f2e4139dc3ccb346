"""Which catalogue movies a piece of dialogue names, with their aliases (the leak audit of the
validity card, :mod:`rso_lib.eval.transcript_checks`, and the simulated user's first message,
:mod:`rso_lib.eval.validity`)."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

from rso_lib.data.kb import normalise_title
from rso_lib.data.records import Item

_WORD = re.compile(r"[\w'\u2019&]+")
_YEAR = re.compile(r"^(1[89]\d\d|20\d\d)$")


def _norm_word(w: str) -> str:
    w = unicodedata.normalize("NFKD", w)
    w = "".join(c for c in w if not unicodedata.combining(c)).lower()
    return "and" if w == "&" else re.sub(r"[^0-9a-z]", "", w)


def _words(text: str) -> list[tuple[str, str, bool]]:
    """(normalised word, original word, starts a sentence) for each word of ``text``."""
    out = []
    for m in _WORD.finditer(text):
        before = text[: m.start()].rstrip(" \t\"'(\u201c")
        start = not before or before[-1] in ".!?:\n"
        w = _norm_word(m.group())
        if w:
            out.append((w, m.group(), start))
    return out


class TitleIndex:
    """Find the catalogue movies a text names, with their aliases.

    A title of two or more words is found wherever its words appear in order (case, punctuation
    and accents do not matter; with or without its article). A one-word title ("Alien", "The
    Notebook" without its article, "1984") counts only when written like a name -- capitalised and
    not at the start of a sentence -- or followed by its year, and never when it is a genre word:
    "that sounds awesome" does not name *Awesome*. Longer titles win over the words inside them.
    """

    def __init__(self, items: Iterable[Item], max_words: int = 12):
        self.items: dict[str, Item] = {it.item_id: it for it in items}
        self.max_words = max_words
        self.genres = {g for it in self.items.values() for g in it.genres}
        self.keys: dict[tuple[str, ...], list[str]] = {}
        for iid in sorted(self.items):
            for alias in self.aliases(self.items[iid].title):
                if 0 < len(alias) <= max_words:
                    self.keys.setdefault(alias, []).append(iid)

    @staticmethod
    def aliases(title: str) -> set[tuple[str, ...]]:
        """The word sequences a title is written as: in full, and without its article."""
        full = tuple(w for w in (_norm_word(m.group()) for m in _WORD.finditer(title)) if w)
        return {full, tuple(normalise_title(title).split())} - {()}

    def _one_word_ok(self, words, i: int, ids: list[str]) -> list[str]:
        """The ids a one-word match at ``i`` may name (see the class doc)."""
        w, orig, start = words[i]
        nxt = words[i + 1][0] if i + 1 < len(words) else ""
        if _YEAR.match(nxt):
            return [iid for iid in ids if str(self.items[iid].year) == nxt]
        if w in self.genres or w.isdigit() or start or not orig[:1].isupper():
            return []
        return ids

    def _pick_year(self, words, end: int, ids: list[str]) -> list[str]:
        nxt = words[end][0] if end < len(words) else ""
        same = [iid for iid in ids if _YEAR.match(nxt) and str(self.items[iid].year) == nxt]
        return same or ids

    def find(self, text: str) -> list[str]:
        """Ids of the movies ``text`` names (all remakes of a title unless a year picks one)."""
        words = _words(text or "")
        used = [False] * len(words)
        found: list[str] = []
        for n in range(min(self.max_words, len(words)), 0, -1):
            for i in range(len(words) - n + 1):
                if any(used[i : i + n]):
                    continue
                ids = self.keys.get(tuple(w for w, _, _ in words[i : i + n]))
                if not ids:
                    continue
                ids = self._one_word_ok(words, i, ids) if n == 1 else self._pick_year(words, i + n, ids)
                if ids:
                    used[i : i + n] = [True] * n
                    found += [x for x in ids if x not in found]
        return found

    def title_key(self, iid: str) -> str:
        return normalise_title(self.items[iid].title)
