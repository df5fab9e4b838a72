"""Anthropic message (JSON or stream) and Anthropic errors -> canonical, for the translator
in anthropic.py.

Response: content blocks fold back into one OpenAI message, thinking into
`reasoning_content` / `thinking_blocks` (_anthropic_reasoning.py). Stream: Anthropic's
typed events become `chat.completion.chunk`s. Errors: Anthropic's error types map to
OpenAI's type and code.
"""

from __future__ import annotations

from typing import Any

import orjson

from ..sse import SSEEvent
from ._anthropic_reasoning import block_delta, block_start_deltas, response_thinking
from .base import (
    ProviderError,
    StreamTranslator,
    error_dict,
    make_chunk,
    make_usage,
    new_completion_id,
    now,
)

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


# ---- response --------------------------------------------------------------------------


def translate_response(body: dict[str, Any], model: str) -> dict[str, Any]:
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
            out.append(openai_error(err.get("type"), err.get("message"), 500))
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


def openai_error(kind: Any, message: Any, status: int) -> dict[str, Any]:
    """An Anthropic error object as an OpenAI one. `status` picks the type when the
    Anthropic type is one the table does not know."""
    kind = kind if isinstance(kind, str) else None
    type_, code = ERROR_TYPES.get(kind or "", (None, kind))
    if not isinstance(message, str) or not message:
        message = f"anthropic returned {kind or 'an error'}"
    return error_dict(status, message, code=code, type_=type_)
