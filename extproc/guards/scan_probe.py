"""How long a request's texts would take the scan workers, estimated from a sample.

Without an estimate, a request the guard can never scan in its budget (a few hundred KB of
digit groups with phone separators: Presidio's phone matcher takes ~65-120 ms per KB)
holds a scan worker for the whole of `scanBudget.maxSeconds` before its 413, and a client
sending two at a time keeps every worker busy for every other guarded request. The cost
of a scan is close to linear in the text for each kind of text (scripts/bench_scan_cost.py),
so a sample spread evenly over the text, scanned on a worker, times the rest: one job of
at most `_PIECES * _PIECE_CHARS` characters instead of seconds of work.

Only requests with at least `_FROM_CHARS` characters for the workers are sampled, so the
sample costs at most an eighth of the work it may save. The estimate refuses a request
only when it exceeds the budget by `MARGIN`: a request near its budget is scanned as
before, and its deadline still applies.
"""

from __future__ import annotations

import bisect
import itertools
from typing import NamedTuple

_PIECES = 16
_PIECE_CHARS = 256
_FROM_CHARS = 8 * _PIECES * _PIECE_CHARS
# A sample of 16 pieces misjudges a text whose costly parts are unevenly spread; refusing
# only past 1.5 times the budget leaves that error to the deadline, which is exact.
MARGIN = 1.5


class Sample(NamedTuple):
    text: str  # the pieces, joined by blank lines, scanned as one text
    of_chars: int  # the characters it stands for

    def scale(self, seconds: float) -> float:
        """The seconds all the sampled texts would take, if the sample took `seconds`."""
        return seconds * self.of_chars / max(1, len(self.text))


def sample(texts: list[str]) -> Sample | None:
    """`_PIECES` pieces at even steps through `texts` read end to end (no piece crosses
    from one text into the next), or None when there is too little text to be worth it."""
    total = sum(map(len, texts))
    if total < _FROM_CHARS:
        return None
    starts = list(itertools.accumulate((len(t) for t in texts), initial=0))
    pieces: list[str] = []
    step = total / _PIECES
    for i in range(_PIECES):
        at = int(i * step)
        k = bisect.bisect_right(starts, at) - 1
        offset = at - starts[k]
        pieces.append(texts[k][offset : offset + _PIECE_CHARS])
    return Sample("\n\n".join(pieces), total)
