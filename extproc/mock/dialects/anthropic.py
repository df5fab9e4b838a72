"""Anthropic Messages API (`POST /v1/messages`), as its public API reference describes it.

Written from Anthropic's reference, not from the gateway's translator, so that tests
against it check the real wire shapes: the request rules the API enforces (with its error
wording), the `message` JSON, the typed SSE events in their real order, and the
`{"type": "error", "error": {...}}` error body.

Extended thinking (signed thinking blocks, the rules the API enforces with it) is in
_anthropic_thinking.py.

Deliberately stricter than the live API in one place: the live API combines consecutive
same-role turns, this mock rejects them (as the API did before), so a test proves the
gateway sends alternating turns. Not checked: the `anthropic-version` and
`anthropic-beta` headers, since `parse()` does not see headers.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from ..engine import MockRequest, MockTool, Plan, count_tokens, split_text
from . import _anthropic_thinking as thinking
from .base import BadRequest, Dialect

_IMAGE_TYPES = {"image/jpeg", "image/png", "image/gif", "image/webp"}
_BLOCK_TYPES = {
    "text",
    "image",
    "document",
    "tool_use",
    "tool_result",
    "thinking",
    "redacted_thinking",
    "search_result",
}
_STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use"}
_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}
_MSG_ID = "msg_01MockMessage000000000001"
# A content block of an answer: (as the JSON response has it, as content_block_start
# carries it, the stream's deltas for it).
Block = tuple[dict[str, Any], dict[str, Any], list[dict[str, Any]]]


def _texts(blocks: list[dict[str, Any]], kind: str = "text") -> str:
    return "\n".join(b.get("text", "") for b in blocks if b.get("type") == kind)


def _content(i: int, content: Any) -> list[dict[str, Any]]:
    """Message content as a list of blocks, checked the way the API checks it."""
    if isinstance(content, str):
        if not content:
            raise BadRequest("messages: text content blocks must be non-empty")
        return [{"type": "text", "text": content}]
    if not isinstance(content, list) or not content:
        raise BadRequest(
            f"messages.{i}: all messages must have non-empty content except for "
            "the optional final assistant message"
        )
    for j, b in enumerate(content):
        where = f"messages.{i}.content.{j}"
        kind = b.get("type") if isinstance(b, dict) else None
        if kind not in _BLOCK_TYPES:
            raise BadRequest(
                f"{where}.type: Input tag '{kind}' found using 'type' does not match any of the expected tags"
            )
        if kind == "text" and (not isinstance(b.get("text"), str) or not b["text"]):
            raise BadRequest("messages: text content blocks must be non-empty")
        if kind == "image":
            src = b.get("source") or {}
            if src.get("type") == "base64":
                if src.get("media_type") not in _IMAGE_TYPES or not src.get("data"):
                    raise BadRequest(
                        f"{where}.source.base64.media_type: Input should be "
                        "'image/jpeg', 'image/png', 'image/gif' or 'image/webp'"
                    )
            elif src.get("type") != "url" or not src.get("url"):
                raise BadRequest(
                    f"{where}.source: Input tag '{src.get('type')}' found using "
                    "'type' does not match any of the expected tags"
                )
        if kind == "tool_use" and not (b.get("id") and b.get("name") and isinstance(b.get("input"), dict)):
            raise BadRequest(f"{where}.tool_use: 'id', 'name' and object 'input' are required")
        if kind == "tool_result" and not isinstance(b.get("tool_use_id"), str):
            raise BadRequest(f"{where}.tool_result.tool_use_id: Field required")
    return content


def _check_tools(
    i: int, blocks: list[dict], prev: list[dict] | None, nxt: list[dict] | None, role: str
) -> None:
    """Every tool_result answers a tool_use of the previous turn, and every tool_use is
    answered in the next one."""
    if role == "user":
        asked = {b["id"] for b in prev or () if b.get("type") == "tool_use"}
        for j, b in enumerate(blocks):
            if b.get("type") == "tool_result" and b["tool_use_id"] not in asked:
                raise BadRequest(
                    f"messages.{i}.content.{j}: unexpected `tool_use_id` found in `tool_result` "
                    f"blocks: {b['tool_use_id']}. Each `tool_result` block must have a "
                    "corresponding `tool_use` block in the previous message."
                )
    elif nxt is not None:
        answered = {b.get("tool_use_id") for b in nxt if b.get("type") == "tool_result"}
        missing = [b["id"] for b in blocks if b.get("type") == "tool_use" and b["id"] not in answered]
        if missing:
            raise BadRequest(
                f"messages.{i}: `tool_use` ids were found without `tool_result` blocks "
                f"immediately after: {', '.join(missing)}. Each `tool_use` block must have a "
                "corresponding `tool_result` block in the next message."
            )


class AnthropicDialect(Dialect):
    name = "anthropic"
    serves = ("anthropic",)
    priority = 50

    def match(self, method: str, path: str) -> dict[str, str] | None:
        return {} if method == "POST" and path == "/v1/messages" else None

    def credential(self, headers: Mapping[str, str], query: Mapping[str, str]) -> str | None:
        return headers.get("x-api-key") or None

    def parse(self, body: dict[str, Any], params: dict[str, str], query: Mapping[str, str]) -> MockRequest:
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise BadRequest("model: Field required")
        max_tokens = body.get("max_tokens")
        if max_tokens is None:
            raise BadRequest("max_tokens: Field required")
        if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
            raise BadRequest("max_tokens: Input should be greater than or equal to 1")
        temperature = body.get("temperature")
        if temperature is not None and not 0 <= temperature <= 1:
            raise BadRequest("temperature: Input should be less than or equal to 1")
        thinking_on = thinking.check_request(body, max_tokens)
        messages = body.get("messages")
        if not isinstance(messages, list):
            raise BadRequest("messages: Field required")
        if not messages:
            raise BadRequest("messages: at least one message is required")

        turns: list[tuple[str, str]] = []
        system = body.get("system")
        if isinstance(system, list):
            system = _texts(system)
        if system:
            turns.append(("system", system))
        contents: list[list[dict[str, Any]]] = []
        for i, m in enumerate(messages):
            role = m.get("role") if isinstance(m, dict) else None
            if role == "system":
                raise BadRequest(
                    f'messages.{i}.role: Unexpected role "system". The Messages API '
                    'accepts a top-level `system` parameter, not "system" as an '
                    "input message role."
                )
            if role not in ("user", "assistant"):
                raise BadRequest(f"messages.{i}.role: Input should be 'user' or 'assistant'")
            if i == 0 and role != "user":
                raise BadRequest('messages: first message must use the "user" role')
            if i and messages[i - 1]["role"] == role:
                raise BadRequest(
                    'messages: roles must alternate between "user" and "assistant", '
                    f'but found multiple "{role}" roles in a row'
                )
            contents.append(_content(i, m.get("content")))
        for i, blocks in enumerate(contents):
            role = messages[i]["role"]
            _check_tools(
                i,
                blocks,
                contents[i - 1] if i else None,
                contents[i + 1] if i + 1 < len(contents) else None,
                role,
            )
            thinking.check_blocks(i, blocks, role)
            for b in blocks:
                if b["type"] == "tool_result":
                    result = b.get("content")
                    text = result if isinstance(result, str) else _texts(result or [])
                    turns.append(("tool", text))
            text = _texts(blocks)
            if text:
                turns.append((role, text))
        if thinking_on:
            thinking.check_history(messages, contents)

        tools = []
        for i, t in enumerate(body.get("tools") or []):
            if not isinstance(t, dict) or not t.get("name"):
                raise BadRequest(f"tools.{i}.name: Field required")
            schema = t.get("input_schema")
            if not isinstance(schema, dict) or schema.get("type") != "object":
                raise BadRequest(f"tools.{i}.input_schema: Field required")
            tools.append(MockTool(t["name"], schema))
        choice = body.get("tool_choice")
        tool_choice = None
        if choice is not None:
            kind = choice.get("type") if isinstance(choice, dict) else None
            if kind not in ("auto", "any", "tool", "none"):
                raise BadRequest(
                    "tool_choice: Input tag found using 'type' does not match any of "
                    "the expected tags: 'auto', 'any', 'tool', 'none'"
                )
            if kind == "tool" and not choice.get("name"):
                raise BadRequest("tool_choice.tool.name: Field required")
            tool_choice = {"auto": None, "any": "required", "none": "none"}.get(kind, choice.get("name"))
        user_texts = [t for r, t in turns if r == "user"]
        return thinking.ThinkingMockRequest(
            model=model,
            stream=body.get("stream") is True,
            turns=turns,
            tools=tools,
            tool_choice=tool_choice,
            max_tokens=max_tokens,
            thinking=thinking.thinking_text(turns) if thinking_on else None,
            redacted=bool(user_texts) and thinking.REDACT_TRIGGER in user_texts[-1],
        )

    # ---- rendering ----
    @staticmethod
    def _tool_id(call_id: str) -> str:
        return "toolu_" + call_id.removeprefix("call_")

    def _usage(self, plan: Plan, output_tokens: int) -> dict[str, int]:
        return {
            "input_tokens": plan.prompt_tokens,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
            "output_tokens": output_tokens,
        }

    @staticmethod
    def _output_tokens(plan: Plan, req: MockRequest) -> int:
        # Thinking is billed as output, like the answer.
        return plan.completion_tokens + count_tokens(getattr(req, "thinking", None) or "")

    def _blocks(self, plan: Plan, req: MockRequest) -> list[Block]:
        """Each content block of the answer, in order."""
        out = []
        if isinstance(req, thinking.ThinkingMockRequest) and req.thinking is not None:
            out.append(thinking.block(req.thinking, req.redacted, split_text(req.thinking)))
        if plan.text:
            deltas = [{"type": "text_delta", "text": p} for p in split_text(plan.text)]
            out.append(({"type": "text", "text": plan.text}, {"type": "text", "text": ""}, deltas))
        for call in plan.tool_calls:
            # The API's first input_json_delta is often empty; the rest are arbitrary cuts.
            pieces = [""] + [call.arguments[i : i + 7] for i in range(0, len(call.arguments), 7)]
            start = {"type": "tool_use", "id": self._tool_id(call.id), "name": call.name, "input": {}}
            whole = {**start, "input": orjson.loads(call.arguments)}
            out.append((whole, start, [{"type": "input_json_delta", "partial_json": p} for p in pieces]))
        return out

    def render_json(self, plan: Plan, req: MockRequest) -> dict[str, Any]:
        return {
            "id": _MSG_ID,
            "type": "message",
            "role": "assistant",
            "model": req.model,
            "content": [whole for whole, _, _ in self._blocks(plan, req)],
            "stop_reason": _STOP_REASONS[plan.finish_reason],
            "stop_sequence": None,
            "usage": self._usage(plan, self._output_tokens(plan, req)),
        }

    def render_stream(self, plan: Plan, req: MockRequest) -> list[bytes]:
        ev = self.sse
        start: dict[str, Any] = {
            "id": _MSG_ID,
            "type": "message",
            "role": "assistant",
            "model": req.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": self._usage(plan, 1),
        }
        events = [ev({"type": "message_start", "message": start}, "message_start")]
        blocks = self._blocks(plan, req)
        if not blocks:
            events.append(ev({"type": "ping"}, "ping"))
        for index, (_, block, deltas) in enumerate(blocks):
            events.append(
                ev(
                    {"type": "content_block_start", "index": index, "content_block": block},
                    "content_block_start",
                )
            )
            if index == 0:
                events.append(ev({"type": "ping"}, "ping"))  # the API pings after the first start
            for delta in deltas:
                events.append(
                    ev({"type": "content_block_delta", "index": index, "delta": delta}, "content_block_delta")
                )
            events.append(ev({"type": "content_block_stop", "index": index}, "content_block_stop"))
        # Usage in message_delta is cumulative (newer API versions repeat the input counts).
        events.append(
            ev(
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": _STOP_REASONS[plan.finish_reason], "stop_sequence": None},
                    "usage": self._usage(plan, self._output_tokens(plan, req)),
                },
                "message_delta",
            )
        )
        events.append(ev({"type": "message_stop"}, "message_stop"))
        return events

    def render_error(self, status: int, message: str) -> dict[str, Any]:
        kind = _ERROR_TYPES.get(status) or ("api_error" if status >= 500 else "invalid_request_error")
        return {
            "type": "error",
            "error": {"type": kind, "message": message},
            "request_id": "req_01MockRequest0000000000001",
        }


DIALECT = AnthropicDialect
