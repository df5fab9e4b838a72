"""Reads an Envoy bootstrap, validates the gateway settings in it and compiles the runtime.

Envoy and the processor read the same file. Envoy uses all of it; the processor reads the
gateway settings in it (route and endpoint metadata under `aigw`) and checks that the
ext_proc filters are wired so that no request can bypass the gateway:

- every cluster holding `aigw` endpoints runs the upstream ext_proc filter, or requests
  would reach the provider untranslated and without the gateway's credential;
- every listener serving `aigw` routes runs the route-level ext_proc filter;
- neither filter fails open, is weakened, or is switched off for an AI route, and AI
  clusters are reached only through routes checked here (see wiring.py).

All problems are reported together, each naming the route or endpoint and the field.
Clusters are read in bootstrap_clusters.py, listeners and routes in bootstrap_routes.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from .. import wire
from ..backends import Backend
from ..config import wiring
from ..config.shared_state import LimitSpec, SharedState
from ..inference.picker import EndpointPicker
from ..response_limits import buffer_limit
from ..secrets import Secret, SecretError
from .bootstrap_clusters import read_cluster, warn_on_circuit_breakers
from .bootstrap_routes import read_hcm
from .bootstrap_shared import ConfigError, format_validation_error
from .gateway import ClusterRuntime, GatewayRuntime, RouteRuntime, SharedStateRuntime
from .inference import InferenceRoute, build_pickers


def load_bootstrap(path: str | Path, *, resolve_secrets: bool = True) -> GatewayRuntime:
    return build_config(read_bootstrap(path), source=str(path), resolve_secrets=resolve_secrets)


def read_bootstrap(path: str | Path) -> Any:
    """The bootstrap YAML as data (ConfigError, a ValueError, when unreadable)."""
    path = Path(path)
    try:
        return yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ConfigError([f"cannot read the bootstrap: {exc.strerror}"], str(path)) from None
    except yaml.YAMLError as exc:
        # Only the problem and the line: the YAML library's snippet of the line could
        # hold a secret.
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(
            [f"the bootstrap is not valid YAML{where}: {getattr(exc, 'problem', None) or 'syntax error'}"],
            str(path),
        ) from None


def build_config(doc: Any, *, source: str = "", resolve_secrets: bool = True) -> GatewayRuntime:
    problems: list[str] = []
    if not isinstance(doc, dict):
        raise ConfigError(["the bootstrap must be a YAML mapping"], source)
    static = doc.get("static_resources") or {}

    clusters: dict[str, ClusterRuntime] = {}
    health_addresses: set[tuple[str, int]] = set()
    for ci, cluster in enumerate(static.get("clusters") or []):
        read_cluster(ci, cluster, clusters, problems, resolve_secrets, health_addresses)
    if len(health_addresses) > 1:
        problems.append(
            "gateway endpoints' health_check_config addresses differ "
            f"({', '.join(f'{h}:{p}' for h, p in sorted(health_addresses))}); they "
            "must all name the processor's one health endpoint"
        )
    by_name: dict[str, Backend] = {}
    for backend in (b for c in clusters.values() for b in c.backends):
        if backend.name in by_name:
            problems.append(
                f"backend name '{backend.name}' is used by more than one endpoint; "
                "names identify backends in logs, metrics and health checks"
            )
        by_name[backend.name] = backend

    routes: dict[str, RouteRuntime] = {}
    for li, listener in enumerate(static.get("listeners") or []):
        lname = listener.get("name") or f"listeners[{li}]"
        for loc, hcm in wiring.connection_managers(listener, lname, problems, bool(clusters)):
            read_hcm(loc, hcm, routes, clusters, problems)
    wiring.check_document(doc, set(clusters), problems)

    if problems:
        raise ConfigError(problems, source)
    for processor in _processor_clusters(doc):
        warn_on_circuit_breakers(
            processor["name"], processor, "its ext_proc streams: one or two per request", retries=False
        )
    gw = GatewayRuntime(routes, clusters, by_name)
    gw.pickers = _inference_routes(routes, problems)
    if problems:
        raise ConfigError(problems, source)
    gw.shared_state, gw.limits = _shared_state(doc, problems, resolve_secrets)
    _check_token_charges(routes, gw.limits, problems)
    if problems:
        raise ConfigError(problems, source)
    gw.processor_sockets = processor_sockets(doc)
    gw.health_address = next(iter(health_addresses), None)
    gw.max_response_bytes = buffer_limit(doc, set(clusters))
    return gw


def _check_token_charges(
    routes: dict[str, RouteRuntime], limits: dict[str, LimitSpec], problems: list[str]
) -> None:
    """A route's `tokenCharge` must name a token limit the node metadata holds (which
    also needs `sharedState`): otherwise its requests would never be charged."""
    for route in routes.values():
        charge = route.policy.token_charge
        if charge is None:
            continue
        spec = limits.get(charge.limit)
        if spec is None or spec.unit != "tokens":
            problems.append(
                f"{route.location}: tokenCharge names limit '{charge.limit}', which is not a "
                f"token limit in node.metadata.{wire.NAMESPACE}.rateLimits"
            )


def _shared_state(
    doc: dict[str, Any], problems: list[str], resolve_secrets: bool
) -> tuple[SharedStateRuntime | None, dict[str, LimitSpec]]:
    """`node.metadata.aigw`: Redis and the global limits (rendered by `aigw render`)."""
    node = doc.get("node") or {}
    aigw = ((node.get("metadata") or {}) if isinstance(node, dict) else {}).get(wire.NAMESPACE)
    if aigw is None:
        return None, {}
    where = "node.metadata.aigw"
    if not isinstance(aigw, dict) or set(aigw) - {"sharedState", "rateLimits"}:
        problems.append(f"{where}: holds 'sharedState' and 'rateLimits' only")
        return None, {}
    limits: dict[str, LimitSpec] = {}
    for limit, spec in (aigw.get("rateLimits") or {}).items():
        try:
            limits[str(limit)] = LimitSpec.model_validate(spec)
        except ValidationError as exc:
            problems.extend(f"{where}.rateLimits.{limit}: {p}" for p in format_validation_error(exc))
    try:
        shared = SharedState.model_validate(aigw.get("sharedState"))
    except ValidationError as exc:
        problems.extend(f"{where}.sharedState: {p}" for p in format_validation_error(exc))
        return None, {}
    password = None
    if shared.redis.password_ref is not None and resolve_secrets:
        try:
            password = Secret(shared.redis.password_ref)
        except SecretError as exc:
            problems.append(f"{where}.sharedState.redis.passwordRef: {exc}")
    return SharedStateRuntime(shared, password), limits


def _inference_routes(routes: dict[str, RouteRuntime], problems: list[str]) -> dict[str, EndpointPicker]:
    """Routes to an inference pool get the pool's picker (one per pool, shared)."""
    with_pools = [r for r in routes.values() if r.policy.inference is not None]
    try:
        pickers = build_pickers([r.policy.inference for r in with_pools if r.policy.inference])
    except (OSError, ValueError) as exc:  # a pool's DNS name that does not resolve, say
        problems.append(f"inference pools: {exc}")
        return {}
    for r in with_pools:
        assert r.policy.inference is not None
        r.inference = InferenceRoute(r.policy.inference, pickers[r.policy.inference.pool.name])
    return pickers


def _processor_clusters(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """The clusters the ext_proc filters call, in the bootstrap's order."""
    names = set()
    for flt in _all_ext_proc_filters(doc):
        cluster = ((flt.get("grpc_service") or {}).get("envoy_grpc") or {}).get("cluster_name")
        if cluster:
            names.add(cluster)
    clusters = (doc.get("static_resources") or {}).get("clusters") or []
    return [c for c in clusters if c.get("name") in names]


def processor_sockets(doc: dict[str, Any]) -> list[str]:
    """The Unix sockets Envoy expects the processor on: the `pipe` endpoints of the cluster
    the ext_proc filters call, in order. One worker process serves each (`serve --workers`),
    so the paths are written once, in the bootstrap."""
    paths: list[str] = []
    for cluster in _processor_clusters(doc):
        for locality in (cluster.get("load_assignment") or {}).get("endpoints") or []:
            for lb in locality.get("lb_endpoints") or []:
                pipe = ((lb.get("endpoint") or {}).get("address") or {}).get("pipe")
                if pipe and pipe.get("path") and pipe["path"] not in paths:
                    paths.append(pipe["path"])
    return paths


def processor_socket(doc: dict[str, Any]) -> str | None:
    """The first processor socket of the bootstrap, if it has one."""
    paths = processor_sockets(doc)
    return paths[0] if paths else None


def _all_ext_proc_filters(doc: dict[str, Any]) -> Iterator[dict]:
    static = doc.get("static_resources") or {}
    for listener in static.get("listeners") or []:
        for _, hcm in wiring.connection_managers(listener, "", [], False):
            for f in hcm.get("http_filters") or []:
                typed = f.get("typed_config") or {}
                if typed.get("@type", "").endswith(wire.EXT_PROC):
                    yield typed
    for cluster in static.get("clusters") or []:
        options = (cluster.get("typed_extension_protocol_options") or {}).get(wire.HTTP_OPTIONS) or {}
        for f in options.get("http_filters") or []:
            typed = f.get("typed_config") or {}
            if typed.get("@type", "").endswith(wire.EXT_PROC):
                yield typed
