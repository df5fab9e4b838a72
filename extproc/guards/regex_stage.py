"""The regex guard's stage: custom patterns and Presidio over a list of text slots, within
the route's scan budget. Cheap texts are scanned on the event loop; the rest on the scan
workers (scan_pool), in jobs that stop at the budget's deadline or when the request's
stream is cancelled. A request with much text to send there is first estimated from a
sample (scan_probe.py) and refused at once when it could never be scanned in its budget.
"""

from __future__ import annotations

import logging
import time

from .. import metrics, offload
from ..errors import GatewayError
from . import normalize, scan_pool, scan_probe
from .config import CustomResponse, ScanBudget
from .regex_guard import Finding, PatternTimeout, TextScanner
from .scan_jobs import JobResult
from .slot_writers import MessageParts, PartSlot, SeamSlot, Slot

log = logging.getLogger("aigw.guards")

# A text is scanned on the event loop only when that is sure to be cheap: short, and
# holding nothing Presidio would look at (no digit, no '@', ...). Measured: custom
# patterns on 2 KB of prose take ~0.1 ms, while Presidio takes ~3 ms for one phone number
# in 250 characters and up to ~65 ms per KB of digit groups (scripts/bench_scan_cost.py).
# Everything else goes to the scan workers (scan_pool).
_INLINE_CHARS = 2048
# A guarded stream's step (its new text, a held-back tail and some released context) is
# scanned on the loop when it is this short whatever it holds: with the default 256-character
# window, ordinary streams never leave the loop. Measured: 512 characters of digit groups,
# the slowest text for Presidio, take ~10-35 ms; a longer step with anything Presidio would
# look at goes to a scan worker.
_STREAM_INLINE_CHARS = 512
# A worker job holds several small texts up to this many characters (a longer text is a
# job of its own): requests take turns on the workers job by job.
_JOB_CHARS = 8192


# Why a text a custom pattern ran out of time on (regex_guard.PatternTimeout) is refused.
_UNDECIDED = "cannot be checked against this route's custom patterns in time"


def rejected(custom: CustomResponse, code: str) -> GatewayError:
    """A rejection with the route's own response (customResponse)."""
    return GatewayError(custom.status_code, custom.message, code=code)


class RegexStage:
    """The regex guard on a list of text slots: custom patterns and Presidio, with the
    route's scan budget. Heavy scans go to the scan workers (scan_pool), in jobs that stop
    at the budget's deadline or when the request's stream is cancelled."""

    def __init__(
        self,
        scanner: TextScanner,
        action: str,
        route: str,
        direction: str,
        custom: CustomResponse,
        budget: ScanBudget | None = None,
    ) -> None:
        self.scanner = scanner
        self.reject = action == "REJECT"
        self.route = route
        self.direction = direction
        self.custom = custom
        self.budget = budget or ScanBudget()
        # The workers build their own scanner from the config; this names it.
        self.key = scanner.config.model_dump_json()
        self._trigger = None
        if scanner.needs_presidio:
            from . import presidio_engine

            self._trigger = presidio_engine.trigger_for(scanner.entities)

    def _inline(self, text: str) -> bool:
        """True when scanning `text` on the event loop is sure to be cheap."""
        if len(text) > _INLINE_CHARS:
            return False
        if not self.scanner.needs_presidio:
            return True
        if self._trigger is None:
            return False
        # Presidio reads the normalised text, where e.g. a fullwidth '＠' is an '@'.
        return self._trigger.search(text if text.isascii() else normalize.detection_text(text)) is None

    async def run(self, slots: list[Slot], size: int = 0) -> bool:
        """Scan every slot; mask in place or raise GatewayError (rejection, budget). `size`:
        the body's bytes; a large body's many small texts are scanned, and written back, on
        the large-request thread (offload.py), not on the event loop."""
        slots = [s for s in slots if s.text]
        total = sum(len(s.text) for s in slots)
        if total > self.budget.max_chars:
            raise self._over_budget(
                f"holds {total} characters of text; this route's guards scan at most {self.budget.max_chars}"
            )
        results, pooled, spent = await offload.run(size, self._scan_small, slots)
        _keep_relevant(slots, results)
        # A REJECT route rejects on inline findings without queueing for a worker.
        self._reject_any(results)
        spent = await self._probe([slots[i].text for i in pooled], spent)
        for job in _jobs(pooled, slots):
            outcome = await self._on_worker([slots[i].text for i in job], spent)
            spent += outcome.elapsed
            done = {
                i: (masked, [Finding(*f) for f in found])
                for i, (masked, found) in zip(job, outcome.outputs, strict=False)
            }
            _keep_relevant(slots, done)
            self._reject_any(done)
            results.update(done)
        # Masks are written back in slot order, once every text was scanned.
        return await offload.run(size, self._write_back, slots, results)

    def _scan_small(self, slots: list[Slot]) -> tuple[dict[int, tuple[str, list[Finding]]], list[int], float]:
        """(results of the texts cheap enough to scan here, the others' indices, seconds).
        Once a custom pattern runs out of the loop's time on a text (regex_guard.py), that
        text and every later one go to the workers: the loop spends that time once."""
        results: dict[int, tuple[str, list[Finding]]] = {}
        pooled: list[int] = []
        spent = 0.0
        here = True
        for i, slot in enumerate(slots):
            if here and self._inline(slot.text):
                started = time.perf_counter()
                try:
                    results[i] = self.scanner.mask(slot.text)
                except PatternTimeout:
                    here = False
                    pooled.append(i)
                spent += time.perf_counter() - started
            else:
                pooled.append(i)
        return results, pooled, spent

    def _write_back(self, slots: list[Slot], results: dict[int, tuple[str, list[Finding]]]) -> bool:
        changed = False
        message_parts: dict[int, MessageParts] = {}
        for i in sorted(results):
            masked, findings = results[i]
            if findings:
                for f in findings:
                    metrics.guard_action(self.route, self.direction, "regex", "masked", f.entity)
                slot = slots[i]
                if isinstance(slot, (PartSlot, SeamSlot)):  # written with its message's parts
                    slot.set_found(findings)
                    message_parts[id(slot.parts)] = slot.parts
                else:
                    slot.set(masked)
                changed = True
        for parts in message_parts.values():
            parts.flush()
        return changed

    def _reject_any(self, results: dict[int, tuple[str, list[Finding]]]) -> None:
        if not self.reject:
            return
        for i in sorted(results):
            findings = results[i][1]
            if findings:
                entities = sorted({f.entity for f in findings})
                for entity in entities:
                    metrics.guard_action(self.route, self.direction, "regex", "rejected", entity)
                log.info(
                    "guard rejected",
                    extra={
                        "fields": {
                            "route": self.route,
                            "direction": self.direction,
                            "guard": "regex",
                            "entities": entities,
                        }
                    },
                )
                raise rejected(self.custom, "content_policy_violation")

    async def scan_step(self, text: str, hint: str, spent: float) -> tuple[list[Finding], float]:
        """Scan one step of a guarded stream (stream_guard.py: `hint` is the part that can
        hold a new match); its findings, and the scan-worker seconds it took. Short steps,
        and steps with nothing new for Presidio, are scanned on the loop; the rest on a
        scan worker, within what is left of the stream's scan budget (`spent` so far). Past
        the budget, or with no worker, the stream ends with an error (never unscanned)."""
        if len(text) <= _STREAM_INLINE_CHARS or (len(text) <= _INLINE_CHARS and self._inline(hint)):
            try:
                return self.scanner.scan(text, presidio_hint=hint), 0.0
            except PatternTimeout:
                pass  # a custom pattern ran out of the loop's time: a worker decides
        # Urgent: the client's next tokens wait for it (worker_slots.py).
        outcome = await self._on_worker([text], spent, hints=[hint], urgent=True)
        return [Finding(*f) for f in outcome.outputs[0][1]], outcome.elapsed

    async def _probe(self, texts: list[str], spent: float) -> float:
        """Refuse at once texts the workers could never scan within the budget, judged by
        a sample of them (scan_probe.py); the scan seconds spent so far, sample included."""
        sample = scan_probe.sample(texts)
        if sample is None:
            return spent
        outcome = await self._on_worker([sample.text], spent)
        spent += outcome.elapsed
        estimate = spent + sample.scale(outcome.elapsed)
        if estimate > self.budget.max_seconds * scan_probe.MARGIN:
            raise self._over_budget(self._too_slow(), estimated_seconds=round(estimate, 2))
        return spent

    async def _on_worker(
        self, texts: list[str], spent: float, hints: list[str] | None = None, urgent: bool = False
    ) -> JobResult:
        """One scan job on a worker, in what is left of the budget after `spent` seconds.
        Past the budget, or with no worker, the texts are never passed on unscanned."""
        left = self.budget.max_seconds - spent
        if left <= 0:
            raise self._over_budget(self._too_slow())
        try:
            outcome = await scan_pool.runner().scan(
                self.key, self.scanner.config, texts, left, hints=hints, urgent=urgent
            )
        except scan_pool.ScanUnavailable:
            metrics.guard_action(self.route, self.direction, "regex", "unavailable")
            raise GatewayError(
                503, "the gateway's content guard is unavailable; try again", code="guard_unavailable"
            ) from None
        if outcome.status == "pattern_timeout":
            raise self.undecided(outcome.pattern)
        if outcome.status != "ok":
            raise self._over_budget(self._too_slow())
        return outcome

    def _too_slow(self) -> str:
        return f"takes longer to scan than this route's guards allow ({self.budget.max_seconds:g} s)"

    def undecided(self, pattern: str) -> GatewayError:
        """The error for a text the custom pattern `pattern` ran out of time on."""
        return self._over_budget(_UNDECIDED, pattern=pattern)

    def _over_budget(self, what: str, **why: object) -> GatewayError:
        """The guard cannot vouch for the text: never pass it on. REJECT routes reject as
        they do for a finding; MASK routes fail closed. `why`: more for the log line (the
        sample's estimate, the pattern that ran out of time)."""
        metrics.guard_action(self.route, self.direction, "regex", "budget_exceeded")
        fields = {"route": self.route, "direction": self.direction, "guard": "regex", "reason": what, **why}
        log.warning("guard scan budget exceeded", extra={"fields": fields})
        if self.reject:
            return rejected(self.custom, "guard_budget_exceeded")
        if self.direction == "request":
            return GatewayError(413, f"the request {what}", code="guard_budget_exceeded")
        return GatewayError(502, f"the provider's response {what}", code="guard_budget_exceeded")


def _keep_relevant(slots: list[Slot], results: dict[int, tuple[str, list[Finding]]]) -> None:
    """A seam between two text parts counts only its findings that cross the boundary."""
    for i, (masked, findings) in results.items():
        slot = slots[i]
        if findings and isinstance(slot, SeamSlot):
            results[i] = (masked, slot.keep(findings))


def _jobs(indices: list[int], slots: list[Slot]) -> list[list[int]]:
    """Group slot indices into worker jobs of about `_JOB_CHARS` characters, in order."""
    jobs: list[list[int]] = []
    size = 0
    for i in indices:
        n = len(slots[i].text)
        if not jobs or size + n > _JOB_CHARS:
            jobs.append([])
            size = 0
        jobs[-1].append(i)
        size += n
    return jobs
