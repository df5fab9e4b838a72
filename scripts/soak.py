"""The soak behind scripts/soak. See that file for usage.

Real Envoy, the processor and an in-process mock provider, from envoy/policies.yaml. The
`pii` route masks the four PII builtins in both directions. Streaming and JSON clients
loop against it for the whole run:

- every request carries values of its own (a Luhn-valid card, an email, an SSN and a
  phone number) in the prompt: none of them may reach the mock provider;
- the mock answers with a fixed text holding PII of its own: none of it may reach a
  client, whichever way the stream happens to be cut;
- every answer must be a 200, a stream must end with `[DONE]`.

Every few seconds it checks what the mock received and samples the processor's and
Envoy's resident memory. It prints one line per sample and a summary; it exits non-zero
on any error, any leak, or memory still growing over the second half of the run.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import re
import sys
import time
from pathlib import Path

import httpx
import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.harness import MockProvider, Stack, load_bootstrap  # noqa: E402

PATH = "/pii/v1/chat/completions"
# What the mock answers with: each value must come back masked.
ANSWER = (
    "Sure. Reach Jane at jane.roe@example.org or (212) 555-0198. Card 4111 1111 1111 1111, "
    "SSN 536-90-4399. Backup card 5500-0000-0000-0004 and jroe@corp.example.com."
)
ANSWER_SECRETS = (
    "jane.roe@example.org",
    "555-0198",
    "4111 1111 1111 1111",
    "536-90-4399",
    "5500-0000-0000-0004",
    "jroe@corp.example.com",
)


def luhn_card(rng: random.Random) -> str:
    digits = [4] + [rng.randrange(10) for _ in range(14)]
    total = 0
    for i, d in enumerate(reversed(digits)):
        d = d * 2 if i % 2 == 0 else d
        total += d - 9 if d > 9 else d
    digits.append((10 - total % 10) % 10)
    s = "".join(map(str, digits))
    return " ".join(s[i : i + 4] for i in range(0, 16, 4))


def next_prompt(rng: random.Random, counter: list[int]) -> str:
    """A prompt with values of its own: a card, an email, an SSN and a phone number (the
    shapes `_PLANTED` looks for in what the provider received)."""
    counter[0] += 1
    card = luhn_card(rng)
    email = f"user{counter[0]}.{rng.randrange(10**6)}@example.com"
    ssn = f"{rng.randrange(100, 665)}-{rng.randrange(10, 99)}-{rng.randrange(1000, 9999)}"
    phone = f"(212) 555-{rng.randrange(1000, 9999)}"
    return f"My card is {card}, email {email}, SSN {ssn}, call {phone}. Summarise this."


class Tally:
    def __init__(self) -> None:
        self.ok = {"json": 0, "stream": 0}
        self.errors: list[str] = []
        self.leaks: list[str] = []


async def json_client(
    client: httpx.AsyncClient, url: str, tally: Tally, rng: random.Random, deadline: float, counter: list[int]
) -> None:
    while time.monotonic() < deadline:
        text = next_prompt(rng, counter)
        try:
            r = await client.post(
                url,
                content=orjson.dumps(
                    {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}]}
                ),
            )
            if r.status_code != 200:
                tally.errors.append(f"json {r.status_code}: {r.text[:200]}")
                continue
            content = r.json()["choices"][0]["message"]["content"] or ""
            check_answer(content, tally, "json")
            tally.ok["json"] += 1
        except Exception as exc:
            tally.errors.append(f"json {type(exc).__name__}: {exc}")


async def stream_client(
    client: httpx.AsyncClient, url: str, tally: Tally, rng: random.Random, deadline: float, counter: list[int]
) -> None:
    while time.monotonic() < deadline:
        text = next_prompt(rng, counter)
        body = {"model": "gpt-4o-mini", "stream": True, "messages": [{"role": "user", "content": text}]}
        try:
            async with client.stream("POST", url, content=orjson.dumps(body)) as r:
                if r.status_code != 200:
                    tally.errors.append(f"stream {r.status_code}: {(await r.aread())[:200]!r}")
                    continue
                parts, done = [], False
                async for line in r.aiter_lines():
                    if not line.startswith("data: "):
                        continue
                    data = line[6:]
                    if data == "[DONE]":
                        done = True
                        continue
                    chunk = orjson.loads(data)
                    if "error" in chunk:
                        tally.errors.append(f"stream error event: {data[:200]}")
                    for choice in chunk.get("choices") or []:
                        parts.append((choice.get("delta") or {}).get("content") or "")
                if not done:
                    tally.errors.append("stream without [DONE]")
                    continue
                check_answer("".join(parts), tally, "stream")
                tally.ok["stream"] += 1
        except Exception as exc:
            tally.errors.append(f"stream {type(exc).__name__}: {exc}")


def check_answer(content: str, tally: Tally, kind: str) -> None:
    for secret in ANSWER_SECRETS:
        if secret in content:
            tally.leaks.append(f"{kind} answer carried {secret!r}")
    if "<" not in content:
        tally.errors.append(f"{kind} answer has no mask at all: {content[:120]!r}")


# The shapes of the values planted in prompts (see `next_prompt`).
_PLANTED = re.compile(r"user\d+\.\d+@example\.com|\d{4} \d{4} \d{4} \d{4}|\b\d{3}-\d{2}-\d{4}\b|555-\d{4}")


def check_received(mock: MockProvider, tally: Tally) -> int:
    """What reached the provider must hold none of the values planted in prompts."""
    received = mock.requests
    mock.clear()
    for request in received:
        text = orjson.dumps(request.get("body")).decode()
        tally.leaks += [f"provider received {v!r}" for v in _PLANTED.findall(text)]
    return len(received)


def rss_mb(pid: int | None) -> float:
    """Resident memory of a process and all its descendants (the processor's scan
    workers and their forkserver count too)."""
    if pid is None:
        return 0.0
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        todo += children.get(p, [])
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


async def run(args: argparse.Namespace) -> int:
    stack = Stack(load_bootstrap("policies.yaml")).start()
    try:
        return await _soak(stack, args)
    finally:
        stack.stop()


async def _soak(stack: Stack, args: argparse.Namespace) -> int:
    mock = stack.mocks["mock-openai"]  # the backend of the `pii` route
    mock.baseline(content=ANSWER)
    url = stack.url + PATH
    tally = Tally()
    counter = [0]
    samples: list[tuple[float, float, float]] = []
    deadline = time.monotonic() + args.duration
    limits = httpx.Limits(max_connections=args.streams + args.json + 10)
    headers = {"content-type": "application/json", "authorization": "Bearer soak"}
    started = time.monotonic()
    async with httpx.AsyncClient(limits=limits, headers=headers, timeout=60) as client:
        rng = random.Random(args.seed)
        tasks = [
            asyncio.create_task(
                stream_client(client, url, tally, random.Random(rng.random()), deadline, counter)
            )
            for _ in range(args.streams)
        ]
        tasks += [
            asyncio.create_task(
                json_client(client, url, tally, random.Random(rng.random()), deadline, counter)
            )
            for _ in range(args.json)
        ]
        checked = 0
        while time.monotonic() < deadline:
            await asyncio.sleep(args.sample)
            checked += check_received(mock, tally)
            sample = (time.monotonic() - started, rss_mb(stack.processor.pid), rss_mb(stack.envoy.pid))
            samples.append(sample)
            print(
                f"t={sample[0]:6.0f}s  ok json={tally.ok['json']} stream={tally.ok['stream']}  "
                f"errors={len(tally.errors)} leaks={len(tally.leaks)}  "
                f"rss processor={sample[1]:.0f} MB envoy={sample[2]:.0f} MB",
                flush=True,
            )
            if not (stack.envoy.alive() and stack.processor.alive()):
                tally.errors.append("envoy or the processor died")
                break
        await asyncio.gather(*tasks)
        checked += check_received(mock, tally)
    elapsed = time.monotonic() - started
    total = tally.ok["json"] + tally.ok["stream"]
    half = [s for s in samples if s[0] >= elapsed / 2]
    growth = (half[-1][1] - half[0][1]) / half[0][1] * 100 if len(half) >= 2 and half[0][1] else 0.0
    print(f"\nsoak: {elapsed:.0f} s, {args.streams} streams + {args.json} JSON clients on {PATH}")
    print(
        f"  answers ok: {total} ({tally.ok['stream']} streamed, {tally.ok['json']} JSON), "
        f"{total / elapsed:.1f}/s; provider requests checked: {checked}"
    )
    print(f"  errors: {len(tally.errors)}  leaks: {len(tally.leaks)}")
    if samples:
        print(
            f"  processor RSS: start {samples[0][1]:.0f} MB, end {samples[-1][1]:.0f} MB, "
            f"second-half growth {growth:+.1f}%; envoy RSS end {samples[-1][2]:.0f} MB"
        )
    for line in tally.errors[:10] + tally.leaks[:10]:
        print("  ", line)
    failed = bool(tally.errors or tally.leaks or total == 0 or growth > args.max_growth)
    print("soak:", "FAILED" if failed else "passed")
    return 1 if failed else 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=int, default=600, help="seconds (default 600)")
    ap.add_argument("--streams", type=int, default=50, help="streaming clients (default 50)")
    ap.add_argument("--json", type=int, default=20, help="JSON clients (default 20)")
    ap.add_argument("--sample", type=float, default=10, help="seconds between checks")
    ap.add_argument(
        "--max-growth",
        type=float,
        default=10,
        help="allowed processor RSS growth over the second half, %% (default 10)",
    )
    ap.add_argument("--seed", type=int, default=1)
    return asyncio.run(run(ap.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
