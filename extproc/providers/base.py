"""What a provider module supplies, and the helpers translators share.

A provider module is a pure translator between the canonical OpenAI chat-completions
schema and one provider's API, plus that provider's path, auth placement and settings.
It does no I/O and keeps no state across requests; the upstream filter calls it once per
attempt with the backend Envoy picked.

To add a provider, write one module in this package that defines a `Provider` subclass
and assigns it to a module-level `PROVIDER`; the registry finds it by itself.
"""

from __future__ import annotations

import re
import time
import uuid
from abc import ABC, abstractmethod
from typing import Any, ClassVar, Generic, TypeVar

import orjson
from pydantic import Field, field_validator, model_validator

from ..config_model import ConfigModel
from ..errors import error_dict as error_dict  # re-exported for the translators
from ..errors import error_type_for
from ..secrets import SecretRef
from ..sse import SSEEvent

# Header names (RFC 9110 tokens, lower case), optionally a prefix ending in `*`.
_HEADER_PATTERN = re.compile(r"[a-z0-9!#$%&'+.^_`|~-]+\*?|\*")
# Headers no `allowHeaders` can bring back, and why (backends.py strips them).
NEVER_FORWARDED = {
    **dict.fromkeys(
        ("authorization", "api-key", "x-api-key", "x-goog-api-key"),
        "the backend's own credential is the only one sent",
    ),
    **dict.fromkeys(
        ("accept-encoding", "cookie", "proxy-authorization"),
        "the gateway reads bodies, and cookies and proxy credentials are the client's",
    ),
    **dict.fromkeys(
        ("openai-organization", "openai-project", "x-goog-user-project"),
        "with the gateway's credential the backend's settings choose the account",
    ),
    "host": "the gateway sets it (see 'authority')",
}


class AuthConfig(ConfigModel):
    """How the gateway authenticates to a backend.

    - `secretRef`: the gateway injects this credential; the client's never reaches the provider.
    - `passthrough: true`: the client's own credential is forwarded, moved into the header
      this provider expects (an OpenAI SDK's `Authorization: Bearer` becomes Anthropic's
      `x-api-key`, for instance).
    - `header` / `prefix` override where the credential goes (self-hosted models).
    """

    secret_ref: SecretRef | None = None
    passthrough: bool = False
    header: str | None = None
    prefix: str | None = None

    @model_validator(mode="after")
    def _one_source(self) -> AuthConfig:
        if (self.secret_ref is None) == (not self.passthrough):
            raise ValueError("set either 'secretRef' or 'passthrough: true'")
        return self

    @field_validator("header")
    @classmethod
    def _lower(cls, v: str | None) -> str | None:
        return v.lower() if v else v


class BackendSettings(ConfigModel):
    """Settings every backend has, from the endpoint metadata under `aigw`.

    Providers subclass this with `provider: Literal["name"]` and their own fields.
    """

    provider: str
    name: str | None = None
    model: str | None = None
    auth: AuthConfig | None = None
    # Host header sent upstream. Defaults to the provider's public host, if it has one.
    authority: str | None = None
    # After a 429 without a usable Retry-After, keep the backend out of rotation this long;
    # a Retry-After longer than the maximum is capped (see backend_health.py).
    cooldown_seconds: float = Field(default=10.0, gt=0)
    max_cooldown_seconds: float = Field(default=300.0, gt=0)
    # Client request headers this backend also receives (names, or prefixes ending in
    # `*`): with the gateway's credential only a few standard ones are forwarded, and
    # client-address headers never are unless listed (see backends.py).
    allow_headers: tuple[str, ...] = ()

    @field_validator("allow_headers")
    @classmethod
    def _header_names(cls, names: tuple[str, ...]) -> tuple[str, ...]:
        out = []
        for name in names:
            n = name.strip().lower()
            if not _HEADER_PATTERN.fullmatch(n):
                raise ValueError(f"{name!r} is not a header name (or a prefix ending in '*')")
            if n in NEVER_FORWARDED:
                raise ValueError(f"{name!r} is never forwarded: {NEVER_FORWARDED[n]}")
            out.append(n)
        return tuple(out)


class Credential:
    """The credential for one attempt: the header to set and its value."""

    __slots__ = ("header", "value")

    def __init__(self, header: str, value: str) -> None:
        self.header = header
        self.value = value


class ProviderError(Exception):
    """A provider response that cannot be translated (malformed JSON, wrong shape)."""


class UnsupportedRequest(ValueError):
    """A canonical request this provider cannot honour (e.g. `n: 3` where only one choice
    exists). The client gets a 400 naming the field, rather than a silently different answer."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


class StreamTranslator(ABC):
    """Turns one provider SSE stream into canonical `chat.completion.chunk` dicts.

    Called with whole events (the framework parses the bytes). Returns chunks in order.
    The framework writes each as `data: {json}` and ends the stream with `data: [DONE]`.
    An error inside the stream is returned as `{"error": {...}}`, which the framework
    writes as an event and then ends the stream.
    """

    @abstractmethod
    def on_event(self, event: SSEEvent) -> list[dict[str, Any]]: ...

    def on_end(self) -> list[dict[str, Any]]:
        """The provider closed the stream. Emit whatever is still owed."""
        return []


SettingsT = TypeVar("SettingsT", bound=BackendSettings)


class Provider(ABC, Generic[SettingsT]):
    """One provider's translator. Instances hold validated, immutable settings only
    (`settings` is typed as the provider's own settings model)."""

    name: ClassVar[str]
    settings_model: ClassVar[type[BackendSettings]]
    # Where an injected or passed-through credential goes, unless `auth.header` says otherwise.
    auth_header: ClassVar[str] = "authorization"
    auth_prefix: ClassVar[str] = "Bearer "
    default_authority: ClassVar[str | None] = None
    # False only for self-hosted models that may run without any credential.
    requires_auth: ClassVar[bool] = True
    # True when a 2xx response is already canonical (OpenAI's own schema): the upstream
    # filter then skips the response body entirely, which is cheaper.
    canonical_responses: ClassVar[bool] = False

    def __init__(self, settings: SettingsT) -> None:
        self.settings: SettingsT = settings

    # ---- request side -------------------------------------------------------------
    @abstractmethod
    def request_path(self, model: str, stream: bool) -> str:
        """The `:path` (with query) for this attempt."""

    @abstractmethod
    def translate_request(self, req: dict[str, Any], model: str) -> dict[str, Any]:
        """Canonical request -> provider body. Must not mutate `req` (retries reuse it)."""

    def extra_headers(self) -> dict[str, str]:
        """Static headers the provider needs besides auth (e.g. `anthropic-version`)."""
        return {}

    # ---- response side ------------------------------------------------------------
    @abstractmethod
    def translate_response(self, body: dict[str, Any], model: str) -> dict[str, Any]:
        """Provider JSON response -> canonical `chat.completion`."""

    @abstractmethod
    def stream_translator(self, model: str) -> StreamTranslator:
        """A fresh translator for one streamed response."""

    def translate_error(self, status: int, body: bytes) -> tuple[int, dict[str, Any]]:
        """Provider error -> (status for the client, OpenAI-style error dict).

        The default understands OpenAI-shaped errors and falls back to a generic message
        for anything else (an HTML page from a proxy, say), never echoing it verbatim.
        Override to map provider-specific statuses (Anthropic's 529 -> 503, say).
        """
        return status, openai_style_error(status, body, self.name)


# ---- helpers shared by translators -----------------------------------------------------


def parse_error_body(body: bytes) -> Any:
    """A provider error body as JSON, or None when it is empty or not JSON (an HTML page
    from a proxy, plain text)."""
    try:
        return orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        return None


_TAGS = re.compile(r"<(script|style)\b.*?</\1\s*>|<[^>]*>", re.S | re.I)
_SPACE = re.compile(r"\s+")
ERROR_TEXT_MAX = 300


def error_text(body: bytes) -> str:
    """What an unrecognised error body says, for the client's error message: HTML tags and
    runs of whitespace removed, cut to ERROR_TEXT_MAX characters. (The upstream filter
    redacts every error before it leaves, so a credential quoted here never gets out.)"""
    text = body[: ERROR_TEXT_MAX * 20].decode("utf-8", "replace")
    if "<" in text:
        text = _TAGS.sub(" ", text)
    text = _SPACE.sub(" ", text).strip()
    return text if len(text) <= ERROR_TEXT_MAX else text[: ERROR_TEXT_MAX - 1] + "…"


def unrecognised_error(status: int, body: bytes, provider: str) -> dict[str, Any]:
    """An error body in no shape the translator knows: its text is kept, so operators can
    see what answered (a load balancer's 503 page, a proxy's message)."""
    text = error_text(body)
    message = f"{provider} returned HTTP {status}" + (f": {text}" if text else "")
    return error_dict(status, message, code="upstream_error")


def openai_style_error(status: int, body: bytes, provider: str) -> dict[str, Any]:
    doc = parse_error_body(body)
    err = doc.get("error") if isinstance(doc, dict) else None
    if isinstance(err, dict) and isinstance(err.get("message"), str):
        return {
            "error": {
                "message": err["message"],
                "type": err.get("type") if isinstance(err.get("type"), str) else error_type_for(status),
                "param": err.get("param"),
                "code": err.get("code")
                if isinstance(err.get("code"), (str, int)) or err.get("code") is None
                else None,
            }
        }
    if isinstance(err, str):  # some OpenAI-compatible servers send {"error": "text"}
        return error_dict(status, err, code=None)
    if isinstance(doc, dict):
        for key in ("message", "detail"):  # {"message": ..} style, FastAPI's {"detail": ..}
            if isinstance(doc.get(key), str):
                return error_dict(status, doc[key], code=None)
    return unrecognised_error(status, body, provider)


def new_completion_id() -> str:
    return "chatcmpl-" + uuid.uuid4().hex[:24]


def now() -> int:
    return int(time.time())


def make_chunk(
    cid: str,
    model: str,
    created: int,
    *,
    delta: dict[str, Any] | None = None,
    finish_reason: str | None = None,
    index: int = 0,
    usage: dict[str, Any] | None = None,
    no_choices: bool = False,
) -> dict[str, Any]:
    """A canonical `chat.completion.chunk`. `no_choices` makes the final usage-only chunk."""
    chunk: dict[str, Any] = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model}
    if no_choices:
        chunk["choices"] = []
    else:
        chunk["choices"] = [
            {"index": index, "delta": delta or {}, "logprobs": None, "finish_reason": finish_reason}
        ]
    if usage is not None:
        chunk["usage"] = usage
    return chunk


def make_usage(
    prompt: int, completion: int, *, cached: int | None = None, reasoning: int | None = None
) -> dict[str, Any]:
    usage: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }
    if cached is not None:
        usage["prompt_tokens_details"] = {"cached_tokens": cached}
    if reasoning is not None:
        usage["completion_tokens_details"] = {"reasoning_tokens": reasoning}
    return usage


def text_of(content: Any) -> str:
    """Flatten canonical message content (string or parts) to text."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return "".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")


def max_tokens_of(req: dict[str, Any]) -> int | None:
    """`max_completion_tokens` is the newer name; it wins when both are given."""
    value = req.get("max_completion_tokens")
    return value if value is not None else req.get("max_tokens")


# Reasoning a provider returned for the client to send back (see README "Reasoning"). Only
# the provider that signed it can take it; every other provider drops it from history.
REASONING_HISTORY_FIELDS = ("reasoning_content", "thinking_blocks")


def messages_without_reasoning(req: dict[str, Any]) -> list[Any] | None:
    """`req["messages"]` with reasoning fields removed from assistant turns, or None when
    no message carries any (the usual case: nothing is copied)."""
    messages = req["messages"]
    if not any(
        isinstance(m, dict) and ("reasoning_content" in m or "thinking_blocks" in m) for m in messages
    ):
        return None
    return [
        {k: v for k, v in m.items() if k not in REASONING_HISTORY_FIELDS} if isinstance(m, dict) else m
        for m in messages
    ]


def stop_list(req: dict[str, Any]) -> list[str] | None:
    stop = req.get("stop")
    if stop is None:
        return None
    return [stop] if isinstance(stop, str) else list(stop)


# Media types clients commonly misspell, and the registered name providers expect
# (`image/jpg` is not registered; Anthropic and Gemini reject it).
_MEDIA_TYPE_ALIASES = {"image/jpg": "image/jpeg", "image/pjpeg": "image/jpeg", "image/x-png": "image/png"}


def normalise_media_type(media_type: str) -> str:
    """Lower-cased, parameters dropped, common misspellings mapped (`image/jpg` -> `image/jpeg`)."""
    media = media_type.split(";", 1)[0].strip().lower()
    return _MEDIA_TYPE_ALIASES.get(media, media)


def parse_data_url(url: str) -> tuple[str, str] | None:
    """`data:image/png;base64,AAAA` -> ("image/png", "AAAA"); None for other URLs.

    The media type comes back normalised (`image/jpg` -> `image/jpeg`)."""
    if not url.startswith("data:"):
        return None
    header, sep, data = url[5:].partition(",")
    if not sep or not header.endswith(";base64"):
        return None
    return normalise_media_type(header[: -len(";base64")]) or "application/octet-stream", data


def check_media_type(media_type: str, accepted: frozenset[str], provider: str, where: str) -> str:
    """Refuse, with a 400 naming the field, a media type the provider cannot take."""
    if media_type not in accepted:
        raise UnsupportedRequest(
            f"'{where}': {provider} does not accept {media_type}; send one of {', '.join(sorted(accepted))}",
            param=where,
        )
    return media_type
