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
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from .. import wire
from ..backends import Backend
from ..config import wiring
from ..config.policy import RoutePolicy
from ..config.shared_state import LimitSpec, SharedState
from ..guards.pipeline import RequestGuards, ResponseGuards, RouteGuards
from ..inference.picker import EndpointPicker
from ..providers import PROVIDERS, backend_settings_adapter
from ..response_limits import buffer_limit
from ..secrets import Secret, SecretError
from .gateway import ClusterRuntime, GatewayRuntime, RouteRuntime, SharedStateRuntime
from .inference import InferenceRoute, build_pickers


class ConfigError(Exception):
    """One or more invalid gateway settings. `str()` lists them all."""

    def __init__(self, problems: list[str], source: str = "") -> None:
        self.problems = problems
        head = f"invalid gateway configuration in {source}" if source else "invalid gateway configuration"
        super().__init__(head + ":\n" + "\n".join(f"  - {p}" for p in problems))


@dataclass
class _Filter:
    phase: str | None
    entry: dict[str, Any]  # the HttpFilter: name and typed_config
    location: str

    @property
    def config(self) -> dict[str, Any]:
        return self.entry.get("typed_config") or {}


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
        _read_cluster(ci, cluster, clusters, problems, resolve_secrets, health_addresses)
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
            _read_hcm(loc, hcm, routes, clusters, problems)
    wiring.check_document(doc, set(clusters), problems)

    if problems:
        raise ConfigError(problems, source)
    gw = GatewayRuntime(routes, clusters, by_name)
    gw.pickers = _inference_routes(routes, problems)
    if problems:
        raise ConfigError(problems, source)
    gw.shared_state, gw.limits = _shared_state(doc, problems, resolve_secrets)
    if problems:
        raise ConfigError(problems, source)
    gw.processor_sockets = processor_sockets(doc)
    gw.health_address = next(iter(health_addresses), None)
    gw.max_response_bytes = buffer_limit(doc, set(clusters))
    return gw


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


def processor_sockets(doc: dict[str, Any]) -> list[str]:
    """The Unix sockets Envoy expects the processor on: the `pipe` endpoints of the cluster
    the ext_proc filters call, in order. One worker process serves each (`serve --workers`),
    so the paths are written once, in the bootstrap."""
    names = set()
    for flt in _all_ext_proc_filters(doc):
        cluster = ((flt.get("grpc_service") or {}).get("envoy_grpc") or {}).get("cluster_name")
        if cluster:
            names.add(cluster)
    paths: list[str] = []
    for cluster in (doc.get("static_resources") or {}).get("clusters") or []:
        if cluster.get("name") not in names:
            continue
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


# ---- clusters and endpoints -------------------------------------------------------------


def _read_cluster(
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


def _upstream_ext_proc(cluster: dict, name: str, problems: list[str]) -> _Filter | None:
    options = (cluster.get("typed_extension_protocol_options") or {}).get(wire.HTTP_OPTIONS) or {}
    for fi, f in enumerate(options.get("http_filters") or []):
        typed = f.get("typed_config") or {}
        if typed.get("@type", "").endswith(wire.EXT_PROC):
            flt = _Filter(_phase(typed), f, f"cluster '{name}' upstream http_filters[{fi}] ({f.get('name')})")
            if flt.phase == "upstream":
                return flt
    return None


# ---- listeners, routes ------------------------------------------------------------------


def _read_hcm(
    loc: str,
    hcm: dict,
    routes: dict[str, RouteRuntime],
    clusters: dict[str, ClusterRuntime],
    problems: list[str],
) -> None:
    route_filter = None
    for fi, f in enumerate(hcm.get("http_filters") or []):
        typed = f.get("typed_config") or {}
        if typed.get("@type", "").endswith(wire.EXT_PROC) and _phase(typed) == "route":
            route_filter = _Filter("route", f, f"{loc} http_filters[{fi}] ({f.get('name')})")
            break
    route_config = hcm.get("route_config") or {}
    has_gateway_routes = False
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
                (wire.ROUTE_NAME, wire.CLUSTER_NAME) if direct else (wire.ROUTE_NAME,),
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


# ---- ext_proc filter checks -----------------------------------------------------------------


def _phase(typed: dict) -> str | None:
    service = typed.get("grpc_service") or {}
    for item in service.get("initial_metadata") or []:
        if item.get("key", "").lower() == wire.PHASE:
            return item.get("value")
    return None


def format_validation_error(exc: ValidationError, *, tagged: bool = False) -> list[str]:
    """Pydantic errors as `field 'a.b': message`, in the config's own field names."""
    out = []
    for err in exc.errors():
        loc = list(err["loc"])
        if tagged and loc and isinstance(loc[0], str) and loc[0] in PROVIDERS:
            loc = loc[1:]  # drop the union tag pydantic puts first
        field = ".".join(str(p) if not isinstance(p, int) else f"[{p}]" for p in loc).replace(".[", "[")
        msg = err["msg"]
        if err["type"] == "union_tag_invalid":
            msg = f"unknown provider {err['input'].get('provider')!r}; known: {', '.join(sorted(PROVIDERS))}"
            field = "provider"
        elif err["type"] == "union_tag_not_found":
            field = "provider"
            msg = f"required; one of {', '.join(sorted(PROVIDERS))}"
        out.append(f"field '{field}': {msg}" if field else msg)
    return out
