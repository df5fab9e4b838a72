"""The endpoint picker of one model-server pool: scrape each server's load, pick where a
request goes.

Envoy routes a pool's requests with the override-host load-balancing policy: the
route-level filter puts `pick(...).header_value()` (primary first, then the fallbacks
Envoy's retries walk through) in `x-gateway-destination-endpoint`. Picking is
synchronous and does no I/O; scraping runs in the background, one task per endpoint, so
a server that hangs until the timeout does not delay the others' scrapes.

The choice follows the Inference Extension's default scheduler:
  1. endpoints with fresh metrics that are not saturated (waiting >= queue_threshold or
     KV use >= kv_threshold), with the requested LoRA adapter's holders first, then those
     with a free adapter slot, then the rest; within a tier, the shortest queue (waiting
     plus requests this gateway sent since the last scrape), then the least KV use;
  2. fresh but saturated endpoints, least bad first; a Sheddable request is refused
     (`Shed`) instead when there is no endpoint in 1;
  3. endpoints without fresh metrics (last scrape failed or too old), never trusted.
Ties rotate (a counter advanced per pick), so equal endpoints share the traffic. With no
fresh metrics at all, the order is plain round robin and nothing is shed.

Each worker process (`serve --workers`) runs its own picker: in-flight counts are that
worker's, and the scrapes are one per worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum

import aiohttp

from extproc import metrics
from extproc.inference import dns
from extproc.inference.metrics_scrape import ScrapeError, ServerMetrics, scrape

log = logging.getLogger("aigw.inference")

REASON_LEAST_LOADED = "least-loaded"
REASON_AFFINITY = "adapter-affinity"
REASON_ROUND_ROBIN = "round-robin (no fresh metrics)"

MIN_SCRAPE_INTERVAL_S = 0.05

SessionFactory = Callable[[], aiohttp.ClientSession]
Resolver = Callable[[str, int], Awaitable[list[str]]]
Clock = Callable[[], float]


@dataclass(frozen=True)
class PoolSpec:
    name: str
    endpoints: tuple[str, ...]  # "ip:port" (an IPv6 address in brackets), resolved already
    metrics_path: str = "/metrics"
    scrape_interval_s: float = 0.2
    stale_after_s: float = 0.0  # 0: three scrape intervals
    queue_threshold: int = 5  # waiting requests at which an endpoint counts as saturated
    kv_threshold: float = 0.8  # KV-cache use (0..1) at which an endpoint counts as saturated
    scrape_timeout_s: float = 0.5
    # DNS names among the configured endpoints, as (host, port): resolved again every
    # resolve_interval_s, as Envoy re-resolves its STRICT_DNS cluster (dns.py).
    names: tuple[tuple[str, int], ...] = ()
    # The endpoints given as addresses, which stay whatever the names resolve to.
    fixed_endpoints: tuple[str, ...] = ()
    resolve_interval_s: float = dns.REFRESH_S

    def __post_init__(self) -> None:
        if not self.endpoints:
            raise ValueError(f"pool {self.name!r}: no endpoints")
        if len(set(self.endpoints)) != len(self.endpoints):
            raise ValueError(f"pool {self.name!r}: duplicate endpoints")
        if not self.metrics_path.startswith("/"):
            raise ValueError(f"pool {self.name!r}: metrics_path must start with '/'")
        if self.scrape_interval_s < MIN_SCRAPE_INTERVAL_S:
            raise ValueError(f"pool {self.name!r}: scrape_interval_s must be >= {MIN_SCRAPE_INTERVAL_S}")
        if self.scrape_timeout_s <= 0 or self.queue_threshold < 1 or not 0 < self.kv_threshold <= 1:
            raise ValueError(
                f"pool {self.name!r}: scrape_timeout_s > 0, queue_threshold >= 1, 0 < kv_threshold <= 1"
            )
        if self.stale_after_s < 0:
            raise ValueError(f"pool {self.name!r}: stale_after_s must be >= 0")
        if self.stale_after_s == 0:
            object.__setattr__(self, "stale_after_s", 3 * self.scrape_interval_s)


class Criticality(StrEnum):
    CRITICAL = "Critical"
    STANDARD = "Standard"
    SHEDDABLE = "Sheddable"


@dataclass(frozen=True)
class Pick:
    endpoints: list[str]  # primary first, then every other endpoint, best first
    reason: str  # REASON_LEAST_LOADED | REASON_AFFINITY | REASON_ROUND_ROBIN

    @property
    def primary(self) -> str:
        return self.endpoints[0]

    def header_value(self) -> str:
        """For `x-gateway-destination-endpoint`."""
        return ",".join(self.endpoints)


class Shed(Exception):
    """Every endpoint with fresh metrics is saturated and the request is Sheddable."""

    def __init__(self, pool: str, retry_after_s: int = 1) -> None:
        super().__init__(f"inference pool {pool!r} is saturated")
        self.pool = pool
        self.retry_after_s = retry_after_s


@dataclass(frozen=True)
class EndpointState:
    endpoint: str
    metrics: ServerMetrics | None  # the last successful scrape's
    fresh: bool  # trusted: the last scrape succeeded, at most stale_after_s ago
    age_s: float | None  # since the last successful scrape; None when there was none
    last_error: str | None  # why the last scrape failed; None when it succeeded
    in_flight: int  # requests this worker sent there and that have not finished
    since_scrape: int  # of those, started after the last scrape began (not in its numbers)
    saturated: bool


class _Endpoint:
    """Mutable state of one endpoint; only the event loop's thread touches it."""

    __slots__ = (
        "address",
        "in_flight",
        "index",
        "last_error",
        "last_success",
        "metrics",
        "since_scrape",
        "started_total",
    )

    def __init__(self, address: str, index: int) -> None:
        self.address = address
        self.index = index
        self.metrics: ServerMetrics | None = None
        self.last_success: float | None = None
        self.last_error: str | None = None
        self.in_flight = 0
        self.since_scrape = 0
        self.started_total = 0  # ever; a scrape remembers it to know what started after it

    def fresh(self, now: float, stale_after_s: float) -> bool:
        return (
            self.metrics is not None
            and self.last_error is None
            and self.last_success is not None
            and now - self.last_success <= stale_after_s
        )

    def queue(self) -> int:
        waiting = self.metrics.waiting if self.metrics else 0
        return waiting + self.since_scrape

    def kv(self) -> float:
        return self.metrics.kv_usage if self.metrics else 0.0


class EndpointPicker:
    def __init__(
        self,
        pool: PoolSpec,
        session_factory: SessionFactory | None = None,
        clock: Clock = time.monotonic,
        resolver: Resolver = dns.resolve_async,
    ) -> None:
        self.pool = pool
        self._session_factory = session_factory or self._default_session
        self._clock = clock
        self._resolver = resolver
        self._endpoints = [_Endpoint(address, i) for i, address in enumerate(pool.endpoints)]
        self._by_address = {ep.address: ep for ep in self._endpoints}
        self._next_index = len(self._endpoints)
        # What each DNS name resolved to last, so a failed lookup keeps its servers.
        self._resolved: dict[tuple[str, int], list[str]] = {}
        self._scrapers: dict[str, asyncio.Task[None]] = {}
        self._turn = 0  # advanced per pick; rotates ties
        self._since = clock()  # the age reported for an endpoint never scraped
        self._session: aiohttp.ClientSession | None = None
        self._tasks: list[asyncio.Task[None]] = []

    # --- lifecycle -----------------------------------------------------------------

    def _default_session(self) -> aiohttp.ClientSession:
        # One connection per server is kept alive between scrapes; no proxy from the env.
        return aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self.pool.scrape_timeout_s),
            connector=aiohttp.TCPConnector(limit_per_host=1),
        )

    async def start(self) -> None:
        """Scrape every endpoint in the background on the running loop, the first time now."""
        if self._tasks:
            return
        self._session = self._session_factory()
        self._since = self._clock()
        for ep in self._endpoints:
            self._start_scraping(ep)
        self._tasks = [*self._scrapers.values()]
        if self.pool.names:
            self._tasks.append(
                asyncio.create_task(self._resolve_loop(), name=f"inference-resolve {self.pool.name}")
            )

    def _start_scraping(self, ep: _Endpoint) -> None:
        self._scrapers[ep.address] = asyncio.create_task(
            self._scrape_loop(ep), name=f"inference-scrape {self.pool.name} {ep.address}"
        )

    async def stop(self) -> None:
        tasks, self._tasks = [*self._tasks, *self._scrapers.values()], []
        self._scrapers = {}
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _scrape_loop(self, ep: _Endpoint) -> None:
        loop = asyncio.get_running_loop()
        while True:
            began = loop.time()
            await self._scrape(ep)
            await asyncio.sleep(max(0.0, self.pool.scrape_interval_s - (loop.time() - began)))

    # --- servers that come and go (DNS names) ----------------------------------------

    async def _resolve_loop(self) -> None:
        while True:
            await asyncio.sleep(self.pool.resolve_interval_s)
            await self.resolve_names()

    async def resolve_names(self) -> None:
        """Look the pool's names up again and follow the change: new servers are scraped
        (and named once their metrics are fresh), gone ones are dropped. A name that fails
        to resolve keeps its last servers (Envoy does the same)."""
        named: list[str] = []
        for host, port in self.pool.names:
            try:
                found = await self._resolver(host, port)
            except OSError as exc:
                log.warning(
                    "inference pool name did not resolve",
                    extra={"fields": {"pool": self.pool.name, "host": host, "error": str(exc)}},
                )
                found = self._resolved.get((host, port), [])
            else:
                self._resolved[(host, port)] = found
            named += found
        wanted = list(dict.fromkeys([*self.pool.fixed_endpoints, *named]))
        if wanted and wanted != [ep.address for ep in self._endpoints]:
            self.set_endpoints(wanted)

    def set_endpoints(self, addresses: list[str]) -> None:
        """The pool's servers are now `addresses`: known ones keep their state."""
        keep = {ep.address: ep for ep in self._endpoints}
        endpoints = []
        for address in addresses:
            ep = keep.pop(address, None)
            if ep is None:
                ep = _Endpoint(address, self._next_index)
                self._next_index += 1
                if self._session is not None:  # running: scrape it from now on
                    self._start_scraping(ep)
            endpoints.append(ep)
        for gone in keep.values():
            task = self._scrapers.pop(gone.address, None)
            if task is not None:
                task.cancel()
        log.info(
            "inference pool servers changed",
            extra={"fields": {"pool": self.pool.name, "endpoints": ",".join(addresses)}},
        )
        self._endpoints = endpoints
        self._by_address = {ep.address: ep for ep in endpoints}

    async def scrape_all(self) -> None:
        """One round over every endpoint, concurrently (the loops do this on their own;
        for tests and for a first round before traffic)."""
        await asyncio.gather(*(self._scrape(ep) for ep in self._endpoints))

    async def _scrape(self, ep: _Endpoint) -> None:
        session = self._session
        if session is None:
            session = self._session = self._session_factory()
        mark = ep.started_total
        url = f"http://{ep.address}{self.pool.metrics_path}"
        try:
            result = await scrape(session, url, self.pool.scrape_timeout_s)
        except ScrapeError as exc:
            self.record_failure(ep.address, str(exc))
        except Exception as exc:  # never let one bad page end the endpoint's scrape loop
            log.exception("inference scrape crashed", extra={"fields": {"pool": self.pool.name, "url": url}})
            self.record_failure(ep.address, f"{type(exc).__name__}: {exc}")
        else:
            self.record_success(ep.address, result, started_mark=mark)

    # --- scrape results (public so tests and other feeds can set them) ---------------

    def record_success(self, endpoint: str, result: ServerMetrics, started_mark: int | None = None) -> None:
        """`started_mark`: the endpoint's started count when the scrape was sent; requests
        started since are not in `result`. None: all of them are."""
        ep = self._by_address.get(endpoint)
        if ep is None:  # dropped while its scrape was under way
            return
        if ep.last_error is not None:
            log.info("inference endpoint scraped again", extra={"fields": self._fields(ep)})
        now = self._clock()
        ep.metrics = result
        ep.last_success = now
        ep.last_error = None
        started_since = 0 if started_mark is None else ep.started_total - started_mark
        ep.since_scrape = max(0, min(ep.in_flight, started_since))
        metrics.inference_scrape_age(self.pool.name, endpoint, 0.0)

    def record_failure(self, endpoint: str, error: str) -> None:
        ep = self._by_address.get(endpoint)
        if ep is None:
            return
        if ep.last_error is None:  # log the change, not every interval
            log.warning(
                "inference endpoint scrape failed", extra={"fields": {**self._fields(ep), "error": error}}
            )
        ep.last_error = error
        metrics.inference_scrape_failure(self.pool.name, endpoint)
        metrics.inference_scrape_age(self.pool.name, endpoint, self._age(ep, self._clock()))

    def _fields(self, ep: _Endpoint) -> dict[str, str]:
        return {"pool": self.pool.name, "endpoint": ep.address}

    # --- in-flight accounting ------------------------------------------------------

    def started(self, endpoint: str) -> None:
        """The gateway sent a request to `endpoint` (call once per pick, for the primary)."""
        ep = self._by_address.get(endpoint)
        if ep is not None:
            ep.in_flight += 1
            ep.since_scrape += 1
            ep.started_total += 1

    def finished(self, endpoint: str) -> None:
        """That request ended (however). Counted against the oldest requests first: those
        the last scrape already saw."""
        ep = self._by_address.get(endpoint)
        if ep is not None and ep.in_flight > 0:
            ep.in_flight -= 1
            ep.since_scrape = min(ep.since_scrape, ep.in_flight)

    # --- picking -------------------------------------------------------------------

    def _saturated(self, ep: _Endpoint) -> bool:
        # The server's own numbers: requests sent since the scrape mostly run rather than
        # queue, so counting them here would shed while the servers still have room.
        m = ep.metrics
        return m is not None and (
            m.waiting >= self.pool.queue_threshold or m.kv_usage >= self.pool.kv_threshold
        )

    def _age(self, ep: _Endpoint, now: float) -> float:
        return max(0.0, now - (ep.last_success if ep.last_success is not None else self._since))

    def _rotation(self, ep: _Endpoint) -> int:
        return (ep.index - self._turn) % len(self._endpoints)

    @staticmethod
    def _affinity_tier(ep: _Endpoint, adapter: str | None) -> int:
        if adapter is None or ep.metrics is None:
            return 0
        if ep.metrics.has_adapter(adapter) or adapter in ep.metrics.base_models:
            return 0  # loaded already, or the server's own model (which needs no slot)
        return 1 if ep.metrics.has_free_lora_slot() else 2

    def pick(self, adapter: str | None, criticality: Criticality) -> Pick:
        """Where to send a request: raises Shed for a Sheddable one when every endpoint
        with fresh metrics is saturated."""
        now = self._clock()
        self._turn += 1
        stale_after = self.pool.stale_after_s
        fresh: list[_Endpoint] = []
        stale: list[_Endpoint] = []
        for ep in self._endpoints:
            (fresh if ep.fresh(now, stale_after) else stale).append(ep)
            metrics.inference_scrape_age(self.pool.name, ep.address, self._age(ep, now))
        stale.sort(key=self._rotation)
        if not fresh:
            metrics.inference_round_robin(self.pool.name)
            return self._picked([ep.address for ep in stale], REASON_ROUND_ROBIN)

        ready = [ep for ep in fresh if not self._saturated(ep)]
        if not ready and criticality is Criticality.SHEDDABLE:
            # Fresh numbers arrive every scrape interval (well under a second).
            raise Shed(self.pool.name, retry_after_s=1)
        busy = [ep for ep in fresh if self._saturated(ep)]
        ready.sort(key=lambda ep: (self._affinity_tier(ep, adapter), ep.queue(), ep.kv(), self._rotation(ep)))
        busy.sort(key=lambda ep: (ep.queue(), ep.kv(), self._rotation(ep)))
        order = ready + busy + stale
        primary = order[0].metrics
        affine = adapter is not None and bool(ready) and primary is not None and primary.has_adapter(adapter)
        reason = REASON_AFFINITY if affine else REASON_LEAST_LOADED
        return self._picked([ep.address for ep in order], reason)

    def _picked(self, order: list[str], reason: str) -> Pick:
        metrics.inference_pick(self.pool.name, order[0], reason)
        return Pick(endpoints=order, reason=reason)

    def snapshot(self) -> list[EndpointState]:
        now = self._clock()
        return [
            EndpointState(
                endpoint=ep.address,
                metrics=ep.metrics,
                fresh=ep.fresh(now, self.pool.stale_after_s),
                age_s=None if ep.last_success is None else max(0.0, now - ep.last_success),
                last_error=ep.last_error,
                in_flight=ep.in_flight,
                since_scrape=ep.since_scrape,
                saturated=self._saturated(ep),
            )
            for ep in self._endpoints
        ]
