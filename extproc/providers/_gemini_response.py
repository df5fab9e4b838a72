"""Google `GenerateContentResponse` (JSON or `alt=sse` stream) and Google errors -> canonical.

Shared by the Gemini API and Vertex AI providers. Decisions worth knowing:

- Usage: `thoughtsTokenCount` is billed as output, so it is added to `completion_tokens`
  and also reported as `completion_tokens_details.reasoning_tokens` (OpenAI's meaning:
  a part of completion tokens). `toolUsePromptTokenCount` (tool results Google fed back
  to the model) is input, so it is added to `prompt_tokens`. `total_tokens` is Google's
  `totalTokenCount`, which counts both.
- A prompt blocked outright (`promptFeedback.blockReason`, no candidates) is answered
  like a blocked answer: one choice, empty content, finish_reason `content_filter`. The
  same holds when streaming, where the 200 status is already on its way to the client.
- Gemini gives function calls no ids; each gets `call_` + a hash of the response id,
  candidate, position, name and arguments, so the JSON and the streamed form of one
  response name their calls alike. Thought signatures ride along on the tool call as
  `extra_content.google.thought_signature`, as Google's own OpenAI endpoint does.
- Thought-summary parts (`thought: true`, sent when thinkingConfig.includeThoughts is
  set) become `message.reasoning_content` (joined in order; one per candidate), and in
  streams `delta.reasoning_content` chunks, in the order Google sent them. They are never
  answer text.
- A stream that ends before every candidate has a finishReason ends with an
  `upstream_stream_truncated` error instead of the usage chunk.
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson

from ..sse import SSEEvent
from .base import (
    ProviderError,
    StreamTranslator,
    error_dict,
    make_chunk,
    make_usage,
    new_completion_id,
    now,
    openai_style_error,
    parse_error_body,
)

# Finish reasons meaning "a safety or policy filter stopped this"; the rest are plain stops.
_FILTERED = frozenset(
    {
        "SAFETY",
        "RECITATION",
        "BLOCKLIST",
        "PROHIBITED_CONTENT",
        "SPII",
        "IMAGE_SAFETY",
        "IMAGE_PROHIBITED_CONTENT",
        "IMAGE_RECITATION",
    }
)


def finish_reason(reason: str | None, has_calls: bool) -> str:
    if reason == "MAX_TOKENS":
        return "length"
    if reason in _FILTERED:
        return "content_filter"
    return "tool_calls" if has_calls else "stop"


def usage_of(meta: Any) -> dict[str, Any] | None:
    if not isinstance(meta, dict):
        return None
    thoughts = meta.get("thoughtsTokenCount") or 0
    prompt = (meta.get("promptTokenCount") or 0) + (meta.get("toolUsePromptTokenCount") or 0)
    usage = make_usage(
        prompt,
        (meta.get("candidatesTokenCount") or 0) + thoughts,
        cached=meta.get("cachedContentTokenCount"),
        reasoning=thoughts or None,
    )
    if isinstance(meta.get("totalTokenCount"), int):
        usage["total_tokens"] = meta["totalTokenCount"]
    return usage


def _completion_id(doc: dict[str, Any]) -> str:
    rid = doc.get("responseId")
    return "chatcmpl-" + rid if isinstance(rid, str) and rid else new_completion_id()


def _runs(candidate: dict[str, Any]) -> list[tuple[str, Any]]:
    """One candidate's parts (or stream delta's), in order, as `("reasoning_content", text)`
    for thought summaries, `("content", text)` for answer text (adjacent parts of one kind
    joined) and `("call", part)` for each function call."""
    content = candidate.get("content")
    parts = content.get("parts") if isinstance(content, dict) else None
    runs: list[tuple[str, Any]] = []
    for part in parts or ():
        if not isinstance(part, dict):
            continue
        text = part.get("text")
        if isinstance(text, str):
            kind = "reasoning_content" if part.get("thought") is True else "content"
            if not text:
                continue
            if runs and runs[-1][0] == kind:
                runs[-1] = (kind, runs[-1][1] + text)
            else:
                runs.append((kind, text))
        elif isinstance(part.get("functionCall"), dict) and part.get("thought") is not True:
            runs.append(("call", part))
        # Other parts (executableCode, inlineData output, ...) have no canonical form.
    return runs


def _joined(runs: list[tuple[str, Any]], kind: str) -> str:
    return "".join(value for k, value in runs if k == kind)


def _tool_call(part: dict[str, Any], salt: str, index: int, ordinal: int) -> dict[str, Any]:
    fc = part["functionCall"]
    name = fc.get("name")
    if not isinstance(name, str):
        raise ProviderError("a functionCall part has no name")
    arguments = orjson.dumps(fc.get("args") or {}).decode()
    call_id = fc.get("id")
    if not isinstance(call_id, str) or not call_id:
        seed = f"{salt}\0{index}\0{ordinal}\0{name}\0{arguments}".encode()
        call_id = "call_" + hashlib.sha256(seed).hexdigest()[:24]
    call: dict[str, Any] = {
        "id": call_id,
        "type": "function",
        "function": {"name": name, "arguments": arguments},
    }
    if isinstance(part.get("thoughtSignature"), str):
        call["extra_content"] = {"google": {"thought_signature": part["thoughtSignature"]}}
    return call


def _blocked(doc: dict[str, Any]) -> bool:
    feedback = doc.get("promptFeedback")
    return isinstance(feedback, dict) and bool(feedback.get("blockReason"))


def translate_response(body: Any, model: str) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise ProviderError("the response is not a JSON object")
    salt = body.get("responseId") or ""
    choices = []
    for pos, cand in enumerate(body.get("candidates") or ()):
        index = cand.get("index", pos)
        runs = _runs(cand)
        text, thoughts = _joined(runs, "content"), _joined(runs, "reasoning_content")
        calls = [_tool_call(p, salt, index, k) for k, p in enumerate(v for kind, v in runs if kind == "call")]
        message: dict[str, Any] = {"role": "assistant"}
        if thoughts:
            message["reasoning_content"] = thoughts
        message["content"] = text if text or not calls else None
        if calls:
            message["tool_calls"] = calls
        choices.append(
            {
                "index": index,
                "message": message,
                "logprobs": None,
                "finish_reason": finish_reason(cand.get("finishReason"), bool(calls)),
            }
        )
    if not choices:
        choices.append(
            {
                "index": 0,
                "message": {"role": "assistant", "content": ""},
                "logprobs": None,
                "finish_reason": "content_filter" if _blocked(body) else "stop",
            }
        )
    doc: dict[str, Any] = {
        "id": _completion_id(body),
        "object": "chat.completion",
        "created": now(),
        "model": body.get("modelVersion") or model,
        "choices": choices,
    }
    usage = usage_of(body.get("usageMetadata"))
    if usage is not None:
        doc["usage"] = usage
    return doc


class GeminiStream(StreamTranslator):
    """`streamGenerateContent?alt=sse`: every event is a whole GenerateContentResponse
    holding the next piece of each candidate, and usage so far (cumulative, repeated)."""

    def __init__(self, model: str) -> None:
        self.model = model
        self.id: str | None = None
        self.salt = ""
        self.created = now()
        self.usage: dict[str, Any] | None = None
        # Per candidate index: [role sent, function calls so far, finished]
        self.choices: dict[int, list[Any]] = {}

    def on_event(self, event: SSEEvent) -> list[dict[str, Any]]:
        if not event.has_data or not event.data.strip():
            return []
        try:
            doc = orjson.loads(event.data)
        except orjson.JSONDecodeError as exc:
            raise ProviderError(f"a stream event is not JSON: {exc}") from None
        if not isinstance(doc, dict):
            raise ProviderError("a stream event is not a JSON object")
        if isinstance(doc.get("error"), dict):
            err = doc["error"]
            status = err.get("code") if isinstance(err.get("code"), int) else 500
            return [google_error(status, err)[1]]
        if self.id is None:
            self.id = _completion_id(doc)
            self.salt = doc.get("responseId") or ""
        if isinstance(doc.get("modelVersion"), str):
            self.model = doc["modelVersion"]
        if doc.get("usageMetadata") is not None:
            self.usage = usage_of(doc["usageMetadata"])  # the latest wins: never summed
        out: list[dict[str, Any]] = []
        candidates = doc.get("candidates") or []
        for pos, cand in enumerate(candidates):
            out.extend(self._candidate(cand.get("index", pos), cand))
        if not candidates and not self.choices and _blocked(doc):
            self.choices[0] = [True, 0, True]
            out.append(self._chunk(0, {"role": "assistant", "content": ""}))
            out.append(self._chunk(0, {}, "content_filter"))
        return out

    def _candidate(self, index: int, cand: dict[str, Any]) -> list[dict[str, Any]]:
        state = self.choices.setdefault(index, [False, 0, False])
        if state[2]:
            return []  # Google may repeat a finish reason in a later event; one is enough
        out = []
        if not state[0]:
            state[0] = True
            out.append(self._chunk(index, {"role": "assistant", "content": ""}))
        for kind, value in _runs(cand):  # in the order Google sent them: thoughts come first
            if kind != "call":
                out.append(self._chunk(index, {kind: value}))
                continue
            call = _tool_call(value, self.salt, index, state[1])
            out.append(self._chunk(index, {"tool_calls": [{"index": state[1], **call}]}))
            state[1] += 1
        if cand.get("finishReason"):
            state[2] = True
            out.append(self._chunk(index, {}, finish_reason(cand["finishReason"], state[1] > 0)))
        return out

    def _chunk(self, index: int, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return make_chunk(
            self.id or "", self.model, self.created, delta=delta, finish_reason=finish, index=index
        )

    def on_end(self) -> list[dict[str, Any]]:
        # Gemini has no end event: every candidate ends with a finishReason instead. A
        # stream closing before that was cut, and the client is told so, not left guessing.
        if not self.choices or not all(state[2] for state in self.choices.values()):
            return [
                error_dict(
                    502,
                    "the provider's stream ended before the answer was complete",
                    code="upstream_stream_truncated",
                )
            ]
        if self.usage is None:
            return []
        return [
            make_chunk(
                self.id or new_completion_id(), self.model, self.created, no_choices=True, usage=self.usage
            )
        ]


# ---- errors --------------------------------------------------------------------------

# gRPC status names that have a code OpenAI clients already know; others are lower-cased.
_CODES = {"RESOURCE_EXHAUSTED": "rate_limit_exceeded", "UNAUTHENTICATED": "invalid_api_key"}


def google_error(status: int, err: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """`{"code", "message", "status", "details"}` -> (client status, OpenAI error).

    The HTTP status is kept; the gRPC status name becomes the `code` (lower case, or the
    OpenAI code for rate limits and bad credentials). One
    exception: Google answers a bad API key with 400 INVALID_ARGUMENT and an ErrorInfo
    reason API_KEY_INVALID, which OpenAI clients only recognise as a 401.
    """
    grpc = err.get("status") if isinstance(err.get("status"), str) else None
    reasons = {d.get("reason") for d in err.get("details") or () if isinstance(d, dict)}
    raw_message = err.get("message")
    message = raw_message if isinstance(raw_message, str) else f"HTTP {status}"
    if "API_KEY_INVALID" in reasons:
        return 401, error_dict(401, message, code="invalid_api_key")
    code = _CODES.get(grpc or "", grpc.lower() if grpc else None)
    return status, error_dict(status, message, code=code)


def translate_error(status: int, body: bytes, provider: str) -> tuple[int, dict[str, Any]]:
    doc = parse_error_body(body)
    if isinstance(doc, list) and doc:  # streamGenerateContent without alt=sse: an array
        doc = doc[0]
    err = doc.get("error") if isinstance(doc, dict) else None
    if isinstance(err, dict) and isinstance(err.get("message"), str):
        return google_error(status, err)
    return status, openai_style_error(status, body, provider)
