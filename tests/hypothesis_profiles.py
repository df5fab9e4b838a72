"""Hypothesis profiles: how hard the property tests look, chosen with HYPOTHESIS_PROFILE.

- `ci` (the default, what `scripts/test` and CI run): every property test with the example
  count written at it, derandomized, so a clean clone gives the same verdict every time.
- `dev`: a tenth of the examples (at least 10), random: a fast local run.
- `deep`: five times the examples, random: run by hand to hunt for new counterexamples
  (`HYPOTHESIS_PROFILE=deep scripts/test tests/unit`). A counterexample found there is a
  bug, and becomes an `@example` at the test once fixed.

Tests write `@settings(max_examples=examples(300))`: an explicit count in `settings`
would override the profile's.
"""

from __future__ import annotations

import os

from hypothesis import settings

settings.register_profile("ci", derandomize=True, print_blob=True)
settings.register_profile("dev", derandomize=False)
settings.register_profile("deep", derandomize=False, print_blob=True)

PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "ci")
if PROFILE not in ("ci", "dev", "deep"):
    raise RuntimeError(f"HYPOTHESIS_PROFILE={PROFILE!r}: use ci, dev or deep")
settings.load_profile(PROFILE)

_SCALE = {"ci": 1.0, "dev": 0.1, "deep": 5.0}[PROFILE]


def examples(n: int) -> int:
    """The example count for a test written for `n` under the `ci` profile."""
    return max(10, round(n * _SCALE)) if PROFILE != "ci" else n
