"""Loading, validating and rendering a gateway config file, with errors that name the
file, the line and the field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from ..providers import PROVIDERS
from ..runtime.bootstrap import ConfigError, build_config
from . import yaml_lines
from .envoy import render
from .model import GatewaySpec
from .route_model import RateLimit, TokenBudget


class GatewayConfigError(Exception):
    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


def is_gateway_config(doc: Any) -> bool:
    """A compact gateway config rather than an Envoy bootstrap."""
    return isinstance(doc, dict) and "static_resources" not in doc and "routes" in doc


def _data_path(data: Any, loc: tuple) -> tuple:
    """Pydantic's error location without union tags (`single`, `openai`): only the parts
    that exist in the data."""
    out = []
    node = data
    for part in loc:
        if isinstance(node, dict) and part in node:
            node = node[part]
            out.append(part)
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            node = node[part]
            out.append(part)
    return tuple(out)


def _field(path: tuple) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path).lstrip(".")


def load(path: str | Path) -> tuple[GatewaySpec, dict[tuple, int]]:
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise GatewayConfigError([f"{path}: cannot read: {exc.strerror}"]) from None
    try:
        data, lines = yaml_lines.load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise GatewayConfigError([f"{where}: not valid YAML: {getattr(exc, 'problem', exc)}"]) from None
    if not isinstance(data, dict):
        raise GatewayConfigError([f"{path}:1: the file must be a YAML mapping"])
    try:
        cfg = GatewaySpec.model_validate(data)
    except ValidationError as exc:
        unknown_tag = "does not match any of the expected tags"
        problems = []
        errors = exc.errors()
        for err in errors:
            # A list whose items failed is also reported as too short: say it once.
            if err["type"] == "too_short" and any(
                len(o["loc"]) > len(err["loc"]) and tuple(o["loc"][: len(err["loc"])]) == tuple(err["loc"])
                for o in errors
            ):
                continue
            loc = _data_path(data, tuple(err["loc"]))
            line = yaml_lines.line_of(lines, loc)
            # The message names the full pydantic location when it goes deeper than the data.
            field = _field(loc) or "(top level)"
            msg = err["msg"]
            if unknown_tag in msg or err["type"] in ("union_tag_invalid", "union_tag_not_found"):
                msg = f"unknown provider {_provider_of(data, loc)!r}; known: " + ", ".join(sorted(PROVIDERS))
            elif err["type"] == "missing":
                msg = f"field '{err['loc'][-1]}' is required"
            elif err["type"] == "extra_forbidden":
                msg = f"unknown field '{err['loc'][-1]}'"
            problems.append(f"{path}:{line}: {field}: {msg}")
        raise GatewayConfigError(problems) from None
    problems = [
        f"{path}:{yaml_lines.line_of(lines, loc)}: {_field(loc)}: {msg}" for loc, msg in cross_references(cfg)
    ]
    if problems:
        raise GatewayConfigError(problems)
    return cfg, lines


def _provider_of(data: Any, loc: tuple) -> Any:
    node = data
    for part in loc:
        node = node[part]
    return node.get("provider") if isinstance(node, dict) else None


Problem = tuple[tuple, str]


def cross_references(cfg: GatewaySpec) -> list[Problem]:
    """What one part of the config says about another, located where it is written."""
    return (
        _backend_problems(cfg)
        + _inference_problems(cfg)
        + _route_problems(cfg)
        + _policy_problems(cfg)
        + _shared_state_problems(cfg)
        + _content_routing_groups(cfg)
    )


def _backend_problems(cfg: GatewaySpec) -> list[Problem]:
    """Names used twice, and providers that lack auth or a host."""
    out: list[Problem] = []
    seen: dict[str, tuple] = {}
    for bi, b in enumerate(cfg.backends):
        if b.name in seen:
            out.append((("backends", bi, "name"), f"backend name '{b.name}' is used twice"))
        seen[b.name] = ("backends", bi)
    for pi, pool in enumerate(cfg.inference_pools):
        if pool.name in seen:
            out.append(
                (("inferencePools", pi, "name"), f"'{pool.name}' already names a backend or inference pool")
            )
        seen[pool.name] = ("inferencePools", pi)
    providers: dict[str, tuple] = {}
    for bi, b in enumerate(cfg.backends):
        for _, entry in b.providers():
            name = entry.name or b.name
            where = ("backends", bi, "ai")
            if name in providers:
                out.append(
                    (
                        where,
                        f"provider name '{name}' is used twice (names identify backends "
                        "in logs, metrics and health checks)",
                    )
                )
            providers[name] = where
            if entry.auth is None and PROVIDERS[entry.provider].requires_auth:
                out.append(
                    (
                        where,
                        f"provider '{name}' ({entry.provider}) needs 'auth' "
                        "(a secretRef, or passthrough: true)",
                    )
                )
            if entry.endpoint is None and not (
                entry.authority or PROVIDERS[entry.provider](entry).default_authority
            ):
                out.append(
                    (where, f"provider '{name}' ({entry.provider}) has no public host: set 'endpoint'")
                )
    return out


def _inference_problems(cfg: GatewaySpec) -> list[Problem]:
    """Every inference model names a pool, once per model name."""
    out: list[Problem] = []
    pools = {p.name for p in cfg.inference_pools}
    seen: set[tuple[str, str]] = set()
    for mi, m in enumerate(cfg.inference_models):
        where = ("inferenceModels", mi)
        if m.pool_ref is None:
            out.append(((*where, "poolRef"), "required: the inference pool that serves this model"))
        elif m.pool_ref not in pools:
            out.append(((*where, "poolRef"), f"'{m.pool_ref}' names no inference pool"))
        elif (m.pool_ref, m.model_name) in seen:
            out.append(((*where, "modelName"), f"'{m.model_name}' is declared twice for '{m.pool_ref}'"))
        seen.add((m.pool_ref or "", m.model_name))
    return out


def _route_problems(cfg: GatewaySpec) -> list[Problem]:
    """Names used twice, and backendRefs that name no backend or mix kinds."""
    out: list[Problem] = []
    backends = {b.name: b for b in cfg.all_backends}
    route_names: set[str] = set()
    for ri, route in enumerate(cfg.routes):
        if route.name in route_names:
            out.append((("routes", ri, "name"), f"route name '{route.name}' is used twice"))
        route_names.add(route.name)
        kinds = set()
        for fi, ref in enumerate(route.backend_refs):
            target = backends.get(ref.name)
            if target is None:
                out.append(
                    (("routes", ri, "backendRefs", fi, "name"), f"backendRef '{ref.name}' names no backend")
                )
                continue
            kind = "InferencePool" if target.inference_pool is not None else "Backend"
            if ref.kind is not None and ref.kind != kind:
                out.append((("routes", ri, "backendRefs", fi, "kind"), f"'{ref.name}' is a {kind}"))
            kinds.add("static" if target.static is not None else "pool" if kind == "InferencePool" else "ai")
        if len(kinds) > 1 and "static" in kinds:
            out.append((("routes", ri, "backendRefs"), "cannot mix AI and static backends in one route"))
        elif "pool" in kinds and len(route.backend_refs) > 1:
            out.append(
                (
                    ("routes", ri, "backendRefs"),
                    "a route to an inference pool has that one backendRef (the pool's picker chooses "
                    "among its servers)",
                )
            )
        if "pool" in kinds and route.policies is not None and route.policies.inference is not None:
            out.append((("routes", ri, "policies", "inference"), "set by the inference pool; leave it out"))
        if kinds == {"static"} and route.policies is not None:
            out.append(
                (
                    ("routes", ri, "policies"),
                    "a route to a static backend has no AI traffic for 'policies' to apply to",
                )
            )
    return out


def _policy_problems(cfg: GatewaySpec) -> list[Problem]:
    """targetRefs that name no route, or a route that already has what the policy sets."""
    out: list[Problem] = []
    backends = {b.name: b for b in cfg.all_backends}
    # A name used twice is reported above; the last route of that name is the one checked.
    routes = {r.name: r for r in cfg.routes}
    for pi, policy in enumerate(cfg.policies):
        for ti, ref in enumerate(policy.target_refs):
            where = ("policies", pi, "targetRefs", ti, "name")
            route = routes.get(ref.name)
            if route is None:
                out.append((where, f"targetRef '{ref.name}' names no route"))
                continue
            if policy.ai is not None and route.policies is not None:
                out.append((where, f"route '{ref.name}' has its own policies; keep one"))
            if policy.rate_limit is not None and route.rate_limit is not None:
                out.append((where, f"route '{ref.name}' has its own rateLimit; keep one"))
            if policy.token_budget is not None and route.token_budget is not None:
                out.append((where, f"route '{ref.name}' has its own tokenBudget; keep one"))
            static = route.direct_response is not None or any(
                backends.get(r.name) is not None and backends[r.name].static is not None
                for r in route.backend_refs
            )
            if policy.ai is not None and static:
                out.append((where, f"route '{ref.name}' carries no AI traffic for policy '{policy.name}'"))
    return out


def _shared_state_problems(cfg: GatewaySpec) -> list[Problem]:
    """Global rate limits and token budgets count in Redis: they need `gateway.sharedState`."""
    if cfg.gateway.shared_state is not None:
        return []
    why = "counts across replicas in Redis: set gateway.sharedState.redis"
    out: list[Problem] = []
    items: list[tuple[str, int, RateLimit | None, TokenBudget | None]] = [
        ("routes", i, r.rate_limit, r.token_budget) for i, r in enumerate(cfg.routes)
    ] + [("policies", i, p.rate_limit, p.token_budget) for i, p in enumerate(cfg.policies)]
    for kind, i, rate_limit, budget in items:
        if rate_limit is not None and rate_limit.scope == "global":
            out.append(((kind, i, "rateLimit", "scope"), f"a global rate limit {why}"))
        if budget is not None:
            out.append(((kind, i, "tokenBudget"), f"a token budget {why}"))
    return out


def _content_routing_groups(cfg: GatewaySpec) -> list[Problem]:
    """A route matching a header that contentRouting sets must compute it too: otherwise a
    client sending that header itself picks the route."""
    policies = {r.name: r.policies for r in cfg.routes}
    for policy in cfg.policies:
        for ref in policy.target_refs:
            if policy.ai is not None:
                policies[ref.name] = policy.ai
    computed = {
        h.name: route
        for route, p in policies.items()
        if p and p.content_routing
        for h in p.content_routing.headers
    }
    out: list[Problem] = []
    for ri, route in enumerate(cfg.routes):
        own = policies.get(route.name)
        own_headers = {h.name for h in own.content_routing.headers} if own and own.content_routing else set()
        for mi, m in enumerate(route.matches):
            for hi, h in enumerate(m.headers):
                name = h.name.lower()
                if name in computed and name not in own_headers:
                    out.append(
                        (
                            ("routes", ri, "matches", mi, "headers", hi, "name"),
                            f"'{name}' is set by contentRouting (route '{computed[name]}'); this "
                            "route must have the same contentRouting, or a client could choose it "
                            "by sending the header",
                        )
                    )
    return out


def render_file(path: str | Path) -> dict[str, Any]:
    """Validate the config and render it; the rendered bootstrap is then checked by the
    processor's own validation, so what `render` writes is what `serve` accepts."""
    cfg, _ = load(path)
    try:
        doc = render(cfg)
    except ValueError as exc:
        raise GatewayConfigError([f"{path}: {exc}"]) from None
    try:
        build_config(doc, source=str(path), resolve_secrets=False)
    except ConfigError as exc:
        raise GatewayConfigError([f"{path}: {p}" for p in exc.problems]) from None
    return doc


HEADER = """# Rendered by `aigw render {source}`: edit that file, not this one.
# Envoy and the aigw processor both read this bootstrap.
"""


class _Dumper(yaml.SafeDumper):
    pass


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    # Envoy's YAML reader takes y/n (and their capitals) as booleans; PyYAML does not
    # quote them. Quote every such word so both read a string.
    style = '"' if value.lower() in ("y", "n", "yes", "no", "on", "off") else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def dump(doc: dict[str, Any], source: str) -> str:
    return HEADER.format(source=source) + yaml.dump(
        doc, Dumper=_Dumper, sort_keys=False, width=100, allow_unicode=True
    )
