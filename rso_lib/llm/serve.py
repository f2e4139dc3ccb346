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
    stop = body.get("stop") or ()
    if isinstance(stop, str):
        stop = (stop,)
    try:
        max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
        return Sampling(
            temperature=float(body.get("temperature", 1.0) if body.get("temperature") is not None else 1.0),
            top_p=float(body.get("top_p") if body.get("top_p") is not None else 1.0),
            max_tokens=int(max_tokens if max_tokens is not None else default_max),
            stop=tuple(str(s) for s in stop),
            seed=None if body.get("seed") is None else int(body["seed"]),
            n=int(body.get("n") or 1),
        )
    except (TypeError, ValueError) as e:
        raise BadRequest(f"bad sampling field: {e}") from e


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
        msgs = [{"role": m["role"], "content": m.get("content") or ""} for m in msgs]
        s = _sampling(body, 256)
        want_lp = bool(body.get("logprobs"))
        top = int(body.get("top_logprobs") or 0) if want_lp else None
        if top is not None and not 0 <= top <= 20:
            raise BadRequest("top_logprobs must be in 0..20")
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
        nlp = body.get("logprobs")
        nlp = None if nlp is None else int(nlp)
        if nlp is not None and not 0 <= nlp <= 20:
            raise BadRequest("logprobs must be in 0..20")
        mt = body.get("max_tokens", 16)
        if mt == 0 and not echo:
            raise BadRequest("max_tokens 0 needs echo")
        s = _sampling({**body, "max_tokens": max(1, int(mt if mt is not None else 16))}, 16)

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

    def models(self) -> dict:
        return {"object": "list", "data": [{"id": self.model_name, "object": "model", "created": 0, "owned_by": "rso"}]}


def make_server(
    llm, host: str = "127.0.0.1", port: int = 0, model_name: str | None = None, max_wait: float = 0.005
) -> ThreadingHTTPServer:
    """An OpenAI-compatible ``ThreadingHTTPServer`` over ``llm`` (call ``serve_forever()``)."""
    app = App(llm, model_name or llm.model_id, max_wait)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

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
            if self.path.rstrip("/") in ("/v1/models", "/models"):
                self._send(200, app.models())
            elif self.path.rstrip("/") == "/health":
                self._send(200, {"status": "ok"})
            elif self.path.rstrip("/") == "/stats":  # not OpenAI: batch sizes run + backend counters
                st = app.llm.stats() if hasattr(app.llm, "stats") else {}
                self._send(200, {"chat_batches": list(app.worker.batches), "backend": st})
            else:
                self._error(404, f"no route {self.path}", "not_found")

        def do_POST(self):
            try:
                n = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(n) or b"{}")
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
            except (BadRequest, json.JSONDecodeError) as e:
                self._error(400, str(e), "invalid_request_error")
            except ValueError as e:  # e.g. prompt too long
                self._error(400, str(e), "invalid_request_error")
            except Exception as e:  # noqa: BLE001 -- report, keep serving
                self._error(500, f"{type(e).__name__}: {e}", "server_error")

    srv = ThreadingHTTPServer((host, port), Handler)
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
    a = ap.parse_args(argv)
    from rso_lib.llm import build_llm

    spec = json.loads(a.spec) if a.spec else {"backend": a.backend, **({"model": a.model} if a.model else {})}
    llm = build_llm(spec)
    srv = make_server(llm, a.host, a.port, a.served_model_name, a.max_wait_ms / 1000)
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
