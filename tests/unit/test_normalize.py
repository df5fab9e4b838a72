"""The guard's detection views (extproc/guards/normalize.py) and masking through them:
a value written with Unicode digits, dashes, spaces or invisible characters is found in
the view and masked on exactly the original characters."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from extproc.guards.normalize import normalize, views
from extproc.guards.regex_guard import RegexGuardConfig, TextScanner
from tests.hypothesis_profiles import examples


@pytest.fixture(scope="module")
def four() -> TextScanner:
    return TextScanner(
        RegexGuardConfig.model_validate(
            {
                "builtins": ["CREDIT_CARD", "EMAIL", "PHONE_NUMBER", "SSN"],
                "matches": [{"pattern": "credit card", "name": "CC_WORDS"}],
            }
        )
    )


@pytest.mark.parametrize(
    "text, view",
    [
        ("４１１１ １１１１", "4111 1111"),  # fullwidth digits
        ("٤١١١-١١١١", "4111-1111"),  # Arabic-Indic digits
        ("𝟒𝟏𝟏𝟏", "4111"),  # mathematical bold digits (NFKC)
        ("①②", "12"),  # circled digits (NFKC)
        ("4111\u200b1111\u2060", "41111111"),  # zero-width space, word joiner
        ("536\u201090\u2013 4399\u2212", "536-90- 4399-"),  # hyphen, en dash, minus
        ("a\u00a0b\u202fc\u3000d", "a b c d"),  # NBSP, narrow NBSP, ideographic space
        ("bob\uff20example\uff0ecom", "bob@example.com"),  # fullwidth @ and full stop
        ("\ufb01x", "fix"),  # ligature expands
        ("e\u0301", "é"),  # base + combining mark contracts
        ("1\ufe0f\u20e3", "1"),  # keycap: marks on a digit are dropped
        ("\ufeffx\u00ady", "xy"),  # BOM, soft hyphen
    ],
)
def test_joined_view(text, view):
    assert normalize(text).text == view


def test_printable_ascii_is_its_own_view():
    v = normalize("Call 212-555-0198\tor\nmail bob@example.com")
    assert v.original and v.identity and v.span(5, 17) == (5, 17)
    (only,) = views("plain text")
    assert only.original and only.text == "plain text"


def test_one_for_one_characters_keep_their_offsets():
    v = normalize("pay ４１１１\u00a01111 ok")
    assert v.text == "pay 4111 1111 ok" and v.identity and not v.original


def test_expansion_and_contraction_map_to_whole_clusters():
    v = normalize("\ufb01 e\u0301!")
    assert v.text == "fi é!"
    assert v.starts is not None and v.ends is not None
    assert [(v.starts[i], v.ends[i]) for i in range(len(v.text))] == [(0, 1), (0, 1), (1, 2), (2, 4), (4, 5)]
    assert v.span(3, 5) == (2, 5)  # "é!" covers the e, its accent and the "!"


def test_split_view_only_where_an_invisible_run_joins_two_words():
    assert [v.text for v in views("536\u00ad90\u00ad4399")] == ["536904399", "536 90 4399"]
    assert [v.text for v in views("card\u200b4111")] == ["card4111", "card 4111"]
    assert [v.text for v in views("call\u200b+1 212")] == ["call+1 212", "call +1 212"]
    # Inside an emoji ZWJ sequence, or next to a space, joining changes nothing: one view.
    assert [v.text for v in views("👩\u200d💻 ok \u200bthen")] == ["👩💻 ok then"]
    # A stream's text may still grow: a run at its end after a word counts.
    assert len(views("credit\u200b", open_end=True)) == 2 and len(views("credit\u200b")) == 1


_ALPHABET = st.sampled_from(
    [
        *list("ab1 -.@"),
        "\u200b",
        "\u200d",
        "\xad",
        "\ufeff",
        "\u2060",
        "\xa0",
        "\u202f",
        "‐",
        "−",
        "１",
        "١",
        "ﬁ",
        "́",
        "⃣",
        "️",
        "①",
        "＠",
        "\x00",
        "ㅤ",
        "é",
        "中",
        "😀",
        "\n",
    ]
)


@settings(max_examples=examples(400), deadline=None)
@given(text=st.lists(_ALPHABET, max_size=40).map("".join))
def test_offset_map_is_monotonic_and_accounts_for_every_character(text):
    for v in views(text, open_end=True):
        if v.original:
            assert v.text == text
            continue
        spans = [v.span(i, i + 1) for i in range(len(v.text))]
        assert all(0 <= a < b <= len(text) for a, b in spans)
        assert spans == sorted(spans) and [b for _, b in spans] == sorted(b for _, b in spans)
        covered: set[int] = set()
        for a, b in spans:
            covered.update(range(a, b))
        for i, ch in enumerate(text):  # what no view character covers was dropped as invisible
            assert i in covered or unicodedata.category(ch) in ("Cf", "Cc", "Mn", "Me") or ch == "\u3164", (
                i,
                ch,
            )
        for i, (a, _) in enumerate(spans):  # index() finds the first view character at or after a position
            assert v.index(a) <= i and v.start_of(i) == a
    joined = normalize(text)
    i = 0
    while i < len(joined.text):  # each cluster, normalised alone, reads the same
        a, b = joined.span(i, i + 1)
        j = i
        while j < len(joined.text) and joined.span(j, j + 1) == (a, b):
            j += 1
        assert normalize(text[a:b]).text == joined.text[i:j]
        i = j


# ---- masking through the views ---------------------------------------------------------------

VALUES = [  # (value, label) in plain ASCII; the strategies below rewrite them
    ("4111 1111 1111 1111", "CREDIT_CARD"),
    ("5555-5555-5555-4444", "CREDIT_CARD"),
    ("378282246310005", "CREDIT_CARD"),
    ("536-90-4399", "SSN"),
    ("219 09 9999", "SSN"),
    ("bob@example.com", "EMAIL"),
    ("jane.doe+x@mail.example.org", "EMAIL"),
    ("(212) 555-0198", "PHONE_NUMBER"),
    ("+1 212 555 0198", "PHONE_NUMBER"),
    ("212.555.0198", "PHONE_NUMBER"),
    ("credit card", "CC_WORDS"),
]
DIGIT_ZEROS = [0x30, 0xFF10, 0x660, 0x6F0, 0x966, 0x9E6, 0xE50, 0x1D7CE, 0x1D7EC]
INVISIBLE = ["\u200b", "\u200c", "\u200d", "\u2060", "\ufeff", "\u00ad", "\u180e", "\u2063"]
DASHES = ["-", "\u2010", "\u2011", "\u2012", "\u2013", "\u2212", "\ufe63", "\uff0d"]
SPACES = [" ", "\u00a0", "\u202f", "\u2007", "\u2009", "\u3000"]
ATS = ["@", "\uff20", "\ufe6b"]


@st.composite
def written(draw, value: str) -> str:
    """`value` with each digit in a random script, each dash, space and @ replaced by a
    random variant, and invisible characters between random pairs of characters."""
    out = []
    for k, ch in enumerate(value):
        if ch.isdigit():
            ch = chr(draw(st.sampled_from(DIGIT_ZEROS)) + int(ch))
        elif ch == "-":
            ch = draw(st.sampled_from(DASHES))
        elif ch == " ":
            ch = draw(st.sampled_from(SPACES))
        elif ch == "@":
            ch = draw(st.sampled_from(ATS))
        out.append(ch)
        if k < len(value) - 1 and draw(st.integers(0, 3)) == 0:
            out.append("".join(draw(st.lists(st.sampled_from(INVISIBLE), min_size=1, max_size=3))))
    return "".join(out)


_WORDS = st.lists(st.sampled_from(["see", "the", "note", "ok", "für", "日本", "now"]), max_size=3).map(
    " ".join
)


@settings(max_examples=examples(300), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_mask_covers_exactly_the_written_value(four, data):
    value, label = data.draw(st.sampled_from(VALUES))
    form = data.draw(written(value))
    before, after = data.draw(_WORDS), data.draw(_WORDS)
    text = f"{before} {form} {after}."
    start = len(before) + 1
    masked, findings = four.mask(text)
    assert masked == f"{before} <{label}> {after}.", (form, findings)
    assert [(f.start, f.end) for f in findings] == [(start, start + len(form))]


def test_findings_keep_invisible_characters_inside_and_leave_those_around(four):
    text = "card \u200b4\u200b111 1111 1111 1111\u200b ok"
    (f,) = four.scan(text)
    assert text[f.start : f.end] == "4\u200b111 1111 1111 1111"
    assert four.mask(text)[0] == "card \u200b<CREDIT_CARD>\u200b ok"


def test_custom_patterns_read_the_original_text_and_the_views():
    s = TextScanner(
        RegexGuardConfig.model_validate(
            {"matches": [{"pattern": "credit card", "name": "CC"}, {"pattern": "[０-９]{3}", "name": "WIDE"}]}
        )
    )
    assert s.mask("credit\u200bcard, credit\u00a0card, ｃｒｅｄｉｔ card")[0] == "<CC>, <CC>, <CC>"
    assert s.mask("id ４５６ and 456")[0] == "id <WIDE> and 456"  # the original's own characters
