"""What the mock answers, independent of any provider's wire format.

Dialects parse a provider request into a `MockRequest`; the engine turns it into a
`Plan`; dialects render the plan as that provider's JSON or SSE. Answers are
deterministic so tests can assert on them:

- forced content (the `x-mock-content` header) is returned verbatim;
- with tools offered and the last turn from the user, the first tool (or the one
  `tool_choice` names) is called with arguments built from its JSON schema;
- after a tool result, the answer quotes it;
- otherwise the answer echoes the last user message.

Token counts are whitespace-separated words, so tests can compute them too.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import orjson


@dataclass
class MockTool:
    name: str
    parameters: dict[str, Any] = field(default_factory=dict)


@dataclass
class MockRequest:
    model: str
    stream: bool
    # (role, text) for every turn, system included, tool results as role "tool".
    turns: list[tuple[str, str]]
    tools: list[MockTool] = field(default_factory=list)
    # None (auto), "none", "required", or a tool name that must be called.
    tool_choice: str | None = None
    max_tokens: int | None = None
    include_usage: bool = True


@dataclass
class MockToolCall:
    id: str
    name: str
    arguments: str  # JSON text


@dataclass
class Plan:
    text: str
    tool_calls: list[MockToolCall]
    finish_reason: str  # canonical: stop | length | tool_calls
    prompt_tokens: int
    completion_tokens: int


def count_tokens(text: str) -> int:
    return len(text.split())


def plan(req: MockRequest, forced_content: str | None = None) -> Plan:
    prompt_tokens = sum(count_tokens(t) for _, t in req.turns)
    last_role, last_text = req.turns[-1] if req.turns else ("user", "")
    if forced_content is not None:
        text = forced_content
    elif req.tools and req.tool_choice != "none" and last_role != "tool":
        tool = _chosen_tool(req)
        args = orjson.dumps(_example_args(tool.parameters)).decode()
        call_id = "call_" + hashlib.sha1(f"{tool.name}{last_text}".encode()).hexdigest()[:9]
        return Plan(
            "", [MockToolCall(call_id, tool.name, args)], "tool_calls", prompt_tokens, count_tokens(args) + 1
        )
    elif last_role == "tool":
        text = f"The tool returned: {last_text}"
    else:
        user_texts = [t for r, t in req.turns if r == "user"]
        said = user_texts[-1] if user_texts else ""
        text = f"Mock reply from {req.model}: {said}"
    finish = "stop"
    if req.max_tokens is not None and count_tokens(text) > req.max_tokens:
        text = " ".join(text.split()[: req.max_tokens])
        finish = "length"
    return Plan(text, [], finish, prompt_tokens, count_tokens(text))


def _chosen_tool(req: MockRequest) -> MockTool:
    if req.tool_choice not in (None, "auto", "required", "any", "none"):
        for tool in req.tools:
            if tool.name == req.tool_choice:
                return tool
    return req.tools[0]


def _example_args(schema: dict[str, Any]) -> dict[str, Any]:
    props = schema.get("properties") or {}
    required = schema.get("required") or list(props)
    args: dict[str, Any] = {}
    for name in required:
        prop = props.get(name) or {}
        kind = prop.get("type")
        if isinstance(kind, list):
            kind = next((k for k in kind if k != "null"), "string")
        kind = (kind or "string").lower()
        if prop.get("enum"):
            args[name] = prop["enum"][0]
        elif kind == "string":
            args[name] = f"mock-{name}"
        elif kind == "integer":
            args[name] = 1
        elif kind == "number":
            args[name] = 1.5
        elif kind == "boolean":
            args[name] = True
        elif kind == "array":
            args[name] = []
        else:
            args[name] = {}
    return args


def split_text(text: str, pieces: int | None = None) -> list[str]:
    """How the mock streams text by default: a word (with its leading space) per delta."""
    if not text:
        return []
    words = text.split(" ")
    out = [words[0]] + [" " + w for w in words[1:]]
    return [w for w in out if w]
