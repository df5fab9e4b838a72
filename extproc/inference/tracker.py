"""What the endpoint picker (picker.py) knows of one model-server pool: each server's load
as its /metrics page last said, and the requests this worker sent there since.

Scraping runs in the background, one task per endpoint, so a server that hangs until the
timeout does not delay the others' scrapes. The pool's DNS names are looked up again on
an interval, as Envoy re-resolves its STRICT_DNS cluster, and the servers they add or drop
are followed. Everything here is one worker's (`serve --workers`): its in-flight counts
and its own scrapes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import aiohttp

from extproc import metrics
from extproc.inference import dns
from extproc.inference.metrics_scrape import ScrapeError, ServerMetrics, scrape

log = logging.getLogger("aigw.inference")

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


class Endpoint:
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


class EndpointTracker:
    """A pool's endpoints and their state: scrapes, DNS changes, in-flight accounting.
    EndpointPicker (picker.py) chooses among them."""

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
        self._endpoints = [Endpoint(address, i) for i, address in enumerate(pool.endpoints)]
        self._by_address = {ep.address: ep for ep in self._endpoints}
        self._next_index = len(self._endpoints)
        # What each DNS name resolved to last, so a failed lookup keeps its servers.
        self._resolved: dict[tuple[str, int], list[str]] = {}
        self._scrapers: dict[str, asyncio.Task[None]] = {}
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

    def _start_scraping(self, ep: Endpoint) -> None:
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

    async def _scrape_loop(self, ep: Endpoint) -> None:
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
                ep = Endpoint(address, self._next_index)
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

    async def _scrape(self, ep: Endpoint) -> None:
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

    def _fields(self, ep: Endpoint) -> dict[str, str]:
        return {"pool": self.pool.name, "endpoint": ep.address}

    def _age(self, ep: Endpoint, now: float) -> float:
        return max(0.0, now - (ep.last_success if ep.last_success is not None else self._since))

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
