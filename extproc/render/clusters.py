"""The clusters of a rendered bootstrap: one per backend, its endpoints with the backend's
settings in their metadata (namespace `aigw`), TLS, and for priority groups the health
checks answered by the processor, outlier detection and the upstream ext_proc filter."""

from __future__ import annotations

from collections.abc import Set
from typing import Any

from .. import wire
from ..providers import PROVIDERS
from .backend_model import BackendSpec, Endpoint, Failover, PriorityGroups, ProviderEntry
from .envoy_parts import RAW_BUFFER, circuit_breakers, duration, ext_proc_filter, socket_address, upstream_tls
from .inference import add_endpoint_picking
from .model import GatewaySpec

HEALTH_PATH = "/aigw/backend-health"


def _endpoint_of(entry: ProviderEntry) -> Endpoint:
    if entry.endpoint is not None:
        return entry.endpoint
    provider = PROVIDERS[entry.provider](entry)
    host = entry.authority or provider.default_authority
    if not host:
        raise ValueError(f"provider '{entry.name}' ({entry.provider}) has no public host: set 'endpoint'")
    return Endpoint(host=host, port=443)


def _metadata(
    entry: ProviderEntry, backend: BackendSpec, endpoint: Endpoint, route_headers: Set[str] = frozenset()
) -> dict[str, Any]:
    # What the user wrote (normalised), so the processor reads back the same settings.
    md = entry.model_dump(mode="json", by_alias=True, exclude_unset=True, exclude={"endpoint"})
    if route_headers:
        # Headers the operator's own routes add for this backend pass the allow-list that
        # otherwise keeps client headers from a provider (backends.HeaderPolicy).
        md["allowHeaders"] = sorted(set(md.get("allowHeaders") or ()) | route_headers)
    md["provider"] = entry.provider
    md["name"] = entry.name or backend.name
    if entry.endpoint is not None and endpoint.uses_tls and not endpoint.is_ip:
        # The Host header should match the TLS name, unless the user chose one. A default
        # the provider derives from other settings (Vertex's regional host) gives way too.
        cls = PROVIDERS[entry.provider]
        plain = cls.settings_model.model_validate({k: v for k, v in md.items() if k != "authority"})
        if md.get("authority") in (None, plain.authority or cls.default_authority):
            md["authority"] = endpoint.host
    return md


def _static_cluster(name: str, ep: Endpoint) -> dict[str, Any]:
    """A plain HTTP service: no processor on the way."""
    cluster: dict[str, Any] = {
        "name": name,
        "type": "STATIC" if ep.is_ip else "STRICT_DNS",
        "connect_timeout": "5s",
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": socket_address(ep.host, ep.port)}}]}],
        },
    }
    if not ep.is_ip:
        cluster["dns_lookup_family"] = "V4_PREFERRED"
    if ep.uses_tls:
        cluster["transport_socket"] = upstream_tls(ep.sni or ep.host)
    return cluster


def render_cluster(
    backend: BackendSpec, cfg: GatewaySpec, direct_ok: bool = False, route_headers: Set[str] = frozenset()
) -> dict[str, Any]:
    """`direct_ok`: a backend of one host may leave out the upstream filter (the
    route-level filter then translates for it, one gRPC stream per request instead of
    two); not when content routing could re-route a request after its body was read, nor
    when a route to it rewrites the URL (see render)."""
    g = cfg.gateway
    buffer = 2 * g.max_request_bytes
    if backend.static is not None:
        return _static_cluster(backend.name, backend.static)

    groups = isinstance(backend.ai, PriorityGroups)
    localities: dict[int, list[dict[str, Any]]] = {}
    tls_names: set[str] = set()
    dns = False
    for priority, entry in backend.providers():
        ep = _endpoint_of(entry)
        dns |= not ep.is_ip
        md: dict[str, Any] = {wire.NAMESPACE: _metadata(entry, backend, ep, route_headers)}
        lb: dict[str, Any] = {
            "endpoint": {"address": socket_address(ep.host, ep.port)},
            "metadata": {"filter_metadata": md},
        }
        if ep.uses_tls:
            sni = ep.sni or ep.host
            tls_names.add(sni)
            md["envoy.transport_socket_match"] = {"aigw_tls": sni}
        if groups:
            lb["endpoint"]["health_check_config"] = {
                "address": socket_address("127.0.0.1", g.processor.health_port),
                "hostname": md[wire.NAMESPACE]["name"],
            }
        localities.setdefault(priority, []).append(lb)

    options: dict[str, Any] = {
        "@type": wire.HTTP_OPTIONS_TYPE,
        "explicit_http_config": {"http_protocol_options": {}},
    }
    if not (direct_ok and is_direct(backend)):
        options["http_filters"] = [
            ext_proc_filter(
                "upstream",
                g.processor.timeout,
                [wire.UPSTREAM_HOST_METADATA, wire.UPSTREAM_ADDRESS],
                # allow_envoy: the header allow-list removes a client's x-envoy-*
                # headers, and a 429 marks the host failed at once.
                mutation_rules={"allow_all_routing": True, "allow_envoy": True},
            ),
            {
                "name": "envoy.filters.http.upstream_codec",
                "typed_config": {"@type": wire.UPSTREAM_CODEC_TYPE},
            },
        ]
    cluster: dict[str, Any] = {
        "name": backend.name,
        "type": "STRICT_DNS" if dns else "STATIC",
        "connect_timeout": "5s",
        "per_connection_buffer_limit_bytes": buffer,
        "typed_extension_protocol_options": {wire.HTTP_OPTIONS: options},
        "load_assignment": {
            "cluster_name": backend.name,
            "endpoints": [{"priority": p, "lb_endpoints": eps} for p, eps in sorted(localities.items())],
        },
    }
    if dns:
        cluster["dns_lookup_family"] = "V4_PREFERRED"
    # Envoy's defaults: 3 retries and 1024 requests in flight per cluster (envoy_parts.py).
    cluster["circuit_breakers"] = circuit_breakers(retry_budget=True)
    # Each endpoint picks its TLS settings by metadata, so one cluster can mix providers.
    if tls_names:
        matches = [
            {"name": f"tls-{n}", "match": {"aigw_tls": n}, "transport_socket": upstream_tls(n)}
            for n in sorted(tls_names)
        ]
        if groups:
            matches.insert(
                0, {"name": "health-checks", "match": {"aigw_hc": "plain"}, "transport_socket": RAW_BUFFER}
            )
        cluster["transport_socket_matches"] = matches
    if isinstance(backend.ai, PriorityGroups):
        _add_failover(cluster, backend.ai.failover, plain_health_checks=bool(tls_names))
    if backend.inference_pool is not None:
        add_endpoint_picking(cluster)
    return cluster


def _add_failover(cluster: dict[str, Any], fo: Failover, plain_health_checks: bool) -> None:
    """Priority groups: health checks answered by the processor and outlier detection.
    `plain_health_checks`: the cluster's endpoints use TLS, the checks must not."""
    cluster["load_assignment"]["policy"] = {"overprovisioning_factor": 10000}
    # update_merge_window 0: Envoy's default (1 s) holds back every health change after
    # the first for up to a second, so the last rate-limited host of a group would keep
    # taking first attempts that long.
    cluster["common_lb_config"] = {"healthy_panic_threshold": {"value": 0}, "update_merge_window": "0s"}
    cluster["outlier_detection"] = {
        "consecutive_5xx": fo.outlier_detection.consecutive_5xx,
        "interval": "1s",
        "base_ejection_time": duration(fo.outlier_detection.base_ejection_time),
        "max_ejection_time": duration(fo.outlier_detection.max_ejection_time),
        "max_ejection_percent": 100,
    }
    check: dict[str, Any] = {
        "timeout": "1s",
        "interval": duration(fo.health_check_interval),
        "no_traffic_interval": duration(fo.health_check_interval),
        "unhealthy_threshold": 1,
        "healthy_threshold": 1,
        "http_health_check": {"path": HEALTH_PATH},
    }
    if plain_health_checks:
        check["transport_socket_match_criteria"] = {"aigw_hc": "plain"}
    cluster["health_checks"] = [check]


def is_direct(backend: BackendSpec) -> bool:
    """One AI host, so every attempt goes to it: translated at the route level."""
    return (
        backend.ai is not None
        and not isinstance(backend.ai, PriorityGroups)
        and len(list(backend.providers())) == 1
    )
