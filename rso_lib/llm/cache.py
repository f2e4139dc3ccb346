"""A SQLite disk cache in front of any :class:`~rso_lib.llm.protocol.ChatLLM`.

Keys are the sha256 of (backend, model fingerprint, call kind, messages, sampling settings or
options + prefix), as canonical JSON. Only deterministic calls are served from the cache
(``Sampling.deterministic``: temperature 0, or an explicit seed); other chat calls go straight
to the model and are counted as ``bypassed``. Option scoring is always deterministic. In a
batch each item is looked up on its own and only the misses (deduplicated) go to the model, as
one batch. Hits, misses and bypasses are counted (:meth:`CachedLLM.stats`).

Safe for one process (one connection, guarded by a lock, WAL journal); several processes may
share a file but may then compute the same miss twice.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import sqlite3
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from rso_lib.llm.protocol import ChatLLM, Messages, Sampling


def _canonical_sampling(s: Sampling) -> dict:
    d = dataclasses.asdict(s)
    d["stop"] = list(s.stop)
    if s.temperature == 0:  # greedy: top_p and seed do not change the output
        d.update(top_p=1.0, seed=None)
    elif s.seed is not None:  # entries written when one seed drove the whole batch are not reused
        d["seed_scope"] = "conversation"
    return d


class CachedLLM:
    """Wraps ``inner`` with a disk cache at ``path`` (created with its parent folders).

    Args:
        inner: the backend to call on misses.
        path: SQLite file.
    """

    def __init__(self, inner: ChatLLM, path: str | Path):
        self.inner = inner
        self.backend = inner.backend
        self.model_id = inner.model_id
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        try:
            self._db = self._open()
        except sqlite3.DatabaseError as e:  # not a database / malformed: name it, move it aside, rebuild
            aside = self.path.with_name(f"{self.path.name}.corrupt-{int(time.time())}")
            os.replace(self.path, aside)
            for ext in ("-wal", "-shm"):
                Path(str(self.path) + ext).unlink(missing_ok=True)
            print(
                f"[rso] LLM cache {self.path} is corrupt ({e}); moved aside to {aside.name}, starting empty",
                file=sys.stderr,
                flush=True,
            )
            self._db = self._open()
        self._counts = {"hits": 0, "misses": 0, "bypassed": 0, "rejected": 0}

    def _open(self) -> sqlite3.Connection:
        db = sqlite3.connect(str(self.path), check_same_thread=False)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            if db.execute("PRAGMA quick_check").fetchone()[0] != "ok":
                raise sqlite3.DatabaseError("integrity check failed")
            db.commit()
        except sqlite3.DatabaseError:
            db.close()
            raise
        return db

    # ------------------------------------------------------------------ keys / storage
    def _fingerprint(self) -> str:
        return str(getattr(self.inner, "fingerprint", self.inner.model_id))

    def key(self, kind: str, messages: Messages, **extra) -> str:
        """sha256 hex of the canonical JSON of one request."""
        payload = {
            "backend": self.inner.backend,
            "model": self._fingerprint(),
            "kind": kind,
            "messages": [{"role": m["role"], "content": m["content"]} for m in messages],
            **extra,
        }
        return hashlib.sha256(json.dumps(payload, sort_keys=True, ensure_ascii=False).encode()).hexdigest()

    def _get(self, keys: list[str]) -> dict[str, str]:
        out: dict[str, str] = {}
        with self._lock:
            for s in range(0, len(keys), 500):
                part = keys[s : s + 500]
                q = f"SELECT key, value FROM kv WHERE key IN ({','.join('?' * len(part))})"
                out.update(self._db.execute(q, part).fetchall())
        return out

    def _put(self, items: dict[str, str]) -> None:
        with self._lock:
            self._db.executemany("INSERT OR REPLACE INTO kv (key, value) VALUES (?, ?)", list(items.items()))
            self._db.commit()

    @staticmethod
    def _seal(key: str, result) -> str:
        """A stored entry: the result and a digest of (key, result), so an edited or swapped row is
        detected and recomputed instead of being used silently."""
        body = json.dumps(result, sort_keys=True)
        return json.dumps({"r": result, "h": hashlib.sha256((key + body).encode()).hexdigest()[:16]})

    @staticmethod
    def _open_entry(key: str, value: str):
        try:
            e = json.loads(value)
            body = json.dumps(e["r"], sort_keys=True)
            if hashlib.sha256((key + body).encode()).hexdigest()[:16] == e["h"]:
                return e["r"]
        except (ValueError, TypeError, KeyError):
            pass
        return None

    def _through(self, keys: list[str], batch: Sequence[Messages], compute, valid=lambda r: True) -> list:
        found = {}
        for k, v in self._get(keys).items():
            r = self._open_entry(k, v)
            if r is not None and valid(r):
                found[k] = r
            else:
                self._counts["rejected"] += 1
        miss_idx: dict[str, int] = {}
        for i, k in enumerate(keys):
            if k not in found and k not in miss_idx:
                miss_idx[k] = i
        self._counts["hits"] += sum(k in found for k in keys)
        self._counts["misses"] += len(keys) - sum(k in found for k in keys)
        if miss_idx:
            order = list(miss_idx.values())
            results = compute([batch[i] for i in order])
            new = {keys[i]: r for i, r in zip(order, results)}
            self._put({k: self._seal(k, r) for k, r in new.items()})
            found.update(new)
        return [found[k] for k in keys]

    # ------------------------------------------------------------------ protocol
    def chat(self, batch: Sequence[Messages], sampling: Sampling = Sampling()) -> list[list[str]]:
        if not sampling.deterministic:
            self._counts["bypassed"] += len(batch)
            return self.inner.chat(batch, sampling)
        sd = _canonical_sampling(sampling)
        keys = [self.key("chat", m, sampling=sd) for m in batch]
        return self._through(keys, batch, lambda b: self.inner.chat(b, sampling))

    def score_options(self, batch: Sequence[Messages], options: Sequence[str], prefix: str = "") -> np.ndarray:
        keys = [self.key("score", m, options=list(options), prefix=prefix) for m in batch]

        def valid(row) -> bool:  # a probability row over these options
            return (
                isinstance(row, list)
                and len(row) == len(options)
                and all(isinstance(x, (int, float)) and 0 <= x <= 1 for x in row)
                and abs(sum(row) - 1) < 1e-3
            )

        rows = self._through(
            keys, batch, lambda b: [r.tolist() for r in self.inner.score_options(b, options, prefix)], valid
        )
        return np.asarray(rows, dtype=np.float64).reshape(len(batch), len(options))

    def stats(self) -> dict:
        """``{"hits", "misses", "bypassed", "rejected" (stored entries that failed their digest or
        shape check and were recomputed), "entries", "inner": inner.stats() or {}}``."""
        with self._lock:
            entries = self._db.execute("SELECT COUNT(*) FROM kv").fetchone()[0]
        inner = self.inner.stats() if hasattr(self.inner, "stats") else {}
        return {**self._counts, "entries": entries, "inner": inner}

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __getattr__(self, name):  # expose the inner backend's extras (render, score_options_raw, ...)
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)
