"""The model server's scheduler (vLLM's in small): one worker thread owns the model, gathers
concurrent chat requests into batches and advances every running batch a few decode steps at a
time, shortest first, dropping work nobody waits for any more. No HTTP here: see
:mod:`rso_lib.llm.serve`.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Generator
from concurrent.futures import Future
from dataclasses import dataclass, field


class RequestTimeout(Exception):
    """Not answered within the request time limit: a 504."""


class ClientGone(Exception):
    """The client closed its connection before its answer was ready: nothing is sent."""


@dataclass(eq=False)
class Request:
    """One request waiting for the worker: requests with equal ``(kind, key)`` may share a batch."""

    kind: str  # "chat" (batched) | "other" (run on its own: payload() gives its step generator)
    key: object
    payload: object
    deadline: float  # time.monotonic() after which nobody waits for the answer
    tokens: int = 0  # most tokens it may generate: shorter jobs take their steps first
    alive: Callable[[], bool] | None = None  # False once the client has closed its connection
    future: Future = field(default_factory=Future)

    def gone(self) -> Exception | None:
        """Why the answer is no longer wanted (None: it is)."""
        if time.monotonic() >= self.deadline:
            return RequestTimeout("request time limit reached")
        if self.alive is not None and not self.alive():
            return ClientGone("client closed the connection")
        return None


@dataclass(eq=False)
class _Job:
    requests: list[Request]
    steps: Generator  # yields between steps, returns one result per request

    @property
    def tokens(self) -> int:
        return max(r.tokens for r in self.requests)


def _batch_of_one(steps: Generator) -> Generator:
    """A one-request job: the step generator's result as a batch of one."""
    return [(yield from steps)]


class Worker:
    """Runs every model call on one thread (the only one touching the model and tokenizer).

    A small scheduler in the manner of vLLM's: with nothing running, the worker waits for a
    request and then gathers chat requests for up to ``max_wait`` seconds; requests with equal
    batch keys form one *job* of up to ``max_batch`` requests. A job is a step generator
    (``start_chat(key, payloads)``): every turn of the loop takes in up to ``max_batch`` requests
    that arrived meanwhile and advances every job by one step, shortest first, so short jobs
    finish while a long one is still running, and a long one still advances every turn.
    Before each step, requests past their deadline or whose client has gone are answered with
    :class:`RequestTimeout` / :class:`ClientGone` and dropped; a job left with none is stopped.

    Args:
        start_chat: ``(key, payloads) -> step generator`` returning one result per payload.
        max_wait: seconds to gather concurrent chat requests (default 0.005).
        max_batch: most requests per job (default 16).
    """

    def __init__(self, start_chat, max_wait: float = 0.005, max_batch: int = 16):
        self.start_chat = start_chat
        self.max_wait = max_wait
        self.max_batch = max_batch
        self.q: queue.Queue[Request] = queue.Queue()
        self.jobs: list[_Job] = []  # running jobs (worker thread only)
        self.batches: deque[int] = deque(maxlen=1000)  # sizes of the recent chat batches (/stats)
        self.counts = {"requests": 0, "batches": 0, "max_batch_size": 0, "dropped_timeout": 0, "dropped_client_gone": 0}
        self._lock = threading.Lock()
        self._t = threading.Thread(target=self._loop, daemon=True, name="rso-serve-worker")
        self._t.start()

    def submit(self, kind: str, key, payload, timeout: float, tokens: int = 0, alive=None) -> Request:
        req = Request(kind, key, payload, time.monotonic() + timeout, tokens, alive)
        with self._lock:
            self.counts["requests"] += 1
        self.q.put(req)
        return req

    def stats(self) -> dict:
        with self._lock:
            return {
                "chat_batches": list(self.batches),
                **self.counts,
                "running": len(self.jobs),
                "queued": self.q.qsize(),
            }

    def _loop(self):
        while True:
            groups: dict = {}
            for req in self._take():
                groups.setdefault((req.kind, req.key), []).append(req)
            for (kind, key), reqs in groups.items():
                reqs = [r for r in reqs if self._claim(r)]
                step = self.max_batch if kind == "chat" else 1
                for i in range(0, len(reqs), step):
                    self._start(kind, key, reqs[i : i + step])
            for job in sorted(self.jobs, key=lambda j: j.tokens):
                self._advance(job)

    def _take(self) -> list[Request]:
        """Up to ``max_batch`` requests that arrived since the last turn. With nothing running: blocks
        for a first request, then gathers chat requests for up to ``max_wait``; with jobs running:
        only what is queued (the rest waits for the next turn, one step later)."""
        items = []
        if not self.jobs:
            items.append(self.q.get())
            if items[0].kind == "chat":
                end = time.monotonic() + self.max_wait
                while len(items) < self.max_batch:
                    try:
                        items.append(self.q.get(timeout=max(0.0, end - time.monotonic())))
                    except queue.Empty:
                        break
        while len(items) < self.max_batch:
            try:
                items.append(self.q.get_nowait())
            except queue.Empty:
                break
        return items

    def _drop(self, req: Request, why: Exception) -> None:
        with self._lock:
            self.counts["dropped_timeout" if isinstance(why, RequestTimeout) else "dropped_client_gone"] += 1
        if not req.future.done():
            req.future.set_exception(why)

    def _claim(self, req: Request) -> bool:
        """Mark a queued request running; False (dropped) if its answer is no longer wanted."""
        if not req.future.set_running_or_notify_cancel():  # cancelled by its handler (time limit)
            self._drop(req, RequestTimeout("request time limit reached"))
            return False
        why = req.gone()
        if why is not None:
            self._drop(req, why)
            return False
        return True

    def _start(self, kind: str, key, reqs: list[Request]) -> None:
        if kind == "chat":
            with self._lock:
                self.batches.append(len(reqs))
                self.counts["batches"] += 1
                self.counts["max_batch_size"] = max(self.counts["max_batch_size"], len(reqs))
            steps = self.start_chat(key, [r.payload for r in reqs])
        else:
            steps = _batch_of_one(reqs[0].payload())
        self.jobs.append(_Job(reqs, steps))

    def _advance(self, job: _Job) -> None:
        """One step of ``job``; answers its requests when it ends (or stops it if none is waited for)."""
        for r in job.requests:
            why = None if r.future.done() else r.gone()
            if why is not None:
                self._drop(r, why)
        if all(r.future.done() for r in job.requests):
            job.steps.close()
            self.jobs.remove(job)
            return
        try:
            next(job.steps)
            return
        except StopIteration as done:
            for r, res in zip(job.requests, done.value):
                why = None if r.future.done() else r.gone()
                if why is not None:  # finished too late (a call that cannot pause), or nobody is left to read it
                    self._drop(r, why)
                elif not r.future.done():
                    r.future.set_result(res)
        except Exception as e:  # noqa: BLE001 -- handed to the waiting requests
            for r in job.requests:
                if not r.future.done():
                    r.future.set_exception(e)
        self.jobs.remove(job)
