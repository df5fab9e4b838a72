"""OpenAI chat completions, as documented in the API reference (JSON and SSE chunks).

Also serves OpenAI-compatible servers (vLLM, Ollama, ...) on any path ending in
`/chat/completions`, since they share the wire format.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, ClassVar

from ..engine import MockRequest, MockTool, Plan, split_text
from .base import BadRequest, Dialect

_ROLES = {"system", "developer", "user", "assistant", "tool", "function"}


def _text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text"
        )
    raise BadRequest("Invalid type for 'content'")


class OpenAIDialect(Dialect):
    name = "openai"
    serves: ClassVar[tuple[str, ...]] = ("openai", "openai-compatible")
    priority = 100

    def match(self, method: str, path: str) -> dict[str, str] | None:
        if method == "POST" and path.endswith("/chat/completions"):
            return {}
        return None

    def credential(self, headers: Mapping[str, str], query: Mapping[str, str]) -> str | None:
        return self.bearer(headers)

    def parse(self, body: dict[str, Any], params: dict[str, str], query: Mapping[str, str]) -> MockRequest:
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise BadRequest("you must provide a model parameter")
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise BadRequest("'messages' must be a non-empty array")
        turns = []
        for m in messages:
            if not isinstance(m, dict) or m.get("role") not in _ROLES:
                raise BadRequest("Invalid value for 'role'")
            turns.append((m["role"], _text(m.get("content"))))
        tools = []
        for t in body.get("tools") or []:
            fn = t.get("function") or {}
            if not fn.get("name"):
                raise BadRequest("Missing required parameter: 'tools[].function.name'")
            tools.append(MockTool(fn["name"], fn.get("parameters") or {}))
        choice = body.get("tool_choice")
        if isinstance(choice, dict):
            choice = (choice.get("function") or {}).get("name")
        opts = body.get("stream_options") or {}
        return MockRequest(
            model=model,
            stream=body.get("stream") is True,
            turns=turns,
            tools=tools,
            tool_choice=choice,
            max_tokens=body.get("max_completion_tokens") or body.get("max_tokens"),
            include_usage=bool(opts.get("include_usage")),
        )

    def _usage(self, plan: Plan) -> dict[str, int]:
        return {
            "prompt_tokens": plan.prompt_tokens,
            "completion_tokens": plan.completion_tokens,
            "total_tokens": plan.prompt_tokens + plan.completion_tokens,
        }

    def render_json(self, plan: Plan, req: MockRequest) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": plan.text or None, "refusal": None}
        if plan.tool_calls:
            message["tool_calls"] = [
                {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
                for c in plan.tool_calls
            ]
        return {
            "id": "chatcmpl-mock0001",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": req.model,
            "system_fingerprint": "fp_mock",
            "choices": [
                {"index": 0, "message": message, "logprobs": None, "finish_reason": plan.finish_reason}
            ],
            "usage": self._usage(plan),
        }

    def render_stream(self, plan: Plan, req: MockRequest) -> list[bytes]:
        created = int(time.time())

        def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
            return self.sse(
                {
                    "id": "chatcmpl-mock0001",
                    "object": "chat.completion.chunk",
                    "created": created,
                    "model": req.model,
                    "system_fingerprint": "fp_mock",
                    "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
                }
            )

        events = [chunk({"role": "assistant", "content": "", "refusal": None})]
        for piece in split_text(plan.text):
            events.append(chunk({"content": piece}))
        for i, call in enumerate(plan.tool_calls):
            events.append(
                chunk(
                    {
                        "tool_calls": [
                            {
                                "index": i,
                                "id": call.id,
                                "type": "function",
                                "function": {"name": call.name, "arguments": ""},
                            }
                        ]
                    }
                )
            )
            args = call.arguments
            for start in range(0, len(args), 8):
                events.append(
                    chunk({"tool_calls": [{"index": i, "function": {"arguments": args[start : start + 8]}}]})
                )
        events.append(chunk({}, plan.finish_reason))
        if req.include_usage:
            events.append(
                self.sse(
                    {
                        "id": "chatcmpl-mock0001",
                        "object": "chat.completion.chunk",
                        "created": created,
                        "model": req.model,
                        "system_fingerprint": "fp_mock",
                        "choices": [],
                        "usage": self._usage(plan),
                    }
                )
            )
        events.append(b"data: [DONE]\n\n")
        return events

    def render_error(self, status: int, message: str) -> dict[str, Any]:
        kind = {
            400: "invalid_request_error",
            401: "invalid_request_error",
            404: "invalid_request_error",
            429: "rate_limit_exceeded",
        }.get(status, "server_error")
        code = {401: "invalid_api_key", 429: "rate_limit_exceeded"}.get(status)
        return {"error": {"message": message, "type": kind, "param": None, "code": code}}


DIALECT = OpenAIDialect
