"""The endpoint picker of one model-server pool: scrape each server's load, pick where a
request goes.

Envoy routes a pool's requests with the override-host load-balancing policy: the
route-level filter puts `pick(...).header_value()` (primary first, then the fallbacks
Envoy's retries walk through) in `x-gateway-destination-endpoint`. Picking is
synchronous and does no I/O; scraping runs in the background (tracker.py), one task per
endpoint, so a server that hangs until the timeout does not delay the others' scrapes.

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

import time
from dataclasses import dataclass
from enum import StrEnum

from extproc import metrics
from extproc.inference import dns
from extproc.inference.metrics_scrape import ServerMetrics
from extproc.inference.tracker import Clock, Endpoint, EndpointTracker, PoolSpec, Resolver, SessionFactory

REASON_LEAST_LOADED = "least-loaded"
REASON_AFFINITY = "adapter-affinity"
REASON_ROUND_ROBIN = "round-robin (no fresh metrics)"


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


class EndpointPicker(EndpointTracker):
    """Orders a pool's endpoints for each request (the choice above), from the state its
    EndpointTracker base keeps."""

    def __init__(
        self,
        pool: PoolSpec,
        session_factory: SessionFactory | None = None,
        clock: Clock = time.monotonic,
        resolver: Resolver = dns.resolve_async,
    ) -> None:
        super().__init__(pool, session_factory, clock, resolver)
        self._turn = 0  # advanced per pick; rotates ties

    # --- picking -------------------------------------------------------------------

    def _saturated(self, ep: Endpoint) -> bool:
        # The server's own numbers: requests sent since the scrape mostly run rather than
        # queue, so counting them here would shed while the servers still have room.
        m = ep.metrics
        return m is not None and (
            m.waiting >= self.pool.queue_threshold or m.kv_usage >= self.pool.kv_threshold
        )

    def _rotation(self, ep: Endpoint) -> int:
        return (ep.index - self._turn) % len(self._endpoints)

    @staticmethod
    def _affinity_tier(ep: Endpoint, adapter: str | None) -> int:
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
        fresh: list[Endpoint] = []
        stale: list[Endpoint] = []
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
