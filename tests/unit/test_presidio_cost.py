"""Presidio's cost on hostile text (guards/presidio_engine.py, guards/phone_recognizer.py): the
shortcuts taken to keep it linear and small find exactly what the slow way finds.

Timing claims live in scripts/bench_scan_cost.py; these tests count work (phonenumbers parses)
or use bounds hundreds of times above the expected cost."""

import random
import time

import phonenumbers.phonenumbermatcher as pn_matcher
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from presidio_analyzer import EntityRecognizer
from presidio_analyzer.predefined_recognizers import EmailRecognizer, PhoneRecognizer

from extproc.guards import phone_recognizer as pr
from extproc.guards import presidio_engine as pe
from tests.hypothesis_profiles import examples

PHONE = pr.PhoneNumbers(supported_language="en")
EMAIL = pe._OfflineEmailRecognizer(supported_language="en")

NUMBERS = [
    "212-555-0198",
    "(212) 555-0198",
    "+44 20 7946 0958",
    "020 7946 0958",
    "030 1234567",
    "+49 30 1234567",
    "01 23 45 67 89",
    "+33 1 23 45 67 89",
    "98765 43210",
    "+91 98765 43210",
    "(11) 91234-5678",
    "011 44 20 7946 0958",
    "00 49 30 123456",
    "1-800-FLOWERS",
    "212.555.0198 x123",
    "ext. 45",
    "2024-03-15",
    "4111 1111 1111 1111",
    "+1 212 555 0198",
]
BITS = [" ", " - ", "/", "(", ")", "+", ".", "7", "12", "345", "word", "x", ", ", ":30"]


def hostile(n: int, seed: int = 1) -> str:
    rnd = random.Random(seed)
    out: list[str] = []
    while sum(map(len, out)) < n:
        out.append("".join(rnd.choice("0123456789") for _ in range(rnd.randint(1, 5))))
        out.append(rnd.choice([" ", "-", ".", " ", "(", ")", "+", " - "]))
    return "".join(out)[:n]


def spans(results) -> list[tuple[int, int]]:
    return sorted((r.start, r.end) for r in results)


phone_text = st.lists(st.sampled_from(NUMBERS + BITS), min_size=1, max_size=14).map("".join)


# ---- windows -----------------------------------------------------------------------------------


@given(st.text(alphabet="0123456789 -.()\n!x", max_size=9000), st.integers(64, 1024), st.integers(4, 30))
@settings(max_examples=examples(300))
def test_windows_tile_the_text_and_stay_bounded(text, size, margin):
    ws = pr.windows(text, size, margin)
    assert ws[0][2] == 0 and ws[-1][3] == len(text)
    for (start, end, keep_from, keep_to), nxt in zip(ws, [*ws[1:], None], strict=False):
        assert start <= keep_from <= keep_to <= end and end - start <= size
        if nxt is not None:
            assert nxt[2] == keep_to  # keep ranges tile: nothing is dropped, nothing twice
            if text[keep_to] in pr._HARD_BREAKS and end == keep_to + 1:
                assert nxt[0] == keep_to  # exact cut: the next window starts on the break
            else:  # overlapping windows: results come from a window's middle only
                assert keep_to == end - margin and nxt[0] == end - 2 * margin


@given(st.lists(phone_text, min_size=20, max_size=120))
@settings(max_examples=examples(15), deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_windowed_phone_analysis_finds_what_the_whole_text_finds(lines):
    """Text with line breaks is cut at them: the same numbers as one matcher run."""
    text = "\n".join(lines)
    whole = spans(PHONE._matches(text, None))
    windowed = []
    for start, end, keep_from, keep_to in pr.windows(text, 512, 32):
        windowed += [
            (r.start + start, r.end + start)
            for r in PHONE._matches(text[start:end], None)
            if keep_from <= r.start + start < keep_to
        ]
    assert sorted(windowed) == whole


def test_a_number_after_65535_failed_candidates_is_still_found():
    """phonenumbers' matcher gives up after 65535 failed candidates; windows never get there."""
    text = "1 2, " * 70_000 + "call 212-555-0198"
    found = PHONE.analyze(text, ["PHONE_NUMBER"])
    assert (len(text) - 12, len(text)) in spans(found)


# ---- phone shortcuts ---------------------------------------------------------------------------


@given(st.one_of(phone_text, st.integers(1, 300).map(lambda n: hostile(n, n))))
@settings(max_examples=examples(300), deadline=None)
def test_matcher_that_skips_short_pieces_finds_the_same(text):
    assert spans(PHONE._matches(text, None)) == spans(PhoneRecognizer.analyze(PHONE, text, ["PHONE_NUMBER"]))


@given(phone_text.map(lambda t: t.strip()[:20]).filter(lambda t: 10 <= len(t)))
@settings(max_examples=examples(300), deadline=None)
@example("+00 49 30 123456")  # "+" then an international prefix: the region matters
def test_whole_span_check_agrees_with_running_the_matcher(span):
    slow = any(
        h.start == 0 and h.end == len(span) for h in PhoneRecognizer.analyze(PHONE, span, ["PHONE_NUMBER"])
    )
    assert (PHONE._whole_span_region(span) is not None) == slow


def test_phone_guard_parses_less_than_plain_presidio(monkeypatch):
    """Our recognizer finds more than Presidio's (short tails, adjacent numbers) and still
    parses fewer candidates: the old one parsed 3.6x as many, in quadratic loops."""
    calls = [0]
    real = vars(pn_matcher)["parse"]  # the matcher's own import of it, not in phonenumbers' stubs

    def counting(*args, **kwargs):
        calls[0] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(pn_matcher, "parse", counting)
    text = hostile(6000)
    PhoneRecognizer(supported_language="en").analyze(text, ["PHONE_NUMBER"])
    plain, calls[0] = calls[0], 0
    PHONE.analyze(text, ["PHONE_NUMBER"])
    assert calls[0] < plain


# ---- email -------------------------------------------------------------------------------------

email_text = st.lists(
    st.sampled_from(
        [
            "a",
            "b",
            ".",
            "-",
            "_",
            "@",
            " ",
            "!",
            "x",
            "example.com",
            "jane.doe",
            "co.uk",
            "--",
            "..",
            "é",
            "\n",
            "1",
        ]
    ),
    max_size=30,
).map("".join)


@given(email_text)
@settings(max_examples=examples(500), deadline=None)
def test_email_search_around_each_at_finds_what_presidio_finds(text):
    presidio = EntityRecognizer.remove_duplicates(EmailRecognizer.analyze(EMAIL, text, ["EMAIL_ADDRESS"]))
    assert [
        (r.start, r.end, r.score)
        for r in sorted(EMAIL.analyze(text, ["EMAIL_ADDRESS"]), key=lambda r: r.start)
    ] == [(r.start, r.end, r.score) for r in sorted(presidio, key=lambda r: r.start)]


@pytest.mark.parametrize("text", ["a." * 25_000 + "@", ("a-" * 50 + "a.") * 500 + "@x", "x@" + "a." * 25_000])
def test_email_cost_is_linear_on_hostile_text(text):
    """Presidio's own pattern took 27 s on 10 KB of "a.a.a.…@" (quadratic): 50 KB would take
    ten minutes. Searching around each '@' takes milliseconds."""
    started = time.process_time()
    assert EMAIL.analyze(text, ["EMAIL_ADDRESS"]) == []
    assert time.process_time() - started < 5


def test_email_still_found_in_long_text():
    text = "a." * 5000 + " write to jane.doe@example.com or " + "b." * 5000 + "x@y.org"
    found = spans(EMAIL.analyze(text, ["EMAIL_ADDRESS"]))
    assert [text[s:e] for s, e in found] == ["jane.doe@example.com", "b." * 5000 + "x@y.org"]
