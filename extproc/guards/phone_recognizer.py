"""PHONE_NUMBER for the regex guard: Presidio's phonenumbers-based recognizer, with more
recall (numbers next to other numbers) and a cost that stays linear and small on hostile
text. Imported through presidio_engine, which registers it (and recognizers.py, which
extends it).

Where the cost went, on digit groups with phone separators (the worst case): phonenumbers
parses every candidate and every piece of it once per region (8 regions), and gives up
after 65535 failed candidates; our retries re-ran the whole matcher on long runs, and
checked overlaps by scanning every result (quadratic). Now: bounded windows cut at
characters no candidate can cross, no parse of pieces too short to be a number, bounded
retries, one parse per region for the adjacent-number spans, and sorted-interval overlap
checks. About 3x less CPU on digit-dense text, linear in its length
(`scripts/bench_scan_cost.py`); every shortcut is tested to find what the slow way finds
(tests/unit/test_presidio_cost.py).

On prose with a few numbers the cost was the matcher's candidate search, run over the whole
text once per region: now it runs once for all regions (`_Candidates`), a window's matcher
stops where its kept results end, and text without a digit is not scanned at all. About
35% less on a 4 KB prompt (scripts/bench.py `presidio_4kb`); tested against phonenumbers'
own matcher in tests/unit/test_phone_equivalence.py. Two of phonenumbers' helpers are made
cheaper for every parse (phonenumbers_speedups.py).
"""

from __future__ import annotations

import bisect
import os
import re
import unicodedata
from collections.abc import Iterable, Sequence
from functools import cache

os.environ.setdefault("TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS", "")  # before presidio (see presidio_engine)

import phonenumbers
from phonenumbers import PhoneNumberMatch, PhoneNumberMatcher
from phonenumbers import phonenumbermatcher as _pn_matcher
from phonenumbers import phonenumberutil as _pn_util
from presidio_analyzer import EntityRecognizer, RecognizerResult
from presidio_analyzer.nlp_engine import NlpArtifacts
from presidio_analyzer.predefined_recognizers import PhoneRecognizer

from . import phonenumbers_speedups
from .scan_jobs import checkpoint

phonenumbers_speedups.install()

# A run of the characters phonenumbers reads as one candidate, and a short trailing group.
_DIGIT_RUN = re.compile(r"\+?\(?\d[\d ().\-]*\d")
_SHORT_TAIL = re.compile(r"(.*?[\d)])[ .\-]+\d{1,2}")
_PHONE_SEPARATOR = re.compile(r"[-.()+]")
_TOKEN = re.compile(r"\S+")
_FIRST_DIGIT = re.compile(r"\d")

# phonenumbers' matcher is linear but costly on digit-heavy text (its candidates reach
# hundreds of characters, each parsed for every region), and it gives up after 65535 failed
# candidates (a number after that many is never found). Long texts are therefore analysed
# in windows of at most `_WINDOW` characters, cut where possible at a character no
# phone candidate or extension can contain (`_HARD_BREAKS`): the matcher's candidates never
# cross it and it reads at most one character past a candidate, so the windows find what
# the whole text would. A stretch with no such character (digit groups without a line
# break) is cut with overlapping windows instead: results are kept only from a window's
# middle, its outer `_WINDOW_MARGIN` characters being left to the neighbouring window.
_WINDOW = 2048
_WINDOW_MARGIN = 128
_HARD_BREAKS = '\n\r"!?<>|{}*'
# Short-tail retries only for runs about the length of a number plus two short groups;
# in longer runs `_adjacent_numbers` finds the number between its neighbours.
_TAIL_RUN_MAX = 64


def windows(text: str, size: int = _WINDOW, margin: int = _WINDOW_MARGIN) -> list[tuple[int, int, int, int]]:
    """(start, end, keep_from, keep_to) for each window: the window is text[start:end],
    and its results starting in [keep_from, keep_to) are kept. The keep ranges tile the
    text exactly."""
    length = len(text)
    out: list[tuple[int, int, int, int]] = []
    start = keep_from = 0
    while length - start > size:
        limit = start + size
        cut = max(text.rfind(ch, start + size // 2, limit) for ch in _HARD_BREAKS)
        if cut > start:
            # Exact: this window ends just after the break, the next begins on it.
            out.append((start, cut + 1, keep_from, cut))
            start = keep_from = cut
        else:
            out.append((start, limit, keep_from, limit - margin))
            start, keep_from = limit - 2 * margin, limit - margin
    out.append((start, length, keep_from, length))
    return out


class Covered:
    """Which characters earlier results cover: disjoint sorted intervals, O(log n) lookups
    (a linear scan per candidate made long texts quadratic)."""

    def __init__(self, spans: Iterable[tuple[int, int]]) -> None:
        merged: list[list[int]] = []
        for start, end in sorted(spans):
            if merged and start < merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], end)
            else:
                merged.append([start, end])
        self._starts = [s for s, _ in merged]
        self._ends = [e for _, e in merged]

    def overlaps(self, start: int, end: int) -> bool:
        i = bisect.bisect_left(self._starts, end) - 1
        return i >= 0 and self._ends[i] > start


# Sub-candidates with fewer digits than any valid number could have are not parsed: most
# of phonenumbers' work on digit-dense text is parsing short pieces ("12", "4 5") once per
# region. The bounds come from phonenumbers' metadata (see `_min_digits`), so the result
# is the same; a piece with letters (vanity numbers, "ext") is always parsed.
_HAS_LETTER = re.compile(r"[^\W\d_]")
_PLUS = re.compile("[+\uff0b]")
_MIN_INTERNATIONAL = 5  # a country code digit and the shortest national number (4 digits)


@cache
def _min_digits(region: str) -> int:
    """The fewest digits a number written without `+` can have and be valid when read in
    `region`: a national number of the region's shortest length, or an international
    dialling prefix, a country code and the shortest number anywhere (at least 2+1+4)."""
    metadata = phonenumbers.PhoneMetadata.metadata_for_region(region)
    if metadata is None:  # not a region phonenumbers knows (its matcher would fail too)
        raise ValueError(f"phonenumbers has no metadata for region {region!r}")
    lengths = [
        n
        for desc in (
            metadata.general_desc,
            metadata.fixed_line,
            metadata.mobile,
            metadata.toll_free,
            metadata.premium_rate,
            metadata.shared_cost,
            metadata.personal_number,
            metadata.voip,
            metadata.pager,
            metadata.uan,
            metadata.voicemail,
        )
        if desc is not None
        for n in desc.possible_length
        if n > 0
    ]
    return min([*lengths, _MIN_INTERNATIONAL + 2])


class _Candidates:
    """phonenumbers' candidates in one text, found once for all regions.

    Its matcher searches the text with one region-independent pattern (`_PATTERN`, then
    the trim at a second number's start) and only parses and verifies per region; run
    once per region (8), the search alone cost more than the parses on prose. Each
    search result is kept by the index it started from: every region's matcher asks for
    the same indices until a region's match ends inside a candidate (an inner match),
    and then the search from that index is run once and kept too.
    """

    def __init__(self, text: str) -> None:
        self._text = text
        self._after: dict[int, tuple[int, str] | None] = {}

    def after(self, index: int) -> tuple[int, str] | None:
        """(start, candidate) of the first candidate found searching from `index`."""
        if index in self._after:
            return self._after[index]
        found = None
        m = _pn_matcher._PATTERN.search(self._text, index)
        if m is not None:
            candidate = m.group()
            second = _pn_util._SECOND_NUMBER_START_PATTERN.search(candidate)
            found = (m.start(), candidate[: second.start()] if second else candidate)
        self._after[index] = found
        return found


class _Matcher(PhoneNumberMatcher):
    """phonenumbers' matcher, skipping the parse of pieces too short to be valid. Given
    `candidates` (shared by the regions), it takes its candidates from there, and then
    stops at the first candidate starting at or after `stop` (ignored without them)."""

    def __init__(
        self,
        text: str,
        region: str,
        leniency: int | None,
        candidates: _Candidates | None = None,
        stop: int | None = None,
    ) -> None:
        # Presidio types its leniency as optional; phonenumbers refuses None (same error).
        if leniency is None:
            raise ValueError("Need a leniency value")
        super().__init__(text, region, leniency=leniency)
        self._fewest = _min_digits(region)
        self._candidates = candidates
        self._stop = len(text) if stop is None else stop

    def _find(self, index: int) -> PhoneNumberMatch | None:
        """phonenumbers' `_find` (9.0.43, pinned) step for step, its search replaced by the
        shared one: same candidates, same failed tries counted, same matches (tested
        against the unmodified matcher in tests/unit/test_phone_equivalence.py, which an
        upgrade changing `_find` would fail)."""
        if self._candidates is None:
            return super()._find(index)
        found = self._candidates.after(index)
        while self._max_tries > 0 and found is not None:
            start, candidate = found
            if start >= self._stop:
                return None
            if len(candidate) >= self._min_candidate_length:
                match = self._extract_match(candidate, start)
                if match is not None:
                    return match
                self._max_tries -= 1
            found = self._candidates.after(start + len(candidate))
        return None

    def _parse_and_verify(self, candidate: str, offset: int) -> PhoneNumberMatch | None:
        digits = sum(map(str.isdecimal, candidate))  # what `\d` matches
        fewest = _MIN_INTERNATIONAL if _PLUS.search(candidate) else self._fewest
        if digits < fewest and not _HAS_LETTER.search(candidate):
            return None
        return super()._parse_and_verify(candidate, offset)


class PhoneNumbers(PhoneRecognizer):
    """Presidio's PhoneRecognizer, plus numbers followed by a short, unrelated number.

    phonenumbers reads "(212) 555-0198 7" in "call (212) 555-0198 7 days a week" as one
    candidate, fails to parse it, and reports nothing: the number leaks. (Likewise
    "+44 20 7946 0958 24 hours"; "212-555-0198 7 days" happens to survive.) For each digit
    run nothing was found in, we drop up to two trailing 1-2 digit groups and try again.
    Only such short groups: dropping a 4-digit group would find "phone numbers" inside
    card-length order numbers.

    Cost: the text is analysed in bounded windows (see `windows`), pieces too short to be
    a number are not parsed (`_Matcher`), the candidates are searched once for all regions
    (`_Candidates`), the retries are bounded per run, and the token spans of
    `_adjacent_numbers` are checked with one parse per region instead of a whole matcher
    run, so the cost stays linear in the text and several times lower.
    """

    def analyze(
        self, text: str, entities: list[str], nlp_artifacts: NlpArtifacts | None = None
    ) -> list[RecognizerResult]:
        if _FIRST_DIGIT.search(text) is None:  # no candidate, no run: nothing below finds anything
            return []
        results: list[RecognizerResult] = []
        for start, end, keep_from, keep_to in windows(text):
            checkpoint()  # a scan job stops here when its deadline passed (scan_pool)
            for r in self._matches(text[start:end], nlp_artifacts, stop=keep_to - start):
                r.start, r.end = r.start + start, r.end + start
                if keep_from <= r.start < keep_to:
                    results.append(r)
        covered = Covered((r.start, r.end) for r in results)
        for run in _DIGIT_RUN.finditer(text):
            checkpoint()
            tails: list[RecognizerResult] = []
            if run.end() - run.start() <= _TAIL_RUN_MAX and not covered.overlaps(run.start(), run.end()):
                tails = self._short_tails(run, entities, nlp_artifacts)
            results += tails
            results += self._adjacent_numbers(text, run, covered, tails, nlp_artifacts)
        return EntityRecognizer.remove_duplicates(results)

    def _matches(
        self, text: str, nlp_artifacts: NlpArtifacts | None, stop: int | None = None
    ) -> list[RecognizerResult]:
        """Presidio's PhoneRecognizer.analyze, with `_Matcher` (same results); with `stop`,
        the same results starting before `stop`, and perhaps fewer after it. The matcher's
        matches come in order of their start, and a candidate's matches start in it, so it
        stops at the first candidate starting at `stop` (a window's right margin, whose
        results the next window keeps, costs no parse)."""
        results = []
        candidates = _Candidates(text)
        for region in self.supported_regions:
            for match in _Matcher(text, region, self.leniency, candidates, stop):
                results.append(self._result(match, text, region, nlp_artifacts))
        return EntityRecognizer.remove_duplicates(results)

    def _result(
        self, match: PhoneNumberMatch | _Span, text: str, region: str, nlp_artifacts: NlpArtifacts | None
    ) -> RecognizerResult:
        """Presidio's result for a match (its `_get_recognizer_result`, which is untyped)."""
        result: RecognizerResult = self._get_recognizer_result(  # type: ignore[no-untyped-call]
            match, text, region, nlp_artifacts
        )
        return result

    def _short_tails(
        self, run: re.Match[str], entities: list[str], nlp_artifacts: NlpArtifacts | None
    ) -> list[RecognizerResult]:
        chunk = run.group()
        for _ in range(2):
            tail = _SHORT_TAIL.fullmatch(chunk)
            if tail is None:
                break
            chunk = tail.group(1)
            found = self._matches(chunk, nlp_artifacts)
            for r in found:
                r.start, r.end = r.start + run.start(), r.end + run.start()
            if found:
                return found
        return []

    def _adjacent_numbers(
        self,
        text: str,
        run: re.Match[str],
        covered: Covered,
        tails: list[RecognizerResult],
        nlp_artifacts: NlpArtifacts | None,
    ) -> list[RecognizerResult]:
        """Numbers written next to each other ("(212) 555-0198 (212) 555-0198", or a number
        then a card) are one candidate to phonenumbers, which then finds none of them.
        In a run nothing covers, try whitespace-separated token spans (longest first) that
        look like a phone number: 10-20 characters with a phone separator (- . ( ) +).
        Space-only digit groups (cards, order numbers) are never split into phones."""
        tokens = [(m.start() + run.start(), m.end() + run.start()) for m in _TOKEN.finditer(run.group())]
        if len(tokens) < 2:
            return []
        found: list[RecognizerResult] = []
        i = 0
        steps = 0
        while i < len(tokens):
            steps += 1
            if steps % 32 == 0:
                checkpoint()
            matched = False
            for j in range(min(len(tokens), i + 5) - 1, i - 1, -1):
                start, end = tokens[i][0], tokens[j][1]
                if not 10 <= end - start <= 20:
                    continue
                span = text[start:end]
                # Spans are tried left to right and a hit moves past its end, so only the
                # last hit can overlap; tails are at most one per run.
                if (
                    not _PHONE_SEPARATOR.search(span)
                    or covered.overlaps(start, end)
                    or any(r.start < end and start < r.end for r in tails)
                    or (found and found[-1].end > start)
                ):
                    continue
                region = self._whole_span_region(span)
                if region is not None:
                    found.append(self._result(_Span(start, end), text, region, nlp_artifacts))
                    i = j + 1
                    matched = True
                    break
            if not matched:
                i += 1
        return found

    def _whole_span_region(self, span: str) -> str | None:
        """The first supported region for which phonenumbers' matcher, run on `span` alone,
        matches all of it; None if there is none. Equivalent to running the matcher (tested)
        but only the whole-candidate step can cover the whole span, so that step alone is
        run: no inner-match retries, and one region for a number with a leading `+`."""
        m = _pn_matcher._PATTERN.match(span)
        if (
            m is None
            or m.end() != len(span)
            or _pn_util._SECOND_NUMBER_START_PATTERN.search(span)
            or _pn_matcher._SLASH_SEPARATED_DATES.search(span)
        ):
            return None
        regions: Sequence[str] = self.supported_regions  # region codes (untyped in Presidio)
        # With a leading `+` the country code is in the number and the region is unused,
        # unless the digits start with 0: no country code does, and phonenumbers then
        # reads them as the region's international prefix ("+00 49 ..." in Germany).
        first = _FIRST_DIGIT.search(span)
        if span[0] in "+\uff0b" and first is not None and unicodedata.digit(first.group(), -1) != 0:
            regions = regions[:1]
        for region in regions:
            if _Matcher(span, region, self.leniency)._parse_and_verify(span, 0) is not None:
                return region
        return None


class _Span:
    """The two attributes of a phonenumbers match that `_get_recognizer_result` reads."""

    __slots__ = ("end", "start")

    def __init__(self, start: int, end: int) -> None:
        self.start, self.end = start, end
