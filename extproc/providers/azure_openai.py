"""Azure OpenAI: OpenAI's chat-completions API behind a deployment name and an api-version.

The request body is OpenAI's. What differs is where it goes (the deployment is in the
path, the `api-version` in the query), the credential header (`api-key`), and some
extras in the answers: `prompt_filter_results` / `content_filter_results` from Azure's
content filter, and codes such as `"429"` in errors.

Why the responses are not passed through (`canonical_responses` stays False): Azure's
streams are not OpenAI-shaped at the edges. The first event is a filter report with
`choices: []`, `id: ""`, `object: ""`, `created: 0` and `model: ""`, and with
asynchronous filtering later events carry choices without a `delta`. The OpenAI SDK
tolerates the first, but many clients index `choices[0]` or read `choice.delta` and
break (mentat#429, autogen#6465, streamlit#8084). The translator below is light: it drops
those annotation-only events and fills the blank envelope fields; every real chunk
passes with its own fields. JSON answers are already OpenAI's and pass almost untouched.
"""

from __future__ import annotations

import re
from typing import Any, Literal
from urllib.parse import quote

import orjson
from pydantic import field_validator

from ..sse import SSEEvent
from .base import (
    BackendSettings,
    Provider,
    ProviderError,
    StreamTranslator,
    error_dict,
    messages_without_reasoning,
    new_completion_id,
    now,
    openai_style_error,
    parse_error_body,
)

# The latest GA api-version of the data-plane inference API (the REST reference's table).
DEFAULT_API_VERSION = "2024-10-21"
# `max_completion_tokens` and `stream_options` exist from 2024-09-01-preview on (Azure's
# API lifecycle page); older versions reject them as "Unrecognized request argument".
_NEWER_PARAMS_SINCE = "2024-09-01"
_VERSION = re.compile(r"^(v1|\d{4}-\d{2}-\d{2}(-preview)?)$")
# Azure sends the HTTP status as the error code ("429"); clients expect OpenAI's names.
_CODE_FOR_STATUS = {
    401: "invalid_api_key",
    403: "permission_denied",
    404: "not_found",
    429: "rate_limit_exceeded",
    500: "server_error",
    503: "service_unavailable",
}


class AzureOpenAISettings(BackendSettings):
    provider: Literal["azure-openai"]
    # The deployment name in the path. Defaults to the effective model name.
    deployment: str | None = None
    # A dated version ("2024-10-21", "2025-04-01-preview") uses
    # /openai/deployments/{deployment}/chat/completions?api-version=...; "v1" uses the
    # version-less /openai/v1/chat/completions, where the deployment goes in `model`.
    api_version: str = DEFAULT_API_VERSION

    @field_validator("api_version")
    @classmethod
    def _version(cls, v: str) -> str:
        if not _VERSION.match(v):
            raise ValueError("must be 'v1' or a dated version such as '2024-10-21'")
        return v

    @field_validator("deployment")
    @classmethod
    def _deployment(cls, v: str | None) -> str | None:
        if v is not None and not v.strip():
            raise ValueError("must not be empty")
        return v


class AzureStream(StreamTranslator):
    """Drops Azure's filter-annotation events and fills blank envelope fields."""

    def __init__(self, model: str) -> None:
        self.model = model
        self.id: str | None = None
        self.created: int | None = None

    def on_event(self, event: SSEEvent) -> list[dict[str, Any]]:
        if not event.has_data or event.data == "[DONE]":
            return []  # the framework writes its own [DONE]
        chunk = orjson.loads(event.data)
        if not isinstance(chunk, dict):
            raise ProviderError("a stream event is not a JSON object")
        if "choices" not in chunk:
            if "error" in chunk:
                return [_stream_error(chunk)]
            raise ProviderError("a stream event has no 'choices'")
        choices = [c for c in chunk["choices"] if isinstance(c, dict) and "delta" in c]
        if not choices and not chunk.get("usage"):
            return []  # prompt_filter_results, or a content-filter annotation alone
        if chunk.get("id"):
            self.id = self.id or chunk["id"]
        if chunk.get("created"):
            self.created = self.created or chunk["created"]
        out = dict(chunk)
        out["choices"] = choices
        out["object"] = "chat.completion.chunk"
        out["id"] = chunk.get("id") or self.id or self._new_id()
        out["created"] = chunk.get("created") or self.created or self._now()
        if chunk.get("model"):
            self.model = chunk["model"]
        else:
            out["model"] = self.model
        return [out]

    def _new_id(self) -> str:
        self.id = new_completion_id()
        return self.id

    def _now(self) -> int:
        self.created = now()
        return self.created


def _stream_error(chunk: dict[str, Any]) -> dict[str, Any]:
    err = chunk["error"]
    if isinstance(err, dict) and isinstance(err.get("message"), str):
        code = err.get("code")
        return error_dict(500, err["message"], code=str(code) if code is not None else None)
    return error_dict(502, "azure-openai reported an error in the stream", code="upstream_stream_error")


class AzureOpenAI(Provider[AzureOpenAISettings]):
    name = "azure-openai"
    settings_model = AzureOpenAISettings
    auth_header = "api-key"
    auth_prefix = ""
    # Each Azure resource has its own host (<resource>.openai.azure.com): set `authority`.
    default_authority = None
    canonical_responses = False  # see the module docstring

    def _s(self) -> AzureOpenAISettings:
        return self.settings

    def request_path(self, model: str, stream: bool) -> str:
        s = self._s()
        if s.api_version == "v1":
            return "/openai/v1/chat/completions"
        deployment = quote(s.deployment or model, safe="")
        return (
            f"/openai/deployments/{deployment}/chat/completions?api-version={quote(s.api_version, safe='')}"
        )

    def translate_request(self, req: dict[str, Any], model: str) -> dict[str, Any]:
        s = self._s()
        # With a deployment in the path Azure ignores `model`; the v1 API routes by it, so
        # there it must name the deployment.
        body_model = (s.deployment or model) if s.api_version == "v1" else model
        legacy = s.api_version != "v1" and s.api_version[:10] < _NEWER_PARAMS_SINCE
        messages = messages_without_reasoning(req)  # as OpenAI, Azure refuses unknown fields
        if not legacy and req.get("model") == body_model and messages is None:
            return req
        out = dict(req)
        out["model"] = body_model
        if messages is not None:
            out["messages"] = messages
        if legacy:
            # Older versions know only `max_tokens`, and cannot report usage in a stream.
            out.pop("stream_options", None)
            limit = out.pop("max_completion_tokens", None)
            if limit is not None and out.get("max_tokens") is None:
                out["max_tokens"] = limit
        return out

    def translate_response(self, body: dict[str, Any], model: str) -> dict[str, Any]:
        # Already OpenAI's schema; Azure's filter results stay as extra fields, which the
        # SDKs keep and ignore. Only a blank `model` would break strict clients.
        if not isinstance(body, dict) or not isinstance(body.get("choices"), list):
            raise ProviderError("the response has no 'choices' array")
        if body.get("model"):
            return body
        return {**body, "model": model}

    def stream_translator(self, model: str) -> StreamTranslator:
        return AzureStream(model)

    def translate_error(self, status: int, body: bytes) -> tuple[int, dict[str, Any]]:
        doc = openai_style_error(status, body, self.name)
        err = doc["error"]
        code = err.get("code")
        if isinstance(code, int) or (isinstance(code, str) and code.isdigit()):
            err["code"] = _CODE_FOR_STATUS.get(int(code))
        # A content-filter rejection stays a 400 with code "content_filter"; Azure's
        # `innererror` says which category fired, so it is kept for the client.
        if err.get("code") == "content_filter":
            doc_in = parse_error_body(body)
            error_in = doc_in.get("error") if isinstance(doc_in, dict) else None
            inner = error_in.get("innererror") if isinstance(error_in, dict) else None
            if isinstance(inner, dict):
                err["innererror"] = inner
        return status, doc


PROVIDER = AzureOpenAI
