"""The movie knowledge base (catalogue) shared by both datasets.

Default source: ReDial ``redial/id2info.json`` (6,583 movies; the catalogue that iEvaLM, PC-CRS and
the RSO authors use), a JSON object ``{movie_id: {name, genre[], plot, director[], writer[], star[],
imdb_id}}``. Names carry the year in brackets (``"Police Academy (1984)"``); 568 of them have none.

Second source: INSPIRED's ``inspired/movie_database.tsv`` (not in the shared data; fetched with
:mod:`rso_lib.data.fetch`), the movie database the RSO authors' INSPIRED knowledge graph holds
(items shown as ``"Title (Year)"``). Its column names are matched through aliases
(``title``/``movie``, ``genre``/``genres``, ...); only a title column is required.

The source is chosen per dataset (the ``KB_SOURCE`` parameter, :func:`kb_source_map`): a string
means that source for both datasets, a mapping names each dataset's. A source whose file is
absent is an error (:class:`DataError` saying how to fetch it), never a silent fallback.

Simulation targets (PC-CRS / RSO protocol): an item is a valid target for a simulated user iff its
genres *cover* the user's target genres, i.e. ``set(target) <= set(item.genres)`` (lower-cased).
"""

from __future__ import annotations

import ast
import re
import unicodedata
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

from rso_lib.data._io import (
    MAX_JSON_DEPTH,
    BadJSON,
    line_col,
    nested_deeper_than,
    parse_json,
    read_text_utf8,
    read_tsv,
)
from rso_lib.data.records import DataError, Issue, Item

# "Title (1984)" / "Title  (1984)" / "Title (1984) " -> ("Title", 1984). Only a 4-digit year in the
# LAST brackets counts, so "2001: A Space Odyssey (1968)" and "Ocean's 11 (2001)" parse right.
_YEAR_RE = re.compile(r"^(?P<title>.*?)\s*\((?P<year>1[89]\d\d|20\d\d)\)\s*$")
# Leading/trailing articles in the many spellings dialogues use ("The Matrix", "Matrix, The").
_ARTICLES = ("the", "a", "an")


def split_title_year(name: str) -> tuple[str, int | None]:
    """Split ``"Police Academy  (1984)"`` into ``("Police Academy", 1984)``.

    Names without a trailing ``(yyyy)`` come back unchanged (stripped) with year ``None``.
    """
    name = " ".join(str(name).split())
    m = _YEAR_RE.match(name)
    if m and m.group("title"):
        return m.group("title").strip(), int(m.group("year"))
    return name.strip(), None


def normalise_title(title: str) -> str:
    """Lookup key for a title: case, accents, punctuation, ``&``/``and`` and a leading or trailing
    article do not matter.

    >>> normalise_title("The Lord of the Rings: The Fellowship of the Ring")
    'lord of the rings the fellowship of the ring'
    >>> normalise_title("Amélie") == normalise_title("amelie")
    True
    >>> normalise_title("Matrix, The") == normalise_title("The Matrix")
    True
    """
    t = unicodedata.normalize("NFKD", str(title))
    t = "".join(c for c in t if not unicodedata.combining(c)).lower()
    t = t.replace("&", " and ").replace("'", "").replace("\u2019", "")
    t = re.sub(r"[^0-9a-z]+", " ", t).split()
    if len(t) > 1 and t[-1] in _ARTICLES:  # "matrix the" (from "Matrix, The")
        t = t[:-1]
    if len(t) > 1 and t[0] in _ARTICLES:
        t = t[1:]
    return " ".join(t)


def normalise_genres(genres: Iterable[str]) -> list[str]:
    """Lower-case, strip, de-duplicate (order kept)."""
    out: list[str] = []
    for g in genres:
        g = str(g).strip().lower()
        if g and g not in out:
            out.append(g)
    return out


class KnowledgeBase:
    """Movie catalogue with fact lookup and target-genre coverage.

    Attributes:
        items: ``dict[item_id, Item]`` in source-file order (iteration order is deterministic).
        source: ``"redial"`` | ``"inspired"`` | free text for hand-built catalogues.
        path: the file it was read from (or ``None``).
        issues: non-fatal problems met while loading (rows kept or skipped, see each Issue).
    """

    def __init__(
        self,
        items: Iterable[Item],
        source: str = "custom",
        path: str | Path | None = None,
        issues: list[Issue] | None = None,
    ):
        self.items: dict[str, Item] = {}
        for it in items:
            it.genres = normalise_genres(it.genres)
            self.items[str(it.item_id)] = it
        self.source = source
        self.path = str(path) if path is not None else None
        self.issues: list[Issue] = list(issues or [])
        # normalised title -> item ids (file order). Several movies share a title (remakes), so
        # the year decides; see lookup().
        self._by_title: dict[str, list[str]] = {}
        for iid, it in self.items.items():
            self._by_title.setdefault(normalise_title(it.title), []).append(iid)
        self._targets_cache: dict[frozenset[str], list[str]] = {}

    # --- container protocol -------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self) -> Iterator[Item]:
        return iter(self.items.values())

    def __contains__(self, item_id: object) -> bool:
        return str(item_id) in self.items

    def get(self, item_id: str | int) -> Item | None:
        """The item with this id, or ``None``."""
        return self.items.get(str(item_id))

    # --- lookup -------------------------------------------------------------------------------
    def lookup(self, title: str, year: int | None = None) -> Item | None:
        """Find a movie by title (and year).

        ``title`` may carry the year itself (``"Police Academy (1984)"``); an explicit ``year``
        wins. Matching uses :func:`normalise_title`. With a year: the item with that title and
        year, else an item with that title and *no* year in the catalogue, else ``None`` (a
        different year is a different movie: remakes). Without a year: the first item of that
        title in catalogue order (deterministic). Returns ``None`` when nothing matches.
        """
        t, y = split_title_year(title)
        if year is None:
            year = y
        ids = self._by_title.get(normalise_title(t))
        if not ids:
            return None
        if year is None:
            return self.items[ids[0]]
        year = int(year)
        for iid in ids:
            if self.items[iid].year == year:
                return self.items[iid]
        for iid in ids:
            if self.items[iid].year is None:
                return self.items[iid]
        return None

    # --- target genres ------------------------------------------------------------------------
    def covers(self, item_id: str | int, genres: Iterable[str]) -> bool:
        """True iff the item's genres are a superset of ``genres`` (both lower-cased).

        An empty ``genres`` is covered by no item: an empty target would hand out free Rec-SR and
        Recall hits (targets never have one: :func:`rso_lib.data.targets.apply_genre_rule` gives
        such users the authors' substitute genre). An id not in the catalogue covers nothing
        (``False``): an item the KB does not know cannot be shown to match the user's target.
        """
        it = self.items.get(str(item_id))
        want = set(normalise_genres(genres))
        if it is None or not want:
            return False
        return want <= set(it.genres)

    def valid_targets(self, genres: Iterable[str]) -> list[str]:
        """Ids of all items whose genres cover ``genres``, in catalogue order (cached per set);
        none for an empty ``genres`` (see :meth:`covers`)."""
        key = frozenset(normalise_genres(genres))
        if not key:
            return []
        if key not in self._targets_cache:
            self._targets_cache[key] = [iid for iid, it in self.items.items() if key <= set(it.genres)]
        return list(self._targets_cache[key])

    def genres(self) -> list[str]:
        """All genres in the catalogue, sorted."""
        return sorted({g for it in self.items.values() for g in it.genres})

    def __repr__(self) -> str:
        return f"KnowledgeBase(source={self.source!r}, items={len(self)}, path={self.path!r})"


# --------------------------------------------------------------------------------------------------
# loaders
# --------------------------------------------------------------------------------------------------


def _as_list(v, path: Path, idx: str, fieldname: str, issues: list[Issue]) -> list[str]:
    if v is None:
        return []
    if isinstance(v, str):
        return [v] if v.strip() else []
    if isinstance(v, list):
        return [str(x) for x in v if str(x).strip()]
    issues.append(Issue(str(path), None, f"{idx}.{fieldname}", f"expected a list, got {type(v).__name__}", "kept"))
    return []


def load_redial_kb(path: str | Path) -> KnowledgeBase:
    """Read ReDial ``id2info.json`` into a :class:`KnowledgeBase`.

    Fatal (:class:`DataError`): missing/empty file, not JSON, not an object. Non-fatal
    (:class:`Issue`): an entry without a usable ``name`` (skipped), a non-list list field (kept,
    field left empty).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "file not found (ReDial id2info.json; see `python -m rso_lib.data.fetch`)")
    text = read_text_utf8(path, "ReDial id2info.json") if path.stat().st_size else ""
    if not text.strip():
        raise DataError(path, "empty file", line=1)
    try:
        raw = parse_json(text, max_depth=None)  # one entry nested too deep is that entry's problem
    except BadJSON as e:
        if e.pos is None:
            raise DataError(path, f"not valid JSON: {e.msg}") from None
        line, col = line_col(text, e.pos)
        raise DataError(path, f"not valid JSON: {e.msg} at column {col}", line=line) from None
    if not isinstance(raw, dict):
        raise DataError(path, f"expected a JSON object {{movie_id: info}}, got {type(raw).__name__}", line=1)
    items: list[Item] = []
    issues: list[Issue] = []
    for iid, info in raw.items():
        if nested_deeper_than(info, MAX_JSON_DEPTH - 1):
            issues.append(Issue(str(path), None, iid, f"entry nested deeper than {MAX_JSON_DEPTH} levels", "skipped"))
            continue
        if not isinstance(info, dict) or not str(info.get("name", "")).strip():
            issues.append(Issue(str(path), None, f"{iid}.name", "entry without a name", "skipped"))
            continue
        title, year = split_title_year(info["name"])
        items.append(
            Item(
                item_id=str(iid),
                title=title,
                year=year,
                genres=_as_list(info.get("genre"), path, iid, "genre", issues),
                plot=str(info.get("plot") or ""),
                director=_as_list(info.get("director"), path, iid, "director", issues),
                writer=_as_list(info.get("writer"), path, iid, "writer", issues),
                stars=_as_list(info.get("star"), path, iid, "star", issues),
                imdb_id=(str(info["imdb_id"]) if info.get("imdb_id") else None),
            )
        )
    return KnowledgeBase(items, source="redial", path=path, issues=issues)


# Column aliases for INSPIRED movie_database.tsv (matched case-insensitively).
_TSV_ALIASES: dict[str, tuple[str, ...]] = {
    "id": ("movie_id", "id", "video_id", "imdb_id"),
    "title": ("title", "movie", "movie_name", "name"),
    "year": ("year", "release_year", "released"),
    "genres": ("genre", "genres"),
    # the long plot first: the RSO authors' INSPIRED items carry ``long_plot``, the text their WI
    # judge's item similarity and their Cred judge's source read
    "plot": ("long_plot", "plot", "short_plot", "description", "overview"),
    "director": ("director", "directors"),
    "writer": ("writer", "writers"),
    "stars": ("actors", "stars", "star", "cast", "actor"),
    "imdb_id": ("imdb_id", "imdbid", "imdb"),
}


def _split_multi(v: str) -> list[str]:
    """``"Action, Drama"`` / ``"Action|Drama"`` / ``"['Action', 'Drama']"`` -> list."""
    v = (v or "").strip()
    if not v or v.lower() in ("nan", "none", "n/a"):
        return []
    if v.startswith("[") and v.endswith("]"):
        try:
            val = ast.literal_eval(v)  # dataset literal, never model output
            if isinstance(val, (list, tuple)):
                return [str(x).strip() for x in val if str(x).strip()]
        except (ValueError, SyntaxError, TypeError, RecursionError, MemoryError):
            pass  # not a list literal after all: split it as text
    return [p.strip() for p in re.split(r"[,|;]", v) if p.strip()]


def load_inspired_kb(path: str | Path) -> KnowledgeBase:
    """Read INSPIRED ``movie_database.tsv`` (tab-separated, header row) into a KnowledgeBase.

    Only a title column is required (else :class:`DataError` naming the file and line 1). Rows
    without a title are skipped with an :class:`Issue`; the id is the first id-like column, else
    ``"inspired:<row number>"``.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "file not found (INSPIRED movie_database.tsv; see `python -m rso_lib.data.fetch`)")
    issues: list[Issue] = []
    items: list[Item] = []
    header, rows = read_tsv(path, "INSPIRED movie database", issues)
    low = [h.lower() for h in header]
    col: dict[str, int] = {}
    for key, names in _TSV_ALIASES.items():
        for n in names:
            if n in low:
                col[key] = low.index(n)
                break
    if "title" not in col:
        raise DataError(path, f"no title column (have: {', '.join(header)})", line=1, field="title")
    seen: set[str] = set()
    for lineno, row in rows:

        def g(key: str, row: list[str] = row) -> str:  # bound now: called only within this iteration
            i = col.get(key)
            return row[i].strip() if i is not None and i < len(row) else ""

        raw_title = g("title")
        if not raw_title or raw_title.lower() == "nan":
            issues.append(Issue(str(path), lineno, "title", "row without a title", "skipped"))
            continue
        title, year = split_title_year(raw_title)
        ys = g("year")
        m = re.search(r"(1[89]\d\d|20\d\d)", ys)
        if m:
            year = int(m.group(1))
        iid = g("id") or f"inspired:{lineno - 1}"
        if iid in seen:  # duplicate ids: keep both, the later one renamed
            issues.append(Issue(str(path), lineno, "id", f"duplicate id {iid!r}", "kept"))
            iid = f"{iid}#{lineno}"
        seen.add(iid)
        items.append(
            Item(
                item_id=iid,
                title=title,
                year=year,
                genres=_split_multi(g("genres")),
                plot=g("plot"),
                director=_split_multi(g("director")),
                writer=_split_multi(g("writer")),
                stars=_split_multi(g("stars")),
                imdb_id=g("imdb_id") or None,
            )
        )
    if not items:
        raise DataError(path, "no movie rows after the header", line=2)
    return KnowledgeBase(items, source="inspired", path=path, issues=issues)


REDIAL_KB = "redial/id2info.json"
INSPIRED_KB = "inspired/movie_database.tsv"
#: the knowledge-base sources and the datasets that choose one each
KB_SOURCES = ("redial", "inspired")
DATASETS = ("inspired", "redial")


def kb_source_map(kb_source: str | Mapping[str, str]) -> dict[str, str]:
    """The ``KB_SOURCE`` parameter as ``{dataset: source}`` for both datasets.

    A string is that source for both datasets; a mapping must name every dataset of
    :data:`DATASETS` and nothing else. Raises ValueError naming ``KB_SOURCE``, the bad key or value
    and what is allowed.

    >>> kb_source_map("redial")
    {'inspired': 'redial', 'redial': 'redial'}
    >>> kb_source_map({"inspired": "inspired", "redial": "redial"})
    {'inspired': 'inspired', 'redial': 'redial'}
    """
    allowed = ", ".join(map(repr, KB_SOURCES))
    if isinstance(kb_source, str):
        if kb_source not in KB_SOURCES:
            raise ValueError(f"KB_SOURCE = {kb_source!r}: one of {allowed}, or a mapping {{dataset: source}}")
        return dict.fromkeys(DATASETS, kb_source)
    if not isinstance(kb_source, Mapping):
        raise ValueError(
            f"KB_SOURCE = {kb_source!r}: a source name ({allowed}) or a mapping {{dataset: source}}, "
            f"got {type(kb_source).__name__}"
        )
    unknown = sorted(map(str, set(kb_source) - set(DATASETS)))
    missing = [d for d in DATASETS if d not in kb_source]
    if unknown or missing:
        why = [f"unknown dataset key(s) {unknown}"] if unknown else []
        why += [f"no source for {missing}"] if missing else []
        raise ValueError(f"KB_SOURCE: {'; '.join(why)} (a mapping names each of {', '.join(DATASETS)})")
    for d in DATASETS:
        if kb_source[d] not in KB_SOURCES:
            raise ValueError(f"KB_SOURCE[{d!r}] = {kb_source[d]!r}: one of {allowed}")
    return {d: kb_source[d] for d in DATASETS}


def load_kb(data_dir: str | Path, source: str = "redial") -> KnowledgeBase:
    """Load the catalogue.

    Args:
        data_dir: the data directory (see :func:`rso_lib.paths.data_dir`).
        source: ``"redial"`` (default: ``redial/id2info.json``) or ``"inspired"``
            (``inspired/movie_database.tsv``; raises :class:`DataError` saying how to fetch it
            when absent: the shared data does not hold it).
    """
    data_dir = Path(data_dir)
    if source == "redial":
        return load_redial_kb(data_dir / REDIAL_KB)
    if source == "inspired":
        p = data_dir / INSPIRED_KB
        if not p.is_file():
            raise DataError(
                p,
                "INSPIRED movie_database.tsv is not in the data directory (KB_SOURCE names 'inspired'); "
                "download it with `python -m rso_lib.data.fetch --dest DATA_DIR --only inspired/movie_database.tsv`, "
                "or set KB_SOURCE to 'redial' for that dataset to use ReDial's catalogue instead",
            )
        return load_inspired_kb(p)
    raise ValueError(f"unknown KB source {source!r}; expected one of {', '.join(map(repr, KB_SOURCES))}")


def load_kbs(
    data_dir: str | Path, kb_source: str | Mapping[str, str], datasets: Iterable[str] = DATASETS
) -> dict[str, KnowledgeBase]:
    """``{dataset: KnowledgeBase}`` of ``datasets`` under ``KB_SOURCE`` (:func:`kb_source_map`);
    datasets with the same source share one object (each file is read once)."""
    by_dataset = kb_source_map(kb_source)
    loaded: dict[str, KnowledgeBase] = {}
    out = {}
    for d in datasets:
        if d not in by_dataset:
            raise ValueError(f"unknown dataset {d!r}; expected one of {', '.join(DATASETS)}")
        src = by_dataset[d]
        if src not in loaded:
            loaded[src] = load_kb(data_dir, src)
        out[d] = loaded[src]
    return out
