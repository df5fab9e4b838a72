"""Many LLM streams at once: each holds one or two ext_proc streams to the processor (and
a request to its provider) for its whole answer. Envoy's default circuit breaker lets 1024
requests be in flight per cluster, so about 500 concurrent streams filled the processor's
cluster and the rest got the gateway's 503; the bootstraps lift it (render/envoy_parts.py)."""

from __future__ import annotations

import asyncio
from collections import Counter

import aiohttp
import httpx
import pytest

pytestmark = pytest.mark.e2e

STREAMS = 600  # above the ~512 requests (two ext_proc streams each) the default allowed
BODY = {
    "model": "m",
    "stream": True,
    "messages": [{"role": "user", "content": "one two three four five six"}],
}


async def stream_all(url: str, n: int) -> Counter:
    async def one(session: aiohttp.ClientSession) -> int | str:
        try:
            async with session.post(url, json=BODY, headers={"authorization": "Bearer k"}) as r:
                data = await r.read()
                return r.status if r.status != 200 or b"[DONE]" in data else "no [DONE]"
        except aiohttp.ClientError as exc:
            return type(exc).__name__

    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(
        connector=connector, timeout=aiohttp.ClientTimeout(total=120)
    ) as session:
        return Counter(await asyncio.gather(*(one(session) for _ in range(n))))


def test_six_hundred_concurrent_streams_are_all_answered(mock_stack):
    # The mock's events 300 ms apart: every stream stays open for a couple of seconds,
    # so all of them are in flight together.
    mock_stack.mock.behave(chunkDelayMs=300)
    outcomes = asyncio.run(stream_all(mock_stack.url + "/v1/chat/completions", STREAMS))
    assert outcomes == Counter({200: STREAMS}), outcomes
    # Nothing was turned away by a circuit breaker on the way.
    stats = httpx.get(
        f"http://127.0.0.1:{mock_stack.admin_port}/stats", params={"filter": "overflow"}, timeout=5
    )
    overflows = [line for line in stats.text.splitlines() if not line.endswith(": 0")]
    assert overflows == [], overflows
