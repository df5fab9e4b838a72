"""Envoy's rate-limit service (RLS, `envoy.service.ratelimit.v3`) on Redis counters.

Envoy's rate-limit filter asks `ShouldRateLimit` with one descriptor per route rate
limit. Ours start with the entry `aigw_limit=<limit id>` (a key of `limits`); the
entries after it are the client key (`client_key=<x-api-key>`, `remote_address=<ip>`,
`generic_key=...`), whose digest names the counter. Every replica counts in one Redis,
so a limit holds for the whole gateway, not per replica.

What a descriptor does depends on its limit's unit and its hits:
- requests: hits are added; over once the count after adding exceeds the amount.
- tokens: hits 0 is the budget check before a request (over once the count has reached
  the amount); hits > 0 is a charge (added, always OK). Today's bootstraps charge from the
  route-level filter (token_charges.py); older ones had Envoy charge when the stream was
  done, which still works.
- hits 0 on a requests limit checks without counting, like the token check.
Hits are the descriptor's own `hits_addend` when present, else the request's, where
Envoy's 0 means 1. Envoy (checked with 1.40) sends a descriptor-level hits_addend, 0
included, for the rate limits of the filter's own `rate_limits` or of a route's
`RateLimitPerRoute.rate_limits` (`hits_addend: {number: 0}` arrives as an explicitly
present UInt64Value(0): that is how the budget check reads without charging); a route's
`route.rate_limits` (RouteAction) drops hits_addend, so it cannot carry these limits.

When Redis does not answer in time, a call holding a check of a `closed` limit fails
with gRPC UNAVAILABLE (Envoy's filter, with failure_mode_deny, answers its
status_on_error, 500 unless set to 503); anything else is allowed, and a charge that
could not be written is counted as lost.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import grpc
from envoy.config.core.v3 import base_pb2
from envoy.extensions.common.ratelimit.v3 import ratelimit_pb2
from envoy.service.ratelimit.v3 import rls_pb2, rls_pb2_grpc
from google.protobuf import duration_pb2

from ..config.shared_state import LimitSpec
from ..wire import LIMIT_ENTRY, LIMITED_BY
from .counters import CounterCall, CounterState, FixedWindowCounters, counter_key
from .redis_store import RedisStore, SharedStateUnavailable

log = logging.getLogger("aigw.rate_limit")


Response = rls_pb2.RateLimitResponse
RateLimit = rls_pb2.RateLimitResponse.RateLimit

# Envoy's x-ratelimit-* headers need a unit; windows of other lengths report none.
_UNITS = {1: RateLimit.SECOND, 60: RateLimit.MINUTE, 3600: RateLimit.HOUR, 86400: RateLimit.DAY}

# Descriptors that are not ours come from the Envoy config, so their kinds are few; the
# cap only guards the warned-once memory against a config that makes them up.
_MAX_WARNED = 1000

# requests_per_unit and limit_remaining are uint32; a token budget may be larger.
_UINT32_MAX = 2**32 - 1


@dataclass(frozen=True)
class _Check:
    """One of our descriptors, resolved: where it sits in the request, its limit, hits."""

    position: int
    limit_id: str
    spec: LimitSpec
    key: str
    hits: int

    @property
    def is_charge(self) -> bool:
        return self.spec.unit == "tokens" and self.hits > 0


def is_over(spec: LimitSpec, hits: int, count: int) -> bool:
    """Whether a descriptor is over its limit, given the count after adding its hits."""
    if hits == 0:
        return count >= spec.amount
    if spec.unit == "tokens":
        return False
    return count > spec.amount


def descriptor_hits(descriptor: ratelimit_pb2.RateLimitDescriptor, request_hits: int) -> int:
    """The descriptor's hits_addend when present (0 included), else the request's (0 = 1)."""
    if descriptor.HasField("hits_addend"):
        return int(descriptor.hits_addend.value)
    return request_hits or 1


class RateLimitService(rls_pb2_grpc.RateLimitServiceServicer):
    def __init__(self, store: RedisStore, limits: Mapping[str, LimitSpec]) -> None:
        self._store = store
        self._limits = dict(limits)
        self._counters = FixedWindowCounters(store)
        self._warned: set[tuple[str, ...]] = set()

    async def ShouldRateLimit(
        self, request: rls_pb2.RateLimitRequest, context: Any
    ) -> rls_pb2.RateLimitResponse:
        checks = self._resolve(request)
        statuses = [Response.DescriptorStatus(code=Response.OK) for _ in request.descriptors]
        if not checks:
            return Response(overall_code=Response.OK, statuses=statuses)
        calls = [CounterCall(c.key, c.spec.window, c.hits) for c in checks]
        operation = "token_charge" if all(c.is_charge for c in checks) else "rate_limit"
        try:
            states = await self._counters.apply(operation, calls)
        except SharedStateUnavailable as exc:
            return await self._unavailable(checks, statuses, exc, context)
        return _decide(checks, states, statuses)

    def _resolve(self, request: rls_pb2.RateLimitRequest) -> list[_Check]:
        checks = []
        for position, descriptor in enumerate(request.descriptors):
            entries = [(entry.key, entry.value) for entry in descriptor.entries]
            if not entries or entries[0][0] != LIMIT_ENTRY:
                # Entry keys only: the values may be the client's API key.
                self._warn_once(("no-limit-entry", *(key for key, _ in entries)))
                continue
            limit_id = entries[0][1]
            spec = self._limits.get(limit_id)
            if spec is None:
                self._warn_once(("unknown-limit", limit_id))
                continue
            key = counter_key(self._store, limit_id, entries[1:])
            hits = descriptor_hits(descriptor, request.hits_addend)
            checks.append(_Check(position, limit_id, spec, key, hits))
        return checks

    async def _unavailable(
        self,
        checks: list[_Check],
        statuses: list[rls_pb2.RateLimitResponse.DescriptorStatus],
        exc: SharedStateUnavailable,
        context: Any,
    ) -> rls_pb2.RateLimitResponse:
        """Redis failed: each descriptor meets its limit's fail mode; charges are lost."""
        if any(c.is_charge for c in checks):
            self._store.failed("token_charge", "lost", exc)
        gated = [c for c in checks if not c.is_charge]
        if any(c.spec.fail_mode == "closed" for c in gated):
            self._store.failed("rate_limit", "refused", exc)
            await context.abort(grpc.StatusCode.UNAVAILABLE, "rate-limit counters unavailable")
        if gated:
            self._store.failed("rate_limit", "allowed", exc)
        return Response(overall_code=Response.OK, statuses=statuses)

    def _warn_once(self, what: tuple[str, ...]) -> None:
        """A descriptor the processor has no limit for: Envoy's config and the processor's
        disagree (a stale bootstrap). Said once per kind, then let through."""
        if what in self._warned or len(self._warned) >= _MAX_WARNED:
            return
        self._warned.add(what)
        if what[0] == "unknown-limit":
            message, fields = "rate-limit descriptor for an unknown limit; allowed", {"limit": what[1]}
        else:
            message = f"rate-limit descriptor without a leading {LIMIT_ENTRY} entry; allowed"
            fields = {"entry_keys": ",".join(what[1:])}
        log.warning(message, extra={"fields": fields})


def _decide(
    checks: list[_Check],
    states: list[CounterState],
    statuses: list[rls_pb2.RateLimitResponse.DescriptorStatus],
) -> rls_pb2.RateLimitResponse:
    retry_after = 0
    units = set()
    for check, state in zip(checks, states, strict=True):
        over = is_over(check.spec, check.hits, state.count)
        statuses[check.position] = _status(check.spec, state, over)
        if over:
            retry_after = max(retry_after, max(1, math.ceil(state.reset_ms / 1000)))
            units.add(check.spec.unit)
    if not retry_after:
        return Response(overall_code=Response.OK, statuses=statuses)
    # Which kind of limit refused it, for the local reply's error code (a token budget
    # names itself; with both over, the budget is what waiting will not fix sooner).
    limited_by = "tokens" if "tokens" in units else "requests"
    return Response(
        overall_code=Response.OVER_LIMIT,
        statuses=statuses,
        response_headers_to_add=[
            base_pb2.HeaderValue(key="retry-after", value=str(retry_after)),
            base_pb2.HeaderValue(key=LIMITED_BY, value=limited_by),
        ],
    )


def _status(spec: LimitSpec, state: CounterState, over: bool) -> rls_pb2.RateLimitResponse.DescriptorStatus:
    status = Response.DescriptorStatus(
        code=Response.OVER_LIMIT if over else Response.OK,
        limit_remaining=min(max(0, spec.amount - state.count), _UINT32_MAX),
        duration_until_reset=duration_pb2.Duration(
            seconds=state.reset_ms // 1000, nanos=(state.reset_ms % 1000) * 1_000_000
        ),
    )
    unit = _UNITS.get(spec.window)
    if unit is not None:
        status.current_limit.CopyFrom(RateLimit(requests_per_unit=min(spec.amount, _UINT32_MAX), unit=unit))
    return status


def add_to_server(server: grpc.aio.Server, servicer: RateLimitService) -> None:
    """Serve `servicer` as envoy.service.ratelimit.v3.RateLimitService on `server`."""
    rls_pb2_grpc.add_RateLimitServiceServicer_to_server(servicer, server)
