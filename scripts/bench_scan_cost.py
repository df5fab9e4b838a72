"""What the regex guard's Presidio builtins cost per KB of text, by kind of text.

Scans texts of a few shapes with the four builtins (CREDIT_CARD, EMAIL, PHONE_NUMBER,
SSN), as a route's guard does, and prints CPU milliseconds per KB. Digit groups with
phone separators are the worst case (phonenumbers parses candidates for 8 regions);
"a.a.a.…@" was quadratic in Presidio's email pattern. Run alone:

    .venv/bin/python scripts/bench_scan_cost.py [SIZE ...]      # default 4096 32768
"""

from __future__ import annotations

import os
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS", "")

from extproc.guards.regex_guard import RegexGuardConfig, TextScanner  # noqa: E402


def digit_groups(n: int) -> str:
    rnd = random.Random(1)
    out: list[str] = []
    while sum(map(len, out)) < n:
        out.append("".join(rnd.choice("0123456789") for _ in range(rnd.randint(1, 5))))
        out.append(rnd.choice([" ", "-", ".", " ", "(", ")", "+", " - "]))
    return "".join(out)[:n]


def spaced_groups(n: int) -> str:
    rnd = random.Random(2)
    return " ".join(f"{rnd.randint(0, 9999):04d}" for _ in range(n // 5 + 1))[:n]


PARA = (
    "Dear team, the invoice INV-2024-0042 for 1,250.00 USD is due on 2024-03-15. "
    "Call Jane at (212) 555-0198 or mail jane.doe@example.com. Order 7781, item 12 of 40. "
)
README = (ROOT / "README.md").read_text()

KINDS = {
    "digit groups + separators": digit_groups,
    "spaced 4-digit groups": spaced_groups,
    "invoice prose, dense PII": lambda n: (PARA * (n // len(PARA) + 1))[:n],
    "README.md (technical prose)": lambda n: (README * (n // len(README) + 1))[:n],
    "email-hostile a.a.a.…@": lambda n: "a." * (n // 2) + "@",
}


def main(sizes: list[int]) -> None:
    scanner = TextScanner(
        RegexGuardConfig(action="MASK", builtins=("CREDIT_CARD", "EMAIL", "PHONE_NUMBER", "SSN"))
    )
    print(f"{'text':30} {'chars':>7} {'ms/KB':>8} {'total ms':>9} findings")
    for name, make in KINDS.items():
        for n in sizes:
            text = make(n)
            started = time.process_time()
            _, findings = scanner.mask(text)
            spent = time.process_time() - started
            print(
                f"{name:30} {n:7} {spent * 1e3 / (n / 1024):8.1f} {spent * 1e3:9.1f} {len(findings)}",
                flush=True,
            )


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or [4096, 32768])
