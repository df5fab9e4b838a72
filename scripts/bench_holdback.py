"""How much the streaming guard holds back, and what it costs per chunk.

Streams realistic assistant texts through the response guard (the four builtins plus a
custom pattern), one word-sized delta at a time as providers send them, and reports how
many characters are held after each delta (the latency a client sees is that text
arriving later) and the guard's CPU time per delta. Run by scripts/bench, or alone.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from extproc.guards.config import ResponseGuardConfig
from extproc.guards.pipeline import ResponseGuards
from extproc.guards.stream_guard import StreamTextGuard

TEXTS = {
    "prose (no digits, no @)": (
        "Envoy is a high performance edge and service proxy. It was built for large modern "
        "service oriented architectures, and it runs alongside every application, so the "
        "network is transparent to them. Features include dynamic configuration, retries, "
        "circuit breaking, rate limiting and rich observability. "
    )
    * 4,
    "PII-heavy support answer": (
        "Thanks for waiting. I found your account: the phone on file is (212) 555-0198 and the "
        "email is jane.doe@example.com. The card ending 1111 (4111 1111 1111 1111) was charged "
        "$42.50 on 2024-03-15 for order ORD-123-45, and the SSN 536-90-4399 is verified. "
    )
    * 3,
}


def measure(policy: dict) -> list[tuple[str, float, int, float, float]]:
    guards = ResponseGuards(ResponseGuardConfig.model_validate(policy), "bench")
    rows = []
    for name, text in TEXTS.items():
        words = text.split(" ")
        deltas = [w + " " for w in words[:-1]] + [words[-1]]
        assert guards.scanner is not None and guards.holdback is not None  # the policy has a regex guard
        g = StreamTextGuard(guards.scanner, guards.holdback, guards.config.stream_window, False)
        held, times = [], []
        for d in deltas:
            t0 = time.perf_counter()
            g.feed(d)
            times.append(time.perf_counter() - t0)
            held.append(g.holding)
        g.finish()
        rows.append(
            (
                name,
                statistics.mean(held),
                max(held),
                statistics.median(times) * 1e3,
                sorted(times)[int(len(times) * 0.99) - 1] * 1e3,
            )
        )
    return rows


def main() -> None:
    policy = {
        "regex": {
            "action": "MASK",
            "builtins": ["CREDIT_CARD", "EMAIL", "PHONE_NUMBER", "SSN"],
            "matches": [{"pattern": r"ORD-\d{3}(-\d{2})?", "name": "ORDER"}],
        }
    }
    print("\n| stream guard: text | held chars, mean | held chars, max | CPU per delta p50 | p99 |")
    print("|---|---|---|---|---|")
    for name, mean, most, p50, p99 in measure(policy):
        print(f"| {name} | {mean:.1f} | {most} | {p50:.3f} ms | {p99:.3f} ms |")


if __name__ == "__main__":
    main()
