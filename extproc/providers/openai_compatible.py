"""Self-hosted models that speak OpenAI's API: vLLM, Ollama, llama.cpp, DeepSeek, TGI.

They differ from OpenAI in where they listen (host, port, path), whether they want a
credential at all, and which newer fields they reject. The settings cover exactly that.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import field_validator

from .base import BackendSettings, Provider, StreamTranslator, messages_without_reasoning
from .openai import PassthroughStream


class OpenAICompatibleSettings(BackendSettings):
    provider: Literal["openai-compatible"]
    # Path of the chat-completions endpoint on that server.
    path: str = "/v1/chat/completions"
    # Top-level request fields this server rejects; they are removed before sending
    # (for example `stream_options` on older vLLM, or `user` on some servers).
    drop_fields: tuple[str, ...] = ()

    @field_validator("path")
    @classmethod
    def _absolute(cls, v: str) -> str:
        if not v.startswith("/"):
            raise ValueError("must start with '/'")
        return v


class OpenAICompatible(Provider[OpenAICompatibleSettings]):
    name = "openai-compatible"
    settings_model = OpenAICompatibleSettings
    requires_auth = False
    canonical_responses = True

    def request_path(self, model: str, stream: bool) -> str:
        return self.settings.path

    def translate_request(self, req: dict[str, Any], model: str) -> dict[str, Any]:
        drop = self.settings.drop_fields
        # Servers that return `reasoning_content` (DeepSeek, vLLM) refuse it sent back.
        messages = messages_without_reasoning(req)
        if req.get("model") == model and messages is None and not any(f in req for f in drop):
            return req
        out = {k: v for k, v in req.items() if k not in drop}
        out["model"] = model
        if messages is not None:
            out["messages"] = messages
        return out

    def translate_response(self, body: dict[str, Any], model: str) -> dict[str, Any]:
        return body

    def stream_translator(self, model: str) -> StreamTranslator:
        return PassthroughStream()


PROVIDER = OpenAICompatible
