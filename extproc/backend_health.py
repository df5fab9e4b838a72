"""Which backends are cooling down after a rate limit, and for how long.

Stock Envoy 1.40 never ejects a host for a 429, and honours no Retry-After. So the
upstream filter records a cooldown here when a provider answers 429 (or 503 with a
Retry-After), and Envoy learns about it through active health checks: each gateway
endpoint's `health_check_config` points at the processor's health server with the
backend's name as the Host header, and the health server answers 503 until the cooldown
ends. The host is then out of the load balancer for the Retry-After seconds and comes
back by itself. Within a request, Envoy's retry policy has already moved on.

State is shared by every worker process of one processor (`serve --workers`): Envoy's
health check may land on any of them, and a cooldown one worker saw must hold for all. The
deadlines then live in a small memory-mapped file (`SharedDeadlines`), one slot per
backend; a single process keeps them in a dict.

Across replicas (`gateway.sharedState`), `shared_state/cooldowns.py` listens to the
cooldowns recorded here and copies them to Redis, and brings back the ones other
replicas recorded (`adopt`, which does not tell the listener again).
"""

from __future__ import annotations

import email.utils
import fcntl
import math
import mmap
import os
import struct
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager


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
    try:
        when = email.utils.mktime_tz(parsed)
    except (OverflowError, ValueError):  # a year no clock reaches: unreadable
        return None
    return max(0.0, when - (now if now is not None else time.time()))


class SharedDeadlines:
    """Deadlines (in `time.monotonic()` seconds, which is one clock for every process on
    the machine) in a memory-mapped file every worker opens. One 8-byte slot per backend
    name, in sorted order, so all workers agree on the layout without talking.

    Reads take no lock: an aligned 8-byte store is atomic on the platforms we run on. A
    write holds an exclusive `flock` so two workers recording cooldowns at once cannot
    shorten each other's.
    """

    _SLOT = struct.Struct("d")

    def __init__(self, path: str, names: Iterable[str]) -> None:
        self._index = {name: i for i, name in enumerate(sorted(set(names)))}
        size = self._SLOT.size * max(1, len(self._index))
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        with self._locked():
            if os.fstat(self._fd).st_size < size:
                os.ftruncate(self._fd, size)
        self._map = mmap.mmap(self._fd, size)

    @contextmanager
    def _locked(self) -> Iterator[None]:
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def get(self, name: str) -> float:
        i = self._index.get(name)
        return 0.0 if i is None else self._SLOT.unpack_from(self._map, i * self._SLOT.size)[0]

    def extend(self, name: str, until: float) -> float:
        """Set `name`'s deadline to `until` unless it is already later; the deadline now."""
        i = self._index.get(name)
        if i is None:
            return until
        with self._locked():
            current = self._SLOT.unpack_from(self._map, i * self._SLOT.size)[0]
            if until > current:
                self._SLOT.pack_into(self._map, i * self._SLOT.size, until)
                return until
            return current


class _LocalDeadlines:
    """The same interface, for a single process."""

    def __init__(self) -> None:
        self._until: dict[str, float] = {}

    def get(self, name: str) -> float:
        return self._until.get(name, 0.0)

    def extend(self, name: str, until: float) -> float:
        if until > self._until.get(name, 0.0):
            self._until[name] = until
        return self._until[name]


class BackendHealth:
    def __init__(self, clock=time.monotonic, deadlines: SharedDeadlines | None = None) -> None:
        self._deadlines: SharedDeadlines | _LocalDeadlines = deadlines or _LocalDeadlines()
        self._clock = clock
        self._listener: Callable[[str, float], None] | None = None
        # Names reported as cooling whatever their deadline (a replica failing closed
        # while it cannot see the others' cooldowns), and the seconds reported then.
        self._held: frozenset[str] = frozenset()
        self._held_seconds = 0.0

    def share(self, deadlines: SharedDeadlines) -> None:
        """From now on, keep deadlines where every worker sees them."""
        self._deadlines = deadlines

    def listen(self, listener: Callable[[str, float], None] | None) -> None:
        """Call `listener(name, seconds)` for every cooldown `cool_down` records (None: stop).
        It runs on the caller's hot path, so it must only schedule work, never wait."""
        self._listener = listener

    def cool_down(self, name: str, seconds: float) -> float:
        """Keep `name` out of rotation for `seconds` (never shortening a longer cooldown)."""
        left = self.adopt(name, seconds)
        if self._listener is not None and seconds > 0:
            self._listener(name, seconds)
        return left

    def adopt(self, name: str, seconds: float) -> float:
        """As `cool_down`, without telling the listener: for cooldowns that came from
        elsewhere (another replica), which must not be echoed back."""
        now = self._clock()
        return self._deadlines.extend(name, now + seconds) - now

    def hold(self, names: Iterable[str], seconds: float) -> None:
        """Report every one of `names` as cooling (at least `seconds` left) until
        `release()`, whatever its own deadline. Only this process sees a hold."""
        self._held_seconds = seconds
        self._held = frozenset(names)

    def release(self) -> None:
        self._held = frozenset()

    def remaining(self, name: str) -> float:
        left = self._deadlines.get(name) - self._clock()
        if name in self._held:
            return max(left, self._held_seconds)
        return left if left > 0 else 0.0
