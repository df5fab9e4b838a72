"""Renders the compact gateway config to an Envoy bootstrap (a plain dict, dumped as YAML).

The output is ordinary Envoy config with the same wiring as the hand-written bootstraps in
envoy/: the route-level ext_proc filter, the upstream ext_proc filter on every AI cluster,
backend settings in endpoint metadata and route policy in route metadata (namespace
`aigw`), JSON local replies, and, for priority groups, the retry policy, health checks
answered by the processor and outlier detection described in the README.
"""

from __future__ import annotations

from collections.abc import Set
from typing import Any

from .. import wire
from ..config.wiring import PATH_HANDLING, REQUIRED_RUNTIME
from ..errors import error_body
from ..providers import PROVIDERS
from ..providers.base import NEVER_FORWARDED
from ..wire import IMMEDIATE_HC_FAIL
from . import rate_limits
from .envoy_parts import (
    APPEND,
    OVERWRITE,
    RAW_BUFFER,
    access_log,
    duration,
    ext_proc_filter,
    local_reply_config,
    socket_address,
    upstream_tls,
)
from .inference import add_endpoint_picking, pool_retry_policy, pool_route_metadata
from .model import (
    BackendSpec,
    Endpoint,
    Failover,
    GatewaySpec,
    HeaderModifier,
    PriorityGroups,
    ProviderEntry,
    Route,
    RouteFilter,
    RouteMatch,
    ValueMatch,
)
from .rate_limits import local_rate_limit

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


def _header_modifier(f: RouteFilter) -> HeaderModifier:
    """A Request/ResponseHeaderModifier filter's settings (its validator ensures they are set)."""
    modifier = f.request_header_modifier if f.type == "RequestHeaderModifier" else f.response_header_modifier
    assert modifier is not None
    return modifier


def route_added_headers(cfg: GatewaySpec) -> dict[str, set[str]]:
    """Backend name -> the request headers routes to it add (RequestHeaderModifier), less
    those no backend may receive from anyone but the gateway."""
    out: dict[str, set[str]] = {}
    for route in cfg.routes:
        names = {
            h.name.lower()
            for f in route.filters
            if f.type == "RequestHeaderModifier"
            for h in (*_header_modifier(f).set, *_header_modifier(f).add)
        }
        names -= NEVER_FORWARDED.keys()
        for ref in route.backend_refs:
            out.setdefault(ref.name, set()).update(names)
    return out


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


def _match(m: RouteMatch) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if m.path.type == "PathPrefix":
        out["prefix"] = m.path.value
    elif m.path.type == "Exact":
        out["path"] = m.path.value
    else:
        out["safe_regex"] = {"regex": m.path.value}
    if m.headers:
        out["headers"] = [_value_match(h) for h in m.headers]
    if m.query_params:
        out["query_parameters"] = [_value_match(q) for q in m.query_params]
    return out


def _value_match(v: ValueMatch) -> dict[str, Any]:
    """A header or query parameter matcher: both take a name and a string_match."""
    match = {"exact": v.value} if v.type == "Exact" else {"safe_regex": {"regex": v.value}}
    return {"name": v.name, "string_match": match}


def _retry_policy(backends: list[BackendSpec]) -> dict[str, Any] | None:
    groups = [b.ai for b in backends if isinstance(b.ai, PriorityGroups)]
    if not groups:
        return None
    largest = max(len(g.providers) for grp in groups for g in grp.priority_groups)
    depth = max(len(grp.priority_groups) for grp in groups)
    hosts = max(sum(len(g.providers) for g in grp.priority_groups) for grp in groups)
    return {
        "retry_on": "retriable-status-codes,5xx,reset,connect-failure",
        "retriable_status_codes": [429],
        # previous_priorities moves on after `largest` attempts in a group, so each group
        # gets that many, whatever its own size: a smaller group may see one host twice.
        "num_retries": max(1, largest * depth - 1),
        "retry_host_predicate": [
            {
                "name": "envoy.retry_host_predicates.previous_hosts",
                "typed_config": {"@type": wire.PREVIOUS_HOSTS_TYPE},
            }
        ],
        "host_selection_retry_max_attempts": max(3, hosts + 1),
        # Leave a group only after each of its hosts was tried.
        "retry_priority": {
            "name": "envoy.retry_priorities.previous_priorities",
            "typed_config": {
                "@type": wire.PREVIOUS_PRIORITIES_TYPE,
                "update_frequency": largest,
            },
        },
    }


def _headers_to_add(modifier: HeaderModifier) -> list[dict[str, Any]]:
    return [
        {"header": {"key": h.name, "value": h.value}, "append_action": OVERWRITE} for h in modifier.set
    ] + [{"header": {"key": h.name, "value": h.value}, "append_action": APPEND} for h in modifier.add]


def render_routes(cfg: GatewaySpec, route: Route) -> list[dict[str, Any]]:
    backends = {b.name: b for b in cfg.all_backends}
    targets = [backends[r.name] for r in route.backend_refs]
    is_ai = bool(targets) and targets[0].carries_ai
    pool = targets[0] if targets and targets[0].inference_pool is not None else None
    base: dict[str, Any] = {}
    per_filter: dict[str, Any] = {}
    if route.direct_response is not None:
        d = route.direct_response
        base["direct_response"] = {"status": d.status, "body": {"inline_string": d.body}}
        base["response_headers_to_add"] = [
            {"header": {"key": "content-type", "value": d.content_type}, "append_action": OVERWRITE}
        ]
    else:
        action: dict[str, Any] = {
            "timeout": duration(route.timeouts.request),
            "idle_timeout": duration(route.timeouts.idle),
        }
        if len(route.backend_refs) == 1:
            action["cluster"] = route.backend_refs[0].name
        else:
            action["weighted_clusters"] = {
                "clusters": [{"name": r.name, "weight": r.weight} for r in route.backend_refs]
            }
        retry = _retry_policy(targets) if pool is None else pool_retry_policy(pool)
        if route.timeouts.backend_request:
            # Without priority groups there is no other host to move on to: the attempt's
            # limit is the request's.
            retry = retry or {"num_retries": 0}
            retry["per_try_timeout"] = duration(route.timeouts.backend_request)
        if retry:
            action["retry_policy"] = retry
        for f in route.filters:
            if f.type == "URLRewrite":
                rw = f.url_rewrite
                assert rw is not None  # RouteFilter's validator requires it for this type
                if rw.path is not None and rw.path.type == "ReplacePrefixMatch":
                    action["prefix_rewrite"] = rw.path.replace_prefix_match
                elif rw.path is not None:
                    action["regex_rewrite"] = {
                        "pattern": {"regex": "^.*$"},
                        "substitution": rw.path.replace_full_path,
                    }
                if rw.hostname:
                    action["host_rewrite_literal"] = rw.hostname
        base["route"] = action
    for f in route.filters:
        if f.type == "RequestHeaderModifier":
            base.setdefault("request_headers_to_add", []).extend(_headers_to_add(_header_modifier(f)))
            base.setdefault("request_headers_to_remove", []).extend(_header_modifier(f).remove)
        elif f.type == "ResponseHeaderModifier":
            base.setdefault("response_headers_to_add", []).extend(_headers_to_add(_header_modifier(f)))
            base.setdefault("response_headers_to_remove", []).extend(_header_modifier(f).remove)
    if is_ai:
        policy = (
            route.policies.model_dump(mode="json", by_alias=True, exclude_unset=True)
            if route.policies
            else {}
        )
        policy.setdefault("maxRequestBytes", cfg.gateway.max_request_bytes)
        if pool is not None:
            policy["inference"] = pool_route_metadata(pool)
        base["metadata"] = {"filter_metadata": {wire.NAMESPACE: policy}}
    else:
        per_filter["envoy.filters.http.ext_proc"] = {"@type": wire.EXT_PROC_PER_ROUTE_TYPE, "disabled": True}
    if route.rate_limit is not None and route.rate_limit.scope == "local":
        per_filter["envoy.filters.http.local_ratelimit"] = local_rate_limit(route.name, route.rate_limit)
    per_filter.update(rate_limits.per_route(rate_limits.global_limits(route)))
    if per_filter:
        base["typed_per_filter_config"] = per_filter
    out = []
    for i, m in enumerate(route.matches):
        name = route.name if i == 0 else f"{route.name}.{i + 1}"
        out.append({"name": name, "match": _match(m), **base})
    return out


def _merge_policies(cfg: GatewaySpec) -> list[Route]:
    """Apply top-level `policies` to the routes they target (the loader has already
    reported a route that sets what a policy sets; this is the last line of defence)."""
    routes = {r.name: r for r in cfg.routes}
    # (route field, the policy's field for it, its name in the config)
    fields = (
        ("policies", "ai", "policies"),
        ("rate_limit", "rate_limit", "rateLimit"),
        ("token_budget", "token_budget", "tokenBudget"),
    )
    for policy in cfg.policies:
        for ref in policy.target_refs:
            route = routes[ref.name]
            update: dict[str, Any] = {}
            for field, policy_field, written in fields:
                value = getattr(policy, policy_field)
                if value is None:
                    continue
                if getattr(route, field) is not None:
                    raise ValueError(
                        f"route '{route.name}' has {written} and is also targeted by "
                        f"policy '{policy.name}'; keep one"
                    )
                update[field] = value
            routes[ref.name] = route.model_copy(update=update)
    return [routes[r.name] for r in cfg.routes]


def render(cfg: GatewaySpec) -> dict[str, Any]:
    g = cfg.gateway
    routes = _merge_policies(cfg)
    vhost_routes = [er for r in routes for er in render_routes(cfg, r)]
    if not any(
        r.path.type == "PathPrefix" and r.path.value == "/" and not r.headers and not r.query_params
        for route in routes
        for r in route.matches
    ):
        vhost_routes.append(
            {
                "name": "not-found",
                "match": {"prefix": "/"},
                "direct_response": {
                    "status": 404,
                    "body": {
                        "inline_string": error_body(
                            "no route for this path",
                            status=404,
                            code="unknown_url",
                            type_="invalid_request_error",
                        ).decode()
                    },
                },
                "response_headers_to_add": [
                    {
                        "header": {"key": "content-type", "value": "application/json"},
                        "append_action": OVERWRITE,
                    }
                ],
                "typed_per_filter_config": {
                    "envoy.filters.http.ext_proc": {"@type": wire.EXT_PROC_PER_ROUTE_TYPE, "disabled": True}
                },
            }
        )
    http_filters: list[dict[str, Any]] = []
    if any(r.rate_limit and r.rate_limit.scope == "local" for r in routes):
        http_filters.append(
            {
                "name": "envoy.filters.http.local_ratelimit",
                "typed_config": {"@type": wire.LOCAL_RATELIMIT_TYPE, "stat_prefix": "aigw_rl"},
            }
        )
    # Before the processor: a refused request costs it nothing.
    if headers := rate_limits.key_headers(routes):
        http_filters.append(rate_limits.client_key_filter(headers))
    if any(rate_limits.global_limits(r) for r in routes):
        http_filters.append(rate_limits.rate_limit_filter(cfg, routes))
    # Content routing chooses the route again after the body: then every AI cluster keeps
    # its upstream filter (see render_cluster).
    content_routing = any(r.policies is not None and r.policies.content_routing for r in routes)
    # A route's URLRewrite is applied by the router after the route-level filter, so it
    # would rewrite the provider path (or Host) the filter set: such a route's backends
    # keep the upstream filter, which runs after the router.
    rewritten = {
        ref.name for r in routes if any(f.type == "URLRewrite" for f in r.filters) for ref in r.backend_refs
    }
    direct_backends = (
        set()
        if content_routing
        else {b.name for b in cfg.all_backends if is_direct(b) and b.name not in rewritten}
    )
    direct = bool(direct_backends)
    http_filters.append(
        ext_proc_filter(
            "route",
            g.processor.timeout,
            [wire.ROUTE_NAME, wire.CLUSTER_NAME] if direct else [wire.ROUTE_NAME],
            metadata_options={"receiving_namespaces": {"untyped": [wire.NAMESPACE]}},
            # The route-level filter sets the provider's Host when it translates itself.
            **({"mutation_rules": {"allow_all_routing": True, "allow_envoy": True}} if direct else {}),
        )
    )
    http_filters.append(
        {
            "name": "envoy.filters.http.router",
            "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"},
        }
    )
    hcm: dict[str, Any] = {
        "@type": wire.HCM_TYPE,
        "stat_prefix": "gateway",
        "always_set_request_id_in_response": True,
        # The client address is the connection's, not what X-Forwarded-For claims (per-address
        # rate limits), unless proxies in front are trusted.
        "use_remote_address": True,
        "xff_num_trusted_hops": g.trusted_proxy_hops,
        # Before routing: a path trick (`//`, `/./`, `%63`, `%2F`) cannot miss a guarded route.
        **PATH_HANDLING,
        "local_reply_config": local_reply_config(),
        "route_config": {
            "name": "gateway",
            "virtual_hosts": [
                {
                    "name": "gateway",
                    "domains": ["*"],
                    "include_request_attempt_count": True,
                    "routes": vhost_routes,
                    # Set by the upstream filter for Envoy's router (rate-limited host), not for clients.
                    **(
                        {"response_headers_to_remove": [IMMEDIATE_HC_FAIL]}
                        if any(isinstance(b.ai, PriorityGroups) for b in cfg.all_backends)
                        else {}
                    ),
                }
            ],
        },
        "http_filters": http_filters,
    }
    if g.access_log:
        hcm = {"@type": hcm.pop("@type"), "access_log": access_log(), **hcm}
    clusters: list[dict[str, Any]] = [
        {
            "name": "extproc",
            "type": "STATIC",
            "connect_timeout": "1s",
            "typed_extension_protocol_options": {
                wire.HTTP_OPTIONS: {
                    "@type": wire.HTTP_OPTIONS_TYPE,
                    "explicit_http_config": {"http2_protocol_options": {}},
                }
            },
            "load_assignment": {
                "cluster_name": "extproc",
                "endpoints": [
                    {
                        "lb_endpoints": [
                            {"endpoint": {"address": {"pipe": {"path": path}}}}
                            for path in g.processor.sockets()
                        ]
                    }
                ],
            },
        }
    ]
    if len(g.processor.sockets()) > 1:
        # A worker being restarted must not get streams: Envoy asks each one's gRPC health
        # service and balances over those that answer SERVING.
        clusters[0]["health_checks"] = [
            {
                "timeout": "1s",
                "interval": "1s",
                "unhealthy_threshold": 1,
                "healthy_threshold": 1,
                "grpc_health_check": {},
            }
        ]
    added = route_added_headers(cfg)
    clusters += [
        render_cluster(b, cfg, b.name in direct_backends, added.get(b.name, set())) for b in cfg.all_backends
    ]
    out: dict[str, Any] = {
        "admin": {"address": socket_address("127.0.0.1", g.admin_port)},
        # Works around an Envoy 1.40 crash (README, "Operations notes"); the only layer, so
        # nothing can switch it back at run time.
        "layered_runtime": {"layers": [{"name": "static", "static_layer": dict(REQUIRED_RUNTIME)}]},
        "static_resources": {
            "listeners": [
                {
                    "name": "gateway",
                    "address": socket_address(g.listen.address, g.listen.port),
                    # Envoy buffers whole request bodies: room for the largest any route accepts.
                    "per_connection_buffer_limit_bytes": 2
                    * max(
                        [g.max_request_bytes]
                        + [
                            r.policies.max_request_bytes
                            for r in routes
                            if r.policies and r.policies.max_request_bytes
                        ]
                    ),
                    "filter_chains": [
                        {
                            "filters": [
                                {"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}
                            ]
                        }
                    ],
                }
            ],
            "clusters": clusters,
        },
    }
    if g.shared_state is not None:
        out = {"node": node(cfg, routes), **out}
    return out


def node(cfg: GatewaySpec, routes: list[Route]) -> dict[str, Any]:
    """Envoy's node, whose metadata carries what the processor needs of the shared state
    (Redis, cooldown sharing, and what each global limit id allows): Envoy keeps it as
    written, and the processor reads the same file."""
    shared = cfg.gateway.shared_state
    assert shared is not None
    aigw = {
        "sharedState": shared.model_dump(mode="json", by_alias=True, exclude_none=True),
        "rateLimits": {
            limit: spec.model_dump(mode="json", by_alias=True)
            for limit, spec in rate_limits.limit_specs(routes).items()
        },
    }
    return {"id": "aigw", "cluster": "aigw", "metadata": {wire.NAMESPACE: aigw}}
