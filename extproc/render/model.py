"""The compact gateway config, modelled on the seed guides' resources.

gateway:   where Envoy listens, where the processor is
backends:  an AI provider (`ai: {provider, model, auth}`), `ai.priorityGroups` of
           providers for failover, or a plain HTTP service (`static`)
routes:    `matches` (path prefix/exact/regex, headers, query parameters), weighted
           `backendRefs` or a `directResponse`, `timeouts`, `filters` (header
           modifiers, URL rewrites), `policies` (enrichment, defaults, guards, content
           routing) and a `rateLimit`
policies:  route policies applied by `targetRefs`, like TrafficPolicy

Backends are modelled in backend_model.py, routes in route_model.py; this module is the
whole config around them.
"""

from __future__ import annotations

import os
from functools import cached_property
from typing import Literal

from pydantic import Field, field_validator

from ..config.inference import InferenceModelConfig, InferencePoolConfig
from ..config.policy import RoutePolicy
from ..config.shared_state import SharedState
from ..config_model import ConfigModel, seconds
from .backend_model import BackendSpec
from .route_model import RateLimit, Route, TokenBudget, written_by_render


class Listen(ConfigModel):
    address: str = "127.0.0.1"
    port: int = Field(default=8080, gt=0, le=65535)


class ProcessorSettings(ConfigModel):
    socket: str = "/tmp/aigw/extproc.sock"
    # Processor processes (one core each), each on its own socket: `socket` with `-0`,
    # `-1`, ... before the extension. `auto` is the number of CPUs where `aigw render` runs.
    workers: int | Literal["auto"] = "auto"
    # Where the processor answers Envoy's health checks for failover backends.
    health_port: int = Field(default=18099, gt=0, le=65535)
    timeout: float = Field(default=10.0, gt=0)

    _parse = field_validator("timeout", mode="before")(lambda cls, v: seconds(v))

    @field_validator("workers")
    @classmethod
    def _workers(cls, value: int | str) -> int | str:
        if isinstance(value, int) and not 1 <= value <= 64:
            raise ValueError("workers must be between 1 and 64, or auto")
        return value

    def sockets(self) -> list[str]:
        """The socket of each worker."""
        n = (os.cpu_count() or 1) if self.workers == "auto" else self.workers
        if n == 1:
            return [self.socket]
        stem, dot, ext = self.socket.rpartition(".")
        if not dot or "/" in ext:
            stem, ext = self.socket, ""
        return [f"{stem}-{i}{'.' + ext if ext else ''}" for i in range(n)]


class GatewaySettings(ConfigModel):
    listen: Listen = Listen()
    admin_port: int = Field(default=9901, gt=0, le=65535)
    processor: ProcessorSettings = ProcessorSettings()
    # Request bodies up to this size are accepted (413 above); Envoy buffers twice that.
    max_request_bytes: int = Field(default=4 * 1024 * 1024, gt=0)
    access_log: bool = True
    # Proxies in front of Envoy whose X-Forwarded-For entries are trusted (for per-address
    # rate limits). 0: the client is whoever connects; X-Forwarded-For is not believed.
    trusted_proxy_hops: int = Field(default=0, ge=0)
    # Redis shared by every replica: cooldowns, global rate limits, token budgets.
    shared_state: SharedState | None = None


class TargetRef(ConfigModel):
    name: str


class Policy(ConfigModel):
    """Route policies applied to the routes named in `targetRefs` (like TrafficPolicy)."""

    name: str
    target_refs: tuple[TargetRef, ...] = Field(min_length=1)
    ai: RoutePolicy | None = None
    rate_limit: RateLimit | None = None
    token_budget: TokenBudget | None = None

    _own_policies = field_validator("ai")(lambda cls, v: written_by_render(v))


class GatewaySpec(ConfigModel):
    gateway: GatewaySettings = GatewaySettings()
    backends: tuple[BackendSpec, ...] = ()
    inference_pools: tuple[InferencePoolConfig, ...] = ()
    inference_models: tuple[InferenceModelConfig, ...] = ()
    routes: tuple[Route, ...] = Field(min_length=1)
    policies: tuple[Policy, ...] = ()

    @cached_property
    def all_backends(self) -> tuple[BackendSpec, ...]:
        """`backends`, then every inference pool as a backend with its models."""
        pools = tuple(
            BackendSpec(
                name=p.name,
                inference_pool=p,
                inference_models=tuple(m for m in self.inference_models if m.pool_ref == p.name),
            )
            for p in self.inference_pools
        )
        return self.backends + pools
