"""Per-choice state of a guarded stream: one stream guard per field of streamed text.

A field is named by its path in the delta: ("content",), ("audio", "transcript"),
("tool_calls", 2) for the arguments of the tool call with index 2, ("function_call",) for
legacy function-call arguments.
"""

from __future__ import annotations

from typing import Any

from .guards.json_text import EscapeDecoder, LabelQuoter, ValueEnd
from .guards.stream_guard import StreamTextGuard

# Delta fields holding text the client sees. Any other string field of a delta (but
# `role`) is streamed text too; these must be text when present.
GUARDED_FIELDS = ("content", "refusal", "reasoning_content", "reasoning")
# Fields whose streamed text is JSON: tool-call arguments.
ARG_FIELDS = ("tool_calls", "function_call")


class Field:
    __slots__ = ("decoder", "ends", "guard", "quoter", "webhook_buffer")

    def __init__(self, guard: StreamTextGuard | None, json_args: bool = False) -> None:
        self.guard = guard
        self.webhook_buffer = ""
        # Arguments are JSON text: escapes are decoded before the guard (so `\u0040`
        # hides nothing) and a label that masked a number is quoted after it; the held
        # tail is released when the JSON value closes.
        self.decoder = EscapeDecoder() if json_args else None
        self.quoter = LabelQuoter() if json_args else None
        self.ends = ValueEnd() if json_args else None


class ChoiceState:
    __slots__ = ("envelope", "fields", "finished")

    def __init__(self) -> None:
        self.fields: dict[tuple, Field] = {}
        self.envelope: dict[str, Any] | None = None
        self.finished = False


def text_paths(delta: dict[str, Any], state: ChoiceState) -> list[tuple[str, ...]]:
    """The delta's streamed text fields, and those of the choice still holding text."""
    paths: list[tuple[str, ...]] = [
        (k,)
        for k, v in delta.items()
        if k not in ("role", *ARG_FIELDS) and (isinstance(v, str) or (k in GUARDED_FIELDS and v is not None))
    ]
    audio = delta.get("audio")
    if isinstance(audio, dict) and audio.get("transcript") is not None:
        paths.append(("audio", "transcript"))
    paths += [k for k in state.fields if k[0] not in ARG_FIELDS and k not in paths]
    return paths


def get_path(delta: dict, path: tuple) -> Any:
    node: Any = delta
    for key in path:
        node = node.get(key) if isinstance(node, dict) else None
    return node


def put_path(delta: dict, path: tuple, text: str) -> None:
    if len(path) == 1:
        delta[path[0]] = text
    else:  # copied: the provider's nested object is not ours to change
        delta[path[0]] = {**(delta.get(path[0]) or {}), path[1]: text}


def drop_path(delta: dict, path: tuple) -> None:
    if len(path) == 1:
        delta.pop(path[0], None)
        return
    parent = {k: v for k, v in (delta.get(path[0]) or {}).items() if k != path[1]}
    if parent:
        delta[path[0]] = parent
    else:
        delta.pop(path[0], None)
