"""How a guarded string is written back: the slots `text_slots` finds.

A slot is one guarded string with its role and kind, and a `set` that puts a new text (a
masked one) in its place without breaking the document around it: an object key is renamed
in place, a token of tool-call arguments is replaced inside its JSON
(`json_text.JsonArguments`), and arguments that are not JSON are written back with any
label that lands outside a JSON string quoted.
"""

from __future__ import annotations

from typing import Any, Protocol

from .json_text import JsonArguments, decode_escapes, quote_labels

TEXT, TOKEN = "text", "token"


class Slot(Protocol):
    """A guarded string: its text and role, and how to write a new text back in its place."""

    text: str
    role: str
    kind: str

    def set(self, text: str) -> None: ...


class TextSlot:
    """One guarded string, `holder[key]`, and how to write it back."""

    __slots__ = ("holder", "key", "kind", "role", "text")

    def __init__(self, holder: Any, key: Any, text: str, role: str = "user", kind: str = TEXT) -> None:
        self.holder, self.key, self.text, self.role, self.kind = holder, key, text, role, kind

    def set(self, text: str) -> None:
        self.holder[self.key] = text
        self.text = text


class KeySlot:
    """An object key a client or model chose. Masking renames it in place (keeping the
    order; a clash with another key gets a `_2` suffix rather than losing a value)."""

    __slots__ = ("_value", "holder", "kind", "role", "text")

    def __init__(self, holder: dict[str, Any], key: str, role: str, value: TextSlot | None) -> None:
        self.holder, self.text, self.role, self.kind, self._value = holder, key, role, TOKEN, value

    def set(self, text: str) -> None:
        new, n = text, 2
        while new in self.holder and new != self.text:
            new, n = f"{text}_{n}", n + 1
        items = list(self.holder.items())
        self.holder.clear()
        self.holder.update((new if k == self.text else k, v) for k, v in items)
        if self._value is not None:  # the value's slot follows its key
            self._value.key = new
        self.text = new


class TokenSlot:
    """One string or number token of JSON arguments."""

    __slots__ = ("doc", "index", "kind", "role", "text")

    def __init__(self, doc: JsonArguments, index: int, text: str, role: str) -> None:
        self.doc, self.index, self.text, self.role, self.kind = doc, index, text, role, TEXT

    def set(self, text: str) -> None:
        self.doc.replace(self.index, text)
        self.text = text


class RawArgumentsSlot(TextSlot):
    """Arguments that are not valid JSON: guarded whole, escapes decoded; a label that
    lands outside a JSON string is quoted."""

    def __init__(self, holder: dict[str, Any], key: str, text: str, role: str) -> None:
        super().__init__(holder, key, decode_escapes(text), role, TEXT)

    def set(self, text: str) -> None:
        stripped = self.text.lstrip()
        self.holder[self.key] = quote_labels(text) if stripped[:1] in ("{", "[") else text
        self.text = text


class JoinedTextSlot:
    """A message's text parts, read as the one text a model reads: joined with nothing
    between, so a value split across parts (`"card 4111 1111"`, `" 1111 1111"`) is found
    whole. The parts stay as they are; a mask goes back into them (`set_found`: each
    finding's label in the part where it starts, the rest of its span cut from the parts
    it covers), so a part's other keys (`cache_control`) keep their place."""

    __slots__ = ("kind", "pieces", "role", "text")

    def __init__(self, pieces: list[tuple[dict[str, Any], str]], role: str) -> None:
        self.pieces = pieces  # (part, its text key: "text" or "refusal"), in order
        self.text = "".join(part[key] for part, key in pieces)
        self.role, self.kind = role, TEXT

    def set_found(self, spans: list[tuple[int, int, str]]) -> None:
        """Replace each (start, end) of the joined text by its label; spans in order, not
        overlapping (a scanner's findings)."""
        texts = [part[key] for part, key in self.pieces]
        for start, end, label in reversed(spans):  # later spans first: offsets stay valid
            _splice(texts, start, end, label)
        for (part, key), text in zip(self.pieces, texts, strict=True):
            part[key] = text
        self.text = "".join(texts)

    def set(self, text: str) -> None:
        """A new joined text (a webhook's mask): the span between the first and the last
        character that changed is written as one splice."""
        old = self.text
        if text == old:
            return
        limit = min(len(old), len(text))
        prefix = 0
        while prefix < limit and old[prefix] == text[prefix]:
            prefix += 1
        suffix = 0
        while suffix < limit - prefix and old[-1 - suffix] == text[-1 - suffix]:
            suffix += 1
        self.set_found([(prefix, len(old) - suffix, text[prefix : len(text) - suffix])])


def _splice(texts: list[str], start: int, end: int, replacement: str) -> None:
    """`"".join(texts)[start:end] = replacement`, in place: the replacement goes into the
    piece where `start` falls, and what the span covers of later pieces is cut from them."""
    offset = 0
    placed = False
    for i, text in enumerate(texts):
        lo, hi = offset, offset + len(text)
        offset = hi
        if not placed and (start < hi or (start == hi and i == len(texts) - 1)):
            cut_end = min(end, hi) - lo
            texts[i] = text[: start - lo] + replacement + text[cut_end:]
            placed = True
        elif placed and lo < end:
            texts[i] = text[min(end, hi) - lo :]
        if offset >= end and placed:
            return
