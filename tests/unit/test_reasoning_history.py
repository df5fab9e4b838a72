"""Reasoning another provider returned is never forwarded to a provider that cannot take it.

An assistant turn echoed back after an Anthropic answer carries `reasoning_content` and
`thinking_blocks` (README "Reasoning"). OpenAI, Azure and Mistral refuse unknown message
fields, and DeepSeek/vLLM refuse `reasoning_content` sent back, so a failover from
Anthropic to any of them drops both fields from the history, and nothing else.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from tests.provider_helpers import make_provider

AUTH = {"secretRef": {"inline": "k"}}
SETTINGS: dict[str, dict[str, Any]] = {
    "openai": {"provider": "openai", "auth": AUTH},
    "azure-openai": {"provider": "azure-openai", "deployment": "dep", "auth": AUTH},
    "azure-openai legacy": {
        "provider": "azure-openai",
        "deployment": "dep",
        "apiVersion": "2024-02-01",
        "auth": AUTH,
    },
    "openai-compatible": {"provider": "openai-compatible"},
    "mistral": {"provider": "mistral", "auth": AUTH},
}

TOOL_CALL = {"id": "call_abc123XYZ", "type": "function", "function": {"name": "f", "arguments": "{}"}}
HISTORY: list[dict[str, Any]] = [
    {"role": "user", "content": "weather?"},
    {
        "role": "assistant",
        "content": None,
        "reasoning_content": "I should call f.",
        "thinking_blocks": [
            {"type": "thinking", "thinking": "I should call f.", "signature": "sig"},
            {"type": "redacted_thinking", "data": "opaque"},
        ],
        "tool_calls": [TOOL_CALL],
    },
    {"role": "tool", "tool_call_id": "call_abc123XYZ", "content": "sunny"},
]


def request(messages: list[dict[str, Any]]) -> dict[str, Any]:
    return {"model": "m", "messages": messages}


@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_reasoning_fields_are_dropped_from_history(name):
    req = request(copy.deepcopy(HISTORY))
    before = copy.deepcopy(req)
    out = make_provider(SETTINGS[name]).translate_request(req, "m")
    assert req == before  # the canonical request is reused by retries: never mutated
    assistant = next(m for m in out["messages"] if m["role"] == "assistant")
    assert "reasoning_content" not in assistant and "thinking_blocks" not in assistant
    assert len(assistant["tool_calls"]) == 1  # the rest of the turn is kept
    assert [m["role"] for m in out["messages"]] == ["user", "assistant", "tool"]


@pytest.mark.parametrize("name", ["openai", "openai-compatible", "azure-openai"])
def test_history_without_reasoning_is_passed_on_as_is(name):
    # The passthrough providers copy nothing when there is nothing to drop (hot path).
    req = request([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}])
    settings = SETTINGS[name]
    model = "dep" if name == "azure-openai" else "m"
    req["model"] = model
    assert make_provider(settings).translate_request(req, model) is req
