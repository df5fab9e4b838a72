"""Anthropic Messages API (`POST /v1/messages`).

Request: system/developer messages move to the top-level `system`; tool calls and tool
results become `tool_use` / `tool_result` blocks; consecutive same-role turns are merged
so turns alternate. Response: content blocks fold back into one OpenAI message. Stream:
Anthropic's typed events become `chat.completion.chunk`s. See docs/providers/anthropic.md.
"""

from __future__ import annotations

from typing import Any, Literal

import orjson

from ..sse import SSEEvent
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
    parse_data_url,
    stop_list,
    text_of,
)


class AnthropicSettings(BackendSettings):
    provider: Literal["anthropic"]
    # Sent as the `anthropic-version` header on every request.
    anthropic_version: str = "2023-06-01"
    # Anthropic requires `max_tokens`; used when the client sends neither
    # `max_tokens` nor `max_completion_tokens`.
    default_max_tokens: int = 4096


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
    "reasoning_effort",
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


# ---- request ---------------------------------------------------------------------------


def _image_block(url: str) -> dict[str, Any]:
    data = parse_data_url(url)
    if data is not None:
        media_type, b64 = data
        return {"type": "image", "source": {"type": "base64", "media_type": media_type, "data": b64}}
    if url.startswith(("https://", "http://")):
        return {"type": "image", "source": {"type": "url", "url": url}}
    raise UnsupportedRequest("image_url must be an http(s) URL or a base64 data: URL")


def _blocks(content: Any) -> list[dict[str, Any]]:
    """Canonical content -> Anthropic blocks. Empty text is skipped: Anthropic rejects
    empty text blocks, and OpenAI clients do send `content: ""` next to tool calls."""
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    out = []
    for part in content:
        kind = part.get("type")
        if kind in ("text", "refusal"):  # refusal: an earlier assistant refusal, replayed
            text = part.get(kind)
            if not text:
                continue
            block: dict[str, Any] = {"type": "text", "text": text}
        elif kind == "image_url":
            image = part.get("image_url")
            url = image.get("url") if isinstance(image, dict) else image
            if not isinstance(url, str):
                raise UnsupportedRequest("image_url parts need a 'url'")
            block = _image_block(url)
        else:
            raise UnsupportedRequest(f"content parts of type '{kind}' are not supported")
        if "cache_control" in part:  # prompt-caching breakpoints, as several SDKs send them
            block["cache_control"] = part["cache_control"]
        out.append(block)
    return out


def _tool_use(call: dict[str, Any]) -> dict[str, Any]:
    fn = call["function"]
    raw = fn.get("arguments") or "{}"
    try:
        args = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise UnsupportedRequest(
            f"tool call '{call.get('id')}' has arguments that are not valid JSON"
        ) from None
    if not isinstance(args, dict):
        raise UnsupportedRequest(f"tool call '{call.get('id')}' arguments must be a JSON object")
    return {"type": "tool_use", "id": call.get("id"), "name": fn["name"], "input": args}


def _messages(messages: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    system: list[dict[str, Any]] = []
    turns: list[dict[str, Any]] = []
    for m in messages:
        role = m["role"]
        if role in ("system", "developer"):
            system.extend(b for b in _blocks(m.get("content")) if b["type"] == "text")
            continue
        if role == "user":
            blocks = _blocks(m.get("content"))
        elif role == "assistant":
            blocks = _blocks(m.get("content")) + [_tool_use(c) for c in m.get("tool_calls") or ()]
        elif role == "tool":
            role = "user"  # tool results travel in the user turn that follows the call
            block: dict[str, Any] = {"type": "tool_result", "tool_use_id": m["tool_call_id"]}
            text = text_of(m.get("content"))
            if text:
                block["content"] = text
            blocks = [block]
        else:
            raise UnsupportedRequest(f"messages with role '{role}' are not supported: use tools")
        if not blocks:
            continue  # Anthropic rejects empty turns; an empty OpenAI turn says nothing
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)  # Anthropic wants alternating turns
        else:
            turns.append({"role": role, "content": blocks})
    return system, turns


def _tool_choice(req: dict[str, Any]) -> dict[str, Any] | None:
    choice = req.get("tool_choice")
    if choice is None or choice == "auto":
        out = {"type": "auto"}
    elif choice == "required":
        out = {"type": "any"}
    elif choice == "none":
        return {"type": "none"}  # takes no disable_parallel_tool_use
    elif isinstance(choice, dict) and choice.get("type") == "function":
        name = (choice.get("function") or {}).get("name")
        if not isinstance(name, str):
            raise UnsupportedRequest("tool_choice.function.name is required")
        out = {"type": "tool", "name": name}
    else:
        raise UnsupportedRequest(f"tool_choice {orjson.dumps(choice).decode()} is not supported")
    if req.get("parallel_tool_calls") is False:
        out["disable_parallel_tool_use"] = True
    elif choice is None:
        return None  # Anthropic's default is auto already
    return out


def _tools(tools: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for tool in tools:
        if tool.get("type", "function") != "function":
            raise UnsupportedRequest(f"tools of type '{tool.get('type')}' are not supported")
        fn = tool["function"]
        t: dict[str, Any] = {"name": fn["name"]}
        if fn.get("description"):
            t["description"] = fn["description"]
        t["input_schema"] = fn.get("parameters") or {"type": "object", "properties": {}}
        out.append(t)
    return out


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
        elif kind == "content_block_delta":
            self._start(out)
            delta = data.get("delta") or {}
            if delta.get("type") == "text_delta" and delta.get("text"):
                out.append(self._chunk(delta={"content": delta["text"]}))
            elif delta.get("type") == "input_json_delta" and delta.get("partial_json"):
                # Server tools (web search, run by Anthropic) stream their input too; only
                # client tool_use blocks are the caller's tool calls.
                index = self.tools.get(data.get("index"))
                if index is not None:
                    out.append(
                        self._chunk(
                            delta={
                                "tool_calls": [
                                    {"index": index, "function": {"arguments": delta["partial_json"]}}
                                ]
                            }
                        )
                    )
            # thinking_delta / signature_delta / citations_delta: OpenAI's chat schema has
            # no place for them, so they are dropped on purpose.
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


class Anthropic(Provider):
    name = "anthropic"
    settings_model = AnthropicSettings
    auth_header = "x-api-key"
    auth_prefix = ""
    default_authority = "api.anthropic.com"

    def request_path(self, model: str, stream: bool) -> str:
        return "/v1/messages"

    def extra_headers(self) -> dict[str, str]:
        return {"anthropic-version": self.settings.anthropic_version}  # type: ignore[attr-defined]

    def translate_request(self, req: dict[str, Any], model: str) -> dict[str, Any]:
        # Builds a new dict throughout; `req` is only read (retries reuse it).
        if (req.get("n") or 1) > 1:
            raise UnsupportedRequest("'n' greater than 1 is not supported: Anthropic returns one choice")
        for legacy in ("functions", "function_call"):
            if req.get(legacy) is not None:
                raise UnsupportedRequest(f"'{legacy}' is not supported: use 'tools'")
        system, messages = _messages(req["messages"])
        settings: AnthropicSettings = self.settings  # type: ignore[assignment]
        body: dict[str, Any] = {
            "model": model,
            "messages": messages,
            "max_tokens": max_tokens_of(req) or settings.default_max_tokens,
        }
        if system:
            # One plain string in the common case; blocks keep several parts apart (and
            # any cache_control on them).
            simple = len(system) == 1 and "cache_control" not in system[0]
            body["system"] = system[0]["text"] if simple else system
        temperature = req.get("temperature")
        if temperature is not None:
            body["temperature"] = temperature if temperature <= MAX_TEMPERATURE else MAX_TEMPERATURE
        if req.get("top_p") is not None:
            body["top_p"] = req["top_p"]
        stops = stop_list(req)
        if stops:
            body["stop_sequences"] = stops
        if req.get("stream") is True:
            body["stream"] = True
        user = req.get("safety_identifier") or req.get("user")
        if isinstance(user, str) and user:
            body["metadata"] = {"user_id": user}
        if req.get("tools"):
            body["tools"] = _tools(req["tools"])
            choice = _tool_choice(req)
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
            # thinking, redacted_thinking and server-tool blocks have no OpenAI field.
        message: dict[str, Any] = {
            "role": "assistant",
            "refusal": None,
            "content": "".join(texts) if texts else None,
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
        try:
            doc = orjson.loads(body) if body else None
        except orjson.JSONDecodeError:
            doc = None
        err = doc.get("error") if isinstance(doc, dict) else None
        client_status = STATUS_MAP.get(status, status)
        if not (isinstance(doc, dict) and doc.get("type") == "error" and isinstance(err, dict)):
            return client_status, openai_style_error(client_status, body, self.name)
        return client_status, _openai_error(err.get("type"), err.get("message"), client_status)


PROVIDER = Anthropic
