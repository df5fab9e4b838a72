"""Keeping the gateway's own secrets out of what clients receive.

Providers quote the credential they were sent when they reject it, wholly or in part
(OpenAI: "Incorrect API key provided: sk-proj-****…abcd"), in the error body and
sometimes in headers. With an injected credential that key is the gateway's, so every
value the processor holds (secrets.py registers them all) is removed from what
reaches a client, in these forms:

- any run of at least FRAGMENT characters of the secret, the whole value included, that
  reaches past its well-known prefix (`sk-proj-` alone is no secret);
- masked forms: a mask (`***`, `...`, `…`, `xxx`) followed by at least MASKED_TAIL of
  the secret's last characters, or its first characters past the prefix followed by a
  mask; the characters around them that could be the rest of the key go too;
- the same in the encodings a secret can travel in: JSON-escaped, percent-encoded,
  base64 (as in a Basic header, at every alignment), and the decoded form of a secret
  that is itself base64.

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
import base64
import binascii
import copy
import re
from typing import Any
from urllib.parse import quote

import orjson

from . import secrets as secret_store
from .sse import SSEEvent

MARK = "[REDACTED]"
# Secrets shorter than this are not redacted: too short to tell from ordinary text
# (secrets.py warns about them when it loads them).
MIN_SECRET = secret_store.REDACTABLE_LENGTH
# The shortest run of a secret's characters that counts as a leak.
FRAGMENT = 8
# A masked echo must show at least this many of the secret's last (or first) characters.
MASKED_TAIL = 4
# Piece length: any shared run of 2 * _GRAM - 1 <= FRAGMENT characters holds a whole piece.
_GRAM = FRAGMENT // 2
# Texts are scanned in blocks of this many characters, overlapping by more than a key.
_BLOCK = 4096
_OVERLAP = 512
# The scheme prefix many keys share (`sk-`, `sk-proj-`, `sk-ant-api03-`, `gsk_`, `xai-`).
_PUBLIC_PREFIX = re.compile(r"(?:[a-z]{1,8}[0-9]{0,3}[-_]){1,3}")
_MASK = r"(?:[*•●]{2,}|[xX#]{3,}|\.{2,}|…)"
# A whole mask: a maximal run of one kind of mask character.
_MASK_RUN = re.compile(r"[*•●]{2,}|[xX#]{3,}|\.{2,}|…+")
# `_MASK_RUN` is an alternation, so the regex engine tries it at every position of a
# text (~10 µs for one stream event); these checks, mostly substring searches in C, rule
# most texts out first.
_X_RUN = re.compile(r"[xX#]{3}")


def may_hold_mask(text: str) -> bool:
    """False when `text` cannot hold a `_MASK_RUN` match (a necessary condition)."""
    if ".." in text or "…" in text or "*" in text or "•" in text or "●" in text:
        return True
    if text.count("x") + text.count("X") + text.count("#") < 3:
        return False
    return _X_RUN.search(text) is not None


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


# ---- building ---------------------------------------------------------------------------


def _public_len(value: str) -> int:
    m = _PUBLIC_PREFIX.match(value)
    # Never so long that too little of the key is left to recognise.
    return min(m.end(), max(0, len(value) - FRAGMENT)) if m else 0


def _forms(value: str) -> list[tuple[str, int]]:
    """Every spelling of `value` a response might carry, with its public prefix length."""
    public = _public_len(value)
    forms = {value: public}
    escaped = orjson.dumps(value).decode()[1:-1]
    forms.setdefault(escaped, public)
    if "/" in value:
        forms.setdefault(escaped.replace("/", "\\/"), public)
    forms.setdefault(quote(value, safe=""), public)
    raw = value.encode()
    for lead in range(3):
        # base64 of the value inside any longer text: the 4-character groups that hold
        # only its bytes are the same wherever it starts, for each alignment mod 3.
        enc = base64.b64encode(b"\0" * lead + raw).decode()
        inner = enc[4 if lead else 0 : -4]
        if len(inner) >= FRAGMENT:
            forms.setdefault(inner, 0)
            forms.setdefault(inner.replace("+", "-").replace("/", "_"), 0)
    decoded = _decoded_base64(value)
    if decoded is not None:
        forms.setdefault(decoded, 0)
    return list(forms.items())


def _decoded_base64(value: str) -> str | None:
    """A secret that is base64 (a Basic credential) also leaks as what it encodes."""
    if len(value) % 4 or not re.fullmatch(r"[A-Za-z0-9+/]+={0,2}", value):
        return None
    try:
        text = base64.b64decode(value, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return text if len(text) >= MIN_SECRET and text.isprintable() else None


def _char_class(chars: set[str]) -> str:
    return "".join(re.escape(c) for c in sorted(chars))


def _masked_patterns(
    values: list[str], chars: set[str]
) -> tuple[re.Pattern[str] | None, re.Pattern[str] | None]:
    """A mask followed by a secret's last characters; and, for keys without a prefix long
    enough for the fragment rule to cover it, its first characters followed by a mask."""
    tails, heads = set(), set()
    for v in values:
        if len(v) < MIN_SECRET:
            continue
        for n in range(MASKED_TAIL, min(FRAGMENT, len(v))):
            tails.add(v[-n:])
        public = _public_len(v)
        for n in range(public + MASKED_TAIL, min(FRAGMENT, len(v))):
            heads.add(v[:n])
    if not tails:
        return None, None
    not_key = f"(?![{_char_class(chars)}])"
    # The tail alone: _masked_tails finds the mask before it.
    return (re.compile(f"{_trie(tails)}{not_key}"), re.compile(f"{_trie(heads)}{_MASK}") if heads else None)


def _trie(words: set[str]) -> str:
    """An alternation of literals as a trie: the regex engine then tries one branch per
    character instead of every word at every position."""
    root: dict = {}
    for w in words:
        node = root
        for ch in w:
            node = node.setdefault(ch, {})
        node[""] = {}

    def build(node: dict) -> str:
        end = "" in node
        alts = [re.escape(ch) + build(child) for ch, child in sorted(node.items()) if ch]
        if not alts:
            return ""
        body = alts[0] if len(alts) == 1 else "(?:" + "|".join(alts) + ")"
        if end:
            # A word that is also the start of longer ones: the optional group is greedy,
            # so the longer words are tried first.
            return f"(?:{body})?"
        return body

    return "(?:" + build(root) + ")"


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
