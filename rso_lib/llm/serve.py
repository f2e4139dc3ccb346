"""A small OpenAI-compatible HTTP server over any of our backends (stdlib ``http.server``).

    python -m rso_lib.llm.serve --backend embedded --port 8000
    python -m rso_lib.llm.serve --spec '{"backend": "transformers", "model": "/models/qwen"}' --port 8000

Endpoints:

* ``GET /v1/models``, ``GET /health``, ``GET /stats`` (ours: chat batch sizes, backend counters)
* ``POST /v1/chat/completions``: ``messages``, ``n``, ``temperature`` (default 1), ``top_p``,
  ``max_tokens`` / ``max_completion_tokens`` (default 256), ``stop``, ``seed``, ``logprobs`` +
  ``top_logprobs`` (0..20), and vLLM's ``continue_final_message``.
* ``POST /v1/completions``: raw-text ``prompt`` (string or list of strings), ``echo`` +
  ``logprobs`` (prompt token log-probs, as used for option scoring), ``max_tokens`` (default 16;
  0 allowed with ``echo``), ``n``, ``temperature``, ``top_p``, ``stop``, ``seed``.

Log-probs and ``/v1/completions`` need a transformers-based backend (``embedded`` /
``transformers``); other backends serve chat only. ``"stream": true`` is refused with a 400
(no server-sent events).

Limits, each answered before any work is queued (:mod:`rso_lib.llm.serve_validate`): a body over
:data:`MAX_BODY_BYTES` (413), not UTF-8 / not JSON / nested deeper than 64 levels (400), any field
out of range (400 naming it), and, with a transformers backend, a prompt that with ``max_tokens``
does not fit the model's context (400 naming the limit; counted on the request's thread, never
on the worker's). A connection must deliver its whole request (line, headers, body) within
:data:`READ_DEADLINE_S`, however slowly it trickles bytes in, and each read waits at most
:data:`READ_TIMEOUT_S`.

Scheduling (:mod:`rso_lib.llm.serve_scheduler`): one worker thread owns the model. Concurrent
chat requests are gathered for up to ``--max-wait-ms`` and run as ONE batch: with the
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

Usage errors (a bad ``--spec``, binding a non-loopback address without an API key, an unknown
backend) print one line and exit with code 2.
"""

from __future__ import annotations

import argparse
import functools
import io
import json
import os
import select
import socket
import sys
import time
import uuid
from collections.abc import Callable
from concurrent.futures import TimeoutError as FutureTimeout
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from rso_lib.llm.serve_scheduler import ClientGone, RequestTimeout, Worker
from rso_lib.llm.serve_validate import (
    BadRequest,
    ChatRequest,
    CompletionRequest,
    PromptBound,
    parse_body,
    validate_chat,
    validate_completions,
)


class NotFound(LookupError):
    pass


#: Request limits: what a malformed, hostile or slow request is answered (or cut off) for, instead
#: of reaching the model or holding a handler thread.
MAX_BODY_BYTES = 4 * 1024 * 1024  # 413 above this
READ_TIMEOUT_S = 30.0  # one read: a client that stops sending mid-request gets its socket closed
READ_DEADLINE_S = 30.0  # the whole request (line, headers, body): one byte a second cannot pin a thread
REQUEST_TIMEOUT_S = 300.0  # a request not answered by then gets 504 and its work is dropped
STEP_TOKENS = 16  # decode steps a batch runs before the worker turns to other batches


def _tok_entry(llm, tid: int, lp: float) -> dict:
    t = llm.token_text([tid])[0]
    return {"token": t, "logprob": lp, "bytes": list(t.encode())}


def _chat_choice(j: int, text: str, finish: str, lp: dict | None) -> dict:
    return {"index": j, "message": {"role": "assistant", "content": text}, "finish_reason": finish, "logprobs": lp}


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
        # transformers backends: prompts are tokenized and bounded before they are queued
        self.prompts = PromptBound(llm.tokenizer, llm.max_context) if self.hf else None
        self.worker = Worker(self._chat_batch, max_wait=max_wait, max_batch=getattr(llm, "max_batch", 16))

    def _wait(self, kind: str, key, payload, tokens: int, alive):
        req = self.worker.submit(kind, key, payload, self.request_timeout, tokens, alive)
        try:
            return req.future.result(timeout=max(0.0, req.deadline - time.monotonic()))
        except (FutureTimeout, RequestTimeout):
            req.future.cancel()  # still queued: never run; running: the worker drops it at its next step
            raise RequestTimeout(f"request not answered within {self.request_timeout:g} s") from None

    def check_model(self, model: str | None) -> None:
        """An unknown model name is a 404 listing the served one (as vLLM and OpenAI answer), never
        silently served by another model."""
        if model is not None and model != self.model_name:
            raise NotFound(f"model {model[:80]!r} is not served here; served: {self.model_name!r}")

    def models(self) -> dict:
        return {"object": "list", "data": [{"id": self.model_name, "object": "model", "created": 0, "owned_by": "rso"}]}

    # -------------------------------------------------------------- chat
    def _prompt_ids(self, r: ChatRequest) -> list[int]:
        """The prompt's token ids (transformers backends), bounded by the context."""
        msgs, mt = r.messages, r.sampling.max_tokens
        if r.continue_final_message and msgs[-1]["role"] == "assistant":  # continue a partial reply
            text = self.llm.render(msgs[:-1]) + msgs[-1]["content"]
        else:
            text = self.llm.render(msgs)
        return self.prompts.ids(text, mt, "the rendered messages")

    def chat(self, body: dict, alive: Callable[[], bool] | None = None) -> dict:
        r = validate_chat(body)
        self.check_model(r.model)
        if r.top_logprobs is not None and not self.hf:
            raise BadRequest(f"logprobs need a transformers-based backend, this server runs {self.llm.backend}")
        s = r.sampling
        if self.hf:  # the batch key: with the transformers backends seed and n are per row
            key, payload = (s.temperature, s.top_p, s.max_tokens, s.stop, r.top_logprobs), (self._prompt_ids(r), s)
        else:
            key, payload = (s, r.top_logprobs), (r.messages, s)
        choices, ptoks, ctoks = self._wait("chat", key, payload, s.max_tokens, alive)
        return {
            "id": "chatcmpl-" + uuid.uuid4().hex[:24],
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self.model_name,
            "choices": choices,
            "usage": {"prompt_tokens": ptoks, "completion_tokens": ctoks, "total_tokens": ptoks + ctoks},
        }

    def _chat_batch(self, key, payloads):
        """A step generator run by the worker thread (the only thread touching the model and its
        tokenizer): one batched generation for all ``payloads`` of one batch ``key`` (transformers
        backends: ``(prompt ids, sampling)``; others: ``(messages, sampling)``); returns one
        ``(choices, prompt_tokens, completion_tokens)`` per payload."""
        if not self.hf:
            res = self.llm.chat([m for m, _ in payloads], payloads[0][1])
            return [([_chat_choice(j, t, "stop", None) for j, t in enumerate(texts)], 0, 0) for texts in res]
        top = key[-1]
        ids = [p for p, _ in payloads]
        gens_all = yield from self.llm.generate_steps(ids, [s for _, s in payloads], top, self.step_tokens)
        return [
            (
                [_chat_choice(j, g.text, g.finish_reason, self._chat_logprobs(g, top)) for j, g in enumerate(gens)],
                len(p_ids),
                sum(len(g.token_ids) for g in gens),
            )
            for p_ids, gens in zip(ids, gens_all)
        ]

    def _chat_logprobs(self, g, top: int | None) -> dict | None:
        if top is None:
            return None
        return {
            "content": [
                {**_tok_entry(self.llm, tid, v), "top_logprobs": [_tok_entry(self.llm, a, b) for a, b in (tl or [])]}
                for tid, v, tl in zip(g.token_ids, g.logprobs or [], g.top_logprobs or [])
            ]
        }

    # -------------------------------------------------------------- completions
    def completions(self, body: dict, alive: Callable[[], bool] | None = None) -> dict:
        if not self.hf:
            raise BadRequest(f"/v1/completions needs a transformers-based backend, this server runs {self.llm.backend}")
        r = validate_completions(body)
        self.check_model(r.model)
        reserve = r.max_tokens
        ptoks = sum(len(self.prompts.ids(p, reserve, f"'prompt[{i}]'")) for i, p in enumerate(r.prompts))
        choices, ctoks = self._wait("other", None, functools.partial(self._complete, r), r.max_tokens, alive)
        return {
            "id": "cmpl-" + uuid.uuid4().hex[:24],
            "object": "text_completion",
            "created": int(time.time()),
            "model": self.model_name,
            "choices": choices,
            "usage": {"prompt_tokens": ptoks, "completion_tokens": ctoks, "total_tokens": ptoks + ctoks},
        }

    def _complete(self, r: CompletionRequest):
        """A step generator on the worker thread: model + tokenizer work, serialised."""
        s = r.sampling
        pl = self.llm.prompt_logprobs(r.prompts) if r.echo else None
        gens = [[None] * s.n for _ in r.prompts]
        if r.max_tokens != 0:
            gens = yield from self.llm.complete_steps(r.prompts, s, r.logprobs, self.step_tokens)
        choices, ctoks = [], 0
        for i, p in enumerate(r.prompts):
            for j, g in enumerate(gens[i]):
                ctoks += len(g.token_ids) if g else 0
                choices.append(
                    {
                        "index": i * s.n + j,
                        "text": (p if r.echo else "") + (g.text if g else ""),
                        "logprobs": None if r.logprobs is None else self._completion_logprobs(r, p, pl and pl[i], g),
                        "finish_reason": g.finish_reason if g else "length",
                    }
                )
        return choices, ctoks

    def _completion_logprobs(self, r: CompletionRequest, p: str, echoed, g) -> dict:
        toks, lps, tops, offs = [], [], [], []
        if echoed is not None:
            ids, o, v = echoed
            toks += self.llm.token_text(ids)
            lps += v
            offs += o
            tops += [None] * len(ids)
        if g is not None:
            pos = len(p) if r.echo else 0
            for tid, v, tl in zip(g.token_ids, g.logprobs or [], g.top_logprobs or []):
                t = self.llm.token_text([tid])[0]
                toks.append(t)
                lps.append(v)
                offs.append(pos)
                pos += len(t)
                tops.append({self.llm.token_text([a])[0]: b for a, b in tl} if r.logprobs else None)
        return {"tokens": toks, "token_logprobs": lps, "top_logprobs": tops, "text_offset": offs}


# ------------------------------------------------------------------ HTTP
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


class _DeadlineReader(io.RawIOBase):
    """A socket's reading side with a deadline for the whole request: each read waits at most
    ``read_timeout`` and never past ``deadline`` (``socket.settimeout`` alone restarts on every
    byte, so a client trickling one byte a second held a thread for as long as it liked)."""

    def __init__(self, sock: socket.socket, read_timeout: float):
        self.sock, self.read_timeout = sock, read_timeout
        self.deadline = time.monotonic() + read_timeout

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("request not received within its deadline")
        self.sock.settimeout(min(self.read_timeout, left))
        return self.sock.recv_into(b)


def check_bind(host: str, api_key: str | None) -> None:
    """A server reachable from other machines must ask for an API key (ValueError otherwise)."""
    if api_key is None and not (host in ("localhost", "::1") or host.startswith("127.")):
        raise ValueError(f"binding to {host} (not loopback) needs an API key: --api-key or RSO_SERVE_API_KEY")


class Handler(BaseHTTPRequestHandler):
    """One connection; the :class:`App`, API key and limits are the server's (:class:`Server`)."""

    protocol_version = "HTTP/1.1"
    server: Server

    def log_message(self, fmt, *args):  # quiet: one line per request is too much for tests
        pass

    def setup(self):
        self.timeout = self.server.read_timeout
        super().setup()
        self._reader = _DeadlineReader(self.connection, self.server.read_timeout)
        plain, self.rfile = self.rfile, io.BufferedReader(self._reader)
        plain.close()  # the socket stays open: the handler's reads go through the deadline now

    def handle_one_request(self):
        self._reader.deadline = time.monotonic() + self.server.read_deadline  # each request its own
        super().handle_one_request()

    def _received(self) -> None:
        """The request is in: the answer's writes get the plain per-operation timeout again (the
        last read may have left the socket with the deadline's last fraction of a second)."""
        self.connection.settimeout(self.server.read_timeout)

    def _send(self, code: int, obj: dict):
        data = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _error(self, code: int, msg: str, typ: str):
        self._send(code, {"error": {"message": msg, "type": typ, "code": code}})

    def _authorised(self) -> bool:
        key = self.server.api_key
        if key is None or self.headers.get("Authorization", "") == f"Bearer {key}":
            return True
        self._error(401, "missing or wrong API key (Authorization: Bearer <key>)", "invalid_api_key")
        return False

    def do_GET(self):
        self._received()
        if not self._authorised():
            return
        app, route = self.server.app, self.path.rstrip("/")
        if route in ("/v1/models", "/models"):
            self._send(200, app.models())
        elif route == "/health":
            self._send(200, {"status": "ok"})
        elif route == "/stats":  # not OpenAI: batch sizes, counts, backend counters
            st = app.llm.stats() if hasattr(app.llm, "stats") else {}
            self._send(200, {**app.worker.stats(), "backend": st})
        else:
            self._error(404, f"no route {self.path[:200]}", "not_found")

    def _body(self) -> bytes | None:
        """The body, or None after answering a bad Content-Length (the connection is not reused)."""
        try:
            n = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            n = -1
        if n < 0 or n > MAX_BODY_BYTES:
            self.close_connection = True  # the body is not read: do not reuse the connection
            if n < 0:
                self._error(400, "bad Content-Length", "invalid_request_error")
            else:
                self._error(413, f"request body of {n} bytes exceeds {MAX_BODY_BYTES}", "invalid_request_error")
            return None
        raw = self.rfile.read(n)
        self._received()
        if len(raw) < n:
            self.close_connection = True
            self._error(400, f"body shorter than Content-Length ({len(raw)} < {n})", "invalid_request_error")
            return None
        return raw

    def do_POST(self):
        self._received()  # for a 401; the body's reads set their own timeouts
        if not self._authorised():
            return
        try:
            raw = self._body()
            if raw is None:
                return
            self._route(parse_body(raw))
        except BadRequest as e:
            self._error(400, str(e), "invalid_request_error")
        except NotFound as e:
            self._error(404, str(e), "model_not_found")
        except RequestTimeout as e:
            self._error(504, str(e), "timeout")
        except (ClientGone, TimeoutError):  # nobody to answer (left, or too slow to send its request)
            self.close_connection = True
        except Exception as e:  # noqa: BLE001 -- report, keep serving
            self._error(500, f"{type(e).__name__}: {str(e)[:500]}", "server_error")

    def _route(self, body: dict) -> None:
        app, route = self.server.app, self.path.rstrip("/")
        alive = functools.partial(_peer_open, self.connection)
        if route in ("/v1/chat/completions", "/chat/completions"):
            self._send(200, app.chat(body, alive))
        elif route in ("/v1/completions", "/completions"):
            self._send(200, app.completions(body, alive))
        else:
            self._error(404, f"no route {self.path[:200]}", "not_found")


class Server(ThreadingHTTPServer):
    """The HTTP server: holds the :class:`App`, the API key and the read limits for its handlers."""

    request_queue_size = 128  # many concurrent clients queue instead of "connection reset"
    daemon_threads = True

    def __init__(self, addr, app: App, api_key: str | None, read_timeout: float, read_deadline: float):
        self.app, self.api_key = app, api_key
        self.read_timeout, self.read_deadline = read_timeout, read_deadline
        super().__init__(addr, Handler)

    def handle_error(self, request, client_address):
        if isinstance(sys.exc_info()[1], ConnectionError):
            return  # the client left before its answer was written: nothing to report
        super().handle_error(request, client_address)


def make_server(
    llm,
    host: str = "127.0.0.1",
    port: int = 0,
    model_name: str | None = None,
    max_wait: float = 0.005,
    api_key: str | None = None,
    request_timeout: float = REQUEST_TIMEOUT_S,
    step_tokens: int = STEP_TOKENS,
    read_timeout: float | None = None,
    read_deadline: float | None = None,
) -> Server:
    """An OpenAI-compatible ``ThreadingHTTPServer`` over ``llm`` (call ``serve_forever()``).

    ``api_key`` (default: ``$RSO_SERVE_API_KEY``): required as ``Authorization: Bearer <key>`` when
    set; a server bound to a non-loopback address refuses to start without one (ValueError).
    ``max_wait``, ``request_timeout``, ``step_tokens``: see :class:`App`. ``read_timeout`` /
    ``read_deadline`` (default :data:`READ_TIMEOUT_S` / :data:`READ_DEADLINE_S`): seconds one read
    may wait, and seconds a whole request may take to arrive."""
    api_key = api_key or os.environ.get("RSO_SERVE_API_KEY") or None
    check_bind(host, api_key)
    app = App(llm, model_name or llm.model_id, max_wait, request_timeout, step_tokens)
    return Server(
        (host, port),
        app,
        api_key,
        READ_TIMEOUT_S if read_timeout is None else read_timeout,
        READ_DEADLINE_S if read_deadline is None else read_deadline,
    )


def _args(argv) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m rso_lib.llm.serve", description=__doc__.split("\n\n")[0])
    ap.add_argument("--backend", default="embedded", help="embedded | transformers | vllm | openai")
    ap.add_argument("--model", default=None, help="model dir / hub id (not needed for embedded)")
    ap.add_argument(
        "--dtype",
        default=None,
        help="auto | bf16 | fp16 | fp32 (embedded / transformers; default auto: bf16 on GPUs and bf16-capable CPUs)",
    )
    ap.add_argument(
        "--prefix-cache-mib",
        type=float,
        default=0,
        help="embedded / transformers: MiB of prompt keys/values kept for reuse (default 0, off: a server's "
        "clients rarely share prefixes, and a store that fills to its budget reads as a leak)",
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
    if a.spec and a.dtype:
        ap.error("--dtype and --spec together: give the dtype inside --spec's JSON")
    return a


def _spec(a: argparse.Namespace) -> dict:
    if not a.spec:
        return {
            "backend": a.backend,
            **({"model": a.model} if a.model else {}),
            **({"dtype": a.dtype} if a.dtype else {}),
            **({"prefix_cache_mib": a.prefix_cache_mib} if a.backend in ("embedded", "transformers") else {}),
        }
    try:
        spec = json.loads(a.spec)
    except json.JSONDecodeError as e:
        raise ValueError(f"--spec is not valid JSON: {e}") from None
    if not isinstance(spec, dict):
        raise ValueError(f"--spec must be a JSON object, got {type(spec).__name__}")
    return spec


def main(argv=None) -> int:
    a = _args(argv)
    try:
        # every usage check before the model loads: a wrong flag costs no minute of loading
        api_key = a.api_key or os.environ.get("RSO_SERVE_API_KEY") or None
        check_bind(a.host, api_key)
        spec = _spec(a)
        from rso_lib.llm import build_llm

        srv = make_server(
            build_llm(spec),
            a.host,
            a.port,
            a.served_model_name,
            a.max_wait_ms / 1000,
            api_key=api_key,
            request_timeout=a.request_timeout,
            step_tokens=a.step_tokens,
        )
    except ValueError as e:
        print(f"rso-serve: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # e.g. the port is taken
        print(f"rso-serve: error: {e}", file=sys.stderr)
        return 1
    host, port = srv.server_address[:2]
    print(f"rso-serve listening on http://{host}:{port}/v1 model={srv.app.model_name}", flush=True)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        srv.server_close()
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
