"""Part of scripts/bench: small requests' latency while other clients send ~4 MB
streaming prompts and leave after the first bytes of the answer.

A stream cut short before its usage chunk is still counted: its prompt's tokens are
estimated with tiktoken. Counted on the event loop that serves every stream, one such
request held all the others for a second or more; now one estimate tokenizes at most
256 K characters, on a thread (extproc/tokens.py). Run by scripts/bench; the large prompts
go to a mock of their own, whose stream events are paced so that leaving early does cut
the stream short.

    .venv/bin/python scripts/bench_cut_short.py     # on its own (mocks and a gateway)
"""

from __future__ import annotations

import base64
import json
import random

import httpx
from bench import PLAIN, latencies_under_load, mock_paced, pct, small_latencies

# 16 messages of 250,000 characters of base64 (a file pasted as text): just under the
# default 4 MiB request limit. Long runs without a space are what tiktoken is slowest on
# (~0.15 µs a character here, against ~0.05 for prose).
_BLOB = base64.b64encode(random.Random(7).randbytes(190_000)).decode()[:250_000]
# Encoded once: the client thread shares the interpreter with the one timing small requests.
PROMPT = json.dumps(
    {"model": "m", "stream": True, "messages": [{"role": "user", "content": _BLOB} for _ in range(16)]}
).encode()


BIG = "/big/v1/chat/completions"


def measure(url: str, big_mock_port: int, seconds: float = 6) -> dict[str, float]:
    """Small requests on the plain route while prompts are sent to BIG and left."""
    failures: list[str] = []
    idle = small_latencies(url + PLAIN, 3, failures)
    left: list[int] = []

    def leave_early(client: httpx.Client) -> None:
        headers = {"content-type": "application/json"}
        with client.stream("POST", url + BIG, content=PROMPT, headers=headers) as r:
            for _ in r.iter_raw():
                break  # the first bytes of the answer, then gone
        left.append(r.status_code)

    with mock_paced(big_mock_port, 50):
        busy = latencies_under_load(url + PLAIN, seconds, failures, leave_early)
    if failures or set(left) != {200}:
        raise SystemExit(f"cut-short streams: {failures[:3]} small failures, statuses {sorted(set(left))}")
    return {
        "idle_p99_ms": pct(idle, 99),
        "busy_p50_ms": pct(busy, 50),
        "busy_p99_ms": pct(busy, 99),
        "streams": len(left),
    }


def run() -> dict[str, float]:
    """The bench's gateway with a BIG route to a mock of its own (a mock reading megabytes
    would hold up the small requests' mock, not the gateway), measured."""
    import tempfile
    from pathlib import Path

    from bench import Gateway

    from extproc.devstack import MockProcess, free_port

    tmp = Path(tempfile.mkdtemp(prefix="aigw-cut-short-"))
    ports = free_port(), free_port()
    mocks = [MockProcess(port, ["openai"], tmp / f"mock{port}.log").start() for port in ports]

    def big_route(config: dict) -> None:
        config["backends"].append(
            {
                "name": "big",
                "ai": {
                    "provider": "openai",
                    "model": "gpt-4o-mini",
                    "auth": {"secretRef": {"inline": "sk-bench"}},
                    "endpoint": {"host": "127.0.0.1", "port": ports[1]},
                },
            }
        )
        config["routes"].insert(
            0, {"name": "big", "matches": [{"path": {"value": "/big"}}], "backendRefs": [{"name": "big"}]}
        )

    try:
        gw = Gateway(tmp, ports[0], "gateway", tweak=big_route)
        try:
            return measure(gw.url, ports[1])
        finally:
            gw.stop()
    finally:
        for mock in mocks:
            mock.stop()


if __name__ == "__main__":
    print(run())
