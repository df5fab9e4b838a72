"""The regex guard's config and its pure-`re` scanning and masking (no Presidio here)."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml
from pydantic import ValidationError
from pydantic_core import ErrorDetails

from extproc.guards.regex_guard import Finding, RegexGuardConfig, TextScanner


def scanner(*matches: dict, **config) -> TextScanner:
    return TextScanner(RegexGuardConfig.model_validate({"matches": list(matches), **config}))


def only_error(raw: dict) -> ErrorDetails:
    with pytest.raises(ValidationError) as info:
        RegexGuardConfig.model_validate(raw)
    (error,) = info.value.errors()
    return error


# --- config -------------------------------------------------------------------------------


def test_config_from_kgateway_style_yaml():
    raw = yaml.safe_load("""
        action: reject
        matches:
        - {pattern: "credit card", name: CC}
        - {pattern: "5[1-5][0-9]{14}", name: MASTERCARD}
        - pattern: "secret"
        scoreThreshold: 0.6
        caseSensitive: false
    """)
    config = RegexGuardConfig.model_validate(raw)
    assert config.action == "REJECT"
    assert [(m.pattern, m.name) for m in config.matches] == [
        ("credit card", "CC"),
        ("5[1-5][0-9]{14}", "MASTERCARD"),
        ("secret", "CUSTOM"),
    ]
    assert config.score_threshold == 0.6
    assert config.case_sensitive is False


def test_config_defaults():
    config = RegexGuardConfig.model_validate({"matches": [{"pattern": "x"}]})
    assert (config.action, config.builtins, config.score_threshold, config.case_sensitive) == (
        "MASK",
        (),
        0.3,
        True,
    )


@pytest.mark.parametrize("spelling", ["MASK", "mask", "Mask", " mask "])
def test_action_accepts_any_case(spelling):
    assert (
        RegexGuardConfig.model_validate({"action": spelling, "matches": [{"pattern": "x"}]}).action == "MASK"
    )


def test_unknown_action_names_the_field():
    error = only_error({"action": "DROP", "matches": [{"pattern": "x"}]})
    assert error["loc"] == ("action",)
    assert "'MASK' or 'REJECT'" in error["msg"]


def test_bad_regex_names_the_field_and_shows_the_re_error():
    error = only_error({"matches": [{"pattern": "ok"}, {"pattern": "card (\\d{4}", "name": "X"}]})
    assert error["loc"] == ("matches", 1, "pattern")
    assert "invalid regular expression 'card (\\\\d{4}'" in error["msg"]
    assert "missing ), unterminated subpattern at position 5" in error["msg"]


@pytest.mark.parametrize("pattern", ["", "a*", "x?", "(foo)?", "foo|", "^", "$", "\\b", "(?=a)", "\\d{0,4}"])
def test_pattern_matching_the_empty_string_is_rejected(pattern):
    error = only_error({"matches": [{"pattern": pattern, "name": "E"}]})
    assert error["loc"] == ("matches", 0, "pattern")
    assert "can match the empty string" in error["msg"]


@pytest.mark.parametrize("name", ["", "has space", "<CC>", "x" * 65])
def test_match_name_must_be_label_safe(name):
    error = only_error({"matches": [{"pattern": "x", "name": name}]})
    assert error["loc"] == ("matches", 0, "name")


def test_unknown_keys_are_errors():
    error = only_error({"matches": [{"pattern": "x", "nmae": "CC"}]})
    assert error["loc"] == ("matches", 0, "nmae")
    assert error["type"] == "extra_forbidden"


def test_an_empty_guard_is_an_error():
    error = only_error({"action": "MASK"})
    assert "at least one entry in `matches` or `builtins`" in error["msg"]


@pytest.mark.parametrize("threshold", [-0.1, 1.5])
def test_threshold_out_of_range(threshold):
    error = only_error({"matches": [{"pattern": "x"}], "scoreThreshold": threshold})
    assert error["loc"] == ("scoreThreshold",)


def test_config_is_frozen():
    config = RegexGuardConfig.model_validate({"matches": [{"pattern": "x"}]})
    with pytest.raises(ValidationError):
        config.action = "REJECT"  # type: ignore[misc]  # frozen: the assignment is what is tested


# --- scanning -----------------------------------------------------------------------------


def test_custom_patterns_are_named_findings():
    s = scanner(
        {"pattern": "credit card", "name": "CC"}, {"pattern": "5[1-5][0-9]{14}", "name": "MASTERCARD"}
    )
    text = "My credit card is 5555555555554444, thanks"
    assert s.scan(text) == [Finding("CC", 3, 14, 1.0), Finding("MASTERCARD", 18, 34, 1.0)]
    assert s.mask(text) == ("My <CC> is <MASTERCARD>, thanks", s.scan(text))
    assert not s.needs_presidio


def test_default_name_and_duplicate_names():
    s = scanner({"pattern": "alpha"}, {"pattern": "beta", "name": "X"}, {"pattern": "gamma", "name": "X"})
    assert s.mask("alpha beta gamma")[0] == "<CUSTOM> <X> <X>"


def test_case_sensitive_by_default():
    s = scanner({"pattern": "credit card", "name": "CC"})
    assert s.scan("CREDIT CARD or Credit Card") == []
    assert s.mask("credit card")[0] == "<CC>"


def test_case_insensitive_when_configured():
    s = scanner({"pattern": "credit card", "name": "CC"}, caseSensitive=False)
    assert s.mask("CREDIT CARD or Credit Card")[0] == "<CC> or <CC>"


def test_inline_flag_works_with_the_case_sensitive_default():
    assert (
        scanner({"pattern": "(?i)project titan", "name": "P"}).mask("About PROJECT Titan")[0] == "About <P>"
    )


def test_unicode_around_and_inside_matches():
    s = scanner({"pattern": "geheim", "name": "S"}, {"pattern": "机密", "name": "ZH"})
    text = "Ünïcødé 🚀 geheim → 这是机密文件 ✓"
    masked, findings = s.mask(text)
    assert masked == "Ünïcødé 🚀 <S> → 这是<ZH>文件 ✓"
    assert [text[f.start : f.end] for f in findings] == ["geheim", "机密"]


def test_no_findings_returns_the_same_text():
    s = scanner({"pattern": "secret"})
    text = "nothing to see"
    assert s.mask(text) == (text, [])
    assert s.scan("") == []


def test_reject_and_mask_configs_scan_alike():
    """The action is the caller's to apply; both configs must find the same things."""
    match = {"pattern": "DROP TABLE", "name": "SQL"}
    reject = scanner(match, action="REJECT")
    mask = scanner(match, action="MASK")
    text = "please DROP TABLE users"
    assert reject.scan(text) == mask.scan(text) == [Finding("SQL", 7, 17, 1.0)]
    assert mask.mask(text)[0] == "please <SQL> users"


# --- overlap resolution ----------------------------------------------------------------------


def test_overlapping_matches_merge_under_the_longest():
    s = scanner(
        {"pattern": "card \\d{4}", "name": "SHORT"}, {"pattern": "\\d{4}( \\d{4}){3}", "name": "CARD"}
    )
    text = "card 4111 1111 1111 1111 end"
    # SHORT starts first but CARD is longer: the merged span covers both, named CARD.
    assert s.scan(text) == [Finding("CARD", 0, 24, 1.0)]
    assert s.mask(text)[0] == "<CARD> end"


def test_chained_overlaps_merge_into_one():
    s = scanner(
        {"pattern": "abc", "name": "A"}, {"pattern": "cde", "name": "B"}, {"pattern": "efgh", "name": "C"}
    )
    assert s.scan("xabcdefghx") == [Finding("C", 1, 9, 1.0)]


def test_equal_spans_go_to_the_earlier_config_entry():
    first = scanner({"pattern": "1234", "name": "FIRST"}, {"pattern": "\\d{4}", "name": "SECOND"})
    second = scanner({"pattern": "\\d{4}", "name": "SECOND"}, {"pattern": "1234", "name": "FIRST"})
    assert first.scan("a 1234 b") == [Finding("FIRST", 2, 6, 1.0)]
    assert second.scan("a 1234 b") == [Finding("SECOND", 2, 6, 1.0)]


def test_touching_matches_stay_separate():
    s = scanner({"pattern": "foo", "name": "F"}, {"pattern": "bar", "name": "B"})
    assert s.mask("foobar")[0] == "<F><B>"


def test_zero_width_matches_are_dropped_even_if_validation_missed_them():
    # `(?=secret)` only matches empty before "secret", which the config probes cannot see.
    s = scanner({"pattern": "(?=secret)", "name": "Z"}, {"pattern": "token", "name": "T"})
    assert s.scan("secret token") == [Finding("T", 7, 12, 1.0)]


def test_pure_regex_scanner_never_imports_presidio():
    code = (
        "import sys\n"
        "from extproc.guards.regex_guard import RegexGuardConfig, TextScanner\n"
        "s = TextScanner(RegexGuardConfig.model_validate({'matches': [{'pattern': 'x+'}]}))\n"
        "assert s.mask('axxb')[0] == 'a<CUSTOM>b'\n"
        "print(sorted(m for m in sys.modules if m.startswith(('presidio', 'spacy'))))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
