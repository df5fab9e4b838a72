"""The gateway config's routes: matches, weighted backend references or a direct response,
timeouts, filters (header modifiers, URL rewrites), policies, rate limits and token
budgets."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator
from pydantic.alias_generators import to_camel

from ..config.policy import RoutePolicy
from ..config.shared_state import FailMode, RateLimitKey
from ..config_model import ConfigModel, seconds

_NOT_RE2 = re.compile(r"\(\?<?[=!]|\\[1-9]")

Duration = Annotated[float, Field(ge=0)]


def written_by_render(policy: RoutePolicy | None) -> RoutePolicy | None:
    """A field validator for route policies in the gateway config: `tokenCharge` is the
    processor's side of a route's `tokenBudget`, written by the renderer, not by hand."""
    if policy is not None and policy.token_charge is not None:
        raise ValueError("'tokenCharge' is written by aigw render: give the route a 'tokenBudget' instead")
    return policy


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

    _parse = field_validator("request", "idle", "backend_request", mode="before")(lambda cls, v: seconds(v))

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

    _own_policies = field_validator("policies")(lambda cls, v: written_by_render(v))

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
