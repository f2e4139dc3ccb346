"""Download the public data files the kit reads, pinned to commits and SHA256-checked.

Usage::

    python -m rso_lib.data.fetch --dest DATA_DIR            # everything missing
    python -m rso_lib.data.fetch --dest DATA_DIR --only inspired/dialog/train.tsv
    python -m rso_lib.data.fetch --dest DATA_DIR --only redial   # a folder prefix works too
    python -m rso_lib.data.fetch --dest DATA_DIR --check    # verify what is there, no network
    python -m rso_lib.data.fetch --list

Every file is fetched from ``https://raw.githubusercontent.com/<repository>/<commit>/<path>``,
written to a cache (``$RSO_CACHE``/fetch, default ``~/.cache/rso/fetch``) under its SHA256, checked,
then copied into ``DEST`` with an atomic rename. Checksums:

* files of the shared data copy: the SHA256 of those copies (computed with ``sha256sum``).
* ``redial/redial_dataset.zip``: the SHA256 published for the same URL by ParlAI
  (``parlai/tasks/redial/build.py``); not verified by us (no internet here).
* ``inspired/dialog/train.tsv`` and ``inspired/movie_database.tsv`` (too large to be copied):
  no checksum known, ``sha256=None``. They are verified on first download: trust on first use,
  the computed SHA256 is printed so that you can pin it in :data:`MANIFEST`.

Offline with no local copy: one :class:`FetchError` naming the file, the URL, and where to put
it by hand.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import sys
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

INSPIRED = ("sweetpeach/Inspired", "782d7c1845d11f75d2542809c7f2a51b63ef0304")
RSO = ("ym689/RSO", "4546ca2da6e3ce34288629e5007873d5bd07ee69")
IEVALM = ("RUCAIBox/iEvaLM-CRS", "162e2f442fb0799550af587dce0285a2d5ca897f")
PCCRS = ("mumen798/PC-CRS", "86cfb8a9b876c4d6f1d416be80a8743737c0dc07")
REDIAL_SITE = ("ReDialData/website", "849e9eb1bb60e312f8bf4daa82fc10a285e9318b")


class FetchError(RuntimeError):
    """A file could not be provided (offline and missing, or checksum mismatch)."""


@dataclass(frozen=True)
class ManifestEntry:
    local: str  # path relative to the data directory
    repository: str  # owner/name on GitHub
    commit: str | None  # None: a branch URL (see url_override)
    path: str  # path inside the repository
    sha256: str | None  # None: unknown, trust on first use
    licence: str = "none stated"
    url_override: str | None = None
    extract: dict[str, str] = field(default_factory=dict)  # zip member -> local path
    note: str = ""

    @property
    def url(self) -> str:
        return self.url_override or f"https://raw.githubusercontent.com/{self.repository}/{self.commit}/{self.path}"


def _e(
    local: str, src: tuple[str, str], path: str, sha: str | None, licence: str = "none stated", **kw
) -> ManifestEntry:
    return ManifestEntry(local, src[0], src[1], path, sha, licence, **kw)


MANIFEST: tuple[ManifestEntry, ...] = (
    _e(
        "inspired/dialog/README.md",
        INSPIRED,
        "data/dialog_data/README.md",
        "b14020eea72755252aa5559160a109ae1cd46372f03d1c32c43d63145b1fe291",
    ),
    _e(
        "inspired/dialog/train.tsv",
        INSPIRED,
        "data/dialog_data/train.tsv",
        None,
        note="too large for the shared copy; trust on first use",
    ),
    _e(
        "inspired/dialog/dev.tsv",
        INSPIRED,
        "data/dialog_data/dev.tsv",
        "15a955be002222ba9e95f886802e06a91fb5e457f8a25deae3e7908d58faa947",
    ),
    _e(
        "inspired/dialog/test.tsv",
        INSPIRED,
        "data/dialog_data/test.tsv",
        "a10f63ff26045158460730d4829ffba74bee86fb744d9f48c1c1c511ef609993",
    ),
    _e(
        "inspired/movie_database.tsv",
        INSPIRED,
        "data/movie_database.tsv",
        None,
        note="too large for the shared copy; trust on first use",
    ),
    _e(
        "inspired/survey/README.md",
        INSPIRED,
        "data/survey_data/README.md",
        "06c0ef9309140f67b5df3b1db734d64e6dbe544cf89e7c647e83d190f71936f0",
    ),
    _e(
        "inspired/survey/list_of_dialog_ids_with_movie_id_all.tsv",
        INSPIRED,
        "data/survey_data/list_of_dialog_ids_with_movie_id_all.tsv",
        "0bd2c8cf17b172a2ebd820a6877417d64804bc7b8be395ddb762975a6627a796",
    ),
    _e(
        "inspired/survey/rec_demographic.tsv",
        INSPIRED,
        "data/survey_data/rec_demographic.tsv",
        "824d8b2835560c80f98b912e923ec0b6ff5d06b78c8d41c3f360e0068dd209eb",
    ),
    _e(
        "inspired/survey/rec_personality.tsv",
        INSPIRED,
        "data/survey_data/rec_personality.tsv",
        "8f1a1176bcad45aeced418e83d1a9e62d266c6a867b237f4ce1362ad2477f11a",
    ),
    _e(
        "inspired/survey/seeker_demographic.tsv",
        INSPIRED,
        "data/survey_data/seeker_demographic.tsv",
        "678e5855de66e7e4cd1b785c99c9633e00ce8033ec662bd2b757371186b1a667",
    ),
    _e(
        "inspired/survey/seeker_partner_perception.tsv",
        INSPIRED,
        "data/survey_data/seeker_partner_perception.tsv",
        "adb506a05407266cd99c85f877e77885e45f6e8e0e492c4062eec141eb0b40f2",
    ),
    _e(
        "inspired/survey/seeker_personality.tsv",
        INSPIRED,
        "data/survey_data/seeker_personality.tsv",
        "2c12efaf5f5f9cb65e822d5ff9fde244e53521da3b25d04d7a4abf7e55b85fa2",
    ),
    _e(
        "inspired/strategy/inspired-train.txt",
        RSO,
        "data/sft_data/inspired-train.txt",
        "14737d5f26b2ddb38f9349d0d9314f9ed3914f75e164c34fe0402bf31e429b52",
    ),
    _e(
        "inspired/strategy/inspired-valid.txt",
        RSO,
        "data/sft_data/inspired-valid.txt",
        "e67e1a0cc2112ede33b67da82fb59735e39026e2376e7a68aebcad857dcc74d9",
    ),
    _e(
        "inspired/strategy/inspired-test.txt",
        RSO,
        "data/sft_data/inspired-test.txt",
        "aa6570fb0a3c4b48ff83b6fb83311cd625eafc547862bc459899a22f76b2ed5a",
    ),
    _e(
        "inspired/inspired_dialog_ids2user_id_and_genre_dict.jsonl",
        RSO,
        "eval/inspired_dialog_ids2user_id_and_genre_dict.jsonl",
        "a8b5636024c9dd9eaf6da8ee296bd4f7db91bcb0e15c146cae103887dfc57740",
    ),
    _e(
        "redial/id2info.json",
        IEVALM,
        "data/redial/id2info.json",
        "7bdfe9a9c7f1b4d59aa9a5aeba0029071fd5a7232b61c8257212a335ffe424f7",
        "MIT",
    ),
    _e(
        "redial/kg.json",
        PCCRS,
        "data/redial/kg.json",
        "e3698d042926defb656b25873d4144d255aa914a575fcafa8af14cf434c867ff",
    ),
    _e(
        "redial/entity2id.json",
        PCCRS,
        "data/redial/entity2id.json",
        "d530bd465e7a0edb19257d444d9665fda8271ec4d5aff235a417cad13848c52f",
    ),
    _e(
        "redial/entity2type.json",
        PCCRS,
        "data/redial/entity2type.json",
        "e75311e2e1eb3b3560302268c964cb44aaf1467e6a4d186baf2267ad20ea984b",
    ),
    _e(
        "redial/relation2id.json",
        PCCRS,
        "data/redial/relation2id.json",
        "028b39258502a41d81e7176f7d9f77b1b342c6a9dc42b5cf214309e590522027",
    ),
    _e(
        "redial/type2id.json",
        PCCRS,
        "data/redial/type2id.json",
        "5803838ef2749ca801f00f0a86aa345411f3b4b2321e70fb4c357470a5349f37",
    ),
    _e(
        "redial/item_ids.json",
        PCCRS,
        "data/redial/item_ids.json",
        "73d1676353fff02ba6cb2cab093b2977579666a152621f1248d07791d7a3b0a6",
    ),
    _e(
        "redial/valid_data.jsonl",
        PCCRS,
        "data/redial/valid_data.jsonl",
        "69b7cf81d0671c3dd0a1167df2e7e1e51ca76b3edce97022343d68f6974510a1",
    ),
    _e(
        "redial/redial-test.txt",
        RSO,
        "data/rl_data/redial/redial-test.txt",
        "50cbaa87b364744b74d070199da13651475fceacdf2da2578358f67593f68a1e",
    ),
    _e(
        "redial/redial_dialog_ids2user_id_and_genre_dict.jsonl",
        RSO,
        "eval/redial_dialog_ids2user_id_and_genre_dict.jsonl",
        "a9aeb8f915dee05331899d11eb6f035a0495f6c15ebb09abbb6ad23d0b6503af",
    ),
    _e(
        "redial/movies_with_mentions.csv",
        REDIAL_SITE,
        "movies_with_mentions.csv",
        "0d408daa474ac95b959a739a261dddd997dd800f5ea585da15a434a26187dbb0",
        "CC BY 4.0",
    ),
    ManifestEntry(
        "redial/redial_dataset.zip",
        REDIAL_SITE[0],
        None,
        "redial_dataset.zip",
        "b48756681ec6f84e0af36979c5e9baa21ea8d9e7036b8764ea9b787bb0baf69b",
        "CC BY 4.0",
        url_override="https://github.com/ReDialData/website/raw/data/redial_dataset.zip",
        extract={"train_data.jsonl": "redial/train_data.jsonl", "test_data.jsonl": "redial/test_data.jsonl"},
        note="official ReDial archive (branch 'data'); SHA256 as published by ParlAI for this URL",
    ),
    _e(
        "personas/profile.csv",
        PCCRS,
        "data/profile.csv",
        "5f90935bfbc0f4d2d6f6e1b924da9d67ee5dbf0fc43a67d28f78f0cd54d632b9",
    ),
)

Opener = Callable[[str], "object"]  # urlopen-like: returns a binary file-like object


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex SHA256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while b := f.read(chunk):
            h.update(b)
    return h.hexdigest()


def default_cache() -> Path:
    return Path(os.environ.get("RSO_CACHE", Path.home() / ".cache" / "rso")) / "fetch"


def select(only: str | None = None) -> list[ManifestEntry]:
    """Entries whose local path equals ``only``, starts with ``only/`` or names an extracted
    member (``redial/train_data.jsonl`` selects the archive); all when ``only`` is None."""
    if not only:
        return list(MANIFEST)
    only = only.strip("/")
    out = [e for e in MANIFEST if e.local == only or e.local.startswith(only + "/") or only in e.extract.values()]
    if not out:
        raise FetchError(f"--only {only!r} matches no file; see `python -m rso_lib.data.fetch --list`")
    return out


def _atomic_copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dst.parent, prefix="." + dst.name, suffix=".tmp")
    os.close(fd)
    try:
        shutil.copyfile(src, tmp)
        os.replace(tmp, dst)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _missing_message(e: ManifestEntry, dest: Path, why: str) -> str:
    return (
        f"missing data file {e.local}: {why}. Download {e.url} (from {e.repository}"
        f"{' @ ' + e.commit[:10] if e.commit else ''}, path {e.path}) and save it as {dest / e.local}, "
        f"or point RSO_DATA_DIR / DATA_DIR at a directory that holds it."
    )


def _download(e: ManifestEntry, cache: Path, opener: Opener, log: Callable[[str], None]) -> Path:
    """Download ``e`` into the cache (atomic), check the SHA256, return the cached path."""
    cache.mkdir(parents=True, exist_ok=True)
    if e.sha256:
        cached = cache / e.sha256
        if cached.is_file() and sha256_file(cached) == e.sha256:
            return cached
    fd, tmp = tempfile.mkstemp(dir=cache, prefix="download-", suffix=".tmp")
    h = hashlib.sha256()
    try:
        with os.fdopen(fd, "wb") as out, opener(e.url) as resp:  # type: ignore[attr-defined]
            while b := resp.read(1 << 20):
                h.update(b)
                out.write(b)
        got = h.hexdigest()
        if e.sha256 is None:
            log(
                f"[fetch] {e.local}: no pinned checksum; trust on first use, SHA256 = {got} "
                f"(pin it in rso_lib/data/fetch.py MANIFEST)"
            )
        elif got != e.sha256:
            raise FetchError(
                f"checksum mismatch for {e.local} from {e.url}: expected {e.sha256}, got {got}; "
                "the file was not installed"
            )
        cached = cache / got
        os.replace(tmp, cached)
        return cached
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def fetch_entry(
    e: ManifestEntry,
    dest: str | Path,
    cache: str | Path | None = None,
    opener: Opener | None = None,
    offline: bool = False,
    log: Callable[[str], None] = print,
) -> str:
    """Make ``dest/e.local`` (and its extracted members) present and verified.

    Returns ``"present"`` (already there and matching), ``"downloaded"``. Raises
    :class:`FetchError` when offline/unreachable with no local copy, or on a checksum mismatch
    (of the download or of a local file with a pinned checksum).
    """
    dest = Path(dest)
    cache = Path(cache) if cache else default_cache()
    target = dest / e.local
    members_ok = all((dest / m).is_file() for m in e.extract.values())
    if target.is_file() or (e.extract and members_ok):
        if target.is_file() and e.sha256 and sha256_file(target) != e.sha256:
            raise FetchError(
                f"{target}: SHA256 {sha256_file(target)} does not match the pinned {e.sha256}; "
                "delete it and fetch again"
            )
        if members_ok:
            return "present"
    if offline:
        raise FetchError(_missing_message(e, dest, "offline mode"))
    try:
        cached = _download(e, cache, opener or (lambda u: urllib.request.urlopen(u, timeout=60)), log)
    except (urllib.error.URLError, OSError, TimeoutError) as err:
        if isinstance(err, FetchError):
            raise
        raise FetchError(_missing_message(e, dest, f"could not download ({err})")) from err
    _atomic_copy(cached, target)
    if e.extract:
        with zipfile.ZipFile(target) as z:
            names = {Path(n).name: n for n in z.namelist()}
            for member, local in e.extract.items():
                if member not in names:
                    raise FetchError(f"{target}: archive has no member {member!r}")
                with z.open(names[member]) as src, tempfile.NamedTemporaryFile(dir=cache, delete=False) as tmpf:
                    shutil.copyfileobj(src, tmpf)
                _atomic_copy(Path(tmpf.name), dest / local)
                os.unlink(tmpf.name)
    log(f"[fetch] {e.local}: downloaded and verified")
    return "downloaded"


def check(dest: str | Path, entries: list[ManifestEntry] | None = None) -> list[tuple[str, str]]:
    """No network: ``(local, status)`` per entry, status in ``ok`` | ``ok (unpinned)`` |
    ``missing`` | ``MISMATCH``."""
    dest = Path(dest)
    out = []
    for e in entries or list(MANIFEST):
        p = dest / e.local
        if not p.is_file():
            ok = e.extract and all((dest / m).is_file() for m in e.extract.values())
            out.append((e.local, "ok (extracted members present)" if ok else "missing"))
        elif e.sha256 is None:
            out.append((e.local, "ok (unpinned)"))
        else:
            out.append((e.local, "ok" if sha256_file(p) == e.sha256 else "MISMATCH"))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m rso_lib.data.fetch", description=__doc__.split("\n")[0])
    ap.add_argument("--dest", help="data directory to fill (RSO_DATA_DIR)")
    ap.add_argument("--only", help="one file (local path) or folder prefix, e.g. inspired/dialog/train.tsv or redial")
    ap.add_argument("--cache", help="download cache (default $RSO_CACHE/fetch or ~/.cache/rso/fetch)")
    ap.add_argument("--offline", action="store_true", help="never touch the network")
    ap.add_argument("--check", action="store_true", help="verify files in --dest against the manifest, no network")
    ap.add_argument("--list", action="store_true", help="print the manifest")
    a = ap.parse_args(argv)
    try:
        entries = select(a.only)
    except FetchError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if a.list:
        for e in entries:
            print(f"{e.local}\t{e.repository}@{e.commit or 'branch'}\t{e.path}\t{e.sha256 or 'TOFU'}\t{e.url}")
        return 0
    if not a.dest:
        ap.error("--dest is required (unless --list)")
    if a.check:
        rows = check(a.dest, entries)
        for local, st in rows:
            print(f"{st:32s} {local}")
        return 0 if all(st.startswith("ok") for _, st in rows) else 1
    failed = 0
    for e in entries:
        try:
            st = fetch_entry(e, a.dest, a.cache, offline=a.offline)
            if st == "present":
                print(f"[fetch] {e.local}: present")
        except FetchError as err:
            failed += 1
            print(f"error: {err}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
