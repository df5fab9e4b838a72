"""Extended thinking for the Anthropic mock dialect (anthropic.py).

With `thinking: {"type": "enabled", "budget_tokens": N}` the mock answers with a
thinking block first. Its text is deterministic and its `signature` an HMAC of the text
under a mock secret, so a later request can be checked the way Anthropic checks it: a
thinking block whose text or signature was changed is refused, and so is a tool loop
whose last assistant turn does not start with the thinking block it was given.

A user message containing Anthropic's documented test string (REDACT_TRIGGER) gets a
`redacted_thinking` block instead, its `data` sealed with the same secret.

Request rules enforced while thinking, with the API's wording: budget_tokens >= 1024 and
< max_tokens (the mock does not see headers, so the interleaved-thinking exception that
lets the budget exceed max_tokens is not modelled); temperature only 1; top_p only
0.95..1; no top_k; no forced tool_choice; no prefilled assistant answer.
Unlike Claude without interleaved thinking, the mock thinks again after a tool result,
so a tool loop shows thinking on every turn.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from dataclasses import dataclass
from typing import Any

from ..engine import MockRequest
from .base import BadRequest

SECRET = b"aigw-mock-anthropic-thinking"
REDACT_TRIGGER = "ANTHROPIC_MAGIC_STRING_TRIGGER_REDACTED_THINKING_46C9A13E193C177646C7398A98432ECCCE4C1253"
_DOCS = (
    "Please consult our documentation at https://docs.claude.com/en/docs/build-with-claude/extended-thinking"
)


@dataclass
class ThinkingMockRequest(MockRequest):
    # The mock's thinking text when thinking is enabled, else None.
    thinking: str | None = None
    # Answer with a redacted_thinking block instead of a visible one.
    redacted: bool = False


def sign(text: str) -> str:
    return base64.b64encode(hmac.new(SECRET, text.encode(), hashlib.sha256).digest()).decode()


def seal(text: str) -> str:
    """Opaque `redacted_thinking` data the mock can verify later."""
    return base64.b64encode(text.encode()).decode() + "." + sign(text)


def _sealed(data: str) -> bool:
    body, _, signature = data.partition(".")
    try:
        text = base64.b64decode(body, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return False
    return hmac.compare_digest(sign(text), signature)


def check_request(body: dict[str, Any], max_tokens: int) -> bool:
    """Whether thinking is on; BadRequest for what the API refuses with it."""
    config = body.get("thinking")
    if config is None:
        return False
    kind = config.get("type") if isinstance(config, dict) else None
    if kind not in ("enabled", "disabled"):
        raise BadRequest(
            "thinking: Input tag found using 'type' does not match any of the expected tags: "
            "'enabled', 'disabled'"
        )
    if kind == "disabled":
        return False
    budget = config.get("budget_tokens")
    if not isinstance(budget, int) or isinstance(budget, bool):
        raise BadRequest("thinking.enabled.budget_tokens: Field required")
    if budget < 1024:
        raise BadRequest("thinking.enabled.budget_tokens: Input should be greater than or equal to 1024")
    if max_tokens <= budget:
        raise BadRequest(f"`max_tokens` must be greater than `thinking.budget_tokens`. {_DOCS}")
    if body.get("temperature") is not None and body["temperature"] != 1:
        raise BadRequest(f"`temperature` may only be set to 1 when thinking is enabled. {_DOCS}")
    if body.get("top_p") is not None and body["top_p"] < 0.95:
        raise BadRequest(
            f"`top_p` must be greater than or equal to 0.95 or unset when thinking is enabled. {_DOCS}"
        )
    if body.get("top_k") is not None:
        raise BadRequest(f"`top_k` is not supported when thinking is enabled. {_DOCS}")
    choice = body.get("tool_choice")
    if isinstance(choice, dict) and choice.get("type") in ("any", "tool"):
        raise BadRequest("Thinking may not be enabled when tool_choice forces tool use.")
    return True


def check_blocks(i: int, blocks: list[dict[str, Any]], role: str) -> None:
    """Thinking blocks only in assistant turns, whole and as the mock signed them."""
    for j, b in enumerate(blocks):
        kind = b.get("type")
        if kind not in ("thinking", "redacted_thinking"):
            continue
        where = f"messages.{i}.content.{j}"
        if role != "assistant":
            raise BadRequest(f"{where}: `{kind}` blocks are only allowed in `assistant` messages")
        if kind == "thinking":
            if not isinstance(b.get("thinking"), str) or not isinstance(b.get("signature"), str):
                raise BadRequest(f"{where}.thinking: 'thinking' and 'signature' are required strings")
            if not hmac.compare_digest(sign(b["thinking"]), b["signature"]):
                raise BadRequest(f"{where}: Invalid `signature` in `thinking` block")
        elif not isinstance(b.get("data"), str) or not _sealed(b["data"]):
            raise BadRequest(f"{where}: Invalid `data` in `redacted_thinking` block")


def check_history(messages: list[dict[str, Any]], contents: list[list[dict[str, Any]]]) -> None:
    """With thinking on: no prefilled answer, and the last assistant turn of a tool loop
    starts with its thinking block (the API's wording, typo included)."""
    if messages[-1]["role"] == "assistant":
        raise BadRequest(
            "When thinking is enabled, the final message must be a `user` message: "
            f"prefilling the assistant response is not supported. {_DOCS}"
        )
    last = max((i for i, m in enumerate(messages) if m["role"] == "assistant"), default=None)
    if last is None or not any(b.get("type") == "tool_use" for b in contents[last]):
        return
    first = contents[last][0].get("type")
    if first not in ("thinking", "redacted_thinking"):
        raise BadRequest(
            f"messages.{last}.content.0.type: Expected `thinking` or `redacted_thinking`, but found "
            f"`{first}`. When `thinking` is enabled, a final `assistant` message must start with a "
            "thinking block (preceeding the lastmost set of `tool_use` and `tool_result` blocks). We "
            "recommend you include thinking blocks from previous turns. To avoid this requirement, "
            f"disable `thinking`. {_DOCS}"
        )


def thinking_text(turns: list[tuple[str, str]]) -> str:
    role, text = turns[-1] if turns else ("user", "")
    subject = "the tool result" if role == "tool" else "the request"
    return f"Thinking about {subject}: {text}"


def block(
    text: str, redacted: bool, pieces: list[str]
) -> tuple[dict[str, Any], dict[str, Any], list[dict[str, Any]]]:
    """The block that opens the answer: (as the JSON response has it, as the stream's
    content_block_start carries it, its deltas). A streamed thinking block starts with
    empty text and signature; the text follows in pieces, then the whole signature."""
    if redacted:
        whole = {"type": "redacted_thinking", "data": seal(text)}
        return whole, whole, []
    signature = sign(text)
    deltas = [{"type": "thinking_delta", "thinking": p} for p in pieces]
    deltas.append({"type": "signature_delta", "signature": signature})
    whole = {"type": "thinking", "thinking": text, "signature": signature}
    return whole, {"type": "thinking", "thinking": "", "signature": ""}, deltas
