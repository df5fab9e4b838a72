"""Canonical chat-completions request -> Google `GenerateContentRequest`.

Shared by the Gemini API and Vertex AI providers: both take the same body and differ only
in path and credential. Pure functions; the canonical request is never modified (every
list and dict in the result is new, so a retry can translate the same request again).
"""

from __future__ import annotations

import copy
from typing import Any

import orjson

from ._gemini_media import INPUT_AUDIO_TYPES, media_part
from ._gemini_schema import clean_schema
from ._gemini_thinking import GeminiThinking, thinking_config
from .base import UnsupportedRequest, max_tokens_of, stop_list, text_of

# OpenAI request fields with no Gemini counterpart. They are ignored on purpose, not by
# accident: listed here so the README's translation table stays honest.
DROPPED_FIELDS: tuple[str, ...] = (
    "user",
    "logit_bias",
    "logprobs",
    "top_logprobs",
    "stream_options",
    "parallel_tool_calls",
    "store",
    "metadata",
    "service_tier",
    "prediction",
    "modalities",
    "audio",
    "web_search_options",
    "verbosity",
    "prompt_cache_key",
    "safety_identifier",
)

# Assistant-message fields with no Gemini counterpart. `reasoning_content` and
# `thinking_blocks` are another provider's reasoning echoed back (Gemini takes neither; its
# own thought signatures travel on tool calls, see _assistant_parts).
DROPPED_MESSAGE_FIELDS: tuple[str, ...] = ("name", "reasoning_content", "thinking_blocks")

# What is refused with a 400 rather than sent in a form that changes its meaning.
REJECTED: tuple[str, ...] = (
    "content parts other than text, image_url, input_audio and inline file_data",
    "media types Gemini cannot read (see _gemini_media.ACCEPTED_TYPES)",
    "reasoning_effort on a model without known thinking controls, and 'none' where thinking "
    "cannot be switched off (see _gemini_thinking)",
    "file ids (`file.file_id`)",
    "tools other than functions",
    "tool_choice 'allowed_tools'",
    "response_format types other than text, json_object and json_schema",
    "tool-call arguments that are not a JSON object",
    "tool results whose tool_call_id matches no earlier tool call",
    "JSON-schema $refs other than local #/$defs or #/definitions",
)

# Simple numeric settings: canonical name -> generationConfig name.
_CONFIG_FIELDS = (
    ("temperature", "temperature"),
    ("top_p", "topP"),
    ("n", "candidateCount"),
    ("seed", "seed"),
    ("presence_penalty", "presencePenalty"),
    ("frequency_penalty", "frequencyPenalty"),
)

_NO_THINKING_SETTINGS = GeminiThinking()


def translate_request(
    req: dict[str, Any], model: str = "", thinking: GeminiThinking = _NO_THINKING_SETTINGS
) -> dict[str, Any]:
    """`model` is the model the body is sent to: it decides the thinking controls."""
    system, contents = _contents(req["messages"])
    body: dict[str, Any] = {"contents": contents}
    if system:
        body["systemInstruction"] = {"parts": system}
    declarations = _declarations(req.get("tools"))
    if declarations:
        body["tools"] = [{"functionDeclarations": declarations}]
        tool_config = _tool_config(req.get("tool_choice"))
        if tool_config:
            body["toolConfig"] = tool_config
    config = _generation_config(req)
    thinking_settings = thinking_config(req, model, thinking)
    if thinking_settings:
        config["thinkingConfig"] = thinking_settings
    if config:
        body["generationConfig"] = config
    return body


# ---- messages ------------------------------------------------------------------------


def _contents(messages: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    system: list[dict[str, Any]] = []
    contents: list[dict[str, Any]] = []
    call_names: dict[str, str] = {}  # tool_call_id -> function name, for tool results
    for i, msg in enumerate(messages):
        role, where = msg["role"], f"messages[{i}]"
        if role in ("system", "developer"):
            # Gemini has one system instruction, wherever the messages were.
            system.extend(_text_parts(msg.get("content")))
            continue
        if role == "user":
            gemini_role, parts = "user", _user_parts(msg.get("content"), where)
        elif role == "assistant":
            gemini_role, parts = "model", _assistant_parts(msg, where, call_names)
        elif role == "tool":
            name = call_names.get(msg["tool_call_id"]) or msg.get("name")
            if not isinstance(name, str):
                raise UnsupportedRequest(
                    f"'{where}.tool_call_id' {msg['tool_call_id']!r} matches no earlier assistant "
                    "tool call: Gemini needs the function's name for every tool result"
                )
            gemini_role, parts = "user", [_function_response(name, msg.get("content"))]
        else:  # "function": the deprecated form of a tool result
            gemini_role, parts = "user", [_function_response(msg.get("name") or "", msg.get("content"))]
        if not parts:
            continue  # Gemini rejects turns without parts; an empty message says nothing
        # Gemini wants turns to alternate; several tool results in a row become one turn.
        if contents and contents[-1]["role"] == gemini_role:
            contents[-1]["parts"].extend(parts)
        else:
            contents.append({"role": gemini_role, "parts": parts})
    if not contents:
        raise UnsupportedRequest(
            "Gemini needs at least one user or assistant message besides system messages"
        )
    return system, contents


def _text_parts(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, list):  # text and refusal parts; Gemini rejects empty text
        texts = [p.get("text") or p.get("refusal") for p in content if isinstance(p, dict)]
        return [{"text": t} for t in texts if isinstance(t, str) and t]
    text = text_of(content)
    return [{"text": text}] if text else []


def _user_parts(content: Any, where: str) -> list[dict[str, Any]]:
    if not isinstance(content, list):
        return _text_parts(content)
    parts: list[dict[str, Any]] = []
    for j, part in enumerate(content):
        kind = part.get("type")
        if kind == "text":
            if part["text"]:
                parts.append({"text": part["text"]})
        elif kind == "image_url":
            image = part.get("image_url")
            url = image.get("url") if isinstance(image, dict) else image
            parts.append(media_part(url, f"{where}.content[{j}]"))
        elif kind == "input_audio":
            audio = part.get("input_audio") or {}
            mime = INPUT_AUDIO_TYPES.get(str(audio.get("format")))
            if mime is None or not isinstance(audio.get("data"), str):
                raise UnsupportedRequest(
                    f"'{where}.content[{j}]': audio must be wav or mp3 data", param=f"{where}.content[{j}]"
                )
            parts.append({"inlineData": {"mimeType": mime, "data": audio["data"]}})
        elif kind == "file":
            data = (part.get("file") or {}).get("file_data")
            if not isinstance(data, str):
                raise UnsupportedRequest(
                    f"'{where}.content[{j}]': only inline files (file_data) "
                    "can be sent to Gemini, not file ids"
                )
            parts.append(media_part(data, f"{where}.content[{j}]"))
        else:
            raise UnsupportedRequest(
                f"'{where}.content[{j}]': content of type {kind!r} cannot be sent to Gemini"
            )
    return parts


def _assistant_parts(msg: dict[str, Any], where: str, call_names: dict[str, str]) -> list[dict[str, Any]]:
    # Only content and tool calls are read: DROPPED_MESSAGE_FIELDS never reach Gemini.
    parts = _text_parts(msg.get("content"))
    calls = list(msg.get("tool_calls") or ())
    if isinstance(msg.get("function_call"), dict):  # deprecated single-call form
        calls.append({"function": msg["function_call"]})
    for j, call in enumerate(calls):
        fn = call["function"]
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            raise UnsupportedRequest(
                "a tool call needs a function name", param=f"{where}.tool_calls[{j}].function"
            )
        part: dict[str, Any] = {
            "functionCall": {
                "name": fn["name"],
                "args": _arguments(fn.get("arguments"), f"{where}.tool_calls[{j}]"),
            }
        }
        # Gemini 3 rejects a function-call history without the thought signatures it
        # issued; they travel through clients the way Google's own OpenAI endpoint sends
        # them: `extra_content.google.thought_signature` on the tool call.
        extra = call.get("extra_content")
        google = extra.get("google") if isinstance(extra, dict) else None
        signature = google.get("thought_signature") if isinstance(google, dict) else None
        if isinstance(signature, str) and signature:
            part["thoughtSignature"] = signature
        parts.append(part)
        if isinstance(call.get("id"), str):
            call_names[call["id"]] = fn["name"]
    return parts


def _arguments(raw: Any, where: str) -> dict[str, Any]:
    if raw is None or raw == "":
        return {}
    try:
        args = orjson.loads(raw) if isinstance(raw, (str, bytes)) else copy.deepcopy(raw)
    except orjson.JSONDecodeError:
        raise UnsupportedRequest(f"'{where}.function.arguments' is not valid JSON") from None
    if not isinstance(args, dict):
        raise UnsupportedRequest(f"'{where}.function.arguments' must be a JSON object for Gemini")
    return args


def _function_response(name: str, content: Any) -> dict[str, Any]:
    # Gemini wants an object. A tool that returned a JSON object is passed as is;
    # anything else is wrapped so the model still sees the exact text.
    text = text_of(content)
    try:
        parsed = orjson.loads(text)
    except orjson.JSONDecodeError:
        parsed = None
    response = parsed if isinstance(parsed, dict) else {"content": text}
    return {"functionResponse": {"name": name, "response": response}}


# ---- tools ---------------------------------------------------------------------------


def _declarations(tools: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    out = []
    for i, tool in enumerate(tools or ()):
        if tool.get("type", "function") != "function":
            raise UnsupportedRequest(f"'tools[{i}]': only function tools can be sent to Gemini")
        fn = tool["function"]
        decl: dict[str, Any] = {"name": fn["name"]}
        if isinstance(fn.get("description"), str):
            decl["description"] = fn["description"]
        params = clean_schema(fn.get("parameters"))
        # Gemini rejects an OBJECT schema without properties ("should be non-empty for
        # OBJECT type"), which is what a function without arguments declares.
        if params.get("properties"):
            decl["parameters"] = params
        out.append(decl)
    return out


def _tool_config(choice: Any) -> dict[str, Any] | None:
    if choice is None:
        return None
    if isinstance(choice, str):
        mode = {"auto": "AUTO", "none": "NONE", "required": "ANY"}.get(choice)
        if mode is None:
            raise UnsupportedRequest(f"'tool_choice' {choice!r} is not supported")
        return {"functionCallingConfig": {"mode": mode}}
    fn = choice.get("function") if isinstance(choice, dict) else None
    name = fn.get("name") if isinstance(fn, dict) else None
    if not isinstance(name, str) or choice.get("type", "function") != "function":
        raise UnsupportedRequest("'tool_choice' must be auto, none, required or a named function")
    return {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": [name]}}


# ---- generation settings ---------------------------------------------------------------


def _generation_config(req: dict[str, Any]) -> dict[str, Any]:
    config: dict[str, Any] = {}
    for ours, theirs in _CONFIG_FIELDS:
        if req.get(ours) is not None:
            config[theirs] = req[ours]
    top_k = req.get("top_k")
    if top_k is not None:
        if not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < 1:
            raise UnsupportedRequest("'top_k' must be a positive integer", param="top_k")
        config["topK"] = top_k
    max_tokens = max_tokens_of(req)
    if max_tokens is not None:
        config["maxOutputTokens"] = max_tokens
    stop = stop_list(req)
    if stop:
        config["stopSequences"] = stop
    fmt = req.get("response_format")
    if isinstance(fmt, dict) and fmt.get("type") not in (None, "text"):
        if fmt["type"] not in ("json_object", "json_schema"):
            raise UnsupportedRequest(f"'response_format.type' {fmt['type']!r} is not supported")
        config["responseMimeType"] = "application/json"
        spec = fmt.get("json_schema") if fmt["type"] == "json_schema" else None
        if spec is not None and not isinstance(spec, dict):
            raise UnsupportedRequest(
                "'response_format.json_schema' must be an object", param="response_format"
            )
        schema = spec.get("schema") if spec else None
        if isinstance(schema, dict):
            config["responseSchema"] = clean_schema(schema)
    return config
