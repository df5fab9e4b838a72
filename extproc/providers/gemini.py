"""Google's Gemini API (generativelanguage.googleapis.com), the API-key flavour of Gemini.

The body translation lives in `_gemini_request` / `_gemini_response`, shared with Vertex
AI, which speaks the same GenerateContent format on a different path with OAuth tokens.
"""

from __future__ import annotations

import re
from typing import Any, Literal, TypeVar

from pydantic import Field, field_validator, model_validator

from ._gemini_request import translate_request
from ._gemini_response import GeminiStream, translate_error, translate_response
from ._gemini_thinking import GeminiThinking
from .base import BackendSettings, Provider, StreamTranslator, UnsupportedRequest

# Model ids go into the URL path, and a client may choose the model: anything that could
# change the path (`/`, `?`, `..`, `:`) is refused rather than escaped.
_MODEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]*")
_API_VERSION = re.compile(r"v\d+(?:alpha\d*|beta\d*)?")


def check_model(model: str) -> str:
    if not _MODEL.fullmatch(model):
        raise UnsupportedRequest(f"model {model!r} is not a valid Gemini model id")
    return model


def check_api_version(value: str) -> str:
    if not _API_VERSION.fullmatch(value):
        raise ValueError("must look like v1, v1beta or v1beta1")
    return value


class GeminiFamilySettings(BackendSettings):
    """What the Gemini API and Vertex AI share: the API version and thinking controls."""

    # `v1beta` carries every current feature (system instructions, tools, JSON schema).
    api_version: str = "v1beta"
    # `reasoning_effort` -> thinkingConfig: a default effort and per-family overrides
    # (see _gemini_thinking and docs/providers/gemini.md "Reasoning").
    thinking: GeminiThinking = Field(default_factory=GeminiThinking)

    @field_validator("api_version")
    @classmethod
    def _version(cls, v: str) -> str:
        return check_api_version(v)

    @model_validator(mode="after")
    def _thinking_fits_the_model(self) -> GeminiFamilySettings:
        self.thinking.check_model(self.model)
        return self


class GeminiSettings(GeminiFamilySettings):
    provider: Literal["gemini"]


FamilySettingsT = TypeVar("FamilySettingsT", bound=GeminiFamilySettings)


class GeminiFormat(Provider[FamilySettingsT]):
    """GenerateContent bodies, translation and errors; the path, host and auth are each
    API's own (Gemini below, VertexAI in vertex_ai.py)."""

    def translate_request(self, req: dict[str, Any], model: str) -> dict[str, Any]:
        return translate_request(req, model, self.settings.thinking)

    def translate_response(self, body: dict[str, Any], model: str) -> dict[str, Any]:
        return translate_response(body, model)

    def stream_translator(self, model: str) -> StreamTranslator:
        return GeminiStream(model)

    def translate_error(self, status: int, body: bytes) -> tuple[int, dict[str, Any]]:
        return translate_error(status, body, self.name)


class Gemini(GeminiFormat[GeminiSettings]):
    name = "gemini"
    settings_model = GeminiSettings
    auth_header = "x-goog-api-key"
    auth_prefix = ""
    default_authority = "generativelanguage.googleapis.com"

    def request_path(self, model: str, stream: bool) -> str:
        # Clients often copy Google's resource name ("models/gemini-2.0-flash").
        name = check_model(model.removeprefix("models/"))
        action = "streamGenerateContent?alt=sse" if stream else "generateContent"
        return f"/{self.settings.api_version}/models/{name}:{action}"


PROVIDER = Gemini
