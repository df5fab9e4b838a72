"""Client for the kgateway / Gloo AI Gateway "Guardrail Webhook API".

`POST {base}/request` with `{"body": {"messages": [...]}}` and `POST {base}/response` with
`{"body": {"choices": [{"message": ...}]}}`; the webhook answers `{"action": {...}}`, told
apart by its fields: a `status_code` makes a RejectAction, a `body` object a MaskAction, and
neither a PassAction. Anything else is a webhook failure, as are a non-2xx answer, a
connection error and a timeout:

- fail-closed (the default): reject with 504 after a timeout, 502 otherwise, and a generic
  message that never names the webhook or repeats what it said;
- `failOpen: true`: pass.

A reject whose `status_code` is not 400..599 is a failure, not clamped: the contract says the
status is an HTTP error status, and a webhook that breaks it is broken like any other.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import aiohttp
from pydantic import Field, field_validator, model_validator
from yarl import URL

from ..config_model import ConfigModel
from ..secrets import Secret
from .http_client import (
    HEADER_NAME,
    CallFailed,
    SecretValue,
    SharedSession,
    post_json,
    shared_session,
)

log = logging.getLogger("aigw.guards.webhook")

# Where a mask verdict puts its replacements: request messages or response choices.
_MaskKey = Literal["messages", "choices"]

TIMEOUT_MESSAGE = "the content guard did not answer in time"
FAILURE_MESSAGE = "the content guard is unavailable"

# Headers that describe this connection or body, not the client's request: copying them onto
# the webhook call would corrupt it, so neither a name nor a prefix can select them.
_NEVER_SENT = frozenset(
    {
        "host",
        "content-length",
        "content-type",
        "content-encoding",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "upgrade",
        "expect",
        "accept-encoding",
    }
)


@dataclass
class Verdict:
    action: Literal["pass", "mask", "reject"]
    messages: list[dict[str, Any]] | None = None  # mask on a request: the replacement messages
    choices: list[dict[str, Any]] | None = None  # mask on a response: the replacement choices
    status: int | None = None  # reject: the HTTP status to answer with
    message: str | None = None  # reject: the body for the client
    reason: str | None = None  # for logs only: the webhook's or the failure's reason
    failed: bool = False  # the verdict comes from failure handling


class WebhookHost(ConfigModel):
    host: str = Field(min_length=1)
    port: int = Field(gt=0, le=65535)

    @field_validator("host")
    @classmethod
    def _bare_host(cls, v: str) -> str:
        if any(c in v for c in "/@?#[] \t"):
            raise ValueError("a host name or IP address only, without scheme, port or path")
        return v


class WebhookConfig(ConfigModel):
    host: WebhookHost | None = None
    url: str | None = None
    timeout_seconds: float = Field(default=2.0, gt=0)
    # Request headers copied onto the webhook call; `x-tenant-*` selects by prefix.
    forward_headers: tuple[str, ...] = ()
    fail_open: bool = False
    # Static headers (the webhook's own credential, say), set after forwarded ones so a
    # client cannot supply them.
    headers: dict[str, SecretValue] = Field(default_factory=dict)

    @field_validator("url")
    @classmethod
    def _check_url(cls, v: str) -> str:
        url = URL(v)
        if url.scheme not in ("http", "https"):
            raise ValueError("scheme must be http or https")
        if not url.host:
            raise ValueError("has no host")
        if url.user is not None or url.password is not None:
            raise ValueError("must not carry credentials; set them in 'headers' with a secretRef")
        if url.query_string or url.fragment:
            raise ValueError("must not have a query or fragment")
        return v.rstrip("/")

    @field_validator("forward_headers")
    @classmethod
    def _check_forwarded(cls, names: tuple[str, ...]) -> tuple[str, ...]:
        for name in names:
            stem = name[:-1] if name.endswith("*") else name
            if not stem or "*" in stem or not HEADER_NAME.match(stem):
                raise ValueError(f"{name!r} is not a header name or a 'prefix*'")
            if stem.lower() in _NEVER_SENT:
                raise ValueError(f"{name!r} describes the connection and cannot be forwarded")
        return tuple(n.lower() for n in names)

    @field_validator("headers")
    @classmethod
    def _check_static(cls, headers: dict[str, SecretValue]) -> dict[str, SecretValue]:
        for name in headers:
            if not HEADER_NAME.match(name) or name.lower() in _NEVER_SENT:
                raise ValueError(f"{name!r} cannot be set as a webhook header")
        lowered = {k.lower(): v for k, v in headers.items()}
        if len(lowered) != len(headers):
            raise ValueError("a header is named twice (names are case-insensitive)")
        return lowered

    @model_validator(mode="after")
    def _one_target(self) -> WebhookConfig:
        if (self.host is None) == (self.url is None):
            raise ValueError("set exactly one of 'host' or 'url'")
        return self

    def base_url(self) -> str:
        if self.url is not None:
            return self.url
        assert self.host is not None
        host = f"[{self.host.host}]" if ":" in self.host.host else self.host.host
        return f"http://{host}:{self.host.port}"


class WebhookGuard:
    """Built once at start-up (resolving header secrets, so a missing one stops start-up)."""

    def __init__(self, config: WebhookConfig, session: SharedSession | None = None) -> None:
        self._config = config
        self._session = session or shared_session
        base = config.base_url()
        self._origin = str(URL(base).origin())  # for logs; the path may be deployment detail
        self._urls = {"request": base + "/request", "response": base + "/response"}
        self._timeout = aiohttp.ClientTimeout(total=config.timeout_seconds)
        self._exact = frozenset(n for n in config.forward_headers if not n.endswith("*"))
        self._prefixes = tuple(n[:-1] for n in config.forward_headers if n.endswith("*"))
        self._static = {name: Secret(v.secret_ref) for name, v in config.headers.items()}

    async def check_request(self, messages: list[dict[str, Any]], headers: dict[str, str]) -> Verdict:
        body = {"messages": [_outgoing(m) for m in messages]}
        return await self._check("request", body, "messages", len(messages), _message, headers)

    async def check_response(self, choices: list[dict[str, Any]], headers: dict[str, str]) -> Verdict:
        body = {"choices": [{"message": _outgoing(c["message"])} for c in choices]}
        return await self._check("response", body, "choices", len(choices), _choice, headers)

    async def _check(
        self,
        phase: str,
        body: dict[str, Any],
        key: _MaskKey,
        count: int,
        norm: Callable[[Any], dict[str, Any]],
        headers: dict[str, str],
    ) -> Verdict:
        try:
            action = await self._post(self._urls[phase], {"body": body}, headers)
            return _verdict(action, key, count, norm)
        except CallFailed as failure:
            return self._on_failure(phase, failure)

    async def _post(self, url: str, payload: dict[str, Any], incoming: dict[str, str]) -> dict[str, Any]:
        doc = await post_json(self._session, url, payload, self._headers(incoming), self._timeout)
        action = doc.get("action") if isinstance(doc, dict) else None
        if not isinstance(action, dict):
            raise CallFailed("answer has no 'action' object")
        return action

    def _headers(self, incoming: dict[str, str]) -> dict[str, str]:
        out = {}
        for name, value in incoming.items():
            low = name.lower()
            # Config names are tokens, so no prefix matches an HTTP/2 pseudo-header (":path").
            if low in self._exact or (low.startswith(self._prefixes) and low not in _NEVER_SENT):
                out[low] = value
        for name, secret in self._static.items():
            out[name] = secret.value  # read per call: file secrets rotate
        return out

    def _on_failure(self, phase: str, failure: CallFailed) -> Verdict:
        fail_open = self._config.fail_open
        log.warning(
            "guardrail webhook %s check failed: %s",
            phase,
            failure.kind,
            extra={"fields": {"webhook": self._origin, "fail_open": fail_open}},
        )
        if fail_open:
            return Verdict("pass", reason=failure.kind, failed=True)
        status, message = (504, TIMEOUT_MESSAGE) if failure.timeout else (502, FAILURE_MESSAGE)
        return Verdict("reject", status=status, message=message, reason=failure.kind, failed=True)


def _verdict(
    action: dict[str, Any], key: _MaskKey, count: int, norm: Callable[[Any], dict[str, Any]]
) -> Verdict:
    reason = action.get("reason")
    if reason is not None and not isinstance(reason, str):
        raise CallFailed("'reason' is not a string")
    if "status_code" in action:
        status, body = action["status_code"], action.get("body")
        if type(status) is not int or not 400 <= status <= 599:  # bool is an int: exclude it
            raise CallFailed("reject 'status_code' is not an HTTP error status (400..599)")
        if not isinstance(body, str):
            raise CallFailed("reject 'body' is not a string")
        return Verdict("reject", status=status, message=body, reason=reason)
    body = action.get("body")
    if body is None:
        return Verdict("pass", reason=reason)
    items = body.get(key) if isinstance(body, dict) else None
    if not isinstance(items, list):
        raise CallFailed(f"mask 'body' has no '{key}' list")
    if len(items) != count:
        raise CallFailed(f"mask returned {len(items)} {key} for {count} sent")
    masked = [norm(item) for item in items]
    if key == "messages":
        return Verdict("mask", messages=masked, reason=reason)
    return Verdict("mask", choices=masked, reason=reason)


def _outgoing(message: dict[str, Any]) -> dict[str, Any]:
    """The contract's Message: a role and text content; other fields are not sent."""
    content = message.get("content")
    if content is None:  # an assistant turn that only called tools
        content = ""
    elif not isinstance(content, str):  # silently dropping parts would let them skip the guard
        raise TypeError("guard messages carry text content; flatten content parts first")
    return {"role": message["role"], "content": content}


def _message(item: Any) -> dict[str, Any]:
    if isinstance(item, dict) and isinstance(item.get("role"), str) and isinstance(item.get("content"), str):
        return {"role": item["role"], "content": item["content"]}
    raise CallFailed("a masked message lacks a string 'role' or 'content'")


def _choice(item: Any) -> dict[str, Any]:
    if not isinstance(item, dict):
        raise CallFailed("a masked choice is not an object")
    return {"message": _message(item.get("message"))}
