"""What a gateway secret looks like in what a client receives: the forms, pieces and
masked-echo patterns a Redactor (redaction.py) looks for, built from the secret values.

A secret leaks in these forms:

- any run of at least FRAGMENT characters of the secret, the whole value included, that
  reaches past its well-known prefix (`sk-proj-` alone is no secret);
- masked forms: a mask (`***`, `...`, `…`, `xxx`) followed by at least MASKED_TAIL of
  the secret's last characters, or its first characters past the prefix followed by a
  mask; the characters around them that could be the rest of the key go too;
- the same in the encodings a secret can travel in: JSON-escaped, percent-encoded,
  base64 (as in a Basic header, at every alignment), and the decoded form of a secret
  that is itself base64.

The building is done once per change of the secret values; the scanning of every
response, on the hot path, is redaction.py's. The mask pattern that scanning uses, and
its prefilter, are here all the same, next to `_MASK`, whose characters they must share.
"""

from __future__ import annotations

import base64
import binascii
import re
from urllib.parse import quote

import orjson

from . import secrets as secret_store

# Secrets shorter than this are not redacted: too short to tell from ordinary text
# (secrets.py warns about them when it loads them).
MIN_SECRET = secret_store.REDACTABLE_LENGTH
# The shortest run of a secret's characters that counts as a leak.
FRAGMENT = 8
# A masked echo must show at least this many of the secret's last (or first) characters.
MASKED_TAIL = 4
# Piece length: any shared run of 2 * _GRAM - 1 <= FRAGMENT characters holds a whole piece.
_GRAM = FRAGMENT // 2
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
