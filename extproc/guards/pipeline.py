"""Runs a route's guards on the canonical request and the canonical (JSON) response.

Guards read every string of the request or response but a few opaque ones (ids, binary
media; see `text_slots`): message text, tool-call arguments, tool definitions, `stop`,
metadata, unknown fields. The regex guard scans all of them; the webhook and moderation
see the free text among them. Order on a request: regex (cheap, local), then the
webhook, then moderation, each on the result of the previous one. A rejection stops at
once; the provider is never called.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from .. import metrics, offload
from ..errors import GatewayError
from . import normalize, scan_pool, text_slots
from .config import CustomResponse, RequestGuardConfig, ResponseGuardConfig, ScanBudget
from .holdback import Holdback
from .moderation import Moderator, build_moderator
from .regex_guard import Finding, TextScanner
from .slot_writers import Slot  # where guarded text sits, and how it is written back
from .webhook import Verdict, WebhookGuard

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


def _rejected(custom: CustomResponse, code: str) -> GatewayError:
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
        # A REJECT route rejects on inline findings without queueing for a worker.
        self._reject_any(results)
        runner = scan_pool.runner()
        for job in _jobs(pooled, slots):
            left = self.budget.max_seconds - spent
            if left <= 0:
                raise self._over_budget(self._too_slow())
            try:
                outcome = await runner.scan(self.key, self.scanner.config, [slots[i].text for i in job], left)
            except scan_pool.ScanUnavailable:
                metrics.guard_action(self.route, self.direction, "regex", "unavailable")
                raise GatewayError(
                    503, "the gateway's content guard is unavailable; try again", code="guard_unavailable"
                ) from None
            spent += outcome.elapsed
            if outcome.status != "ok":
                raise self._over_budget(self._too_slow())
            done = {
                i: (masked, [Finding(*f) for f in found])
                for i, (masked, found) in zip(job, outcome.outputs, strict=False)
            }
            self._reject_any(done)
            results.update(done)
        # Masks are written back in slot order, once every text was scanned.
        return await offload.run(size, self._write_back, slots, results)

    def _scan_small(self, slots: list[Slot]) -> tuple[dict[int, tuple[str, list[Finding]]], list[int], float]:
        """(results of the texts cheap enough to scan here, the others' indices, seconds)."""
        results: dict[int, tuple[str, list[Finding]]] = {}
        pooled: list[int] = []
        spent = 0.0
        for i, slot in enumerate(slots):
            if self._inline(slot.text):
                started = time.perf_counter()
                results[i] = self.scanner.mask(slot.text)
                spent += time.perf_counter() - started
            else:
                pooled.append(i)
        return results, pooled, spent

    def _write_back(self, slots: list[Slot], results: dict[int, tuple[str, list[Finding]]]) -> bool:
        changed = False
        for i in sorted(results):
            masked, findings = results[i]
            if findings:
                for f in findings:
                    metrics.guard_action(self.route, self.direction, "regex", "masked", f.entity)
                slots[i].set(masked)
                changed = True
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
                raise _rejected(self.custom, "content_policy_violation")

    async def scan_step(self, text: str, hint: str, spent: float) -> tuple[list[Finding], float]:
        """Scan one step of a guarded stream (stream_guard.py: `hint` is the part that can
        hold a new match); its findings, and the scan-worker seconds it took. Short steps,
        and steps with nothing new for Presidio, are scanned on the loop; the rest on a
        scan worker, within what is left of the stream's scan budget (`spent` so far). Past
        the budget, or with no worker, the stream ends with an error (never unscanned)."""
        if len(text) <= _STREAM_INLINE_CHARS or (len(text) <= _INLINE_CHARS and self._inline(hint)):
            return self.scanner.scan(text, presidio_hint=hint), 0.0
        left = self.budget.max_seconds - spent
        if left <= 0:
            raise self._over_budget(self._too_slow())
        try:
            # Urgent: the client's next tokens wait for it (worker_slots.py).
            outcome = await scan_pool.runner().scan(
                self.key, self.scanner.config, [text], left, hints=[hint], urgent=True
            )
        except scan_pool.ScanUnavailable:
            metrics.guard_action(self.route, self.direction, "regex", "unavailable")
            raise GatewayError(
                503, "the gateway's content guard is unavailable; try again", code="guard_unavailable"
            ) from None
        if outcome.status != "ok":
            raise self._over_budget(self._too_slow())
        return [Finding(*f) for f in outcome.outputs[0][1]], outcome.elapsed

    def _too_slow(self) -> str:
        return f"takes longer to scan than this route's guards allow ({self.budget.max_seconds:g} s)"

    def _over_budget(self, what: str) -> GatewayError:
        """The guard cannot vouch for the text: never pass it on. REJECT routes reject as
        they do for a finding; MASK routes fail closed."""
        metrics.guard_action(self.route, self.direction, "regex", "budget_exceeded")
        log.warning(
            "guard scan budget exceeded",
            extra={
                "fields": {"route": self.route, "direction": self.direction, "guard": "regex", "reason": what}
            },
        )
        if self.reject:
            return _rejected(self.custom, "guard_budget_exceeded")
        if self.direction == "request":
            return GatewayError(413, f"the request {what}", code="guard_budget_exceeded")
        return GatewayError(502, f"the provider's response {what}", code="guard_budget_exceeded")


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


class RequestGuards:
    def __init__(self, config: RequestGuardConfig, route: str) -> None:
        self.route = route
        self.custom = config.custom_response
        self.regex = (
            RegexStage(
                TextScanner(config.regex),
                config.regex.action,
                route,
                "request",
                self.custom,
                config.scan_budget,
            )
            if config.regex
            else None
        )
        self.webhook = WebhookGuard(config.webhook) if config.webhook else None
        self.moderator = build_moderator(config.moderation) if config.moderation else None

    async def apply(self, req: dict[str, Any], headers: dict[str, str], size: int = 0) -> bool:
        """Guard the request in place. Returns True when text was masked; raises
        GatewayError to reject. `size`: the body's bytes (a large one is walked off the
        event loop)."""
        changed = False
        if self.regex is not None:
            changed |= await self.regex.run(await offload.run(size, text_slots.request_slots, req), size)
        # Each later stage walks the request again: it sees what the one before wrote.
        if self.webhook is not None:
            changed |= await self._webhook(self.webhook, req, headers, size)
        if self.moderator is not None:
            await self._moderate(self.moderator, req, size)
        return changed

    async def _webhook(
        self, webhook: WebhookGuard, req: dict[str, Any], headers: dict[str, str], size: int
    ) -> bool:
        # One webhook message per text (a plain message is one text, as the contract shows);
        # text outside messages (tool descriptions, prediction) goes as role `user`.
        slots = await offload.run(size, text_slots.request_texts, req)
        sent = [{"role": slot.role, "content": slot.text} for slot in slots]
        verdict = await webhook.check_request(sent, headers)
        returned = [m.get("content", "") for m in verdict.messages or []]
        return _settle(verdict, self.route, "request", self.custom, slots, returned)

    async def _moderate(self, moderator: Moderator, req: dict[str, Any], size: int) -> None:
        texts = [s.text for s in await offload.run(size, text_slots.request_texts, req) if s.text]
        result = await moderator.check(texts)
        if result.failed and result.flagged:
            metrics.guard_action(self.route, "request", "moderation", "failed")
            raise GatewayError(
                502, "the content moderation service is unavailable", code="moderation_unavailable"
            )
        if result.failed:
            metrics.guard_action(self.route, "request", "moderation", "failed_open")
        if result.flagged:
            for category in result.categories or ["flagged"]:
                metrics.guard_action(self.route, "request", "moderation", "rejected", category)
            raise _rejected(self.custom, "content_flagged")


class ResponseGuards:
    def __init__(self, config: ResponseGuardConfig, route: str) -> None:
        self.route = route
        self.config = config
        self.custom = config.custom_response
        self.scanner: TextScanner | None = None
        self.regex: RegexStage | None = None
        if config.regex:
            self.scanner = scanner = TextScanner(config.regex)
            self.regex = RegexStage(
                scanner, config.regex.action, route, "response", self.custom, config.scan_budget
            )
        # For streams: how much text may still become part of a match (compiled once).
        self.holdback = Holdback(self.scanner, config.stream_window) if self.scanner else None
        self.webhook = WebhookGuard(config.webhook) if config.webhook else None

    async def apply(self, completion: dict[str, Any], headers: dict[str, str], size: int = 0) -> bool:
        """Guard a chat.completion in place: every string but its ids (`text_slots`). A
        shape the guards cannot read is refused (502) rather than passed on unguarded.
        `size`: the body's bytes (a large one is walked off the event loop)."""
        choices = completion.get("choices")
        if not isinstance(choices, list) or not all(
            isinstance(c, dict) and isinstance(c.get("message", {}), dict) for c in choices
        ):
            raise GatewayError(
                502,
                "the provider's response could not be checked by the gateway",
                code="unguardable_response",
            )
        changed = False
        for choice in choices:
            # Log probabilities repeat the answer token by token: they would carry what
            # the guards mask. Not returned on guarded routes.
            if choice.get("logprobs") is not None:
                choice["logprobs"] = None
                changed = True
        if self.regex is not None:
            slots = await offload.run(size, text_slots.response_slots, completion)
            changed |= await self.regex.run(slots, size)
        if self.webhook is not None and choices:
            texts = await offload.run(size, text_slots.response_texts, completion)
            changed |= await self._webhook_slots(texts, headers)
        return changed

    async def webhook_texts(self, messages: list[dict[str, Any]], headers: dict[str, str]) -> bool:
        """The webhook on these messages' free text (streams send segments this way)."""
        slots = [s for m in messages for s in text_slots.message_texts(m, "assistant")]
        return await self._webhook_slots(slots, headers)

    async def _webhook_slots(self, slots: list[Slot], headers: dict[str, str]) -> bool:
        sent = [{"message": {"role": slot.role, "content": slot.text}} for slot in slots]
        verdict = await self.webhook.check_response(sent, headers)  # type: ignore[union-attr]
        returned = [(c.get("message") or {}).get("content", "") for c in verdict.choices or []]
        return _settle(verdict, self.route, "response", self.custom, slots, returned)


def _settle(
    verdict: Verdict,
    route: str,
    direction: str,
    custom: CustomResponse,
    slots: list[Slot],
    returned: list[str],
) -> bool:
    """Act on a webhook verdict: raise for a rejection, write masked texts back."""
    if verdict.failed:
        metrics.guard_action(
            route, direction, "webhook", "failed_open" if verdict.action == "pass" else "failed"
        )
    if verdict.action == "reject":
        if not verdict.failed:
            metrics.guard_action(route, direction, "webhook", "rejected")
        raise GatewayError(
            verdict.status or custom.status_code,
            verdict.message or custom.message,
            code="webhook_unavailable" if verdict.failed else "content_policy_violation",
        )
    if verdict.action != "mask":
        return False
    changed = False
    for slot, text in zip(slots, returned, strict=False):
        if isinstance(text, str) and text != slot.text:
            slot.set(text)
            changed = True
    if changed:
        metrics.guard_action(route, direction, "webhook", "masked")
    return changed


class RouteGuards:
    """A route's compiled guards, built once at start-up."""

    def __init__(self, request: RequestGuards | None, response: ResponseGuards | None) -> None:
        self.request = request
        self.response = response
