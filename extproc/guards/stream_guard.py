"""Guarding streamed text: the same masks and rejections as on the whole text, whatever
the chunking, with as little delay as the patterns allow.

A `StreamTextGuard` follows one choice's content. Each delta is appended to the pending
text; the pending text is scanned together with a little of what was already released
(so `\\b`, lookbehinds and Presidio's word boundaries see the same neighbours as in the
whole text), and `Holdback` says from where the text could still become part of a match.
Everything before that point is released at once, masked; the tail waits for more text,
but never more than the policy's window. At the end of the text everything is released.

Invariant (checked by the property tests): the concatenation of what is released equals
`TextScanner.mask` of the whole text, and no matched value is ever released.

A finding that the window forces to be cut is masked on both sides of the cut: its
label goes out once, and the rest of it is swallowed when it arrives.
"""

from __future__ import annotations

from .holdback import Holdback
from .regex_guard import Finding, TextScanner

# Released text kept as scanning context for the next step.
_CONTEXT = 128


class StreamRejected(Exception):
    def __init__(self, findings: list[Finding]) -> None:
        super().__init__("a guarded pattern appeared in the streamed text")
        self.findings = findings


class StreamTextGuard:
    __slots__ = ("_scanner", "_holdback", "_window", "_reject", "_context", "_pending",
                 "_masked_tail", "released_chars")

    def __init__(self, scanner: TextScanner, holdback: Holdback, window: int, reject: bool) -> None:
        self._scanner = scanner
        self._holdback = holdback
        self._window = window
        self._reject = reject
        self._context = ""
        self._pending = ""
        # True when the last released character was inside a masked finding, so a finding
        # continuing across the boundary must not get a second label.
        self._masked_tail = False
        self.released_chars = 0

    @property
    def holding(self) -> int:
        return len(self._pending)

    def feed(self, delta: str) -> tuple[str, list[Finding]]:
        """Add streamed text; return what may be released now (masked) and its findings.
        Raises StreamRejected when the policy rejects and a match would be released."""
        self._pending += delta
        return self._step(final=False)

    def finish(self) -> tuple[str, list[Finding]]:
        """The choice's text is complete: release the rest."""
        return self._step(final=True)

    def _step(self, final: bool) -> tuple[str, list[Finding]]:
        if not self._pending:
            return "", []
        text = self._context + self._pending
        base = len(self._context)
        end = len(text)
        if not final:
            hold = max(self._holdback.start(text, base), end - self._window)
            if hold <= base:
                return "", []  # all of it may still be part of a match: nothing to scan yet
        # Presidio runs only if the new text could hold an entity (see TextScanner.scan);
        # released context cannot end in a half-match, except after a window cut.
        hint = text if self._masked_tail else self._pending
        findings = [f for f in self._scanner.scan(text, presidio_hint=hint) if f.end > base]
        if final:
            hold = end
        else:
            for f in findings:
                if f.end == end:  # a match reaching the end may still grow
                    hold = min(hold, f.start)
            moved = True
            while moved:  # never cut a finding that is not final
                moved = False
                for f in findings:
                    if base <= f.start < hold < f.end:
                        hold, moved = f.start, True
            hold = max(hold, base, end - self._window)  # the window bounds the wait
            if hold <= base:
                return "", []
        released = [f for f in findings if f.start < hold]
        if released and self._reject:
            raise StreamRejected(released)
        out: list[str] = []
        pos = base
        masked_tail = False
        for f in released:
            start, stop = max(f.start, base), min(f.end, hold)
            out.append(text[pos:start])
            if not (f.start < base and self._masked_tail):
                out.append(f"<{f.entity}>")
            pos = stop
            masked_tail = stop == hold
        out.append(text[pos:hold])
        if hold > base:
            self._masked_tail = masked_tail
        released_raw = text[base:hold]
        self.released_chars += len(released_raw)
        self._context = _tail(self._context + released_raw)
        self._pending = text[hold:]
        return "".join(out), [Finding(f.entity, max(f.start, base) - base, min(f.end, hold) - base, f.score)
                              for f in released]


def _tail(text: str) -> str:
    """The last part of released text kept as context, starting after whitespace where
    possible so the scanner does not see half a word (a spurious `\\b`)."""
    if len(text) <= _CONTEXT:
        return text
    cut = len(text) - _CONTEXT
    space = text.find(" ", cut)
    return text[space + 1:] if 0 <= space < len(text) - 1 else text[cut:]
