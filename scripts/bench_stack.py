"""The benchmarks' shared stack and measurements: the gateway config they render, bare
Envoy beside it, wrk, the processor's CPU, streamed first chunks and small requests'
latencies under a background load. Used by scripts/bench.py and the bench_* scripts.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
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

from extproc.devstack import Envoy, Processor, free_port  # noqa: E402
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
        python: str | None = None,
    ) -> None:
        """`tweak` may change the gateway config before it is rendered; `python` runs the
        processor (default: this interpreter)."""
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
                path,
                sockets,
                tmp / f"{name}-processor.log",
                ["--metrics-port", "0"],
                log_format="json",
                python=python,
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
