"""Mistral chat completions (`POST /v1/chat/completions`), as Mistral's API reference and
its published SDK models (generated from the OpenAPI spec) describe them.

Written from Mistral's documentation, not from the gateway's translator, so tests against
it check what the real API enforces:

- unknown fields, at the top level or on a message, are rejected (`extra_forbidden`): the
  real API answers 422, this mock 400 (the mock server has one status for bad requests);
- tool call ids must be exactly 9 characters a-z, A-Z, 0-9, with Mistral's wording;
- the last message must be user or tool, or assistant with `prefix: true`, and a user
  message may not directly follow a tool message;
- `tool_choice` is auto, none, any, required or a named function;
- answers: tool calls without `type`, ids of 9 alphanumerics, and a stream whose chunks
  carry whole tool calls and whose last chunk with choices carries `usage`.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Mapping
from typing import Any

from ..engine import MockRequest, MockTool, Plan, split_text
from .base import BadRequest, Dialect

_TOP_LEVEL = {
    "model",
    "messages",
    "temperature",
    "top_p",
    "max_tokens",
    "stream",
    "stop",
    "random_seed",
    "metadata",
    "response_format",
    "tools",
    "tool_choice",
    "presence_penalty",
    "frequency_penalty",
    "n",
    "prediction",
    "parallel_tool_calls",
    "prompt_mode",
    "safe_prompt",
}
_MESSAGE_FIELDS = {
    "system": {"role", "content"},
    "user": {"role", "content"},
    "assistant": {"role", "content", "tool_calls", "prefix"},
    "tool": {"role", "content", "tool_call_id", "name"},
}
_CHUNK_TYPES = {"text", "image_url", "document_url", "input_audio", "file", "reference", "thinking"}
_TOOL_CHOICES = {"auto", "none", "any", "required"}
_TOOL_ID = re.compile(r"^[a-zA-Z0-9]{9}$")
_ID = "0a1b2c3d4e5f60718293a4b5c6d7e8f9"


class Unprocessable(BadRequest):
    """A schema violation: the real API answers 422 for these."""

    status = 422


def _extra(where: list[Any], field: str) -> Unprocessable:
    loc = ".".join(str(x) for x in ["body", *where, field])
    return Unprocessable(f"{loc}: Extra inputs are not permitted (extra_forbidden)")


def _text(content: Any) -> str:
    if content is None or isinstance(content, str):
        return content or ""
    if not isinstance(content, list):
        raise Unprocessable("content: Input should be a valid string or list of chunks")
    for chunk in content:
        if not isinstance(chunk, dict) or chunk.get("type") not in _CHUNK_TYPES:
            raise Unprocessable("content: Input tag does not match any of the expected tags")
    return "\n".join(c.get("text", "") for c in content if c.get("type") == "text")


def _check_tool_id(call_id: Any) -> None:
    if not isinstance(call_id, str) or not _TOOL_ID.match(call_id):
        raise BadRequest(f"Tool call id was {call_id} but must be a-z, A-Z, 0-9, with a length of 9.")


def mistral_call_id(engine_id: str) -> str:
    """Mistral generates 9 alphanumerics; the engine's ids are OpenAI-style."""
    return hashlib.sha1(engine_id.encode()).hexdigest()[:9]


class MistralDialect(Dialect):
    name = "mistral"
    serves = ("mistral",)
    # After the OpenAI dialect: the path is the same as OpenAI's, and match() sees only the
    # path, so a mock speaking every API must keep serving OpenAI there. A mock standing in
    # for Mistral alone (how the harness and `aigw up` start them) uses this dialect.
    priority = 110

    def match(self, method: str, path: str) -> dict[str, str] | None:
        return {} if method == "POST" and path == "/v1/chat/completions" else None

    def credential(self, headers: Mapping[str, str], query: Mapping[str, str]) -> str | None:
        return self.bearer(headers)

    def parse(self, body: dict[str, Any], params: dict[str, str], query: Mapping[str, str]) -> MockRequest:
        for field in body:
            if field not in _TOP_LEVEL:
                raise _extra([], field)
        if not isinstance(body.get("model"), str) or not body["model"]:
            raise Unprocessable("body.model: Field required")
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise Unprocessable("body.messages: Field required")
        turns: list[tuple[str, str]] = []
        previous = None
        for i, m in enumerate(messages):
            role = m.get("role") if isinstance(m, dict) else None
            if role not in _MESSAGE_FIELDS:
                raise Unprocessable(
                    f"body.messages.{i}: Input tag '{role}' found using 'role' "
                    "does not match any of the expected tags"
                )
            for field in m:
                if field not in _MESSAGE_FIELDS[role]:
                    raise _extra(["messages", i, role], field)
            for call in m.get("tool_calls") or ():
                _check_tool_id(call.get("id"))
            if role == "tool":
                _check_tool_id(m.get("tool_call_id"))
            if role == "user" and previous == "tool":
                raise BadRequest("Unexpected role 'user' after role 'tool'")
            turns.append((role, _text(m.get("content"))))
            previous = role
        last = messages[-1]
        if last["role"] not in ("user", "tool") and not (
            last["role"] == "assistant" and last.get("prefix") is True
        ):
            raise BadRequest(
                "Expected last role User or Tool (or Assistant with prefix True) "
                f"for serving but got {last['role']}"
            )
        tools = []
        for t in body.get("tools") or ():
            fn = t.get("function") or {}
            if not fn.get("name"):
                raise Unprocessable("body.tools.function.name: Field required")
            tools.append(MockTool(fn["name"], fn.get("parameters") or {}))
        choice = body.get("tool_choice")
        if isinstance(choice, dict):
            choice = (choice.get("function") or {}).get("name")
        elif choice is not None and choice not in _TOOL_CHOICES:
            raise Unprocessable("body.tool_choice: Input should be 'auto', 'none', 'any' or 'required'")
        return MockRequest(
            model=body["model"],
            stream=body.get("stream") is True,
            turns=turns,
            tools=tools,
            tool_choice=choice,
            max_tokens=body.get("max_tokens"),
            include_usage=True,
        )

    @staticmethod
    def _usage(plan: Plan) -> dict[str, int]:
        return {
            "prompt_tokens": plan.prompt_tokens,
            "total_tokens": plan.prompt_tokens + plan.completion_tokens,
            "completion_tokens": plan.completion_tokens,
        }

    @staticmethod
    def _calls(plan: Plan) -> list[dict[str, Any]] | None:
        if not plan.tool_calls:
            return None
        return [
            {"id": mistral_call_id(c.id), "function": {"name": c.name, "arguments": c.arguments}}
            for c in plan.tool_calls
        ]

    def render_json(self, plan: Plan, req: MockRequest) -> dict[str, Any]:
        return {
            "id": _ID,
            "object": "chat.completion",
            "created": int(time.time()),
            "model": req.model,
            "usage": self._usage(plan),
            "choices": [
                {
                    "index": 0,
                    "finish_reason": plan.finish_reason,
                    "message": {"role": "assistant", "tool_calls": self._calls(plan), "content": plan.text},
                }
            ],
        }

    def render_stream(self, plan: Plan, req: MockRequest) -> list[bytes]:
        created = int(time.time())

        def chunk(delta: dict[str, Any], finish: str | None = None, usage: bool = False) -> bytes:
            doc: dict[str, Any] = {
                "id": _ID,
                "object": "chat.completion.chunk",
                "created": created,
                "model": req.model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            }
            if usage:
                doc["usage"] = self._usage(plan)
            return self.sse(doc)

        events = [chunk({"role": "assistant", "content": ""})]
        for piece in split_text(plan.text):
            events.append(chunk({"content": piece}))
        if plan.tool_calls:
            # Mistral sends the calls whole, in the chunk that finishes the choice.
            events.append(
                chunk({"content": None, "tool_calls": self._calls(plan)}, plan.finish_reason, usage=True)
            )
        else:
            events.append(chunk({"content": ""}, plan.finish_reason, usage=True))
        events.append(b"data: [DONE]\n\n")
        return events

    def render_error(self, status: int, message: str) -> dict[str, Any]:
        if status == 401:
            return {"message": "Unauthorized", "request_id": "mock"}
        kind = {
            400: "invalid_request_error",
            404: "invalid_request_error",
            422: "invalid_request_error",
            429: "rate_limited",
        }.get(status, "internal_error")
        return {"object": "error", "message": message, "type": kind, "param": None, "code": None}


DIALECT = MistralDialect
