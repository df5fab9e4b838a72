"""Inference routing under bursty load: the endpoint picker beside plain round robin.

Three vLLM-like mock servers (`aigw mock-vllm`) of unequal speed (one `--slow-factor`
times slower per token) sit behind one Envoy + processor, rendered from a gateway config
with two routes to the same servers:

- `least-loaded`: the inference pool (the processor scrapes each server's /metrics and
  names the least-loaded one in x-gateway-destination-endpoint; Envoy's override host);
- `round-robin`: a backend whose one priority group lists the same three servers as
  OpenAI-compatible providers (Envoy's round robin; the request header
  `x-bench-lb: round-robin` selects it).

Both go through the same Envoy and processor, so the only difference is the choice of
server. Each scenario sends bursts with pauses between them:

- `closed`: each burst is `--burst` requests sent by `--concurrency` clients, each
  sending its next request when the last one answered;
- `at-once`: each burst is `--concurrency-at-once` requests sent at the same moment.

Printed per scenario and mode: p50/p95/p99 latency, requests per second while bursts ran,
errors, and how many requests each server received.

    scripts/bench_inference                       # about two minutes
    scripts/bench_inference --bursts 4 --slow-factor 10
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from extproc.devstack import Envoy, Processor, VllmMockProcess, free_port, wait_for  # noqa: E402
from extproc.render.envoy import render  # noqa: E402
from extproc.render.model import GatewaySpec  # noqa: E402

PATH = "/v1/chat/completions"
MODEL = "base-model"
BODY = {"model": MODEL, "messages": [{"role": "user", "content": "Summarise the benefits of batching."}]}
MODES = {"least-loaded": {}, "round-robin": {"x-bench-lb": "round-robin"}}


def gateway_config(ports: list[int], port: int, admin: int, health: int, sock: Path, scrape: str) -> dict:
    servers = [f"127.0.0.1:{p}" for p in ports]
    exact = {"type": "Exact", "value": PATH}
    return {
        "gateway": {
            "listen": {"port": port},
            "adminPort": admin,
            "processor": {"socket": str(sock), "healthPort": health, "workers": 1},
        },
        "inferencePools": [{"name": "pool", "endpoints": servers, "scrapeInterval": scrape}],
        "backends": [
            {
                "name": "round-robin",
                "ai": {
                    "priorityGroups": [
                        {
                            "providers": [
                                {
                                    "provider": "openai-compatible",
                                    "name": f"server-{i}",
                                    "endpoint": {"host": "127.0.0.1", "port": p, "tls": False},
                                }
                                for i, p in enumerate(ports)
                            ]
                        }
                    ]
                },
            }
        ],
        "routes": [
            {
                "name": "round-robin",
                "matches": [{"path": exact, "headers": [{"name": "x-bench-lb", "value": "round-robin"}]}],
                "backendRefs": [{"name": "round-robin"}],
                "timeouts": {"request": "120s"},
            },
            {
                "name": "least-loaded",
                "matches": [{"path": exact}],
                "backendRefs": [{"name": "pool", "kind": "InferencePool"}],
                "timeouts": {"request": "120s"},
            },
        ],
    }


@dataclass
class Result:
    latencies: list[float] = field(default_factory=list)  # seconds, successful requests
    errors: list[str] = field(default_factory=list)
    busy_s: float = 0.0  # time bursts ran, pauses excluded
    split: list[int] = field(default_factory=list)

    def pct(self, p: float) -> float:
        xs = sorted(self.latencies)
        return xs[min(len(xs) - 1, int(p / 100 * len(xs)))] * 1000 if xs else float("nan")

    @property
    def rps(self) -> float:
        return len(self.latencies) / self.busy_s if self.busy_s else 0.0


async def one(client: httpx.AsyncClient, url: str, headers: dict[str, str], out: Result) -> None:
    t0 = time.perf_counter()
    try:
        resp = await client.post(url, json=BODY, headers=headers)
        if resp.status_code != 200:
            out.errors.append(f"HTTP {resp.status_code}: {resp.text[:120]}")
            return
    except httpx.HTTPError as exc:
        out.errors.append(repr(exc))
        return
    out.latencies.append(time.perf_counter() - t0)


async def closed_burst(
    client: httpx.AsyncClient, url: str, headers: dict[str, str], n: int, concurrency: int, out: Result
) -> None:
    left = iter(range(n))

    async def client_loop() -> None:
        for _ in left:
            await one(client, url, headers, out)

    await asyncio.gather(*(client_loop() for _ in range(concurrency)))


async def run_mode(args: argparse.Namespace, url: str, headers: dict[str, str], scenario: str) -> Result:
    out = Result()
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
    async with httpx.AsyncClient(timeout=120, limits=limits) as client:
        for _ in range(args.bursts):
            t0 = time.perf_counter()
            if scenario == "closed":
                await closed_burst(client, url, headers, args.burst, args.concurrency, out)
            else:
                await asyncio.gather(
                    *(one(client, url, headers, out) for _ in range(args.concurrency_at_once))
                )
            out.busy_s += time.perf_counter() - t0
            await asyncio.sleep(args.pause)
    return out


class Bench:
    def __init__(self, args: argparse.Namespace, tmp: Path) -> None:
        self.args = args
        ports = [free_port() for _ in range(3)]
        speeds = [args.per_token_ms, args.per_token_ms, args.per_token_ms * args.slow_factor]
        self.servers = [
            VllmMockProcess(
                p,
                tmp / f"vllm-{p}.log",
                per_token_ms=ms,
                max_running=args.max_running,
                output_tokens=args.output_tokens,
            )
            for p, ms in zip(ports, speeds, strict=True)
        ]
        self.speeds = speeds
        port, admin, health = free_port(), free_port(), free_port()
        sock = tmp / "extproc.sock"
        spec = gateway_config(ports, port, admin, health, sock, args.scrape_interval)
        path = tmp / "bootstrap.yaml"
        path.write_text(yaml.safe_dump(render(GatewaySpec.model_validate(spec))))
        self.processor = Processor(path, sock, tmp / "processor.log", ["--metrics-port", "0"])
        self.envoy = Envoy(path, tmp / "envoy.log", admin)
        self.url = f"http://127.0.0.1:{port}{PATH}"

    def start(self) -> None:
        for s in self.servers:
            s.start()
        self.processor.start()
        self.envoy.start()

    def stop(self) -> None:
        self.envoy.stop()
        self.processor.stop()
        for s in self.servers:
            s.stop()

    def idle(self) -> None:
        """Wait for every server to drain, then clear their request logs."""

        def drained() -> bool:
            for s in self.servers:
                text = httpx.get(s.url + "/metrics", timeout=5).text
                for line in text.splitlines():
                    if line.startswith(("vllm:num_requests_running", "vllm:num_requests_waiting")):
                        if float(line.rsplit(" ", 1)[1]) != 0:
                            return False
            return True

        wait_for(drained, 120, "idle servers")
        for s in self.servers:
            httpx.delete(s.url + "/_mock/requests", timeout=5).raise_for_status()
        time.sleep(1)  # the picker's figures are fresh again

    def split(self) -> list[int]:
        return [len(httpx.get(s.url + "/_mock/requests", timeout=5).json()) for s in self.servers]

    def run(self, scenario: str, mode: str) -> Result:
        self.idle()
        result = asyncio.run(run_mode(self.args, self.url, MODES[mode], scenario))
        result.split = self.split()
        return result


def describe(args: argparse.Namespace, scenario: str) -> str:
    if scenario == "closed":
        return f"{args.bursts} bursts of {args.burst} requests at concurrency {args.concurrency}"
    return f"{args.bursts} bursts of {args.concurrency_at_once} requests sent at once"


def report(args: argparse.Namespace, bench: Bench, results: dict[tuple[str, str], Result]) -> None:
    service = [args.output_tokens * ms for ms in bench.speeds]
    print(
        f"\nservers: {', '.join(f'{ms:.0f} ms' for ms in service)} per answer, "
        f"{args.max_running} running at once each; scrape interval {args.scrape_interval}; "
        f"{args.pause}s pauses"
    )
    for scenario in ("closed", "at-once"):
        print(f"\n{scenario}: {describe(args, scenario)}")
        print(f"  {'mode':<13} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'req/s':>7} {'errors':>6}  split")
        for mode in MODES:
            r = results[(scenario, mode)]
            split = " / ".join(map(str, r.split))
            slow = r.split[2] / max(1, sum(r.split))
            print(
                f"  {mode:<13} {r.pct(50):8.0f} {r.pct(95):8.0f} {r.pct(99):8.0f} {r.rps:7.1f} "
                f"{len(r.errors):6d}  {split} (slow server {slow:.0%})"
            )
        ll, rr = results[(scenario, "least-loaded")], results[(scenario, "round-robin")]
        print(f"  p95 round-robin / least-loaded: {rr.pct(95) / ll.pct(95):.2f}x")
    for key, r in results.items():
        for e in r.errors[:3]:
            print(f"  error in {key}: {e}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bursts", type=int, default=8)
    ap.add_argument("--burst", type=int, default=60, help="requests per closed-loop burst")
    ap.add_argument("--concurrency", type=int, default=12, help="clients per closed-loop burst")
    ap.add_argument("--concurrency-at-once", type=int, default=24, help="requests per at-once burst")
    ap.add_argument("--pause", type=float, default=1.0, help="seconds between bursts")
    ap.add_argument("--per-token-ms", type=float, default=5.0, help="the fast servers' pace")
    ap.add_argument("--slow-factor", type=float, default=8.0, help="how much slower the third server is")
    ap.add_argument("--output-tokens", type=int, default=20)
    ap.add_argument("--max-running", type=int, default=4, help="batch size of each server")
    ap.add_argument("--scrape-interval", default="200ms", help="the pool's scrapeInterval")
    args = ap.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="aigw-bench-inference-") as name:
        bench = Bench(args, Path(name))
        results: dict[tuple[str, str], Result] = {}
        try:
            bench.start()
            for scenario in ("closed", "at-once"):
                for mode in MODES:
                    print(f"==> {scenario} / {mode}", file=sys.stderr, flush=True)
                    results[(scenario, mode)] = bench.run(scenario, mode)
        finally:
            bench.stop()
        report(args, bench, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
