"""Recall of the four kgateway builtins by written form, and precision on benign text.

Each corpus entry is one way of writing a value. A form is *caught* when masking
`Details: <form>, thanks.` replaces exactly the form by its label. Forms marked `issue`
are the bypasses listed in issue 9 and must all be caught; the others are measured, and
the per-builtin figures are the table in the README ("Recall by written form"), which
`test_readme_table_is_current` keeps true. Run this file with `-s` to print the table.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from extproc.guards.config import ResponseGuardConfig
from extproc.guards.pipeline import ResponseGuards
from extproc.guards.regex_guard import RegexGuardConfig, TextScanner
from extproc.guards.stream_guard import StreamTextGuard

BUILTINS = ["CREDIT_CARD", "SSN", "EMAIL", "PHONE_NUMBER"]
ZW, ZWJ, WJ, SHY, NBSP, NNBSP = "\u200b", "\u200d", "\u2060", "\u00ad", "\u00a0", "\u202f"


def digits(value: str, zero: int) -> str:
    return "".join(chr(zero + int(c)) if c.isdigit() else c for c in value)


CARD = "4111 1111 1111 1111"
# builtin -> [(form, written value, listed in the issue)]
CORPUS: dict[str, list[tuple[str, str, bool]]] = {
    "CREDIT_CARD": [
        ("groups of 4, spaces", CARD, False),
        ("groups of 4, dashes", "5555-5555-5555-4444", False),
        ("no separators", "378282246310005", False),
        ("Amex 4-6-5", "3782 822463 10005", False),
        ("fullwidth digits", digits(CARD, 0xFF10), True),
        ("Arabic-Indic digits", digits(CARD, 0x660), True),
        ("Devanagari digits", digits(CARD, 0x966), True),
        ("mathematical bold digits", digits(CARD, 0x1D7CE), True),
        ("zero-width spaces as separators", CARD.replace(" ", ZW), True),
        ("zero-width characters inside groups", f"4{ZW}111 11{ZWJ}11 1111 111{WJ}1", True),
        ("NBSP separators", CARD.replace(" ", NBSP), True),
        ("narrow NBSP separators", CARD.replace(" ", NNBSP), True),
        ("dots", "4111.1111.1111.1111", True),
        ("Amex with dots", "3782.822463.10005", True),
        ("grouping 2-4-4-4-2", "41 1111 1111 1111 11", True),
        ("grouping 4-6-6", "4111 111111 111111", True),
        ("grouping 8-8", "55555555 55554444", True),
        ("single digits", " ".join("4111111111111111"), True),
        ("en dashes", CARD.replace(" ", "\u2013"), False),
        ("soft hyphens", CARD.replace(" ", SHY), False),
        ("mixed separators", "4111 1111-1111.1111", False),
        ("figure spaces", CARD.replace(" ", "\u2007"), False),
        ("glued to a word", "ref4111111111111111", False),
        # The guard-bypass audit's forms: a card's grouping, other separators.
        ("double spaces", CARD.replace(" ", "  "), False),
        ("spaced dashes", CARD.replace(" ", " - "), False),
        ("slashes", CARD.replace(" ", "/"), False),
        ("underscores", CARD.replace(" ", "_"), False),
        ("pipes", CARD.replace(" ", "|"), False),
        ("commas", CARD.replace(" ", ","), False),
        ("asterisks", CARD.replace(" ", "*"), False),
        ("plus signs", CARD.replace(" ", "+"), False),
        ("colons", CARD.replace(" ", ":"), False),
        ("tabs", CARD.replace(" ", "\t"), False),
        ("line breaks", CARD.replace(" ", "\n"), False),
        ("middle dots", CARD.replace(" ", "\u00b7"), False),
        ("bullets", CARD.replace(" ", "\u2022"), False),
        ("Amex 4-6-5, slashes", "3782/822463/10005", False),
    ],
    "SSN": [
        ("hyphens", "536-90-4399", False),
        ("spaces", "536 90 4399", False),
        ("dots", "536.90.4399", False),
        ("U+2010 hyphen", "536\u201090\u20104399", True),
        ("non-breaking hyphen", "536\u201190\u20114399", True),
        ("figure dash", "536\u201290\u20124399", True),
        ("en dash", "536\u201390\u20134399", True),
        ("em dash", "536\u201490\u20144399", True),
        ("minus sign", "536\u221290\u22124399", True),
        ("small hyphen-minus", "536\ufe6390\ufe634399", True),
        ("fullwidth hyphen-minus", "536\uff0d90\uff0d4399", True),
        ("soft hyphens", f"536{SHY}90{SHY}4399", True),
        ("soft hyphens next to hyphens", f"536{SHY}-90-{SHY}4399", True),
        ("NBSP", f"536{NBSP}90{NBSP}4399", False),
        ("fullwidth digits", digits("536-90-4399", 0xFF10), False),
        ("zero-width inside", f"53{ZW}6-90-43{ZW}99", False),
        ("no separators", "536904399", False),  # 0.05 without context: below the threshold
        # The guard-bypass audit's forms.
        ("spaced dashes", "536 - 90 - 4399", False),
        ("slashes", "536/90/4399", False),
        ("underscores", "536_90_4399", False),
        ("double spaces", "536  90  4399", False),
        ("tabs", "536\t90\t4399", False),
    ],
    "EMAIL": [
        ("plain", "jane.doe@example.com", False),
        ("subaddress", "jane.doe+billing@mail.example.co.uk", False),
        ("fullwidth @", "jane.doe\uff20example.com", True),
        ("small @", "jane.doe\ufe6bexample.com", False),
        ("all fullwidth", "ｊａｎｅ＠ｅｘａｍｐｌｅ．ｃｏｍ", False),
        ("zero-width in local part", f"ja{ZW}ne@example.com", True),
        ("zero-width around @", f"jane{ZWJ}@{ZW}example.com", True),
        ("zero-width in domain", f"jane@exam{WJ}ple.com", True),
        ("soft hyphen in domain", f"jane@exam{SHY}ple.com", False),
        ("quoted local part", '"jane doe"@example.com', True),
        ("quoted local part with escapes", '"jane\\"q\\"doe"@example.com', True),
        ("IPv4 literal", "jane@[192.168.0.1]", True),
        ("IPv6 literal", "jane@[IPv6:2001:db8::1]", True),
        ("single-label domain", "admin@intranet", True),
        ("localhost", "root@localhost", True),
        (".internal domain", "jane@corp.internal", False),
        (".local domain", "ops@db.local", False),
        ("percent-encoded @", "jane%40example.com", False),
        ("HTML decimal reference @", "jane&#64;example.com", False),
        ("HTML hex reference @", "jane&#x40;example.com", False),
        ("HTML named reference @", "jane&commat;example.com", False),
        ("spelled out", "jane at example dot com", False),
        ("spelled out with brackets", "jane [at] example [dot] com", False),
    ],
    "PHONE_NUMBER": [
        ("(NXX) NXX-XXXX", "(212) 555-0198", False),
        ("dashes", "212-555-0198", False),
        ("dots", "212.555.0198", False),
        ("+1 spaces", "+1 212 555 0198", False),
        ("international", "+44 20 7946 0958", False),
        ("no separators, valid", "2125550198", False),
        ("area code 123", "(123) 456-7890", True),
        ("exchange starting 0", "212-055-0198", True),
        ("area code starting 0", "012-555-0198", True),
        ("area code starting 1", "(100) 555-0198", True),
        ("555-01XX fictional", "212-555-0100", True),
        ("555 area code", "(555) 555-5555", True),
        ("+1, invalid", "+1 212 055 0198", True),
        ("1- prefix, invalid", "1-100-555-0198", True),
        ("+1 dots, invalid", "+1.100.055.0198", True),
        ("+1 and 10 digits, invalid", "+11005550198", True),
        ("slash", "100/555-0198", True),
        ("Unicode dashes", "212\u2010055\u20100198", True),
        ("NBSP", f"(100){NBSP}555{NBSP}0198", True),
        ("fullwidth digits", digits("(212) 555-0198", 0xFF10), True),
        ("zero-width inside", f"21{ZW}2-55{ZW}5-0198", True),
        ("no separators, invalid", "1005550198", False),  # an order number as often as a phone
        ("1 and 10 digits, invalid", "11005550198", False),
    ],
}


@pytest.fixture(scope="module")
def four() -> TextScanner:
    return TextScanner(RegexGuardConfig.model_validate({"builtins": BUILTINS}))


def _text(form: str) -> str:
    return f"Details: {form}, thanks."


def caught(scanner: TextScanner, builtin: str, form: str) -> bool:
    return scanner.mask(_text(form))[0] == f"Details: <{builtin}>, thanks."


def recall_table(scanner: TextScanner) -> dict[str, tuple[int, int, int, int]]:
    """builtin -> (issue forms caught, issue forms, all forms caught, all forms)."""
    table = {}
    for builtin, forms in CORPUS.items():
        hits = [(issue, caught(scanner, builtin, value)) for _, value, issue in forms]
        table[builtin] = (
            sum(h for i, h in hits if i),
            sum(1 for i, _ in hits if i),
            sum(h for _, h in hits),
            len(hits),
        )
    return table


ISSUE_FORMS = [(b, name, value) for b, forms in CORPUS.items() for name, value, issue in forms if issue]


@pytest.mark.parametrize("builtin, name, value", ISSUE_FORMS, ids=[f"{b}:{n}" for b, n, _ in ISSUE_FORMS])
def test_every_form_the_issue_lists_is_masked_exactly(four, builtin, name, value):
    assert four.mask(_text(value))[0] == f"Details: <{builtin}>, thanks."


# The forms the guard-bypass audit found missed (all must be caught, like the issue's).
_AUDIT_NAMES = {
    "CREDIT_CARD": {
        "double spaces",
        "spaced dashes",
        "slashes",
        "underscores",
        "pipes",
        "asterisks",
        "plus signs",
        "colons",
        "tabs",
        "line breaks",
        "middle dots",
        "bullets",
        "Amex 4-6-5, slashes",
    },
    # Not commas (cards) or slashes (SSNs): they join lists and ratios of numbers
    # ("128, 64, 1024", "512/32/4096"), which a REJECT route would refuse (BENIGN below).
    "SSN": {"spaced dashes", "underscores", "double spaces", "tabs"},
    "EMAIL": {
        "percent-encoded @",
        "HTML decimal reference @",
        "HTML hex reference @",
        "HTML named reference @",
    },
}
AUDIT_FORMS = [
    (b, name, value)
    for b, forms in CORPUS.items()
    for name, value, _ in forms
    if name in _AUDIT_NAMES.get(b, ())
]


@pytest.mark.parametrize("builtin, name, value", AUDIT_FORMS, ids=[f"{b}:{n}" for b, n, _ in AUDIT_FORMS])
def test_every_form_the_audit_lists_is_masked_exactly(four, builtin, name, value):
    assert four.mask(_text(value))[0] == f"Details: <{builtin}>, thanks."
    assert four.mask(f"{value}")[0] == f"<{builtin}>"


def test_audit_forms_are_all_listed():
    assert len(AUDIT_FORMS) == 13 + 4 + 4


def test_recall_per_builtin(four):
    table = recall_table(four)
    print("\n| builtin | forms listed in issue 9 | all written forms |")
    print("|---|---|---|")
    for builtin, (ih, itotal, h, total) in table.items():
        print(f"| `{builtin}` | {ih}/{itotal} | {h}/{total} ({100 * h / total:.0f}%) |")
    misses = {b: [n for n, v, _ in CORPUS[b] if not caught(four, b, v)] for b in CORPUS}
    print("misses:", misses)
    for builtin, (ih, itotal, _, _) in table.items():
        assert ih == itotal, (builtin, misses[builtin])


def test_readme_table_is_current(four):
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    section = readme.split("#### Recall by written form", 1)[1]
    for builtin, (ih, itotal, h, total) in recall_table(four).items():
        row = re.search(rf"^\| `{builtin}` \| (\d+)/(\d+) \| (\d+)/(\d+) ", section, re.MULTILINE)
        assert row, builtin
        assert tuple(map(int, row.groups())) == (ih, itotal, h, total), builtin


# ---- precision -----------------------------------------------------------------------------

BENIGN = [
    "Upgrade to version 1.2.3.4 or v10.4.22 (build 2.0.1-rc1); Python 3.11.7 and node 20.11.1.",
    "The meeting is on 2024-03-15, i.e. 03/15/2024 or 15.03.2024, at 10:30:00 UTC.",
    "It costs $1,299.99 (1299.99 EUR, or €12.50 a month); 1 000 000 units, 12 345 678 in total.",
    "Your order id is 482913657; order #48291365 shipped, invoice INV-2024-0001-2345 is paid.",
    "Request 123e4567-e89b-12d3-a456-426614174000, commit 9fceb02d0ae598e95dc970b74dd8b7a4d1e9f9b1.",
    "npm install react@latest lodash@4.17.21 typescript@next; pin nginx@sha256:0d17b565c37bcbd8.",
    "In Python, c = a @ b multiplies matrices; @property and @dataclass are decorators; ping @jane_doe.",
    'He said "yes, of course" and left; she replied "see you at 5" and "ok".',
    "See [1] and [2, 3]; ISBN 978-3-16-148410-0 and zip 94105-1234.",
    "Coordinates 40.7128, -74.0060; chapter 3.2.1, section 4.5.6.7.",
    "Scores: 12 15 9 22 31 and 7; the recipe serves 4 to 6 people.",
    "| id | qty | price |\n| 12 | 34 | 56.78 |\n| 13 | 2 | 9.99 |",
    "Call the help desk at extension 4512 or room 301; flight LH 454 leaves at 14:35 from B22.",
    "The 2023 revenue was 4,567,890,123 dollars, up 12.5% from 2022.",
    "Batch sizes 128, 64, 1024; ports 443, 80, 8080; a 512/32/4096 split; codes 4242, 4242, 4242, 4242.",
    "Use the icon@2x.png and logo@3x.jpg assets; write to x@y in the template.",
    "Tracking number 1Z999AA10123456784 via UPS; page 12 of 345, lines 100-200.",
    "Version ranges: >=1.2.3 <2.0.0, ~4.17.21, ^18.2.0; hex colour #4111ff and rgb(41, 11, 255).",
    "２０２４年３月１５日に会議があります。価格は￥１，２００です。",
    "Temperature −5 °C to +12 °C, wind 15–20 km/h; mix 1–2 cups with 3–4 eggs for 25–30 minutes.",
    "Ünïcødé\u00a0text with\u202fnarrow spaces, ﬁne ligatures, ① ② ③ and a zero\u200bwidth space.",
    "Family emoji 👨\u200d👩\u200d👧 and keycaps 1\ufe0f\u20e3 2\ufe0f\u20e3 in a chat message.",
    "Quote: «déjà vu» — “smart quotes” and ‘single’ ones; em—dash and en–dash.",
    # Separators a card or SSN may now use, in ordinary text.
    "Dates 2024/01/15, 15/01/2024 and 2024_01_15; times 12:30, 12:30:45 and 09:05; ratio 16:9.",
    "Lists: 41, 11, 11, 11, 11, 11, 11, 11 and 45 | 67 | 89 | 12 | 34 | 56 | 78; 1*2*3*4*5*6*7*8.",
    "Versions 4.1111_2 and 1.2.3+build.4; path a/b/c_1_2; score 3 - 2 - 1; pages 120  -  130.",
    "Table\n| 1234 | 5678 |\n| 9012 | 3456 |\n\tindented 10\t20\t30\t40",
    "URL https://x.example/search?q=a%20b&page=2%40 and 100%40 off; &#64; alone, &commat; too.",
    "Escaped text: name&#64;, &#x40;home, %40home and AT&amp;T; a&#64;b is no address.",
    "Order 2024 / 0115 / 3344 / 5566 in a 4 - 4 - 4 - 4 list; 4111 / 2024.",
]


@pytest.mark.parametrize("text", BENIGN)
def test_benign_text_is_left_alone(four, text):
    assert four.scan(text) == []


# ---- streams: the hold-back waits through every written form --------------------------------

STREAM = ResponseGuards(
    ResponseGuardConfig.model_validate(
        {"regex": {"action": "MASK", "builtins": BUILTINS}, "streamWindow": 256}
    ),
    "r",
)
ALL_FORMS = [(b, name, value) for b, forms in CORPUS.items() for name, value, _ in forms]


@pytest.mark.parametrize("step", [1, 3])
@pytest.mark.parametrize("builtin, name, value", ALL_FORMS, ids=[f"{b}:{n}" for b, n, _ in ALL_FORMS])
def test_streamed_forms_equal_the_whole_text_mask(builtin, name, value, step):
    text = _text(value)
    assert STREAM.scanner is not None and STREAM.holdback is not None
    guard = StreamTextGuard(STREAM.scanner, STREAM.holdback, 256, False)
    out = [guard.feed(text[i : i + step])[0] for i in range(0, len(text), step)]
    out.append(guard.finish()[0])
    # A piece of the value released before the rest arrived would show here, unmasked.
    assert "".join(out) == STREAM.scanner.mask(text)[0]


@pytest.mark.parametrize(
    "value, label",
    [
        ("4111   -   1111   -   1111   -   1111   -   110", "<CREDIT_CARD>"),  # 19 digits, widest separators
        ("4111\t\t\t/\t\t\t1111\t\t\t/\t\t\t1111\t\t\t/\t\t\t1111", "<CREDIT_CARD>"),
        ("536   _   90   _   4399", "<SSN>"),
        ("4111      -      1111      -      1111      -      1111", None),  # wider: no card either way
    ],
)
def test_the_widest_separators_a_value_may_have_fit_the_hold_back(value, label):
    """A value is read with at most as much padding as the hold-back waits for, so a
    stream fed a character at a time masks what the whole text masks, never a tail."""
    text = f"pay {value} now"
    assert STREAM.scanner is not None and STREAM.holdback is not None
    whole = STREAM.scanner.mask(text)[0]
    assert whole == (f"pay {label} now" if label else text)
    guard = StreamTextGuard(STREAM.scanner, STREAM.holdback, 256, False)
    assert "".join(guard.feed(ch)[0] for ch in text) + guard.finish()[0] == whole


def test_invisible_padding_does_not_release_the_start_of_a_value():
    """A card padded with zero-width characters is longer than any card, counted in raw
    characters; the hold-back counts view characters, so its start still waits."""
    value = (ZW * 3).join("4111111111111111")
    text = f"pay {value} now"
    assert STREAM.scanner is not None and STREAM.holdback is not None
    guard = StreamTextGuard(STREAM.scanner, STREAM.holdback, 256, False)
    out = "".join(guard.feed(ch)[0] for ch in text) + guard.finish()[0]
    assert out == "pay <CREDIT_CARD> now"


@pytest.mark.parametrize(
    "text, masked",
    [
        ("+1 212 055 0198 +1 212 055 0198", "<PHONE_NUMBER> <PHONE_NUMBER>"),
        ("(100) 555-0198 (100) 555-0198", "<PHONE_NUMBER> <PHONE_NUMBER>"),
        ("100-555-0198 100-555-0198", "<PHONE_NUMBER> <PHONE_NUMBER>"),
        ("ref 12 100-555-0198", "ref 12 <PHONE_NUMBER>"),
        ("Order 4111 111 111 1112", "Order 4111 111 111 1112"),  # no phone inside a longer number
        ("2024-03-15 4111.1111.1111.1111", "2024-03-15 <CREDIT_CARD>"),  # a card after a date
    ],
)
def test_shapes_next_to_other_numbers(four, text, masked):
    assert four.mask(text)[0] == masked
