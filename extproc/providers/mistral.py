"""Mistral (La Plateforme): an OpenAI-like API that is strict where OpenAI is lenient.

Differences handled here (sources in docs/providers/mistral.md):
- unknown fields anywhere in the body are a 422 (`extra_forbidden`), including OpenAI's
  `user`, `logit_bias`, `stream_options`, a `name` on user messages, or `refusal` /
  `reasoning_content` echoed back on assistant messages;
- `random_seed` instead of `seed`, `max_tokens` only, `tool_choice: "any"`;
- tool call ids must be exactly 9 characters a-z, A-Z, 0-9 (a 400 otherwise), so
  OpenAI's `call_...` ids in the history are rewritten, the same way everywhere;
- the last message must be user or tool, or an assistant message with `prefix: true`;
- answers: `model_length` / `error` finish reasons, content as a list of text and
  `thinking` chunks on reasoning models, tool calls without `type` or `index`, and in
  streams whole tool calls and usage on the last chunk that has choices.

The request's translation is in _mistral_request.py.
"""

from __future__ import annotations

import uuid
from typing import Any, Literal

import orjson

from ..sse import SSEEvent
from ._mistral_request import translate_request
from .base import (
    BackendSettings,
    Provider,
    ProviderError,
    StreamTranslator,
    error_dict,
    make_chunk,
    make_usage,
    now,
    parse_error_body,
    unrecognised_error,
)

_FINISH = {"stop": "stop", "length": "length", "model_length": "length", "tool_calls": "tool_calls"}
# Mistral error types too generic to be worth passing on as the OpenAI `code`.
_GENERIC_TYPES = {"invalid_request_error", "internal_error_proxy", "error"}


class MistralSettings(BackendSettings):
    provider: Literal["mistral"]


# ---- response -------------------------------------------------------------------------


def split_content(content: Any) -> tuple[str | None, str | None]:
    """Mistral content (a string, or text / thinking / reference chunks) -> (text, reasoning)."""
    if content is None or isinstance(content, str):
        return content, None
    text = [c.get("text") or "" for c in content if c.get("type") == "text"]
    thinking = [
        t.get("text") or ""
        for c in content
        if c.get("type") == "thinking"
        for t in c.get("thinking") or ()
        if t.get("type") == "text"
    ]
    return ("".join(text) if text else None), ("".join(thinking) if thinking else None)


def _arguments(fn: dict[str, Any]) -> str:
    args = fn.get("arguments")
    return "" if args is None else args if isinstance(args, str) else orjson.dumps(args).decode()


def _call_id(call: dict[str, Any]) -> str:
    cid = call.get("id")  # Mistral's schema defaults a missing id to the string "null"
    return cid if isinstance(cid, str) and cid and cid != "null" else uuid.uuid4().hex[:9]


def usage_of(u: Any) -> dict[str, Any]:
    u = u if isinstance(u, dict) else {}
    cached = (u.get("prompt_tokens_details") or {}).get("cached_tokens")
    return make_usage(
        int(u.get("prompt_tokens") or 0),
        int(u.get("completion_tokens") or 0),
        cached=cached if isinstance(cached, int) else None,
    )


def _completion_id(pid: Any) -> str:
    if isinstance(pid, str) and pid.startswith("chatcmpl-"):
        return pid
    return f"chatcmpl-{pid or uuid.uuid4().hex}"


class MistralStream(StreamTranslator):
    """Mistral chunks -> canonical chunks. Usage rides on Mistral's last chunk with choices;
    it is re-sent as OpenAI's usage-only final chunk once the choices are done."""

    def __init__(self, model: str) -> None:
        self.model = model
        self.id: str | None = None
        self.created: int | None = None
        self.usage: dict[str, Any] | None = None
        self.finished: set[int] = set()
        # per choice: call id -> OpenAI index, and Mistral's own index -> OpenAI index
        self.calls: dict[int, tuple[dict[str, int], dict[int, int]]] = {}

    def on_event(self, event: SSEEvent) -> list[dict[str, Any]]:
        if not event.has_data:
            return []
        if event.data == "[DONE]":
            return self._usage_chunk()
        doc = orjson.loads(event.data)
        if not isinstance(doc, dict):
            raise ProviderError("a stream event is not a JSON object")
        if "choices" not in doc:  # an error reported in the stream
            message, code, _ = error_parts(doc)
            if message is None:
                raise ProviderError("a stream event has no 'choices'")
            return [error_dict(500, message, code=code)]
        self.id = self.id or _completion_id(doc.get("id"))
        self.created = self.created or doc.get("created") or now()
        self.model = doc.get("model") or self.model
        out = []
        for choice in doc["choices"]:
            index, reason = choice.get("index", 0), choice.get("finish_reason")
            delta = self._delta(index, choice.get("delta") or {})
            if reason == "error":  # never pass a failed generation off as a finished one
                if delta:
                    out.append(make_chunk(self.id, self.model, self.created, delta=delta, index=index))
                return [
                    *out,
                    error_dict(
                        502,
                        "mistral stopped generating because of an internal error",
                        code="upstream_generation_error",
                    ),
                ]
            if reason is not None:
                reason = _FINISH.get(reason, reason)
                self.finished.add(index)
            out.append(
                make_chunk(self.id, self.model, self.created, delta=delta, finish_reason=reason, index=index)
            )
        if isinstance(doc.get("usage"), dict):
            self.usage = usage_of(doc["usage"])
        return out

    def on_end(self) -> list[dict[str, Any]]:
        if not self.finished:
            return [
                error_dict(
                    502,
                    "mistral's stream ended before the answer was complete",
                    code="upstream_incomplete_stream",
                )
            ]
        return self._usage_chunk()  # if the stream had no [DONE]

    def _usage_chunk(self) -> list[dict[str, Any]]:
        if self.usage is None or self.id is None:
            return []
        usage, self.usage = self.usage, None
        return [make_chunk(self.id, self.model, self.created or now(), no_choices=True, usage=usage)]

    def _delta(self, index: int, d: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {"role": d["role"]} if d.get("role") else {}
        text, reasoning = split_content(d.get("content"))
        if reasoning:
            out["reasoning_content"] = reasoning
        if text or (text is not None and out.get("role")):  # OpenAI's first delta has content ""
            out["content"] = text
        if d.get("tool_calls"):
            out["tool_calls"] = [self._call(index, c) for c in d["tool_calls"]]
        return out

    def _call(self, choice: int, call: dict[str, Any]) -> dict[str, Any]:
        """Mistral sends each call whole, without `index`; some models it hosts send
        OpenAI-style pieces with one. A new id starts a call; a piece without one continues
        the call its index names, or else the latest."""
        by_id, by_index = self.calls.setdefault(choice, ({}, {}))
        fn, cid, pindex = call.get("function") or {}, call.get("id"), call.get("index")
        if not by_id or (isinstance(cid, str) and cid not in ("", "null") and cid not in by_id):
            cid = _call_id(call)
            i = by_id[cid] = len(by_id)
            if isinstance(pindex, int):
                by_index[pindex] = i
            return {
                "index": i,
                "id": cid,
                "type": "function",
                "function": {"name": fn.get("name") or "", "arguments": _arguments(fn)},
            }
        i = by_id[cid] if cid in by_id else by_index.get(pindex, len(by_id) - 1)  # type: ignore[arg-type]
        name = {"name": fn["name"]} if fn.get("name") else {}
        return {"index": i, "function": {**name, "arguments": _arguments(fn)}}


# ---- errors ---------------------------------------------------------------------------


def error_parts(doc: Any) -> tuple[str | None, str | None, str | None]:
    """(message, code, param) from Mistral's error shapes: {"object": "error", "message":
    str | {"detail": [...]} | "<that as JSON>" | [...], "type", "code"}, {"detail": [...] | str},
    and {"message": str} from its API gateway."""
    if not isinstance(doc, dict):
        return None, None, None
    message, detail = doc.get("message"), doc.get("detail")
    if isinstance(message, str) and message.startswith("{"):
        try:
            message = orjson.loads(message)
        except orjson.JSONDecodeError:
            pass
    if isinstance(message, (dict, list)):
        detail = message.get("detail", detail) if isinstance(message, dict) else message
    code = doc.get("type") if doc.get("type") not in _GENERIC_TYPES else None
    if code is None and doc.get("code") is not None:
        code = str(doc["code"])
    if isinstance(detail, list) and detail and isinstance(detail[0], dict):
        locs = [".".join(str(x) for x in item.get("loc") or () if x != "body") for item in detail]
        text = "; ".join(
            f"{loc}: {item.get('msg')}" if loc else str(item.get("msg"))
            for loc, item in zip(locs, detail, strict=False)
        )
        return text, detail[0].get("type") or code, locs[0] or None
    if isinstance(detail, str):
        return detail, code, None
    if isinstance(message, str):
        return message, code, None
    err = doc.get("error")  # an OpenAI-shaped error from something in between
    if isinstance(err, dict) and isinstance(err.get("message"), str):
        return err["message"], err.get("code") if isinstance(err.get("code"), str) else None, None
    return None, None, None


class Mistral(Provider[MistralSettings]):
    name = "mistral"
    settings_model = MistralSettings
    default_authority = "api.mistral.ai"
    canonical_responses = False  # Mistral's answers are not OpenAI's (see the docstring)

    def request_path(self, model: str, stream: bool) -> str:
        return "/v1/chat/completions"

    def translate_request(self, req: dict[str, Any], model: str) -> dict[str, Any]:
        return translate_request(req, model)

    def translate_response(self, body: dict[str, Any], model: str) -> dict[str, Any]:
        if not isinstance(body.get("choices"), list):
            raise ProviderError("the response has no 'choices' array")
        choices = []
        for i, choice in enumerate(body["choices"]):
            msg = choice.get("message") or {}
            text, reasoning = split_content(msg.get("content"))
            calls = msg.get("tool_calls") or []
            reason = choice.get("finish_reason")
            if reason == "error":  # a 502, rather than a failed generation passed off as an answer
                raise ProviderError("mistral reported finish_reason 'error'")
            message: dict[str, Any] = {
                "role": "assistant",
                "content": None if calls and not text else (text or ""),
            }
            if reasoning:
                message["reasoning_content"] = reasoning  # DeepSeek's name, which clients know
            if calls:
                message["tool_calls"] = [
                    {
                        "id": _call_id(c),
                        "type": "function",
                        "function": {
                            "name": (c.get("function") or {}).get("name"),
                            "arguments": _arguments(c.get("function") or {}),
                        },
                    }
                    for c in calls
                ]
            choices.append(
                {
                    "index": choice.get("index", i),
                    "message": message,
                    "logprobs": None,
                    "finish_reason": _FINISH.get(reason, reason or "stop"),
                }
            )
        return {
            "id": _completion_id(body.get("id")),
            "object": "chat.completion",
            "created": body.get("created") or now(),
            "model": body.get("model") or model,
            "choices": choices,
            "usage": usage_of(body.get("usage")),
        }

    def stream_translator(self, model: str) -> StreamTranslator:
        return MistralStream(model)

    def translate_error(self, status: int, body: bytes) -> tuple[int, dict[str, Any]]:
        message, code, param = error_parts(parse_error_body(body))
        # 422 is Mistral's request validation; OpenAI (and its SDKs) call that a 400.
        out = 400 if status == 422 else status
        if message is None:  # an HTML page from a proxy, say: its text, trimmed
            return out, unrecognised_error(out, body, self.name)
        return out, error_dict(out, message, code=code, param=param)


PROVIDER = Mistral
