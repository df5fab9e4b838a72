"""Inference routing end to end: real Envoy, the real processor and three vLLM-like mock
servers (`aigw mock-vllm`) on loopback, from a gateway config rendered like `aigw render`.

Every test shares one stack; each starts by waiting for the servers to go idle, clearing
their request logs and setting their behaviour back (`POST /_mock/behavior`). Assertions
are on counts and shares with wide margins; conditions are polled with deadlines.
"""

from __future__ import annotations

import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import yaml
from openai.types.chat import ChatCompletionMessageParam

from extproc.devstack import VllmMockProcess
from extproc.inference.metrics_scrape import ServerMetrics, parse_vllm_metrics
from extproc.render.loader import render_file
from tests.harness import Stack, free_port, wait_for

pytestmark = pytest.mark.e2e

POOL = "vllm-pool"
BASE = "base-model"
SCRAPE_S = 0.1
QUEUE_THRESHOLD = 2
# Room for every adapter the tests load, so no server's slots fill up by accident.
MAX_LORAS = 4
USER: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hello there"}]
# What every server is set back to before each test.
DEFAULTS = {"perTokenMs": 2, "prefillMs": 0, "maxRunning": 4, "outputTokens": 10, "adapterLoadMs": 150}


def gateway_config(ports: list[int]) -> dict[str, Any]:
    def model(name: str, criticality: str, *targets: tuple[str, int]) -> dict[str, Any]:
        return {
            "modelName": name,
            "poolRef": POOL,
            "criticality": criticality,
            "targetModels": [{"name": t, "weight": w} for t, w in targets],
        }

    return {
        "inferencePools": [
            {
                "name": POOL,
                "endpoints": [f"127.0.0.1:{p}" for p in ports],
                "scrapeInterval": f"{int(SCRAPE_S * 1000)}ms",
                "queueThreshold": QUEUE_THRESHOLD,
            }
        ],
        "inferenceModels": [
            model("chat", "Critical", (BASE, 1)),
            model("batch", "Sheddable", (BASE, 1)),
            model("support", "Standard", ("support-lora", 1)),
            model("mixed", "Standard", (BASE, 1), ("mixed-lora", 1)),
        ],
        "routes": [
            {
                "name": "inference",
                "matches": [{"path": {"type": "Exact", "value": "/v1/chat/completions"}}],
                "backendRefs": [{"name": POOL, "kind": "InferencePool"}],
                "timeouts": {"request": "60s"},
            }
        ],
    }


class PoolStack(Stack):
    """The harness replaces every loopback endpoint carrying gateway metadata with an
    in-process OpenAI mock; the pool's servers are the vLLM mocks started here, so their
    endpoints are kept as rendered."""

    def _rewrite(self, doc: dict[str, Any], start_mocks: bool) -> dict[str, Any]:
        kept = []
        for cluster in doc["static_resources"]["clusters"]:
            if cluster["name"] == POOL:
                for locality in cluster["load_assignment"]["endpoints"]:
                    kept += [(lb, lb.pop("metadata")) for lb in locality["lb_endpoints"]]
        doc = super()._rewrite(doc, start_mocks)
        for lb, metadata in kept:
            lb["metadata"] = metadata
        return doc


@dataclass
class Pool:
    stack: Stack
    servers: list[VllmMockProcess]

    def endpoint(self, i: int) -> str:
        return f"127.0.0.1:{self.servers[i].port}"

    def get(self, i: int, path: str) -> Any:
        return httpx.get(self.servers[i].url + path, timeout=5)

    def behave(self, i: int, **kw: Any) -> None:
        httpx.post(self.servers[i].url + "/_mock/behavior", json=kw, timeout=5).raise_for_status()

    def load(self, i: int) -> ServerMetrics:
        return parse_vllm_metrics(self.get(i, "/metrics").text)

    def models(self, i: int) -> list[str]:
        """The model of every chat request server i received."""
        return [r["model"] for r in self.get(i, "/_mock/requests").json()]

    def counts(self) -> list[int]:
        return [len(self.models(i)) for i in range(3)]

    def reset(self) -> None:
        def idle() -> bool:
            return all(m.waiting == 0 and m.running == 0 for m in map(self.load, range(3)))

        wait_for(idle, 30, "idle model servers")
        for i in range(3):
            self.behave(i, **DEFAULTS, fail=None)
            httpx.delete(self.servers[i].url + "/_mock/requests", timeout=5).raise_for_status()
        time.sleep(3 * SCRAPE_S)  # the picker's figures are fresh and in-flight counts settled


def scraped(stack: Stack, ports: list[int]) -> bool:
    """The picker has scraped every server (it sets each one's age gauge to 0 then)."""
    ages = [k for k in stack.metrics() if k.startswith("aigw_inference_scrape_age_seconds{")]
    return all(any(f'"127.0.0.1:{p}"' in k for k in ages) for p in ports)


@pytest.fixture(scope="module")
def pool(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pool]:
    tmp: Path = tmp_path_factory.mktemp("inference")
    ports = [free_port() for _ in range(3)]
    servers = [
        VllmMockProcess(p, tmp / f"vllm-{p}.log", max_running=4, per_token_ms=2, max_loras=MAX_LORAS)
        for p in ports
    ]
    config = tmp / "gateway.yaml"
    config.write_text(yaml.safe_dump(gateway_config(ports)))
    stack = PoolStack(render_file(config))
    try:
        for s in servers:
            s.start()
        stack.start()
        wait_for(lambda: scraped(stack, ports), 10, "the picker's first scrapes")
        yield Pool(stack, servers)
    finally:
        stack.stop()
        for s in servers:
            s.stop()


@pytest.fixture
def fresh(pool: Pool) -> Pool:
    pool.reset()
    return pool


def run_all(n: int, concurrency: int, call: Callable[[int], Any]) -> list[Any]:
    with ThreadPoolExecutor(concurrency) as ex:
        return list(ex.map(call, range(n)))


def chat(client: openai.OpenAI, model: str, **kw: Any) -> Any:
    return client.chat.completions.create(model=model, messages=USER, **kw)


def test_servers_receive_the_weighted_target_model(fresh: Pool):
    client = fresh.stack.client()
    answers = run_all(40, 4, lambda _: chat(client, "mixed"))
    run_all(6, 3, lambda _: chat(client, "chat"))
    received = Counter(m for i in range(3) for m in fresh.models(i))
    # 40 draws at weights 1:1: each target is drawn (a miss has odds 2**-39); the client's
    # name never reaches a server.
    assert set(received) == {BASE, "mixed-lora"}, received
    assert received["mixed-lora"] >= 5 and received[BASE] >= 5 + 6, received
    assert {a.model for a in answers} == {BASE, "mixed-lora"}


def test_a_slow_server_gets_far_less_than_its_round_robin_third(fresh: Pool):
    # 20 times slower. At 10 times, a machine busy with other work (the fast servers are
    # Python processes too) once gave the slow one 12 of 60 (it usually gets 6-8); at 20
    # times it got at most 7 in 12 runs beside a process spinning on one of the 2 cores.
    for i in range(3):
        fresh.behave(i, maxRunning=2, outputTokens=20, perTokenMs=3 if i < 2 else 60)
    client = fresh.stack.client()
    answers = run_all(60, 12, lambda _: chat(client, "chat"))
    assert len(answers) == 60 and all(a.choices[0].message.content for a in answers)
    counts = fresh.counts()
    assert sum(counts) == 60, counts  # no retries: nothing failed
    # Round robin would give it 20; the picker sees its queue and sends it only a few.
    assert counts[2] < 0.2 * 60, counts
    assert min(counts[:2]) > 2 * counts[2], counts


def test_adapter_requests_stay_where_the_adapter_is_loaded(fresh: Pool):
    client = fresh.stack.client()
    chat(client, "support")
    [holder] = [i for i in range(3) if fresh.models(i)]
    wait_for(lambda: "support-lora" in fresh.load(holder).running_adapters, 10, "the adapter loaded")
    time.sleep(3 * SCRAPE_S)  # the picker has seen it
    before = fresh.stack.metric("aigw_inference_picks_total", reason="adapter-affinity")
    run_all(15, 3, lambda _: chat(client, "support"))
    per_server = [fresh.models(i).count("support-lora") for i in range(3)]
    assert per_server[holder] == 16 and sum(per_server) == 16, per_server
    holding = [i for i in range(3) if "support-lora" in fresh.load(i).running_adapters]
    assert holding == [holder]
    assert fresh.stack.metric("aigw_inference_picks_total", reason="adapter-affinity") - before >= 15
    # The baseline: the same traffic for the base model spreads over all three servers.
    run_all(15, 3, lambda _: chat(client, "chat"))
    spread = [fresh.models(i).count(BASE) for i in range(3)]
    assert sum(spread) == 15 and min(spread) >= 2, spread


def test_base_model_requests_ignore_full_adapter_slots(fresh: Pool):
    # Fill server 0's adapter slots directly, not through the gateway.
    for k in range(MAX_LORAS):
        body = {"model": f"fill-{k}", "messages": USER}
        httpx.post(fresh.servers[0].url + "/v1/chat/completions", json=body, timeout=10).raise_for_status()
    time.sleep(3 * SCRAPE_S)
    assert len(fresh.load(0).running_adapters) == MAX_LORAS
    httpx.delete(fresh.servers[0].url + "/_mock/requests", timeout=5).raise_for_status()
    try:
        run_all(15, 3, lambda _: chat(fresh.stack.client(), "chat"))
        assert min(fresh.counts()) >= 2, fresh.counts()
    finally:
        # A fresh server 0, without the adapters, for the tests after this one.
        fresh.servers[0].stop()
        fresh.servers[0].start()


def hold(client: openai.OpenAI, started: list[float]) -> int:
    """A long Critical stream; returns the number of chunks it got."""
    stream = chat(client, "chat", stream=True, max_tokens=40)
    started.append(time.monotonic())
    return sum(1 for _ in stream)


def test_a_saturated_pool_sheds_sheddable_requests_only(fresh: Pool):
    for i in range(3):
        fresh.behave(i, maxRunning=1, perTokenMs=100)  # 4 s per 40-token stream
    client = fresh.stack.client(timeout=30)
    started: list[float] = []
    with ThreadPoolExecutor(16) as ex:
        holders = [ex.submit(hold, client, started) for _ in range(15)]
        wait_for(
            lambda: all(fresh.load(i).waiting >= QUEUE_THRESHOLD for i in range(3)), 10, "a saturated pool"
        )
        time.sleep(3 * SCRAPE_S)  # the picker's figures show it too
        shed_before = fresh.stack.metric("aigw_inference_shed_total", model="batch")
        raw = [fresh.stack.post({"model": "batch", "messages": USER}) for _ in range(3)]
        with pytest.raises(openai.RateLimitError) as refused:
            chat(client, "batch")
        critical = ex.submit(chat, client, "chat")
        time.sleep(0.3)  # it was picked while the pool was saturated
        assert not critical.done()
        for i in range(3):
            fresh.behave(i, perTokenMs=1)  # the queues drain
        assert critical.result(timeout=30).choices[0].message.content
        assert all(h.result(timeout=30) > 0 for h in holders)
    for r in raw:
        assert r.status_code == 429, r.text
        assert r.headers["retry-after"] == "1"
        error = r.json()["error"]
        assert error["code"] == "pool_saturated" and error["type"] == "rate_limit_error"
        assert POOL in error["message"]
    assert refused.value.code == "pool_saturated" and "retry-after" in refused.value.response.headers
    assert sum(fresh.counts()) == 16, "shed requests never reached a server"
    shed = fresh.stack.metric("aigw_inference_shed_total", model="batch", criticality="Sheddable")
    assert shed - shed_before == 4
    assert fresh.stack.metric("aigw_inference_shed_total", model="chat") == 0


def test_picks_are_counted_per_endpoint(fresh: Pool):
    picks = {
        fresh.endpoint(i): fresh.stack.metric("aigw_inference_picks_total", endpoint=fresh.endpoint(i))
        for i in range(3)
    }
    assert all(v > 0 for v in picks.values()), picks
    assert fresh.stack.metric("aigw_inference_picks_total", pool=POOL, reason="least-loaded") > 0
    ages = [fresh.stack.metric("aigw_inference_scrape_age_seconds", endpoint=e) for e in picks]
    assert all(a < 1 for a in ages), ages


@dataclass
class Outcome:
    sent: float
    stream: bool
    ok: bool = False
    headers_at: float | None = None  # a stream's response headers arrived
    error: str = ""


def send(client: openai.OpenAI, stream: bool) -> Outcome:
    out = Outcome(time.monotonic(), stream)
    try:
        if stream:
            chunks = chat(client, "chat", stream=True, max_tokens=30)
            out.headers_at = time.monotonic()
            out.ok = any(c.choices and c.choices[0].finish_reason for c in chunks)
        else:
            out.ok = bool(chat(client, "chat").choices[0].message.content)
    except Exception as exc:  # recorded, not raised: the worker threads keep going
        out.error = repr(exc)
    return out


def test_killing_a_server_mid_run_loses_no_retryable_request(fresh: Pool):
    for i in range(3):
        fresh.behave(i, perTokenMs=5)  # 50 ms answers, 150 ms streams
    client = fresh.stack.client()
    dead = fresh.endpoint(2)
    outcomes: list[Outcome] = []
    stop = threading.Event()

    def worker(k: int) -> None:
        n = 0
        while not stop.is_set():
            outcomes.append(send(client, stream=(k + n) % 3 == 0))
            n += 1

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    try:
        time.sleep(1.5)
        fresh.servers[2].stop(signal.SIGKILL)
        killed_at = time.monotonic()  # surely dead from here on (stop waits for the process)
        time.sleep(0.5)  # its scrapes have failed by now
        picks_after = fresh.stack.metric("aigw_inference_picks_total", endpoint=dead)
        time.sleep(1.5)
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    try:
        # Streams whose answer had begun on the killed server cannot be retried: excused.
        # (A client thread notes the headers' arrival late on a loaded machine: 0.3 s slack.)
        excused = [
            o for o in outcomes if o.stream and not o.ok and o.headers_at and o.headers_at < killed_at + 0.3
        ]
        failed = [o for o in outcomes if not o.ok and all(o is not e for e in excused)]
        assert not failed, [o.error for o in failed][:5]
        # Envoy's default circuit breaker would let only 3 retries be in flight (the
        # rendered retry budget lifts it; test_failover.py's burst test proves it).
        assert fresh.stack.envoy_stat(f"cluster.{POOL}.upstream_rq_retry_overflow") == 0
        assert len(excused) <= 6
        after = [o for o in outcomes if o.sent > killed_at]
        assert len(after) > 30 and all(o.ok for o in after)
        assert fresh.stack.metric("aigw_inference_scrape_failures_total", endpoint=dead) > 0
        # The picker no longer names the dead server first.
        assert fresh.stack.metric("aigw_inference_picks_total", endpoint=dead) == picks_after
    finally:
        fresh.servers[2].start()
