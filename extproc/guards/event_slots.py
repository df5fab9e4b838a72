"""Where the guards look in a stream event: its own fields, its choices' names and finish
reasons, and each delta's keys, names and numbers, per event (`chunk_slots`); every
string of a provider's error event (`event_slots`). The streamed text itself (content,
reasoning, nested text such as `thinking_blocks[].thinking`, tool-call arguments) is not
here: the stream guard holds it back and follows it across events (guarded_stream.py),
and `streamed_leaf` says which nested strings are such text.

The same rules as for requests and JSON answers (text_slots.py): ids and `model` are
opaque, `usage` and `created` are read as numbers only when they are numbers, and every
other integral number is scanned as its integer.
"""

from __future__ import annotations

from typing import Any

from .slot_writers import TOKEN, Slot
from .text_documents import binary_payload
from .text_slots import _RESPONSE_OPAQUE, _SIGNED, TEXT_FIELDS, _Walk

# Stream deltas: fields holding text the client sees (a string, or a list of parts
# flattened to its text), and the keys of a nested delta object that name it rather than
# hold text (stream_fields.py keeps them with held text released later, so it lands in an
# object of the same kind).
DELTA_TEXT = ("content", *TEXT_FIELDS)
DELTA_NAMES = ("type", "index", "id", "format")


def _signed(path: tuple[Any, ...]) -> bool:
    return len(path) == 3 and path[0] == "thinking_blocks" and path[2] in _SIGNED


def streamed_leaf(path: tuple[Any, ...]) -> bool:
    """Whether the string at `path` (top key first) of a nested stream-delta object is
    streamed text, which the stream guard follows across events under that path
    (guarded_stream.py), rather than a name scanned per event."""
    if path[0] in ("role", "tool_calls", "function_call") or _signed(path):
        return False
    if path[0] == "audio":
        return path == ("audio", "transcript")
    return path[-1] not in DELTA_NAMES


class _EventWalk(_Walk):
    def chunk(self, chunk: dict[str, Any]) -> None:
        """A stream event, minus what the stream guards hold back and release
        (see `streamed_paths`): names, finish reasons, unknown fields."""
        for k in list(chunk):
            if k in _RESPONSE_OPAQUE:
                continue
            v = chunk[k]
            if k in ("usage", "created"):  # numbers the gateway reads; strings scanned
                self.walk(chunk, k, TOKEN, "assistant", numbers=False)
                continue
            if k != "choices" or not isinstance(v, list):
                self.walk(chunk, k, TOKEN, "assistant")
                continue
            for choice in v:
                if not isinstance(choice, dict):
                    continue
                for ck in list(choice):
                    if ck in ("index", "logprobs"):
                        continue
                    if ck == "delta" and isinstance(choice[ck], dict):
                        self.delta(choice[ck])
                    else:
                        self.walk(choice, ck, TOKEN, "assistant")

    def delta(self, delta: dict[str, Any]) -> None:
        for k in list(delta):
            v = delta[k]
            if (isinstance(v, str) and k != "role") or (k in DELTA_TEXT and isinstance(v, list)):
                self.key(delta, k, None, "assistant")
                continue  # streamed text: held back and guarded by the stream guard
            if k in ("tool_calls", "function_call"):
                for call in v if isinstance(v, list) else [v]:
                    if not isinstance(call, dict):
                        continue
                    for ck in list(call):
                        if k == "tool_calls" and ck in ("id", "index"):
                            continue  # a provider's id; an index checked by the stream guard
                        fn = call[ck]
                        if k == "tool_calls" and ck == "function" and isinstance(fn, dict):
                            for fk in list(fn):
                                if fk != "arguments":
                                    self.walk(fn, fk, TOKEN, "assistant")
                        elif not (k == "function_call" and ck == "arguments"):
                            self.walk(call, ck, TOKEN, "assistant")
            elif k == "audio" and isinstance(v, dict):
                for ak in list(v):
                    if ak not in ("id", "transcript") and not (ak == "data" and binary_payload(v[ak])):
                        self.walk(v, ak, TOKEN, "assistant", numbers=ak != "expires_at")
            elif isinstance(v, (dict, list)):
                self.delta_names(delta, k)
            else:
                self.walk(delta, k, TOKEN, "assistant")

    def delta_names(self, delta: dict[str, Any], top: str) -> None:
        """A nested object of a delta (`thinking_blocks`, `reasoning_details`, unknown):
        its keys, names and integral numbers, per event. Its text (`streamed_leaf`) is the
        stream guard's; `thinking_blocks[].signature`/`.data` are not guarded."""
        stack: list[tuple[Any, Any, tuple[Any, ...]]] = [(delta, top, (top,))]
        while stack:
            h, k, path = stack.pop()
            v = h[k]
            slot = None
            if isinstance(v, str):
                if not streamed_leaf(path) and not _signed(path):
                    slot = self.value(h, k, v, TOKEN, "assistant")
            elif self.numbers and isinstance(v, (int, float)) and k not in DELTA_NAMES:
                slot = self.number(h, k, v, "assistant")  # (an `index` is a name, not a value)
            elif isinstance(v, dict):
                stack.extend((v, ck, (*path, ck)) for ck in reversed(list(v)))
            elif isinstance(v, list):
                stack.extend((v, i, (*path, i)) for i in reversed(range(len(v))))
            if isinstance(h, dict):
                self.key(h, k, slot, "assistant")


def chunk_slots(chunk: dict[str, Any]) -> list[Slot]:
    """The guarded strings and integral numbers of a stream event that are not streamed
    text."""
    w = _EventWalk(regex=True, numbers=True)
    w.chunk(chunk)
    return w.out


def event_slots(event: dict[str, Any]) -> list[Slot]:
    """Every string and chosen key of a stream event with nothing opaque in it (a
    provider's error event)."""
    w = _EventWalk(regex=True, numbers=True)
    for k in list(event):
        w.walk(event, k, TOKEN, "assistant")
    return w.out
