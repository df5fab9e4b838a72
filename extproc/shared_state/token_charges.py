"""Charging token budgets from the route-level filter, when each request ends.

The budget check runs in Envoy's rate-limit filter before a request (hits 0: is the key
already at its budget?). The charge is made here, not by a second rate-limit call when
Envoy's stream is done: the processor knows the tokens of every request that ends, the
ones whose client left mid-stream or before the answer included (counted from what was
seen, see route_filter.py), where Envoy would have nothing to add and the tokens would
be free. It also spares every budgeted request a second gRPC call into the processor.
"""

from __future__ import annotations

from collections.abc import Mapping

from ..config.shared_state import LimitSpec
from .client_key import Entries
from .counters import CounterCall, FixedWindowCounters, counter_key
from .redis_store import RedisStore, SharedStateUnavailable


class TokenCharges:
    def __init__(self, store: RedisStore, limits: Mapping[str, LimitSpec]) -> None:
        self._store = store
        self._windows = {name: spec.window for name, spec in limits.items() if spec.unit == "tokens"}
        self._counters = FixedWindowCounters(store)

    async def charge(self, limit: str, client: Entries, tokens: int) -> None:
        """Add `tokens` to the client's counter of `limit` in the current window. Redis
        down: the charge is lost (counted and logged), as Envoy's was."""
        if tokens <= 0:
            return
        call = CounterCall(counter_key(self._store, limit, client), self._windows[limit], tokens)
        try:
            await self._counters.apply("token_charge", [call])
        except SharedStateUnavailable as exc:
            self._store.failed("token_charge", "lost", exc)
