"""What keeping the gateway's secrets out of responses costs (extproc/redaction.py).

Times the redactor on what the processor scans on every response, with 10 secrets of
real-provider shapes held (5 OpenAI project keys, 5 Anthropic keys): one canonical stream
event, a 2 KB chat completion, a provider's response headers, and 1 MB of English text
and of base64 (large bodies are scanned on a worker thread). Then the same stream event
through the route filter's stream view with and without redaction.

    .venv/bin/python scripts/bench_redaction.py
"""

from __future__ import annotations

import asyncio
import base64
import os
import random
import string
import sys
import time
import timeit
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import orjson

from extproc import redaction
from extproc.redaction import Redactor


def best(fn, number: int) -> float:
    """Seconds per call, the best of 5 rounds (the least disturbed by other work)."""
    return min(timeit.repeat(fn, number=number, repeat=5)) / number


def main() -> None:
    rng = random.Random(1)
    alphabet = string.ascii_letters + string.digits + "-_"
    keys = ["sk-proj-" + "".join(rng.choice(alphabet) for _ in range(156)) for _ in range(5)] + [
        "sk-ant-api03-" + "".join(rng.choice(alphabet) for _ in range(95)) for _ in range(5)
    ]
    r = Redactor(keys)
    event = orjson.dumps(
        {
            "id": "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT",
            "object": "chat.completion.chunk",
            "created": 1741570283,
            "model": "gpt-4o-2024-08-06",
            "system_fingerprint": "fp_fc9f1d7035",
            "choices": [
                {"index": 0, "delta": {"content": " the weather"}, "logprobs": None, "finish_reason": None}
            ],
        }
    ).decode()
    words = (
        "the of and to in is you that it was for on are as with they at be this have from "
        "or one had by word but not what all were we when your can said there use an each "
        "which she do how their if will up other about out many then them these so some "
        "information gateway assistant function response"
    ).split()
    prose = " ".join(rng.choice(words) for _ in range(330))
    completion = orjson.dumps(
        {
            "id": "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT",
            "object": "chat.completion",
            "created": 1741570283,
            "model": "gpt-4o-2024-08-06",
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": prose}, "finish_reason": "stop"}
            ],
            "usage": {"prompt_tokens": 12, "completion_tokens": 330, "total_tokens": 342},
        }
    )
    headers = [
        ("content-type", "application/json"),
        ("date", "Mon, 30 Nov 2026 09:29:50 GMT"),
        ("openai-organization", "user-abc123def456"),
        ("openai-processing-ms", "412"),
        ("openai-version", "2020-10-01"),
        ("x-request-id", "req_8f3a9c0d1e2b4a5f67890abc"),
        ("x-ratelimit-remaining-tokens", "149984"),
        ("cf-ray", "8e1f2a3b4c5d6e7f-AMS"),
        (
            "set-cookie",
            "__cf_bm="
            + "".join(rng.choice(alphabet) for _ in range(120))
            + "; path=/; expires=Mon, 30-Nov-26 09:59:50 GMT; domain=.api.openai.com; HttpOnly",
        ),
        ("strict-transport-security", "max-age=31536000; includeSubDomains; preload"),
    ]
    big_prose = orjson.dumps({"content": " ".join(rng.choice(words) for _ in range(160_000))})
    big_b64 = orjson.dumps({"data": base64.b64encode(os.urandom(750_000)).decode()})

    print(f"redactor for 10 secrets: built in {best(lambda: Redactor(keys), 3) * 1e3:.1f} ms")
    rows = [
        ("stream event (262 B)", lambda: r.spans(event), 20_000),
        ("chat completion (2 KB)", lambda: r.redact_body(completion), 2_000),
        (f"response headers ({len(headers)})", lambda: r.redact_headers(headers), 20_000),
    ]
    for name, fn, n in rows:
        print(f"  {name:28} {best(fn, n) * 1e6:8.1f} µs")
    for name, body in (("1 MB English (thread)", big_prose), ("1 MB base64 (thread)", big_b64)):
        print(f"  {name:28} {best(lambda body=body: r.redact_body(body), 3) * 1e3:8.1f} ms")

    from extproc.guarded_stream import response_stream

    data = b"data: " + event.encode() + b"\n\n"

    async def feed(n: int) -> None:
        rs = response_stream("r", None, False, {})
        for _ in range(n):
            await rs.feed(data, False)

    # Alternated, CPU time, best of 10: other work on the machine disturbs the rest.
    empty = Redactor([])
    cost: dict[str, list[float]] = {"with": [], "without": []}
    for _ in range(10):
        for name, red in (("with", r), ("without", empty)):

            def current(red: Redactor = red) -> Redactor:
                return red

            redaction.current = current
            started = time.process_time()
            asyncio.run(feed(3000))
            cost[name].append((time.process_time() - started) / 3000)
    print(
        f"route filter stream view per event: {min(cost['without']) * 1e6:.1f} µs without "
        f"secrets, {min(cost['with']) * 1e6:.1f} µs with 10"
    )


if __name__ == "__main__":
    main()
