"""Variations on envoy/mock.yaml for tests: extra routes and clusters built by copying the
file's own `chat` route and `llm` cluster, so every variant keeps its real wiring."""

from __future__ import annotations

import copy
from typing import Any

from tests.harness import load_bootstrap


def _hcm(doc: dict[str, Any]) -> dict[str, Any]:
    return doc["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]


def routes(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return _hcm(doc)["route_config"]["virtual_hosts"][0]["routes"]


def cluster(doc: dict[str, Any], name: str) -> dict[str, Any]:
    return next(c for c in doc["static_resources"]["clusters"] if c["name"] == name)


def endpoint(aigw: dict[str, Any], port: int = 18081, priority: int | None = None) -> dict[str, Any]:
    return {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": port}}},
            "metadata": {"filter_metadata": {"aigw": aigw}}}


def add_route(doc: dict[str, Any], name: str, path: str, backends: list[dict[str, Any]] | list[list[dict[str, Any]]],
              policy: dict[str, Any] | None = None, **cluster_extra: Any) -> dict[str, Any]:
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
    groups = backends if backends and isinstance(backends[0], list) else [backends]
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
