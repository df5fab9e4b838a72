"""Which backends are cooling down after a rate limit, and for how long.

Stock Envoy 1.40 never ejects a host for a 429, and honours no Retry-After. So the
upstream filter records a cooldown here when a provider answers 429 (or 503 with a
Retry-After), and Envoy learns about it through active health checks: each gateway
endpoint's `health_check_config` points at the processor's health server with the
backend's name as the Host header, and the health server answers 503 until the cooldown
ends. The host is then out of the load balancer for the Retry-After seconds and comes
back by itself. Within a request, Envoy's retry policy has already moved on.

State is per processor process, shared by every Envoy that uses it.
"""

from __future__ import annotations

import email.utils
import math
import time

def retry_after_seconds(headers: dict[str, str], now: float | None = None) -> float | None:
    """Seconds to wait, from `retry-after-ms` (OpenAI), `retry-after` in seconds or as an
    HTTP date. None when absent or unreadable."""
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            value = float(ms) / 1000
            if math.isfinite(value) and value >= 0:
                return value
        except ValueError:
            pass
    ra = headers.get("retry-after")
    if not ra:
        return None
    ra = ra.strip()
    try:
        value = float(ra)
        return value if math.isfinite(value) and value >= 0 else None
    except ValueError:
        pass
    parsed = email.utils.parsedate_tz(ra)
    if parsed is None:
        return None
    # mktime_tz reads a missing or "-0000" zone as UTC, as HTTP dates are.
    when = email.utils.mktime_tz(parsed)
    return max(0.0, when - (now if now is not None else time.time()))


class BackendHealth:
    def __init__(self, clock=time.monotonic) -> None:
        self._until: dict[str, float] = {}
        self._clock = clock

    def cool_down(self, name: str, seconds: float) -> float:
        """Keep `name` out of rotation for `seconds` (never shortening a longer cooldown)."""
        until = self._clock() + seconds
        if until > self._until.get(name, 0.0):
            self._until[name] = until
        return self._until[name] - self._clock()

    def remaining(self, name: str) -> float:
        until = self._until.get(name)
        if until is None:
            return 0.0
        left = until - self._clock()
        if left <= 0:
            del self._until[name]
            return 0.0
        return left

