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
``transformers``); other backends serve chat only. One worker thread owns the model: concurrent
chat requests with equal sampling settings are gathered for up to ``--max-wait-ms`` and run as
ONE batch (so an :class:`~rso_lib.llm.openai_backend.OpenAIChatLLM` client with 8 concurrent
requests gets batch-8 throughput). For production serving use ``vllm serve``; this server
exists so that the OpenAI-compatible path can be tested and used offline on a CPU.
"""

from __future__ import annotations

import argparse
import json
import queue
import sys
import threading
import time
import uuid
from concurrent.futures import Future
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from rso_lib.llm.protocol import Sampling


class BadRequest(ValueError):
    pass


class NotFound(LookupError):
    pass


#: Request limits (OpenAI's documented ranges where it has them): what a malformed or hostile
#: request is answered with 4xx for, instead of reaching the model.
MAX_BODY_BYTES = 4 * 1024 * 1024  # 413 above this
READ_TIMEOUT_S = 30.0  # a client that stops sending mid-request gets its socket closed
MAX_TOKENS_CAP = 2048  # per request: a long generation cannot hold the worker indefinitely
MAX_N = 16


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


class Worker:
    """Runs every model call on one thread; batches compatible chat requests."""

    def __init__(self, run_chat, max_wait: float = 0.005, max_batch: int = 16):
        self.run_chat = run_chat  # (payloads, sampling, top_logprobs) -> one result per payload
        self.max_wait = max_wait
        self.max_batch = max_batch
        self.q: queue.Queue = queue.Queue()
        self.batches: list[int] = []  # sizes of the chat batches run (for tests / logs)
        self._t = threading.Thread(target=self._loop, daemon=True)
        self._t.start()

    def submit(self, kind: str, key, payload) -> Future:
        f: Future = Future()
        self.q.put((kind, key, payload, f))
        return f

    def _loop(self):
        while True:
            first = self.q.get()
            items = [first]
            if first[0] == "chat":
                deadline = time.monotonic() + self.max_wait
                while len(items) < self.max_batch:
                    try:
                        nxt = self.q.get(timeout=max(0.0, deadline - time.monotonic()))
                    except queue.Empty:
                        break
                    items.append(nxt)
            groups: dict = {}
            for it in items:
                groups.setdefault((it[0], it[1]), []).append(it)
            for (kind, key), its in groups.items():
                try:
                    if kind == "chat":
                        self.batches.append(len(its))
                        res = self._chat([it[2] for it in its], *key)
                        for it, r in zip(its, res):
                            it[3].set_result(r)
                    else:
                        for it in its:
                            it[3].set_result(it[2]())
                except Exception as e:  # noqa: BLE001 -- handed to the waiting request
                    for it in its:
                        if not it[3].done():
                            it[3].set_exception(e)

    def _chat(self, payloads, sampling: Sampling, top_logprobs):
        return self.run_chat(payloads, sampling, top_logprobs)


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
    def __init__(self, llm, model_name: str, max_wait: float = 0.005):
        self.llm = llm
        self.model_name = model_name
        self.worker = Worker(self._chat_batch, max_wait=max_wait, max_batch=getattr(llm, "max_batch", 16))
        self.hf = hasattr(llm, "generate_ids")

    # -------------------------------------------------------------- chat
    def chat(self, body: dict) -> dict:
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
        choices, ptoks, ctoks = self.worker.submit(
            "chat", (s, top), (msgs, bool(body.get("continue_final_message")))
        ).result()
        return {
            "id": "chatcmpl-" + uuid.uuid4().hex[:24],
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self.model_name,
            "choices": choices,
            "usage": {"prompt_tokens": ptoks, "completion_tokens": ctoks, "total_tokens": ptoks + ctoks},
        }

    def _chat_batch(self, payloads, s: Sampling, top):
        """Runs on the worker thread (the only thread touching the model and tokenizer): one
        batched generation for all ``payloads`` = [(messages, continue_final_message)]."""
        if not self.hf:
            res = self.llm.chat([m for m, _ in payloads], s)
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
        prompts = []
        for msgs, cont in payloads:
            if cont and msgs[-1]["role"] == "assistant":  # continue a partial assistant reply
                prompts.append(self.llm.render(self.llm.fit(msgs[:-1], s.max_tokens + 64)) + msgs[-1]["content"])
            else:
                prompts.append(self.llm.render(self.llm.fit(msgs, s.max_tokens)))
        ids = [self.llm._encode(p) for p in prompts]
        out = []
        for p_ids, gens in zip(ids, self.llm.generate_ids(ids, s, top)):
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
    def completions(self, body: dict) -> dict:
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

        def run():  # on the worker thread: model + tokenizer work, serialised
            pl = self.llm.prompt_logprobs(prompts) if echo else None
            gens = self.llm.complete(prompts, s, top_logprobs=nlp) if mt != 0 else [[None] * s.n for _ in prompts]
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

        choices, ptoks, ctoks = self.worker.submit("other", None, run).result()
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


def _loopback(host: str) -> bool:
    return host in ("localhost", "::1") or host.startswith("127.")


def make_server(
    llm,
    host: str = "127.0.0.1",
    port: int = 0,
    model_name: str | None = None,
    max_wait: float = 0.005,
    api_key: str | None = None,
) -> ThreadingHTTPServer:
    """An OpenAI-compatible ``ThreadingHTTPServer`` over ``llm`` (call ``serve_forever()``).

    ``api_key`` (default: ``$RSO_SERVE_API_KEY``): required as ``Authorization: Bearer <key>`` when
    set; a server bound to a non-loopback address refuses to start without one."""
    import os

    api_key = api_key or os.environ.get("RSO_SERVE_API_KEY") or None
    if api_key is None and not _loopback(host):
        raise ValueError(f"binding to {host} (not loopback) needs an API key: --api-key or RSO_SERVE_API_KEY")
    app = App(llm, model_name or llm.model_id, max_wait)

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
            elif self.path.rstrip("/") == "/stats":  # not OpenAI: batch sizes run + backend counters
                st = app.llm.stats() if hasattr(app.llm, "stats") else {}
                self._send(200, {"chat_batches": list(app.worker.batches), "backend": st})
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
                if route in ("/v1/chat/completions", "/chat/completions"):
                    out = app.chat(body)
                elif route in ("/v1/completions", "/completions"):
                    out = app.completions(body)
                else:
                    return self._error(404, f"no route {self.path}", "not_found")
                self._send(200, out)
            except (BadRequest, json.JSONDecodeError, UnicodeDecodeError) as e:
                self._error(400, str(e), "invalid_request_error")
            except NotFound as e:
                self._error(404, str(e), "model_not_found")
            except TimeoutError:
                self.close_connection = True
            except ValueError as e:  # e.g. prompt too long
                self._error(400, str(e), "invalid_request_error")
            except Exception as e:  # noqa: BLE001 -- report, keep serving
                self._error(500, f"{type(e).__name__}: {e}", "server_error")

    class Server(ThreadingHTTPServer):
        request_queue_size = 128  # many concurrent clients queue instead of "connection reset"

    srv = Server((host, port), Handler)
    srv.daemon_threads = True
    srv.app = app  # type: ignore[attr-defined]
    return srv


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--backend", default="embedded", help="embedded | transformers | vllm | openai")
    ap.add_argument("--model", default=None, help="model dir / hub id (not needed for embedded)")
    ap.add_argument("--spec", default=None, help="full JSON spec for rso_lib.llm.build_llm (overrides the above)")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8000, help="0 picks a free port")
    ap.add_argument("--served-model-name", default=None)
    ap.add_argument("--max-wait-ms", type=float, default=5.0, help="how long to gather concurrent chat requests")
    ap.add_argument("--api-key", default=None, help="require 'Authorization: Bearer KEY' (needed off loopback)")
    a = ap.parse_args(argv)
    from rso_lib.llm import build_llm

    spec = json.loads(a.spec) if a.spec else {"backend": a.backend, **({"model": a.model} if a.model else {})}
    llm = build_llm(spec)
    srv = make_server(llm, a.host, a.port, a.served_model_name, a.max_wait_ms / 1000, api_key=a.api_key)
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
