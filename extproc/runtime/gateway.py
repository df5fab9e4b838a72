"""The compiled gateway (routes, backends, host cache, health) and the lookups the hot
path makes on it.

Built once at start-up from the Envoy bootstrap. At request time the processor only does
dictionary lookups here: by route name for route policy, and by the upstream host's
metadata string (which Envoy sends as protobuf text) for the backend. A metadata string
is parsed only the first time it is seen; the result is cached.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Protocol

from envoy.config.core.v3 import base_pb2
from google.protobuf import json_format, text_format

from ..backend_health import BackendHealth
from ..backends import Backend
from ..config.policy import RoutePolicy
from ..config.shared_state import LimitSpec, SharedState
from ..guards.pipeline import RouteGuards
from ..inference.picker import EndpointPicker
from ..response_limits import ENVOY_DEFAULT_BUFFER
from ..secrets import Secret
from ..wire import NAMESPACE
from .inference import InferenceRoute


@dataclass
class RouteRuntime:
    name: str
    policy: RoutePolicy
    location: str
    clusters: tuple[str, ...] = ()
    # True when every backend the route can reach has a configured model, so a request
    # without `model` is still complete.
    model_always_set: bool = False
    # Names of the backends the route can reach.
    backends: tuple[str, ...] = ()
    # The route's compiled guards, if it has any.
    guards: RouteGuards | None = None
    # The route sends to an inference pool: its picker and models.
    inference: InferenceRoute | None = None


class TokenCharger(Protocol):
    """Charges a finished request's tokens to its budget (shared_state/token_charges.py)."""

    async def charge(self, limit: str, client: tuple[tuple[str, str], ...], tokens: int) -> None: ...


@dataclass
class SharedStateRuntime:
    """Redis settings (from the bootstrap's node metadata) and its password, resolved."""

    settings: SharedState
    password: Secret | None = None


@dataclass
class ClusterRuntime:
    name: str
    backends: list[Backend] = field(default_factory=list)
    # One endpoint and no upstream filter: the route-level filter translates for it.
    direct: bool = False


def aigw_from_text_metadata(text: str) -> dict[str, Any] | None:
    """`envoy.config.core.v3.Metadata` in text format -> the `aigw` namespace as a dict."""
    md = base_pb2.Metadata()
    text_format.Parse(text, md)
    if NAMESPACE not in md.filter_metadata:
        return None
    return json_format.MessageToDict(md.filter_metadata[NAMESPACE])


class GatewayRuntime:
    def __init__(
        self,
        routes: dict[str, RouteRuntime],
        clusters: dict[str, ClusterRuntime],
        by_name: dict[str, Backend],
        default_policy: RoutePolicy | None = None,
    ) -> None:
        self.routes = routes
        self.clusters = clusters
        self.default_policy = default_policy or RoutePolicy()
        self._by_name = by_name
        self._host_cache: dict[str, Backend | None] = {}
        self.default_route = RouteRuntime(name="", policy=self.default_policy, location="(default)")
        # Every processor socket the bootstrap lists (where Envoy expects the processor):
        # one worker process serves each.
        self.processor_sockets: list[str] = []
        # Where Envoy health-checks gateway backends at the processor, if it does.
        self.health_address: tuple[str, int] | None = None
        self.health = BackendHealth()
        # The largest JSON response both filters can read whole (response_limits.py).
        self.max_response_bytes = ENVOY_DEFAULT_BUFFER
        # One endpoint picker per inference pool, started with the server.
        self.pickers: dict[str, EndpointPicker] = {}
        # Redis shared with other replicas, and the global limits counted there.
        self.shared_state: SharedStateRuntime | None = None
        self.limits: dict[str, LimitSpec] = {}
        # Set with the shared state when a route has a token budget.
        self.token_charger: TokenCharger | None = None

    @property
    def backends(self) -> list[Backend]:
        return [b for c in self.clusters.values() for b in c.backends]

    def route(self, name: str) -> RouteRuntime:
        return self.routes.get(name) or self.default_route

    def direct_backend(self, cluster: str) -> Backend | None:
        """The backend of a one-endpoint cluster the route-level filter translates for, or
        None when the cluster has the upstream filter (or is not a gateway cluster)."""
        cfg = self.clusters.get(cluster)
        if cfg is None or not cfg.direct or len(cfg.backends) != 1:
            return None
        return cfg.backends[0]

    def backend_named(self, name: str) -> Backend | None:
        """The backend an upstream filter reported as the one that answered."""
        return self._by_name.get(name)

    def all_cooling(self, names: tuple[str, ...]) -> int | None:
        """Whole seconds until the first of `names` is out of its rate-limit cooldown, or
        None when one of them is available now."""
        shortest = None
        for name in names:
            left = self.health.remaining(name)
            if left <= 0:
                return None
            shortest = left if shortest is None else min(shortest, left)
        return max(1, math.ceil(shortest)) if shortest is not None else None

    def backend_for_host(self, metadata_text: str) -> Backend | None:
        """The backend for the host Envoy picked, found by the `name` in its metadata, or
        None when this processor's config does not know it (Envoy and the processor were
        given different bootstraps)."""
        try:
            return self._host_cache[metadata_text]
        except KeyError:
            pass
        backend = self._resolve(metadata_text)
        if len(self._host_cache) < 10_000:  # bounded: one entry per host's metadata
            self._host_cache[metadata_text] = backend
        return backend

    def _resolve(self, metadata_text: str) -> Backend | None:
        try:
            aigw = aigw_from_text_metadata(metadata_text) if metadata_text else None
        except text_format.ParseError:
            return None
        if not isinstance(aigw, dict):
            return None
        name = aigw.get("name")
        backend = self._by_name.get(name) if isinstance(name, str) else None
        # The metadata must be the backend's own, not a look-alike under its name.
        if backend is None or aigw.get("provider") != backend.provider.name:
            return None
        return backend
