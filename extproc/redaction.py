"""Keeping the gateway's own secrets out of what clients receive.

Providers quote the credential they were sent when they reject it, wholly or in part
(OpenAI: "Incorrect API key provided: sk-proj-****…abcd"), in the error body and
sometimes in headers. With an injected credential that key is the gateway's, so every
value the processor holds (secrets.py registers them all) is removed from what
reaches a client, in every form redaction_patterns.py lists (a fragment of it or a masked
echo, as it is or in an encoding a secret travels in).

Each match becomes MARK. Detection finds the runs of at least FRAGMENT of the characters
secrets are made of, cuts them into consecutive _GRAM-character pieces (two regex passes,
in C) and checks those against the set of every _GRAM-character piece of every secret
(one set operation, in C): a shared run of 2 * _GRAM - 1 characters always holds a whole
piece. Only a hit is looked at in Python, extended along the secret, and kept if it is
FRAGMENT long. A Redactor is built once per change of the secret values (`current()`).
scripts/bench_redaction.py measures the cost.
"""

from __future__ import annotations

import asyncio
import copy
import re
from typing import Any

import orjson

from . import secrets as secret_store
from .redaction_patterns import (
    _GRAM,
    _MASK_RUN,
    FRAGMENT,
    MASKED_TAIL,
    MIN_SECRET,
    _char_class,
    _forms,
    _masked_patterns,
    may_hold_mask,
)
from .sse import SSEEvent

MARK = "[REDACTED]"
# Texts are scanned in blocks of this many characters, overlapping by more than a key.
_BLOCK = 4096
_OVERLAP = 512
# Bound on the memory of runs known to be clean (then it starts again).
_CLEAN_RUNS = 8192
# How far around a masked echo the rest of a key is looked for.
_MASK_REACH = 48


class Redactor:
    """Finds and removes the given secret values from text, JSON and headers."""

    __slots__ = ("_chars", "_clean", "_grams", "_heads", "_index", "_pieces", "_runs", "_tails", "_variants")

    def __init__(self, values: list[str]) -> None:
        # (text, public prefix length) of every form each secret can take.
        self._variants: list[tuple[str, int]] = []
        for value in dict.fromkeys(v for v in values if len(v) >= MIN_SECRET):
            self._variants.extend(_forms(value))
        self._index: dict[str, list[tuple[int, int]]] = {}
        chars: set[str] = set()
        for vi, (text, public) in enumerate(self._variants):
            chars.update(text)
            # Pieces of the public prefix alone are not indexed: they cannot make a leak,
            # and text that repeats them must not cost anything.
            for i in range(max(0, public - _GRAM + 1), len(text) - _GRAM + 1):
                self._index.setdefault(text[i : i + _GRAM], []).append((vi, i))
        self._chars = frozenset(chars)
        self._grams = frozenset(self._index)
        # Runs of secret characters long enough to hold a leak (most words of prose are
        # not), then consecutive pieces of each. The pieces are written as repeated
        # classes, not a {n} repeat, so the engine skips to a candidate character in C.
        cls = f"[{_char_class(chars)}]"
        self._runs = re.compile(f"{cls}{{{FRAGMENT},}}") if chars else None
        self._pieces = re.compile(cls * _GRAM) if chars else None
        self._tails, self._heads = _masked_patterns(values, chars)
        # Runs already found to hold no piece of a secret. Stream events repeat most of
        # theirs (ids, model, field names), so most runs are looked at only once.
        self._clean: set[str] = set()

    def __bool__(self) -> bool:
        return bool(self._variants)

    # ---- finding ----------------------------------------------------------------------
    def spans(self, text: str) -> list[tuple[int, int]]:
        """Merged (start, end) spans of `text` that are secrets or fragments of one."""
        found: list[tuple[int, int]] = []
        pieces, runs = self._pieces, self._runs
        if pieces is not None and runs is not None:
            # In blocks, so that a hit (rare: a piece of a secret) is looked for again only
            # in its block; blocks overlap so that no leak is cut in two.
            for lo in range(0, max(1, len(text) - _OVERLAP), _BLOCK):
                block = text[lo : lo + _BLOCK + _OVERLAP] if len(text) > _BLOCK else text
                fresh = set(runs.findall(block)).difference(self._clean)
                if not fresh:
                    continue
                # "\n" is never part of a secret: each run's pieces start at its start.
                hits = self._grams.intersection(pieces.findall("\n".join(fresh)))
                if not hits:
                    if len(self._clean) > _CLEAN_RUNS:
                        self._clean.clear()
                    self._clean.update(fresh)
                    continue
                for gram in hits:
                    at = block.find(gram)
                    while at >= 0:  # wherever it occurs, aligned or not
                        self._verify(text, lo + at, self._index[gram], found)
                        at = block.find(gram, at + 1)
        if self._tails is not None:
            self._masked_tails(text, found)
        if self._heads is not None:
            for m in self._heads.finditer(text):
                found.append(self._widen(text, *m.span()))
        if not found:
            return []
        found.sort()
        merged = [found[0]]
        for s, e in found[1:]:
            if s <= merged[-1][1]:
                if e > merged[-1][1]:
                    merged[-1] = (merged[-1][0], e)
            else:
                merged.append((s, e))
        return merged

    def _verify(self, text: str, p: int, hits: list[tuple[int, int]], found: list[tuple[int, int]]) -> None:
        """Extend a piece found at `p` both ways along each secret form it occurs in; keep
        runs of FRAGMENT characters or more holding at least MASKED_TAIL characters past
        the form's public prefix (`sk-proj-Ab` tells nothing)."""
        n = len(text)
        for vi, q in hits:
            key, public = self._variants[vi]
            left = 0
            while p - left > 0 and q - left > 0 and text[p - left - 1] == key[q - left - 1]:
                left += 1
            right = _GRAM
            while p + right < n and q + right < len(key) and text[p + right] == key[q + right]:
                right += 1
            if left + right >= FRAGMENT and q + right >= public + MASKED_TAIL:
                found.append((p - left, p + right))

    def _masked_tails(self, text: str, found: list[tuple[int, int]]) -> None:
        """A mask, then a secret's last characters. Each maximal mask run is found once (in
        C), and the tail is tried just after it, and a few characters earlier in case the
        run's last characters (an `x`, say) belong to the tail: a bounded number of tries
        per run, so a megabyte of `xxxx` costs one pass, not one pass per position."""
        if not may_hold_mask(text):
            return
        tail = self._tails
        for run in _MASK_RUN.finditer(text):
            start, end = run.span()
            for pos in range(end, max(start + 1, end - FRAGMENT) - 1, -1):
                m = tail.match(text, pos)  # type: ignore[union-attr]
                if m:
                    found.append(self._widen(text, start, m.end()))
                    break

    def _widen(self, text: str, start: int, end: int) -> tuple[int, int]:
        """A masked echo goes with the key characters around it (its visible prefix)."""
        chars = self._chars
        lo = start
        while lo > 0 and start - lo < _MASK_REACH and text[lo - 1] in chars:
            lo -= 1
        hi = end
        while hi < len(text) and hi - end < _MASK_REACH and text[hi] in chars:
            hi += 1
        return lo, hi

    # ---- removing ---------------------------------------------------------------------
    def redact(self, text: str) -> str:
        """`text` without secrets; the same object when there was nothing to remove."""
        spans = self.spans(text)
        if not spans:
            return text
        out, last = [], 0
        for s, e in spans:
            out.append(text[last:s])
            out.append(MARK)
            last = e
        out.append(text[last:])
        return "".join(out)

    def redact_value(self, value: Any) -> tuple[Any, bool]:
        """A JSON value with every string (and key) redacted, and whether anything was."""
        if isinstance(value, str):
            new = self.redact(value)
            return new, new is not value
        if isinstance(value, list):
            changed = False
            items = []
            for item in value:
                new, c = self.redact_value(item)
                items.append(new)
                changed |= c
            return (items, True) if changed else (value, False)
        if isinstance(value, dict):
            changed = False
            out = {}
            for k, v in value.items():
                nk = self.redact(k) if isinstance(k, str) else k
                nv, c = self.redact_value(v)
                out[nk] = nv
                changed |= c or nk is not k
            return (out, True) if changed else (value, False)
        return value, False

    def redact_body(self, raw: bytes) -> bytes:
        """A response body (JSON or not) without secrets; `raw` itself when it had none."""
        if not raw or not self._variants:
            return raw
        text = raw.decode("utf-8", "replace")
        if not self.spans(text):
            return raw
        return self._redact_document(text).encode()

    def redact_event(self, ev: SSEEvent) -> SSEEvent:
        """An SSE event without secrets in its data, comments, name or id; `ev` itself
        when it had none. Events are whole, so a secret cut across chunks is found."""
        if not self._variants:
            return ev
        data = ev.data
        changed = bool(data) and bool(self.spans(data))
        if not changed and not ev.comments and ev.id is None and ev.event is None:
            return ev
        comments = [self.redact(c) for c in ev.comments]
        name = self.redact(ev.event) if ev.event is not None else None
        eid = self.redact(ev.id) if ev.id is not None else None
        if (
            not changed
            and name is ev.event
            and eid is ev.id
            and all(a is b for a, b in zip(comments, ev.comments, strict=False))
        ):
            return ev
        new = copy.copy(ev)
        new.data = self._redact_document(data) if changed else data
        new.comments, new.event, new.id = comments, name, eid
        return new

    def _redact_document(self, text: str) -> str:
        """JSON stays valid JSON: its strings are redacted in the parsed document. Text that
        is not JSON, or a secret only an escaped form inside a string shows, is redacted as
        text."""
        try:
            doc = orjson.loads(text)
        except orjson.JSONDecodeError:
            return self.redact(text)
        new, _changed = self.redact_value(doc)
        out = orjson.dumps(new).decode()
        return self.redact(out) if self.spans(out) else out

    def redact_headers(self, pairs: list[tuple[str, str]]) -> dict[str, list[str]]:
        """Headers (in wire order, repeats kept) -> {name: all its values, redacted} for
        each header that had a secret in any of its values; {} for the usual case."""
        if not self._variants or not pairs:
            return {}
        if not self.spans("\n".join(v for _, v in pairs)):
            return {}
        leaked = {k for k, v in pairs if self.spans(v)}
        return {k: [self.redact(v) for name, v in pairs if name == k] for k in leaked}


# ---- the current redactor ----------------------------------------------------------------

_current: tuple[int, Redactor] | None = None


def current() -> Redactor:
    """The redactor for the secret values held now (rebuilt only when they change)."""
    global _current
    gen = secret_store.generation()
    if _current is None or _current[0] != gen:
        _current = (gen, Redactor(secret_store.known_values()))
    return _current[1]


# Bodies larger than this are scanned on a worker thread, not on the event loop that
# serves every other stream (a megabyte of base64 takes tens of milliseconds).
_THREAD_BYTES = 64 * 1024


async def redact_body(raw: bytes) -> bytes:
    """`Redactor.redact_body` with the current secrets, large bodies off the loop."""
    redactor = current()
    if not redactor:
        return raw
    if len(raw) > _THREAD_BYTES:
        return await asyncio.to_thread(redactor.redact_body, raw)
    return redactor.redact_body(raw)
