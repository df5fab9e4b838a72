"""The inference pool's endpoint picker: reading vLLM /metrics, choosing endpoints, shedding,
and scraping real local servers."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from prometheus_client import REGISTRY

from extproc.inference import (
    REASON_AFFINITY,
    REASON_LEAST_LOADED,
    REASON_ROUND_ROBIN,
    Criticality,
    EndpointPicker,
    PoolSpec,
    ScrapeError,
    ServerMetrics,
    Shed,
    parse_vllm_metrics,
)

A, B, C = "10.0.0.1:8000", "10.0.0.2:8000", "10.0.0.3:8000"

# What vLLM's V0 engine serves (abridged): the old KV name, two models' label sets,
# histograms the parser must skip, and two LoRA info samples of which the later counts.
VLLM_V0 = (
    """\
# HELP vllm:cache_config_info Information of the LLMEngine CacheConfig
# TYPE vllm:cache_config_info gauge
vllm:cache_config_info{block_size="16",cache_dtype="auto",gpu_memory_utilization="0.9"} 1.0
# HELP vllm:num_requests_running Number of requests currently running on GPU.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{model_name="meta-llama/Llama-3.1-8B-Instruct"} 7.0
vllm:num_requests_running{model_name="sql-lora"} 2.0
# HELP vllm:num_requests_waiting Number of requests waiting to be processed.
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{model_name="meta-llama/Llama-3.1-8B-Instruct"} 3.0
vllm:num_requests_waiting{model_name="sql-lora"} 1.0
# HELP vllm:num_requests_waiting_by_reason Requests waiting, by reason.
# TYPE vllm:num_requests_waiting_by_reason gauge
vllm:num_requests_waiting_by_reason{model_name="meta-llama/Llama-3.1-8B-Instruct",reason="capacity"} 99.0
# HELP vllm:gpu_cache_usage_perc GPU KV-cache usage. 1 means 100 percent usage.
# TYPE vllm:gpu_cache_usage_perc gauge
vllm:gpu_cache_usage_perc{model_name="meta-llama/Llama-3.1-8B-Instruct"} 0.42
# HELP vllm:lora_requests_info Running stats on lora requests.
# TYPE vllm:lora_requests_info gauge
vllm:lora_requests_info{max_lora="4",running_lora_adapters="old-adapter",waiting_lora_adapters=""} 1.7e+09
"""
    + (
        'vllm:lora_requests_info{max_lora="4",running_lora_adapters="sql-lora, chat-lora",'
        'waiting_lora_adapters="tweet-lora"} 1.7000001e+09\n'
    )
    + """\
# HELP vllm:time_to_first_token_seconds Histogram of time to first token in seconds.
# TYPE vllm:time_to_first_token_seconds histogram
vllm:time_to_first_token_seconds_bucket{le="0.001",model_name="meta-llama/Llama-3.1-8B-Instruct"} 0.0
vllm:time_to_first_token_seconds_bucket{le="+Inf",model_name="meta-llama/Llama-3.1-8B-Instruct"} 12.0
vllm:time_to_first_token_seconds_count{model_name="meta-llama/Llama-3.1-8B-Instruct"} 12.0
vllm:time_to_first_token_seconds_sum{model_name="meta-llama/Llama-3.1-8B-Instruct"} 1.5
# HELP vllm:prompt_tokens_total Number of prefill tokens processed.
# TYPE vllm:prompt_tokens_total counter
vllm:prompt_tokens_total{model_name="meta-llama/Llama-3.1-8B-Instruct"} 4711.0
"""
)

# The V1 engine: the new KV name, an engine label, no LoRA info.
VLLM_V1 = """\
# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="Qwen/Qwen3-8B"} 4.0
vllm:num_requests_running{engine="1",model_name="Qwen/Qwen3-8B"} 5.0
# HELP vllm:num_requests_waiting Number of requests waiting to be processed.
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{engine="0",model_name="Qwen/Qwen3-8B"} 0.0
vllm:num_requests_waiting{engine="1",model_name="Qwen/Qwen3-8B"} 2.0
# HELP vllm:kv_cache_usage_perc KV-cache usage. 1 means 100 percent usage.
# TYPE vllm:kv_cache_usage_perc gauge
vllm:kv_cache_usage_perc{engine="0",model_name="Qwen/Qwen3-8B"} 0.25
vllm:kv_cache_usage_perc{engine="1",model_name="Qwen/Qwen3-8B"} 0.5
"""


M = frozenset({"m"})  # the model name page() serves


def page(waiting: float = 0, kv: float = 0.0, running: float = 0, lora: str = "") -> str:
    text = (
        "# TYPE vllm:num_requests_waiting gauge\n"
        f'vllm:num_requests_waiting{{model_name="m"}} {waiting}\n'
        "# TYPE vllm:num_requests_running gauge\n"
        f'vllm:num_requests_running{{model_name="m"}} {running}\n'
        "# TYPE vllm:kv_cache_usage_perc gauge\n"
        f'vllm:kv_cache_usage_perc{{model_name="m"}} {kv}\n'
    )
    return text + lora


# --- parsing -------------------------------------------------------------------------


def test_parse_v0_page_sums_label_sets_and_reads_the_latest_lora_info():
    assert parse_vllm_metrics(VLLM_V0) == ServerMetrics(
        waiting=4,
        running=9,
        kv_usage=0.42,
        running_adapters=frozenset({"sql-lora", "chat-lora"}),
        waiting_adapters=frozenset({"tweet-lora"}),
        max_lora=4,
        base_models=frozenset({"meta-llama/Llama-3.1-8B-Instruct", "sql-lora"}),
    )


def test_parse_v1_page_uses_the_new_kv_name_and_the_most_used_engine():
    assert parse_vllm_metrics(VLLM_V1) == ServerMetrics(
        waiting=2, running=9, kv_usage=0.5, max_lora=None, base_models=frozenset({"Qwen/Qwen3-8B"})
    )


def test_parse_prefers_the_new_kv_name_when_both_are_served():
    text = (
        page(kv=0.3)
        + '# TYPE vllm:gpu_cache_usage_perc gauge\nvllm:gpu_cache_usage_perc{model_name="m"} 0.9\n'
    )
    assert parse_vllm_metrics(text).kv_usage == 0.3


def test_parse_without_kv_or_running_reads_zero():
    text = "# TYPE vllm:num_requests_waiting gauge\nvllm:num_requests_waiting 6\n"
    assert parse_vllm_metrics(text) == ServerMetrics(waiting=6, running=0, kv_usage=0.0)


def test_parse_lora_info_without_a_readable_max_lora():
    lora = 'vllm:lora_requests_info{running_lora_adapters="a,,b ",waiting_lora_adapters="",max_lora="x"} 5\n'
    parsed = parse_vllm_metrics(page(lora=lora))
    assert parsed.running_adapters == frozenset({"a", "b"})
    assert parsed.waiting_adapters == frozenset()
    assert parsed.max_lora is None
    assert not parsed.has_free_lora_slot()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "# TYPE vllm:num_requests_running gauge\nvllm:num_requests_running 1\n",
            "no vllm:num_requests_waiting",
        ),
        ('vllm:num_requests_waiting{model_name="m" 1\n', "unreadable metrics"),
        ("vllm:num_requests_waiting NaN\n", "not a finite number"),
        ("<html>not metrics</html>\n", "no vllm:num_requests_waiting"),
    ],
)
def test_parse_rejects_pages_it_cannot_trust(text, message):
    with pytest.raises(ScrapeError, match=message):
        parse_vllm_metrics(text)


# --- picking -------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make(*endpoints: str, clock: Clock | None = None, **spec) -> EndpointPicker:
    pool = PoolSpec(name=spec.pop("name", "pool"), endpoints=endpoints or (A, B, C), **spec)
    return EndpointPicker(pool, clock=clock or Clock())


def metrics(
    waiting: int = 0, kv: float = 0.0, running: frozenset[str] = frozenset(), **extra
) -> ServerMetrics:
    return ServerMetrics(waiting=waiting, running=0, kv_usage=kv, running_adapters=running, **extra)


def test_pool_spec_defaults_and_validation():
    pool = PoolSpec(name="p", endpoints=(A,))
    assert (pool.scrape_interval_s, pool.queue_threshold, pool.kv_threshold) == (0.2, 5, 0.8)
    assert pool.stale_after_s == pytest.approx(0.6)  # three intervals
    assert PoolSpec(name="p", endpoints=(A,), scrape_interval_s=1, stale_after_s=10).stale_after_s == 10
    for bad in (
        {"endpoints": ()},
        {"endpoints": (A, A)},
        {"endpoints": (A,), "scrape_interval_s": 0.01},
        {"endpoints": (A,), "metrics_path": "metrics"},
        {"endpoints": (A,), "kv_threshold": 1.5},
    ):
        with pytest.raises(ValueError):
            PoolSpec(name="p", **bad)


def test_orders_by_queue_then_kv_with_every_endpoint_as_fallback():
    picker = make()
    picker.record_success(A, metrics(waiting=2, kv=0.1))
    picker.record_success(B, metrics(waiting=1, kv=0.5))
    picker.record_success(C, metrics(waiting=1, kv=0.2))
    pick = picker.pick(None, Criticality.STANDARD)
    assert pick.endpoints == [C, B, A]
    assert pick.reason == REASON_LEAST_LOADED
    assert pick.header_value() == f"{C},{B},{A}"


def test_saturated_endpoints_come_after_every_unsaturated_one():
    picker = make(kv_threshold=0.8, queue_threshold=5)
    picker.record_success(A, metrics(waiting=0, kv=0.85))  # KV full
    picker.record_success(B, metrics(waiting=5, kv=0.0))  # queue at the threshold
    picker.record_success(C, metrics(waiting=4, kv=0.79))
    assert picker.pick(None, Criticality.STANDARD).endpoints == [C, A, B]
    assert [s.saturated for s in picker.snapshot()] == [True, True, False]


def test_the_servers_own_model_needs_no_adapter_slot():
    # A server with every adapter slot taken still serves its base model as well as any.
    picker = make(A, B)
    picker.record_success(A, metrics(waiting=0, running=frozenset({"x", "y"}), max_lora=2, base_models=M))
    picker.record_success(B, metrics(waiting=1, max_lora=2, base_models=M))
    assert picker.pick("m", Criticality.STANDARD).endpoints == [A, B]
    assert picker.pick("other-lora", Criticality.STANDARD).endpoints == [B, A]


def test_adapter_holders_first_then_free_slots_then_the_rest():
    picker = make(A, B, C, "10.0.0.4:8000")
    picker.record_success(
        A, metrics(waiting=0, running=frozenset({"x", "y"}), max_lora=2)
    )  # full, no adapter
    picker.record_success(B, metrics(waiting=3, running=frozenset({"sql"}), max_lora=2))  # holds it
    picker.record_success(C, metrics(waiting=1, running=frozenset({"x"}), max_lora=2))  # free slot
    picker.record_success(
        "10.0.0.4:8000", metrics(waiting=2, waiting_adapters=frozenset({"sql"}), max_lora=2)
    )
    pick = picker.pick("sql", Criticality.STANDARD)
    assert pick.endpoints == ["10.0.0.4:8000", B, C, A]
    assert pick.reason == REASON_AFFINITY
    # Without an adapter only the load counts.
    assert picker.pick(None, Criticality.STANDARD).endpoints == [A, C, "10.0.0.4:8000", B]


def test_affinity_never_prefers_a_saturated_holder():
    picker = make(A, B)
    picker.record_success(A, metrics(waiting=9, running=frozenset({"sql"}), max_lora=1))
    picker.record_success(B, metrics(waiting=0, max_lora=1))
    pick = picker.pick("sql", Criticality.STANDARD)
    assert pick.endpoints == [B, A]
    assert pick.reason == REASON_LEAST_LOADED


def test_ties_rotate_over_every_endpoint():
    picker = make()
    for ep in (A, B, C):
        picker.record_success(ep, metrics(waiting=1, kv=0.3))
    primaries = [picker.pick(None, Criticality.STANDARD).primary for _ in range(6)]
    assert sorted(primaries[:3]) == [A, B, C]
    assert primaries[3:] == primaries[:3]


def test_stale_and_failed_endpoints_go_last_and_are_never_primary():
    clock = Clock()
    picker = make(clock=clock, scrape_interval_s=1.0)  # stale after 3 s
    picker.record_success(A, metrics(waiting=0))
    clock.now += 2.5
    picker.record_success(B, metrics(waiting=4))
    picker.record_success(C, metrics(waiting=3))
    assert picker.pick(None, Criticality.STANDARD).endpoints == [A, C, B]
    clock.now += 1.0  # A's last scrape is 3.5 s old
    for _ in range(4):
        assert picker.pick(None, Criticality.STANDARD).endpoints == [C, B, A]
    picker.record_failure(C, "timed out after 0.5s")  # C's success is 1 s old but the last scrape failed
    assert picker.pick(None, Criticality.STANDARD).endpoints[0] == B
    states = {s.endpoint: s for s in picker.snapshot()}
    assert (states[A].fresh, states[B].fresh, states[C].fresh) == (False, True, False)
    assert states[C].last_error == "timed out after 0.5s"
    assert states[A].age_s == 3.5


def test_no_fresh_metrics_round_robins_and_never_sheds():
    picker = make(name="rr-pool")
    before = REGISTRY.get_sample_value("aigw_inference_round_robin_total", {"pool": "rr-pool"}) or 0.0
    picks = [picker.pick(None, Criticality.SHEDDABLE) for _ in range(3)]
    assert {p.reason for p in picks} == {REASON_ROUND_ROBIN}
    assert sorted(p.primary for p in picks) == [A, B, C]
    for p in picks:  # each a rotation of the pool's order
        i = (A, B, C).index(p.primary)
        assert p.endpoints == [*(A, B, C)[i:], *(A, B, C)[:i]]
    assert REGISTRY.get_sample_value("aigw_inference_round_robin_total", {"pool": "rr-pool"}) == before + 3


def test_only_sheddable_requests_are_shed_when_everything_is_saturated():
    picker = make(A, B)
    picker.record_success(A, metrics(waiting=7, kv=0.2))
    picker.record_success(B, metrics(waiting=6, kv=0.9))
    with pytest.raises(Shed) as shed:
        picker.pick(None, Criticality.SHEDDABLE)
    assert shed.value.retry_after_s == 1
    assert shed.value.pool == "pool"
    for criticality in (Criticality.CRITICAL, Criticality.STANDARD):
        assert picker.pick(None, criticality).endpoints == [B, A]  # least bad first


def test_sheddable_is_admitted_while_one_endpoint_has_room():
    picker = make(A, B)
    picker.record_success(A, metrics(waiting=7))
    picker.record_success(B, metrics(waiting=4))
    assert picker.pick(None, Criticality.SHEDDABLE).endpoints == [B, A]


def test_stale_endpoints_do_not_prevent_shedding():
    clock = Clock()
    picker = make(A, B, clock=clock)
    picker.record_success(A, metrics(waiting=0))
    clock.now += 10
    picker.record_success(B, metrics(waiting=9))
    with pytest.raises(Shed):
        picker.pick(None, Criticality.SHEDDABLE)
    assert picker.pick(None, Criticality.STANDARD).endpoints == [B, A]


def test_in_flight_requests_spread_a_burst_between_scrapes():
    picker = make()
    for ep in (A, B, C):
        picker.record_success(ep, metrics(waiting=0))
    chosen = []
    for _ in range(6):
        primary = picker.pick(None, Criticality.STANDARD).primary
        picker.started(primary)
        chosen.append(primary)
    assert sorted(chosen) == [A, A, B, B, C, C]
    # Saturation is the servers' own numbers: a burst does not shed by itself.
    assert picker.pick(None, Criticality.SHEDDABLE).reason == REASON_LEAST_LOADED


def test_a_scrape_absorbs_the_requests_it_already_counts():
    picker = make(A, B)
    picker.record_success(A, metrics(waiting=0))
    picker.record_success(B, metrics(waiting=1))
    picker.started(A)
    picker.started(A)
    assert picker.pick(None, Criticality.STANDARD).primary == B  # A: 0 waiting + 2 sent
    # A scrape sent after the first request and before the second sees only the first.
    state = {s.endpoint: s for s in picker.snapshot()}[A]
    assert (state.in_flight, state.since_scrape) == (2, 2)
    picker.record_success(A, metrics(waiting=0), started_mark=1)
    state = {s.endpoint: s for s in picker.snapshot()}[A]
    assert (state.in_flight, state.since_scrape) == (2, 1)
    picker.record_success(A, metrics(waiting=0))  # a scrape that saw them all
    state = {s.endpoint: s for s in picker.snapshot()}[A]
    assert (state.in_flight, state.since_scrape) == (2, 0)
    assert picker.pick(None, Criticality.STANDARD).primary == A


def test_finished_requests_count_against_the_oldest_first():
    picker = make(A)
    picker.started(A)
    picker.record_success(A, metrics(waiting=1))  # the first request is in these numbers
    picker.started(A)
    picker.finished(A)
    state = picker.snapshot()[0]
    assert (state.in_flight, state.since_scrape) == (1, 1)
    picker.finished(A)
    picker.finished(A)  # more finishes than starts, and unknown endpoints, are ignored
    picker.started("10.9.9.9:1")
    state = picker.snapshot()[0]
    assert (state.in_flight, state.since_scrape) == (0, 0)


def test_picks_and_scrape_ages_are_counted():
    clock = Clock()
    picker = make(A, B, clock=clock, name="metered")
    picker.record_success(A, metrics(waiting=0))
    clock.now += 0.25
    labels = {"pool": "metered", "endpoint": A, "reason": REASON_LEAST_LOADED}
    before = REGISTRY.get_sample_value("aigw_inference_picks_total", labels) or 0.0
    picker.pick(None, Criticality.STANDARD)
    assert REGISTRY.get_sample_value("aigw_inference_picks_total", labels) == before + 1
    age = REGISTRY.get_sample_value("aigw_inference_scrape_age_seconds", {"pool": "metered", "endpoint": A})
    assert age == 0.25
    never = REGISTRY.get_sample_value("aigw_inference_scrape_age_seconds", {"pool": "metered", "endpoint": B})
    assert never == 0.25  # since the picker was made


# --- scraping real servers -----------------------------------------------------------


class ModelServer:
    """A local stand-in for a vLLM server's /metrics."""

    def __init__(self, text: str = "", status: int = 200, hang: bool = False) -> None:
        self.text, self.status, self.hang = text, status, hang
        self.requests = 0
        self.accept: list[str] = []
        self.release = asyncio.Event()

    async def handle(self, request: web.Request) -> web.Response:
        self.requests += 1
        self.accept.append(request.headers.get("accept", ""))
        if self.hang:
            await asyncio.wait_for(self.release.wait(), 10)
        return web.Response(status=self.status, text=self.text, content_type="text/plain")


@pytest.fixture
async def servers() -> AsyncIterator[list[tuple[ModelServer, str]]]:
    made: list[tuple[ModelServer, TestServer]] = []
    models = [
        ModelServer(page(waiting=3, kv=0.1)),
        ModelServer(page(waiting=0, kv=0.6)),
        ModelServer("boom", status=500),
        ModelServer(page(), hang=True),
    ]
    for model in models:
        app = web.Application()
        app.router.add_get("/vllm/metrics", model.handle)
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        made.append((model, server))
    yield [(model, f"127.0.0.1:{server.port}") for model, server in made]
    for model, server in made:
        model.release.set()
        await server.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_scrape_round_against_local_servers(servers):
    (busy, busy_ep), (idle, idle_ep), (_, broken_ep), (hung, hung_ep) = servers
    refused_ep = f"127.0.0.1:{free_port()}"
    pool = PoolSpec(
        name="live",
        endpoints=(busy_ep, idle_ep, broken_ep, hung_ep, refused_ep),
        metrics_path="/vllm/metrics",
        scrape_timeout_s=0.2,
    )
    picker = EndpointPicker(pool)
    failures = {"pool": "live", "endpoint": hung_ep}
    before = REGISTRY.get_sample_value("aigw_inference_scrape_failures_total", failures) or 0.0
    try:
        await picker.scrape_all()
        states = {s.endpoint: s for s in picker.snapshot()}
        assert states[busy_ep].metrics == ServerMetrics(waiting=3, running=0, kv_usage=0.1, base_models=M)
        assert states[idle_ep].metrics == ServerMetrics(waiting=0, running=0, kv_usage=0.6, base_models=M)
        assert [states[ep].fresh for ep in pool.endpoints] == [True, True, False, False, False]
        assert states[broken_ep].last_error == "HTTP 500"
        assert states[hung_ep].last_error == "timed out after 0.2s"
        assert states[refused_ep].last_error is not None
        assert busy.accept == ["text/plain; version=0.0.4"]
        pick = picker.pick(None, Criticality.STANDARD)
        assert pick.endpoints[:2] == [idle_ep, busy_ep]
        assert set(pick.endpoints[2:]) == {broken_ep, hung_ep, refused_ep}
        assert REGISTRY.get_sample_value("aigw_inference_scrape_failures_total", failures) == before + 1
        assert hung.requests == 1 and idle.requests == 1
    finally:
        await picker.stop()


async def test_background_scraping_follows_the_servers(servers):
    (busy, busy_ep), (idle, idle_ep), _, _ = servers
    pool = PoolSpec(
        name="loop", endpoints=(busy_ep, idle_ep), metrics_path="/vllm/metrics", scrape_interval_s=0.05
    )
    picker = EndpointPicker(pool)
    await picker.start()
    try:
        await _until(lambda: all(s.fresh for s in picker.snapshot()))
        assert picker.pick(None, Criticality.STANDARD).primary == idle_ep
        idle.text = page(waiting=9)  # the idle server fills up; the next scrapes see it
        await _until(
            lambda: (
                picker.snapshot()[1].metrics
                == ServerMetrics(waiting=9, running=0, kv_usage=0.0, base_models=M)
            )
        )
        assert picker.pick(None, Criticality.STANDARD).primary == busy_ep
    finally:
        await picker.stop()
    await asyncio.sleep(0.05)  # let the server read anything already on the wire
    seen = busy.requests
    await asyncio.sleep(0.2)  # four scrape intervals
    assert busy.requests == seen  # stopped means no more scrapes


async def _until(condition, limit_s: float = 10.0) -> None:
    """Polls; the limit only ends a test that would otherwise hang."""
    async with asyncio.timeout(limit_s):
        while not condition():
            await asyncio.sleep(0.01)


# --- servers behind a DNS name come and go ----------------------------------------------------


class FakeDNS:
    """What `vllm.svc` resolves to, changed by the test."""

    def __init__(self, *addresses: str) -> None:
        self.addresses = list(addresses)
        self.fail = False

    async def __call__(self, host: str, port: int) -> list[str]:
        assert (host, port) == ("vllm.svc", 8000)
        if self.fail:
            raise OSError("Name or service not known")
        return list(self.addresses)


def named_pool(dns: FakeDNS, clock: Clock) -> EndpointPicker:
    pool = PoolSpec(
        name="named",
        endpoints=(A, "10.0.1.1:8000"),
        names=(("vllm.svc", 8000),),
        fixed_endpoints=(A,),
    )
    return EndpointPicker(pool, clock=clock, resolver=dns)


async def test_a_name_is_followed_as_its_servers_change():
    clock, dns = Clock(), FakeDNS("10.0.1.1:8000")
    picker = named_pool(dns, clock)
    picker.record_success(A, metrics(waiting=3))
    picker.record_success("10.0.1.1:8000", metrics(waiting=1))
    dns.addresses = ["10.0.1.1:8000", "10.0.1.2:8000"]  # a new pod
    await picker.resolve_names()
    assert [s.endpoint for s in picker.snapshot()] == [A, "10.0.1.1:8000", "10.0.1.2:8000"]
    # the new server is named last until its metrics arrive, then on its merits
    assert picker.pick(None, Criticality.STANDARD).endpoints[-1] == "10.0.1.2:8000"
    picker.record_success("10.0.1.2:8000", metrics(waiting=0))
    assert picker.pick(None, Criticality.STANDARD).primary == "10.0.1.2:8000"
    dns.addresses = ["10.0.1.2:8000"]  # the first pod went away
    await picker.resolve_names()
    assert [s.endpoint for s in picker.snapshot()] == [A, "10.0.1.2:8000"]
    assert "10.0.1.1:8000" not in picker.pick(None, Criticality.STANDARD).endpoints
    picker.record_success("10.0.1.1:8000", metrics())  # a late scrape of a gone server: ignored
    picker.record_failure("10.0.1.1:8000", "gone")
    assert len(picker.snapshot()) == 2


async def test_a_failed_lookup_keeps_the_last_servers():
    clock, dns = Clock(), FakeDNS("10.0.1.1:8000", "10.0.1.2:8000")
    picker = named_pool(dns, clock)
    await picker.resolve_names()
    dns.fail = True
    await picker.resolve_names()
    assert [s.endpoint for s in picker.snapshot()] == [A, "10.0.1.1:8000", "10.0.1.2:8000"]
