"""Content moderation services behind one small interface.

A `Moderator` answers "is any of these texts flagged, and under which categories?". Each
service is one class registered under its config field name, and `ModerationConfig` holds
exactly one of those fields, so adding a service (Azure Content Safety, say) is one config
model, one field on `ModerationConfig` and one `@register`ed class.

A failed call (timeout, connection error, non-2xx, malformed answer) is reported as
`failed=True` and, unless the service's `failOpen` is set, also `flagged=True`: the caller
then rejects the content it could not check.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import aiohttp
from pydantic import Field, field_validator, model_validator
from yarl import URL

from ..config_model import ConfigModel
from ..secrets import Secret
from .http_client import CallFailed, SecretValue, SharedSession, post_json, shared_session

log = logging.getLogger("aigw.guards.moderation")


@dataclass
class ModerationResult:
    flagged: bool
    categories: list[str] = field(default_factory=list)  # the flagged categories' names
    failed: bool = False


class Moderator(Protocol):
    async def check(self, texts: list[str]) -> ModerationResult: ...


# Config field name -> factory(provider config, session).
_REGISTRY: dict[str, Callable[[Any, SharedSession], Moderator]] = {}


def register(field_name: str) -> Callable[[type], type]:
    def add(cls: type) -> type:
        _REGISTRY[field_name] = cls
        return cls

    return add


def _http_url(v: str) -> str:
    url = URL(v)
    if url.scheme not in ("http", "https") or not url.host:
        raise ValueError("must be an http or https URL with a host")
    if url.user is not None or url.password is not None:
        raise ValueError("must not carry credentials; use 'authToken'")
    return v


class OpenAIModerationConfig(ConfigModel):
    model: str = Field(default="omni-moderation-latest", min_length=1)
    url: str = "https://api.openai.com/v1/moderations"
    auth_token: SecretValue
    timeout_seconds: float = Field(default=3.0, gt=0)
    fail_open: bool = False

    @field_validator("url")
    @classmethod
    def _check_url(cls, v: str) -> str:
        return _http_url(v)


class ModerationConfig(ConfigModel):
    """Exactly one moderation service. Each field name must have a `@register`ed class."""

    # The explicit alias keeps the "AI" the generated camelCase would spell "Ai".
    open_ai_moderation: OpenAIModerationConfig | None = Field(default=None, alias="openAIModeration")

    @model_validator(mode="after")
    def _exactly_one(self) -> ModerationConfig:
        fields = type(self).model_fields
        given = [n for n in fields if getattr(self, n) is not None]
        if len(given) != 1:
            names = ", ".join(f"'{f.alias or n}'" for n, f in fields.items())
            raise ValueError(f"set exactly one moderation service: {names}")
        return self


def build_moderator(config: ModerationConfig, session: SharedSession | None = None) -> Moderator:
    """Resolves the service's secrets now, so a missing one stops start-up."""
    for name in type(config).model_fields:
        provider = getattr(config, name)
        if provider is not None:
            return _REGISTRY[name](provider, session or shared_session)
    raise ValueError("no moderation service configured")  # the config validator prevents it


@register("open_ai_moderation")
class OpenAIModerator:
    """`POST /v1/moderations` with `{"model", "input": [texts]}`; one result per input."""

    def __init__(self, config: OpenAIModerationConfig, session: SharedSession) -> None:
        self._config = config
        self._session = session
        self._token = Secret(config.auth_token.secret_ref)
        self._timeout = aiohttp.ClientTimeout(total=config.timeout_seconds)
        self._origin = str(URL(config.url).origin())

    async def check(self, texts: list[str]) -> ModerationResult:
        texts = [t for t in texts if t.strip()]  # nothing to judge in blank text
        if not texts:
            return ModerationResult(flagged=False)
        try:
            results = await self._post(texts)
            return _judge(results, len(texts))
        except CallFailed as failure:
            return self._on_failure(failure.kind)

    async def _post(self, texts: list[str]) -> Any:
        payload = {"model": self._config.model, "input": texts}
        headers = {"Authorization": f"Bearer {self._token.value}"}  # per call: files rotate
        doc = await post_json(self._session, self._config.url, payload, headers, self._timeout)
        return doc.get("results") if isinstance(doc, dict) else None

    def _on_failure(self, kind: str) -> ModerationResult:
        fail_open = self._config.fail_open
        log.warning(
            "moderation check failed: %s",
            kind,
            extra={"fields": {"moderation": self._origin, "fail_open": fail_open}},
        )
        return ModerationResult(flagged=not fail_open, failed=True)


def _judge(results: Any, count: int) -> ModerationResult:
    # Fewer results than inputs would leave some text unjudged: that is a failure.
    if not isinstance(results, list) or len(results) != count:
        raise CallFailed("answer lacks one result per input")
    flagged = False
    categories: set[str] = set()
    for result in results:
        if not isinstance(result, dict) or not isinstance(result.get("flagged"), bool):
            raise CallFailed("a result has no boolean 'flagged'")
        cats = result.get("categories")
        cats = {} if cats is None else cats
        if not isinstance(cats, dict):
            raise CallFailed("a result's 'categories' is not an object")
        if result["flagged"]:
            flagged = True
            categories.update(name for name, hit in cats.items() if hit is True)
    return ModerationResult(flagged=flagged, categories=sorted(categories))
