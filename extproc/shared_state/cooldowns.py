"""Retry-After cooldowns shared by every gateway replica through Redis.

A replica that sees a 429 records the cooldown in its own `BackendHealth` at once (the hot
path never waits on Redis); the listener installed here then copies it to Redis in the
background, as key `<prefix>:cooldown:<backend>` with the cooldown as its TTL. Every
`sync_interval` each replica reads the TTLs of all backends in one round trip and extends
its own deadlines with them (`BackendHealth.adopt`, which is not copied back, so there is
no write loop). TTLs are relative, so the replicas' clocks need not agree.

A cooldown is only ever lengthened: the write is a script that sets the key only when its
TTL is longer than the one already there, and local deadlines never shorten either.

When Redis fails (`sharing.fail_mode`):
- open: each replica keeps the cooldowns it has (its own, and those it already read);
- closed: every shared backend reports cooling (`BackendHealth.hold`), so Envoy's health
  checks take them out and requests meet the gateway's "all backends cooling" answer.
Either way the next sync that reaches Redis restores the normal state. A write that fails
stays pending and is retried every sync, so a cooldown seen during an outage still
reaches the other replicas afterwards (with the time it has left by then).

With `serve --workers` each worker process runs its own `SharedCooldowns` over the same
memory-mapped deadlines: each copies what it records and adopts what the others wrote
(one read per worker per interval). A hold is per process, so for up to one interval
after Redis fails some workers may still answer health checks from their deadlines.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable

import redis.asyncio as aioredis

from ..backend_health import BackendHealth
from ..config.shared_state import CooldownSharing
from .redis_store import RedisStore, SharedStateUnavailable

log = logging.getLogger("aigw.shared_state")

# Set the key's TTL to ARGV[1] ms unless it already has a longer one; the TTL now.
# PTTL is -2 for no key and -1 for a key without expiry (never ours): both are replaced.
_EXTEND = """
local ttl = redis.call('PTTL', KEYS[1])
local want = tonumber(ARGV[1])
if ttl < want then
  redis.call('SET', KEYS[1], '1', 'PX', want)
  return want
end
return ttl
"""


class SharedCooldowns:
    def __init__(
        self,
        store: RedisStore,
        health: BackendHealth,
        names: Iterable[str],
        sharing: CooldownSharing,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._health = health
        self._sharing = sharing
        self._clock = clock
        self._names = tuple(sorted(set(names)))
        self._keys = {name: store.key("cooldown", name) for name in self._names}
        self._extend = store.client.register_script(_EXTEND)
        # Cooldowns not yet in Redis: backend -> deadline on `clock` (the longest seen).
        self._pending: dict[str, float] = {}
        self._writers: dict[str, asyncio.Task[None]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        # Checked by the loop and the writers as well as cancelling them: on Python 3.11
        # `asyncio.wait_for` can swallow a cancellation that lands as the call completes.
        self._stopped = False
        # Syncs attempted so far (reached Redis or not): shows the loop keeps its pace.
        self.ticks = 0
        health.listen(self._recorded)

    # -- writing ----------------------------------------------------------------------

    def _recorded(self, name: str, seconds: float) -> None:
        """The listener: runs on the request's hot path, so it only notes the cooldown and
        schedules the write."""
        if name not in self._keys:
            return
        deadline = self._clock() + seconds
        if deadline > self._pending.get(name, 0.0):
            self._pending[name] = deadline
        try:
            on_our_loop = asyncio.get_running_loop() is self._loop
        except RuntimeError:  # no loop in this thread: the next sync writes it
            on_our_loop = False
        if on_our_loop:
            self._start_writer(name)

    def _start_writer(self, name: str) -> None:
        """At most one write in flight per backend; it takes whatever is pending when it runs."""
        writer = self._writers.get(name)
        if writer is None or writer.done():
            self._writers[name] = asyncio.create_task(self._write(name), name=f"cooldown-write-{name}")

    async def _write(self, name: str) -> None:
        while name in self._pending and not self._stopped:
            deadline = self._pending.pop(name)
            ms = int((deadline - self._clock()) * 1000)
            if ms <= 0:
                continue  # over before Redis heard of it: nothing to share
            try:
                await self._store.run("cooldown_write", self._set_longer(self._keys[name], ms))
            except SharedStateUnavailable as exc:
                # Keep it for the next sync; a longer one recorded meanwhile wins.
                self._pending[name] = max(deadline, self._pending.get(name, 0.0))
                self._store.failed("cooldown_write", "local", exc)
                return

    async def flush(self) -> bool:
        """Write every pending cooldown now and wait for the writes (each bounded by the
        store's timeout); True when none is left pending. For shutdown and tests."""
        for name in list(self._pending):
            self._start_writer(name)
        await asyncio.gather(*self._writers.values(), return_exceptions=True)
        return not self._pending

    def _set_longer(self, key: str, ms: int) -> Callable[[aioredis.Redis], Awaitable[int]]:
        async def call(client: aioredis.Redis) -> int:
            return int(await self._extend(keys=[key], args=[ms], client=client))

        return call

    # -- reading ----------------------------------------------------------------------

    async def _read_ttls(self, client: aioredis.Redis) -> list[int]:
        pipe = client.pipeline(transaction=False)
        for name in self._names:
            pipe.pttl(self._keys[name])
        return [int(ttl) for ttl in await pipe.execute()]

    async def sync(self) -> None:
        """One round: retry pending writes, then adopt every cooldown other replicas wrote."""
        self.ticks += 1
        for name in list(self._pending):
            self._start_writer(name)
        if not self._names:
            return
        try:
            ttls = await self._store.run("cooldown_sync", self._read_ttls)
        except SharedStateUnavailable as exc:
            self._unavailable(exc)
            return
        self._health.release()
        for name, ttl in zip(self._names, ttls, strict=True):
            if ttl > 0:
                self._health.adopt(name, ttl / 1000)

    def _unavailable(self, exc: SharedStateUnavailable) -> None:
        if self._sharing.fail_mode == "closed":
            self._health.hold(self._names, self._sharing.sync_interval)
            self._store.failed("cooldown_sync", "refused", exc)
        else:
            self._store.failed("cooldown_sync", "local", exc)

    # -- lifecycle --------------------------------------------------------------------

    async def run(self) -> None:
        """Sync every `sync_interval` until cancelled. A sync is bounded by the store's
        timeout, so a stuck Redis only stretches a round to that bound."""
        self._loop = asyncio.get_running_loop()
        interval = self._sharing.sync_interval
        while not self._stopped:
            started = self._loop.time()
            try:
                await self.sync()
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug must not end sharing for the life of the process
                log.exception("cooldown sync failed")
            await asyncio.sleep(max(0.0, interval - (self._loop.time() - started)))

    def start(self) -> asyncio.Task[None]:
        """Start the loop on the running event loop (again after `stop`, too); the task is
        also kept for `stop`."""
        self._loop = asyncio.get_running_loop()
        self._stopped = False
        self._health.listen(self._recorded)
        self._task = asyncio.create_task(self.run(), name="cooldown-sync")
        return self._task

    async def stop(self) -> None:
        """Stop syncing and writing; this replica goes back to its own cooldowns alone."""
        self._stopped = True
        self._health.listen(None)
        tasks = [t for t in (self._task, *self._writers.values()) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._task = None
        self._writers.clear()
        self._health.release()
