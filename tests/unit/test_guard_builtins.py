"""Presidio builtins in the regex guard, on realistic text, fully offline.

What Presidio (2.2.366, no NLP model, default phone regions US GB DE FR IL IN CA BR) gives:
phone numbers score 0.4, dashed/spaced SSNs 0.5, Luhn-valid cards and emails with a known
TLD 1.0, and a bare 9-digit number 0.05 as a "very weak" SSN. The guard's default
threshold of 0.3 sits between the last two.
"""

from __future__ import annotations

import itertools
import socket

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from presidio_analyzer import AnalyzerEngine
from pydantic import ValidationError

from extproc.guards import presidio_engine
from extproc.guards.regex_guard import Finding, RegexGuardConfig, TextScanner
from tests.hypothesis_profiles import examples

FOUR = ["CREDIT_CARD", "EMAIL", "PHONE_NUMBER", "SSN"]


def make(builtins=FOUR, matches=(), **config) -> TextScanner:
    raw = {"builtins": list(builtins), "matches": list(matches), **config}
    return TextScanner(RegexGuardConfig.model_validate(raw))


@pytest.fixture(scope="module")
def four() -> TextScanner:
    return make()


@pytest.mark.parametrize(
    "phone",
    [
        "(212) 555-0198",
        "212-555-0198",
        "+1 212 555 0198",
        "212.555.0198",
        "+44 20 7946 0958",
        "2125550198",
        "+1-212-555-0198",
        "020 7946 0958",
        "+49 30 901820",
        "+33 1 42 68 53 00",
    ],
)
def test_phone_formats(four, phone):
    text = f"Hi, call me at {phone} after 5pm."
    assert four.mask(text)[0] == "Hi, call me at <PHONE_NUMBER> after 5pm."
    assert four.scan(text)[0].score == pytest.approx(0.4)


@pytest.mark.parametrize(
    "card",
    [
        "4111 1111 1111 1111",
        "4111-1111-1111-1111",
        "4111111111111111",  # Visa
        "5555 5555 5555 4444",
        "5555-5555-5555-4444",  # Mastercard
        "3782 822463 10005",
        "3782-822463-10005",
        "378282246310005",  # Amex
        "4111 1111 1111  1111",  # white space of any length between the groups
        "4111  1111 1111 1111",
        "3782 822463\n10005",
    ],
)
def test_card_numbers(four, card):
    text = f"Please charge my card {card} for the renewal."
    masked, findings = four.mask(text)
    assert masked == "Please charge my card <CREDIT_CARD> for the renewal."
    assert findings[0].score == 1.0  # Luhn-validated


@pytest.mark.parametrize("ssn", ["536-90-4399", "536 90 4399", "219-09-9999", "536 90  4399", "536\t90 4399"])
def test_ssn(ssn):
    text = f"My social security number is {ssn}, please update it."
    assert make(["SSN"]).mask(text)[0] == "My social security number is <SSN>, please update it."


@pytest.mark.parametrize(
    "not_an_ssn",
    [
        "078-05-1120",  # the Woolworth wallet SSN: Presidio rejects published sample numbers
        "123-45-6789",
        "000-12-3456",
        "666-12-3456",  # sample / never-issued area numbers
        "536-00-4399",
        "536-90-0000",
        "536-90 4399",  # zero group, mixed delimiters
    ],
)
def test_ssn_invalidated_by_presidio(not_an_ssn):
    assert make(["SSN"]).scan(f"SSN: {not_an_ssn}") == []


@pytest.mark.parametrize(
    "text, masked",
    [
        ("Reach me at +44 20 7946 0958 24 hours a day", "Reach me at <PHONE_NUMBER> 24 hours a day"),
        ("Call (212) 555-0198 7 days a week", "Call <PHONE_NUMBER> 7 days a week"),
        ("Try +1 212 555 0198 2 times", "Try <PHONE_NUMBER> 2 times"),
    ],
)
def test_phone_followed_by_a_short_number(four, text, masked):
    # Presidio alone finds nothing here: phonenumbers glues the trailing number on.
    assert four.mask(text)[0] == masked


def test_sample_ssn_is_still_caught_as_a_phone_number(four):
    # With PHONE_NUMBER on, 078-05-1120 parses as a number in one of the default regions.
    assert four.mask("SSN: 078-05-1120")[0] == "SSN: <PHONE_NUMBER>"


@pytest.mark.parametrize(
    "email",
    [
        "jane.doe+newsletter@example.com",
        "ops@mail.eu.example.co.uk",
        "First.Last@sub-domain.example.org",
        "JOHN_SMITH@EXAMPLE.COM",
    ],
)
def test_emails(four, email):
    assert four.mask(f"Write to {email}.")[0] == "Write to <EMAIL>."


# `user@localhost` is an address on a single-label internal domain, masked since issue 9
# (tests/unit/test_guard_recall.py); package tags and digests after an `@` are not.
@pytest.mark.parametrize(
    "not_an_email",
    ["x@y", "a@b.notarealtld", "@jane_doe", "react@latest", "nginx@sha256", "lodash@4.17.21", "icon@2x.png"],
)
def test_not_emails(four, not_an_email):
    assert four.scan(f"ping {not_an_email} today") == []


@pytest.mark.parametrize(
    "text",
    [
        "Order 4111 1111 1111 1112 has shipped.",  # card length and prefix, fails Luhn
        "Your order id is 482913657.",  # 9 digits: a 0.05 "SSN", under the threshold
        "Upgrade to version 1.2.3 or v10.4.22 (build 2.0.1-rc1).",
        "The meeting is on 2024-03-15, i.e. 03/15/2024, at 10:30.",
        "It costs $1,299.99 (1299.99 EUR, or €12.50 a month).",
        "See ISBN 978-3-16-148410-0 and zip 94105-1234.",
    ],
)
def test_false_positives_are_not_flagged(four, text):
    assert four.scan(text) == []
    assert four.mask(text) == (text, [])


def test_mask_exact_output(four):
    text = "Call me at (212) 555-0198 or mail jane@example.com"
    assert four.mask(text)[0] == "Call me at <PHONE_NUMBER> or mail <EMAIL>"


def test_multiple_entities_in_one_text(four):
    text = (
        "Customer Jane (jane.doe+billing@mail.example.co.uk, +1 212 555 0198) paid with "
        "5555-5555-5555-4444; SSN 536-90-4399. Second card: 3782 822463 10005."
    )
    masked, findings = four.mask(text)
    assert masked == (
        "Customer Jane (<EMAIL>, <PHONE_NUMBER>) paid with <CREDIT_CARD>; "
        "SSN <SSN>. Second card: <CREDIT_CARD>."
    )
    assert [f.entity for f in findings] == ["EMAIL", "PHONE_NUMBER", "CREDIT_CARD", "SSN", "CREDIT_CARD"]
    assert findings == sorted(findings, key=lambda f: f.start)
    assert all(a.end <= b.start for a, b in itertools.pairwise(findings))


def test_custom_and_builtin_on_the_same_span_custom_name_wins():
    s = make(["CREDIT_CARD"], [{"pattern": "5[1-5][0-9]{14}", "name": "MASTERCARD"}])
    assert s.mask("mc 5555555555554444 visa 4111111111111111")[0] == "mc <MASTERCARD> visa <CREDIT_CARD>"


def test_custom_overlapping_part_of_a_builtin_merges_into_the_longer():
    s = make(["CREDIT_CARD"], [{"pattern": "card \\d{4}", "name": "CARDREF"}])
    text = "my card 4111 1111 1111 1111 ok"
    assert s.scan(text) == [Finding("CREDIT_CARD", 3, 27, 1.0)]
    assert s.mask(text)[0] == "my <CREDIT_CARD> ok"  # none of the 16 digits left behind


def test_unicode_around_matches(four):
    text = "Ünïcødé 🚀 jane@example.com 電話 (212) 555-0198 — 卡号 4111 1111 1111 1111 ✓"
    masked, findings = four.mask(text)
    assert masked == "Ünïcødé 🚀 <EMAIL> 電話 <PHONE_NUMBER> — 卡号 <CREDIT_CARD> ✓"
    assert [text[f.start : f.end] for f in findings] == [
        "jane@example.com",
        "(212) 555-0198",
        "4111 1111 1111 1111",
    ]


def test_score_threshold_changes_what_is_found():
    text = "ssn 536-90-4399, ref 536904399, card 4111 1111 1111 1111"
    found = lambda s: [text[f.start : f.end] for f in s.scan(text)]  # noqa: E731
    # A bare 9-digit number scores 0.05 as an SSN, a dashed one 0.5, a valid card 1.0.
    assert found(make(["SSN", "CREDIT_CARD"], scoreThreshold=0.05)) == [
        "536-90-4399",
        "536904399",
        "4111 1111 1111 1111",
    ]
    assert found(make(["SSN", "CREDIT_CARD"])) == ["536-90-4399", "4111 1111 1111 1111"]
    assert found(make(["CREDIT_CARD", "SSN"], scoreThreshold=0.5)) == [
        "536-90-4399",
        "4111 1111 1111 1111",
    ]  # the threshold is inclusive


def test_other_presidio_entities_by_name():
    s = make(["iban_code", "IP_ADDRESS", "email_address"])
    text = "IBAN GB82 WEST 1234 5698 7654 32 from 192.168.10.20 by ops@example.com"
    assert s.mask(text)[0] == "IBAN <IBAN_CODE> from <IP_ADDRESS> by <EMAIL_ADDRESS>"


def test_builtin_names_are_normalised_and_deduplicated():
    config = RegexGuardConfig.model_validate({"builtins": ["email", "Email", "ssn", "SSN "]})
    assert config.builtins == ("EMAIL", "SSN")
    assert TextScanner(config).mask("a@example.com 536-90-4399")[0] == "<EMAIL> <SSN>"


def test_unknown_builtin_names_the_field_and_lists_valid_ones():
    with pytest.raises(ValidationError) as info:
        RegexGuardConfig.model_validate({"builtins": ["EMAIL", "PASSPORT"]})
    (error,) = info.value.errors()
    assert error["loc"] == ("builtins",)
    assert "unknown builtin 'PASSPORT'" in error["msg"]
    for valid in ("CREDIT_CARD", "EMAIL", "PHONE_NUMBER", "SSN", "IBAN_CODE", "US_PASSPORT"):
        assert valid in error["msg"]


def test_builtin_that_cannot_reach_the_threshold_is_an_error():
    with pytest.raises(ValidationError) as info:
        RegexGuardConfig.model_validate({"builtins": ["US_PASSPORT"]})
    assert "US_PASSPORT scores at most 0.1" in str(info.value)
    assert "scoreThreshold 0.3" in str(info.value)
    with pytest.raises(ValidationError, match=r"PHONE_NUMBER scores at most 0.4"):
        RegexGuardConfig.model_validate({"builtins": ["PHONE_NUMBER"], "scoreThreshold": 0.5})
    passport = make(["US_PASSPORT"], scoreThreshold=0.1)
    # The 0.1 pattern is the letter-prefixed "next generation" one; bare digits score 0.05.
    assert passport.mask("passport A12345678 or 912803456")[0] == "passport <US_PASSPORT> or 912803456"


def test_entity_mapping_and_discovery():
    assert [presidio_engine.entity_for(n) for n in FOUR] == [
        "CREDIT_CARD",
        "EMAIL_ADDRESS",
        "PHONE_NUMBER",
        "US_SSN",
    ]
    names = presidio_engine.builtin_names()
    assert {"EMAIL", "SSN", "EMAIL_ADDRESS", "US_SSN", "IBAN_CODE", "UK_NHS", "DE_TAX_ID"} <= set(names)
    # NER entities need a model; they must not be offered offline.
    assert not {"PERSON", "LOCATION", "ORGANIZATION"} & set(names)


def test_engines_are_shared_per_entity_set(monkeypatch):
    monkeypatch.setattr(presidio_engine, "_engines", {})  # count builds from a cold cache
    builds: list[frozenset[str]] = []
    real_build = presidio_engine._build

    def counting_build(key: frozenset[str]) -> AnalyzerEngine:
        builds.append(key)
        return real_build(key)

    monkeypatch.setattr(presidio_engine, "_build", counting_build)
    a = make(["MAC_ADDRESS", "UUID"])
    b = make(["uuid", "mac_address", "UUID"])
    assert builds == [frozenset({"MAC_ADDRESS", "UUID"})]
    assert presidio_engine.get_engine(["UUID", "MAC_ADDRESS"]) is presidio_engine.get_engine(
        {"MAC_ADDRESS", "UUID"}
    )
    text = "host 00:1A:2B:3C:4D:5E id 123e4567-e89b-12d3-a456-426614174000"
    assert a.mask(text)[0] == b.mask(text)[0] == "host <MAC_ADDRESS> id <UUID>"
    assert a.needs_presidio and b.needs_presidio


def test_no_network_when_building_and_scanning(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(presidio_engine, "_engines", {})  # build and warm up under the patch
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    s = make(["EMAIL", "URL"])
    assert s.mask("mail ana@correo.example.es")[0] == "mail <EMAIL>"


_SAMPLES = [
    "4111 1111 1111 1111",
    "5555-5555-5555-4444",
    "3782 822463 10005",
    "(212) 555-0198",
    "+44 20 7946 0958",
    "212.555.0198",
    "536-90-4399",
    "jane.doe+x@mail.example.co.uk",
    "bob@example.org",
    "5105105105105100",
]
_FILLER = st.text(alphabet="abcdefghij XYZ éü日本,.;:!?()-", max_size=15)


@settings(max_examples=examples(60), deadline=None)
@given(parts=st.lists(st.tuples(_FILLER, st.sampled_from(_SAMPLES)), min_size=1, max_size=4), tail=_FILLER)
def test_masking_leaves_no_value_behind_and_is_idempotent(four, parts, tail):
    # The "; " keeps samples apart: a phone number followed by a space and a 4-digit group
    # ("(212) 555-0198 4111 ...") is one unparseable candidate to phonenumbers, a known gap.
    text = "".join(f"{filler} {sample}; " for filler, sample in parts) + tail
    masked, findings = four.mask(text)
    assert findings, text
    for sample in {s for _, s in parts}:
        assert sample not in masked
    for f in findings:
        assert text[f.start : f.end] not in masked
    assert four.mask(masked) == (masked, [])
