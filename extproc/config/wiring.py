"""The start-up checks that no request can reach an AI provider around the gateway.

Envoy would run many wirings the gateway cannot stand behind: a filter in observability
mode (it sees traffic but changes nothing), mutation rules that silently drop the
credential swap, a per-route or per-virtual-host override that disables a filter, a
mirror policy or a TCP proxy that sends traffic to an AI cluster directly. These checks
fail closed: the ext_proc filter fields are an allowlist, every place an AI cluster is
named must be a route the processor validated, and configuration the processor cannot
see (RDS, dynamic resources) is refused outright.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from .. import wire

FILTER_CONFIG = "envoy.config.route.v3.FilterConfig"
HCM = "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"

# Envoy 1.40 dereferences a null pointer when an ext_proc filter in a cluster's upstream
# filter chain opens its gRPC stream while the HTTP/2 connection to the processor is above
# its write-buffer high watermark (one large body in flight is enough): the side stream's
# flow control replays the watermark into a request whose upstream connection does not
# exist yet. Turning that flow control off removes the code path (README, "Operations
# notes"). Bootstraps the renderer writes carry these; a gateway bootstrap must.
REQUIRED_RUNTIME = {"envoy.reloadable_features.grpc_side_stream_flow_control": False}
# Path handling on every connection manager of a gateway: `/v1//chat/completions`,
# `/v1/./chat/completions` or `/v1/chat/%63ompletions` must match the route that
# `/v1/chat/completions` matches, not a looser one next to it; escaped slashes are refused
# (a redirect would also do, but a POST client seldom follows one).
PATH_HANDLING = {
    "normalize_path": True,
    "merge_slashes": True,
    "path_with_escaped_slashes_action": "REJECT_REQUEST",
}
_ESCAPED_SLASHES_OK = ("REJECT_REQUEST", "UNESCAPE_AND_REDIRECT")

# ext_proc fields whose meaning the gateway knows. Anything else (observability_mode,
# allowed_override_modes, disable_immediate_response, http_service, route_cache_action,
# processing_request_modifier, ...) could weaken it and is refused.
_FILTER_FIELDS = {
    "@type",
    "grpc_service",
    "failure_mode_allow",
    "processing_mode",
    "request_attributes",
    "response_attributes",
    "message_timeout",
    "max_message_timeout",
    "allow_mode_override",
    "metadata_options",
    "stat_prefix",
    "mutation_rules",
    "status_on_error",
    "deferred_close_timeout",
}
_MODES = {
    "request_header_mode": ("SEND", "DEFAULT"),
    "response_header_mode": ("SEND", "DEFAULT"),
    "request_body_mode": ("BUFFERED",),
    "response_body_mode": ("NONE",),
    "request_trailer_mode": ("SKIP", "DEFAULT"),
    "response_trailer_mode": ("SKIP", "DEFAULT"),
}
_WHY_MODE = {
    "request_header_mode": "with SKIP a bodiless request passes the route filter unchecked, and "
    "header changes made with the body (path, Host, credential) are lost",
    "response_header_mode": "the response phases carry translation, guards and accounting",
    "request_body_mode": "the processor reads the whole request body",
    "response_body_mode": "the processor chooses the response body mode per response",
}


def type_of(typed: Any) -> str:
    return typed.get("@type", "").rsplit("/", 1)[-1] if isinstance(typed, dict) else ""


def check_filter(
    entry: dict, location: str, phase: str, attributes: tuple[str, ...], problems: list[str]
) -> None:
    """One of the gateway's ext_proc filters (the HttpFilter entry with its typed_config)."""
    extra = set(entry) - {"name", "typed_config"}
    if extra:
        problems.append(
            f"{location}: {', '.join(sorted(extra))} is not allowed on a gateway "
            "filter (it could switch the filter off)"
        )
    cfg = entry.get("typed_config") or {}
    unknown = sorted(set(cfg) - _FILTER_FIELDS)
    if unknown:
        problems.append(
            f"{location}: {', '.join(unknown)} is not allowed on a gateway filter "
            "(it could let requests past the gateway)"
        )
    if cfg.get("failure_mode_allow", False) is not False:
        problems.append(f"{location}: failure_mode_allow must be false; the gateway never fails open")
    if "envoy_grpc" not in (cfg.get("grpc_service") or {}) and "google_grpc" not in (
        cfg.get("grpc_service") or {}
    ):
        problems.append(f"{location}: grpc_service must call the processor (envoy_grpc)")
    have = set(cfg.get("request_attributes") or [])
    missing = [a for a in attributes if a not in have]
    if missing:
        problems.append(f"{location}: request_attributes must include {', '.join(missing)}")
    mode = cfg.get("processing_mode") or {}
    for key, allowed in _MODES.items():
        value = mode.get(key, allowed[0] if key != "request_body_mode" else None)
        if value not in allowed:
            why = _WHY_MODE.get(key, "")
            problems.append(
                f"{location}: processing_mode.{key} must be {allowed[0]}" + (f" ({why})" if why else "")
            )
    if cfg.get("allow_mode_override") is not True:
        problems.append(
            f"{location}: allow_mode_override must be true (the processor picks "
            "the response body mode per response)"
        )
    rules = cfg.get("mutation_rules")
    # allow_envoy (optional) lets the processor send x-envoy-immediate-health-check-fail
    # when a provider rate-limits (see upstream_filter.py).
    if phase == "upstream" and rules not in (
        {"allow_all_routing": True},
        {"allow_all_routing": True, "allow_envoy": True},
    ):
        problems.append(
            f"{location}: mutation_rules must be exactly {{allow_all_routing: true}} "
            "(optionally with allow_envoy: true; the processor sets the provider's "
            "Host and credential)"
        )
    if phase == "route" and rules not in (
        None,
        {"allow_all_routing": True},
        {"allow_all_routing": True, "allow_envoy": True},
    ):
        problems.append(
            f"{location}: mutation_rules must be absent (or {{allow_all_routing: true}}, "
            "optionally with allow_envoy: true); others can drop the gateway's header changes"
        )


def weakening(per_filter: dict | None) -> list[str]:
    """Entries of a typed_per_filter_config that would switch an ext_proc filter off or
    change it (whatever key they are under: per-route config reaches filters of the same
    name in clusters too)."""
    found = []
    for key, cfg in (per_filter or {}).items():
        if not isinstance(cfg, dict):
            continue
        inner = cfg
        if type_of(cfg) == FILTER_CONFIG:
            if cfg.get("disabled"):
                found.append(f"{key} (disabled)")
                continue
            inner = cfg.get("config") or {}
        if type_of(inner) == wire.EXT_PROC_PER_ROUTE and (inner.get("disabled") or inner.get("overrides")):
            found.append(f"{key} ({'disabled' if inner.get('disabled') else 'overrides'})")
    return found


def route_targets(route: dict) -> tuple[list[str], list[str]]:
    """(clusters a route sends to, ways it can choose a cluster we cannot see)."""
    action = route.get("route") or {}
    dynamic = [
        k
        for k in ("cluster_header", "cluster_specifier_plugin", "inline_cluster_specifier_plugin")
        if k in action
    ]
    weighted = action.get("weighted_clusters") or {}
    if "cluster_header" in weighted:
        dynamic.append("weighted_clusters.cluster_header")
    if "cluster" in action:
        return [action["cluster"]], dynamic
    return [c.get("name") for c in weighted.get("clusters") or [] if c.get("name")], dynamic


def check_document(doc: dict, ai_clusters: set[str], problems: list[str]) -> None:
    """Configuration the processor cannot see, and AI clusters named anywhere but in
    routes it validated."""
    if not ai_clusters:
        return
    if doc.get("dynamic_resources"):
        problems.append(
            "dynamic_resources: the processor cannot check configuration Envoy loads "
            "later; gateway bootstraps must be static"
        )
    check_runtime(doc.get("layered_runtime"), problems)
    for path, key, value in _walk(doc, ()):
        if value not in ai_clusters or key not in ("cluster", "cluster_name", "name"):
            continue
        if _allowed_reference(path, key):
            continue
        if key == "name" and "weighted_clusters" not in path:
            continue  # "name" is everywhere; only weighted cluster entries name clusters
        problems.append(
            f"{_show((*path, key))}: sends to the AI cluster '{value}' outside a route "
            "the gateway validated; requests would bypass it"
        )


def _allowed_reference(path: tuple, key: str) -> bool:
    # The cluster's own definition.
    if len(path) == 3 and path[:2] == ("static_resources", "clusters") and key == "name":
        return True
    if (
        path[:2] == ("static_resources", "clusters")
        and path[3:] == ("load_assignment",)
        and key == "cluster_name"
    ):
        return True
    # A route's target in an inline route config (checked by the route reader).
    if "routes" in path and "route_config" in path:
        tail = path[path.index("routes") + 2 :]
        if tail == ("route",) and key == "cluster":
            return True
        if tail[:3] == ("route", "weighted_clusters", "clusters") and len(tail) == 4 and key == "name":
            return True
    return False


def _walk(node: Any, path: tuple) -> Iterator[tuple[tuple, str, Any]]:
    if isinstance(node, dict):
        for k, v in node.items():
            if isinstance(v, (dict, list)):
                yield from _walk(v, (*path, k))
            else:
                yield path, k, v
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _walk(v, (*path, i))


def _show(path: tuple) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path).lstrip(".")


def connection_managers(
    listener: dict, lname: str, problems: list[str], ai: bool
) -> Iterator[tuple[str, dict]]:
    chains = [(f"filter_chains[{i}]", c) for i, c in enumerate(listener.get("filter_chains") or [])]
    if listener.get("default_filter_chain"):
        chains.append(("default_filter_chain", listener["default_filter_chain"]))
    for where, chain in chains:
        for fi, f in enumerate(chain.get("filters") or []):
            typed = f.get("typed_config") or {}
            if type_of(typed) != HCM:
                continue
            loc = f"listener '{lname}' {where}.filters[{fi}]"
            if ai and ("rds" in typed or "scoped_routes" in typed):
                problems.append(
                    f"{loc}: routes from RDS or scoped routes cannot be checked by the "
                    "processor; use an inline route_config"
                )
                continue
            if ai:
                check_path_handling(loc, typed, problems)
            yield loc, typed


def check_path_handling(loc: str, hcm: dict, problems: list[str]) -> None:
    """Envoy normalises paths before routing, so a path trick cannot pick a looser route."""
    wrong = [f"{k}: true" for k in ("normalize_path", "merge_slashes") if hcm.get(k) is not True]
    if hcm.get("path_with_escaped_slashes_action") not in _ESCAPED_SLASHES_OK:
        wrong.append("path_with_escaped_slashes_action: REJECT_REQUEST (or UNESCAPE_AND_REDIRECT)")
    if wrong:
        problems.append(
            f"{loc}: set {', '.join(wrong)}; without them /v1//chat/completions, "
            "/v1/./chat/completions or /v1%2Fchat%2Fcompletions can miss a guarded "
            "route and match a looser one"
        )


def check_runtime(layered: Any, problems: list[str]) -> None:
    """The runtime values in REQUIRED_RUNTIME hold, and no layer that can change at run time
    (admin, RTDS, disk) comes after the one that sets them."""
    layers = (layered or {}).get("layers") if isinstance(layered, dict) else None
    for key, want in REQUIRED_RUNTIME.items():
        value, at = None, None
        for i, layer in enumerate(layers or []):
            static = layer.get("static_layer") if isinstance(layer, dict) else None
            if isinstance(static, dict):
                flat = _flatten(static)
                if key in flat:
                    value, at = flat[key], i
        want_text = str(want).lower()
        if at is None or value is not want:
            problems.append(
                f"layered_runtime: a static layer must set {key}: {want_text} (Envoy "
                "1.40 crashes without it when a large request is in flight; see the "
                "README, 'Operations notes')"
            )
            continue
        later = [
            layer.get("name") or f"layers[{i}]"
            for i, layer in enumerate(layers or ())
            if i > at and isinstance(layer, dict) and not isinstance(layer.get("static_layer"), dict)
        ]
        if later:
            problems.append(
                f"layered_runtime: {', '.join(later)} comes after the static layer "
                f"setting {key} and could switch it back on at run time; put the "
                "static layer last"
            )


def _flatten(node: dict, prefix: str = "") -> dict[str, Any]:
    """Envoy reads nested static-layer keys as dotted names (`envoy: {a: 1}` is `envoy.a`)."""
    out: dict[str, Any] = {}
    for k, v in node.items():
        name = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, name + "."))
        else:
            out[name] = v
    return out
