"""The phone recognizer's shared-candidate matcher (guards/phone_recognizer.py) finds exactly
what phonenumbers' own PhoneNumberMatcher finds, run once per region as Presidio does.

The fast path searches the text for candidates once for all regions (`_Candidates`), stops a
window's matcher at its right margin (`stop`), and skips texts with no digit. Each shortcut
is compared here with the unmodified matcher: same entities, spans, scores and regions."""

from __future__ import annotations

import functools
import re
from unittest import mock

import phonenumbers
from hypothesis import example, given, settings
from hypothesis import strategies as st
from presidio_analyzer import EntityRecognizer, RecognizerResult

from extproc.guards import phone_recognizer as pr
from extproc.guards import recognizers
from tests.hypothesis_profiles import examples

PHONE = pr.PhoneNumbers(supported_language="en")

NUMBERS = [
    "212-555-0198",
    "(212) 555-0198",
    "+1 212 555 0198",
    "+44 20 7946 0958",
    "020 7946 0958",
    "030 1234567",
    "+49 30 1234567",
    "+33 1 23 45 67 89",
    "+91 98765 43210",
    "(11) 91234-5678",
    "011 44 20 7946 0958",
    "00 49 30 123456",
    "+00 49 30 123456",
    "1-800-FLOWERS",
    "212.555.0198 x123",
    "ext. 45",
    "2024-03-15",
    "12/05/2024",
    "10:30:45",
    "4111 1111 1111 1111",
    "０２０ ７９４６ ０９５８",
]
PIECES = [
    " ",
    " - ",
    "/",
    "/x",
    "/ x",
    "(",
    ")",
    "[",
    "+",
    ".",
    "\n",
    "7",
    "12",
    "345",
    "word",
    "x",
    ", ",
    "$",
    "%",
    "é",
]
RAW = st.text(alphabet="0123456789 -.()+\nabxé/:$%", max_size=12)

# Digits, separators, letters, `+`, parentheses and newlines, with whole numbers mixed in.
phone_text = st.lists(st.one_of(st.sampled_from(NUMBERS + PIECES), RAW), max_size=16).map("".join)


def key(r: RecognizerResult) -> tuple[object, ...]:
    """Everything a result carries: the region is in the explanation."""
    explanation = r.analysis_explanation.textual_explanation if r.analysis_explanation else None
    return (r.entity_type, r.start, r.end, r.score, explanation)


def slow_matches(text: str) -> list[RecognizerResult]:
    """What `_matches` replaced: phonenumbers' own matcher, run once per region."""
    leniency = PHONE.leniency
    assert leniency is not None  # Presidio types it as optional
    results = []
    for region in PHONE.supported_regions:
        for match in phonenumbers.PhoneNumberMatcher(text, region, leniency=leniency):
            results.append(PHONE._result(match, text, region, None))
    return EntityRecognizer.remove_duplicates(results)


class SlowPhone(pr.PhoneNumbers):
    """The recognizer before the shortcuts: no digit check, and every window analysed
    whole by the unmodified matcher (its analyze as it was, the rest inherited)."""

    def _matches(self, text, nlp_artifacts, stop=None):
        return slow_matches(text)

    def analyze(self, text, entities, nlp_artifacts=None):
        results = []
        for start, end, keep_from, keep_to in pr.windows(text):
            for r in self._matches(text[start:end], nlp_artifacts):
                r.start, r.end = r.start + start, r.end + start
                if keep_from <= r.start < keep_to:
                    results.append(r)
        covered = pr.Covered((r.start, r.end) for r in results)
        for run in pr._DIGIT_RUN.finditer(text):
            tails = []
            if run.end() - run.start() <= pr._TAIL_RUN_MAX and not covered.overlaps(run.start(), run.end()):
                tails = self._short_tails(run, entities, nlp_artifacts)
            results += tails
            results += self._adjacent_numbers(text, run, covered, tails, nlp_artifacts)
        return EntityRecognizer.remove_duplicates(results)


SLOW = SlowPhone(supported_language="en")


@given(phone_text)
@settings(max_examples=examples(500), deadline=None)
@example("+00 49 30 123456")
@example("(212) 555-0198 (212) 555-0198")
@example("call 212-555-0198 7 days")
@example("212-555-0198/x123 or +44 20 7946 0958/ x 12")  # trimmed at a second number's start
def test_shared_candidates_find_what_each_region_finds(text):
    assert [key(r) for r in PHONE._matches(text, None)] == [key(r) for r in slow_matches(text)]


@given(phone_text, st.sampled_from(PHONE.supported_regions), st.integers(0, 6))
@settings(max_examples=examples(300), deadline=None)
def test_failed_candidates_are_counted_as_phonenumbers_counts_them(text, region, tries):
    """The matcher gives up after `max_tries` failed candidates: with a small budget, the
    shared candidates give up at the same point."""
    leniency = PHONE.leniency
    assert leniency is not None  # Presidio types it as optional
    slow = phonenumbers.PhoneNumberMatcher(text, region, leniency=leniency, max_tries=tries)
    fast = pr._Matcher(text, region, PHONE.leniency, pr._Candidates(text))
    fast._max_tries = tries
    assert [(m.start, m.end) for m in fast] == [(m.start, m.end) for m in slow]


def before(stop: int, results: list[RecognizerResult]) -> list[tuple[object, ...]]:
    return [key(r) for r in results if r.start < stop]


@given(phone_text, st.integers(0, 200))
@settings(max_examples=examples(300), deadline=None)
@example("212-555-0198212-555-0198(212) 555-0198", 1)  # a match after `stop`, in a candidate before it
def test_stopping_at_a_window_margin_keeps_every_result_before_it(text, stop):
    """The results starting before `stop` are all there and unchanged (a candidate starting
    before it may still yield one after it: analyze drops those)."""
    whole = PHONE._matches(text, None)
    for at in {stop, *(r.start for r in whole), *(r.start + 1 for r in whole)}:  # and on each edge
        assert before(at, PHONE._matches(text, None, stop=at)) == before(at, whole)


@given(st.lists(phone_text, min_size=1, max_size=40).map(" ".join), st.integers(48, 160))
@settings(max_examples=examples(100), deadline=None)
@example("Ring (212) 555-0198 " * 12 + "card 4111 1111 1111 1111 then 020 7946 0958 " * 3, 96)
@example(" " * 79 + "+442079460958" + " " * 100, 96)  # starts on the first window's last kept index
def test_windowed_analysis_is_unchanged(text, size):
    """The whole recognizer (windows, short tails, adjacent numbers) with small windows, so
    generated text crosses many of them and their margins."""
    with mock.patch.object(pr, "windows", functools.partial(pr.windows, size=size, margin=16)):
        assert sorted(map(key, PHONE.analyze(text, ["PHONE_NUMBER"]))) == sorted(
            map(key, SLOW.analyze(text, ["PHONE_NUMBER"]))
        )


def test_bench_prompt_is_unchanged_at_the_real_window_size():
    """scripts/bench.py's 4 KB prompt: prose without line breaks, so overlapping windows."""
    para = (
        "Our support team reviewed the ticket and the customer history in detail before "
        "answering. The account shows normal activity over the last billing periods. "
    )
    text = (para * 30)[:4000]
    text = (
        text[:2000] + " call (212) 555-0198 " + text[2000:3000] + " card 4111 1111 1111 1111 " + text[3000:]
    )
    assert len(pr.windows(text)) == 3  # the phone sits in a right margin and the next window
    fast = sorted(map(key, PHONE.analyze(text, ["PHONE_NUMBER"])))
    assert fast == sorted(map(key, SLOW.analyze(text, ["PHONE_NUMBER"])))
    assert [(s, e) for _, s, e, *_ in fast] == [(2006, 2020)]


# Everything a phone candidate or result could be made of, but digits (fullwidth ones are
# digits too, and are left out).
no_digit_text = st.text(alphabet="+()[]-. \n/xXeEtabcé$%:#*,;ａｂ", max_size=60)


@given(no_digit_text)
@settings(max_examples=examples(300), deadline=None)
def test_text_without_a_digit_holds_no_phone_number(text):
    """Why both phone recognizers return at once on text without a `\\d`."""
    assert re.search(r"\d", text) is None
    assert slow_matches(text) == []
    assert list(pr._DIGIT_RUN.finditer(text)) == []
    assert list(recognizers._NANP.finditer(text)) == []
    assert recognizers.PhoneRecognizer(supported_language="en").analyze(text, ["PHONE_NUMBER"]) == []
