"""Text as the regex guard reads it, with a map back to the characters the client sent.

Guards must not be bypassed by how a value is written: `４１１１ １１１１ …` (fullwidth),
`4111\\u200b1111…` (zero-width), `536‐90‐4399` (U+2010), `bob＠example.com`. So patterns
and Presidio run on a *detection view* of the text, and what they find is mapped back
to the original characters, which are the ones masked.

The view is built cluster by cluster (a character and the combining marks after it):

- invisible characters are dropped: format characters (category Cf: zero-width space and
  joiners, soft hyphen, word joiner, BOM, bidi controls, tags), control characters that
  are not whitespace, and the Hangul fillers;
- each cluster is NFKC-normalised (fullwidth forms, `＠` → `@`, `①` → `1`, `ﬁ` → `fi`,
  NBSP → space), then: combining marks left over are dropped (a keycap or strike-through
  on a digit is still the digit), Unicode decimal digits become ASCII digits, dashes
  (category Pd, minus signs) become `-`, and space separators (Zs) become ` `.

NFKC runs per cluster rather than over the whole text so that every output character
comes from one contiguous span of input characters; an expansion (`ﬁ` → `fi`) maps every
output character to the whole input cluster, a contraction (`e` + U+0301 → `é`) maps the
one output character to both. Offsets are monotonic, so a finding over view characters
[i, j) covers exactly the original characters [start(i), end(j - 1)), including any
dropped characters inside it.

Dropping an invisible character joins its neighbours ("4111<ZWSP>1111" → "41111111"),
which finds values split by it but can also glue a value to a word before it
("card<ZWSP>4111…" → "card4111…", no word boundary left). So when a dropped run glues a
letter or digit to another visible character, a second view replaces each such run by a
space, and the guard reads both views. An SSN written with soft hyphens ("536<SHY>90<SHY>4399") is found
in that second view.

Text that is printable ASCII (the common case) is its own view: no copy, no map. Text
whose characters each read as one character (fullwidth digits, NBSP) is translated in
bulk and keeps its offsets; only invisible characters, combining marks and expansions
need the cluster-by-cluster pass and an offset map.
"""

from __future__ import annotations

import re
import unicodedata
from bisect import bisect_left
from functools import lru_cache

import regex

# Everything that might not read as itself: outside printable ASCII (plus tab and line
# breaks), nothing needs looking at. Within non-ASCII text, characters outside this class
# are copied as they are, in bulk.
_PLAIN = re.compile(r"[\t\n\r\x20-\x7e]*+")
_SPECIAL = regex.compile(
    r"[[\p{NFKC_QC=N}\p{NFKC_QC=M}\p{Cf}\p{Cc}\p{M}\p{Nd}\p{Zs}\p{Pd}"
    r"\p{Default_Ignorable_Code_Point}\u2212\u2796\u02d7\u2043]--[\t\n\r\x20-\x7e]]",
    regex.V1,
)
# Dashes outside category Pd that people use as hyphens: minus sign, heavy minus,
# modifier letter minus, hyphen bullet.
_DASHES = frozenset("\u2212\u2796\u02d7\u2043")
# Default-ignorable letters (Hangul fillers) that render as nothing.
_FILLERS = frozenset("\u115f\u1160\u3164\uffa0")


_MARK, _IGNORABLE, _OTHER = 1, 2, 3


@lru_cache(maxsize=256)
def _char_class(chars: str) -> re.Pattern[str]:
    """A pattern finding any of `chars`."""
    return re.compile("[" + "".join(f"\\U{ord(c):08x}" for c in chars) + "]")


def _ignorable(ch: str) -> bool:
    cat = unicodedata.category(ch)
    return cat == "Cf" or (cat == "Cc" and not ch.isspace()) or ch in _FILLERS


def _is_mark(ch: str) -> bool:
    return unicodedata.category(ch)[0] == "M"


@lru_cache(maxsize=8192)
def _fold(cluster: str) -> str:
    """One cluster (a character and its combining marks) as the detection view reads it."""
    out = []
    for ch in unicodedata.normalize("NFKC", cluster):
        if " " <= ch <= "~":
            out.append(ch)
            continue
        cat = unicodedata.category(ch)
        if cat[0] == "M" or _ignorable(ch):
            continue
        if cat == "Nd":
            out.append(str(unicodedata.decimal(ch)))
        elif cat == "Pd" or ch in _DASHES:
            out.append("-")
        elif cat == "Zs":
            out.append(" ")
        else:
            out.append(ch)
    return "".join(out)


class Normalized:
    """A detection view of a text: `text`, and for each of its characters the span of
    original characters it came from (`starts[i]`, `ends[i]`)."""

    __slots__ = ("_dropped", "ends", "original", "source_length", "starts", "text")

    def __init__(
        self,
        text: str,
        source_length: int,
        starts: list[int] | None = None,
        ends: list[int] | None = None,
        dropped: tuple[tuple[int, int, int], ...] = (),
        original: bool = False,
    ) -> None:
        self.text = text
        self.source_length = source_length
        # None: view character i is original character i (no character dropped or expanded).
        self.starts = starts
        self.ends = ends
        # Runs of dropped characters: (view index they sit before, original start, end).
        self._dropped = dropped
        self.original = original  # the view is the original text itself

    @property
    def identity(self) -> bool:
        """Offsets are the identity (the text may still differ: `４` reads as `4`)."""
        return self.starts is None

    def span(self, start: int, end: int) -> tuple[int, int]:
        """View characters [start, end) (end > start) -> the original characters they cover."""
        if self.starts is None or self.ends is None:
            return start, end
        return self.starts[start], self.ends[end - 1]

    def index(self, pos: int) -> int:
        """The first view character whose original span starts at or after `pos`."""
        if self.starts is None:
            return pos
        return bisect_left(self.starts, pos)

    def start_of(self, i: int) -> int:
        """Where view character `i` starts in the original (the original's end for i == len)."""
        if self.starts is None:
            return i
        return self.starts[i] if i < len(self.starts) else self.source_length

    def end_of(self, i: int) -> int:
        """The original index just after view characters [0, i)."""
        if self.ends is None or i == 0:
            return i
        return self.ends[i - 1]


def original(text: str) -> Normalized:
    """The text itself, as a view."""
    return Normalized(text, len(text), original=True)


def normalize(text: str) -> Normalized:
    """The joined detection view of `text` (invisible characters dropped)."""
    n = len(text)
    plain = _PLAIN.match(text)  # never None: the pattern matches the empty string
    if plain is not None and plain.end() == n:
        return original(text)
    # Characters that read as exactly one other character are translated in bulk (C speed),
    # keeping offsets; the rest (invisible characters, combining marks and their base,
    # expansions such as `ﬁ`) go cluster by cluster below.
    table: dict[int, str] = {}
    hard: dict[str, int] = {}  # character -> _MARK, _IGNORABLE or _OTHER
    for ch in set(text):
        if not _SPECIAL.match(ch):
            continue
        folded = _fold(ch)
        kind = _MARK if _is_mark(ch) else _IGNORABLE if _ignorable(ch) else _OTHER
        if len(folded) == 1 and kind == _OTHER:
            table[ord(ch)] = folded
        else:
            hard[ch] = kind
    simple = text.translate(table)
    if not hard:
        return Normalized(simple, n)
    hard_chars = _char_class("".join(sorted(hard)))
    out: list[str] = []
    starts: list[int] = []
    ends: list[int] = []
    dropped: list[tuple[int, int, int]] = []
    length = 0  # of the view so far
    pos = 0  # original characters before it are done

    def copy(a: int, b: int) -> None:
        nonlocal length
        if b > a:
            out.append(simple[a:b])
            starts.extend(range(a, b))
            ends.extend(range(a + 1, b + 1))
            length += b - a

    for m in hard_chars.finditer(text):
        j = m.start()
        if j < pos:
            continue  # inside a cluster or run already done
        kind = hard[text[j]]
        # A combining mark belongs to the character before it (not yet copied).
        begin = j - 1 if j > pos and kind == _MARK else j
        copy(pos, begin)
        if kind == _IGNORABLE:
            end = j + 1
            while end < n and hard.get(text[end]) == _IGNORABLE:
                end += 1
            _drop(dropped, length, j, end)
            pos = end
            continue
        end = j + 1
        while end < n and hard.get(text[end]) == _MARK:
            end += 1
        folded = _fold(text[begin:end])
        if folded:
            out.append(folded)
            starts.extend([begin] * len(folded))
            ends.extend([end] * len(folded))
            length += len(folded)
        else:  # only marks: invisible, like a format character
            _drop(dropped, length, begin, end)
        pos = end
    copy(pos, n)
    return Normalized("".join(out), n, starts, ends, tuple(dropped))


def _drop(dropped: list[tuple[int, int, int]], at: int, start: int, end: int) -> None:
    """Record dropped characters [start, end) before view index `at`, one entry per run."""
    if dropped and dropped[-1][0] == at and dropped[-1][2] == start:
        dropped[-1] = (at, dropped[-1][1], end)
    else:
        dropped.append((at, start, end))


def _joins(left: str, right: str) -> bool:
    """Whether dropping what sat between `left` and `right` can change what is found: it
    glues a letter or digit to something other than a space ("card4111", "call+1 212…").
    Not between emoji (a ZWJ sequence), nor next to a space."""
    return not left.isspace() and not right.isspace() and (left.isalnum() or right.isalnum())


def split_view(joined: Normalized, open_end: bool = False) -> Normalized | None:
    """The second view: `joined` with a space wherever a dropped run glued two characters
    (see `_joins`), or None when there is no such run. `open_end`: the text may still grow
    (a stream), so a run at its end counts after anything but a space."""
    text = joined.text
    n = len(text)
    runs = [
        (i, a, b)
        for i, a, b in joined._dropped
        if 0 < i and (_joins(text[i - 1], text[i]) if i < n else open_end and not text[i - 1].isspace())
    ]
    # A view with dropped runs always has an offset map; the check only narrows the types.
    if not runs or joined.starts is None or joined.ends is None:
        return None
    joined_starts, joined_ends = joined.starts, joined.ends
    out: list[str] = []
    starts: list[int] = []
    ends: list[int] = []
    prev = 0
    for i, a, b in runs:
        out += (text[prev:i], " ")
        starts += joined_starts[prev:i]
        ends += joined_ends[prev:i]
        starts.append(a)
        ends.append(b)
        prev = i
    out.append(text[prev:])
    starts += joined_starts[prev:]
    ends += joined_ends[prev:]
    return Normalized("".join(out), joined.source_length, starts, ends)


def views(text: str, open_end: bool = False) -> tuple[Normalized, ...]:
    """The detection views of `text`: the joined view, and the split view when it differs
    in a way that matters (see the module docstring)."""
    joined = normalize(text)
    split = split_view(joined, open_end) if joined._dropped else None
    return (joined,) if split is None else (joined, split)


def detection_text(text: str) -> str:
    """The joined view's text alone (for cheap checks such as "is there a digit at all")."""
    return normalize(text).text
