"""Gemini models on Google Cloud Vertex AI.

Same GenerateContent bodies as the Gemini API (the translation is shared), on a
project/location-scoped path, authenticated with an OAuth access token sent as
`Authorization: Bearer` (the backend's `auth.secretRef`, typically a file a token
refresher rewrites; the gateway re-reads changed secret files).

Only the `google` publisher is supported: other publishers on Vertex (Anthropic's
Claude, Meta's Llama, ...) use their own request formats, not GenerateContent.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import field_validator, model_validator

from .gemini import GeminiFamilySettings, GeminiFormat, check_model

# Both go into the path: letters, digits and the separators Google's ids use, nothing else.
_PROJECT = re.compile(r"[a-z0-9][a-z0-9.:-]*")
_LOCATION = re.compile(r"[a-z0-9][a-z0-9-]*")


def default_host(location: str) -> str:
    """The regional endpoint, or the global one for `location: global`."""
    return "aiplatform.googleapis.com" if location == "global" else f"{location}-aiplatform.googleapis.com"


class VertexAISettings(GeminiFamilySettings):
    provider: Literal["vertex-ai"]
    project: str
    location: str = "us-central1"
    publisher: str = "google"
    api_version: str = "v1"

    @model_validator(mode="before")
    @classmethod
    def _regional_authority(cls, data: Any) -> Any:
        # The Host depends on the location, which a class-level `default_authority`
        # cannot express; filling `authority` here gives the same effect (an explicit
        # `authority` still wins) without any provider-specific code in Backend.
        if isinstance(data, dict) and data.get("authority") is None:
            location = data.get("location", "us-central1")
            if isinstance(location, str) and _LOCATION.fullmatch(location):
                data = {**data, "authority": default_host(location)}
        return data

    @field_validator("project")
    @classmethod
    def _project(cls, v: str) -> str:
        if not _PROJECT.fullmatch(v):
            raise ValueError("must be a Google Cloud project id (lower-case letters, digits, '-')")
        return v

    @field_validator("location")
    @classmethod
    def _location(cls, v: str) -> str:
        if not _LOCATION.fullmatch(v):
            raise ValueError("must be a Vertex AI location such as us-central1, or global")
        return v

    @field_validator("publisher")
    @classmethod
    def _publisher(cls, v: str) -> str:
        if v != "google":
            raise ValueError(
                f"publisher {v!r} is not supported: provider 'vertex-ai' speaks "
                "Gemini's GenerateContent format, which only publisher 'google' "
                "models use (Claude on Vertex uses Anthropic's format)"
            )
        return v


class VertexAI(GeminiFormat[VertexAISettings]):
    """Gemini's bodies, translation and errors; Vertex's path, host and bearer token."""

    name = "vertex-ai"
    settings_model = VertexAISettings
    auth_header = "authorization"
    auth_prefix = "Bearer "
    # Regional: see VertexAISettings._regional_authority.
    default_authority = None

    def request_path(self, model: str, stream: bool) -> str:
        s = self.settings
        action = "streamGenerateContent?alt=sse" if stream else "generateContent"
        return (
            f"/{s.api_version}/projects/{s.project}/locations/{s.location}"
            f"/publishers/{s.publisher}/models/{check_model(model)}:{action}"
        )


PROVIDER = VertexAI
