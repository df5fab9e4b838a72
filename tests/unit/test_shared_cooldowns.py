"""Retry-After cooldowns shared by replicas through a real Redis (shared_state/cooldowns.py).

Each "replica" is its own BackendHealth + RedisStore + SharedCooldowns, all on one
redis-server; the failure tests kill, restart and pause (SIGSTOP) that server.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import REGISTRY

from extproc import health_server
from extproc.backend_health import BackendHealth
from extproc.config.shared_state import CooldownSharing, FailMode, RedisSettings
from extproc.shared_state.cooldowns import SharedCooldowns
from extproc.shared_state.local_redis import LocalRedis
from extproc.shared_state.redis_store import RedisStore
from tests.redis_server import redis_server  # noqa: F401

NAMES = ("alpha", "beta", "gamma")
INTERVAL = 0.05


@dataclass
class Replica:
    store: RedisStore
    health: BackendHealth
    shared: SharedCooldowns


async def until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Poll `condition` until true; fail after a generous `timeout`."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail("condition not met in time")
        await asyncio.sleep(0.01)


def failures(operation: str, outcome: str) -> float:
    labels = {"operation": operation, "outcome": outcome}
    return REGISTRY.get_sample_value("aigw_shared_state_failures_total", labels) or 0.0


async def pttl(replica: Replica, name: str) -> int:
    return int(await replica.store.client.pttl(replica.store.key("cooldown", name)))


@pytest.fixture
async def replicas(redis_server: LocalRedis) -> AsyncIterator[Callable[..., Replica]]:  # noqa: F811
    made: list[Replica] = []

    def make(
        fail_mode: FailMode = "open",
        start: bool = True,
        health: BackendHealth | None = None,
        interval: float = INTERVAL,
    ) -> Replica:
        store = RedisStore(RedisSettings(address=redis_server.address, timeout=0.1))
        health = health or BackendHealth()
        sharing = CooldownSharing(fail_mode=fail_mode, sync_interval=interval)
        replica = Replica(store, health, SharedCooldowns(store, health, NAMES, sharing))
        if start:
            replica.shared.start()
        made.append(replica)
        return replica

    yield make
    redis_server.resume()
    for replica in made:
        await replica.shared.stop()
        await replica.store.close()


# -- sharing ------------------------------------------------------------------------------


async def test_cooldown_in_one_replica_reaches_the_other(replicas) -> None:
    a, b = replicas(), replicas()
    assert a.health.cool_down("alpha", 30) == pytest.approx(30, abs=0.01)
    await until(lambda: b.health.remaining("alpha") > 0)
    assert 28 < b.health.remaining("alpha") <= 30
    assert 28_000 < await pttl(a, "alpha") <= 30_000
    assert b.health.remaining("beta") == 0.0
    assert await pttl(a, "beta") == -2  # nothing written for backends that are fine


async def test_shorter_cooldown_never_shortens_a_longer_one(replicas) -> None:
    a, b = replicas(), replicas()
    a.health.cool_down("alpha", 60)
    assert await a.shared.flush() is True
    b.health.cool_down("alpha", 5)
    assert await b.shared.flush() is True
    assert 58_000 < await pttl(a, "alpha") <= 60_000  # Redis kept the longer one
    # B's own 5 s grows to A's 60 s on its next sync; A's 60 s is left alone.
    await until(lambda: b.health.remaining("alpha") > 30)
    assert 58 < b.health.remaining("alpha") <= 60
    assert 58 < a.health.remaining("alpha") <= 60


async def test_a_replica_keeps_its_own_longer_cooldown(replicas) -> None:
    b_health = BackendHealth()
    b_health.cool_down("alpha", 120)  # before sharing started: only B knows it
    a, b = replicas(), replicas(health=b_health)
    a.health.cool_down("alpha", 10)
    assert await a.shared.flush() is True
    ticks = b.shared.ticks
    await until(lambda: b.shared.ticks >= ticks + 2)  # B has read A's 10 s at least once
    assert 118 < b.health.remaining("alpha") <= 120
    assert 8_000 < await pttl(a, "alpha") <= 10_000


async def test_adopted_cooldowns_are_not_written_back(replicas) -> None:
    a, b = replicas(), replicas()
    a.health.cool_down("beta", 2)
    await until(lambda: b.health.remaining("beta") > 0)
    ticks = b.shared.ticks
    await until(lambda: b.shared.ticks >= ticks + 2)
    # adopt() does not call the listener: B never started a write.
    assert (b.shared._pending, b.shared._writers) == ({}, {})
    await until(lambda: a.health.remaining("beta") == 0, timeout=5)
    assert await pttl(a, "beta") == -2  # expired in Redis too: nobody renewed it


async def test_unknown_names_and_expired_cooldowns_are_not_written(replicas) -> None:
    a = replicas(start=False)
    a.health.cool_down("not-a-backend", 30)
    a.health.cool_down("gamma", 0.001)
    await asyncio.sleep(0.01)  # gamma's cooldown is over before anything is written
    assert await a.shared.flush() is True
    assert await pttl(a, "gamma") == -2
    assert await a.store.client.keys("*") == []


async def test_written_once_started_when_recorded_before(replicas) -> None:
    a, b = replicas(start=False), replicas()
    a.health.cool_down("gamma", 30)
    a.shared.start()
    await until(lambda: b.health.remaining("gamma") > 0)
    assert 28 < b.health.remaining("gamma") <= 30


async def test_stop_removes_the_listener_and_any_hold(replicas, redis_server: LocalRedis) -> None:  # noqa: F811
    a = replicas(fail_mode="closed")
    redis_server.kill()
    await until(lambda: a.health.remaining("alpha") > 0)
    await a.shared.stop()
    assert [a.health.remaining(n) for n in NAMES] == [0.0, 0.0, 0.0]
    a.health.cool_down("beta", 30)
    assert a.shared._pending == {}


async def test_stop_always_ends_the_loop(replicas) -> None:
    """On Python 3.11 a cancellation can be swallowed inside a Redis call (wait_for); stop()
    must still end the loop, whenever it lands. Syncing nonstop makes that likely."""
    a = replicas(start=False, interval=0.001)
    for _ in range(100):
        a.shared.start()
        await asyncio.sleep(0.005)
        await asyncio.wait_for(a.shared.stop(), 2)
    a.shared.start()  # and it can start again
    b = replicas()
    a.health.cool_down("alpha", 30)
    await until(lambda: b.health.remaining("alpha") > 0)


# -- Redis failing ------------------------------------------------------------------------


async def test_redis_down_fail_open_keeps_local_cooldowns(replicas, redis_server: LocalRedis) -> None:  # noqa: F811
    a = replicas(fail_mode="open")
    sync_local, write_local = failures("cooldown_sync", "local"), failures("cooldown_write", "local")
    redis_server.kill()
    await until(lambda: failures("cooldown_sync", "local") > sync_local)
    assert a.health.cool_down("alpha", 30) == pytest.approx(30, abs=0.01)
    await until(lambda: failures("cooldown_write", "local") > write_local)
    assert 28 < a.health.remaining("alpha") <= 30
    assert a.health.remaining("beta") == 0.0  # open: nothing else is taken out
    assert not a.shared._task.done()


async def test_redis_down_fail_closed_reports_every_backend_cooling(
    replicas,
    redis_server: LocalRedis,  # noqa: F811
) -> None:
    a = replicas(fail_mode="closed")
    a.health.cool_down("gamma", 30)
    await a.shared.flush()
    refused = failures("cooldown_sync", "refused")
    redis_server.kill()
    await until(lambda: a.health.remaining("alpha") > 0)
    assert a.health.remaining("alpha") == INTERVAL
    assert a.health.remaining("beta") == INTERVAL
    assert 28 < a.health.remaining("gamma") <= 30  # a longer cooldown still shows as it is
    assert failures("cooldown_sync", "refused") > refused
    async with TestClient(TestServer(health_server.build_app(a.health, set(NAMES)))) as client:
        answer = await client.get("/", headers={"Host": "alpha"})
        assert answer.status == 503  # Envoy's health check takes the host out

        redis_server.start()  # same objects, same port: back to normal on the next sync
        await until(lambda: a.health.remaining("alpha") == 0)
        assert a.health.remaining("beta") == 0.0
        assert 28 < a.health.remaining("gamma") <= 30
        answer = await client.get("/", headers={"Host": "alpha"})
        assert answer.status == 200


async def test_cooldown_seen_while_redis_was_down_reaches_others_after(
    replicas,
    redis_server: LocalRedis,  # noqa: F811
) -> None:
    a, b = replicas(), replicas()
    redis_server.kill()
    written = failures("cooldown_write", "local")
    a.health.cool_down("beta", 30)
    await until(lambda: failures("cooldown_write", "local") > written)
    assert b.health.remaining("beta") == 0.0
    redis_server.start()  # empty: the restarted Redis has no keys and no scripts
    await until(lambda: b.health.remaining("beta") > 0)
    assert 25 < b.health.remaining("beta") <= 30
    assert a.shared._pending == {}


async def test_paused_redis_never_blocks_the_caller_or_the_loop(
    replicas,
    redis_server: LocalRedis,  # noqa: F811
) -> None:
    a, b = replicas(fail_mode="closed"), replicas()
    redis_server.pause()
    started = time.monotonic()
    a.health.cool_down("alpha", 30)
    assert time.monotonic() - started < 1.0  # the listener only schedules the write
    ticks = a.shared.ticks
    await until(lambda: a.shared.ticks >= ticks + 3)  # each sync gives up; the loop goes on
    assert a.health.remaining("beta") == INTERVAL
    assert 28 < a.health.remaining("alpha") <= 30
    redis_server.resume()
    await until(lambda: b.health.remaining("alpha") > 0)
    assert 25 < b.health.remaining("alpha") <= 30
    await until(lambda: a.health.remaining("beta") == 0)


# -- BackendHealth's side -----------------------------------------------------------------


def test_backend_health_listener_hold_and_adopt() -> None:
    now = [100.0]
    health = BackendHealth(clock=lambda: now[0])
    heard: list[tuple[str, float]] = []
    health.listen(lambda name, seconds: heard.append((name, seconds)))
    assert health.cool_down("a", 10) == 10
    assert health.cool_down("a", 0) == 10  # nothing to tell for a zero cooldown
    assert health.adopt("b", 20) == 20
    assert heard == [("a", 10)]
    health.hold(["a", "c"], 0.5)
    assert (health.remaining("a"), health.remaining("b"), health.remaining("c")) == (10, 20, 0.5)
    health.release()
    assert health.remaining("c") == 0.0
    now[0] = 115.0
    assert (health.remaining("a"), health.remaining("b")) == (0.0, 5.0)
