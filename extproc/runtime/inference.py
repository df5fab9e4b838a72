"""Inference routing at run time: a route's pool picker and its models.

One EndpointPicker per pool (shared by every route that sends to it, started with the
server), and per route the table of the models it serves: their criticality and the
weighted target models a request's `model` becomes.
"""

from __future__ import annotations

import random
from typing import Any

from ..config.inference import InferenceModelConfig, InferencePoolConfig, InferenceRouting
from ..errors import GatewayError
from ..inference import dns
from ..inference.picker import Criticality, EndpointPicker, Pick, PoolSpec


class InferenceRoute:
    """What the route-level filter asks for a request to a pool: the model to send, and
    the servers to send it to."""

    def __init__(self, routing: InferenceRouting, picker: EndpointPicker) -> None:
        self.pool = routing.pool.name
        self.picker = picker
        self._models: dict[str, InferenceModelConfig] = {m.model_name: m for m in routing.models}
        self._rng = random.Random()

    def model_for(self, requested: Any) -> tuple[str | None, Criticality]:
        """The model the server is asked for, and the request's criticality. Without
        declared models the pool serves whatever is asked, at Standard."""
        if not self._models:
            return (requested if isinstance(requested, str) else None), Criticality.STANDARD
        model = self._models.get(requested) if isinstance(requested, str) else None
        if model is None:
            raise GatewayError(
                404,
                f"model {requested!r} is not served by inference pool '{self.pool}'",
                code="model_not_found",
                param="model",
            )
        target = model.model_name
        if model.target_models:
            names = [t.name for t in model.target_models]
            target = self._rng.choices(names, weights=[t.weight for t in model.target_models])[0]
        return target, Criticality(model.criticality)

    def pick(self, target: str | None, criticality: Criticality) -> Pick:
        """Raises picker.Shed when the pool is saturated and the request may be shed."""
        return self.picker.pick(target, criticality)


def pool_spec(pool: InferencePoolConfig) -> PoolSpec:
    addresses = pool.addresses()
    return PoolSpec(
        name=pool.name,
        endpoints=tuple(resolve(addresses)),
        metrics_path=pool.metrics_path,
        scrape_interval_s=pool.scrape_interval,
        stale_after_s=pool.stale_after_s,
        queue_threshold=pool.queue_threshold,
        kv_threshold=pool.kv_cache_threshold,
        scrape_timeout_s=pool.scrape_timeout,
        # Names are resolved again as Envoy re-resolves them (servers come and go).
        names=tuple((host, port) for host, port in addresses if not dns.is_ip(host)),
        fixed_endpoints=tuple(dns.endpoint(host, port) for host, port in addresses if dns.is_ip(host)),
    )


def resolve(addresses: list[tuple[str, int]]) -> list[str]:
    """`ip:port` for every address a host stands for, as Envoy's STRICT_DNS cluster sees
    them (IPv4 preferred: only when a name has no IPv4 address are its IPv6 ones used)."""
    out: list[str] = []
    for host, port in addresses:
        for text in dns.resolve(host, port):
            if text not in out:
                out.append(text)
    return out


def build_pickers(routings: list[InferenceRouting]) -> dict[str, EndpointPicker]:
    """One picker per pool name (routes to the same pool share its metrics)."""
    pickers: dict[str, EndpointPicker] = {}
    for routing in routings:
        if routing.pool.name not in pickers:
            pickers[routing.pool.name] = EndpointPicker(pool_spec(routing.pool))
    return pickers
