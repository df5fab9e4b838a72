"""A bootstrap's listeners read into routes: the route-level ext_proc filter on every
listener serving `aigw` routes, each route's policy and guards compiled, and routes that
send to one-endpoint clusters checked (bootstrap.py runs this for every listener)."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from .. import wire
from ..config import wiring
from ..config.policy import RoutePolicy
from ..config.shared_state import charge_inputs
from ..guards.pipeline import RequestGuards, ResponseGuards, RouteGuards
from ..secrets import SecretError
from .bootstrap_shared import ExtProcFilter, filter_phase, format_validation_error
from .gateway import ClusterRuntime, RouteRuntime


def read_hcm(
    loc: str,
    hcm: dict,
    routes: dict[str, RouteRuntime],
    clusters: dict[str, ClusterRuntime],
    problems: list[str],
) -> None:
    route_filter = None
    for fi, f in enumerate(hcm.get("http_filters") or []):
        typed = f.get("typed_config") or {}
        if typed.get("@type", "").endswith(wire.EXT_PROC) and filter_phase(typed) == "route":
            route_filter = ExtProcFilter("route", f, f"{loc} http_filters[{fi}] ({f.get('name')})")
            break
    route_config = hcm.get("route_config") or {}
    has_gateway_routes = False
    charged: list[RouteRuntime] = []  # this listener's routes with a token budget
    config_level = wiring.weakening(route_config.get("typed_per_filter_config"))
    for vi, vhost in enumerate(route_config.get("virtual_hosts") or []):
        vname = vhost.get("name") or f"virtual_hosts[{vi}]"
        vhost_level = config_level + wiring.weakening(vhost.get("typed_per_filter_config"))
        for ri, route in enumerate(vhost.get("routes") or []):
            aigw = ((route.get("metadata") or {}).get("filter_metadata") or {}).get(wire.NAMESPACE)
            cluster_names, dynamic = wiring.route_targets(route)
            rname = route.get("name")
            where = f"route '{rname}'" if rname else f"{loc} virtual host '{vname}' routes[{ri}]"
            if dynamic and clusters:
                problems.append(
                    f"{where}: {', '.join(dynamic)} lets a request choose any cluster, "
                    "AI clusters included; name clusters explicitly"
                )
                continue
            reaches_gateway = any(c in clusters for c in cluster_names)
            if aigw is None and not reaches_gateway:
                continue
            has_gateway_routes = True
            weighted = ((route.get("route") or {}).get("weighted_clusters") or {}).get("clusters") or []
            weakened = (
                vhost_level
                + wiring.weakening(route.get("typed_per_filter_config"))
                + [w for c in weighted for w in wiring.weakening(c.get("typed_per_filter_config"))]
            )
            if reaches_gateway and weakened:
                problems.append(
                    f"{where}: reaches an AI backend but {', '.join(weakened)} switches "
                    "off or changes an ext_proc filter; requests would bypass the gateway"
                )
                continue
            if not rname:
                problems.append(
                    f"{where}: a route with '{wire.NAMESPACE}' metadata or an AI backend needs "
                    "a 'name' (the processor finds its policy by route name)"
                )
                continue
            if rname in routes:
                problems.append(
                    f"{where}: route name '{rname}' is used twice; gateway routes need unique names"
                )
                continue
            policy = _route_policy(where, aigw, problems)
            if policy is None:
                continue
            guards = _route_guards(where, rname, policy, problems)
            # Clusters a route never sends to (weight 0) do not count for its cooldown check.
            live = [c.get("name") for c in weighted if c.get("weight", 1)] if weighted else cluster_names
            backends = [b for c in live for b in (clusters[c].backends if c in clusters else [])]
            routes[rname] = RouteRuntime(
                name=rname,
                policy=policy,
                location=where,
                clusters=tuple(cluster_names),
                model_always_set=(bool(backends) and all(b.settings.model for b in backends))
                or any(d.path == "model" for d in policy.field_defaults),
                backends=tuple(b.name for b in backends),
                guards=guards,
            )
            if policy.token_charge is not None:
                charged.append(routes[rname])
    if has_gateway_routes:
        if route_filter is None:
            problems.append(
                f"{loc}: serves gateway routes but has no route-level ext_proc filter "
                f"(initial_metadata {wire.PHASE}: route) in http_filters"
            )
        else:
            # Routes to a one-endpoint cluster are translated here: the filter must be told
            # which cluster Envoy routed to.
            direct = any(clusters[c].direct for r in routes.values() for c in r.clusters if c in clusters)
            wiring.check_filter(
                route_filter.entry,
                route_filter.location,
                "route",
                (
                    wire.ROUTE_NAME,
                    *([wire.CLUSTER_NAME] if direct else []),
                    *_charge_attributes(route_filter, charged, problems),
                ),
                problems,
            )
            if direct:
                _check_direct_routes(loc, routes, clusters, problems)
                if not (route_filter.config.get("mutation_rules") or {}).get("allow_all_routing"):
                    problems.append(
                        f"{route_filter.location}: mutation_rules must be {{allow_all_routing: "
                        "true}: routes reach one-endpoint clusters, for which this filter "
                        "sets the provider's Host and credential"
                    )


def _check_direct_routes(
    loc: str, routes: dict[str, RouteRuntime], clusters: dict[str, ClusterRuntime], problems: list[str]
) -> None:
    """Content-based routing re-matches routes after the body was read, so the cluster the
    route-level filter translated for may not be the one Envoy then sends to. A route
    table with content routing may therefore not reach a one-endpoint cluster (give the
    cluster the upstream filter instead)."""
    content = [r.name for r in routes.values() if r.policy.content_routing]
    direct = sorted({c for r in routes.values() for c in r.clusters if c in clusters and clusters[c].direct})
    if content and direct:
        problems.append(
            f"{loc}: route(s) {', '.join(content)} route by content, so cluster(s) "
            f"{', '.join(direct)} need the upstream ext_proc filter (the route is "
            "chosen again after the request body was translated)"
        )


def _charge_attributes(
    route_filter: ExtProcFilter, charged: list[RouteRuntime], problems: list[str]
) -> list[str]:
    """What the route-level filter needs from Envoy to charge these routes' budgets to the
    client the budget check counted (shared_state/client_key.py): the attributes it must
    ask for, and a problem when the key headers' metadata is not forwarded to it."""
    charges = [(r.name, r.policy.token_charge) for r in charged if r.policy.token_charge is not None]
    attributes, headers = charge_inputs(charge.key for _, charge in charges)
    if headers:
        options = route_filter.config.get("metadata_options") or {}
        forwarded = ((options.get("forwarding_namespaces") or {}).get("untyped")) or []
        if wire.RATELIMIT_KEYS not in forwarded:
            by_header = [name for name, charge in charges if charge.key.header]
            problems.append(
                f"{route_filter.location}: metadata_options.forwarding_namespaces.untyped must "
                f"include {wire.RATELIMIT_KEYS}: route(s) {', '.join(by_header)} "
                "charge a token budget keyed by a header copied there"
            )
    return attributes


def _route_policy(where: str, aigw: Any, problems: list[str]) -> RoutePolicy | None:
    if aigw is None:
        return RoutePolicy()
    if not isinstance(aigw, dict):
        problems.append(f"{where}: '{wire.NAMESPACE}' metadata must be a mapping")
        return None
    try:
        return RoutePolicy.model_validate(aigw)
    except ValidationError as exc:
        problems.extend(f"{where}: {msg}" for msg in format_validation_error(exc))
        return None


def _route_guards(where: str, name: str, policy: RoutePolicy, problems: list[str]):
    """Compile the route's guards now: patterns, Presidio engines, webhook and moderation
    clients (and their secrets). Nothing of this is built per request."""
    cfg = policy.prompt_guard
    if cfg is None:
        return None
    try:
        return RouteGuards(
            RequestGuards(cfg.request, name) if cfg.request else None,
            ResponseGuards(cfg.response, name) if cfg.response else None,
        )
    except SecretError as exc:
        problems.append(f"{where}: field 'promptGuard': {exc}")
    except ValueError as exc:
        problems.append(f"{where}: field 'promptGuard': {exc}")
    return None
