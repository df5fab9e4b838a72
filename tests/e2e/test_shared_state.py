"""Two independent gateways (two Envoys, two processors, each with its own mocks) sharing
one real redis-server, as replicas behind a load balancer would:

- a 429 with Retry-After seen through gateway A keeps gateway B off that provider;
- a global rate limit holds across both gateways together;
- a token budget stops a key once its real usage (JSON and streamed) crosses it, a
  stream the client leaves mid-way included;
- Redis killed mid-run: each policy meets its fail mode, and everything recovers when
  Redis is back, without restarting anything.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import yaml
from redis import StrictRedis

from extproc.devstack import free_port
from extproc.render.loader import render_file
from extproc.shared_state.local_redis import LocalRedis
from tests.harness import Stack, wait_for

pytestmark = pytest.mark.e2e

USER = [{"role": "user", "content": "hello"}]
LIMIT = 10
BUDGET = 100


def _config(redis: LocalRedis) -> dict:
    def provider(name: str, provider: str, port: int) -> dict:
        out: dict[str, Any] = {
            "name": name,
            "provider": provider,
            "model": f"{name}-model",
            "auth": {"secretRef": {"inline": "sk-test-key-0001"}},
            "endpoint": {"host": "127.0.0.1", "port": port},
        }
        if provider == "anthropic":
            out["defaultMaxTokens"] = 256
        return out

    return {
        "gateway": {
            "sharedState": {
                "redis": {"address": redis.address, "timeout": "100ms"},
                "cooldowns": {"failMode": "open", "syncInterval": "100ms"},
            }
        },
        "backends": [
            {
                "name": "chain",
                "ai": {
                    "priorityGroups": [
                        {"providers": [provider("primary", "openai", 18501)]},
                        {"providers": [provider("fallback", "anthropic", 18502)]},
                    ],
                    "failover": {"healthCheckInterval": "300ms"},
                },
            }
        ],
        "routes": [
            {
                "name": "budgeted",
                "matches": [
                    {
                        "path": {"type": "Exact", "value": "/v1/chat/completions"},
                        "headers": [{"name": "x-tenant", "value": "budgeted"}],
                    }
                ],
                "backendRefs": [{"name": "chain"}],
                "tokenBudget": {"key": {"header": "x-api-key"}, "tokens": BUDGET, "per": "hour"},
            },
            {
                "name": "chat",
                "matches": [{"path": {"type": "Exact", "value": "/v1/chat/completions"}}],
                "backendRefs": [{"name": "chain"}],
                "rateLimit": {
                    "key": {"header": "x-api-key"},
                    "requests": LIMIT,
                    "per": "minute",
                    "scope": "global",
                },
            },
        ],
    }


@pytest.fixture
def redis() -> Iterator[LocalRedis]:
    server = LocalRedis(free_port()).start()
    yield server
    server.close()


@pytest.fixture
def stacks(redis: LocalRedis, tmp_path) -> Iterator[tuple[Stack, Stack]]:
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(_config(redis)))
    a = Stack(render_file(path))
    b = Stack(render_file(path))
    try:
        a.start()
        b.start()
        yield a, b
    finally:
        a.stop()
        b.stop()


def _chat(stack: Stack, key: str, *, tenant: str | None = None, stream: bool = False) -> httpx.Response:
    headers = {"x-api-key": key}
    if tenant:
        headers["x-tenant"] = tenant
    body: dict = {"model": "any", "messages": USER}
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return stack.post(body, headers=headers)


def _host_failed(stack: Stack, port: int) -> bool:
    """Envoy's own view: the host on `port` is failing its active health check."""
    text = httpx.get(f"http://127.0.0.1:{stack.admin_port}/clusters", timeout=5).text
    return any(
        f":{port}::health_flags::" in line and "/failed_active_hc" in line for line in text.splitlines()
    )


def _primary_healthy(stack: Stack) -> bool:
    return not _host_failed(stack, stack.mocks["primary"].port)


def test_a_429_seen_by_one_gateway_keeps_the_other_off_that_provider(stacks):
    a, b = stacks
    a.mocks["primary"].behave(status=429, retryAfter=30)
    # Both gateways start with every host healthy.
    for s in (a, b):
        wait_for(functools.partial(_primary_healthy, s), 10, "primary healthy")

    r = _chat(a, "k-a")
    assert r.status_code == 200, r.text
    assert len(a.mocks["primary"].requests) == 1, "A tried the primary first and got its 429"

    # B never talked to its primary (which would answer fine), yet takes it out of rotation.
    wait_for(lambda: _host_failed(b, b.mocks["primary"].port), 10, "B's Envoy sees the shared cooldown")
    for _ in range(4):
        r = _chat(b, "k-b")
        assert r.status_code == 200, r.text
        assert r.json()["model"] == "fallback-model"
    assert b.mocks["primary"].requests == []
    assert len(b.mocks["fallback"].requests) == 4


def _start_of_a_window(redis: LocalRedis, seconds: int, room: float) -> None:
    """Wait, if need be, until at least `room` seconds are left in the current fixed
    window (windows follow Redis's clock), so a test's requests share one window."""
    import redis as redis_py

    client = redis_py.Redis(host=redis.host, port=redis.port)
    try:
        now_s, now_us = client.time()
    finally:
        client.close()
    left = seconds - (now_s % seconds) - now_us / 1e6
    if left < room:
        time.sleep(left + 0.05)


def test_a_global_rate_limit_holds_across_both_gateways(stacks, redis):
    """10 requests a minute per key, counted by both gateways together."""
    a, b = stacks
    _start_of_a_window(redis, 60, room=20)
    statuses = [_chat(a if i % 2 else b, "key-1").status_code for i in range(LIMIT)]
    assert statuses == [200] * LIMIT
    for s in (a, b):
        r = _chat(s, "key-1")
        assert r.status_code == 429, r.text
        err = r.json()["error"]
        assert err["code"] == "rate_limit_exceeded" and err["type"] == "rate_limit_error"
        assert 1 <= int(r.headers["retry-after"]) <= 60
        assert r.headers["x-ratelimit-limit"].startswith(str(LIMIT))
        assert r.headers["x-ratelimit-remaining"] == "0"
    # Another key has its own allowance on both.
    assert _chat(a, "key-2").status_code == 200
    assert _chat(b, "key-2").status_code == 200
    # The provider saw exactly the allowed requests (plus key-2's).
    served = sum(len(m.requests) for s in (a, b) for m in s.mocks.values())
    assert served == LIMIT + 2


def _usage_total(response: httpx.Response) -> int:
    return int(response.json()["usage"]["total_tokens"])


def test_a_token_budget_stops_a_key_after_its_real_usage(stacks):
    a, b = stacks
    spent = 0
    sent = 0
    # JSON through A and streams through B, until the key's real usage crosses the budget.
    while spent < BUDGET:
        if sent % 2 == 0:
            r = _chat(a, "tenant-key", tenant="budgeted")
            assert r.status_code == 200, r.text
            spent += _usage_total(r)
        else:
            r = _chat(b, "tenant-key", tenant="budgeted", stream=True)
            assert r.status_code == 200, r.text
            usage = [line for line in r.text.splitlines() if '"usage"' in line and '"total_tokens"' in line]
            assert usage, "the stream reported its usage"
            spent += int(yaml.safe_load(usage[-1].removeprefix("data: "))["usage"]["total_tokens"])
        sent += 1
        assert sent < 50, "the mock's usage is too small for this budget"
    assert sent >= 2, "the budget must take more than one request to cross"

    # The charge lands when each stream ends: both gateways refuse the key from now on.
    def refused(s: Stack) -> bool:
        return _chat(s, "tenant-key", tenant="budgeted").status_code == 429

    wait_for(lambda: refused(a) and refused(b), 5, "the key refused on both gateways")
    r = _chat(b, "tenant-key", tenant="budgeted")
    assert r.status_code == 429
    assert r.json()["error"]["code"] == "token_budget_exceeded"
    assert int(r.headers["retry-after"]) >= 1
    served = sum(len(m.requests) for s in (a, b) for m in s.mocks.values())
    # Another key still has its whole budget.
    assert _chat(a, "other-key", tenant="budgeted").status_code == 200
    assert sum(len(m.requests) for s in (a, b) for m in s.mocks.values()) == served + 1


def test_a_key_that_only_leaves_streams_mid_way_still_spends_its_budget(stacks, redis):
    # Reading an answer and leaving before its usage chunk used to cost nothing: Envoy's
    # charge, when the stream ended, had no usage to add. The route-level filter now
    # charges what the stream used (the prompt, and the answer the client got).
    a, b = stacks
    long_prompt = [{"role": "user", "content": " ".join(["tell me about the weather"] * 30)}]
    headers = {
        "x-api-key": "leaver",
        "x-tenant": "budgeted",
        "x-mock-chunk-delay-ms": "200",
        "x-mock-content": " ".join(["sunny"] * 40),
    }
    body = {"model": "any", "messages": long_prompt, "stream": True}
    with httpx.stream("POST", f"{a.url}/v1/chat/completions", json=body, headers=headers, timeout=10) as r:
        assert r.status_code == 200
        first = next(line for line in r.iter_lines() if "sunny" in line)
        assert '"finish_reason":null' in first  # the answer had begun; the client leaves here
    client = StrictRedis.from_url(f"redis://{redis.address}")

    def charged() -> int:
        # This test's only budgeted key: its counter in the current window.
        return sum(int(client.get(k) or 0) for k in client.keys("aigw:rl:budgeted:tokens:*"))

    wait_for(lambda: charged() > 0, 5, "the cut-short stream charged")
    assert charged() > BUDGET  # the prompt alone (~150 tokens) is past it
    # So both gateways refuse the key's next request (each asked once: a request let
    # through would spend more and hide a missing charge).
    for s in (a, b):
        r = _chat(s, "leaver", tenant="budgeted")
        assert r.status_code == 429 and r.json()["error"]["code"] == "token_budget_exceeded"


def test_redis_killed_mid_run_meets_each_fail_mode_and_recovers(stacks, redis):
    a, b = stacks
    assert _chat(a, "k").status_code == 200
    assert _chat(a, "k", tenant="budgeted").status_code == 200

    redis.kill()
    started = time.monotonic()
    # The rate limit fails open: requests go through, counted nowhere.
    assert _chat(a, "k").status_code == 200
    assert _chat(b, "k").status_code == 200
    # The token budget fails closed: a clear 503, not a hang.
    r = _chat(b, "k", tenant="budgeted")
    assert r.status_code == 503, r.text
    assert r.json()["error"]["code"] == "rate_limit_unavailable"
    assert time.monotonic() - started < 5, "a dead Redis must not hold requests"
    assert a.metric("aigw_shared_state_failures_total", operation="rate_limit", outcome="allowed") >= 1

    redis.start()  # the same port: both processors reconnect by themselves
    wait_for(lambda: _chat(b, "k", tenant="budgeted").status_code == 200, 10, "budgets served again")
    assert _chat(a, "k", tenant="budgeted").status_code == 200
    _start_of_a_window(redis, 60, room=20)
    # Counting resumed in the new (empty) Redis: the limit holds again across both.
    for i in range(LIMIT):
        _chat(a if i % 2 else b, "after-restart")
    assert _chat(a, "after-restart").status_code == 429


def test_a_stuck_redis_does_not_hang_requests(stacks, redis):
    a, _ = stacks
    redis.pause()
    try:
        started = time.monotonic()
        assert _chat(a, "k").status_code == 200
        assert _chat(a, "k", tenant="budgeted").status_code == 503
        assert time.monotonic() - started < 5
    finally:
        redis.resume()
    wait_for(lambda: _chat(a, "k", tenant="budgeted").status_code == 200, 10, "served again")
