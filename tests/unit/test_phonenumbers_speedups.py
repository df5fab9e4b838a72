"""phonenumbers_speedups: the cheaper helpers give phonenumbers' own results."""

from __future__ import annotations

import phonenumbers
from hypothesis import example, given, settings
from hypothesis import strategies as st
from phonenumbers import phonenumbermatcher, phonenumberutil, re_util, shortnumberinfo

from extproc.guards import phone_recognizer  # noqa: F401  (installs the speedups)
from extproc.guards import phonenumbers_speedups as speedups
from tests.hypothesis_profiles import examples

# Digits of other scripts (full-width, Arabic-Indic, Devanagari, superscripts, which
# have a digit value but are not decimal), separators, letters, and ASCII at large.
_chars = st.one_of(
    st.characters(max_codepoint=127),
    st.sampled_from("０１９٠٣٩۰۵०७²³¹①\u00a0‐–—（）＋"),
    st.characters(exclude_categories=["Cs"]),
)


@settings(max_examples=examples(500), deadline=None)
@given(text=st.text(_chars, max_size=40), keep=st.booleans())
@example(text="+1 (212) 555-0198 ext. 7", keep=False)
@example(text="+1 (212) 555-0198 ext. 7", keep=True)
@example(text="０３-１２３４-５６７８", keep=False)
@example(text="²³", keep=False)
def test_normalize_digits_only_is_phonenumbers_own(text, keep):
    assert speedups.normalize_digits_only(text, keep) == speedups.original_normalize_digits_only(text, keep)


def test_every_module_calling_the_helper_gets_the_cheaper_one():
    for module in (phonenumbers, phonenumberutil, phonenumbermatcher, shortnumberinfo):
        assert module.normalize_digits_only is speedups.normalize_digits_only
    assert speedups.original_normalize_digits_only is not speedups.normalize_digits_only
    # Private and missing from phonenumbers' stubs, so read through the module dict.
    assert vars(re_util)["_COMPILED_PATTERNS"] is not None  # phonenumbers' own pattern cache is on


def test_parsing_still_reads_digits_of_other_scripts():
    # The ASCII shortcut must not cost the non-ASCII path: full-width digits still parse.
    number = phonenumbers.parse("０２０ ７９４６ ０９５８", "GB")
    assert phonenumbers.is_valid_number(number)
    assert phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164) == "+442079460958"
