"""Rate limits in a rendered bootstrap: local (each Envoy's own token buckets) and global
(Envoy's rate-limit filter asking the processor's rate-limit service, counting in Redis),
and token budgets (the same filter checks the budget before a request; the route-level
filter charges each request's tokens when it ends, from the route's `tokenCharge`
metadata).

A global limit or budget becomes descriptors on its route, under one rate-limit filter.
Every descriptor starts with `aigw_limit: <limit id>`; the processor reads what each id
allows, and its fail mode, from the node metadata (`rateLimits`), so Envoy and the
processor cannot disagree. One filter means one call before the request, whatever a
route combines: the service applies each limit's fail mode when Redis fails (it answers
OK for open limits, an error for closed ones, which the filter turns into a 503).
"""

from __future__ import annotations

from typing import Any

from .. import wire
from ..config import shared_state
from ..config.shared_state import LimitSpec
from .envoy_parts import duration
from .model import GatewaySpec
from .route_model import PER_SECONDS, RateLimit, RateLimitKey, Route, TokenBudget

# The client key entry, and its value for a request without the key's header (such
# requests share one bucket, as they do with a local limit).
_CLIENT_KEY = wire.CLIENT_KEY_ENTRY
_NO_KEY = wire.NO_CLIENT_KEY
# Where the key headers are kept for the rate-limit filters (not the `aigw` namespace,
# which the access log prints and the processor writes). The route-level filter reads
# them there too, to charge the counter the budget check read.
_KEY_NAMESPACE = wire.RATELIMIT_KEYS


def local_rate_limit(route_name: str, rl: RateLimit) -> dict[str, Any]:
    """The route's local_ratelimit config: a token bucket per key in this Envoy."""
    fill = duration(PER_SECONDS[rl.per])
    bucket = {"max_tokens": rl.requests, "tokens_per_fill": rl.requests, "fill_interval": fill}
    if rl.key.header:
        action: dict[str, Any] = {
            "request_headers": {"header_name": rl.key.header, "descriptor_key": "client_key"}
        }
        entry = {"key": "client_key"}
    elif rl.key.generic:
        action = {"generic_key": {"descriptor_key": "generic_key", "descriptor_value": rl.key.generic}}
        entry = {"key": "generic_key", "value": rl.key.generic}
    else:
        action = {"remote_address": {}}
        entry = {"key": "remote_address"}
    on = {
        "default_value": {"numerator": 100, "denominator": "HUNDRED"},
        "runtime_key": f"aigw_rl_{route_name}",
    }
    return {
        "@type": wire.LOCAL_RATELIMIT_TYPE,
        "stat_prefix": f"aigw_rl_{route_name}",
        # Requests without the key share one bucket of the same size.
        "token_bucket": bucket,
        "filter_enabled": on,
        "filter_enforced": on,
        "rate_limits": [{"actions": [action]}],
        # A value-less entry is a wildcard: one bucket per distinct key.
        "descriptors": [{"entries": [entry], "token_bucket": bucket}],
        "max_dynamic_descriptors": 100000,
        # Otherwise every request also draws from the shared bucket above.
        "always_consume_default_token_bucket": False,
        "enable_x_ratelimit_headers": "DRAFT_VERSION_03",
    }


def limit_id(route_name: str, unit: str) -> str:
    return f"{route_name}:{unit}"


def _key_actions(key: RateLimitKey) -> list[dict[str, Any]]:
    """The descriptor entries after `aigw_limit` that name the client.

    A header key is read from dynamic metadata, where `client_key_filter` copied it
    before the processor ran: the processor removes the client's credential headers
    before the request goes upstream, and charges a budget from the same metadata.
    Requests without the header share one bucket."""
    if key.header:
        return [
            {
                "metadata": {
                    "descriptor_key": _CLIENT_KEY,
                    "metadata_key": {"key": _KEY_NAMESPACE, "path": [{"key": key.header.lower()}]},
                    "source": "DYNAMIC",
                    "default_value": _NO_KEY,
                }
            }
        ]
    if key.generic:
        return [{"generic_key": {"descriptor_key": wire.GENERIC_KEY_ENTRY, "descriptor_value": key.generic}}]
    return [{"remote_address": {}}]


def _descriptor(limit: str, key: RateLimitKey, **extra: Any) -> dict[str, Any]:
    head = {"generic_key": {"descriptor_key": wire.LIMIT_ENTRY, "descriptor_value": limit}}
    return {"actions": [head, *_key_actions(key)], **extra}


def _counted(route: Route) -> list[tuple[str, RateLimitKey, LimitSpec]]:
    """The route's limits counted by the rate-limit service: (limit id, key, what it
    allows), for its global rate limit and its token budget."""
    out = []
    rl: RateLimit | None = route.rate_limit
    if rl is not None and rl.scope == "global":
        spec = LimitSpec(
            unit="requests", amount=rl.requests, window=PER_SECONDS[rl.per], fail_mode=rl.fail_mode or "open"
        )
        out.append((limit_id(route.name, "requests"), rl.key, spec))
    budget: TokenBudget | None = route.token_budget
    if budget is not None:
        spec = LimitSpec(
            unit="tokens", amount=budget.tokens, window=PER_SECONDS[budget.per], fail_mode=budget.fail_mode
        )
        out.append((limit_id(route.name, "tokens"), budget.key, spec))
    return out


def key_headers(routes: list[Route]) -> list[str]:
    """Every header a global limit or budget keys on."""
    return sorted({key.header.lower() for r in routes for _, key, _ in _counted(r) if key.header})


def client_key_filter(headers: list[str]) -> dict[str, Any]:
    """Copies the key headers into dynamic metadata (never sent upstream, never logged)
    before the processor strips credentials from the request."""
    return {
        "name": "aigw.ratelimit.keys",
        "typed_config": {
            "@type": wire.HEADER_TO_METADATA_TYPE,
            "request_rules": [
                {
                    "header": header,
                    "on_header_present": {
                        "metadata_namespace": _KEY_NAMESPACE,
                        "key": header,
                        "type": "STRING",
                    },
                    "remove": False,
                }
                for header in headers
            ],
        },
    }


def global_limits(route: Route) -> list[dict[str, Any]]:
    """The route's descriptors for the rate-limit filter."""
    out: list[dict[str, Any]] = []
    for limit, key, spec in _counted(route):
        if spec.unit == "requests":
            out.append(_descriptor(limit, key))
            continue
        # Before the request: only asks whether the key is already at its budget. The
        # charge is the route-level filter's (token_charge): it knows the tokens of a
        # request that ends early too, when Envoy would have none to add.
        out.append(_descriptor(limit, key, hits_addend={"number": 0}))
    return out


def token_charge(route: Route) -> dict[str, Any] | None:
    """The route's `tokenCharge` metadata (config.shared_state.TokenCharge): the budget
    counter the route-level filter charges, and how the check's descriptor names the
    client."""
    budget = route.token_budget
    if budget is None:
        return None
    key = budget.key.model_dump(mode="json", by_alias=True, exclude_defaults=True)
    return {"limit": limit_id(route.name, "tokens"), "key": key}


def charge_inputs(routes: list[Route]) -> tuple[list[str], dict[str, Any]]:
    """The route-level filter's request attributes and metadata options for charging the
    routes' budgets (config.shared_state.charge_inputs)."""
    attributes, headers = shared_state.charge_inputs(r.token_budget.key for r in routes if r.token_budget)
    forwarding = {"forwarding_namespaces": {"untyped": [_KEY_NAMESPACE]}} if headers else {}
    return attributes, forwarding


def limit_specs(routes: list[Route]) -> dict[str, LimitSpec]:
    """What each limit id allows, for the node metadata the processor reads."""
    return {limit: spec for r in routes for limit, _, spec in _counted(r)}


def rate_limit_filter(cfg: GatewaySpec, routes: list[Route]) -> dict[str, Any]:
    """Envoy's rate-limit filter, asking the processor (same cluster: its rate-limit
    service) with the descriptors routes give it."""
    shared = cfg.gateway.shared_state
    assert shared is not None  # the loader requires sharedState for any global limit
    # The service answers within two Redis timeouts (or fails the call); a little more
    # for the gRPC hop, so Envoy's own timeout is not what decides.
    timeout = max(0.25, shared.redis.timeout * 2 + 0.15)
    # Only when the service itself cannot be reached does the filter decide: closed if
    # any limit is (the processor is then unreachable, so ext_proc fails the request too).
    deny = any(spec.fail_mode == "closed" for spec in limit_specs(routes).values())
    config: dict[str, Any] = {
        "@type": wire.RATELIMIT_TYPE,
        "domain": wire.RATELIMIT_DOMAIN,
        "stat_prefix": "aigw_rls",
        "timeout": duration(timeout),
        "failure_mode_deny": deny,
        # A closed limit the service could not check: 503, not Envoy's default 500.
        "status_on_error": {"code": "ServiceUnavailable"},
        "enable_x_ratelimit_headers": "DRAFT_VERSION_03",
        "rate_limit_service": {
            "transport_api_version": "V3",
            "grpc_service": {"envoy_grpc": {"cluster_name": "extproc"}},
        },
    }
    return {"name": wire.RATELIMIT_FILTER, "typed_config": config}


def per_route(limits: list[dict[str, Any]]) -> dict[str, Any]:
    """The route's typed_per_filter_config entry for the rate-limit filter."""
    if not limits:
        return {}
    return {wire.RATELIMIT_FILTER: {"@type": wire.RATELIMIT_PER_ROUTE_TYPE, "rate_limits": limits}}
