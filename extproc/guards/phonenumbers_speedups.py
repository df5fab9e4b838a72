"""Two of phonenumbers' hot helpers made cheaper, with the same results.

On digit-dense text (the hostile case for PHONE_NUMBER) the matcher parses thousands of
candidate pieces, and two helpers every parse calls several times were a third of its
time (profiled on 4,000 characters of `dddd-dddd` groups):

- `normalize_digits_only` looks every character up in Unicode's tables one at a time.
  For ASCII text (every character a provider or client sends as a digit, in practice)
  the digits are exactly `0`-`9`, so dropping the rest with one regex is the same; any
  other text still goes through phonenumbers' own loop.
- `re_compile` went through `re.compile`'s cache lookup on every call, for patterns
  that come from a fixed set of metadata: phonenumbers' own `enable_pattern_cache()`
  keeps them in a dict (its documented switch, the RegexCache of the Java library).

`install()` is idempotent, called when the phone recognizer is imported.
tests/unit/test_phonenumbers_speedups.py checks the helper against phonenumbers' own on
any text, and tests/unit/test_phone_equivalence.py the whole recognizer.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import phonenumbers
from phonenumbers import phonenumbermatcher, phonenumberutil, re_util, shortnumberinfo

# Every module that imported the helper by name holds its own reference to it.
_HOLDERS = (phonenumbers, phonenumberutil, phonenumbermatcher, shortnumberinfo)
_NOT_ASCII_DIGIT = re.compile(r"[^0-9]")

original_normalize_digits_only: Callable[..., str] = phonenumberutil.normalize_digits_only


def normalize_digits_only(number: str, keep_non_digits: bool = False) -> str:
    """phonenumbers' `normalize_digits_only`: the digits of `number` as ASCII digits, and
    (with `keep_non_digits`) every other character as it was."""
    if type(number) is str and number.isascii():
        # Among ASCII characters only 0-9 have a Unicode digit value.
        return number if keep_non_digits else _NOT_ASCII_DIGIT.sub("", number)
    return original_normalize_digits_only(number, keep_non_digits)


def install() -> None:
    re_util.enable_pattern_cache()
    for module in _HOLDERS:
        module.normalize_digits_only = normalize_digits_only  # type: ignore[attr-defined]
