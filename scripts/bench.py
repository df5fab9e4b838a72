"""The benchmark behind scripts/bench. See that file for usage.

Everything runs on this machine, in one run, so the figures that matter are ratios and
the processor's own CPU time per request (the machine is shared and noisy):

- plain chat, single OpenAI backend: bare Envoy (the same bootstrap with the gateway's
  filters taken out) beside the gateway, wrk at c=1 and c=10, and the processor's CPU
  per request;
- a route with prompt enrichment and a regex guard (both directions) to a failover chain
  whose first host is Anthropic: the processor's CPU per request;
- streaming: time to the first content chunk, bare Envoy beside the gateway (the mock
  writing the whole stream at once, and its events 20 ms apart as a model's are), and
  the processor's CPU per chunk on a stream guarded by the four PII builtins;
- Presidio: one 4 KB prompt with a few entities, scanned in-process;
- head-of-line blocking: small requests' p99 while large, digit-heavy guarded requests
  are being processed, beside their idle p99;
- all the cores: plain chat at c=32 with one and two processor workers;
- start-up: how long the processor takes to answer its health check, and `scripts/run`
  to answer its first request (scripts/bench_run_ready.py);
- small requests while clients send the 4 MB requests that cost the processor most per
  byte (scripts/bench_big_requests.py);
- shared state: what a global rate limit and a token budget add (scripts/bench_shared_state.py);
- inference routing: least-loaded picking against round robin (scripts/bench_inference.py).

The stack is the one users run: rendered from a gateway config, access log on, the
processor at its default log level.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from bench_stack import (  # noqa: E402
    BODY,
    BUILTINS,
    GUARDED,
    PACED_MS,
    PII_IN,
    PLAIN,
    STREAM_GUARDED,
    Gateway,
    first_chunk_ms,
    latencies_under_load,
    load,
    mock_paced,
    pct,
    post_script,
    small_latencies,
    stream_chunks,
    wrk,
)

from extproc.devstack import MockProcess, free_port  # noqa: E402


def hostile_body() -> dict:
    """~50 messages of 4,000 digit-and-separator characters: the text Presidio finds slowest."""
    text = " ".join(f"{i:04d}-{(i * 7919) % 10000:04d}" for i in range(400))[:4000]
    return {"model": "m", "messages": [{"role": "user", "content": text} for _ in range(50)]}


def presidio_4kb() -> tuple[float, int]:
    from extproc.guards.regex_guard import RegexGuardConfig, TextScanner

    scanner = TextScanner(RegexGuardConfig(action="MASK", builtins=tuple(BUILTINS)))
    para = (
        "Our support team reviewed the ticket and the customer history in detail before "
        "answering. The account shows normal activity over the last billing periods. "
    )
    text = (para * 30)[:4000]
    text = (
        text[:1000]
        + " email jane.doe@example.com "
        + text[1000:2000]
        + " call (212) 555-0198 "
        + text[2000:3000]
        + " card 4111 1111 1111 1111 "
        + text[3000:]
    )[:4096]
    times = []
    for _ in range(40):
        t0 = time.perf_counter()
        _, findings = scanner.mask(text)
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times), len(findings)


# ---- the run -----------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=int, default=10, help="seconds per wrk measurement")
    ap.add_argument("--json", help="also write the results to this file")
    ap.add_argument(
        "--skip-inference",
        action="store_true",
        help="leave out the inference-routing comparison (scripts/bench_inference, ~2 min)",
    )
    args = ap.parse_args()
    d = args.duration
    tmp = Path(tempfile.mkdtemp(prefix="aigw-bench-"))
    script = post_script(tmp, BODY)
    mock_port = free_port()
    mock = MockProcess(mock_port, ["openai", "anthropic"], tmp / "mock.log").start()
    res: dict = {"duration_s": d, "cpus": os.cpu_count()}

    def say(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    try:
        for name, gateway in (("bare", False), ("gateway", True)):
            gw = Gateway(tmp, mock_port, name, gateway=gateway)
            try:
                if gateway:
                    res["startup_s"] = gw.startup_s
                wrk(gw.url + PLAIN, 2, 2, script)  # warm-up: connections, first-call costs
                for c in (1, 10):
                    r = res[f"{name}_c{c}"] = load(gw, PLAIN, c, d, script)
                    say(
                        f"  {name:<8} plain c={c:<3} {r['rps']:7.0f} req/s  p50 {r['p50_ms']:6.2f} ms  "
                        f"p99 {r['p99_ms']:6.2f} ms  cpu/req {r.get('cpu_ms_per_req', 0):.3f} ms"
                    )
                words = " ".join(f"word{i}" for i in range(40))
                first_chunk_ms(gw.url + PLAIN, 20, words)  # warm-up
                res[f"{name}_ttfc_ms"] = statistics.median(first_chunk_ms(gw.url + PLAIN, 200, words))
                with mock_paced(mock_port, PACED_MS):
                    paced = first_chunk_ms(gw.url + PLAIN, 100, words)
                res[f"{name}_ttfc_paced_ms"] = statistics.median(paced)
                at_once, paced = res[f"{name}_ttfc_ms"], res[f"{name}_ttfc_paced_ms"]
                say(
                    f"  {name:<8} stream: first content chunk p50 {at_once:.2f} ms (whole stream at "
                    f"once), {paced:.2f} ms (events {PACED_MS} ms apart)"
                )
                if not gateway:
                    continue
                r = res["guarded_c10"] = load(gw, GUARDED, 10, d, script)
                say(
                    f"  gateway  enrichment+regex guard, Anthropic-first chain c=10 {r['rps']:.0f} req/s  "
                    f"cpu/req {r['cpu_ms_per_req']:.3f} ms"
                )
                text = (
                    "Your order ships Monday. Call (212) 555-0198 or write to jane.doe@example.com "
                    "with card 4111 1111 1111 1111 handy. "
                ) * 4
                cpu0 = gw.cpu()
                chunks = stream_chunks(gw.url + STREAM_GUARDED, 50, text)
                res["guarded_stream_cpu_ms_per_chunk"] = (gw.cpu() - cpu0) * 1000 / max(1, chunks)
                say(
                    f"  gateway  PII-guarded stream: {res['guarded_stream_cpu_ms_per_chunk']:.3f} ms "
                    "processor CPU per chunk"
                )
                failures: list[str] = []
                idle = small_latencies(gw.url + PLAIN, 5, failures)
                hostile_status: list[int] = []

                def hostile(
                    client: httpx.Client, url: str = gw.url + PII_IN, statuses: list[int] = hostile_status
                ) -> None:
                    try:
                        statuses.append(client.post(url, json=hostile_body()).status_code)
                    except httpx.HTTPError:
                        statuses.append(0)

                busy = latencies_under_load(gw.url + PLAIN, 8, failures, hostile)
                res["hol_idle_p99_ms"], res["hol_busy_p99_ms"] = pct(idle, 99), pct(busy, 99)
                res["hol_hostile_requests"] = len(hostile_status)
                res["hol_hostile_statuses"] = sorted(set(hostile_status))
                res["hol_small_failures"] = failures[:20]
                import bench_stream_stall

                stall = res["dense_stream"] = bench_stream_stall.measure(gw.url, mock_port)
                say(
                    f"  gateway  small requests while guarded streams carry large digit-dense deltas: "
                    f"p50 {stall['busy_p50_ms']:.2f} ms, p99 {stall['busy_p99_ms']:.2f} ms "
                    f"(idle p99 {stall['idle_p99_ms']:.2f} ms, {stall['streams']} streams)"
                )
                if failures:
                    say(f"  gateway  {len(failures)} small requests FAILED: {failures[:3]}")
                say(
                    f"  gateway  small requests p99: idle {res['hol_idle_p99_ms']:.2f} ms, while hostile "
                    f"requests run {res['hol_busy_p99_ms']:.2f} ms ({len(hostile_status)} hostile, "
                    f"statuses {res['hol_hostile_statuses']})"
                )
            finally:
                gw.stop()
        for workers in (1, 2):
            gw = Gateway(tmp, mock_port, f"w{workers}", workers=workers)
            try:
                wrk(gw.url + PLAIN, 8, 2, script)
                r = res[f"workers{workers}_c32"] = load(gw, PLAIN, 32, d, script)
                say(f"  gateway  {workers} worker(s) c=32 {r['rps']:7.0f} req/s  p99 {r['p99_ms']:.2f} ms")
            finally:
                gw.stop()
    finally:
        mock.stop()
    import bench_big_requests

    big = res["big_requests"] = bench_big_requests.run()
    for kind, what in (
        ("left", "4 MB streaming prompts sent and left"),
        ("messages", "100,000-message requests"),
    ):
        r = big[kind]
        say(
            f"  gateway  small requests (wrk c=4) while {what}: p50 {r['busy_p50_ms']:.2f} ms, p99 "
            f"{r['busy_p99_ms']:.2f} ms, max {r['busy_max_ms']:.2f} ms (idle p99 {r['idle_p99_ms']:.2f} ms, "
            f"{r['requests']} large)"
        )
    res["presidio_4kb_p50_ms"], found = presidio_4kb()
    import bench_run_ready

    res["run_ready_s"] = bench_run_ready.seconds_to_first_answer()
    report(res, found)
    import bench_holdback

    bench_holdback.main()
    import bench_shared_state

    bench_shared_state.main([])
    if not args.skip_inference:
        # Least-loaded picking against round robin on model servers of unequal speed.
        import bench_inference

        bench_inference.main([])
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2))
    bad = sum(v["non2xx"] for v in res.values() if isinstance(v, dict) and "non2xx" in v)
    if bad:
        print(f"\nwarning: {bad} non-2xx responses during the run", file=sys.stderr)
        return 1
    return 0


def report(res: dict, found: int) -> None:
    b1, g1, b10, g10 = res["bare_c1"], res["gateway_c1"], res["bare_c10"], res["gateway_c10"]
    print(
        f"\nbench: {res['duration_s']} s per wrk run (wrk -t1), Envoy --concurrency 1, "
        f"{res['cpus']} CPUs shared by wrk, Envoy, the processor and the mock\n"
    )
    print("| setup | c | req/s | p50 ms | p99 ms | processor CPU ms/req |")
    print("|---|---|---|---|---|---|")
    for name, key in (("bare Envoy", "bare"), ("gateway", "gateway")):
        for c in (1, 10):
            r = res[f"{key}_c{c}"]
            cpu = f"{r['cpu_ms_per_req']:.2f}" if "cpu_ms_per_req" in r else "–"
            print(f"| {name} | {c} | {r['rps']:.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {cpu} |")
    rows = [
        ("processor CPU per request, plain chat (c=10)", f"{g10['cpu_ms_per_req']:.2f} ms", "≤ 0.6 ms"),
        (
            "processor CPU per request, enrichment + regex guard, Anthropic-first chain (c=10)",
            f"{res['guarded_c10']['cpu_ms_per_req']:.2f} ms",
            "≤ 1.0 ms",
        ),
        ("added latency c=1, p50", f"{g1['p50_ms'] - b1['p50_ms']:.2f} ms", "≤ 1.0 ms"),
        ("added latency c=1, p99", f"{g1['p99_ms'] - b1['p99_ms']:.2f} ms", "≤ 3 ms"),
        ("throughput c=10, gateway / bare Envoy", f"{g10['rps'] / b10['rps']:.0%}", "≥ 25%"),
        (
            "stream: first content chunk, gateway − bare (p50), the mock writing the whole stream at once",
            f"{res['gateway_ttfc_ms'] - res['bare_ttfc_ms']:.2f} ms",
            "≤ 1.5 ms",
        ),
        (
            f"stream: first content chunk, gateway − bare (p50), events {PACED_MS} ms apart (~50 tokens/s)",
            f"{res['gateway_ttfc_paced_ms'] - res['bare_ttfc_paced_ms']:.2f} ms",
            "≤ 1.5 ms",
        ),
        (
            "PII-guarded stream: processor CPU per chunk",
            f"{res['guarded_stream_cpu_ms_per_chunk']:.3f} ms",
            "–",
        ),
        (
            f"Presidio: 4 KB prompt, {found} entities, scan p50",
            f"{res['presidio_4kb_p50_ms']:.2f} ms",
            "≤ 5 ms",
        ),
        (
            "small requests p99 while hostile guarded requests run − idle p99",
            f"{res['hol_busy_p99_ms'] - res['hol_idle_p99_ms']:.2f} ms",
            "≤ 2 ms",
        ),
        (
            "small requests p50 / p99 while guarded streams carry one 3 KB digit-dense delta each (idle p99)",
            f"{res['dense_stream']['busy_p50_ms']:.2f} / {res['dense_stream']['busy_p99_ms']:.2f} ms "
            f"({res['dense_stream']['idle_p99_ms']:.2f} ms)",
            "–",
        ),
        *(
            (
                f"small requests (wrk c=4) p99 / max while {what} (idle p99)",
                f"{big['busy_p99_ms']:.2f} / {big['busy_max_ms']:.2f} ms ({big['idle_p99_ms']:.2f} ms)",
                "–",
            )
            for big, what in (
                (res["big_requests"]["left"], "4 MB streaming prompts are sent and left at once"),
                (
                    res["big_requests"]["messages"],
                    "4 MB requests of 100,000 messages go to Anthropic, guarded",
                ),
            )
        ),
        ("plain chat c=32, 1 worker", f"{res['workers1_c32']['rps']:.0f} req/s", "–"),
        ("plain chat c=32, 2 workers", f"{res['workers2_c32']['rps']:.0f} req/s", "–"),
        ("processor start to health SERVING", f"{res['startup_s']:.2f} s", "≤ 2 s"),
        (
            "scripts/run (the mock) launched to its first answer through Envoy",
            f"{res['run_ready_s']:.2f} s"
            if res["run_ready_s"] is not None
            else "skipped: ports 8080/9901/18081 busy",
            "≤ 3 s",
        ),
    ]
    print("\n| figure | measured | goal |\n|---|---|---|")
    for row in rows:
        print(f"| {' | '.join(row)} |")


if __name__ == "__main__":
    sys.exit(main())
