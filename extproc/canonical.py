"""The canonical request: an OpenAI chat-completions body, checked once at the edge.

Everything after this point (policies, translators) may rely on the shape checked here.
The check is hand-written rather than a pydantic model on purpose: it runs on every
request, must leave unknown fields untouched for passthrough providers, and only needs to
reject what would make the request meaningless or make a translator crash.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from .errors import GatewayError, bad_request

ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})
# OpenAI's values ("none" and "xhigh" are taken by its newest models); translators map
# each onto their provider's thinking controls.
REASONING_EFFORTS = ("none", "minimal", "low", "medium", "high", "xhigh")
JSON_CONTENT_TYPES = ("application/json",)


def check_content_type(value: str | None) -> None:
    """Only JSON bodies are accepted. A missing content type is read as JSON."""
    if value is None:
        return
    media = value.split(";", 1)[0].strip().lower()
    if media not in JSON_CONTENT_TYPES and not media.endswith("+json"):
        raise GatewayError(
            415, f"unsupported content type '{media}': send application/json", code="unsupported_media_type"
        )


def empty_body() -> GatewayError:
    """The client sent no body (a headers-only request, or zero bytes)."""
    return bad_request("the request body is empty: expected a JSON object", code="invalid_json")


def parse_request(body: bytes) -> dict[str, Any]:
    """Parse and validate a chat-completions request body."""
    if not body:
        raise empty_body()
    try:
        req = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise bad_request(f"the request body is not valid JSON: {exc}", code="invalid_json") from None
    if not isinstance(req, dict):
        raise bad_request(
            f"the request body must be a JSON object, not {_kind(req)}", code="invalid_request_body"
        )
    _refuse_deep_nesting(body, req)
    _refuse_rounded_integers(body, req)
    validate_request(req)
    return req


# orjson reads JSON nested up to 1024 levels but writes at most 254, and the gateway
# writes every request it changes (enrichment, defaults, any translation, which may wrap
# parts a few levels deeper): a request nested deeper failed there with a 500. No real
# request comes near this (a deep JSON schema has a few dozen levels).
MAX_NESTING = 200


def _refuse_deep_nesting(body: bytes, req: dict[str, Any]) -> None:
    # Cheap first: so deep a body holds at least as many brackets as levels.
    if body.count(b"{") + body.count(b"[") <= MAX_NESTING:
        return
    # The containers still to look at, each with its depth; the request is depth 1.
    todo: list[tuple[Any, int]] = [(req, 1)]
    while todo:
        value, depth = todo.pop()
        if depth > MAX_NESTING:
            raise bad_request(
                f"the request body nests objects and arrays more than {MAX_NESTING} levels deep",
                code="invalid_request_body",
            )
        children = value.values() if isinstance(value, dict) else value
        todo.extend((child, depth + 1) for child in children if isinstance(child, dict | list))


# orjson keeps integers in [-2**63, 2**64 - 1] exact and silently parses larger ones as
# floats: a `seed` of 2**70 would reach the provider as 1.1805916207174113e21. Such
# integers are refused with a 400 rather than rounded.
INT_MIN, INT_MAX = -(2**63), 2**64 - 1
# Any integer literal outside that range has at least 19 digits. Mapping every digit to "0"
# and everything else to " " lets a C-speed bytes.find look for such a run.
_DIGIT_RUN = b"0" * 19
_DIGITS_ONLY = bytes(48 if 48 <= i <= 57 else 32 for i in range(256))
# Strings are skipped whole, so only integer literals outside strings are captured: a run
# of 19+ digits with no digit, letter, '.', '+' or '-' before it (that would be a fraction
# or an exponent) and no '.', digit or exponent after it (that would be a float).
_STRING_OR_LONG_INT = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|(?<![\w.+-])(-?[0-9]{19,})(?![\w.])')


def _refuse_rounded_integers(body: bytes, req: dict[str, Any]) -> None:
    # Cheap first: no 19-digit run anywhere (the usual case), or no float large enough to
    # have come from such an integer; only then read the raw text.
    if body.translate(_DIGITS_ONLY).find(_DIGIT_RUN) < 0 or not _has_huge_float(req):
        return
    for m in _STRING_OR_LONG_INT.finditer(body):
        literal = m.group(1)
        # More than 20 digits is out of range (and int() of a huge literal is costly).
        if literal is not None and (len(literal.lstrip(b"-")) > 20 or not INT_MIN <= int(literal) <= INT_MAX):
            path = _path_of_float(req, float(literal))
            shown = literal.decode() if len(literal) <= 40 else literal[:37].decode() + "..."
            raise bad_request(
                f"'{path or 'a number'}' is {shown}: integers must lie between {INT_MIN} and "
                f"{INT_MAX}, or they cannot be passed on exactly",
                code="invalid_value",
                param=path,
            )


def _has_huge_float(doc: Any) -> bool:
    """Whether a float of magnitude 2**63 or more is anywhere in `doc` (only an
    out-of-range integer, or a huge float literal, gives one)."""
    stack = [doc]
    while stack:
        node = stack.pop()
        kind = type(node)
        if kind is dict:
            stack.extend(node.values())
        elif kind is list:
            stack.extend(node)
        elif kind is float and abs(node) >= 2.0**63:
            return True
    return False


def _path_of_float(doc: Any, value: float) -> str | None:
    """The path ("tools[0].function.parameters.maximum") of a float equal to `value`."""
    stack: list[tuple[Any, str]] = [(doc, "")]
    while stack:
        node, path = stack.pop()
        if type(node) is dict:
            stack.extend((v, f"{path}.{k}" if path else str(k)) for k, v in reversed(node.items()))
        elif type(node) is list:
            stack.extend((v, f"{path}[{i}]") for i, v in reversed(list(enumerate(node))))
        elif type(node) is float and node == value:
            return path
    return None


def validate_request(req: dict[str, Any]) -> None:
    messages = req.get("messages")
    if messages is None:
        raise bad_request("'messages' is required", code="missing_required_parameter", param="messages")
    if not isinstance(messages, list):
        raise bad_request(
            f"'messages' must be an array, not {_kind(messages)}", code="invalid_type", param="messages"
        )
    if not messages:
        raise bad_request(
            "'messages' must contain at least one message", code="invalid_value", param="messages"
        )
    for i, msg in enumerate(messages):
        _check_message(i, msg)
    _check_type(req, "model", str)
    _check_type(req, "stream", bool)
    _check_type(req, "tools", list)
    _check_type(req, "stream_options", dict)
    for key in ("temperature", "top_p", "presence_penalty", "frequency_penalty"):
        _check_number(req, key)
    effort = req.get("reasoning_effort")
    if effort is not None and effort not in REASONING_EFFORTS:
        raise bad_request(
            f"'reasoning_effort' must be one of {', '.join(REASONING_EFFORTS)}",
            code="invalid_value",
            param="reasoning_effort",
        )
    for key in ("max_tokens", "max_completion_tokens", "n", "top_k"):
        value = req.get(key)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            raise bad_request(f"'{key}' must be a positive integer", code="invalid_type", param=key)
    stop = req.get("stop")
    if (
        stop is not None
        and not isinstance(stop, str)
        and not (isinstance(stop, list) and all(isinstance(s, str) for s in stop))
    ):
        raise bad_request("'stop' must be a string or an array of strings", code="invalid_type", param="stop")
    for i, tool in enumerate(req.get("tools") or ()):
        fn = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            raise bad_request(
                f'\'tools[{i}]\' must be {{"type": "function", "function": {{"name": ...}}}}',
                code="invalid_type",
                param=f"tools[{i}]",
            )


def _check_message(i: int, msg: Any) -> None:
    param = f"messages[{i}]"
    if not isinstance(msg, dict):
        raise bad_request(f"'{param}' must be an object, not {_kind(msg)}", code="invalid_type", param=param)
    role = msg.get("role")
    if not isinstance(role, str) or role not in ROLES:
        raise bad_request(
            f"'{param}.role' must be one of {', '.join(sorted(ROLES))}",
            code="invalid_value",
            param=f"{param}.role",
        )
    content = msg.get("content")
    if content is None:
        if role == "assistant" and (msg.get("tool_calls") or msg.get("function_call")):
            pass
        elif role == "assistant":
            pass  # an empty assistant turn is legal in OpenAI's API
        else:
            raise bad_request(
                f"'{param}.content' is required for role '{role}'",
                code="missing_required_parameter",
                param=f"{param}.content",
            )
    elif isinstance(content, list):
        for j, part in enumerate(content):
            if not isinstance(part, dict) or not isinstance(part.get("type"), str):
                raise bad_request(
                    f"'{param}.content[{j}]' must be an object with a 'type'",
                    code="invalid_type",
                    param=f"{param}.content[{j}]",
                )
            if part["type"] == "text" and not isinstance(part.get("text"), str):
                raise bad_request(
                    f"'{param}.content[{j}].text' must be a string",
                    code="invalid_type",
                    param=f"{param}.content[{j}].text",
                )
    elif not isinstance(content, str):
        raise bad_request(
            f"'{param}.content' must be a string or an array of content parts",
            code="invalid_type",
            param=f"{param}.content",
        )
    tool_calls = msg.get("tool_calls")
    if tool_calls is not None:
        if not isinstance(tool_calls, list):
            raise bad_request(
                f"'{param}.tool_calls' must be an array", code="invalid_type", param=f"{param}.tool_calls"
            )
        for j, call in enumerate(tool_calls):
            fn = call.get("function") if isinstance(call, dict) else None
            if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
                raise bad_request(
                    f"'{param}.tool_calls[{j}].function.name' is required",
                    code="invalid_type",
                    param=f"{param}.tool_calls[{j}]",
                )
    blocks = msg.get("thinking_blocks")
    if blocks is not None and (
        not isinstance(blocks, list)
        or not all(isinstance(b, dict) and isinstance(b.get("type"), str) for b in blocks)
    ):
        raise bad_request(
            f"'{param}.thinking_blocks' must be an array of objects with a 'type'",
            code="invalid_type",
            param=f"{param}.thinking_blocks",
        )
    reasoning = msg.get("reasoning_content")
    if reasoning is not None and not isinstance(reasoning, str):
        raise bad_request(
            f"'{param}.reasoning_content' must be a string",
            code="invalid_type",
            param=f"{param}.reasoning_content",
        )
    if role == "tool" and not isinstance(msg.get("tool_call_id"), str):
        raise bad_request(
            f"'{param}.tool_call_id' is required for role 'tool'",
            code="missing_required_parameter",
            param=f"{param}.tool_call_id",
        )


def _check_type(req: dict, key: str, typ: type) -> None:
    value = req.get(key)
    if value is not None and (not isinstance(value, typ) or (typ is not bool and isinstance(value, bool))):
        raise bad_request(
            f"'{key}' must be {_TYPE_NAMES[typ]}, not {_kind(value)}", code="invalid_type", param=key
        )


def _check_number(req: dict, key: str) -> None:
    value = req.get(key)
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
        raise bad_request(f"'{key}' must be a number, not {_kind(value)}", code="invalid_type", param=key)


_TYPE_NAMES = {str: "a string", bool: "a boolean", list: "an array", dict: "an object"}


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def message_text(content: Any) -> str:
    """The text of a message's content: a string, or its text parts joined by newlines."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            p["text"] for p in content if p.get("type") == "text" and isinstance(p.get("text"), str)
        )
    return ""


def wants_stream(req: dict) -> bool:
    return req.get("stream") is True
