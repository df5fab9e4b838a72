"""`promptGuard` in route metadata: what guards a route runs, on which direction.

  promptGuard:
    request:
      customResponse: {message: "Rejected due to inappropriate content", statusCode: 403}
      regex: {action: REJECT, matches: [{pattern: "credit card", name: CC}], builtins: [SSN]}
      webhook: {url: "http://guard:8000", timeoutSeconds: 2, forwardHeaders: [x-user-id]}
      moderation: {openAIModeration: {model: omni-moderation-latest, authToken: {secretRef: {env: OPENAI_API_KEY}}}}
    response:
      customResponse: {...}
      regex: {action: MASK, builtins: [CREDIT_CARD]}
      webhook: {...}
      streamWindow: 256          # streams: most characters held back while a match may form
"""

from __future__ import annotations

from pydantic import Field, model_validator

from ..config.base import ConfigModel
from .moderation import ModerationConfig
from .regex_guard import RegexGuardConfig
from .webhook import WebhookConfig

DEFAULT_REJECT_MESSAGE = "The request was rejected by the gateway's content policy"


class CustomResponse(ConfigModel):
    message: str = DEFAULT_REJECT_MESSAGE
    # A rejection is never a success: only error statuses.
    status_code: int = Field(default=403, ge=400, le=599)


class RequestGuardConfig(ConfigModel):
    custom_response: CustomResponse = CustomResponse()
    regex: RegexGuardConfig | None = None
    webhook: WebhookConfig | None = None
    moderation: ModerationConfig | None = None

    @model_validator(mode="after")
    def _something(self) -> "RequestGuardConfig":
        if not (self.regex or self.webhook or self.moderation):
            raise ValueError("set at least one of regex, webhook, moderation")
        return self


class ResponseGuardConfig(ConfigModel):
    custom_response: CustomResponse = CustomResponse(
        message="The response was withheld by the gateway's content policy")
    regex: RegexGuardConfig | None = None
    webhook: WebhookConfig | None = None
    # Streams: the longest tail (in characters) held back while a match may still be
    # forming across chunks. Matches longer than this can be cut when they span chunks.
    stream_window: int = Field(default=256, ge=16, le=65536)

    @model_validator(mode="after")
    def _something(self) -> "ResponseGuardConfig":
        if not (self.regex or self.webhook):
            raise ValueError("set at least one of regex, webhook")
        return self


class PromptGuardConfig(ConfigModel):
    request: RequestGuardConfig | None = None
    response: ResponseGuardConfig | None = None
