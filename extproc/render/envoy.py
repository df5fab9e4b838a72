"""Renders the compact gateway config to an Envoy bootstrap (a plain dict, dumped as YAML).

The output is ordinary Envoy config with the same wiring as the hand-written bootstraps in
envoy/: the route-level ext_proc filter, the upstream ext_proc filter on every AI cluster,
backend settings in endpoint metadata and route policy in route metadata (namespace
`aigw`), JSON local replies, and, for priority groups, the retry policy, health checks
answered by the processor and outlier detection described in the README.

This module assembles the bootstrap (listener, filters, the processor's cluster, admin);
the clusters of backends are `clusters.py`'s, the routes `routes.py`'s.
"""

from __future__ import annotations

from typing import Any

from .. import wire
from ..config.wiring import PATH_HANDLING, REQUIRED_RUNTIME
from ..errors import error_body
from ..wire import IMMEDIATE_HC_FAIL
from . import rate_limits
from .backend_model import PriorityGroups
from .clusters import is_direct, render_cluster
from .envoy_parts import (
    OVERWRITE,
    access_log,
    circuit_breakers,
    ext_proc_filter,
    local_reply_config,
    socket_address,
)
from .model import GatewaySpec
from .route_model import Route
from .routes import merge_policies, render_routes, route_added_headers


def render(cfg: GatewaySpec) -> dict[str, Any]:
    g = cfg.gateway
    routes = merge_policies(cfg)
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
    # A token budget is charged by the route-level filter: it names the client as the
    # budget check did.
    charge_attributes, forwarding = rate_limits.charge_inputs(routes)
    http_filters.append(
        ext_proc_filter(
            "route",
            g.processor.timeout,
            [wire.ROUTE_NAME, *([wire.CLUSTER_NAME] if direct else []), *charge_attributes],
            metadata_options={"receiving_namespaces": {"untyped": [wire.NAMESPACE]}, **forwarding},
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
            # Envoy's default of 1024 requests in flight is 1024 ext_proc streams here.
            "circuit_breakers": circuit_breakers(retry_budget=False),
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
