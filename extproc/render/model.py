"""The compact gateway config, modelled on the seed guides' resources.

gateway:   where Envoy listens, where the processor is
backends:  an AI provider (`ai: {provider, model, auth}`), `ai.priorityGroups` of
           providers for failover, or a plain HTTP service (`static`)
routes:    `matches` (path prefix/exact/regex, headers, query parameters), weighted
           `backendRefs` or a `directResponse`, `timeouts`, `filters` (header
           modifiers, URL rewrites), `policies` (enrichment, defaults, guards, content
           routing) and a `rateLimit`
policies:  route policies applied by `targetRefs`, like TrafficPolicy
"""

from __future__ import annotations

import ipaddress
import os
import re
from functools import cached_property
from typing import TYPE_CHECKING, Annotated, Any, Literal, Union, cast

from pydantic import Discriminator, Field, Tag, field_validator, model_validator
from pydantic.alias_generators import to_camel

from ..config.inference import InferenceModelConfig, InferencePoolConfig
from ..config.policy import RoutePolicy
from ..config.shared_state import FailMode, SharedState
from ..config_model import ConfigModel, seconds
from ..providers import PROVIDERS
from ..providers.base import BackendSettings

_NOT_RE2 = re.compile(r"\(\?<?[=!]|\\[1-9]")

Duration = Annotated[float, Field(ge=0)]


def _duration(v: Any) -> float:
    return seconds(v)


# ---- backends -------------------------------------------------------------------------------


class Endpoint(ConfigModel):
    host: str
    port: int = Field(gt=0, le=65535)
    # TLS to the endpoint; default: on for port 443.
    tls: bool | None = None
    sni: str | None = None

    @model_validator(mode="after")
    def _sni_for_ips(self) -> Endpoint:
        if self.uses_tls and self.is_ip and not self.sni:
            raise ValueError("TLS to an IP address needs 'sni': the name the certificate is for")
        return self

    @property
    def uses_tls(self) -> bool:
        return self.tls if self.tls is not None else self.port == 443

    @property
    def is_ip(self) -> bool:
        try:
            ipaddress.ip_address(self.host)
            return True
        except ValueError:
            return False


def _entry_model(settings_cls: type[BackendSettings]) -> type[BackendSettings]:
    """A provider's endpoint-metadata settings plus where it listens."""
    return type(
        f"{settings_cls.__name__}Entry",
        (settings_cls,),
        {
            "__annotations__": {"endpoint": Endpoint | None},
            "endpoint": None,
            "__module__": __name__,
        },
    )


_ENTRIES = {name: _entry_model(cls.settings_model) for name, cls in PROVIDERS.items()}

if TYPE_CHECKING:
    # The real type (below) is a Union built at import time from the provider registry,
    # which mypy cannot evaluate. Statically an entry is what every member shares: the
    # common backend settings plus `endpoint`; the renderer reads nothing else.
    class ProviderEntry(BackendSettings):
        endpoint: Endpoint | None = None

else:
    ProviderEntry = Annotated[
        # No `X | Y` spelling exists for a Union of a computed number of members.
        Union[tuple(Annotated[m, Tag(n)] for n, m in _ENTRIES.items())],  # noqa: UP007
        Discriminator(lambda v: v.get("provider") if isinstance(v, dict) else getattr(v, "provider", None)),
    ]


class PriorityGroup(ConfigModel):
    providers: tuple[ProviderEntry, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _named(self) -> PriorityGroup:
        for i, p in enumerate(self.providers):
            if not p.name:
                raise ValueError(
                    f"providers[{i}] needs a 'name' (it names the backend in logs, metrics and health checks)"
                )
        return self


class OutlierDetection(ConfigModel):
    consecutive_5xx: int = Field(default=3, ge=1, alias="consecutive5xx")
    base_ejection_time: float = Field(default=10.0, gt=0)
    max_ejection_time: float = Field(default=120.0, gt=0)

    _parse = field_validator("base_ejection_time", "max_ejection_time", mode="before")(
        lambda cls, v: _duration(v)
    )


class Failover(ConfigModel):
    # How often Envoy asks the processor whether a host waits out a Retry-After.
    health_check_interval: float = Field(default=1.0, gt=0)
    outlier_detection: OutlierDetection = OutlierDetection()

    _parse = field_validator("health_check_interval", mode="before")(lambda cls, v: _duration(v))


class PriorityGroups(ConfigModel):
    priority_groups: tuple[PriorityGroup, ...] = Field(min_length=1)
    failover: Failover = Failover()


def _ai_kind(v: Any) -> str:
    data = v if isinstance(v, dict) else v.__dict__
    return "groups" if "priorityGroups" in data or "priority_groups" in data else "single"


AIBackend = Annotated[
    Annotated[PriorityGroups, Tag("groups")] | Annotated[ProviderEntry, Tag("single")],
    Discriminator(_ai_kind),
]


class BackendSpec(ConfigModel):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")

    @field_validator("name")
    @classmethod
    def _not_reserved(cls, v: str) -> str:
        if v == "extproc":
            raise ValueError("'extproc' is the processor's own cluster")
        return v

    ai: AIBackend | None = None
    # A plain HTTP service (no translation, no policies), e.g. for a docs or health page.
    static: Endpoint | None = None
    # A pool of self-hosted model servers the processor picks from per request (written
    # as a top-level `inferencePools` entry; GatewaySpec.all_backends makes it a backend).
    inference_pool: InferencePoolConfig | None = None
    inference_models: tuple[InferenceModelConfig, ...] = ()

    @model_validator(mode="after")
    def _one_kind(self) -> BackendSpec:
        if sum(k is not None for k in (self.ai, self.static, self.inference_pool)) != 1:
            raise ValueError("set exactly one of 'ai', 'static' or 'inferencePool'")
        return self

    @property
    def carries_ai(self) -> bool:
        return self.ai is not None or self.inference_pool is not None

    def providers(self) -> list[tuple[int, ProviderEntry]]:
        """(priority, provider entry) for every provider, single backends at priority 0;
        an inference pool's servers as OpenAI-compatible providers, one per endpoint."""
        if isinstance(self.ai, PriorityGroups):
            return [(i, p) for i, g in enumerate(self.ai.priority_groups) for p in g.providers]
        if self.inference_pool is not None:
            return [(0, p) for p in _pool_entries(self.inference_pool)]
        return [(0, self.ai)] if self.ai is not None else []


def _pool_entries(pool: InferencePoolConfig) -> list[ProviderEntry]:
    entry_cls = _ENTRIES["openai-compatible"]
    return [
        cast(
            "ProviderEntry",
            entry_cls.model_validate(
                {
                    "provider": "openai-compatible",
                    "name": f"{pool.name}-{i}",
                    "path": pool.path,
                    "endpoint": {"host": host, "port": port, "tls": False},
                }
            ),
        )
        for i, (host, port) in enumerate(pool.addresses())
    ]


# ---- routes ---------------------------------------------------------------------------------


class PathMatch(ConfigModel):
    type: Literal["PathPrefix", "Exact", "RegularExpression"] = "PathPrefix"
    value: str = Field(min_length=1)


class ValueMatch(ConfigModel):
    name: str = Field(min_length=1)
    value: str
    type: Literal["Exact", "RegularExpression"] = "Exact"


class RouteMatch(ConfigModel):
    path: PathMatch = PathMatch(value="/")
    headers: tuple[ValueMatch, ...] = ()
    query_params: tuple[ValueMatch, ...] = ()

    @model_validator(mode="after")
    def _regexes_compile(self) -> RouteMatch:
        matches: list[PathMatch | ValueMatch] = [self.path, *self.headers, *self.query_params]
        for m in matches:
            if m.type == "RegularExpression":
                try:
                    re.compile(m.value)
                except re.error as exc:
                    raise ValueError(f"invalid regular expression {m.value!r}: {exc}") from None
                if _NOT_RE2.search(m.value):
                    raise ValueError(
                        f"{m.value!r}: Envoy matches with RE2, which has no lookarounds or backreferences"
                    )
        return self


class BackendRef(ConfigModel):
    name: str
    weight: int = Field(default=1, ge=0)
    # Optional, as in Gateway API: names are unique across backends and inference pools.
    kind: Literal["Backend", "InferencePool"] | None = None


class Timeouts(ConfigModel):
    # Whole request including a streamed response; 0 means none (streams can run long).
    request: Duration = 0.0
    # A response (or stream) that goes quiet this long is cut.
    idle: Duration = 300.0
    # One attempt at one backend (Gateway API's backendRequest), as Envoy's per-try
    # timeout: an attempt that takes longer is abandoned and, with priority groups, the
    # request moves on to the next host. 0: none. It covers the whole attempt, a streamed
    # answer included, so leave it unset (or generous) on streaming routes.
    backend_request: Duration = 0.0

    _parse = field_validator("request", "idle", "backend_request", mode="before")(lambda cls, v: _duration(v))

    @model_validator(mode="after")
    def _within_request(self) -> Timeouts:
        if self.request and self.backend_request and self.backend_request > self.request:
            raise ValueError("backendRequest must not be longer than request")
        return self


class HeaderValue(ConfigModel):
    name: str = Field(min_length=1)
    value: str


class HeaderModifier(ConfigModel):
    set: tuple[HeaderValue, ...] = ()
    add: tuple[HeaderValue, ...] = ()
    remove: tuple[str, ...] = ()

    @model_validator(mode="after")
    def _plain_headers(self) -> HeaderModifier:
        for name in [h.name for h in self.set + self.add] + list(self.remove):
            if name.startswith(":") or name.lower() == "host":
                raise ValueError(f"'{name}' cannot be modified here (use URLRewrite for the host)")
        return self


class PathRewrite(ConfigModel):
    type: Literal["ReplacePrefixMatch", "ReplaceFullPath"]
    replace_prefix_match: str | None = None
    replace_full_path: str | None = None

    @model_validator(mode="after")
    def _value(self) -> PathRewrite:
        want = "replace_prefix_match" if self.type == "ReplacePrefixMatch" else "replace_full_path"
        if getattr(self, want) is None:
            raise ValueError(f"type {self.type} needs '{to_camel(want)}'")
        return self


class URLRewrite(ConfigModel):
    path: PathRewrite | None = None
    hostname: str | None = None


class RouteFilter(ConfigModel):
    type: Literal["RequestHeaderModifier", "ResponseHeaderModifier", "URLRewrite"]
    request_header_modifier: HeaderModifier | None = None
    response_header_modifier: HeaderModifier | None = None
    url_rewrite: URLRewrite | None = Field(default=None, alias="urlRewrite")

    @model_validator(mode="after")
    def _matching_field(self) -> RouteFilter:
        field = {
            "RequestHeaderModifier": "request_header_modifier",
            "ResponseHeaderModifier": "response_header_modifier",
            "URLRewrite": "url_rewrite",
        }[self.type]
        if getattr(self, field) is None:
            raise ValueError(f"type {self.type} needs its settings under the matching key")
        return self


class DirectResponse(ConfigModel):
    status: int = Field(ge=200, le=599)
    body: str = ""
    content_type: str = "application/json"


class RateLimitKey(ConfigModel):
    """Who shares a bucket: each value of a request header (an API key), each client
    address, or everyone (`generic`: one bucket named by this value)."""

    header: str | None = None
    client_address: bool = False
    generic: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.\-]+$")

    @model_validator(mode="after")
    def _one(self) -> RateLimitKey:
        if sum((self.header is not None, self.client_address, self.generic is not None)) != 1:
            raise ValueError("set one of 'header', 'clientAddress: true' or 'generic'")
        return self


Per = Literal["second", "minute", "hour", "day"]
PER_SECONDS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}


class RateLimit(ConfigModel):
    key: RateLimitKey
    requests: int = Field(gt=0)
    per: Per = "minute"
    # local: each Envoy counts on its own (N replicas let N times the limit through);
    # global: every replica counts in Redis (needs gateway.sharedState).
    scope: Literal["local", "global"] = "local"
    # global only: what a request meets when Redis cannot be asked (default: allowed).
    fail_mode: FailMode | None = None

    @model_validator(mode="after")
    def _fail_mode_is_global(self) -> RateLimit:
        if self.fail_mode is not None and self.scope != "global":
            raise ValueError("failMode applies to 'scope: global' (a local limit never waits on anything)")
        return self


class TokenBudget(ConfigModel):
    """Tokens a key may use per window, shared by every replica (Redis): each finished
    request is charged its real usage (streams included), and a key at or over its budget
    is refused before its next call."""

    key: RateLimitKey
    tokens: int = Field(gt=0)
    per: Per = "minute"
    # Default closed: a budget that cannot be checked is not spent.
    fail_mode: FailMode = "closed"


class Route(ConfigModel):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_\-]*$")

    @field_validator("name")
    @classmethod
    def _not_reserved(cls, v: str) -> str:
        if v == "not-found":
            raise ValueError("'not-found' is the gateway's catch-all route")
        return v

    matches: tuple[RouteMatch, ...] = (RouteMatch(),)
    backend_refs: tuple[BackendRef, ...] = ()
    direct_response: DirectResponse | None = None
    timeouts: Timeouts = Timeouts()
    filters: tuple[RouteFilter, ...] = ()
    policies: RoutePolicy | None = None
    rate_limit: RateLimit | None = None
    token_budget: TokenBudget | None = None

    @model_validator(mode="after")
    def _target(self) -> Route:
        if bool(self.backend_refs) == (self.direct_response is not None):
            raise ValueError("set exactly one of 'backendRefs' or 'directResponse'")
        if self.backend_refs and not any(r.weight for r in self.backend_refs):
            raise ValueError("at least one backendRef needs a weight above 0")
        kinds = [f.type for f in self.filters]
        if len(set(kinds)) != len(kinds):
            raise ValueError("at most one filter of each type")
        if self.direct_response is not None and self.policies is not None:
            raise ValueError("a directResponse route has no AI traffic for 'policies' to apply to")
        if self.direct_response is not None and self.token_budget is not None:
            raise ValueError("a directResponse route uses no tokens for 'tokenBudget' to count")
        return self


# ---- the whole config -----------------------------------------------------------------------


class Listen(ConfigModel):
    address: str = "127.0.0.1"
    port: int = Field(default=8080, gt=0, le=65535)


class ProcessorSettings(ConfigModel):
    socket: str = "/tmp/aigw/extproc.sock"
    # Processor processes (one core each), each on its own socket: `socket` with `-0`,
    # `-1`, ... before the extension. `auto` is the number of CPUs where `aigw render` runs.
    workers: int | Literal["auto"] = "auto"
    # Where the processor answers Envoy's health checks for failover backends.
    health_port: int = Field(default=18099, gt=0, le=65535)
    timeout: float = Field(default=10.0, gt=0)

    _parse = field_validator("timeout", mode="before")(lambda cls, v: _duration(v))

    @field_validator("workers")
    @classmethod
    def _workers(cls, value: int | str) -> int | str:
        if isinstance(value, int) and not 1 <= value <= 64:
            raise ValueError("workers must be between 1 and 64, or auto")
        return value

    def sockets(self) -> list[str]:
        """The socket of each worker."""
        n = (os.cpu_count() or 1) if self.workers == "auto" else self.workers
        if n == 1:
            return [self.socket]
        stem, dot, ext = self.socket.rpartition(".")
        if not dot or "/" in ext:
            stem, ext = self.socket, ""
        return [f"{stem}-{i}{'.' + ext if ext else ''}" for i in range(n)]


class GatewaySettings(ConfigModel):
    listen: Listen = Listen()
    admin_port: int = Field(default=9901, gt=0, le=65535)
    processor: ProcessorSettings = ProcessorSettings()
    # Request bodies up to this size are accepted (413 above); Envoy buffers twice that.
    max_request_bytes: int = Field(default=4 * 1024 * 1024, gt=0)
    access_log: bool = True
    # Proxies in front of Envoy whose X-Forwarded-For entries are trusted (for per-address
    # rate limits). 0: the client is whoever connects; X-Forwarded-For is not believed.
    trusted_proxy_hops: int = Field(default=0, ge=0)
    # Redis shared by every replica: cooldowns, global rate limits, token budgets.
    shared_state: SharedState | None = None


class TargetRef(ConfigModel):
    name: str


class Policy(ConfigModel):
    """Route policies applied to the routes named in `targetRefs` (like TrafficPolicy)."""

    name: str
    target_refs: tuple[TargetRef, ...] = Field(min_length=1)
    ai: RoutePolicy | None = None
    rate_limit: RateLimit | None = None
    token_budget: TokenBudget | None = None


class GatewaySpec(ConfigModel):
    gateway: GatewaySettings = GatewaySettings()
    backends: tuple[BackendSpec, ...] = ()
    inference_pools: tuple[InferencePoolConfig, ...] = ()
    inference_models: tuple[InferenceModelConfig, ...] = ()
    routes: tuple[Route, ...] = Field(min_length=1)
    policies: tuple[Policy, ...] = ()

    @cached_property
    def all_backends(self) -> tuple[BackendSpec, ...]:
        """`backends`, then every inference pool as a backend with its models."""
        pools = tuple(
            BackendSpec(
                name=p.name,
                inference_pool=p,
                inference_models=tuple(m for m in self.inference_models if m.pool_ref == p.name),
            )
            for p in self.inference_pools
        )
        return self.backends + pools
