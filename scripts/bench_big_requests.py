"""Part of scripts/bench: small requests' latency while other clients send 4 MB requests
that cost the processor the most CPU per byte:

- `left`: a streaming prompt of base64 text (a file pasted as text), left as soon as the
  answer starts. A stream cut short before its usage chunk still has its prompt's tokens
  estimated, and counted on the event loop that serves every stream, one such request
  held all the others for ~2 s. Now one estimate tokenizes at most 256 K characters, on a
  thread (extproc/tokens.py).
- `messages`: 100,000 short messages to an Anthropic backend, on a route with a regex
  guard. Parsing, checking, guarding and translating them took ~2 s of pure Python on
  the event loop; for bodies over 256 KB that now runs on a thread the loop shares the
  GIL with (extproc/offload.py).

The large requests go to a mock of their own (a mock reading megabytes would hold up the
small requests' mock, not the gateway), whose stream events are paced so that leaving
early does cut a stream short.

    .venv/bin/python scripts/bench_big_requests.py     # on its own (mocks and a gateway)
"""

from __future__ import annotations

import base64
import json
import random
import tempfile
from collections.abc import Callable
from pathlib import Path

import httpx
from bench_stack import BODY, PLAIN, Gateway, mock_paced, post_script, under_load, wrk

from extproc.devstack import MockProcess, free_port

_JSON = {"content-type": "application/json"}
# Just under the default 4 MiB request limit, encoded once.
_BLOB = base64.b64encode(random.Random(7).randbytes(190_000)).decode()[:250_000]
LEFT = "/left/v1/chat/completions"
LEFT_BODY = json.dumps(
    {"model": "m", "stream": True, "messages": [{"role": "user", "content": _BLOB} for _ in range(16)]}
).encode()
MESSAGES = "/messages/v1/chat/completions"
MESSAGES_BODY = json.dumps(
    {
        "model": "m",
        "messages": [
            {"role": "user" if i % 2 == 0 else "assistant", "content": "hi"} for i in range(100_000)
        ],
    }
).encode()


def leave_early(url: str, statuses: list[int]) -> Callable[[httpx.Client], None]:
    def send(client: httpx.Client) -> None:
        with client.stream("POST", url + LEFT, content=LEFT_BODY, headers=_JSON) as r:
            for _ in r.iter_raw():
                break  # the first bytes of the answer, then gone
        statuses.append(r.status_code)

    return send


def many_messages(url: str, statuses: list[int]) -> Callable[[httpx.Client], None]:
    def send(client: httpx.Client) -> None:
        statuses.append(client.post(url + MESSAGES, content=MESSAGES_BODY, headers=_JSON).status_code)

    return send


def measure(
    url: str, script: Path, load: Callable[[str, list[int]], Callable[[httpx.Client], None]]
) -> dict[str, float]:
    """Small requests from wrk (4 connections: a stall of the processor holds all of them)
    alone, then while a thread sends large requests one after another."""
    idle = wrk(url + PLAIN, 4, 3, script)
    statuses: list[int] = []
    busy = under_load(load(url, statuses), lambda: wrk(url + PLAIN, 4, 6, script))
    if busy["non2xx"] or set(statuses) != {200}:
        raise SystemExit(f"large requests: {busy['non2xx']} small failures, statuses {sorted(set(statuses))}")
    return {
        "idle_p99_ms": idle["p99_ms"],
        "idle_max_ms": idle["max_ms"],
        "busy_p50_ms": busy["p50_ms"],
        "busy_p99_ms": busy["p99_ms"],
        "busy_max_ms": busy["max_ms"],
        "requests": len(statuses),
    }


def run() -> dict[str, dict[str, float]]:
    """The bench's gateway with the two large-request routes, each figure measured."""
    tmp = Path(tempfile.mkdtemp(prefix="aigw-big-requests-"))
    small_port, big_port = free_port(), free_port()
    mocks = [
        MockProcess(port, ["openai", "anthropic"], tmp / f"mock{port}.log").start()
        for port in (small_port, big_port)
    ]

    def big_routes(config: dict) -> None:
        for name, provider in (("left", "openai"), ("messages", "anthropic")):
            endpoint = {"host": "127.0.0.1", "port": big_port}
            auth = {"secretRef": {"inline": "sk-bench"}}
            ai = {"provider": provider, "model": "m", "auth": auth, "endpoint": endpoint}
            config["backends"].append({"name": name, "ai": ai})
            route: dict[str, object] = {
                "name": name,
                "matches": [{"path": {"value": f"/{name}"}}],
                "backendRefs": [{"name": name}],
            }
            if name == "messages":  # and guarded: each message is a text to scan
                guard = {
                    "regex": {
                        "action": "MASK",
                        "matches": [{"pattern": r"sk-[A-Za-z0-9]{20,}", "name": "KEY"}],
                    }
                }
                route["policies"] = {"promptGuard": {"request": guard}}
            config["routes"].insert(0, route)

    try:
        gw = Gateway(tmp, small_port, "gateway", tweak=big_routes)
        try:
            script = post_script(tmp, BODY)
            with mock_paced(big_port, 50):
                left = measure(gw.url, script, leave_early)
            return {"left": left, "messages": measure(gw.url, script, many_messages)}
        finally:
            gw.stop()
    finally:
        for mock in mocks:
            mock.stop()


if __name__ == "__main__":
    print(run())
