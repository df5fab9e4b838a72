"""The vLLM-style mock model server: queueing, pace, KV figure, LoRA adapters, /metrics.

Timing assertions use lower bounds (a sleep never ends early) and ratios between a fast
and a slow case, never an upper bound on one duration, so a busy machine cannot fail them.
"""

from __future__ import annotations

import asyncio
import signal
import time
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families

from extproc.devstack import VllmMockProcess, free_port
from extproc.mock.vllm import VllmMock, build_app
from extproc.mock.vllm_config import VllmConfig, add_arguments, config_from_args

Start = Callable[..., Awaitable[tuple[TestClient, VllmMock]]]
Check = Callable[[], Awaitable[bool]]


@pytest.fixture
async def serve() -> AsyncIterator[Start]:
    clients: list[TestClient] = []

    async def start(**options: Any) -> tuple[TestClient, VllmMock]:
        mock = VllmMock(VllmConfig(**options))
        client = TestClient(TestServer(build_app(mock)))
        await client.start_server()
        clients.append(client)
        return client, mock

    yield start
    for client in clients:
        await client.close()


def body(model: str = "base-model", text: str = "hello there", **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": text}], **extra}


async def chat(client: TestClient, **kw: Any) -> tuple[int, Any]:
    async with client.post("/v1/chat/completions", json=body(**kw)) as resp:
        return resp.status, await resp.json()


async def timed_chat(client: TestClient, **kw: Any) -> float:
    t0 = time.monotonic()
    status, _ = await chat(client, **kw)
    assert status == 200
    return time.monotonic() - t0


async def scrape(client: TestClient) -> dict[str, Any]:
    """Every sample by name: its value, or for lora_requests_info its labels and value."""
    async with client.get("/metrics") as resp:
        assert resp.status == 200
        assert resp.content_type == "text/plain"
        text = await resp.text()
    out: dict[str, Any] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "vllm:lora_requests_info":
                out[sample.name] = (sample.labels, sample.value)
            else:
                assert sample.labels == {"model_name": "base-model"}, sample
                out[sample.name] = sample.value
    return out


async def until(check: Check, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.01)


def gauges(client: TestClient, running: int | None = None, waiting: int | None = None) -> Check:
    """A check for `until`: /metrics shows this many running and/or waiting requests."""

    async def check() -> bool:
        m = await scrape(client)
        seen = (m["vllm:num_requests_running"], m["vllm:num_requests_waiting"])
        return all(want in (None, got) for want, got in zip((running, waiting), seen, strict=True))

    return check


async def records(client: TestClient) -> list[dict[str, Any]]:
    async with client.get("/_mock/requests") as resp:
        return await resp.json()


def max_overlap(recs: list[dict[str, Any]]) -> int:
    edges = sorted([(r["started"], 1) for r in recs] + [(r["finished"], -1) for r in recs])
    level = peak = 0
    for _, step in edges:
        level += step
        peak = max(peak, level)
    return peak


# ---- load model ----------------------------------------------------------------------------


async def test_queue_respects_max_running_and_metrics_show_it(serve: Start) -> None:
    client, _ = await serve(max_running=2, per_token_ms=30, output_tokens=10)
    tasks = [asyncio.create_task(chat(client)) for _ in range(5)]
    await until(gauges(client, running=2, waiting=3))
    assert all(status == 200 for status, _ in await asyncio.gather(*tasks))

    recs = await records(client)
    assert len(recs) == 5
    assert max_overlap(recs) == 2
    # First come, first served: started in the order received.
    assert [r["id"] for r in sorted(recs, key=lambda r: r["started"])] == [r["id"] for r in recs]
    assert await gauges(client, running=0, waiting=0)()
    m = await scrape(client)
    assert m["vllm:generation_tokens_total"] == 50
    assert m["vllm:prompt_tokens_total"] == 10


async def test_slower_server_takes_proportionally_longer(serve: Start) -> None:
    fast, _ = await serve(per_token_ms=1, output_tokens=10)
    slow, _ = await serve(per_token_ms=20, output_tokens=10)
    fast_time, slow_time = await asyncio.gather(timed_chat(fast), timed_chat(slow))
    assert slow_time >= 0.2
    assert slow_time > 4 * fast_time


async def test_max_tokens_sets_the_answer_length_and_the_time(serve: Start) -> None:
    client, _ = await serve(per_token_ms=10, output_tokens=2)
    short = await timed_chat(client)
    long = await timed_chat(client, max_tokens=30)
    assert long >= 0.3
    assert long > 4 * short
    # The prompt-derived answer, repeated to the length asked for.
    status, doc = await chat(client, max_tokens=9, text="a b c")
    assert status == 200
    assert doc["choices"][0]["message"]["content"] == "Mock reply from base-model: a b c Mock reply"
    assert doc["choices"][0]["finish_reason"] == "length"
    assert doc["usage"] == {"prompt_tokens": 3, "completion_tokens": 9, "total_tokens": 12}
    assert doc["model"] == "base-model"
    # Without max_tokens: --output-tokens words.
    status, doc = await chat(client, text="hi")
    assert doc["choices"][0]["message"]["content"] == "Mock reply"
    assert (doc["choices"][0]["finish_reason"], doc["usage"]["completion_tokens"]) == ("stop", 2)


async def test_behavior_changes_the_pace_at_run_time(serve: Start) -> None:
    client, _ = await serve(per_token_ms=1, output_tokens=10)
    before = await timed_chat(client)
    async with client.post("/_mock/behavior", json={"perTokenMs": 25}) as resp:
        assert resp.status == 200
    after = await timed_chat(client)
    assert after >= 0.25
    assert after > 4 * before


async def test_raising_max_running_admits_waiting_requests_now(serve: Start) -> None:
    client, _ = await serve(max_running=1, per_token_ms=100, output_tokens=10)
    tasks = [asyncio.create_task(chat(client)) for _ in range(3)]
    await until(gauges(client, waiting=2))
    async with client.post("/_mock/behavior", json={"maxRunning": 3}) as resp:
        assert resp.status == 200
    assert await gauges(client, running=3, waiting=0)()
    await asyncio.gather(*tasks)


async def test_client_that_gives_up_leaves_the_queue(serve: Start) -> None:
    client, _ = await serve(max_running=1, per_token_ms=100, output_tokens=10)
    first = asyncio.create_task(chat(client))
    second = asyncio.create_task(chat(client))
    await until(gauges(client, waiting=1))
    second.cancel()
    await until(gauges(client, waiting=0))
    assert await gauges(client, running=1)()
    await first


# ---- KV cache ------------------------------------------------------------------------------


async def test_kv_figure_is_tokens_of_running_requests_over_capacity(serve: Start) -> None:
    # Each request holds 5 prompt + 10 output tokens.
    client, _ = await serve(max_running=4, per_token_ms=50, output_tokens=10, kv_capacity_tokens=100)
    prompt = "one two three four five"
    tasks = [asyncio.create_task(chat(client, text=prompt)) for _ in range(2)]

    async def kv_is(value: float) -> bool:
        m = await scrape(client)
        assert m["vllm:gpu_cache_usage_perc"] == m["vllm:kv_cache_usage_perc"]
        return m["vllm:kv_cache_usage_perc"] == pytest.approx(value)

    await until(lambda: kv_is(0.3))
    # Waiting requests hold no cache: 6 sent, 4 run.
    tasks += [asyncio.create_task(chat(client, text=prompt)) for _ in range(4)]
    await until(gauges(client, waiting=2))
    assert await kv_is(0.6)
    await asyncio.gather(*tasks)
    assert await kv_is(0.0)


async def test_kv_figure_is_capped_at_one(serve: Start) -> None:
    client, _ = await serve(per_token_ms=50, output_tokens=10, kv_capacity_tokens=8)
    task = asyncio.create_task(chat(client, text="one two three"))
    await until(gauges(client, running=1))
    assert (await scrape(client))["vllm:kv_cache_usage_perc"] == 1.0
    await task


# ---- LoRA adapters -------------------------------------------------------------------------


async def lora(client: TestClient) -> tuple[dict[str, str], float]:
    labels, value = (await scrape(client))["vllm:lora_requests_info"]
    return labels, value


async def test_adapter_is_loaded_on_demand_once(serve: Start) -> None:
    client, _ = await serve(adapters=["a", "b", "c"], adapter_load_ms=200, per_token_ms=1, output_tokens=5)
    labels, stamp = await lora(client)
    assert labels == {"max_lora": "2", "running_lora_adapters": "", "waiting_lora_adapters": ""}
    assert abs(stamp - time.time()) < 60  # vLLM reports the time of the update

    task = asyncio.create_task(chat(client, model="a"))

    async def loading_a() -> bool:
        labels, _ = await lora(client)
        return labels["waiting_lora_adapters"] == "a"

    await until(loading_a)
    assert (await lora(client))[0]["running_lora_adapters"] == ""
    status, doc = await task
    assert (status, doc["model"]) == (200, "a")
    assert (await lora(client))[0] == {
        "max_lora": "2",
        "running_lora_adapters": "a",
        "waiting_lora_adapters": "",
    }

    assert (await chat(client, model="a"))[0] == 200
    first, again = await records(client)
    first_wait = first["started"] - first["received"]
    again_wait = again["started"] - again["received"]
    assert first_wait >= 0.19
    assert again_wait < first_wait / 2


async def test_least_recently_used_idle_adapter_is_evicted(serve: Start) -> None:
    client, _ = await serve(adapters=["a", "b", "c"], adapter_load_ms=20, per_token_ms=0, output_tokens=2)
    for name in ("a", "b", "a", "c"):
        assert (await chat(client, model=name))[0] == 200
    labels, _ = await lora(client)
    assert labels["running_lora_adapters"].split(",") == ["a", "c"]  # b was the least recently used


async def test_new_adapter_waits_while_all_loaded_ones_are_busy(serve: Start) -> None:
    client, _ = await serve(adapters=["a", "b", "c"], adapter_load_ms=100, per_token_ms=40, output_tokens=5)
    busy = [asyncio.create_task(chat(client, model=name)) for name in ("a", "b")]
    await until(gauges(client, running=2))
    late = asyncio.create_task(chat(client, model="c"))

    async def c_waits() -> bool:
        m = await scrape(client)
        labels = m["vllm:lora_requests_info"][0]
        return m["vllm:num_requests_waiting"] == 1 and labels["waiting_lora_adapters"] == "c"

    await until(c_waits)
    # The base model needs no adapter slot: it is not stuck behind c.
    assert (await chat(client))[0] == 200
    assert (await late)[0] == 200
    await asyncio.gather(*busy)
    a, b, c, base = await records(client)
    first_done, other = sorted((a, b), key=lambda r: r["finished"])
    assert base["started"] < first_done["finished"]
    # c loads only once a or b is idle (which it evicts), then takes the load time.
    assert c["started"] >= first_done["finished"] + 0.099
    running = (await lora(client))[0]["running_lora_adapters"]
    assert set(running.split(",")) == {"c", other["model"]}


async def test_unknown_model_is_404(serve: Start) -> None:
    client, _ = await serve(adapters=["a"])
    status, doc = await chat(client, model="nope")
    assert status == 404
    error = {"message": "The model `nope` does not exist.", "type": "invalid_request_error"}
    assert doc == {"error": {**error, "param": None, "code": None}}


async def test_without_an_adapter_list_any_other_name_is_an_adapter(serve: Start) -> None:
    client, _ = await serve(adapter_load_ms=0, per_token_ms=0)
    assert (await chat(client, model="anything"))[0] == 200
    assert (await lora(client))[0]["running_lora_adapters"] == "anything"
    async with client.get("/v1/models") as resp:
        ids = [m["id"] for m in (await resp.json())["data"]]
    assert ids == ["base-model", "anything"]


# ---- wire shapes ---------------------------------------------------------------------------


async def read_stream(client: TestClient, **kw: Any) -> tuple[list[Any], float]:
    t0 = time.monotonic()
    async with client.post("/v1/chat/completions", json=body(stream=True, **kw)) as resp:
        assert resp.status == 200
        assert resp.headers["content-type"] == "text/event-stream"
        raw = (await resp.read()).decode()
    elapsed = time.monotonic() - t0
    events = [e.removeprefix("data: ") for e in raw.split("\n\n") if e]
    assert events[-1] == "[DONE]"
    return [orjson.loads(e) for e in events[:-1]], elapsed


async def test_stream_shape_and_pace(serve: Start) -> None:
    client, _ = await serve(per_token_ms=20, output_tokens=3)
    chunks, elapsed = await read_stream(
        client, text="x y", max_tokens=5, stream_options={"include_usage": True}
    )
    assert elapsed >= 0.1
    assert [c["object"] for c in chunks] == ["chat.completion.chunk"] * 8
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": "", "refusal": None}
    tokens = [c["choices"][0]["delta"]["content"] for c in chunks[1:6]]
    assert tokens == ["Mock", " reply", " from", " base-model:", " x"]
    assert chunks[6]["choices"][0] == {"index": 0, "delta": {}, "logprobs": None, "finish_reason": "length"}
    assert chunks[7]["choices"] == []
    assert chunks[7]["usage"] == {"prompt_tokens": 2, "completion_tokens": 5, "total_tokens": 7}

    chunks, _ = await read_stream(client)  # no usage asked: no usage chunk
    assert len(chunks) == 5
    assert all("usage" not in c for c in chunks)
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


async def test_metrics_families_and_types(serve: Start) -> None:
    client, _ = await serve()
    async with client.get("/metrics") as resp:
        families = {f.name: f.type for f in text_string_to_metric_families(await resp.text())}
    assert families == {
        "vllm:num_requests_running": "gauge",
        "vllm:num_requests_waiting": "gauge",
        "vllm:gpu_cache_usage_perc": "gauge",
        "vllm:kv_cache_usage_perc": "gauge",
        "vllm:lora_requests_info": "gauge",
        "vllm:prompt_tokens": "counter",
        "vllm:generation_tokens": "counter",
    }


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"not json", "mock: the body must be a JSON object"),
        (orjson.dumps(body(max_tokens=0)), "max_tokens must be a positive integer"),
        (orjson.dumps(body(max_tokens="5")), "max_tokens must be a positive integer"),
        (orjson.dumps({"model": "base-model", "messages": []}), "'messages' must be a non-empty array"),
    ],
)
async def test_bad_requests_are_400(serve: Start, payload: bytes, message: str) -> None:
    client, _ = await serve()
    async with client.post("/v1/chat/completions", data=payload) as resp:
        assert resp.status == 400
        assert (await resp.json())["error"]["message"] == message


# ---- admin ---------------------------------------------------------------------------------


async def test_requests_log_and_clear(serve: Start) -> None:
    client, _ = await serve(per_token_ms=0)
    await chat(client, model="base-model", stream=False)
    (rec,) = await records(client)
    assert rec["path"] == "/v1/chat/completions"
    assert (rec["model"], rec["stream"], rec["status"]) == ("base-model", False, 200)
    assert rec["received"] <= rec["started"] <= rec["finished"]
    async with client.delete("/_mock/requests") as resp:
        assert resp.status == 200
    assert await records(client) == []
    async with client.get("/_mock/health") as resp:
        assert await resp.json() == {"ok": True}


async def test_injected_failures(serve: Start) -> None:
    client, _ = await serve(per_token_ms=0)
    async with client.post("/_mock/behavior", json={"fail": "status:503"}) as resp:
        assert resp.status == 200
    status, doc = await chat(client)
    assert status == 503
    assert doc["error"]["message"] == "mock failure 503"
    async with client.post("/_mock/behavior", json={"fail": "reset"}) as resp:
        assert resp.status == 200
    with pytest.raises(aiohttp.ClientConnectionError):
        await chat(client)
    async with client.post("/_mock/behavior", json={"fail": None}) as resp:
        assert resp.status == 200
    assert (await chat(client))[0] == 200
    assert [r["status"] for r in await records(client)] == [503, 500, 200]


@pytest.mark.parametrize(
    "doc",
    [{"fail": "boom"}, {"fail": "status:200"}, {"maxRunning": 0}, {"perTokenMs": -1}, {"speed": 1}, [1]],
)
async def test_bad_behavior_is_400(serve: Start, doc: Any) -> None:
    client, mock = await serve()
    async with client.post("/_mock/behavior", json=doc) as resp:
        assert resp.status == 400
    assert (mock.fail, mock.config.max_running, mock.config.per_token_ms) == (None, 4, 5.0)


def test_cli_flags_build_the_config() -> None:
    import argparse

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    config = config_from_args(
        parser.parse_args(["--adapters", "a, b", "--max-running", "2", "--per-token-ms", "7.5"])
    )
    assert config == VllmConfig(adapters=["a", "b"], max_running=2, per_token_ms=7.5)
    assert config_from_args(parser.parse_args(["--adapters", ""])).adapters == []
    with pytest.raises(ValueError, match="--max-loras must be at least 1"):
        config_from_args(parser.parse_args(["--max-loras", "0"]))


def test_process_serves_the_cli_flags_and_can_be_killed(tmp_path: Path) -> None:
    port = free_port()
    proc = VllmMockProcess(port, tmp_path / "vllm.log", adapters=["x", "y"], max_loras=3).start()
    try:
        with urllib.request.urlopen(f"{proc.url}/metrics", timeout=5) as resp:
            text = resp.read().decode()
        (info,) = [f for f in text_string_to_metric_families(text) if f.name == "vllm:lora_requests_info"]
        labels = info.samples[0].labels
        assert labels["max_lora"] == "3"
        with urllib.request.urlopen(f"{proc.url}/v1/models", timeout=5) as resp:
            assert [m["id"] for m in orjson.loads(resp.read())["data"]] == ["base-model", "x", "y"]
    finally:
        assert proc.stop(signal.SIGKILL) == -signal.SIGKILL
