"""Per-choice state of a guarded stream: one stream guard per field of streamed text.

A field is named by its path in the delta: ("content",), ("audio", "transcript"),
("thinking_blocks", 0, "thinking") and any other nested text (`event_slots.streamed_leaf`),
("tool_calls", 2) for the arguments of the tool call with index 2, ("function_call",) for
legacy function-call arguments. A field's guard lives until the choice finishes (or the
stream ends), whatever other fields come between its pieces: a client joins each field's
pieces, so a value split around another field must still be found.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .guards.event_slots import DELTA_NAMES, DELTA_TEXT, streamed_leaf
from .guards.json_text import EscapeDecoder, IntegralNumbers, LabelQuoter, ValueEnd
from .guards.stream_guard import StreamTextGuard

# Delta fields holding text the client sees. Any other string field of a delta (but
# `role`) is streamed text too; these must be text (or a list of parts) when present.
GUARDED_FIELDS = DELTA_TEXT
# Fields whose streamed text is JSON: tool-call arguments.
ARG_FIELDS = ("tool_calls", "function_call")
NAME_KEYS = DELTA_NAMES


class Field:
    __slots__ = ("decoder", "ends", "guard", "names", "numbers", "quoter", "webhook_buffer")

    def __init__(
        self,
        guard: StreamTextGuard | None,
        json_args: bool = False,
        found: Callable[[str], bool] | None = None,
    ) -> None:
        self.guard = guard
        self.webhook_buffer = ""
        # Arguments are JSON text: escapes are decoded before the guard (so `\u0040`
        # hides nothing) and a label that masked a number is quoted after it; the held
        # tail is released when the JSON value closes.
        self.decoder = EscapeDecoder() if json_args else None
        self.quoter = LabelQuoter() if json_args else None
        self.ends = ValueEnd() if json_args else None
        # A number written with a fraction or exponent is read as its integer when that is
        # a value the guards mask (`found`), as requests and JSON answers read it.
        self.numbers = IntegralNumbers(found) if json_args and found is not None else None
        # A nested field's object names (`type`, `index`...) as last seen.
        self.names: dict[str, Any] = {}


class ChoiceState:
    __slots__ = ("envelope", "fields", "finished")

    def __init__(self) -> None:
        self.fields: dict[tuple, Field] = {}
        self.envelope: dict[str, Any] | None = None
        self.finished = False


# The most streamed text fields one choice may hold (each has its own guard and held
# text until the choice finishes): a provider's event of thousands of nested strings would
# otherwise cost time and memory per string for the rest of the stream. Past it the stream
# ends with an error (fail closed).
MAX_TEXT_FIELDS = 256


def text_paths(delta: dict[str, Any], state: ChoiceState) -> list[tuple]:
    """The delta's streamed text fields, and those of the choice still holding text."""
    paths: list[tuple] = [
        (k,)
        for k, v in delta.items()
        if k not in ("role", *ARG_FIELDS) and (isinstance(v, str) or (k in GUARDED_FIELDS and v is not None))
    ]
    for k, v in delta.items():
        if k not in GUARDED_FIELDS and isinstance(v, (dict, list)):
            paths += nested_paths(v, (k,))
    seen = set(paths)
    paths += [k for k in state.fields if k[0] not in ARG_FIELDS and k not in seen]
    if len(paths) > MAX_TEXT_FIELDS:
        raise ValueError(f"a stream choice holds more than {MAX_TEXT_FIELDS} text fields")
    return paths


def nested_paths(node: Any, path: tuple) -> list[tuple]:
    """Paths of the streamed text strings under `node` (at `path`), in document order."""
    out: list[tuple] = []
    stack = [(node, path)]
    while stack:
        v, p = stack.pop()
        if isinstance(v, str):
            if streamed_leaf(p):
                out.append(p)
        elif isinstance(v, dict):
            stack.extend((v[k], (*p, k)) for k in reversed(list(v)))
        elif isinstance(v, list):
            stack.extend((v[i], (*p, i)) for i in reversed(range(len(v))))
    return out


def flat_text(parts: list[Any]) -> str:
    """A text field given as a list of parts: every string in it a client could read as
    text (not `type`, `id`... names), joined in order. Bare strings count."""
    return "".join(str(get_path(parts, p[1:])) for p in nested_paths(parts, ("content",)))


def get_path(node: Any, path: tuple) -> Any:
    for key in path:
        if isinstance(node, dict):
            node = node.get(key)
        elif isinstance(node, list) and isinstance(key, int) and 0 <= key < len(node):
            node = node[key]
        else:
            return None
    return node


def set_leaf(delta: dict, path: tuple, text: str) -> None:
    """Replace the string at `path`, which this event's delta has."""
    parent = get_path(delta, path[:-1])
    parent[path[-1]] = text


def put_new(delta: dict, path: tuple, text: str, names: dict[str, Any]) -> None:
    """Add `text` at `path` of a delta of the gateway's own, building the objects and
    lists on the way (a list is padded with empty objects up to the index); the leaf's
    object gets the names it had."""
    node: Any = delta
    for i, key in enumerate(path[:-1]):
        nxt = path[i + 1]
        empty: Any = [] if isinstance(nxt, int) else {}
        if isinstance(node, list):
            while len(node) <= key:
                node.append({})
            if not isinstance(node[key], (dict, list)) or not node[key]:
                node[key] = empty
            node = node[key]
        else:
            node = node.setdefault(key, empty)
    if isinstance(node, dict):
        if len(path) > 1:
            node.update(names)
        node[path[-1]] = text
    else:
        while len(node) <= path[-1]:
            node.append("")
        node[path[-1]] = text


def names_of(delta: dict, path: tuple) -> dict[str, Any]:
    parent = get_path(delta, path[:-1]) if len(path) > 1 else None
    if not isinstance(parent, dict):
        return {}
    return {k: v for k, v in parent.items() if k in NAME_KEYS and isinstance(v, (str, int))}
