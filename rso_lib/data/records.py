"""Typed records shared by every stage of the kit (data -> llm -> experts -> dialogue -> ...).

Plain dataclasses: cheap to build, easy to JSON-serialise with :func:`dataclasses.asdict`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SEEKER = "SEEKER"
RECOMMENDER = "RECOMMENDER"


class DataError(ValueError):
    """Bad input data. The message always names the file and, where known, the line (1-based)
    and field, so that a user can open the file and fix it."""

    def __init__(self, path: str | Path, message: str, line: int | None = None, field: str | None = None):
        self.path, self.line, self.field = str(path), line, field
        where = self.path + (f":{line}" if line is not None else "") + (f" [{field}]" if field else "")
        super().__init__(f"{where}: {message}")


@dataclass
class Issue:
    """A problem found in one row that did not stop the load (the row was kept or skipped as
    `action` says). Loaders return these so that nothing is lost silently."""

    path: str
    line: int | None
    field: str | None
    message: str
    action: str = "kept"  # "kept" (row kept, field left empty) | "skipped" (row dropped)

    def __str__(self) -> str:
        where = (
            self.path + (f":{self.line}" if self.line is not None else "") + (f" [{self.field}]" if self.field else "")
        )
        return f"{where}: {self.message} ({self.action})"


@dataclass
class Turn:
    speaker: str  # SEEKER | RECOMMENDER
    text: str
    strategy: str | None = None  # canonical snake_case strategy id (recommender turns only)
    movies: list[str] = field(default_factory=list)  # titles mentioned, as given by the dataset


@dataclass
class Dialogue:
    dialog_id: str
    turns: list[Turn]
    source: str  # "inspired" | "redial"
    split: str  # "train" | "valid" | "test" | ...
    meta: dict[str, Any] = field(default_factory=dict)  # dataset-specific extras (questionnaires, ...)


@dataclass
class Item:
    """One movie of the catalogue / knowledge base."""

    item_id: str
    title: str  # without the year
    year: int | None = None
    genres: list[str] = field(default_factory=list)  # lower-case
    plot: str = ""
    director: list[str] = field(default_factory=list)
    writer: list[str] = field(default_factory=list)
    stars: list[str] = field(default_factory=list)
    imdb_id: str | None = None

    @property
    def name(self) -> str:
        """Title with year, as dialogues write it: ``Police Academy (1984)``."""
        return f"{self.title} ({self.year})" if self.year else self.title

    def facts(self) -> str:
        """The item's knowledge-base facts as one short text (what the Fact Retriever hands the
        Actor, and what the credibility judge checks claims against)."""
        parts = [self.name]
        if self.genres:
            parts.append("Genres: " + ", ".join(self.genres))
        if self.director:
            parts.append("Director: " + ", ".join(self.director))
        if self.stars:
            parts.append("Stars: " + ", ".join(self.stars[:4]))
        if self.plot:
            parts.append("Plot: " + self.plot)
        return ". ".join(parts)


@dataclass
class Persona:
    user_id: str
    description: str  # natural-language persona for the LLM user simulator
    fields: dict[str, Any] = field(default_factory=dict)  # demographics, Big-5, emotion, age group ...


@dataclass
class SimTarget:
    """One simulated user: who they are and what they want (PC-CRS / RSO protocol). An item is a
    valid target iff its genres cover ``target_genres``."""

    dialog_id: str
    dataset: str  # "inspired" | "redial"
    user_id: str
    persona: Persona
    target_genres: list[str]  # lower-case
