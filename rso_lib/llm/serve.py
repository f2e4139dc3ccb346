"""A small OpenAI-compatible HTTP server over any of our backends (stdlib ``http.server``).

    python -m rso_lib.llm.serve --backend embedded --port 8000
    python -m rso_lib.llm.serve --spec '{"backend": "transformers", "model": "/models/qwen"}' --port 8000

Endpoints:

* ``GET /v1/models``, ``GET /health``, ``GET /stats`` (ours: chat batch sizes, backend counters)
* ``POST /v1/chat/completions``: ``messages``, ``n``, ``temperature`` (default 1), ``top_p``,
  ``max_tokens`` / ``max_completion_tokens`` (default 256), ``stop``, ``seed``, ``logprobs`` +
  ``top_logprobs`` (0..20), and vLLM's ``continue_final_message`` / ``add_generation_prompt``.
* ``POST /v1/completions``: raw-text ``prompt`` (string or list of strings), ``echo`` +
  ``logprobs`` (prompt token log-probs, as used for option scoring), ``max_tokens`` (default 16;
  0 allowed with ``echo``), ``n``, ``temperature``, ``top_p``, ``stop``, ``seed``.

Log-probs and ``/v1/completions`` need a transformers-based backend (``embedded`` /
``transformers``); other backends serve chat only.

Scheduling (vLLM's scheduler in small, :class:`Worker`): one worker thread owns the model.
Concurrent chat requests are gathered for up to ``--max-wait-ms`` and run as ONE batch: with the
transformers backends, requests that share ``temperature``, ``top_p``, ``max_tokens`` and ``stop``
share a batch whatever their ``seed`` and ``n`` (every row keeps the seed it would have alone);
other backends batch requests with equal sampling settings. A batch runs ``--step-tokens``
decode steps at a time and the worker turns to newer batches in between, so a long generation
delays a short request by a step, not by its whole length (other backends run a batch in one
call). A request not answered within ``--request-timeout`` gets a 504 and its work is dropped,
queued or running (a running batch stops once none of its requests is waited for); so is the
work of a client that closed its connection. ``/stats`` shows the recent batch sizes and the
request, batch and drop counts. For production serving use ``vllm serve``; this server exists so
that the OpenAI-compatible path can be tested and used offline on a CPU.
"""

from __future__ import annotations

import argparse
import functools
import json
import queue
import select
import socket
import sys
import threading
import time
import uuid
from collections import deque
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable, Generator

from rso_lib.llm.protocol import Sampling


class BadRequest(ValueError):
    pass


class NotFound(LookupError):
    pass


class RequestTimeout(Exception):
    """Not answered within the request time limit: a 504."""


class ClientGone(Exception):
    """The client closed its connection before its answer was ready: nothing is sent."""


#: Request limits (OpenAI's documented ranges where it has them): what a malformed or hostile
#: request is answered with 4xx for, instead of reaching the model.
MAX_BODY_BYTES = 4 * 1024 * 1024  # 413 above this
READ_TIMEOUT_S = 30.0  # a client that stops sending mid-request gets its socket closed
MAX_TOKENS_CAP = 2048  # per request: a long generation cannot hold the worker indefinitely
MAX_N = 16
REQUEST_TIMEOUT_S = 300.0  # a request not answered by then gets 504 and its work is dropped
STEP_TOKENS = 16  # decode steps a batch runs before the worker turns to other batches


def _number(body: dict, field: str, default: float, lo: float, hi: float, lo_open: bool = False) -> float:
    v = body.get(field)
    if v is None:
        return default
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise BadRequest(f"'{field}' must be a number, got {type(v).__name__} {v!r}")
    v = float(v)
    if v != v or v in (float("inf"), float("-inf")) or v > hi or v < lo or (lo_open and v == lo):
        raise BadRequest(f"'{field}' must be in {'(' if lo_open else '['}{lo:g}, {hi:g}], got {v!r}")
    return v


def _integer(body: dict, field: str, default: int, lo: int, hi: int) -> int:
    v = body.get(field)
    if v is None:
        return default
    if isinstance(v, bool) or not isinstance(v, int):
        raise BadRequest(f"'{field}' must be an integer, got {type(v).__name__} {v!r}")
    if not lo <= v <= hi:
        raise BadRequest(f"'{field}' must be in [{lo}, {hi}], got {v}")
    return v


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


def _sampling(body: dict, default_max: int) -> Sampling:
    """The request's decoding settings; every malformed field is a :class:`BadRequest` naming it."""
    stop = body.get("stop") or ()
    if isinstance(stop, str):
        stop = (stop,)
    if not isinstance(stop, (list, tuple)) or not all(isinstance(x, str) for x in stop) or len(stop) > 4:
        raise BadRequest("'stop' must be a string or a list of at most 4 strings")
    field = "max_completion_tokens" if body.get("max_completion_tokens") is not None else "max_tokens"
    seed = body.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise BadRequest(f"'seed' must be an integer, got {type(seed).__name__} {seed!r}")
    return Sampling(
        temperature=_number(body, "temperature", 1.0, 0.0, 2.0),
        top_p=_number(body, "top_p", 1.0, 0.0, 1.0, lo_open=True),
        max_tokens=_integer(body, field, default_max, 1, MAX_TOKENS_CAP),
        stop=tuple(stop),
        seed=seed,
        n=_integer(body, "n", 1, 1, MAX_N),
    )


def _content(m: dict, i: int) -> str:
    """A message's text: a string, or OpenAI's list of ``{"type": "text", "text": ...}`` parts."""
    c = m.get("content")
    if c is None:
        return ""
    if isinstance(c, str):
        return c
    if isinstance(c, list) and all(
        isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str) for p in c
    ):
        return "".join(p["text"] for p in c)
    raise BadRequest(f"'messages[{i}].content' must be a string or a list of text parts, got {type(c).__name__}")


def _tok_entry(llm, tid: int, lp: float) -> dict:
    t = llm.token_text([tid])[0]
    return {"token": t, "logprob": lp, "bytes": list(t.encode())}


class App:
    """The request logic (no HTTP): checks a request, queues it on the :class:`Worker`, waits.

    Args:
        llm: the backend.
        model_name: the served model name.
        max_wait: seconds to gather concurrent chat requests into one batch.
        request_timeout: seconds a request may wait and run before it is answered 504.
        step_tokens: decode steps a batch runs before the worker turns to other batches.
    """

    def __init__(
        self,
        llm,
        model_name: str,
        max_wait: float = 0.005,
        request_timeout: float = REQUEST_TIMEOUT_S,
        step_tokens: int = STEP_TOKENS,
    ):
        self.llm = llm
        self.model_name = model_name
        self.request_timeout = request_timeout
        self.step_tokens = step_tokens
        self.hf = hasattr(llm, "generate_steps")
        self.worker = Worker(self._chat_batch, max_wait=max_wait, max_batch=getattr(llm, "max_batch", 16))

    def _wait(self, kind: str, key, payload, tokens: int, alive):
        req = self.worker.submit(kind, key, payload, self.request_timeout, tokens, alive)
        try:
            return req.future.result(timeout=max(0.0, req.deadline - time.monotonic()))
        except (FutureTimeout, RequestTimeout):
            req.future.cancel()  # still queued: never run; running: the worker drops it at its next step
            raise RequestTimeout(f"request not answered within {self.request_timeout:g} s") from None

    # -------------------------------------------------------------- chat
    def chat(self, body: dict, alive: Callable[[], bool] | None = None) -> dict:
        msgs = body.get("messages")
        if not isinstance(msgs, list) or not msgs or not all(isinstance(m, dict) and "role" in m for m in msgs):
            raise BadRequest("'messages' must be a non-empty list of {role, content} objects")
        for i, m in enumerate(msgs):
            if m["role"] not in ("system", "user", "assistant", "developer", "tool"):
                raise BadRequest(f"'messages[{i}].role' must be system | user | assistant, got {m['role']!r}")
        msgs = [{"role": m["role"], "content": _content(m, i)} for i, m in enumerate(msgs)]
        s = _sampling(body, 256)
        self.check_model(body)
        want_lp = bool(body.get("logprobs"))
        top = _integer(body, "top_logprobs", 0, 0, 20) if want_lp else None
        if want_lp and not self.hf:
            raise BadRequest(f"logprobs need a transformers-based backend, this server runs {self.llm.backend}")
        # the batch key: with the transformers backends seed and n are per row
        key = (s.temperature, s.top_p, s.max_tokens, s.stop, top) if self.hf else (s, top)
        choices, ptoks, ctoks = self._wait(
            "chat", key, (msgs, bool(body.get("continue_final_message")), s), s.max_tokens, alive
        )
        return {
            "id": "chatcmpl-" + uuid.uuid4().hex[:24],
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self.model_name,
            "choices": choices,
            "usage": {"prompt_tokens": ptoks, "completion_tokens": ctoks, "total_tokens": ptoks + ctoks},
        }

    def _chat_batch(self, key, payloads):
        """A step generator run by the worker thread (the only thread touching the model and
        tokenizer): one batched generation for all ``payloads`` = [(messages,
        continue_final_message, sampling)] of one batch ``key``; returns one (choices,
        prompt_tokens, completion_tokens) per payload."""
        if not self.hf:
            res = self.llm.chat([m for m, _, _ in payloads], payloads[0][2])
            return [
                (
                    [
                        {
                            "index": j,
                            "message": {"role": "assistant", "content": t},
                            "finish_reason": "stop",
                            "logprobs": None,
                        }
                        for j, t in enumerate(texts)
                    ],
                    0,
                    0,
                )
                for texts in res
            ]
        top = key[-1]
        prompts = []
        for msgs, cont, s in payloads:
            if cont and msgs[-1]["role"] == "assistant":  # continue a partial assistant reply
                prompts.append(self.llm.render(self.llm.fit(msgs[:-1], s.max_tokens + 64)) + msgs[-1]["content"])
            else:
                prompts.append(self.llm.render(self.llm.fit(msgs, s.max_tokens)))
        ids = [self.llm._encode(p) for p in prompts]
        samplings = [s for _, _, s in payloads]
        gens_all = yield from self.llm.generate_steps(ids, samplings, top, self.step_tokens)
        out = []
        for p_ids, gens in zip(ids, gens_all):
            choices = []
            for j, g in enumerate(gens):
                lp = None
                if top is not None:
                    lp = {
                        "content": [
                            {
                                **_tok_entry(self.llm, tid, v),
                                "top_logprobs": [_tok_entry(self.llm, a, b) for a, b in (tl or [])],
                            }
                            for tid, v, tl in zip(g.token_ids, g.logprobs or [], g.top_logprobs or [])
                        ]
                    }
                choices.append(
                    {
                        "index": j,
                        "message": {"role": "assistant", "content": g.text},
                        "finish_reason": g.finish_reason,
                        "logprobs": lp,
                    }
                )
            out.append((choices, len(p_ids), sum(len(g.token_ids) for g in gens)))
        return out

    # -------------------------------------------------------------- completions
    def completions(self, body: dict, alive: Callable[[], bool] | None = None) -> dict:
        if not self.hf:
            raise BadRequest(f"/v1/completions needs a transformers-based backend, this server runs {self.llm.backend}")
        prompts = body.get("prompt")
        if isinstance(prompts, str):
            prompts = [prompts]
        if not isinstance(prompts, list) or not prompts or not all(isinstance(p, str) for p in prompts):
            raise BadRequest("'prompt' must be a string or a list of strings (token-id prompts are not supported)")
        echo = bool(body.get("echo"))
        nlp = None if body.get("logprobs") is None else _integer(body, "logprobs", 0, 0, 20)
        mt = _integer(body, "max_tokens", 16, 0, MAX_TOKENS_CAP)
        if mt == 0 and not echo:
            raise BadRequest("'max_tokens' 0 needs 'echo'")
        s = _sampling({**body, "max_tokens": max(1, mt)}, 16)
        self.check_model(body)

        def run():  # a step generator on the worker thread: model + tokenizer work, serialised
            pl = self.llm.prompt_logprobs(prompts) if echo else None
            gens = [[None] * s.n for _ in prompts]
            if mt != 0:
                gens = yield from self.llm.complete_steps(prompts, s, nlp, self.step_tokens)
            choices, ctoks = [], 0
            for i, p in enumerate(prompts):
                for j, g in enumerate(gens[i]):
                    text = (p if echo else "") + (g.text if g else "")
                    lp = None
                    if nlp is not None:
                        toks, lps, tops, offs = [], [], [], []
                        if echo:
                            ids, o, v = pl[i]
                            toks += self.llm.token_text(ids)
                            lps += v
                            offs += o
                            tops += [None] * len(ids)
                        if g is not None:
                            pos = len(p) if echo else 0
                            for tid, v, tl in zip(g.token_ids, g.logprobs or [], g.top_logprobs or []):
                                t = self.llm.token_text([tid])[0]
                                toks.append(t)
                                lps.append(v)
                                offs.append(pos)
                                pos += len(t)
                                tops.append({self.llm.token_text([a])[0]: b for a, b in tl} if nlp else None)
                        lp = {"tokens": toks, "token_logprobs": lps, "top_logprobs": tops, "text_offset": offs}
                    ctoks += len(g.token_ids) if g else 0
                    choices.append(
                        {
                            "index": i * s.n + j,
                            "text": text,
                            "logprobs": lp,
                            "finish_reason": g.finish_reason if g else "length",
                        }
                    )
            ptoks = sum(len(self.llm._encode(p)) for p in prompts)
            return choices, ptoks, ctoks

        choices, ptoks, ctoks = self._wait("other", None, run, mt, alive)
        return {
            "id": "cmpl-" + uuid.uuid4().hex[:24],
            "object": "text_completion",
            "created": int(time.time()),
            "model": self.model_name,
            "choices": choices,
            "usage": {"prompt_tokens": ptoks, "completion_tokens": ctoks, "total_tokens": ptoks + ctoks},
        }

    def check_model(self, body: dict) -> None:
        """An unknown model name is a 404 listing the served one (as vLLM and OpenAI answer), never
        silently served by another model."""
        m = body.get("model")
        if m is not None and m != self.model_name:
            raise NotFound(f"model {m!r} is not served here; served: {self.model_name!r}")

    def models(self) -> dict:
        return {"object": "list", "data": [{"id": self.model_name, "object": "model", "created": 0, "owned_by": "rso"}]}


def _peer_open(sock: socket.socket) -> bool:
    """False once the client has closed its end: the socket reads as end-of-file (or fails)."""
    try:
        p = select.poll()
        p.register(sock, select.POLLIN)
        if not p.poll(0):
            return True  # nothing to read: still connected
        return sock.recv(1, socket.MSG_PEEK) != b""  # a pipelined next request is data, not EOF
    except (OSError, ValueError):
        return False


def _loopback(host: str) -> bool:
    return host in ("localhost", "::1") or host.startswith("127.")


def make_server(
    llm,
    host: str = "127.0.0.1",
    port: int = 0,
    model_name: str | None = None,
    max_wait: float = 0.005,
    api_key: str | None = None,
    request_timeout: float = REQUEST_TIMEOUT_S,
    step_tokens: int = STEP_TOKENS,
) -> ThreadingHTTPServer:
    """An OpenAI-compatible ``ThreadingHTTPServer`` over ``llm`` (call ``serve_forever()``).

    ``api_key`` (default: ``$RSO_SERVE_API_KEY``): required as ``Authorization: Bearer <key>`` when
    set; a server bound to a non-loopback address refuses to start without one.
    ``max_wait``, ``request_timeout``, ``step_tokens``: see :class:`App`."""
    import os

    api_key = api_key or os.environ.get("RSO_SERVE_API_KEY") or None
    if api_key is None and not _loopback(host):
        raise ValueError(f"binding to {host} (not loopback) needs an API key: --api-key or RSO_SERVE_API_KEY")
    app = App(llm, model_name or llm.model_id, max_wait, request_timeout, step_tokens)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        timeout = READ_TIMEOUT_S  # socket reads: a stalled or lying client cannot hold a thread

        def log_message(self, fmt, *args):  # quiet: one line per request is too much for tests
            pass

        def _send(self, code: int, obj: dict):
            data = json.dumps(obj).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _error(self, code: int, msg: str, typ: str):
            self._send(code, {"error": {"message": msg, "type": typ, "code": code}})

        def do_GET(self):
            if not self._authorised():
                return
            if self.path.rstrip("/") in ("/v1/models", "/models"):
                self._send(200, app.models())
            elif self.path.rstrip("/") == "/health":
                self._send(200, {"status": "ok"})
            elif self.path.rstrip("/") == "/stats":  # not OpenAI: batch sizes, counts, backend counters
                st = app.llm.stats() if hasattr(app.llm, "stats") else {}
                self._send(200, {**app.worker.stats(), "backend": st})
            else:
                self._error(404, f"no route {self.path}", "not_found")

        def _authorised(self) -> bool:
            if api_key is None:
                return True
            if self.headers.get("Authorization", "") == f"Bearer {api_key}":
                return True
            self._error(401, "missing or wrong API key (Authorization: Bearer <key>)", "invalid_api_key")
            return False

        def do_POST(self):
            if not self._authorised():
                return
            try:
                try:
                    n = int(self.headers.get("Content-Length") or 0)
                except ValueError:
                    n = -1
                if n < 0:
                    self.close_connection = True
                    return self._error(400, "bad Content-Length", "invalid_request_error")
                if n > MAX_BODY_BYTES:
                    self.close_connection = True  # the body is not read: do not reuse the connection
                    return self._error(
                        413, f"request body of {n} bytes exceeds {MAX_BODY_BYTES}", "invalid_request_error"
                    )
                raw = self.rfile.read(n)
                if len(raw) < n:
                    self.close_connection = True
                    return self._error(
                        400, f"body shorter than Content-Length ({len(raw)} < {n})", "invalid_request_error"
                    )
                body = json.loads(raw or b"{}")
                if not isinstance(body, dict):
                    raise BadRequest("the request body must be a JSON object")
                route = self.path.rstrip("/")
                alive = functools.partial(_peer_open, self.connection)
                if route in ("/v1/chat/completions", "/chat/completions"):
                    out = app.chat(body, alive)
                elif route in ("/v1/completions", "/completions"):
                    out = app.completions(body, alive)
                else:
                    return self._error(404, f"no route {self.path}", "not_found")
                self._send(200, out)
            except (BadRequest, json.JSONDecodeError, UnicodeDecodeError) as e:
                self._error(400, str(e), "invalid_request_error")
            except NotFound as e:
                self._error(404, str(e), "model_not_found")
            except RequestTimeout as e:
                self._error(504, str(e), "timeout")
            except ClientGone:
                self.close_connection = True
            except TimeoutError:
                self.close_connection = True
            except ValueError as e:  # e.g. prompt too long
                self._error(400, str(e), "invalid_request_error")
            except Exception as e:  # noqa: BLE001 -- report, keep serving
                self._error(500, f"{type(e).__name__}: {e}", "server_error")

    class Server(ThreadingHTTPServer):
        request_queue_size = 128  # many concurrent clients queue instead of "connection reset"

        def handle_error(self, request, client_address):
            if isinstance(sys.exc_info()[1], ConnectionError):
                return  # the client left before its answer was written: nothing to report
            super().handle_error(request, client_address)

    srv = Server((host, port), Handler)
    srv.daemon_threads = True
    srv.app = app  # type: ignore[attr-defined]
    return srv


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--backend", default="embedded", help="embedded | transformers | vllm | openai")
    ap.add_argument("--model", default=None, help="model dir / hub id (not needed for embedded)")
    ap.add_argument(
        "--dtype",
        default=None,
        help="auto | bf16 | fp16 | fp32 (embedded / transformers; default auto: bf16 on GPUs and bf16-capable CPUs)",
    )
    ap.add_argument("--spec", default=None, help="full JSON spec for rso_lib.llm.build_llm (overrides the above)")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8000, help="0 picks a free port")
    ap.add_argument("--served-model-name", default=None)
    ap.add_argument("--max-wait-ms", type=float, default=5.0, help="how long to gather concurrent chat requests")
    ap.add_argument("--api-key", default=None, help="require 'Authorization: Bearer KEY' (needed off loopback)")
    ap.add_argument(
        "--request-timeout", type=float, default=REQUEST_TIMEOUT_S, help="seconds to answer a request (then 504)"
    )
    ap.add_argument(
        "--step-tokens", type=int, default=STEP_TOKENS, help="decode steps a batch runs before others get a turn"
    )
    a = ap.parse_args(argv)
    from rso_lib.llm import build_llm

    if a.spec and a.dtype:
        ap.error("--dtype and --spec together: give the dtype inside --spec's JSON")
    spec = json.loads(a.spec) if a.spec else {"backend": a.backend, **({"model": a.model} if a.model else {})}
    if a.dtype:
        spec["dtype"] = a.dtype
    llm = build_llm(spec)
    srv = make_server(
        llm,
        a.host,
        a.port,
        a.served_model_name,
        a.max_wait_ms / 1000,
        api_key=a.api_key,
        request_timeout=a.request_timeout,
        step_tokens=a.step_tokens,
    )
    host, port = srv.server_address[:2]
    print(f"rso-serve listening on http://{host}:{port}/v1 model={srv.app.model_name}", flush=True)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        srv.server_close()
        sys.stdout.flush()


if __name__ == "__main__":
    main()
