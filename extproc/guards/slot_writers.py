"""How a guarded string is written back: the slots `text_slots` finds.

A slot is one guarded string with its role and kind, and a `set` that puts a new text (a
masked one) in its place without breaking the document around it: an object key is renamed
in place, a token of tool-call arguments is replaced inside its JSON
(`json_text.JsonArguments`), and arguments that are not JSON are written back with any
label that lands outside a JSON string quoted. A message's text parts are scanned alone
and across their boundaries, and masked in place (`MessageParts`).
"""

from __future__ import annotations

import itertools
from typing import Any, Protocol

from .json_text import JsonArguments, decode_escapes, quote_labels
from .regex_guard import Finding, mask_label, merge_findings

TEXT, TOKEN = "text", "token"
# How far from a boundary between two text parts of a message a value split across them
# is looked for (MessageParts): a split card, email or phone number is a few dozen
# characters; a custom pattern's match longer than this on one side of a boundary is not.
SEAM_WINDOW = 1024


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


class MessageParts:
    """A message's text parts, read as the one text a model reads: each part is scanned
    alone (`next_piece`), and the text around each boundary between two parts is scanned
    joined with nothing between (`seam_slots`), so a value split across parts
    (`"card 4111 1111"`, `" 1111 1111"`) is found whole. Only a seam's findings that
    cross a boundary count; the others are the parts' own. Masks go back into the parts
    themselves (`flush`: each label in the part where its value starts, the rest of the
    value cut from the parts after it), so every part keeps its place and its other keys;
    a `cache_control` on a part left empty moves to the part before it."""

    __slots__ = ("_next", "found", "pieces", "role", "starts", "text")

    def __init__(self, pieces: list[tuple[dict[str, Any], str]], role: str) -> None:
        self.pieces = pieces  # (part, its text key), in order
        self.role = role
        texts = [part[key] for part, key in pieces]
        self.starts = list(itertools.accumulate((len(t) for t in texts[:-1]), initial=0))
        self.text = "".join(texts)
        self.found: list[Finding] = []
        self._next = 0

    def next_piece(self) -> PartSlot:
        """The slot of the next part's text (the walk meets the parts in order)."""
        slot = PartSlot(self, self._next)
        self._next += 1
        return slot

    def seam_slots(self, window: int = SEAM_WINDOW) -> list[SeamSlot]:
        """The joined text within `window` characters of each boundary (overlapping
        windows merged into one)."""
        ranges: list[list[int]] = []
        for b in self.starts[1:]:
            lo, hi = max(0, b - window), min(len(self.text), b + window)
            if ranges and lo <= ranges[-1][1]:
                ranges[-1][1] = hi
            else:
                ranges.append([lo, hi])
        return [SeamSlot(self, lo, hi) for lo, hi in ranges]

    def add(self, findings: list[Finding], offset: int) -> None:
        self.found.extend(Finding(f.entity, f.start + offset, f.end + offset, f.score) for f in findings)

    def flush(self) -> None:
        """Write every finding reported so far into the parts (overlaps merged)."""
        if not self.found:
            return
        spans = [(f.start, f.end, mask_label(f.entity)) for f in merge_findings(self.found)]
        self.found = []
        old = [part[key] for part, key in self.pieces]
        new = splice_spans(old, spans)
        for i, ((part, key), text) in enumerate(zip(self.pieces, new, strict=True)):
            part[key] = text
            if old[i] and not text and "cache_control" in part:
                _move_breakpoint(self.pieces, i)
        self.text = "".join(new)


class PartSlot:
    """One text part of a message (MessageParts), scanned alone."""

    __slots__ = ("index", "kind", "parts", "role", "text")

    def __init__(self, parts: MessageParts, index: int) -> None:
        part, key = parts.pieces[index]
        self.parts, self.index, self.text, self.role, self.kind = parts, index, part[key], parts.role, TEXT

    def set_found(self, findings: list[Finding]) -> None:
        self.parts.add(findings, self.parts.starts[self.index])

    def set(self, text: str) -> None:
        part, key = self.parts.pieces[self.index]
        part[key] = self.text = text


class SeamSlot:
    """The joined text around one or more boundaries between a message's text parts."""

    __slots__ = ("hi", "kind", "lo", "parts", "role", "text")

    def __init__(self, parts: MessageParts, lo: int, hi: int) -> None:
        self.parts, self.lo, self.hi = parts, lo, hi
        self.text, self.role, self.kind = parts.text[lo:hi], parts.role, TEXT

    def keep(self, findings: list[Finding]) -> list[Finding]:
        """Only findings that cross a boundary: the others are a part's own (and one cut
        by the window's edge could be a false positive)."""
        bounds = [b - self.lo for b in self.parts.starts[1:] if self.lo < b < self.hi]
        return [f for f in findings if any(f.start < b < f.end for b in bounds)]

    def set_found(self, findings: list[Finding]) -> None:
        self.parts.add(findings, self.lo)

    def set(self, text: str) -> None:
        raise AssertionError("a seam is written back through its MessageParts")  # pragma: no cover


def splice_spans(texts: list[str], spans: list[tuple[int, int, str]]) -> list[str]:
    """`texts` after replacing each (start, end) of their concatenation by its label, in
    one pass: the label goes into the text where `start` falls (at a boundary, the next
    non-empty one; at the very end, the last), and what the span covers of later texts is
    cut from them. Spans sorted, not overlapping."""
    out: list[str] = []
    k = 0
    cut_to = 0  # the concatenation is replaced up to here
    offset = 0
    last = len(texts) - 1
    for i, text in enumerate(texts):
        lo, hi = offset, offset + len(text)
        offset = hi
        pos = max(lo, cut_to)
        buf: list[str] = []
        while k < len(spans) and (spans[k][0] < hi or i == last):
            start, end, label = spans[k]
            buf += (text[pos - lo : start - lo], label)
            pos, cut_to = min(end, hi), end
            k += 1
            if end > hi:
                break
        if pos < hi:
            buf.append(text[pos - lo :])
        out.append("".join(buf))
    return out


def _move_breakpoint(pieces: list[tuple[dict[str, Any], str]], emptied: int) -> None:
    """A prompt-caching breakpoint on a part a mask emptied (which Anthropic's translator
    drops) moves to the nearest part before it that still has text, unless that one has
    its own: the cached prefix is then shorter, but still a breakpoint."""
    part = pieces[emptied][0]
    for before, key in reversed(pieces[:emptied]):
        if before is not part and before[key]:
            if "cache_control" not in before:
                before["cache_control"] = part["cache_control"]
            return
