"""Canonical messages and tools -> Anthropic request parts, for the translator in anthropic.py.

System/developer messages move to the top-level `system`; tool calls and tool results
become `tool_use` / `tool_result` blocks; an assistant message's `thinking_blocks` lead
its turn again, unchanged; consecutive same-role turns are merged so turns alternate.
"""

from __future__ import annotations

from typing import Any

import orjson

from .base import UnsupportedRequest, check_media_type, parse_data_url, text_of

# The base64 image types Anthropic takes (URL images are fetched and checked by Anthropic).
IMAGE_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})


def _image_block(url: str, where: str) -> dict[str, Any]:
    data = parse_data_url(url)
    if data is not None:
        media_type = check_media_type(data[0], IMAGE_TYPES, "Anthropic", where)
        return {"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data[1]}}
    if url.startswith(("https://", "http://")):
        return {"type": "image", "source": {"type": "url", "url": url}}
    raise UnsupportedRequest("image_url must be an http(s) URL or a base64 data: URL", param=where)


def content_blocks(content: Any, where: str) -> list[dict[str, Any]]:
    """Canonical content -> Anthropic blocks. Empty text is skipped: Anthropic rejects
    empty text blocks, and OpenAI clients do send `content: ""` next to tool calls.
    `where` names the content in errors (`messages[2].content`)."""
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    out = []
    for j, part in enumerate(content):
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
                raise UnsupportedRequest("image_url parts need a 'url'", param=f"{where}[{j}].image_url")
            block = _image_block(url, f"{where}[{j}].image_url")
        else:
            raise UnsupportedRequest(
                f"content parts of type '{kind}' are not supported", param=f"{where}[{j}].type"
            )
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


# ---- thinking blocks echoed from history -------------------------------------------------


def _echoed_block(block: Any, where: str) -> dict[str, Any]:
    """One `thinking_blocks` item, checked, as the Anthropic block it came from. Only the
    block's own fields are kept: Anthropic verifies them and takes no others."""
    kind = block.get("type") if isinstance(block, dict) else None
    if kind == "thinking":
        signature = block.get("signature")
        if not isinstance(signature, str) or not signature:
            raise UnsupportedRequest(
                f"'{where}.signature' must be the signature the response gave, a non-empty string",
                param=f"{where}.signature",
            )
        text = block.get("thinking")
        if text is not None and not isinstance(text, str):
            raise UnsupportedRequest(f"'{where}.thinking' must be a string", param=f"{where}.thinking")
        return {"type": "thinking", "thinking": text or "", "signature": signature}
    if kind == "redacted_thinking":
        data = block.get("data")
        if not isinstance(data, str) or not data:
            raise UnsupportedRequest(
                f"'{where}.data' must be the data the response gave, a non-empty string",
                param=f"{where}.data",
            )
        return {"type": "redacted_thinking", "data": data}
    if not isinstance(block, dict):
        raise UnsupportedRequest(f"'{where}' must be a thinking block object", param=where)
    raise UnsupportedRequest(
        f"'{where}.type' must be 'thinking' or 'redacted_thinking', not {kind!r}", param=f"{where}.type"
    )


def _fill_streamed_text(blocks: list[dict[str, Any]], reasoning: Any, i: int) -> None:
    """A streaming client echoes the joined `reasoning_content` plus signature-only
    blocks. With one thinking block that text is the block's; with several it cannot
    be split, and sending them empty would fail Anthropic's signature check."""
    thinking = [b for b in blocks if b["type"] == "thinking"]
    if all(b["thinking"] for b in thinking) or reasoning is None or reasoning == "":
        return
    if not isinstance(reasoning, str):
        where = f"messages[{i}].reasoning_content"
        raise UnsupportedRequest(f"'{where}' must be a string", param=where)
    if len(thinking) == 1:
        thinking[0]["thinking"] = reasoning
        return
    j = next(j for j, b in enumerate(blocks) if b["type"] == "thinking" and not b["thinking"])
    where = f"messages[{i}].thinking_blocks[{j}].thinking"
    raise UnsupportedRequest(
        f"'{where}' is empty and 'reasoning_content' cannot be split between {len(thinking)} "
        "thinking blocks: send each block's own 'thinking' text",
        param=where,
    )


def thinking_history(message: dict[str, Any], i: int) -> list[dict[str, Any]]:
    """An assistant message's `thinking_blocks` as the leading blocks of its turn. A
    `reasoning_content` without them is not sent: Anthropic takes only signed thinking."""
    raw = message.get("thinking_blocks")
    if raw is None:
        return []
    where = f"messages[{i}].thinking_blocks"
    if not isinstance(raw, list):
        raise UnsupportedRequest(f"'{where}' must be an array of thinking blocks", param=where)
    blocks = [_echoed_block(b, f"{where}[{j}]") for j, b in enumerate(raw)]
    _fill_streamed_text(blocks, message.get("reasoning_content"), i)
    return blocks


# ---- messages and tools ------------------------------------------------------------------


def request_messages(
    messages: list[dict[str, Any]],
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(system text blocks, alternating turns)."""
    system: list[dict[str, Any]] = []
    turns: list[dict[str, Any]] = []
    for i, m in enumerate(messages):
        role = m["role"]
        where = f"messages[{i}].content"
        if role in ("system", "developer"):
            system.extend(b for b in content_blocks(m.get("content"), where) if b["type"] == "text")
            continue
        if role == "user":
            blocks = content_blocks(m.get("content"), where)
        elif role == "assistant":
            blocks = (
                thinking_history(m, i)
                + content_blocks(m.get("content"), where)
                + [_tool_use(c) for c in m.get("tool_calls") or ()]
            )
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


def tool_choice(req: dict[str, Any]) -> dict[str, Any] | None:
    choice = req.get("tool_choice")
    out: dict[str, Any]
    if choice is None or choice == "auto":
        out = {"type": "auto"}
    elif choice == "required":
        out = {"type": "any"}
    elif choice == "none":
        return {"type": "none"}  # takes no disable_parallel_tool_use
    elif isinstance(choice, dict) and choice.get("type") == "function":
        name = (choice.get("function") or {}).get("name")
        if not isinstance(name, str):
            raise UnsupportedRequest("tool_choice.function.name is required", param="tool_choice")
        out = {"type": "tool", "name": name}
    else:
        raise UnsupportedRequest(
            f"tool_choice {orjson.dumps(choice).decode()} is not supported", param="tool_choice"
        )
    if req.get("parallel_tool_calls") is False:
        out["disable_parallel_tool_use"] = True
    elif choice is None:
        return None  # Anthropic's default is auto already
    return out


def tools(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for i, tool in enumerate(items):
        if tool.get("type", "function") != "function":
            raise UnsupportedRequest(
                f"tools of type '{tool.get('type')}' are not supported", param=f"tools[{i}].type"
            )
        fn = tool["function"]
        t: dict[str, Any] = {"name": fn["name"]}
        if fn.get("description"):
            t["description"] = fn["description"]
        t["input_schema"] = fn.get("parameters") or {"type": "object", "properties": {}}
        out.append(t)
    return out
