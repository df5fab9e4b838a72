"""The RLS rate-limit service on a real redis-server (shared_state/ratelimit_service.py,
shared_state/counters.py).

Most tests call `ShouldRateLimit` directly with RateLimitRequest protos and a fake context
whose abort raises; `test_through_a_real_grpc_channel` serves it on a grpc.aio server on a
Unix socket and calls it with the generated stub. Each "replica" is its own RedisStore +
RateLimitService on one redis-server; the failure tests kill, pause and restart it.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
import time
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import Any

import grpc
import pytest
from envoy.extensions.common.ratelimit.v3 import ratelimit_pb2
from envoy.service.ratelimit.v3 import rls_pb2, rls_pb2_grpc
from google.protobuf import wrappers_pb2
from prometheus_client import REGISTRY

from extproc.config.shared_state import LimitSpec, RedisSettings
from extproc.shared_state.local_redis import LocalRedis
from extproc.shared_state.ratelimit_service import RateLimitService, add_to_server
from extproc.shared_state.redis_store import RedisStore
from tests.redis_server import redis_server  # noqa: F401

Response = rls_pb2.RateLimitResponse
RateLimit = rls_pb2.RateLimitResponse.RateLimit
DAY = 86400
SECRET = "sk-live-VERY-secret-123"

LIMITS = {
    "per-key": LimitSpec(unit="requests", amount=3, window=DAY, fail_mode="open"),
    "strict": LimitSpec(unit="requests", amount=3, window=DAY, fail_mode="closed"),
    "budget": LimitSpec(unit="tokens", amount=100, window=DAY, fail_mode="closed"),
}


class Aborted(Exception):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(code, details)
        self.code = code


class FakeContext:
    """grpc.aio's context.abort raises; so does this one."""

    async def abort(self, code: grpc.StatusCode, details: str = "") -> None:
        raise Aborted(code, details)


def descriptor(limit_id: str | None, *entries: tuple[str, str], hits: int | None = None) -> Any:
    pairs = ([("aigw_limit", limit_id)] if limit_id is not None else []) + list(entries)
    built = ratelimit_pb2.RateLimitDescriptor(
        entries=[ratelimit_pb2.RateLimitDescriptor.Entry(key=k, value=v) for k, v in pairs]
    )
    if hits is not None:
        built.hits_addend.CopyFrom(wrappers_pb2.UInt64Value(value=hits))
    return built


def client(limit_id: str, value: str = SECRET, hits: int | None = None) -> Any:
    return descriptor(limit_id, ("client_key", value), hits=hits)


def request(*descriptors: Any, hits_addend: int = 0) -> rls_pb2.RateLimitRequest:
    return rls_pb2.RateLimitRequest(domain="aigw", descriptors=descriptors, hits_addend=hits_addend)


async def call(service: RateLimitService, *descriptors: Any, hits_addend: int = 0) -> Any:
    return await service.ShouldRateLimit(request(*descriptors, hits_addend=hits_addend), FakeContext())


def headers(response: Any) -> dict[str, str]:
    return {h.key: h.value for h in response.response_headers_to_add}


def remaining(response: Any) -> list[int]:
    return [s.limit_remaining for s in response.statuses]


def failures(operation: str, outcome: str) -> float:
    labels = {"operation": operation, "outcome": outcome}
    return REGISTRY.get_sample_value("aigw_shared_state_failures_total", labels) or 0.0


Make = Callable[..., RateLimitService]


@pytest.fixture
async def make(redis_server: LocalRedis) -> AsyncIterator[Make]:  # noqa: F811
    stores: list[RedisStore] = []

    def build(limits: Mapping[str, LimitSpec] = LIMITS) -> RateLimitService:
        store = RedisStore(RedisSettings(address=redis_server.address, timeout=0.1))
        stores.append(store)
        return RateLimitService(store, limits)

    yield build
    redis_server.resume()
    for store in stores:
        await store.close()


async def redis_keys(service: RateLimitService) -> list[str]:
    return sorted([k.decode() async for k in service._store.client.scan_iter(match="*")])


async def stored(service: RateLimitService, limit_id: str) -> int:
    """The count Redis holds for `limit_id` (one client, one window), read directly."""
    keys = [k for k in await redis_keys(service) if k.startswith(f"aigw:rl:{limit_id}:")]
    assert len(keys) <= 1
    return int(await service._store.client.get(keys[0]) or 0) if keys else 0


# -- request limits ------------------------------------------------------------------------


async def test_request_limit_allows_exactly_n_then_refuses_with_retry_after(make: Make) -> None:
    service = make()
    for left in (2, 1, 0):
        response = await call(service, client("per-key"))
        assert response.overall_code == Response.OK
        assert remaining(response) == [left]
        assert headers(response) == {}
        status = response.statuses[0]
        assert (status.current_limit.requests_per_unit, status.current_limit.unit) == (3, RateLimit.DAY)

    refused = await call(service, client("per-key"))
    assert refused.overall_code == Response.OVER_LIMIT
    assert [s.code for s in refused.statuses] == [Response.OVER_LIMIT]
    assert remaining(refused) == [0]
    reset = refused.statuses[0].duration_until_reset.ToMilliseconds()
    assert 0 < reset <= DAY * 1000
    assert headers(refused) == {
        "retry-after": str(max(1, math.ceil(reset / 1000))),
        "x-aigw-limited-by": "requests",
    }


async def test_keys_are_separate_per_client_value_and_per_limit(make: Make) -> None:
    service = make()
    for _ in range(3):
        await call(service, client("per-key", "alice"))
    assert (await call(service, client("per-key", "alice"))).overall_code == Response.OVER_LIMIT
    assert remaining(await call(service, client("per-key", "bob"))) == [2]
    assert remaining(await call(service, client("strict", "alice"))) == [2]
    # Another entry key with the same value is another client.
    assert remaining(await call(service, descriptor("per-key", ("remote_address", "alice")))) == [2]


async def test_two_replicas_share_one_count(make: Make) -> None:
    first, second = make(), make()
    assert remaining(await call(first, client("per-key"))) == [2]
    assert remaining(await call(second, client("per-key"))) == [1]
    assert remaining(await call(first, client("per-key"))) == [0]
    assert (await call(second, client("per-key"))).overall_code == Response.OVER_LIMIT


async def test_hits_addend_descriptor_then_request_then_one(make: Make) -> None:
    limits = {"ten": LimitSpec(unit="requests", amount=10, window=DAY, fail_mode="open")}
    service = make(limits)
    assert remaining(await call(service, client("ten", hits=5))) == [5]
    # The descriptor's own hits_addend wins over the request's.
    assert remaining(await call(service, client("ten", hits=2), hits_addend=4)) == [3]
    assert remaining(await call(service, client("ten"), hits_addend=2)) == [1]
    # Envoy's request-level 0 means 1.
    assert remaining(await call(service, client("ten"), hits_addend=0)) == [0]
    over = await call(service, client("ten", hits=3))
    assert over.overall_code == Response.OVER_LIMIT


async def test_explicit_zero_on_a_request_limit_checks_without_counting(make: Make) -> None:
    service = make()
    assert remaining(await call(service, client("per-key", hits=0))) == [3]
    for _ in range(3):
        await call(service, client("per-key"))
    check = await call(service, client("per-key", hits=0))
    assert check.overall_code == Response.OVER_LIMIT
    assert "retry-after" in headers(check)


@pytest.mark.parametrize(
    ("window", "unit"),
    [(1, RateLimit.SECOND), (60, RateLimit.MINUTE), (3600, RateLimit.HOUR), (DAY, RateLimit.DAY)],
)
async def test_current_limit_unit_for_whole_units(make: Make, window: int, unit: int) -> None:
    service = make({"w": LimitSpec(unit="requests", amount=7, window=window, fail_mode="open")})
    status = (await call(service, client("w"))).statuses[0]
    assert status.HasField("current_limit")
    assert (status.current_limit.requests_per_unit, status.current_limit.unit) == (7, unit)
    assert 0 < status.duration_until_reset.ToMilliseconds() <= window * 1000


async def test_current_limit_unset_for_other_windows(make: Make) -> None:
    service = make({"w": LimitSpec(unit="requests", amount=7, window=90, fail_mode="open")})
    status = (await call(service, client("w"))).statuses[0]
    assert not status.HasField("current_limit")
    assert status.limit_remaining == 6
    assert 0 < status.duration_until_reset.ToMilliseconds() <= 90_000


# -- token budgets -------------------------------------------------------------------------


async def wait_for_fresh_window(service: RateLimitService, limit_id: str, room_ms: int) -> None:
    """Sleep into the next window when fewer than `room_ms` are left in this one, so a
    sequence of calls cannot straddle a window boundary."""
    check = await call(service, client(limit_id, hits=0))
    left = check.statuses[0].duration_until_reset.ToMilliseconds()
    if left < room_ms:
        await asyncio.sleep(left / 1000 + 0.05)


async def test_token_budget_check_charge_refuse_and_reset(make: Make) -> None:
    service = make({"tok": LimitSpec(unit="tokens", amount=100, window=2, fail_mode="closed")})
    await wait_for_fresh_window(service, "tok", room_ms=1200)

    check = await call(service, client("tok", hits=0))
    assert (check.overall_code, remaining(check)) == (Response.OK, [100])
    charge = await call(service, client("tok", hits=60))
    assert (charge.overall_code, remaining(charge)) == (Response.OK, [40])
    assert remaining(await call(service, client("tok", hits=0))) == [40]
    # A charge past the budget is still OK: the request it pays for is already done.
    over_charge = await call(service, client("tok", hits=50))
    assert (over_charge.overall_code, remaining(over_charge)) == (Response.OK, [0])

    refused = await call(service, client("tok", hits=0))
    assert refused.overall_code == Response.OVER_LIMIT
    reset_ms = refused.statuses[0].duration_until_reset.ToMilliseconds()
    assert 0 < reset_ms <= 2000
    assert headers(refused) == {
        "retry-after": str(max(1, math.ceil(reset_ms / 1000))),
        "x-aigw-limited-by": "tokens",
    }
    assert int(headers(refused)["retry-after"]) in (1, 2)

    await asyncio.sleep(reset_ms / 1000 + 0.05)
    fresh = await call(service, client("tok", hits=0))
    assert (fresh.overall_code, remaining(fresh)) == (Response.OK, [100])


async def test_token_check_refuses_at_exactly_the_budget(make: Make) -> None:
    service = make()
    await call(service, client("budget", hits=99))
    assert (await call(service, client("budget", hits=0))).overall_code == Response.OK
    await call(service, client("budget", hits=1))
    assert (await call(service, client("budget", hits=0))).overall_code == Response.OVER_LIMIT


async def test_check_and_request_limit_in_one_call(make: Make) -> None:
    service = make()
    await call(service, client("budget", hits=100))
    response = await call(service, client("budget", hits=0), client("per-key"))
    assert response.overall_code == Response.OVER_LIMIT
    assert [s.code for s in response.statuses] == [Response.OVER_LIMIT, Response.OK]
    assert remaining(response) == [0, 2]


# -- keys in Redis ---------------------------------------------------------------------------


async def test_raw_client_values_never_reach_redis_and_keys_expire(make: Make) -> None:
    service = make({**LIMITS, "short": LimitSpec(unit="requests", amount=5, window=2, fail_mode="open")})
    await call(service, client("per-key"), client("budget", hits=7), client("short"))
    await call(service, descriptor("per-key", ("remote_address", "10.1.2.3"), ("generic_key", SECRET)))
    keys = await redis_keys(service)
    assert len(keys) == 4
    for key in keys:
        assert SECRET not in key and "10.1.2.3" not in key
        assert re.fullmatch(r"aigw:rl:(per-key|budget|short):[0-9a-f]{32}:\d+", key), key
        assert (await service._store.client.get(key)) in (b"1", b"7")
        ttl = await service._store.client.pttl(key)
        window = 2 if ":short:" in key else DAY
        assert 0 < ttl <= window * 1000 + 1000


async def test_entries_are_joined_unambiguously(make: Make) -> None:
    service = make()
    await call(service, descriptor("per-key", ("a", "b:c")))
    response = await call(service, descriptor("per-key", ("a:b", "c")))
    assert remaining(response) == [2]
    assert len(await redis_keys(service)) == 2


# -- descriptors that are not ours -------------------------------------------------------------


async def test_foreign_descriptors_are_ok_and_warned_once(make: Make, caplog: Any) -> None:
    service = make()
    caplog.set_level(logging.WARNING, logger="aigw.rate_limit")
    foreign = (descriptor(None, ("client_key", SECRET)), descriptor("nope", ("client_key", SECRET)))
    for _ in range(3):
        response = await call(service, foreign[0], client("per-key"), foreign[1])
        assert [s.code for s in response.statuses] == [Response.OK] * 3
        assert not response.statuses[0].HasField("current_limit")
        assert not response.statuses[2].HasField("current_limit")
    assert remaining(response) == [0, 0, 0]
    assert len(caplog.records) == 2
    assert all(SECRET not in r.getMessage() and SECRET not in str(r.__dict__) for r in caplog.records)
    assert len(await redis_keys(service)) == 1


async def test_only_foreign_descriptors_touch_no_redis(make: Make, redis_server: LocalRedis) -> None:  # noqa: F811
    service = make()
    redis_server.kill()
    response = await call(service, descriptor("nope", ("client_key", "x")))
    assert response.overall_code == Response.OK


# -- Redis failing ---------------------------------------------------------------------------


async def timed(coro: Any) -> tuple[Any, float]:
    started = time.monotonic()
    try:
        result = await coro
    except Aborted as exc:
        result = exc
    return result, time.monotonic() - started


async def assert_fail_modes(service: RateLimitService) -> None:
    """open allows, closed aborts UNAVAILABLE, a charge is OK but lost; each within 1 s."""
    allowed, refused, lost = (
        failures("rate_limit", "allowed"),
        failures("rate_limit", "refused"),
        failures("token_charge", "lost"),
    )
    response, took = await timed(call(service, client("per-key")))
    assert took < 1.0
    assert response.overall_code == Response.OK
    assert failures("rate_limit", "allowed") == allowed + 1

    aborted, took = await timed(call(service, client("per-key"), client("strict")))
    assert took < 1.0
    assert isinstance(aborted, Aborted) and aborted.code == grpc.StatusCode.UNAVAILABLE
    assert failures("rate_limit", "refused") == refused + 1
    assert failures("rate_limit", "allowed") == allowed + 1

    charged, took = await timed(call(service, client("budget", hits=40)))
    assert took < 1.0
    assert charged.overall_code == Response.OK
    assert failures("token_charge", "lost") == lost + 1
    assert failures("rate_limit", "refused") == refused + 1

    check, took = await timed(call(service, client("budget", hits=0)))
    assert isinstance(check, Aborted) and check.code == grpc.StatusCode.UNAVAILABLE
    assert failures("rate_limit", "refused") == refused + 2


async def test_redis_killed_meets_each_fail_mode(make: Make, redis_server: LocalRedis) -> None:  # noqa: F811
    service = make()
    redis_server.kill()
    await assert_fail_modes(service)


async def test_redis_paused_meets_each_fail_mode_then_counts_right(
    make: Make,
    redis_server: LocalRedis,  # noqa: F811
) -> None:
    service = make()
    assert remaining(await call(service, client("per-key"))) == [2]
    redis_server.pause()
    await assert_fail_modes(service)
    redis_server.resume()
    # Commands written before the timeout may still run once Redis wakes (the hits count
    # late); let it drain them, then check that every answer matches what Redis holds:
    # an answer a paused Redis owed to a cancelled call must never be read as a later one's.
    await asyncio.sleep(0.3)
    count, spent = await stored(service, "per-key"), await stored(service, "budget")
    assert count in (1, 2, 3) and spent in (0, 40)
    response = await call(service, client("per-key"), client("budget", hits=0))
    assert remaining(response) == [max(0, 3 - count - 1), 100 - spent]
    assert await stored(service, "per-key") == count + 1


async def test_counting_resumes_after_redis_restarts(make: Make, redis_server: LocalRedis) -> None:  # noqa: F811
    service = make()
    assert remaining(await call(service, client("per-key"))) == [2]
    redis_server.kill()
    assert (await call(service, client("per-key"))).overall_code == Response.OK
    redis_server.start()
    # A fresh Redis: empty counters, no script cache (EVALSHA falls back to loading it).
    assert remaining(await call(service, client("per-key"))) == [2]
    assert remaining(await call(service, client("per-key"))) == [1]


# -- over gRPC -------------------------------------------------------------------------------


async def test_through_a_real_grpc_channel(make: Make, redis_server: LocalRedis, tmp_path: Path) -> None:  # noqa: F811
    server = grpc.aio.server()
    add_to_server(server, make())
    address = f"unix://{tmp_path}/rls.sock"
    server.add_insecure_port(address)
    await server.start()
    try:
        async with grpc.aio.insecure_channel(address) as channel:
            stub = rls_pb2_grpc.RateLimitServiceStub(channel)
            codes = [(await stub.ShouldRateLimit(request(client("per-key")))).overall_code for _ in range(4)]
            assert codes == [Response.OK] * 3 + [Response.OVER_LIMIT]
            refused = await stub.ShouldRateLimit(request(client("per-key")))
            assert [h.key for h in refused.response_headers_to_add] == ["retry-after", "x-aigw-limited-by"]

            redis_server.kill()
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await stub.ShouldRateLimit(request(client("strict")), timeout=2)
            assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
            allowed = await stub.ShouldRateLimit(request(client("per-key")), timeout=2)
            assert allowed.overall_code == Response.OK
    finally:
        await server.stop(0)


async def test_first_call_after_an_unnoticed_restart_counts(make: Make, redis_server: LocalRedis) -> None:  # noqa: F811
    service = make()
    assert remaining(await call(service, client("strict"))) == [2]
    redis_server.kill()
    redis_server.start()
    assert remaining(await call(service, client("strict"))) == [2]


async def test_more_calls_at_once_than_connections_wait_for_one(redis_server: LocalRedis) -> None:  # noqa: F811
    """A burst wider than the connection pool is served, not failed as if Redis were down
    (which would refuse every closed limit's requests under load)."""
    from extproc.shared_state import redis_store

    store = RedisStore(RedisSettings(address=redis_server.address, timeout=1.0))
    calls = redis_store.MAX_CONNECTIONS * 3

    async def one() -> str:
        try:
            await store.run("burst", lambda client: client.incr("burst"))
            return "ok"
        except redis_store.SharedStateUnavailable as exc:
            return str(exc)

    try:
        answers = await asyncio.gather(*(one() for _ in range(calls)))
        assert answers == ["ok"] * calls
    finally:
        await store.close()
