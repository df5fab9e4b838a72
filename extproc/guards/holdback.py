"""How much of a streamed text must wait because it could still become part of a match.

Given the text seen so far, `Holdback.start(text, base)` is the smallest index at or after
`base` from which the text could still change what the guard finds when more text
arrives. Everything before it can be released now; the tail from it is held.

- Custom patterns: the `regex` module's partial matching finds a match that runs into
  the end of the text. A complete match is also held when the text from its start could
  still grow into a different match (`(-\\d{4})?` after `555`): `fullmatch(..., partial)`
  from its start says whether the rest of the text is a prefix of something it matches.
- Presidio entities are not regexes we can run partially (phone numbers go through the
  phonenumbers library), so each has the set of characters its matches are made of: the
  trailing run of such characters is held (from its first character a match can start
  with), up to the longest such match.
- Entities without a known character set hold the whole window.

The caller caps the tail at the policy's window (see stream_guard.py), so nothing is ever
held without bound.
"""

from __future__ import annotations

import re

import regex

from .regex_guard import TextScanner

# Presidio entity -> (characters its matches consist of, characters a match can start
# with, longest match worth waiting for)
CHAR_RUNS: dict[str, tuple[str, str, int]] = {
    "CREDIT_CARD": (r"[\d \-]", r"\d", 32),
    "US_SSN": (r"[\d \-.]", r"\d", 16),
    # phonenumbers accepts many separators, brackets, a leading +, and "ext"/"x" suffixes.
    "PHONE_NUMBER": (r"[\d\s()+\-./#,;xXeEtT\u2010-\u2015\u2212\u00ad\uff0d]", r"[\d(+\uff0b]", 48),
    "EMAIL_ADDRESS": (r"[\w.!#$%&'*+/=?^`{|}~@\-]", r"[\w!#$%&'*+/=?^`{|}~]", 254),
    "IP_ADDRESS": (r"[\da-fA-F.:/%]", r"[\da-fA-F:]", 48),
    "IBAN_CODE": (r"[A-Za-z\d ]", r"[A-Za-z]", 42),
    "US_BANK_NUMBER": (r"\d", r"\d", 17),
    "US_ITIN": (r"[\d \-]", r"\d", 16),
}


class Holdback:
    def __init__(self, scanner: TextScanner, window: int) -> None:
        cfg = scanner.config
        flags = 0 if cfg.case_sensitive else regex.IGNORECASE
        self._partial: list[regex.Pattern] = []
        self._whole_window = False
        for m in cfg.matches:
            try:
                self._partial.append(regex.compile(m.pattern, flags | regex.VERSION0))
            except regex.error:
                # A pattern only `re` understands: fall back to holding the whole window.
                self._whole_window = True
        self._runs: list[tuple[re.Pattern, re.Pattern, int]] = []
        for entity in scanner.entities:
            if entity in CHAR_RUNS:
                chars, starts, longest = CHAR_RUNS[entity]
                self._runs.append((re.compile(chars), re.compile(starts), min(longest, window)))
            else:
                self._whole_window = True
        self.window = window

    def start(self, text: str, base: int) -> int:
        end = len(text)
        hold = end
        if self._whole_window:
            hold = max(base, end - self.window)
        for pattern in self._partial:
            for m in pattern.finditer(text, base, partial=True):
                if m.partial:
                    hold = min(hold, m.start())
                    break
                if m.end() == end or pattern.fullmatch(text, m.start(), partial=True) is not None:
                    hold = min(hold, m.start())
                    break
        for chars, starts, longest in self._runs:
            i = end
            floor = max(base, end - longest)
            while i > floor and chars.match(text, i - 1):
                i -= 1
            # A match cannot begin with a separator: hold from the first possible start.
            while i < end and not starts.match(text, i):
                i += 1
            hold = min(hold, i)
        return max(hold, base)
