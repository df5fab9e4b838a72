"""The routes of a rendered bootstrap: matches, weighted backends, retries for priority
groups, header modifiers, and route policies (namespace `aigw` in route metadata) merged
from the policies that target each route."""

from __future__ import annotations

from typing import Any

from .. import wire
from ..providers.base import NEVER_FORWARDED
from . import rate_limits
from .backend_model import BackendSpec, PriorityGroups
from .envoy_parts import APPEND, OVERWRITE, duration
from .inference import pool_retry_policy, pool_route_metadata
from .model import GatewaySpec
from .rate_limits import local_rate_limit
from .route_model import HeaderModifier, Route, RouteFilter, RouteMatch, ValueMatch


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
        if (charge := rate_limits.token_charge(route)) is not None:
            policy["tokenCharge"] = charge
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


def merge_policies(cfg: GatewaySpec) -> list[Route]:
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
