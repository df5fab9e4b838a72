"""A bootstrap's clusters read into backends: each `aigw` endpoint's settings validated,
its secret resolved, its cluster's upstream ext_proc filter and health checks checked
(bootstrap.py runs this for every cluster)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from pydantic import ValidationError

from .. import wire
from ..backends import Backend
from ..config import wiring
from ..providers import PROVIDERS, backend_settings_adapter
from ..secrets import Secret, SecretError
from .bootstrap_shared import ExtProcFilter, filter_phase, format_validation_error
from .gateway import ClusterRuntime

log = logging.getLogger("aigw.config")

# Envoy's default circuit breaker: this many retries, and requests, in flight per cluster.
_ENVOY_DEFAULT_MAX_RETRIES = 3
_ENVOY_DEFAULT_MAX_REQUESTS = 1024

# ---- clusters and endpoints -------------------------------------------------------------


def read_cluster(
    ci: int,
    cluster: dict,
    clusters: dict[str, ClusterRuntime],
    problems: list[str],
    resolve_secrets: bool,
    health_addresses: set[tuple[str, int]],
) -> None:
    name = cluster.get("name") or f"clusters[{ci}]"
    upstream_filter = _upstream_ext_proc(cluster, name, problems)
    endpoints = list(_endpoints(cluster))
    gateway_endpoints = [e for e in endpoints if e[2] is not None]
    if not gateway_endpoints and upstream_filter is None:
        return  # an ordinary cluster (the processor itself, a webhook, ...)
    # A cluster of one gateway endpoint needs no per-attempt filter: every attempt goes to
    # that host, so the route-level filter translates for it (it learns the cluster from
    # `xds.cluster_name`). Several endpoints need the upstream filter: which host an
    # attempt goes to is only known after Envoy has picked it.
    direct = upstream_filter is None and len(endpoints) == 1
    if upstream_filter is None and not direct:
        problems.append(
            f"cluster '{name}': its endpoints carry '{wire.NAMESPACE}' metadata but the cluster has no "
            f"upstream ext_proc filter (initial_metadata {wire.PHASE}: upstream) in "
            f"typed_extension_protocol_options.{wire.HTTP_OPTIONS}.http_filters; with more than one "
            "endpoint, requests would reach the provider untranslated"
        )
        return
    if upstream_filter is not None:
        wiring.check_filter(
            upstream_filter.entry,
            upstream_filter.location,
            "upstream",
            (wire.UPSTREAM_HOST_METADATA,),
            problems,
        )
    elif cluster.get("type", "STATIC") not in ("STATIC", "STRICT_DNS", "LOGICAL_DNS"):
        problems.append(
            f"cluster '{name}': a cluster without the upstream ext_proc filter must "
            "be STATIC, STRICT_DNS or LOGICAL_DNS (its one endpoint is fixed)"
        )
        return

    warn_on_circuit_breakers(
        name, cluster, "LLM streams stay open for their whole answer", len(endpoints) > 1
    )
    cfg = clusters.setdefault(name, ClusterRuntime(name, direct=direct))
    health_checked = bool(cluster.get("health_checks"))
    if health_checked:
        panic = ((cluster.get("common_lb_config") or {}).get("healthy_panic_threshold") or {}).get("value")
        if panic != 0:
            problems.append(
                f"cluster '{name}': has health_checks, so set common_lb_config."
                "healthy_panic_threshold: {value: 0}; otherwise Envoy sends traffic to "
                "rate-limited hosts once half of them cool down"
            )
    for loc, address, aigw, lb in endpoints:
        where = f"cluster '{name}' endpoint {loc} ({address})"
        if aigw is None:
            problems.append(
                f"{where}: no '{wire.NAMESPACE}' metadata (metadata.filter_metadata.{wire.NAMESPACE}); "
                "every endpoint behind the upstream ext_proc filter needs a provider"
            )
            continue
        backend = _build_backend(where, name, address, aigw, problems, resolve_secrets)
        if backend is None:
            continue
        cfg.backends.append(backend)

        if health_checked:
            _check_health_config(where, backend.name, lb, problems, health_addresses)


def _endpoints(cluster: dict) -> Iterator[tuple[str, str, dict | None, dict]]:
    assignment = cluster.get("load_assignment") or {}
    for ei, locality in enumerate(assignment.get("endpoints") or []):
        for li, lb in enumerate(locality.get("lb_endpoints") or []):
            endpoint = lb.get("endpoint") or {}
            address = _address(endpoint.get("address") or {})
            metadata = ((lb.get("metadata") or {}).get("filter_metadata") or {}).get(wire.NAMESPACE)
            yield f"endpoints[{ei}].lb_endpoints[{li}]", address, metadata, lb


def _check_health_config(
    where: str, backend: str, lb: dict, problems: list[str], health_addresses: set[tuple[str, int]]
) -> None:
    """A health-checked gateway endpoint is checked at the processor, by backend name
    (see backend_health.py); checking the provider itself would tell nothing useful."""
    hc = (lb.get("endpoint") or {}).get("health_check_config") or {}
    sa = (hc.get("address") or {}).get("socket_address")
    if not sa:
        problems.append(
            f"{where}: the cluster has health_checks, so the endpoint needs "
            "health_check_config.address pointing at the processor's health "
            f"endpoint, and health_check_config.hostname: {backend}"
        )
        return
    if hc.get("hostname") != backend:
        problems.append(
            f"{where}: health_check_config.hostname must be the backend name "
            f"'{backend}' (the processor answers by name)"
        )
        return
    health_addresses.add((sa.get("address"), int(sa.get("port_value", 0))))


def _address(addr: dict) -> str:
    if "socket_address" in addr:
        sa = addr["socket_address"]
        return f"{sa.get('address')}:{sa.get('port_value')}"
    if "pipe" in addr:
        return addr["pipe"].get("path", "")
    return "?"


def _build_backend(
    where: str, cluster: str, address: str, aigw: Any, problems: list[str], resolve_secrets: bool
) -> Backend | None:
    if not isinstance(aigw, dict):
        problems.append(f"{where}: '{wire.NAMESPACE}' metadata must be a mapping")
        return None
    try:
        settings = backend_settings_adapter.validate_python(aigw)
    except ValidationError as exc:
        problems.extend(f"{where}: {msg}" for msg in format_validation_error(exc, tagged=True))
        return None
    provider_cls = PROVIDERS[settings.provider]
    if settings.auth is None and provider_cls.requires_auth:
        problems.append(
            f"{where}: field 'auth': required for provider '{settings.provider}' "
            "(a secretRef, or passthrough: true)"
        )
        return None
    secret = None
    if settings.auth is not None and settings.auth.secret_ref is not None and resolve_secrets:
        try:
            secret = Secret(settings.auth.secret_ref)
        except SecretError as exc:
            problems.append(f"{where}: field 'auth.secretRef': {exc}")
            return None
    if not settings.name:
        # Envoy hands the processor the host's metadata; the name is how it finds the
        # backend (and what logs, metrics and health checks call it).
        problems.append(f"{where}: field 'name': required, and unique across the bootstrap")
        return None
    try:
        provider = provider_cls(settings)
    except ValueError as exc:
        problems.append(f"{where}: {exc}")
        return None
    return Backend(settings.name, cluster, settings, provider, secret)


def _upstream_ext_proc(cluster: dict, name: str, problems: list[str]) -> ExtProcFilter | None:
    options = (cluster.get("typed_extension_protocol_options") or {}).get(wire.HTTP_OPTIONS) or {}
    for fi, f in enumerate(options.get("http_filters") or []):
        typed = f.get("typed_config") or {}
        if typed.get("@type", "").endswith(wire.EXT_PROC):
            flt = ExtProcFilter(
                filter_phase(typed), f, f"cluster '{name}' upstream http_filters[{fi}] ({f.get('name')})"
            )
            if flt.phase == "upstream":
                return flt
    return None


def warn_on_circuit_breakers(name: str, cluster: dict, what: str, retries: bool) -> None:
    """Envoy's default circuit breaker, left on a cluster the gateway depends on, is said at
    start-up (the renderer lifts it): 1024 requests in flight, where `what` says why that is
    soon reached; and, with `retries` (hosts that fail over to one another), 3 retries in
    flight, past which the requests that need a failover get the error instead (a 503)."""
    thresholds = (cluster.get("circuit_breakers") or {}).get("thresholds") or []
    # Envoy uses the first thresholds entry of a priority; routes use DEFAULT.
    default: dict[str, Any] = next((t for t in thresholds if t.get("priority", "DEFAULT") == "DEFAULT"), {})

    def value(key: str) -> Any:
        v = default.get(key)
        return v.get("value") if isinstance(v, dict) else v  # {value: N}, or N written plainly

    requests = value("max_requests")
    if not (isinstance(requests, int) and requests > _ENVOY_DEFAULT_MAX_REQUESTS):
        log.warning(
            "cluster '%s' allows only Envoy's default of %d requests in flight (%s): past it, "
            "Envoy answers 503; raise circuit_breakers.thresholds[priority DEFAULT].max_requests "
            "(and max_pending_requests, max_connections)",
            name,
            _ENVOY_DEFAULT_MAX_REQUESTS,
            what,
        )
    limit = value("max_retries")
    if (
        retries
        and default.get("retry_budget") is None
        and not (isinstance(limit, int) and limit > _ENVOY_DEFAULT_MAX_RETRIES)
    ):
        log.warning(
            "cluster '%s' allows only Envoy's default of %d retries in flight: under load, requests "
            "past that which need a failover get the error instead; set circuit_breakers.thresholds "
            "[{priority: DEFAULT, retry_budget: {budget_percent: {value: 100.0}}}]",
            name,
            _ENVOY_DEFAULT_MAX_RETRIES,
        )
