"""What a global rate limit and a token budget cost per request (gateway.sharedState).

One Envoy and processor, rendered from the bench gateway config plus `sharedState` (a
local redis-server) and a route `limited` (the plain route's path and backend, chosen by
a request header) that has a global per-key rate limit and a per-key token budget, both
too large to refuse anything. Runs alternate between the plain
route and the limited one, so the difference is Envoy's rate-limit filters, the
processor's rate-limit service and Redis:

- c=1: p50 latency;
- c=10: requests per second and the processor's CPU per request (the rate-limit
  service runs in the processor).

    scripts/bench_shared_state.py [--duration 5] [--rounds 3]

Run alone, or as the last part of scripts/bench.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import bench_stack

from extproc.devstack import MockProcess, free_port
from extproc.shared_state.local_redis import LocalRedis

# The limited route is the plain route's path with this header: the same backend wiring
# (one stream, no upstream filter), only the limits differ.
LIMITED_HEADER = "x-bench-limited"


def with_limits(redis: LocalRedis):
    def tweak(config: dict) -> None:
        config["gateway"]["sharedState"] = {"redis": {"address": redis.address}}
        config["routes"].insert(
            0,
            {
                "name": "limited",
                "matches": [
                    {
                        "path": {"type": "Exact", "value": bench_stack.PLAIN},
                        "headers": [{"name": LIMITED_HEADER, "value": "1"}],
                    }
                ],
                "backendRefs": [{"name": "plain"}],
                "rateLimit": {
                    "key": {"header": "authorization"},
                    "requests": 1_000_000_000,
                    "per": "minute",
                    "scope": "global",
                },
                "tokenBudget": {
                    "key": {"header": "authorization"},
                    "tokens": 1_000_000_000_000,
                    "per": "minute",
                },
            },
        )

    return tweak


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=int, default=5, help="seconds per wrk run")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="aigw-bench-shared-"))
    scripts = {"plain": bench_stack.post_script(tmp, bench_stack.BODY), "limited": tmp / "post-limited.lua"}
    scripts["limited"].write_text(scripts["plain"].read_text() + f'wrk.headers["{LIMITED_HEADER}"] = "1"\n')
    mock_port = free_port()
    results: dict[str, dict[str, list[float]]] = {r: {"p50": [], "rps": [], "cpu": []} for r in scripts}
    with LocalRedis(free_port()) as redis:
        mock = MockProcess(mock_port, ["openai", "anthropic"], tmp / "mock.log").start()
        gw = bench_stack.Gateway(tmp, mock_port, "shared", tweak=with_limits(redis))
        try:
            for route, script in scripts.items():  # warm-up, and both answer
                r = bench_stack.wrk(gw.url + bench_stack.PLAIN, 2, 2, script)
                if r["non2xx"]:
                    print(f"{route}: {r['non2xx']} non-2xx responses", file=sys.stderr)
                    return 1
            for _ in range(args.rounds):
                for route, script in scripts.items():
                    c1 = bench_stack.load(gw, bench_stack.PLAIN, 1, args.duration, script)
                    c10 = bench_stack.load(gw, bench_stack.PLAIN, 10, args.duration, script)
                    results[route]["p50"].append(c1["p50_ms"])
                    results[route]["rps"].append(c10["rps"])
                    results[route]["cpu"].append(c10["cpu_ms_per_req"])
        finally:
            gw.stop()
            mock.stop()
    med = {r: {k: statistics.median(v) for k, v in m.items()} for r, m in results.items()}
    plain, limited = med["plain"], med["limited"]
    print(f"\nshared state: {args.rounds} alternating rounds, {args.duration} s per wrk run (medians)\n")
    print("| route | c=1 p50 ms | c=10 req/s | processor CPU ms/req (c=10) |")
    print("|---|---|---|---|")
    for name, m in (("plain", plain), ("global rate limit + token budget", limited)):
        print(f"| {name} | {m['p50']:.2f} | {m['rps']:.0f} | {m['cpu']:.2f} |")
    print(
        f"\nadded by the limits: c=1 p50 {limited['p50'] - plain['p50']:+.2f} ms, "
        f"c=10 throughput {limited['rps'] / plain['rps'] - 1:+.0%}, "
        f"processor CPU {limited['cpu'] - plain['cpu']:+.2f} ms/request"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
