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
