"""Guarding JSON that travels inside a string: tool-call and function-call arguments.

Arguments are JSON text a model wrote (or a client replays). Scanning that text as it is
written would miss a value hidden by an escape (`bob\\u0040example.com` is an email to
whoever parses it), and masking it blindly would turn `{"n": 4111111111111111}` into
`{"n": <CREDIT_CARD>}`, which no client can parse. So:

- Whole arguments (requests, JSON responses): when the text is valid JSON, each string
  token (decoded, so escapes hide nothing; keys included) and each number token is a
  guarded string of its own. A number written with a fraction or an exponent
  (`4.111111111111111e15`, `41111111111111110e-1`) that is integral is scanned as written
  and as the integer it stands for (`integral_text`); when either is masked the whole token
  becomes its mask labels (each once). A masked token is written back as a JSON string in its
  place and every other byte is kept, so the arguments stay valid JSON. Text that is not
  valid JSON is guarded as a whole, after `decode_escapes`.
- Streamed arguments arrive as fragments of JSON text. `EscapeDecoder` rewrites escapes
  that need not be escapes into the characters they stand for (the JSON value is the
  same), the stream guard masks the text like any other, and `LabelQuoter` puts quotes
  around a mask label that landed outside a JSON string (a number was masked). A label is
  `<NAME>` with NAME made of `[A-Za-z0-9_.-]` (config validation), so inside a string it
  can never end the string or start an escape. When the arguments' JSON value is
  complete (its closing brace), nothing more can belong to it: `ValueEnd` tells the
  stream guard to release what it holds there rather than at the finish.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from typing import Any

import orjson

# A JSON string or number token. In valid JSON, scanning left to right with this finds
# every string (whole, so digits inside strings are not numbers) and every number.
_TOKEN = re.compile(r'"(?:[^"\\]+|\\.)*"|-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?', re.S)
# What a mask label looks like (regex_guard.RegexMatch.name, upper-cased builtin names).
LABEL = re.compile(r"<[A-Za-z0-9_.\-]{1,64}>")
_SPECIAL = re.compile(r'[\\"<]')
_STRUCTURE = re.compile(r'[\\"{}\[\]]')
_HEX4 = re.compile(r"[0-9a-fA-F]{4}")


# An integral number of at most this many digits is scanned as its integer (a card has 19).
MAX_NUMBER_DIGITS = 30
_NOT_PLAIN_INTEGER = re.compile(r"[.eE]")


def number_text(value: Any) -> str | None:
    """The integer a parsed JSON number stands for, written out, when it is integral and of
    a sane size (`4.111111111111111e15` -> "4111111111111111"); None otherwise (booleans
    too)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value) if abs(value) < 10**MAX_NUMBER_DIGITS else None
    if isinstance(value, float) and value.is_integer() and abs(value) < 10.0**MAX_NUMBER_DIGITS:
        return str(int(value))
    return None


def integral_text(raw: str) -> str | None:
    """A JSON number token written with a fraction or exponent -> the integer it stands
    for, when it is integral and has at most MAX_NUMBER_DIGITS digits; None otherwise (and
    for a plain integer, which is its own integer)."""
    if _NOT_PLAIN_INTEGER.search(raw) is None:
        return None
    try:
        d = Decimal(raw)
    except InvalidOperation:
        return None
    if not d.is_finite() or (d and d.adjusted() >= MAX_NUMBER_DIGITS):
        return None
    if d != d.to_integral_value():
        return None
    return str(int(d))


def is_json(text: str) -> bool:
    try:
        orjson.loads(text)
    except orjson.JSONDecodeError:  # also past orjson's nesting limit: guarded as text then
        return False
    return True


class JsonArguments:
    """Valid JSON text in `holder[key]` and its string and number tokens, each one a slot.
    Writing a token back rewrites the text in the holder at once."""

    __slots__ = ("_spans", "_two_forms", "holder", "key", "text")

    def __init__(self, holder: Any, key: Any, text: str) -> None:
        self.holder, self.key, self.text = holder, key, text
        self._spans = [[m.start(), m.end()] for m in _TOKEN.finditer(text)]
        self._two_forms: set[int] = set()  # numbers scanned as written and as their integer

    def tokens(self) -> list[tuple[int, str]]:
        """(token number, its text: the decoded string, or the number as written; an
        integral number written with a fraction or exponent as written, a space, and its
        integer)."""
        out = []
        for i, (start, end) in enumerate(self._spans):
            raw = self.text[start:end]
            if raw[0] == '"':
                out.append((i, orjson.loads(raw)))
                continue
            integer = integral_text(raw)
            if integer is not None:
                self._two_forms.add(i)
                raw = f"{raw} {integer}"
            out.append((i, raw))
        return out

    def replace(self, i: int, value: str) -> None:
        """Token `i` becomes the JSON string `value` (a masked number becomes a string). A
        number scanned in two forms becomes its mask labels alone: the rest of `value` is
        the number's other form."""
        if i in self._two_forms:
            value = " ".join(dict.fromkeys(LABEL.findall(value))) or value
        start, end = self._spans[i]
        literal = orjson.dumps(value).decode()
        self.text = self.text[:start] + literal + self.text[end:]
        shift = len(literal) - (end - start)
        self._spans[i][1] = start + len(literal)
        for span in self._spans[i + 1 :]:
            span[0] += shift
            span[1] += shift
        self.holder[self.key] = self.text


class EscapeDecoder:
    """Streaming: rewrites `\\uXXXX` (and surrogate pairs) and `\\/` into the characters they
    stand for wherever JSON allows that character unescaped; `\\"`, `\\\\`, control
    characters and lone surrogates stay escaped. The JSON value is unchanged. An escape
    cut by a fragment boundary waits for the next fragment (at most 11 characters)."""

    __slots__ = ("_held",)

    def __init__(self) -> None:
        self._held = ""

    def feed(self, text: str, final: bool = False) -> str:
        s = self._held + text
        self._held = ""
        out: list[str] = []
        i, n = 0, len(s)
        while True:
            j = s.find("\\", i)
            if j < 0:
                out.append(s[i:])
                break
            out.append(s[i:j])
            if j + 1 >= n or (s[j + 1] == "u" and j + 6 > n):
                if final:
                    out.append(s[j:])
                else:
                    self._held = s[j:]
                break
            if s[j + 1] != "u":
                out.append("/" if s[j + 1] == "/" else s[j : j + 2])
                i = j + 2
                continue
            if not _HEX4.fullmatch(s, j + 2, j + 6):
                out.append(s[j : j + 2])  # not JSON; passed on as written
                i = j + 2
                continue
            cp = int(s[j + 2 : j + 6], 16)
            if 0xD800 <= cp < 0xDC00:  # a high surrogate: its pair may follow
                if j + 12 > n and not final and _may_continue_pair(s[j + 6 :]):
                    self._held = s[j:]
                    break
                if s.startswith("\\u", j + 6) and _HEX4.fullmatch(s, j + 8, j + 12):
                    low = int(s[j + 8 : j + 12], 16)
                    if 0xDC00 <= low < 0xE000:
                        out.append(chr(0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00)))
                        i = j + 12
                        continue
                out.append(s[j : j + 6])
            elif cp < 0x20 or cp in (0x22, 0x5C) or 0xDC00 <= cp < 0xE000:
                out.append(s[j : j + 6])  # must stay escaped
            else:
                out.append(chr(cp))
            i = j + 6
        return "".join(out)


def _may_continue_pair(rest: str) -> bool:
    return "\\u".startswith(rest[:2]) and all(c in "0123456789abcdefABCDEF" for c in rest[2:6])


def decode_escapes(text: str) -> str:
    return EscapeDecoder().feed(text, final=True)


class _JsonStrings:
    """Streaming: which characters of a JSON text sit inside a string. Text arrives in
    pieces, so the state (inside a string, a backslash at the very end) carries over."""

    __slots__ = ("_escape", "_in_string")

    def __init__(self) -> None:
        self._in_string = False
        self._escape = False

    def _resume(self, n: int) -> int:
        """Where to start reading a new piece of `n` characters (past an escaped one)."""
        if self._escape and n:
            self._escape = False
            return 1
        return 0

    def _string_step(self, text: str, j: int) -> int | None:
        """Follow the string state at `text[j]`, a backslash, quote or other character the
        caller looks for: the index to read on from when the string state took it, None
        when it is outside a string and the caller's to handle."""
        ch = text[j]
        if self._in_string:
            if ch == "\\":
                if j + 1 < len(text):
                    return j + 2
                self._escape = True
            elif ch == '"':
                self._in_string = False
            return j + 1
        if ch == '"':
            self._in_string = True
            return j + 1
        return None


class LabelQuoter(_JsonStrings):
    """Streaming: follows JSON string state over the (masked) text and quotes a mask label
    that appears outside a string, where only a number or literal could have been."""

    __slots__ = ()

    def feed(self, text: str) -> str:
        out: list[str] = []
        start = 0
        i = self._resume(len(text))
        while (m := _SPECIAL.search(text, i)) is not None:
            j = m.start()
            step = self._string_step(text, j)
            if step is not None:
                i = step
                continue
            i = j + 1
            if text[j] == "<":
                label = LABEL.match(text, j)
                if label is not None:
                    out += (text[start:j], '"', label.group(), '"')
                    start = i = label.end()
        out.append(text[start:])
        return "".join(out)


def quote_labels(text: str) -> str:
    return LabelQuoter().feed(text)


_NUMBER_OR_STRING = re.compile(r'["\\]|-?\d')
_NUMBER = re.compile(r"-?\d[\d.eE+\-]*")


class IntegralNumbers(_JsonStrings):
    """Streaming: a number outside strings written with a fraction or exponent
    (`4.111111111111111e15`) becomes the integer it stands for when `found(integer)` says a
    guard would mask that integer, so the stream guard after it sees (and masks) the value
    a client's JSON parser reads. Other numbers keep their bytes. A number at the end of a
    piece waits for the next one (it may go on)."""

    __slots__ = ("_found", "_held")

    def __init__(self, found: Callable[[str], bool]) -> None:
        super().__init__()
        self._found = found
        self._held = ""

    def feed(self, text: str, final: bool = False) -> str:
        text, self._held = self._held + text, ""
        out: list[str] = []
        start = 0
        i = self._resume(len(text))
        while (m := _NUMBER_OR_STRING.search(text, i)) is not None:
            j = m.start()
            if text[j] in '"\\':
                step = self._string_step(text, j)
                i = step if step is not None else j + 1
                continue
            if self._in_string:
                i = m.end()
                continue
            token = _NUMBER.match(text, j)
            assert token is not None  # the search matched its start
            if token.end() == len(text) and not final:
                self._held = text[j:]
                text = text[:j]
                break
            integer = integral_text(token.group())
            if integer is not None and self._found(integer):
                out += (text[start:j], integer)
                start = token.end()
            i = token.end()
        out.append(text[start:])
        return "".join(out)


class ValueEnd(_JsonStrings):
    """Streaming: where a top-level JSON object or array closes."""

    __slots__ = ("_depth",)

    def __init__(self) -> None:
        super().__init__()
        self._depth = 0

    def end_in(self, text: str) -> int | None:
        """The index just past the last character of `text` that closes a top-level value
        (None if none does); the state then follows the rest of `text`."""
        end = None
        i = self._resume(len(text))
        while (m := _STRUCTURE.search(text, i)) is not None:
            j = m.start()
            step = self._string_step(text, j)
            if step is not None:
                i = step
                continue
            i = j + 1
            if text[j] in "{[":
                self._depth += 1
            elif self._depth > 0:
                self._depth -= 1
                if self._depth == 0:
                    end = i
        return end
