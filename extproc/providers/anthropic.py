"""Anthropic Messages API (`POST /v1/messages`).

Request: system/developer messages move to the top-level `system`; tool calls and tool
results become `tool_use` / `tool_result` blocks; consecutive same-role turns are merged
so turns alternate (_anthropic_request.py); `reasoning_effort` turns on extended thinking
(_anthropic_reasoning.py). Response: content blocks fold back into one OpenAI message,
thinking into `reasoning_content` / `thinking_blocks`. Stream: Anthropic's typed events
become `chat.completion.chunk`s (both in _anthropic_response.py). See
docs/providers/anthropic.md.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from ._anthropic_reasoning import (
    INTERLEAVED_THINKING_BETA,
    MIN_BUDGET,
    ThinkingBudgets,
    check_thinking_conflicts,
    resolve_thinking,
    sampling,
    thinking_max_tokens,
)
from ._anthropic_request import request_messages, tool_choice, tools
from ._anthropic_response import STATUS_MAP, AnthropicStream, openai_error, translate_response
from .base import (
    BackendSettings,
    Provider,
    StreamTranslator,
    UnsupportedRequest,
    max_tokens_of,
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
        return translate_response(body, model)

    def stream_translator(self, model: str) -> StreamTranslator:
        return AnthropicStream(model)

    def translate_error(self, status: int, body: bytes) -> tuple[int, dict[str, Any]]:
        doc = parse_error_body(body)
        err = doc.get("error") if isinstance(doc, dict) else None
        client_status = STATUS_MAP.get(status, status)
        if not (isinstance(doc, dict) and doc.get("type") == "error" and isinstance(err, dict)):
            return client_status, openai_style_error(client_status, body, self.name)
        return client_status, openai_error(err.get("type"), err.get("message"), client_status)


PROVIDER = Anthropic
