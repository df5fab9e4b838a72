"""`promptGuard` in route metadata: what guards a route runs, on which direction.

promptGuard:
  request:
    customResponse: {message: "Rejected due to inappropriate content", statusCode: 403}
    regex: {action: REJECT, matches: [{pattern: "credit card", name: CC}], builtins: [SSN]}
    webhook: {url: "http://guard:8000", timeoutSeconds: 2, forwardHeaders: [x-user-id]}
    moderation:
      openAIModeration: {model: omni-moderation-latest, authToken: {secretRef: {env: OPENAI_API_KEY}}}
  response:
    customResponse: {...}
    regex: {action: MASK, builtins: [CREDIT_CARD]}
    webhook: {...}
    streamWindow: 256          # streams: most characters held back while a match may form
    scanBudget: {maxChars: 1048576, maxSeconds: 5}   # either direction; these are the defaults
"""

from __future__ import annotations

from pydantic import Field, model_validator

from ..config_model import ConfigModel
from .moderation import ModerationConfig
from .regex_guard import RegexGuardConfig
from .webhook import WebhookConfig

DEFAULT_REJECT_MESSAGE = "The request was rejected by the gateway's content policy"


class CustomResponse(ConfigModel):
    message: str = DEFAULT_REJECT_MESSAGE
    # A rejection is never a success: only error statuses.
    status_code: int = Field(default=403, ge=400, le=599)


class ScanBudget(ConfigModel):
    """How much regex/Presidio scanning one request (or one JSON response) may cost.

    Presidio costs up to ~0.1-0.3 ms per character of digit-dense text, so without a cap
    one request could hold a scan worker for minutes. Past either limit the guard cannot
    vouch for the text and the route's action applies: REJECT rejects (its
    `customResponse`), MASK fails closed (413 on a request, 502 on a response, code
    `guard_budget_exceeded`). Nothing is ever passed on unscanned.
    """

    # Characters of guarded text, counted before any scanning (a cheap, early refusal).
    max_chars: int = Field(default=1024 * 1024, ge=1, le=64 * 1024 * 1024)
    # Seconds of scan-worker time (not time spent queued behind other requests). Keep it
    # well under the ext_proc filter's `message_timeout` (10 s in the examples), minus the
    # webhook's and moderation's timeouts, or Envoy answers 503 first.
    max_seconds: float = Field(default=5.0, gt=0, le=300)


class RequestGuardConfig(ConfigModel):
    custom_response: CustomResponse = CustomResponse()
    scan_budget: ScanBudget = ScanBudget()
    regex: RegexGuardConfig | None = None
    webhook: WebhookConfig | None = None
    moderation: ModerationConfig | None = None

    @model_validator(mode="after")
    def _something(self) -> RequestGuardConfig:
        if not (self.regex or self.webhook or self.moderation):
            raise ValueError("set at least one of regex, webhook, moderation")
        return self


class ResponseGuardConfig(ConfigModel):
    custom_response: CustomResponse = CustomResponse(
        message="The response was withheld by the gateway's content policy"
    )
    regex: RegexGuardConfig | None = None
    webhook: WebhookConfig | None = None
    scan_budget: ScanBudget = ScanBudget()
    # Streams: the longest tail (in characters) held back while a match may still be
    # forming across chunks. Matches longer than this can be cut when they span chunks.
    stream_window: int = Field(default=256, ge=16, le=65536)

    @model_validator(mode="after")
    def _something(self) -> ResponseGuardConfig:
        if not (self.regex or self.webhook):
            raise ValueError("set at least one of regex, webhook")
        return self


class PromptGuardConfig(ConfigModel):
    request: RequestGuardConfig | None = None
    response: ResponseGuardConfig | None = None
