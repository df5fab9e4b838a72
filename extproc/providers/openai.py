"""OpenAI: the canonical schema itself, so translation is the model override only."""

from __future__ import annotations

from typing import Any, Literal

from ..sse import SSEEvent
from .base import BackendSettings, Provider, StreamTranslator, messages_without_reasoning


class OpenAISettings(BackendSettings):
    provider: Literal["openai"]
    # OpenAI-Organization / OpenAI-Project headers, for keys that span several.
    organization: str | None = None
    project: str | None = None


class PassthroughStream(StreamTranslator):
    """Not used on the hot path (OpenAI streams skip the upstream body phase); kept so
    every provider answers the same interface."""

    def on_event(self, event: SSEEvent) -> list[dict[str, Any]]:
        import orjson

        if not event.has_data or event.data == "[DONE]":
            return []
        return [orjson.loads(event.data)]


class OpenAI(Provider[OpenAISettings]):
    name = "openai"
    settings_model = OpenAISettings
    default_authority = "api.openai.com"
    canonical_responses = True

    def request_path(self, model: str, stream: bool) -> str:
        return "/v1/chat/completions"

    def translate_request(self, req: dict[str, Any], model: str) -> dict[str, Any]:
        # OpenAI rejects unknown message fields: another provider's reasoning is dropped.
        messages = messages_without_reasoning(req)
        if req.get("model") == model and messages is None:
            return req
        out = dict(req)
        out["model"] = model
        if messages is not None:
            out["messages"] = messages
        return out

    def extra_headers(self) -> dict[str, str]:
        headers = {}
        s = self.settings
        if s.organization:
            headers["openai-organization"] = s.organization
        if s.project:
            headers["openai-project"] = s.project
        return headers

    def translate_response(self, body: dict[str, Any], model: str) -> dict[str, Any]:
        return body

    def stream_translator(self, model: str) -> StreamTranslator:
        return PassthroughStream()


PROVIDER = OpenAI
