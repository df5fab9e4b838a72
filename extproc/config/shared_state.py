"""Where replicas share state (Redis), and what each shared policy does when Redis fails.

Carried from the gateway config to the processor in the bootstrap's `node.metadata.aigw`
(Envoy keeps node metadata as it is): `sharedState` for the connection and the cooldowns,
`rateLimits` for the limits the processor's rate-limit service enforces. Both are read
once at start-up.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

from pydantic import Field, field_validator, model_validator

from ..config_model import ConfigModel, seconds
from ..secrets import SecretRef
from ..wire import SOURCE_ADDRESS

# What a request meets when Redis cannot be reached in time: `open` lets it through (or,
# for cooldowns, falls back to this replica's own view), `closed` refuses it (503).
FailMode = Literal["open", "closed"]


class RedisSettings(ConfigModel):
    # host:port
    address: str = Field(pattern=r"^[^\s:]+:\d{1,5}$")
    password_ref: SecretRef | None = None
    db: int = Field(default=0, ge=0, le=15)
    # Each Redis call gives up after this long; a request never waits on Redis longer.
    timeout: float = Field(default=0.1, gt=0, le=5)
    # Every key starts with this, so several gateways can share one Redis.
    key_prefix: str = Field(default="aigw", pattern=r"^[A-Za-z0-9_.\-]+$")

    _parse = field_validator("timeout", mode="before")(lambda cls, v: seconds(v))

    @property
    def host(self) -> str:
        return self.address.rpartition(":")[0]

    @property
    def port(self) -> int:
        return int(self.address.rpartition(":")[2])


class CooldownSharing(ConfigModel):
    # open: Redis down, each replica keeps its own cooldowns (today's behaviour);
    # closed: Redis down, every shared-cooldown backend reports unhealthy.
    fail_mode: FailMode = "open"
    # How often each processor reads the cooldowns other replicas wrote.
    sync_interval: float = Field(default=0.5, gt=0, le=10)

    _parse = field_validator("sync_interval", mode="before")(lambda cls, v: seconds(v))


class SharedState(ConfigModel):
    redis: RedisSettings
    cooldowns: CooldownSharing = CooldownSharing()


class RateLimitKey(ConfigModel):
    """Who shares a bucket: each value of a request header (an API key), each client
    address, or everyone (`generic`: one bucket named by this value)."""

    header: str | None = Field(default=None, min_length=1)
    client_address: bool = False
    generic: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.\-]+$")

    @model_validator(mode="after")
    def _one(self) -> RateLimitKey:
        if sum((self.header is not None, self.client_address, self.generic is not None)) != 1:
            raise ValueError("set one of 'header', 'clientAddress: true' or 'generic'")
        return self


class TokenCharge(ConfigModel):
    """Route metadata `tokenCharge`, written by `aigw render` from a route's `tokenBudget`:
    the route-level filter charges each finished request's tokens to `limit`'s counter for
    the client, the counter the rate-limit filter's budget check reads. `key` says how that
    check's descriptor names the client, so both find the same counter."""

    limit: str = Field(min_length=1)
    key: RateLimitKey


def charge_inputs(keys: Iterable[RateLimitKey]) -> tuple[list[str], bool]:
    """What the route-level filter needs from Envoy to charge budgets keyed by `keys` to
    the client the budget check counted (shared_state/client_key.py): the request
    attributes to ask for (the client's address), and whether the key headers Envoy copied
    into dynamic metadata must be forwarded to it. `aigw render` gives the filter these,
    and the processor refuses a bootstrap that does not."""
    keys = list(keys)
    attributes = [SOURCE_ADDRESS] if any(k.client_address for k in keys) else []
    return attributes, any(k.header for k in keys)


class LimitSpec(ConfigModel):
    """One limit the rate-limit service enforces, named by the `aigw_limit` entry of the
    descriptors Envoy sends for it."""

    # requests: each request counts 1, refused once over; tokens: each finished request
    # adds its total tokens, and a key already at or over the budget is refused.
    unit: Literal["requests", "tokens"]
    amount: int = Field(gt=0)
    window: int = Field(gt=0, description="seconds")
    fail_mode: FailMode
