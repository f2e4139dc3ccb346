"""The OpenAI-compatible server under bad requests and concurrent load (loopback only, bounded).

A scripted backend stands in for the model here: what is tested is the HTTP layer -- every
malformed field answered 4xx naming it, unknown models 404, size limits, stalled clients, many
concurrent clients -- not the model (tests/test_llm_openai.py drives the real embedded model).
"""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from rso_lib.llm import serve
from rso_lib.llm.scripted import ScriptedLLM


@pytest.fixture
def server():
    llm = ScriptedLLM(lambda m: "ok: " + m[-1]["content"][:20], model_id="tiny")
    srv = serve.make_server(llm, "127.0.0.1", 0, max_wait=0.02)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def post(srv, body, path="/v1/chat/completions", headers=None, raw=None):
    host, port = srv.server_address[:2]
    c = http.client.HTTPConnection(host, port, timeout=60)
    data = raw if raw is not None else json.dumps(body).encode()
    c.request("POST", path, body=data, headers={"Content-Type": "application/json", **(headers or {})})
    r = c.getresponse()
    out = r.status, json.loads(r.read() or b"{}")
    c.close()
    return out


MSG = [{"role": "user", "content": "hi"}]


@pytest.mark.parametrize(
    "body,field",
    [
        ({"messages": [{"role": "user", "content": {"a": 1}}]}, "messages[0].content"),
        ({"messages": MSG, "temperature": "NaN"}, "temperature"),
        ({"messages": MSG, "temperature": float("nan")}, "temperature"),
        ({"messages": MSG, "temperature": -1}, "temperature"),
        ({"messages": MSG, "top_p": 5}, "top_p"),
        ({"messages": MSG, "max_tokens": 10**6}, "max_tokens"),
        ({"messages": MSG, "n": 0}, "n"),
        ({"messages": MSG, "seed": "x"}, "seed"),
        ({"messages": [{"role": "wizard", "content": "x"}]}, "messages[0].role"),
        ({"messages": []}, "messages"),
    ],
)
def test_malformed_fields_are_400_naming_the_field(server, body, field):
    raw = json.dumps(body, allow_nan=True).encode()
    status, out = post(server, None, raw=raw)
    assert status == 400 and field in out["error"]["message"], out
    assert post(server, {"messages": MSG})[0] == 200  # and the server keeps serving


def test_unknown_model_is_404_listing_the_served_one(server):
    status, out = post(server, {"model": "gpt-9", "messages": MSG})
    assert status == 404 and "'tiny'" in out["error"]["message"]
    assert post(server, {"model": "tiny", "messages": MSG})[0] == 200


def test_oversized_and_lying_bodies(server, monkeypatch):
    monkeypatch.setattr(serve, "MAX_BODY_BYTES", 1000)
    status, out = post(server, {"messages": [{"role": "user", "content": "x" * 5000}]})
    assert status == 413
    # a Content-Length larger than what is sent: the read times out and the socket is closed,
    # while other clients are served meanwhile
    monkeypatch.setattr(serve, "READ_TIMEOUT_S", 1.0)
    host, port = server.server_address[:2]
    s = socket.create_connection((host, port))
    s.sendall(b'POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 500\r\n\r\n{"messages"')
    t0 = time.monotonic()
    assert post(server, {"messages": MSG})[0] == 200
    assert time.monotonic() - t0 < 5
    s.close()


def test_forty_concurrent_clients_are_all_answered_in_batches(server):
    def one(i):
        return post(server, {"messages": [{"role": "user", "content": f"q{i}"}], "temperature": 0, "max_tokens": 4})

    t0 = time.monotonic()
    with ThreadPoolExecutor(40) as ex:
        res = list(ex.map(one, range(40)))
    wall = time.monotonic() - t0
    assert all(st == 200 for st, _ in res)
    assert [o["choices"][0]["message"]["content"] for _, o in res] == [f"ok: q{i}" for i in range(40)]
    host, port = server.server_address[:2]
    c = http.client.HTTPConnection(host, port, timeout=10)
    c.request("GET", "/stats")
    batches = json.loads(c.getresponse().read())["chat_batches"]
    assert max(batches) > 1 and sum(batches) >= 40, batches
    assert wall < 30


def test_api_key_required_off_loopback_and_checked_when_set():
    llm = ScriptedLLM(["ok"], model_id="tiny")
    with pytest.raises(ValueError, match="needs an API key"):
        serve.make_server(llm, "0.0.0.0", 0)
    srv = serve.make_server(llm, "127.0.0.1", 0, api_key="s3cret")
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        assert post(srv, {"messages": MSG})[0] == 401
        assert post(srv, {"messages": MSG}, headers={"Authorization": "Bearer s3cret"})[0] == 200
    finally:
        srv.shutdown()
        srv.server_close()
