"""The processor's one connection pool to Redis, and the rule every shared policy follows
when Redis fails: an answer within `timeout`, or `SharedStateUnavailable`.

No call waits on Redis longer than `timeout` (connect included), and none is retried
after a timeout: the caller decides what a request meets instead (its policy's fail mode). redis-py
opens a new connection on the next call after a broken one, so reconnection after Redis
comes back needs nothing from us. Failures are counted (`aigw_shared_state_failures_total`)
and logged at most once per operation every 10 s, with one line when Redis answers again.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import redis.asyncio as aioredis
from prometheus_client import Counter
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError, RedisError

from ..config.shared_state import RedisSettings

log = logging.getLogger("aigw.shared_state")

T = TypeVar("T")

FAILURES = Counter(
    "aigw_shared_state_failures",
    "Redis calls that failed or timed out, by operation and what the request met instead "
    "(allowed, refused, local: this replica's own state).",
    ("operation", "outcome"),
)

_LOG_EVERY = 10.0
# Connections per processor process (each call holds one for a round trip).
MAX_CONNECTIONS = 64


class SharedStateUnavailable(Exception):
    """Redis did not answer in time, refused the connection or failed the command."""


class RedisStore:
    def __init__(self, settings: RedisSettings, password: str | None = None) -> None:
        self.settings = settings
        # More calls at once than connections wait for one (within the timeout) instead
        # of failing: a plain pool raises "Too many connections", which would meet the
        # policy's fail mode under load with Redis perfectly well.
        pool = aioredis.BlockingConnectionPool(
            host=settings.host,
            port=settings.port,
            db=settings.db,
            password=password,
            socket_timeout=settings.timeout,
            socket_connect_timeout=settings.timeout,
            # One retry, on a broken connection only: a pooled connection Redis closed
            # (it restarted) fails its first command, and a fresh one then succeeds. Never
            # on a timeout: the command may have run, and a counter would count twice.
            retry=Retry(NoBackoff(), 1, supported_errors=(ConnectionError,)),
            max_connections=MAX_CONNECTIONS,
            timeout=settings.timeout,
        )
        self._client = aioredis.Redis.from_pool(pool)  # closing the client closes the pool
        self._prefix = settings.key_prefix
        self._logged: dict[str, float] = {}
        self._failing: set[str] = set()

    @property
    def client(self) -> aioredis.Redis:
        return self._client

    def key(self, *parts: str) -> str:
        """`<prefix>:<part>:<part>...`; parts are the caller's (names from config)."""
        return ":".join((self._prefix, *parts))

    @staticmethod
    def digest(value: str) -> str:
        """A stable stand-in for a client-supplied value (an API key) in a key name: Redis
        never holds the key itself."""
        return hashlib.sha256(value.encode()).hexdigest()[:32]

    async def run(self, operation: str, call: Callable[[aioredis.Redis], Awaitable[T]]) -> T:
        """`call(client)` within the timeout, or SharedStateUnavailable."""
        try:
            # A second bound on top of the socket timeouts: a pool waiting for a free
            # connection, or a half-open TCP connection, must not hold a request either.
            result = await asyncio.wait_for(call(self._client), self.settings.timeout * 2)
        except (TimeoutError, RedisError, OSError) as exc:
            raise SharedStateUnavailable(f"{type(exc).__name__}: {exc}") from None
        if operation in self._failing:
            self._failing.discard(operation)
            log.info("Redis answers again", extra={"fields": {"operation": operation}})
        return result

    def failed(self, operation: str, outcome: str, error: BaseException) -> None:
        """Count a failure and what the request met instead; log it now and then."""
        FAILURES.labels(operation, outcome).inc()
        self._failing.add(operation)
        now = time.monotonic()
        if now - self._logged.get(operation, -_LOG_EVERY) >= _LOG_EVERY:
            self._logged[operation] = now
            log.warning(
                "Redis unavailable; requests meet the policy's fail mode",
                extra={
                    "fields": {
                        "operation": operation,
                        "outcome": outcome,
                        "redis": self.settings.address,
                        "error": str(error)[:200],
                    }
                },
            )

    async def close(self) -> None:
        await self._client.aclose()
