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

When the held tail would outgrow the window, it is masked rather than released: its label
goes out once, and the possible match is followed (by the rule that held it) and
swallowed until it is over; REJECT rejects. So a long match is never released in clear;
the price is that text which only looked like the start of one is masked too.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Generator

from .holdback import Holdback, Rule
from .regex_guard import Finding, TextScanner

# A step of the state machine (StreamTextGuard._step): yields the text to scan and its
# Presidio hint, is sent the findings, returns the released text and its findings.
Step = Generator[tuple[str, str], list[Finding], tuple[str, list[Finding]]]
# Scans a step's text: (text, presidio hint) -> findings.
Scan = Callable[[str, str], Awaitable[list[Finding]]]

# Released text kept as scanning context for the next step.
_CONTEXT = 128
# The most of a masked, still-open possible match kept to follow it.
_OPEN_CAP = 256 * 1024


class StreamRejected(Exception):
    def __init__(self, findings: list[Finding]) -> None:
        super().__init__("a guarded pattern appeared in the streamed text")
        self.findings = findings


class StreamTextGuard:
    __slots__ = (
        "_context",
        "_holdback",
        "_masked_tail",
        "_open",
        "_open_text",
        "_pending",
        "_reject",
        "_scanner",
        "_window",
    )

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
        # A possible match the window forced us to mask, followed until it is over.
        self._open: Rule | None = None
        self._open_text = ""

    @property
    def holding(self) -> int:
        return len(self._pending)

    def feed(self, delta: str) -> tuple[str, list[Finding]]:
        """Add streamed text; return what may be released now (masked) and its findings.
        Raises StreamRejected when the policy rejects and a match would be released."""
        self._pending += delta
        return self._scanned_here(self._step(final=False))

    def finish(self) -> tuple[str, list[Finding]]:
        """The choice's text is complete: release the rest."""
        return self._scanned_here(self._step(final=True))

    async def feed_with(self, delta: str, scan: Scan) -> tuple[str, list[Finding]]:
        """`feed`, with the step's scan done by `scan(text, hint)` (which may send it to a
        scan worker: guarded_stream.py)."""
        self._pending += delta
        return await _scanned_by(self._step(final=False), scan)

    async def finish_with(self, scan: Scan) -> tuple[str, list[Finding]]:
        """`finish`, with the step's scan done by `scan(text, hint)`."""
        return await _scanned_by(self._step(final=True), scan)

    def _scanned_here(self, step: Step) -> tuple[str, list[Finding]]:
        """Run a step, scanning on this thread."""
        try:
            text, hint = next(step)
            step.send(self._scanner.scan(text, presidio_hint=hint))
        except StopIteration as done:
            released: tuple[str, list[Finding]] = done.value
            return released
        raise AssertionError("a stream step scans once")

    def _follow_open(self, final: bool) -> bool:
        """Swallow the rest of a masked open match. True while it is still open."""
        if self._open is None:
            return False
        text = self._open_text + self._pending
        end = None if len(text) > _OPEN_CAP else self._open.end_of_match(text)
        if end is None and not final:
            self._open_text = text[-_OPEN_CAP:]
            self._context = _tail(self._context + self._pending)
            self._pending = ""
            return True
        consumed = max(0, (end if end is not None else len(text)) - len(self._open_text))
        self._context = _tail(self._context + self._pending[:consumed])
        self._pending = self._pending[consumed:]
        self._open, self._open_text = None, ""
        self._masked_tail = True
        return False

    def _step(self, final: bool) -> Step:
        """One step of the state machine. A generator so that its one scan can happen
        elsewhere: it yields (text, presidio hint) and is sent the findings; its return
        value is what may be released (and its findings)."""
        if self._follow_open(final) or not self._pending:
            return "", []
        text = self._context + self._pending
        base = len(self._context)
        end = len(text)
        rule = None
        if not final:
            hold, rule = self._holdback.start(text, base)
            if hold <= base and end - base <= self._window:
                return "", []  # all of it may still be part of a match: nothing to scan yet
        # Presidio runs only if the new text could hold an entity (see TextScanner.scan);
        # released context cannot end in a half-match, except after a window cut.
        hint = text if self._masked_tail else self._pending
        scanned: list[Finding] = yield text, hint
        findings = [f for f in scanned if f.end > base]
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
        if not final and end - hold > self._window:
            return self._mask_open_tail(text, base, hold, rule, findings)
        if hold <= base:
            return "", []
        return self._release(text, base, hold, findings)

    def _mask_open_tail(
        self, text: str, base: int, hold: int, rule: Rule | None, findings: list[Finding]
    ) -> tuple[str, list[Finding]]:
        """The possible match from `hold` outgrew the window: release what is before it,
        mask it, and follow it from now on."""
        label = next((f.entity for f in findings if f.start == hold), rule.label if rule else "REDACTED")
        if self._reject:
            raise StreamRejected([Finding(label, hold - base, len(text) - base, 0.0)])
        released, found = self._release(text, base, hold, findings) if hold > base else ("", [])
        self._open, self._open_text = rule, text[hold:]
        self._context = _tail(self._context + self._pending)
        self._pending = ""
        self._masked_tail = True
        return released + f"<{label}>", [*found, Finding(label, 0, 0, 0.0)]

    def _release(self, text: str, base: int, hold: int, findings: list[Finding]) -> tuple[str, list[Finding]]:
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
        self._context = _tail(self._context + text[base:hold])
        self._pending = text[hold:]
        return "".join(out), [
            Finding(f.entity, max(f.start, base) - base, min(f.end, hold) - base, f.score) for f in released
        ]


async def _scanned_by(step: Step, scan: Scan) -> tuple[str, list[Finding]]:
    """Run a step, its scan done by `scan`."""
    try:
        text, hint = next(step)
        step.send(await scan(text, hint))
    except StopIteration as done:
        released: tuple[str, list[Finding]] = done.value
        return released
    raise AssertionError("a stream step scans once")


def _tail(text: str) -> str:
    """The last part of released text kept as context, starting after whitespace where
    possible so the scanner does not see half a word (a spurious `\\b`)."""
    if len(text) <= _CONTEXT:
        return text
    cut = len(text) - _CONTEXT
    space = text.find(" ", cut)
    return text[space + 1 :] if 0 <= space < len(text) - 1 else text[cut:]
