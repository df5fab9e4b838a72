"""Canonical request -> Mistral request, for the translator in mistral.py: fields renamed,
dropped or refused, tool call ids rewritten to Mistral's 9 characters, message content
and tool choice in Mistral's shape."""

from __future__ import annotations

import hashlib
import re
import string
from typing import Any

import orjson

from .base import UnsupportedRequest

# OpenAI fields sent under Mistral's name (the newer OpenAI name wins if both are sent).
RENAMED_FIELDS: tuple[tuple[str, str], ...] = (
    ("max_completion_tokens", "max_tokens"),
    ("seed", "random_seed"),
)
# OpenAI fields Mistral has no equivalent for. Sent, they would make Mistral answer 422, and
# none changes what the model is asked beyond tuning, logging or billing: they are removed.
DROPPED_FIELDS: tuple[str, ...] = (
    "user",
    "store",
    "service_tier",
    "stream_options",
    "logit_bias",
    "logprobs",
    "top_logprobs",
    "reasoning_effort",
    "prompt_cache_key",
    "safety_identifier",
    "verbosity",
    "web_search_options",
    "modalities",
)
# Fields whose meaning cannot be kept: the client gets a 400 naming them.
REJECTED_FIELDS: tuple[str, ...] = ("functions", "function_call", "audio")
# Any other field (Mistral's own `safe_prompt`, `prompt_mode`, ...) is passed on as is.

_ID_OK = re.compile(r"^[a-zA-Z0-9]{9}$")
_ALNUM = string.ascii_letters + string.digits
_FUNCTION_KEYS = ("name", "description", "parameters", "strict")


def mistral_tool_id(call_id: str, salt: int = 0) -> str:
    """A valid id stays; any other becomes 9 alphanumerics hashed from it, so a
    conversation's ids map the same way on every turn and every retry."""
    if not salt and _ID_OK.match(call_id):
        return call_id
    n = int.from_bytes(hashlib.sha256(f"{salt}:{call_id}".encode()).digest()[:8], "big")
    return "".join(_ALNUM[(n // 62**i) % 62] for i in range(9))


def _tool_id_map(messages: list[dict[str, Any]]) -> dict[str, str]:
    originals = [
        i
        for m in messages
        for i in [c.get("id") for c in m.get("tool_calls") or ()] + [m.get("tool_call_id")]
        if isinstance(i, str)
    ]
    used = {i for i in originals if _ID_OK.match(i)}
    mapping = {i: i for i in used}
    for orig in originals:
        if orig not in mapping:
            salt = 0  # a hash that collides with another id of this conversation is redrawn
            while (new := mistral_tool_id(orig, salt)) in used:
                salt += 1
            used.add(new)
            mapping[orig] = new
    return mapping


def _part(part: dict[str, Any]) -> dict[str, Any]:
    kind = part.get("type")
    if kind in ("text", "refusal"):  # an assistant's refusal is text to Mistral
        return {"type": "text", "text": part.get(kind, "")}
    if kind == "image_url":
        image = part.get("image_url")
        url = image.get("url") if isinstance(image, dict) else image
        if not isinstance(url, str):
            raise UnsupportedRequest("image_url parts need a 'url'")
        detail = image.get("detail") if isinstance(image, dict) else None
        return {"type": "image_url", "image_url": {"url": url, **({"detail": detail} if detail else {})}}
    if kind == "input_audio":  # Mistral takes the base64 data alone
        return {"type": "input_audio", "input_audio": (part.get("input_audio") or {}).get("data")}
    if kind == "file":  # a PDF sent inline is a document_url with a data: URL
        file = part.get("file") or {}
        if not isinstance(file.get("file_data"), str):
            raise UnsupportedRequest(
                "file parts must carry 'file_data': OpenAI file ids mean nothing to mistral"
            )
        name = {"document_name": file["filename"]} if file.get("filename") else {}
        return {"type": "document_url", "document_url": file["file_data"], **name}
    raise UnsupportedRequest(f"content parts of type '{kind}' are not supported by mistral")


def _content(content: Any) -> Any:
    return [_part(p) for p in content] if isinstance(content, list) else content


def _messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rebuilt field by field: Mistral rejects any key its message schemas do not have."""
    ids = _tool_id_map(messages)
    # Mistral's tool messages take the function's `name`; OpenAI's only point at the call.
    names = {
        c["id"]: (c.get("function") or {}).get("name")
        for m in messages
        for c in m.get("tool_calls") or ()
        if isinstance(c.get("id"), str)
    }
    out: list[dict[str, Any]] = []
    for i, m in enumerate(messages):
        role, content = m["role"], _content(m.get("content"))
        if role in ("system", "developer", "user"):
            out.append({"role": "user" if role == "user" else "system", "content": content})
        elif role == "assistant":
            if m.get("function_call"):
                raise UnsupportedRequest(
                    "legacy 'function_call' messages are not supported: use tool_calls",
                    param=f"messages[{i}].function_call",
                )
            msg: dict[str, Any] = {"role": "assistant", "content": content}
            if m.get("tool_calls"):
                msg["tool_calls"] = [
                    {
                        "id": ids.get(c.get("id")) if isinstance(c.get("id"), str) else None,
                        "type": "function",
                        "function": {
                            "name": c["function"]["name"],
                            "arguments": c["function"].get("arguments") or "{}",
                        },
                    }
                    for c in m["tool_calls"]
                ]
            out.append({**msg, "prefix": True} if m.get("prefix") is True else msg)
        elif role == "tool":
            name = {"name": names[m["tool_call_id"]]} if names.get(m["tool_call_id"]) else {}
            out.append({"role": "tool", "content": content, "tool_call_id": ids[m["tool_call_id"]], **name})
        else:
            raise UnsupportedRequest(
                f"messages with role '{role}' are not supported by mistral: use tools",
                param=f"messages[{i}].role",
            )
    # A trailing assistant turn is accepted only as a prefix for the answer to continue.
    if out[-1]["role"] == "assistant" and not out[-1].get("tool_calls"):
        out[-1]["prefix"] = True
    return out


def _tool_choice(choice: Any) -> Any:
    if choice in ("auto", "none", "any", "required"):
        return "any" if choice == "required" else choice  # "any" is understood by every version
    if isinstance(choice, dict) and isinstance((choice.get("function") or {}).get("name"), str):
        return {"type": "function", "function": {"name": choice["function"]["name"]}}
    raise UnsupportedRequest(
        f"tool_choice {orjson.dumps(choice).decode()} is not supported by mistral", param="tool_choice"
    )


def translate_request(req: dict[str, Any], model: str) -> dict[str, Any]:
    """The canonical request as Mistral takes it (see mistral.py's docstring)."""
    for field in REJECTED_FIELDS:
        if req.get(field) is not None:
            raise UnsupportedRequest(f"'{field}' is not supported by mistral", param=field)
    modalities = req.get("modalities")  # dropped; only asking for audio is refused
    if isinstance(modalities, list) and "audio" in modalities:
        raise UnsupportedRequest("audio output is not supported by mistral", param="modalities")
    out = {k: v for k, v in req.items() if k not in DROPPED_FIELDS and k not in REJECTED_FIELDS}
    for old, new in RENAMED_FIELDS:
        if out.get(old) is not None:
            out[new] = out.pop(old)
        out.pop(old, None)
    out["model"] = model
    out["messages"] = _messages(req["messages"])
    if req.get("tools"):
        out["tools"] = [
            {
                "type": "function",
                "function": {k: t["function"][k] for k in _FUNCTION_KEYS if k in t["function"]},
            }
            for t in req["tools"]
        ]
    if req.get("tool_choice") is not None:
        out["tool_choice"] = _tool_choice(req["tool_choice"])
    return out
