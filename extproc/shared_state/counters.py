"""Fixed-window counters in Redis, shared by every replica of the rate-limit service.

All the counters one `ShouldRateLimit` call touches are read or incremented by one Lua
script: one round trip, and atomic, so two replicas adding to one key at the same moment
both see the sum. Windows are aligned to the epoch and cut from Redis's own clock
(`TIME` inside the script), so replicas whose clocks disagree still agree on which
window a hit falls in and when it ends.

A counter's key is `<prefix>:rl:<limit id>:<digest of the client key>:<window index>`;
the caller gives everything up to the window index (`counter_key`), the script appends
the index. Client-supplied values (API keys) appear only as a digest. The script builds
the final key names itself, so it assumes a single Redis (not Redis Cluster), as the
rest of the shared state does.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

import redis.asyncio as aioredis

from .redis_store import RedisStore

# A counter outlives its window by this much, so a call that read the window index just
# before the end still finds its key; after that nobody asks for that index again.
GRACE_MS = 1000

# Far below INCRBY's 2^63 and Lua's exact-integer range: a larger hits_addend is a
# misconfiguration, and clamping keeps the script from failing on it.
MAX_HITS = 10**12

# KEYS[i]: a counter's key without its window index.
# ARGV[2i-1]: its window in seconds; ARGV[2i]: hits to add (0: read only).
# Returns, per key: the count after adding, and milliseconds until its window ends.
_SCRIPT = """
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local result = {}
for i, base in ipairs(KEYS) do
  local window_ms = tonumber(ARGV[2 * i - 1]) * 1000
  local hits = ARGV[2 * i]
  local index = math.floor(now_ms / window_ms)
  local ends_ms = (index + 1) * window_ms
  local key = base .. ':' .. string.format('%d', index)
  local count
  if tonumber(hits) > 0 then
    count = redis.call('INCRBY', key, hits)
    redis.call('PEXPIREAT', key, string.format('%d', ends_ms + GRACE_MS))
  else
    count = tonumber(redis.call('GET', key) or '0')
  end
  result[2 * i - 1] = count
  result[2 * i] = ends_ms - now_ms
end
return result
""".replace("GRACE_MS", str(GRACE_MS))


@dataclass(frozen=True)
class CounterCall:
    """One counter to read (hits 0) or add to, in a window of `window` seconds."""

    key: str
    window: int
    hits: int


@dataclass(frozen=True)
class CounterState:
    """A counter after the call: its count in the current window and the time left in it."""

    count: int
    reset_ms: int


def counter_key(store: RedisStore, limit_id: str, client: Sequence[tuple[str, str]]) -> str:
    """The key of `limit_id`'s counter for one client, without the window index.

    `client` is the descriptor's entries after the limit id, as (key, value) pairs. They
    are serialised as JSON, so no two different entry lists read the same (a separator
    inside a value cannot fake another split), and then digested.
    """
    joined = json.dumps([list(pair) for pair in client], separators=(",", ":"), ensure_ascii=False)
    return store.key("rl", limit_id, store.digest(joined))


class FixedWindowCounters:
    def __init__(self, store: RedisStore) -> None:
        self._store = store
        # EVALSHA, with SCRIPT LOAD and a second EVALSHA when Redis does not know the
        # script (first call, or Redis restarted): one round trip in the steady state.
        self._script = store.client.register_script(_SCRIPT)

    async def apply(self, operation: str, calls: Sequence[CounterCall]) -> list[CounterState]:
        """Add to / read every counter in one script run; raises SharedStateUnavailable."""
        if not calls:
            return []
        keys = [call.key for call in calls]
        args: list[str] = []
        for call in calls:
            args += [str(call.window), str(min(max(call.hits, 0), MAX_HITS))]

        async def run(client: aioredis.Redis) -> list[int]:
            return list(await self._script(keys=keys, args=args, client=client))

        flat = await self._store.run(operation, run)
        return [CounterState(int(flat[i]), int(flat[i + 1])) for i in range(0, len(flat), 2)]
