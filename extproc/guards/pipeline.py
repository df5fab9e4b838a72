"""Runs a route's guards on the canonical request and the canonical (JSON) response.

Guards read message text only: string content and `text` parts, of every role. Tool-call
arguments and tool definitions are not inspected. Order on a request: regex (cheap, local),
then the webhook, then moderation, each on the result of the previous one. A rejection
stops at once; the provider is never called.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from .. import metrics
from ..errors import GatewayError
from .config import CustomResponse, RequestGuardConfig, ResponseGuardConfig
from .holdback import Holdback
from .moderation import build_moderator
from .regex_guard import TextScanner
from .webhook import WebhookGuard

log = logging.getLogger("aigw.guards")

# Presidio costs milliseconds per kilobyte; above this, scan in a worker thread so one
# large prompt does not stall every other stream on the event loop.
_THREAD_SCAN_CHARS = 4096


def _rejected(custom: CustomResponse, code: str) -> GatewayError:
    return GatewayError(custom.status_code, custom.message, code=code)


class _TextSlot:
    """One piece of guarded text in a message, and how to write it back."""

    __slots__ = ("holder", "key", "text")

    def __init__(self, holder: dict, key: str, text: str) -> None:
        self.holder, self.key, self.text = holder, key, text

    def set(self, text: str) -> None:
        self.holder[self.key] = text
        self.text = text


# Message fields that hold text a provider reads or a client sees, besides `content`.
TEXT_FIELDS = ("refusal", "reasoning_content", "reasoning")


def message_slots(message: dict[str, Any]) -> list[_TextSlot]:
    """Every text in a message a translator may send or a client may see: string content,
    any content part carrying `text` or `refusal` (whatever its type), and the message's
    refusal and reasoning fields. Tool-call arguments are not included (documented)."""
    slots = []
    content = message.get("content")
    if isinstance(content, str):
        slots.append(_TextSlot(message, "content", content))
    elif isinstance(content, list):
        for part in content:
            if isinstance(part, dict):
                for key in ("text", "refusal"):
                    if isinstance(part.get(key), str):
                        slots.append(_TextSlot(part, key, part[key]))
    for key in TEXT_FIELDS:
        if isinstance(message.get(key), str):
            slots.append(_TextSlot(message, key, message[key]))
    return slots


class RegexStage:
    def __init__(self, scanner: TextScanner, action: str, route: str, direction: str,
                 custom: CustomResponse) -> None:
        self.scanner = scanner
        self.reject = action == "REJECT"
        self.route = route
        self.direction = direction
        self.custom = custom

    async def run(self, slots: list[_TextSlot]) -> bool:
        changed = False
        for slot in slots:
            text = slot.text
            if not text:
                continue
            if self.scanner.needs_presidio and len(text) > _THREAD_SCAN_CHARS:
                masked, findings = await asyncio.to_thread(self.scanner.mask, text)
            else:
                masked, findings = self.scanner.mask(text)
            if not findings:
                continue
            entities = sorted({f.entity for f in findings})
            if self.reject:
                for entity in entities:
                    metrics.guard_action(self.route, self.direction, "regex", "rejected", entity)
                log.info("guard rejected", extra={"fields": {
                    "route": self.route, "direction": self.direction, "guard": "regex",
                    "entities": entities}})
                raise _rejected(self.custom, "content_policy_violation")
            for f in findings:
                metrics.guard_action(self.route, self.direction, "regex", "masked", f.entity)
            slot.set(masked)
            changed = True
        return changed


class RequestGuards:
    def __init__(self, config: RequestGuardConfig, route: str) -> None:
        self.route = route
        self.custom = config.custom_response
        self.regex = (RegexStage(TextScanner(config.regex), config.regex.action, route, "request",
                                 self.custom) if config.regex else None)
        self.webhook = WebhookGuard(config.webhook) if config.webhook else None
        self.moderator = build_moderator(config.moderation) if config.moderation else None

    async def apply(self, req: dict[str, Any], headers: dict[str, str]) -> bool:
        """Guard the request in place. Returns True when text was masked; raises
        GatewayError to reject."""
        messages = req["messages"]
        changed = False
        if self.regex is not None:
            slots = [s for m in messages for s in message_slots(m)]
            changed |= await self.regex.run(slots)
        if self.webhook is not None:
            changed |= await self._webhook(messages, headers)
        if self.moderator is not None:
            await self._moderate(messages)
        return changed

    async def _webhook(self, messages: list[dict], headers: dict[str, str]) -> bool:
        # One webhook message per text (a plain message is one text, as the contract shows).
        slots = [(m.get("role", "user"), s) for m in messages for s in message_slots(m)]
        sent = [{"role": role, "content": slot.text} for role, slot in slots]
        verdict = await self.webhook.check_request(sent, headers)  # type: ignore[union-attr]
        returned = [m.get("content", "") for m in verdict.messages or []]
        return _settle(verdict, self.route, "request", self.custom, [s for _, s in slots], returned)

    async def _moderate(self, messages: list[dict]) -> None:
        texts = [s.text for m in messages for s in message_slots(m) if s.text]
        result = await self.moderator.check(texts)  # type: ignore[union-attr]
        if result.failed and result.flagged:
            metrics.guard_action(self.route, "request", "moderation", "failed")
            raise GatewayError(502, "the content moderation service is unavailable",
                               code="moderation_unavailable")
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
        self.scanner = TextScanner(config.regex) if config.regex else None
        self.regex = (RegexStage(self.scanner, config.regex.action, route, "response", self.custom)
                      if config.regex else None)
        # For streams: how much text may still become part of a match (compiled once).
        self.holdback = Holdback(self.scanner, config.stream_window) if self.scanner else None
        self.webhook = WebhookGuard(config.webhook) if config.webhook else None

    async def apply(self, completion: dict[str, Any], headers: dict[str, str]) -> bool:
        """Guard the texts of a chat.completion's `choices[].message` in place. A shape the
        guards cannot read is refused (502) rather than passed on unguarded."""
        choices = completion.get("choices")
        if not isinstance(choices, list) or not all(
                isinstance(c, dict) and isinstance(c.get("message", {}), dict) for c in choices):
            raise GatewayError(502, "the provider's response could not be checked by the gateway",
                               code="unguardable_response")
        messages = [c.get("message") or {} for c in choices]
        changed = False
        for choice in choices:
            # Log probabilities repeat the answer token by token: they would carry what
            # the guards mask. Not returned on guarded routes.
            if choice.get("logprobs") is not None:
                choice["logprobs"] = None
                changed = True
        if self.regex is not None:
            changed |= await self.regex.run([s for m in messages for s in message_slots(m)])
        if self.webhook is not None and choices:
            changed |= await self.webhook_texts(messages, headers)
        return changed

    async def webhook_texts(self, messages: list[dict], headers: dict[str, str]) -> bool:
        slots = [(m.get("role", "assistant"), s) for m in messages for s in message_slots(m)]
        sent = [{"message": {"role": role, "content": slot.text}} for role, slot in slots]
        verdict = await self.webhook.check_response(sent, headers)  # type: ignore[union-attr]
        returned = [(c.get("message") or {}).get("content", "") for c in verdict.choices or []]
        return _settle(verdict, self.route, "response", self.custom, [s for _, s in slots], returned)


def _settle(verdict, route: str, direction: str, custom: CustomResponse,
            slots: list[_TextSlot], returned: list[str]) -> bool:
    """Act on a webhook verdict: raise for a rejection, write masked texts back."""
    if verdict.failed:
        metrics.guard_action(route, direction, "webhook", "failed_open" if verdict.action == "pass" else "failed")
    if verdict.action == "reject":
        if not verdict.failed:
            metrics.guard_action(route, direction, "webhook", "rejected")
        raise GatewayError(verdict.status or custom.status_code, verdict.message or custom.message,
                           code="webhook_unavailable" if verdict.failed else "content_policy_violation")
    if verdict.action != "mask":
        return False
    changed = False
    for slot, text in zip(slots, returned):
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
