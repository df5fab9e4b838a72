"""Anthropic extended thinking, for the translator in anthropic.py.

Request: `reasoning_effort` (or the backend's default) picks a thinking budget; the
sampling fields and tool choices Anthropic refuses while thinking are settled here, so
that Anthropic's own 400 never reaches the client. Response and stream: `thinking` and
`redacted_thinking` blocks become `reasoning_content` and `thinking_blocks` (the
canonical reasoning contract). See docs/providers/anthropic.md, "Reasoning".
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import Field, model_validator

from ..config_model import ConfigModel
from .base import UnsupportedRequest

EFFORTS = ("minimal", "low", "medium", "high", "xhigh")
# The request value that turns thinking off even when the backend has a default effort.
EFFORT_OFF = "none"
Effort = Literal["minimal", "low", "medium", "high", "xhigh"]
# Anthropic's floor for `thinking.budget_tokens`.
MIN_BUDGET = 1024
# While thinking, Anthropic takes `top_p` only in 0.95..1.
MIN_THINKING_TOP_P = 0.95
INTERLEAVED_THINKING_BETA = "interleaved-thinking-2025-05-14"


class ThinkingBudgets(ConfigModel):
    """`budget_tokens` per `reasoning_effort` (YAML: `thinkingBudgets: {low: 4096}`)."""

    minimal: int = Field(default=1024, ge=MIN_BUDGET)
    low: int = Field(default=2048, ge=MIN_BUDGET)
    medium: int = Field(default=8192, ge=MIN_BUDGET)
    high: int = Field(default=24576, ge=MIN_BUDGET)
    # OpenAI's newest effort. Unset, it is `high`: a larger default would have to fit
    # under every backend's maxOutputTokens (32000 on some Claude models).
    xhigh: int | None = Field(default=None, ge=MIN_BUDGET)

    @model_validator(mode="after")
    def _ordered(self) -> ThinkingBudgets:
        # A higher effort with a smaller budget is a typo (2048 for 20480), not a choice.
        for lower, higher in itertools.pairwise(EFFORTS):
            if self.budget(higher) < self.budget(lower):
                raise ValueError(f"'{higher}' ({self.budget(higher)}) is below '{lower}'")
        return self

    def budget(self, effort: str) -> int:
        if effort == "xhigh":
            return self.xhigh if self.xhigh is not None else self.high
        value: int = getattr(self, effort)
        return value

    def largest(self) -> int:
        return max(self.budget(e) for e in EFFORTS)


@dataclass(frozen=True)
class Thinking:
    """Extended thinking for one request: the effort, its budget, and where it came from
    (the request or the backend default), for error messages."""

    effort: str
    budget: int
    from_request: bool

    def describe(self) -> str:
        origin = "" if self.from_request else ", the backend's defaultReasoningEffort"
        return f"extended thinking (reasoning_effort '{self.effort}'{origin})"


def resolve_thinking(req: dict[str, Any], default_effort: str, budgets: ThinkingBudgets) -> Thinking | None:
    """The thinking this request gets, or None. The request's `reasoning_effort` wins;
    `none` turns thinking off; without one the backend default applies (`off` = none)."""
    effort = req.get("reasoning_effort")
    if effort is None:
        if default_effort not in EFFORTS:
            return None
        return Thinking(default_effort, budgets.budget(default_effort), from_request=False)
    if effort == EFFORT_OFF:
        return None
    if effort not in EFFORTS:
        raise UnsupportedRequest(
            f"'reasoning_effort' must be one of {', '.join(EFFORTS)} or {EFFORT_OFF}, not {effort!r}",
            param="reasoning_effort",
        )
    return Thinking(effort, budgets.budget(effort), from_request=True)


def thinking_max_tokens(thinking: Thinking, answer_tokens: int, cap: int | None) -> int:
    """Anthropic counts thinking inside `max_tokens` and wants `max_tokens > budget_tokens`,
    so the client's limit (answer tokens) is raised by the budget. `cap` (the backend's
    maxOutputTokens, validated above every budget) keeps the sum under the model's limit."""
    total = thinking.budget + answer_tokens
    return min(total, cap) if cap is not None else total


def sampling(req: dict[str, Any], thinking: Thinking | None, max_temperature: float) -> dict[str, Any]:
    """`temperature`, `top_p` and `top_k` for the Anthropic body.

    Without thinking: temperature clamped to Anthropic's 0..1, the others as given.
    While thinking, Anthropic refuses any temperature but 1, top_p below 0.95 and any
    top_k. temperature and top_p are dropped (documented): SDKs and frameworks set them
    by default, and the client still gets a valid answer. top_k is not an OpenAI field,
    so a client that sends it chose it: that is a 400 naming both fields.
    """
    out: dict[str, Any] = {}
    top_k = req.get("top_k")
    if top_k is not None and (not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < 0):
        raise UnsupportedRequest("'top_k' must be a non-negative integer", param="top_k")
    temperature, top_p = req.get("temperature"), req.get("top_p")
    if thinking is None:
        if temperature is not None:
            out["temperature"] = temperature if temperature <= max_temperature else max_temperature
        if top_p is not None:
            out["top_p"] = top_p
        if top_k is not None:
            out["top_k"] = top_k
        return out
    if top_k is not None:
        raise UnsupportedRequest(
            f"'top_k' cannot be combined with {thinking.describe()}: Anthropic does not sample "
            f"with top_k while thinking; remove 'top_k' or send reasoning_effort '{EFFORT_OFF}'",
            param="top_k",
        )
    if top_p is not None and top_p >= MIN_THINKING_TOP_P:
        out["top_p"] = top_p
    return out


def check_thinking_conflicts(req: dict[str, Any], thinking: Thinking, turns: list[dict[str, Any]]) -> None:
    """What Anthropic rejects with thinking on besides sampling: a forced tool choice and
    a prefilled answer (a conversation that ends with an assistant turn)."""
    choice = req.get("tool_choice")
    forced = choice == "required" or (isinstance(choice, dict) and choice.get("type") == "function")
    if forced and req.get("tools"):
        raise UnsupportedRequest(
            f"'tool_choice' {'required' if choice == 'required' else 'naming a function'} cannot be "
            f"combined with {thinking.describe()}: Anthropic only allows tool_choice 'auto' or "
            f"'none' while thinking; change 'tool_choice' or send reasoning_effort '{EFFORT_OFF}'",
            param="tool_choice",
        )
    if turns and turns[-1]["role"] == "assistant":
        raise UnsupportedRequest(
            f"'messages' ends with an assistant message (a prefilled answer), which cannot be combined "
            f"with {thinking.describe()}: end with a user or tool message, or send reasoning_effort "
            f"'{EFFORT_OFF}'",
            param="messages",
        )


# ---- responses and streams -------------------------------------------------------------


def _thinking_item(block: dict[str, Any]) -> dict[str, Any] | None:
    kind = block.get("type")
    if kind == "thinking":
        return {
            "type": "thinking",
            "thinking": block.get("thinking") or "",
            "signature": block.get("signature") or "",
        }
    if kind == "redacted_thinking":
        return {"type": "redacted_thinking", "data": block.get("data") or ""}
    return None


def response_thinking(content: list[dict[str, Any]]) -> dict[str, Any]:
    """`reasoning_content` (the visible thinking, joined) and `thinking_blocks` (every
    thinking and redacted block, in order, to be sent back) for a response message."""
    items = [item for item in map(_thinking_item, content) if item is not None]
    fields: dict[str, Any] = {}
    text = "".join(item.get("thinking", "") for item in items)
    if text:
        fields["reasoning_content"] = text
    if items:
        fields["thinking_blocks"] = items
    return fields


def _signature_delta(signature: str) -> dict[str, Any]:
    # Text is never repeated here: stream guards see each piece of thinking once.
    return {"thinking_blocks": [{"type": "thinking", "thinking": "", "signature": signature}]}


def block_start_deltas(block: dict[str, Any]) -> list[dict[str, Any]]:
    """Deltas for a `content_block_start` of a thinking or redacted_thinking block."""
    kind = block.get("type")
    if kind == "redacted_thinking":
        return [{"thinking_blocks": [{"type": "redacted_thinking", "data": block.get("data") or ""}]}]
    if kind != "thinking":
        return []
    out: list[dict[str, Any]] = []
    if block.get("thinking"):
        out.append({"reasoning_content": block["thinking"]})
    if block.get("signature"):  # a block that starts complete (the API sends it empty)
        out.append(_signature_delta(block["signature"]))
    return out


def block_delta(delta: dict[str, Any]) -> dict[str, Any] | None:
    """The delta for a `thinking_delta` or `signature_delta`, else None."""
    kind = delta.get("type")
    if kind == "thinking_delta" and delta.get("thinking"):
        return {"reasoning_content": delta["thinking"]}
    if kind == "signature_delta" and delta.get("signature"):
        return _signature_delta(delta["signature"])
    return None
