"""Anthropic Messages API (`POST /v1/messages`).

Request: system/developer messages move to the top-level `system`; tool calls and tool
results become `tool_use` / `tool_result` blocks; consecutive same-role turns are merged
so turns alternate (_anthropic_request.py); `reasoning_effort` turns on extended thinking
(_anthropic_reasoning.py). Response: content blocks fold back into one OpenAI message,
thinking into `reasoning_content` / `thinking_blocks`. Stream: Anthropic's typed events
become `chat.completion.chunk`s. See docs/providers/anthropic.md.
"""

from __future__ import annotations

from typing import Any, Literal

import orjson
from pydantic import Field, field_validator, model_validator

from ..sse import SSEEvent
from ._anthropic_reasoning import (
    INTERLEAVED_THINKING_BETA,
    MIN_BUDGET,
    ThinkingBudgets,
    block_delta,
    block_start_deltas,
    check_thinking_conflicts,
    resolve_thinking,
    response_thinking,
    sampling,
    thinking_max_tokens,
)
from ._anthropic_request import request_messages, tool_choice, tools
from .base import (
    BackendSettings,
    Provider,
    ProviderError,
    StreamTranslator,
    UnsupportedRequest,
    error_dict,
    make_chunk,
    make_usage,
    max_tokens_of,
    new_completion_id,
    now,
    openai_style_error,
    parse_error_body,
    stop_list,
)


class AnthropicSettings(BackendSettings):
    provider: Literal["anthropic"]
    # Sent as the `anthropic-version` header on every request.
    anthropic_version: str = "2023-06-01"
    # Anthropic requires `max_tokens`; used when the client sends neither
    # `max_tokens` nor `max_completion_tokens`.
    default_max_tokens: int = 4096
    # Extended thinking: `budget_tokens` per reasoning_effort; the effort a request without
    # one gets ("off": none); whether to send the interleaved-thinking beta header (a
    # static header, so on every request of this backend); and a cap on `max_tokens`
    # once the budget is added to it (the model's output limit).
    thinking_budgets: ThinkingBudgets = Field(default_factory=ThinkingBudgets)
    default_reasoning_effort: Literal["off", "minimal", "low", "medium", "high"] = "off"
    interleaved_thinking: bool = False
    max_output_tokens: int | None = Field(default=None, gt=MIN_BUDGET)

    @field_validator("default_reasoning_effort", mode="before")
    @classmethod
    def _yaml_off(cls, value: Any) -> Any:
        # YAML 1.1 reads a bare `off` as false.
        return "off" if value is False else value

    @model_validator(mode="after")
    def _cap_above_budgets(self) -> AnthropicSettings:
        largest = self.thinking_budgets.largest()
        if self.max_output_tokens is not None and self.max_output_tokens <= largest:
            raise ValueError(
                f"'maxOutputTokens' ({self.max_output_tokens}) must be above every thinking budget "
                f"(the largest is {largest}): Anthropic wants max_tokens > budget_tokens"
            )
        return self


# OpenAI request fields Anthropic has no equivalent for. They are dropped, not rejected:
# a client that sets `seed` or `presence_penalty` still gets a sensible answer.
DROPPED_FIELDS = (
    "frequency_penalty",
    "presence_penalty",
    "logit_bias",
    "logprobs",
    "top_logprobs",
    "seed",
    "response_format",
    "stream_options",
    "service_tier",
    "store",
    "metadata",
    "modalities",
    "audio",
    "prediction",
    "web_search_options",
    "prompt_cache_key",
)
# Fields that would change the answer's meaning if ignored: rejected with a 400.
REJECTED_FIELDS = (
    "n > 1",
    "functions",
    "function_call",
    "role 'function' messages",
    "content parts other than text and image_url",
)

# Anthropic's temperature range is 0..1, OpenAI's 0..2. Values above 1 are clamped rather
# than scaled: most clients send 0..1 already, and scaling would change those answers.
MAX_TEMPERATURE = 1.0

FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}

# Anthropic error type -> (OpenAI error type, code). Codes are the ones OpenAI clients
# already branch on, or Anthropic's own name where OpenAI has no equivalent.
ERROR_TYPES: dict[str, tuple[str, str | None]] = {
    "invalid_request_error": ("invalid_request_error", None),
    "authentication_error": ("authentication_error", "invalid_api_key"),
    "billing_error": ("invalid_request_error", "billing_error"),
    "permission_error": ("permission_error", None),
    "not_found_error": ("not_found_error", None),
    "request_too_large": ("invalid_request_error", "request_too_large"),
    "rate_limit_error": ("rate_limit_error", "rate_limit_exceeded"),
    "api_error": ("server_error", None),
    "timeout_error": ("server_error", "timeout"),
    "overloaded_error": ("server_error", "overloaded"),
}
# The only status OpenAI clients would not understand: 529 means "overloaded, retry".
STATUS_MAP = {529: 503}


def finish_reason(stop_reason: str | None) -> str:
    return FINISH_REASONS.get(stop_reason or "", "stop")


def usage_of(u: dict[str, Any]) -> dict[str, Any]:
    """Anthropic reports cache writes and reads apart from `input_tokens`; OpenAI's
    `prompt_tokens` counts every prompt token, cached or not."""
    cached = u.get("cache_read_input_tokens")
    prompt = (u.get("input_tokens") or 0) + (u.get("cache_creation_input_tokens") or 0) + (cached or 0)
    return make_usage(prompt, u.get("output_tokens") or 0, cached=cached)


# ---- streaming -------------------------------------------------------------------------


class AnthropicStream(StreamTranslator):
    """Anthropic stream events -> OpenAI chunks.

    Usage in the stream is cumulative: `message_start` carries the input counts and a
    first output count, each `message_delta` the running totals (newer API versions
    repeat the input counts there too). The last value of each field wins; nothing is
    summed.
    """

    def __init__(self, model: str) -> None:
        self.id = new_completion_id()
        self.model = model
        self.created = now()
        self.started = False
        self.finished = False  # the finish_reason chunk went out
        self.stopped = False  # message_stop seen
        self.stop_reason: str | None = None
        self.usage: dict[str, Any] = {}
        self.tools: dict[int, int] = {}  # Anthropic block index -> OpenAI tool_calls index

    def _chunk(self, **kw: Any) -> dict[str, Any]:
        return make_chunk(self.id, self.model, self.created, **kw)

    def _start(self, out: list[dict[str, Any]]) -> None:
        if not self.started:
            self.started = True
            out.append(self._chunk(delta={"role": "assistant", "content": ""}))

    def _usage(self, usage: dict[str, Any] | None) -> None:
        # Last value wins; a field sent as null (they are optional in message_delta) does
        # not wipe out the count message_start gave.
        self.usage.update((k, v) for k, v in (usage or {}).items() if v is not None)

    def _finish(self, out: list[dict[str, Any]]) -> None:
        if not self.finished:
            self.finished = True
            out.append(self._chunk(finish_reason=finish_reason(self.stop_reason)))

    def on_event(self, event: SSEEvent) -> list[dict[str, Any]]:
        if not event.has_data or not event.data.strip():
            return []
        data = orjson.loads(event.data)
        kind = data.get("type") or event.event
        out: list[dict[str, Any]] = []
        if kind == "message_start":
            msg = data.get("message") or {}
            self.id = msg.get("id") or self.id
            self.model = msg.get("model") or self.model
            self._usage(msg.get("usage"))
            self._start(out)
        elif kind == "content_block_start":
            self._start(out)
            block = data.get("content_block") or {}
            if block.get("type") == "tool_use":
                index = self.tools[data["index"]] = len(self.tools)
                out.append(
                    self._chunk(
                        delta={
                            "tool_calls": [
                                {
                                    "index": index,
                                    "id": block.get("id"),
                                    "type": "function",
                                    "function": {"name": block.get("name"), "arguments": ""},
                                }
                            ]
                        }
                    )
                )
            elif block.get("type") == "text" and block.get("text"):
                out.append(self._chunk(delta={"content": block["text"]}))
            else:  # thinking / redacted_thinking; other block types have no OpenAI field
                out.extend(self._chunk(delta=d) for d in block_start_deltas(block))
        elif kind == "content_block_delta":
            self._start(out)
            delta = data.get("delta") or {}
            if delta.get("type") == "text_delta" and delta.get("text"):
                out.append(self._chunk(delta={"content": delta["text"]}))
            elif delta.get("type") == "input_json_delta" and delta.get("partial_json"):
                # Server tools (web search, run by Anthropic) stream their input too; only
                # client tool_use blocks are the caller's tool calls.
                call = self.tools.get(data.get("index"))
                if call is not None:
                    out.append(
                        self._chunk(
                            delta={
                                "tool_calls": [
                                    {"index": call, "function": {"arguments": delta["partial_json"]}}
                                ]
                            }
                        )
                    )
            elif (thinking := block_delta(delta)) is not None:  # thinking_delta, signature_delta
                out.append(self._chunk(delta=thinking))
            # citations_delta: OpenAI's chat schema has no place for it, so it is dropped.
        elif kind == "message_delta":
            self._start(out)
            self._usage(data.get("usage"))
            reason = (data.get("delta") or {}).get("stop_reason")
            if reason:
                self.stop_reason = reason
                self._finish(out)
        elif kind == "message_stop":
            self._start(out)
            self._finish(out)
            self.stopped = True
            out.append(self._chunk(no_choices=True, usage=usage_of(self.usage)))
        elif kind == "error":
            err = data.get("error") or {}
            out.append(_openai_error(err.get("type"), err.get("message"), 500))
        # ping, content_block_stop and event types added later need no output.
        return out

    def on_end(self) -> list[dict[str, Any]]:
        """The stream closed without `message_stop`. If `message_delta` came, the answer is
        complete and only the usage chunk is owed. Otherwise the answer was cut short, and
        the client gets an error rather than a finish_reason that would pass it off as
        whole."""
        if self.stopped:
            return []
        if self.finished:
            self.stopped = True
            return [self._chunk(no_choices=True, usage=usage_of(self.usage))]
        return [
            error_dict(
                502,
                "the provider's stream ended before the message was complete",
                code="upstream_stream_truncated",
            )
        ]


def _openai_error(kind: Any, message: Any, status: int) -> dict[str, Any]:
    """An Anthropic error object as an OpenAI one. `status` picks the type when the
    Anthropic type is one the table does not know."""
    kind = kind if isinstance(kind, str) else None
    type_, code = ERROR_TYPES.get(kind or "", (None, kind))
    if not isinstance(message, str) or not message:
        message = f"anthropic returned {kind or 'an error'}"
    return error_dict(status, message, code=code, type_=type_)


class Anthropic(Provider[AnthropicSettings]):
    name = "anthropic"
    settings_model = AnthropicSettings
    auth_header = "x-api-key"
    auth_prefix = ""
    default_authority = "api.anthropic.com"

    def request_path(self, model: str, stream: bool) -> str:
        return "/v1/messages"

    def extra_headers(self) -> dict[str, str]:
        settings = self.settings
        headers = {"anthropic-version": settings.anthropic_version}
        if settings.interleaved_thinking:
            # Static per backend (backends.py computes headers once), so it goes with every
            # request; Anthropic ignores it when thinking is off.
            headers["anthropic-beta"] = INTERLEAVED_THINKING_BETA
        return headers

    def translate_request(self, req: dict[str, Any], model: str) -> dict[str, Any]:
        # Builds a new dict throughout; `req` is only read (retries reuse it).
        if (req.get("n") or 1) > 1:
            raise UnsupportedRequest("'n' greater than 1 is not supported: Anthropic returns one choice")
        for legacy in ("functions", "function_call"):
            if req.get(legacy) is not None:
                raise UnsupportedRequest(f"'{legacy}' is not supported: use 'tools'")
        settings = self.settings
        thinking = resolve_thinking(req, settings.default_reasoning_effort, settings.thinking_budgets)
        system, messages = request_messages(req["messages"])
        answer_tokens = max_tokens_of(req) or settings.default_max_tokens
        body: dict[str, Any] = {"model": model, "messages": messages, "max_tokens": answer_tokens}
        if thinking is not None:
            check_thinking_conflicts(req, thinking, messages)
            body["thinking"] = {"type": "enabled", "budget_tokens": thinking.budget}
            body["max_tokens"] = thinking_max_tokens(thinking, answer_tokens, settings.max_output_tokens)
        if system:
            # One plain string in the common case; blocks keep several parts apart (and
            # any cache_control on them).
            simple = len(system) == 1 and "cache_control" not in system[0]
            body["system"] = system[0]["text"] if simple else system
        body.update(sampling(req, thinking, MAX_TEMPERATURE))
        stops = stop_list(req)
        if stops:
            body["stop_sequences"] = stops
        if req.get("stream") is True:
            body["stream"] = True
        user = req.get("safety_identifier") or req.get("user")
        if isinstance(user, str) and user:
            body["metadata"] = {"user_id": user}
        if req.get("tools"):
            body["tools"] = tools(req["tools"])
            choice = tool_choice(req)
            if choice is not None:
                body["tool_choice"] = choice
        return body

    def translate_response(self, body: dict[str, Any], model: str) -> dict[str, Any]:
        if body.get("type") != "message" or not isinstance(body.get("content"), list):
            raise ProviderError("not an Anthropic message")
        texts, calls = [], []
        for block in body["content"]:
            if block.get("type") == "text":
                texts.append(block.get("text") or "")
            elif block.get("type") == "tool_use":
                calls.append(
                    {
                        "id": block["id"],
                        "type": "function",
                        "function": {
                            "name": block["name"],
                            "arguments": orjson.dumps(block.get("input") or {}).decode(),
                        },
                    }
                )
            # thinking blocks: below; server-tool blocks have no OpenAI field.
        message: dict[str, Any] = {
            "role": "assistant",
            "refusal": None,
            "content": "".join(texts) if texts else None,
            **response_thinking(body["content"]),
        }
        if calls:
            message["tool_calls"] = calls
        return {
            "id": body.get("id") or new_completion_id(),
            "object": "chat.completion",
            "created": now(),
            "model": body.get("model") or model,
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "logprobs": None,
                    "finish_reason": finish_reason(body.get("stop_reason")),
                }
            ],
            "usage": usage_of(body.get("usage") or {}),
        }

    def stream_translator(self, model: str) -> StreamTranslator:
        return AnthropicStream(model)

    def translate_error(self, status: int, body: bytes) -> tuple[int, dict[str, Any]]:
        doc = parse_error_body(body)
        err = doc.get("error") if isinstance(doc, dict) else None
        client_status = STATUS_MAP.get(status, status)
        if not (isinstance(doc, dict) and doc.get("type") == "error" and isinstance(err, dict)):
            return client_status, openai_style_error(client_status, body, self.name)
        return client_status, _openai_error(err.get("type"), err.get("message"), client_status)


PROVIDER = Anthropic
