"""A tool's result as the translators send it, so the guards read what a model reads."""

from __future__ import annotations

from typing import Any

import orjson


def tool_result_as_sent(content: Any) -> Any:
    """A tool's result as the translators send it, so the guards read that: its text parts
    joined (Anthropic and Gemini join them), and a JSON result without the `\\u` escapes
    Gemini decodes (`jane.doe\\u0040example.com` is an email to the model). Read whole, a
    value keeps its context (`"ssn": "…"`) for custom patterns."""
    if isinstance(content, list):
        content = _text_parts_joined(content)
        texts = [p for p in content if _is_text_part(p)]
        if len(texts) == 1:
            texts[0]["text"] = _unescaped_json(texts[0]["text"])
        return content
    return _unescaped_json(content) if isinstance(content, str) else content


def _unescaped_json(text: str) -> str:
    """JSON text with its `\\u` escapes written out (the same JSON); other text as it is."""
    if "\\u" not in text:
        return text
    try:
        return orjson.dumps(orjson.loads(text)).decode()
    except (orjson.JSONDecodeError, TypeError):  # not JSON, or beyond what orjson reads
        return text


def _is_text_part(part: Any) -> bool:
    return isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str)


def _text_parts_joined(parts: list[Any]) -> list[Any]:
    """A tool result's text parts as one text, in the first one's place (its other keys,
    `cache_control`, kept): what Anthropic and Gemini send (text_of), so a value split
    across parts is read whole. Other parts are kept, in order."""
    is_text = [_is_text_part(p) for p in parts]
    if sum(is_text) < 2:
        return parts
    first = is_text.index(True)
    joined = {**parts[first], "text": "".join(p["text"] for p, t in zip(parts, is_text, strict=True) if t)}
    return [joined if i == first else p for i, p in enumerate(parts) if i == first or not is_text[i]]
