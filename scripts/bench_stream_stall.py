"""Part of scripts/bench: small requests' latency while guarded streams each carry one
large, digit-dense delta (~3,000 characters: the text Presidio is slowest on).

Such a step is too large to scan on the event loop that serves every stream, so the
processor sends it to a scan worker (RegexStage.scan_step); scanned on the loop, every
other request waited for it. Run by scripts/bench against its gateway; the mock answers
every request with that text while it runs (the gateway does not forward `x-mock-*`).
"""

from __future__ import annotations

import httpx
from bench_stack import PLAIN, STREAM_GUARDED, latencies_under_load, pct, small_latencies

DENSE = "-".join(f"{i:04d}" for i in range(600))  # one word: the mock sends it as one delta
REPLY = f"Codes {DENSE} and call +1 212 555 0198 today."


def measure(url: str, mock_port: int, seconds: float = 6) -> dict[str, float]:
    failures: list[str] = []
    idle = small_latencies(url + PLAIN, 3, failures)
    behavior = f"http://127.0.0.1:{mock_port}/_mock/behavior"
    httpx.post(behavior, json={"content": REPLY}, timeout=5).raise_for_status()
    streams: list[bool] = []
    body = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "codes?"}]}

    def dense_stream(client: httpx.Client) -> None:
        with client.stream("POST", url + STREAM_GUARDED, json=body) as r:
            data = b"".join(r.iter_bytes())
        streams.append(r.status_code == 200 and b"555 0198" not in data)

    try:
        busy = latencies_under_load(url + PLAIN, seconds, failures, dense_stream)
    finally:
        httpx.post(behavior, json={}, timeout=5).raise_for_status()
    if failures or not all(streams):
        raise SystemExit(
            f"dense-delta streams: {failures[:3]} small failures, {streams.count(False)} bad streams"
        )
    return {
        "idle_p99_ms": pct(idle, 99),
        "busy_p50_ms": pct(busy, 50),
        "busy_p99_ms": pct(busy, 99),
        "streams": len(streams),
    }
