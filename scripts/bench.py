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
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import httpx
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from extproc.devstack import Envoy, MockProcess, Processor, free_port  # noqa: E402
from extproc.render.envoy import render  # noqa: E402
from extproc.render.model import GatewaySpec  # noqa: E402

_T = TypeVar("_T")

BODY = {
    "model": "gpt-4o-mini",
    "messages": [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "Write one sentence about Envoy proxies."},
    ],
}
PLAIN = "/v1/chat/completions"
GUARDED = "/guarded/v1/chat/completions"
STREAM_GUARDED = "/pii-out/v1/chat/completions"
PII_IN = "/pii-in/v1/chat/completions"
BUILTINS = ["CREDIT_CARD", "EMAIL", "PHONE_NUMBER", "SSN"]
# A model streaming ~50 tokens a second: the mock's writes this many ms apart.
PACED_MS = 20


def gateway_config(mock_port: int, port: int, admin: int, health: int, sock: Path, workers: int) -> dict:
    def ai(provider: str, model: str) -> dict:
        return {
            "provider": provider,
            "model": model,
            "auth": {"secretRef": {"inline": "sk-bench"}},
            "endpoint": {"host": "127.0.0.1", "port": mock_port},
        }

    def route(name: str, prefix: str, backend: str, policies: dict | None = None) -> dict:
        path = {"type": "Exact", "value": PLAIN} if not prefix else {"value": prefix}
        r = {"name": name, "matches": [{"path": path}], "backendRefs": [{"name": backend}]}
        return {**r, "policies": policies} if policies else r

    return {
        "gateway": {
            "listen": {"port": port},
            "adminPort": admin,
            "processor": {"socket": str(sock), "healthPort": health, "workers": workers},
        },
        "backends": [
            {"name": "plain", "ai": ai("openai", "gpt-4o-mini")},
            {
                "name": "chain",
                "ai": {
                    "priorityGroups": [
                        {"providers": [{"name": "claude", **ai("anthropic", "claude-3-5-haiku-latest")}]},
                        {"providers": [{"name": "gpt", **ai("openai", "gpt-4o-mini")}]},
                    ]
                },
            },
        ],
        "routes": [
            route("plain", "", "plain"),
            route(
                "guarded",
                "/guarded",
                "chain",
                {
                    "promptEnrichment": {"prepend": [{"role": "SYSTEM", "content": "Answer briefly."}]},
                    "promptGuard": {
                        "request": {
                            "regex": {
                                "action": "MASK",
                                "matches": [{"pattern": r"sk-[A-Za-z0-9]{20,}", "name": "API_KEY"}],
                            }
                        },
                        "response": {
                            "regex": {
                                "action": "MASK",
                                "matches": [{"pattern": r"ORD-\d{6}", "name": "ORDER"}],
                            }
                        },
                    },
                },
            ),
            route(
                "pii-out",
                "/pii-out",
                "plain",
                {"promptGuard": {"response": {"regex": {"action": "MASK", "builtins": BUILTINS}}}},
            ),
            route(
                "pii-in",
                "/pii-in",
                "plain",
                {"promptGuard": {"request": {"regex": {"action": "MASK", "builtins": BUILTINS}}}},
            ),
        ],
    }


def bare(doc: dict) -> dict:
    """The same bootstrap without the gateway: no ext_proc filter anywhere."""
    doc = json.loads(json.dumps(doc))
    static = doc["static_resources"]
    hcm = static["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    hcm["http_filters"] = [f for f in hcm["http_filters"] if "ext_proc" not in f["name"]]
    for vhost in hcm["route_config"]["virtual_hosts"]:
        for route in vhost["routes"]:
            route.pop("typed_per_filter_config", None)
    for cluster in static["clusters"]:
        for opt in (cluster.get("typed_extension_protocol_options") or {}).values():
            opt.pop("http_filters", None)
    return doc


# ---- measuring ---------------------------------------------------------------------------


def wrk(url: str, concurrency: int, duration: int, script: Path) -> dict:
    out = subprocess.run(
        ["wrk", "-t1", f"-c{concurrency}", f"-d{duration}s", "--latency", "-s", str(script), url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout

    def found(pattern: str) -> re.Match[str]:
        m = re.search(pattern, out, re.M)
        if m is None:
            raise SystemExit(f"wrk's output has no {pattern!r}:\n{out}")
        return m

    def pct(p: str) -> float:
        m = found(rf"^\s+{p}%\s+([\d.]+)(us|ms|s)\s*$")
        return _ms(float(m.group(1)), m.group(2))

    # "Latency  avg  stdev  max  +/-stdev": the slowest answer of the run.
    worst = found(r"^\s+Latency\s+\S+\s+\S+\s+([\d.]+)(us|ms|s)\s")
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "rps": float(found(r"Requests/sec:\s+([\d.]+)").group(1)),
        "requests": int(found(r"(\d+) requests in").group(1)),
        "p50_ms": pct("50"),
        "p99_ms": pct("99"),
        "max_ms": _ms(float(worst.group(1)), worst.group(2)),
        "non2xx": int(errors.group(1)) if errors else 0,
    }


def _ms(value: float, unit: str) -> float:
    return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value


def cpu_seconds(pid: int) -> float:
    """CPU time of a process and its children (the workers of `serve --workers`)."""
    pids = [pid] + [
        int(p)
        for p in subprocess.run(
            ["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True
        ).stdout.split()
    ]
    total = 0.0
    for p in pids:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def post_script(tmp: Path, body: dict) -> Path:
    script = tmp / f"post-{abs(hash(json.dumps(body)))}.lua"
    script.write_text(
        'wrk.method = "POST"\n'
        f"wrk.body = {json.dumps(json.dumps(body))}\n"
        'wrk.headers["content-type"] = "application/json"\n'
        'wrk.headers["authorization"] = "Bearer bench"\n'
    )
    return script


class Gateway:
    """Envoy (+ the processor unless bare) from the bench gateway config."""

    def __init__(
        self,
        tmp: Path,
        mock_port: int,
        name: str,
        *,
        gateway: bool = True,
        workers: int = 1,
        tweak: Callable[[dict], None] | None = None,
    ) -> None:
        """`tweak` may change the gateway config before it is rendered."""
        self.port, self.admin, health = free_port(), free_port(), free_port()
        sock = tmp / f"{name}.sock"
        config = gateway_config(mock_port, self.port, self.admin, health, sock, workers)
        if tweak is not None:
            tweak(config)
        doc = render(GatewaySpec.model_validate(config))
        if not gateway:
            doc = bare(doc)
        path = tmp / f"{name}.yaml"
        path.write_text(yaml.safe_dump(doc))
        sockets = [
            Path(lb["endpoint"]["address"]["pipe"]["path"])
            for lb in doc["static_resources"]["clusters"][0]["load_assignment"]["endpoints"][0][
                "lb_endpoints"
            ]
        ]
        self.processor = None
        self.startup_s = 0.0
        if gateway:
            started = time.monotonic()
            self.processor = Processor(
                path, sockets, tmp / f"{name}-processor.log", ["--metrics-port", "0"], log_format="json"
            ).start()
            self.startup_s = time.monotonic() - started
        self.envoy = Envoy(path, tmp / f"{name}-envoy.log", self.admin).start()
        self.url = f"http://127.0.0.1:{self.port}"

    def cpu(self) -> float:
        pid = self.processor.pid if self.processor else None
        return cpu_seconds(pid) if pid is not None else 0.0

    def stop(self) -> None:
        self.envoy.stop()
        if self.processor:
            self.processor.stop()


def load(gw: Gateway, path: str, concurrency: int, duration: int, script: Path) -> dict:
    cpu0 = gw.cpu()
    r = wrk(gw.url + path, concurrency, duration, script)
    if gw.processor:
        r["cpu_ms_per_req"] = (gw.cpu() - cpu0) * 1000 / max(1, r["requests"])
    return r


def first_chunk_ms(url: str, n: int, content: str) -> list[float]:
    """Time from sending a streaming request to the first chunk with text in it, n times."""
    body = {**BODY, "stream": True, "messages": [{"role": "user", "content": content}]}
    times = []
    with httpx.Client(timeout=30, headers={"authorization": "Bearer bench"}) as client:
        for _ in range(n):
            t0 = time.perf_counter()
            with client.stream("POST", url, json=body) as r:
                for line in r.iter_lines():
                    if line.startswith("data: ") and '"content":"' in line and '"content":""' not in line:
                        times.append((time.perf_counter() - t0) * 1000)
                        break
    return times


@contextmanager
def mock_paced(mock_port: int, spacing_ms: int) -> Iterator[None]:
    """The mock waits `spacing_ms` between its stream writes, as a model generating tokens
    does (its server-wide default: the gateway does not forward `x-mock-*` headers).
    Otherwise it writes a whole stream at once, and Envoy may hand that to the processor
    as one chunk, so the gateway is timed reading all of it before the first byte."""

    def behave(doc: dict) -> None:
        httpx.post(f"http://127.0.0.1:{mock_port}/_mock/behavior", json=doc, timeout=5).raise_for_status()

    behave({"chunkDelayMs": spacing_ms})
    try:
        yield
    finally:
        behave({})


def stream_chunks(url: str, n: int, content: str) -> int:
    body = {**BODY, "stream": True, "messages": [{"role": "user", "content": content}]}
    chunks = 0
    with httpx.Client(timeout=30, headers={"authorization": "Bearer bench"}) as client:
        for _ in range(n):
            with client.stream("POST", url, json=body) as r:
                chunks += sum(1 for line in r.iter_lines() if line.startswith("data: "))
    return chunks


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p / 100))]


def small_latencies(url: str, seconds: float, failures: list[str]) -> list[float]:
    out = []
    deadline = time.monotonic() + seconds
    with httpx.Client(timeout=30, headers={"authorization": "Bearer bench"}) as client:
        while time.monotonic() < deadline:
            t0 = time.perf_counter()
            try:
                r = client.post(url, json=BODY)
            except httpx.HTTPError as exc:
                failures.append(type(exc).__name__)
                continue
            out.append((time.perf_counter() - t0) * 1000)
            if r.status_code != 200:
                failures.append(f"{r.status_code} {r.text[:120]}")
    return out


def under_load(send: Callable[[httpx.Client], None], measure: Callable[[], _T]) -> _T:
    """`measure()` while another thread calls `send` over and over with its client."""
    stop = threading.Event()

    def load() -> None:
        with httpx.Client(timeout=60, headers={"authorization": "Bearer bench"}) as client:
            while not stop.is_set():
                send(client)

    thread = threading.Thread(target=load, daemon=True)
    thread.start()
    try:
        return measure()
    finally:
        stop.set()
        thread.join(60)


def latencies_under_load(
    url: str, seconds: float, failures: list[str], send: Callable[[httpx.Client], None]
) -> list[float]:
    """`small_latencies` while another thread calls `send` over and over with its client."""
    return under_load(send, lambda: small_latencies(url, seconds, failures))


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
