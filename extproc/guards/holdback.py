"""How much of a streamed text must wait because it could still become part of a match.

Given the text seen so far, `Holdback.start(text, base)` is the smallest index at or after
`base` from which the text could still change what the guard finds when more text
arrives, and the rule that says so. Everything before it can be released now; the tail
from it is held.

- Custom patterns: the `regex` module's partial matching finds a match that runs into
  the end of the text. A complete match is also held when the text from its start could
  still grow into a different match (`(-\\d{4})?` after `555`): `fullmatch(..., partial)`
  from its start says whether the rest of the text is a prefix of something it matches.
  Both run within the pattern's time (`regex_guard.HOLDBACK_PATTERN_SECONDS`); past it,
  `PatternTimeout`: the stream guard cannot release the tail, and ends the stream.
- Presidio entities are not regexes we can run partially (phone numbers go through the
  phonenumbers library), so each has the set of characters its matches are made of: the
  trailing run of such characters is held (from its first character a match can start
  with), up to the longest such match.
- Entities without a known character set hold the whole window.
- All of this reads the guard's detection views (`normalize.py`), not the raw text: a
  zero-width character, soft hyphen or combining mark inside a partial match is
  invisible there, and fullwidth or other Unicode digits, Unicode dashes, NBSP and
  fullwidth `＠` are the ASCII characters the sets list, so none of them ends a run
  early. Lengths (`longest`) count view characters, so padding a value with invisible
  characters does not get its beginning released. Custom patterns are matched partially
  on the original text and on each view, as the scanner matches them.

When the tail outgrows the policy's window, the stream guard masks it and follows it with
the same rule (`Rule.end_of_match`) until the possible match is over.
"""

from __future__ import annotations

import re

import regex

from . import normalize
from .regex_guard import (
    HOLDBACK_PATTERN_SECONDS,
    PatternTimeout,
    TextScanner,
    compile_pattern,
    pattern_seconds,
)

# Presidio entity -> (characters its matches consist of, characters a match can start
# with, characters a match can end with, longest match worth waiting for), in the
# detection view. Checked against Presidio's own patterns in
# tests/unit/test_guard_edges.py.
# Digits and what may join a card's or an SSN's groups (recognizers._SEP).
_SEPARATORS = r"[\d \t\r\n.\-/_|,*+:~\u00b7\u2022\u2027\u2219\u22c5\u30fb\u30fc\uff65]"
CHAR_RUNS: dict[str, tuple[str, str, str, int]] = {
    # Cards in any grouping (recognizers.CardRecognizer): up to 19 digits, 18 separators,
    # or a card's grouping with other separators (recognizers._SEP, at most 7 characters
    # each with the spaces around them, so a 19-digit card fits 48).
    "CREDIT_CARD": (_SEPARATORS, r"\d", r"\d", 48),
    "US_SSN": (_SEPARATORS, r"\d", r"\d", 24),
    # phonenumbers accepts many separators, brackets (its lead class has `[`: it reads
    # "[1] (212) 555-0198" as one number), a leading +, and "ext"/"x" suffixes.
    "PHONE_NUMBER": (r"[\d\s()\[\]+\-./#,;xXeEtT]", r"[\d(\[+]", r"[\d)\]]", 48),
    # Brackets and colons: IP-literal domains (`jane@[IPv6:2001:db8::1]`). Quoted local
    # parts hold through their own pattern (`_EXTRA_PATTERNS`).
    # `;`: an `@` written as an HTML character reference (`&#64;`, `&commat;`).
    "EMAIL_ADDRESS": (r"[\w.!#$%&'*+/=?^`{|}~@\-\[\]:;]", r"[\w!#$%&'*+/=?^`{|}~]", r"[\w\]]", 254),
    "IP_ADDRESS": (r"[\da-fA-F.:/%]", r"[\da-fA-F:]", r"[\da-fA-F:]", 48),
    "IBAN_CODE": (r"[A-Za-z\d \-]", r"[A-Za-z]", r"[A-Za-z\d]", 48),
    "US_BANK_NUMBER": (r"\d", r"\d", r"\d", 17),
    "US_ITIN": (r"[\d \-]", r"\d", r"\d", 16),
}


class Rule:
    """One reason to hold text back, and how to tell where the match it might be ends."""

    label: str

    def end_of_match(self, text: str) -> int | None:
        """`text` starts where a possible match starts. The index where that match is over
        (it completed there, or failed), or None while it may still continue."""
        raise NotImplementedError


def _views(text: str) -> tuple[normalize.Normalized, ...]:
    """The original text and its detection views, as the scanner reads them (the text
    may still grow, see `normalize.split_view`)."""
    views = normalize.views(text, open_end=True)
    return views if views[0].original else (normalize.original(text), *views)


class PatternRule(Rule):
    def __init__(self, label: str, pattern: regex.Pattern) -> None:
        self.label, self.pattern = label, pattern

    def end_of_match(self, text: str) -> int | None:
        over = 0
        for view in _views(text):
            try:
                m = self.pattern.match(
                    view.text, partial=True, timeout=pattern_seconds(view.text, HOLDBACK_PATTERN_SECONDS)
                )
            except TimeoutError:
                raise PatternTimeout(self.label) from None
            if m is None:
                continue
            if m.partial or m.end() == len(view.text):
                return None
            over = max(over, view.end_of(m.end()))
        return over


class RunRule(Rule):
    def __init__(self, label: str, chars: re.Pattern[str], ends: re.Pattern[str]) -> None:
        self.label, self.chars, self.ends = label, chars, ends

    def end_of_match(self, text: str) -> int | None:
        view = normalize.normalize(text)
        text = view.text
        i = 0
        while i < len(text) and self.chars.match(text, i):
            i += 1
        if i == len(text):
            return None
        # The run may end in separators ("4111 " before "ok") that are not the match's.
        while i > 0 and not self.ends.match(text, i - 1):
            i -= 1
        return view.end_of(i)


class Holdback:
    def __init__(self, scanner: TextScanner, window: int) -> None:
        cfg = scanner.config
        self._partial = [
            PatternRule(m.name, compile_pattern(m.pattern, cfg.case_sensitive)) for m in cfg.matches
        ]
        self._whole_window: RunRule | None = None
        self._runs: list[tuple[RunRule, re.Pattern[str], int]] = []
        for entity in scanner.entities:
            label = scanner.label_for(entity)
            if entity == "EMAIL_ADDRESS":
                # Imported here: it imports presidio, which a scanner with builtins has loaded.
                from .recognizers import QUOTED_LOCAL_PART

                # A quoted local part holds spaces, which the run below does not wait through.
                self._partial.append(PatternRule(label, regex.compile(QUOTED_LOCAL_PART + r"@[\w.\-\[\]:]*")))
            if entity in CHAR_RUNS:
                chars, starts, ends, longest = CHAR_RUNS[entity]
                self._runs.append(
                    (
                        RunRule(label, re.compile(chars), re.compile(ends)),
                        re.compile(starts),
                        min(longest, window),
                    )
                )
            elif self._whole_window is None:
                self._whole_window = RunRule(label, re.compile(r"\S"), re.compile(r"\S"))
        self.window = window

    def start(self, text: str, base: int) -> tuple[int, Rule | None]:
        end = len(text)
        hold = end
        rule: Rule | None = None
        if self._whole_window is not None:
            hold, rule = max(base, end - self.window), self._whole_window
        views = _views(text)
        for pr in self._partial:
            for view in views:
                vt, vend = view.text, len(view.text)
                limit = pattern_seconds(vt, HOLDBACK_PATTERN_SECONDS)
                try:
                    for m in pr.pattern.finditer(vt, view.index(base), partial=True, timeout=limit):
                        if (
                            m.partial
                            or m.end() == vend
                            or pr.pattern.fullmatch(vt, m.start(), partial=True, timeout=limit) is not None
                        ):
                            if view.start_of(m.start()) < hold:
                                hold, rule = view.start_of(m.start()), pr
                            break
                except TimeoutError:
                    raise PatternTimeout(pr.label) from None
        # The joined view: invisible characters inside a run do not interrupt it.
        joined = views[0] if len(views) == 1 else views[1]
        vt, vend, vbase = joined.text, len(joined.text), joined.index(base)
        for run, starts, longest in self._runs:
            i = vend
            floor = max(vbase, vend - longest)
            while i > floor and run.chars.match(vt, i - 1):
                i -= 1
            # A match cannot begin with a separator: hold from the first possible start.
            while i < vend and not starts.match(vt, i):
                i += 1
            if joined.start_of(i) < hold:
                hold, rule = joined.start_of(i), run
        return max(hold, base), rule
