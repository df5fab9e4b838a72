"""Variations on envoy/mock.yaml for tests: extra routes and clusters built by copying the
file's own `chat` route and `llm` cluster, so every variant keeps its real wiring."""

from __future__ import annotations

import copy
from typing import Any, cast

from tests.harness import load_bootstrap


def _hcm(doc: dict[str, Any]) -> dict[str, Any]:
    return doc["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]


def routes(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return _hcm(doc)["route_config"]["virtual_hosts"][0]["routes"]


def cluster(doc: dict[str, Any], name: str) -> dict[str, Any]:
    return next(c for c in doc["static_resources"]["clusters"] if c["name"] == name)


def endpoint(aigw: dict[str, Any], port: int = 18081, priority: int | None = None) -> dict[str, Any]:
    return {
        "endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": port}}},
        "metadata": {"filter_metadata": {"aigw": aigw}},
    }


def add_route(
    doc: dict[str, Any],
    name: str,
    path: str,
    backends: list[dict[str, Any]] | list[list[dict[str, Any]]],
    policy: dict[str, Any] | None = None,
    **cluster_extra: Any,
) -> dict[str, Any]:
    """Add route `name` on exact `path` to a new cluster `name` holding `backends` (aigw
    metadata dicts). A list of lists makes priority groups, first group preferred. Ports
    are placeholders: the harness starts a mock per backend name."""
    base = load_bootstrap("mock.yaml")
    route = copy.deepcopy(next(r for r in routes(base) if r["name"] == "chat"))
    route["name"] = name
    route["match"] = {"path": path}
    route["route"]["cluster"] = name
    route["metadata"] = {"filter_metadata": {"aigw": policy or {}}}
    # Before the catch-all 404 route.
    routes(doc).insert(len(routes(doc)) - 1, route)

    new = copy.deepcopy(cluster(base, "llm"))
    new["name"] = name
    # mypy cannot narrow the union from its first item's type.
    groups = cast(
        list[list[dict[str, Any]]], backends if backends and isinstance(backends[0], list) else [backends]
    )
    port = 20000
    localities = []
    for priority, group in enumerate(groups):
        eps = []
        for aigw in group:
            port += 1
            eps.append(endpoint(aigw, port))
        localities.append({"priority": priority, "lb_endpoints": eps})
    new["load_assignment"] = {"cluster_name": name, "endpoints": localities}
    new.update(cluster_extra)
    doc["static_resources"]["clusters"].append(new)
    return route


def route_filter(doc: dict[str, Any]) -> dict[str, Any]:
    return next(f for f in _hcm(doc)["http_filters"] if "ext_proc" in f["name"])["typed_config"]


def translate_at_route(doc: dict[str, Any]) -> dict[str, Any]:
    """The one-gRPC-stream wiring: clusters of one gateway endpoint lose their upstream
    filter, and the route-level filter translates for them (it needs the cluster's name
    and may set the provider's Host)."""
    for c in doc["static_resources"]["clusters"]:
        eps = [
            lb
            for loc in (c.get("load_assignment") or {}).get("endpoints") or []
            for lb in loc.get("lb_endpoints") or []
        ]
        if len(eps) == 1 and "aigw" in ((eps[0].get("metadata") or {}).get("filter_metadata") or {}):
            for opt in (c.get("typed_extension_protocol_options") or {}).values():
                opt.pop("http_filters", None)
    rf = route_filter(doc)
    rf["request_attributes"] = [*rf.get("request_attributes", []), "xds.cluster_name"]
    rf["mutation_rules"] = {"allow_all_routing": True, "allow_envoy": True}
    return doc
