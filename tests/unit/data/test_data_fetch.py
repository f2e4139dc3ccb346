"""fetch: manifest vs. the shared copies, checksum check, cache, offline message. No network:
downloads use file:// URLs or a monkeypatched opener."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import urllib.error
import urllib.request
import zipfile

import pytest

from rso_lib.data import fetch
from rso_lib.data.fetch import MANIFEST, FetchError, ManifestEntry, check, fetch_entry, main, select, sha256_file


def _entry(tmp_path, content: bytes, sha: str | None, local="x/file.txt", **kw) -> ManifestEntry:
    src = tmp_path / "remote.bin"
    src.write_bytes(content)
    return ManifestEntry(local, "o/r", "c" * 40, "p", sha, url_override=src.as_uri(), **kw)


def test_manifest_matches_shared_copies(data_dir):
    rows = dict(check(data_dir))
    missing = {k for k, v in rows.items() if v == "missing"}
    present_files = {p.relative_to(data_dir).as_posix() for p in data_dir.rglob("*") if p.is_file()}
    # every data file of the shared copy is in the manifest with a matching checksum
    assert present_files - {e.local for e in MANIFEST} == {"README.md"}
    assert all(v == "ok" for k, v in rows.items() if k not in missing)
    assert missing <= {"inspired/dialog/train.tsv", "inspired/movie_database.tsv", "redial/redial_dataset.zip"}
    assert all(e.url.startswith("https://") for e in MANIFEST)


def test_download_verifies_and_installs(tmp_path):
    data = b"hello data\n"
    e = _entry(tmp_path, data, hashlib.sha256(data).hexdigest())
    dest, cache = tmp_path / "dest", tmp_path / "cache"
    assert fetch_entry(e, dest, cache, log=lambda m: None) == "downloaded"
    assert (dest / "x/file.txt").read_bytes() == data
    assert fetch_entry(e, dest, cache) == "present"
    assert not list(dest.rglob("*.tmp")) and not list(cache.glob("*.tmp"))


def test_checksum_mismatch_installs_nothing(tmp_path):
    e = _entry(tmp_path, b"tampered", "0" * 64)
    with pytest.raises(FetchError, match="checksum mismatch for x/file.txt"):
        fetch_entry(e, tmp_path / "dest", tmp_path / "cache", log=lambda m: None)
    assert not (tmp_path / "dest" / "x/file.txt").exists()
    assert list((tmp_path / "cache").iterdir()) == []


def test_local_copy_mismatch_detected(tmp_path):
    data = b"abc"
    e = _entry(tmp_path, data, hashlib.sha256(data).hexdigest())
    (tmp_path / "dest/x").mkdir(parents=True)
    (tmp_path / "dest/x/file.txt").write_bytes(b"abd")
    with pytest.raises(FetchError, match="does not match the pinned"):
        fetch_entry(e, tmp_path / "dest", tmp_path / "cache", offline=True)


def test_trust_on_first_use_prints_sha(tmp_path):
    data = b"unpinned"
    e = _entry(tmp_path, data, None)
    logs: list[str] = []
    fetch_entry(e, tmp_path / "dest", tmp_path / "cache", log=logs.append)
    assert any(hashlib.sha256(data).hexdigest() in m and "trust on first use" in m for m in logs)


def test_offline_missing_names_file_and_url(tmp_path):
    e = dataclasses.replace(next(x for x in MANIFEST if x.local == "inspired/dialog/train.tsv"))
    with pytest.raises(FetchError) as err:
        fetch_entry(e, tmp_path, tmp_path / "cache", offline=True)
    msg = str(err.value)
    assert "inspired/dialog/train.tsv" in msg and e.url in msg and str(tmp_path / "inspired/dialog/train.tsv") in msg


def test_unreachable_network_gives_one_clear_message(tmp_path, monkeypatch):
    def boom(url, *a, **k):
        raise urllib.error.URLError("no route")

    monkeypatch.setattr(urllib.request, "urlopen", boom)
    rc = main(["--dest", str(tmp_path), "--only", "personas/profile.csv", "--cache", str(tmp_path / "c")])
    assert rc == 1


def test_opener_is_used_and_zip_extracted(tmp_path):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("train_data.jsonl", '{"a": 1}\n')
        z.writestr("test_data.jsonl", '{"b": 2}\n')
    blob = buf.getvalue()
    e = ManifestEntry(
        "redial/redial_dataset.zip",
        "o/r",
        None,
        "z",
        hashlib.sha256(blob).hexdigest(),
        url_override="https://example.invalid/z.zip",
        extract={"train_data.jsonl": "redial/train_data.jsonl", "test_data.jsonl": "redial/test_data.jsonl"},
    )
    seen = []

    def opener(url):
        seen.append(url)
        return io.BytesIO(blob)

    fetch_entry(e, tmp_path / "d", tmp_path / "c", opener=opener, log=lambda m: None)
    assert seen == ["https://example.invalid/z.zip"]
    assert (tmp_path / "d/redial/test_data.jsonl").read_text() == '{"b": 2}\n'
    # cached under its SHA256: a second install into another dest needs no network
    fetch_entry(
        e,
        tmp_path / "d2",
        tmp_path / "c",
        opener=lambda u: (_ for _ in ()).throw(AssertionError("network")),
        log=lambda m: None,
    )
    assert (tmp_path / "d2/redial/train_data.jsonl").is_file()


def test_select():
    assert [e.local for e in select("redial/train_data.jsonl")] == ["redial/redial_dataset.zip"]
    assert len(select("inspired/survey")) == 7
    with pytest.raises(FetchError):
        select("nope")


def test_sha256_file(tmp_path):
    p = tmp_path / "f"
    p.write_bytes(b"x" * 3_000_000)
    assert sha256_file(p) == hashlib.sha256(b"x" * 3_000_000).hexdigest()
    assert fetch.default_cache().name == "fetch"
