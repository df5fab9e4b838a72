"""Azure OpenAI chat completions, as Azure's REST reference and content-filter docs describe them.

Written from Azure's documentation, not from the gateway's translator. The body is
OpenAI's, so parsing reuses the OpenAI dialect; what this adds is Azure's own surface:

- `POST /openai/deployments/{deployment}/chat/completions?api-version=...` (the deployment
  picks the model; `model` in the body is optional and ignored) and the version-less
  `POST /openai/v1/chat/completions` (the deployment name goes in `model`);
- the key in the `api-key` header (Entra ID bearer tokens are not modelled);
- a missing or malformed `api-version` is rejected, and versions before
  2024-09-01-preview reject `max_completion_tokens` and `stream_options` as unrecognized;
- JSON answers carry `prompt_filter_results` and per-choice `content_filter_results`;
- streams start with a filter report that has `choices: []` and a blank envelope
  (`id`, `object`, `model` empty, `created` 0), and choices carry `content_filter_results`;
- errors are `{"error": {"code", "message"}}`, with the status as the code for 401/429.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote

from ..engine import MockRequest, Plan, split_text
from .base import BadRequest
from .openai import OpenAIDialect

_DEPLOYMENT_PATH = re.compile(r"^/openai/deployments/([^/]+)/chat/completions$")
_V1_PATH = "/openai/v1/chat/completions"
_VERSION = re.compile(r"^\d{4}-\d{2}-\d{2}(-preview)?$")
_SAFE = {"filtered": False, "severity": "safe"}
_FILTERS = {"hate": _SAFE, "self_harm": _SAFE, "sexual": _SAFE, "violence": _SAFE}
_PROMPT_FILTERS = [
    {
        "prompt_index": 0,
        "content_filter_results": {**_FILTERS, "jailbreak": {"filtered": False, "detected": False}},
    }
]
_ID = "chatcmpl-AzMock000000000000000001"


class AzureOpenAIDialect(OpenAIDialect):
    name = "azure-openai"
    serves = ("azure-openai",)
    priority = 10  # before the generic ".../chat/completions" of the OpenAI dialect

    def match(self, method: str, path: str) -> dict[str, str] | None:
        if method != "POST":
            return None
        if path == _V1_PATH:
            return {}
        m = _DEPLOYMENT_PATH.match(path)
        return {"deployment": unquote(m.group(1))} if m else None

    def credential(self, headers: Mapping[str, str], query: Mapping[str, str]) -> str | None:
        return headers.get("api-key") or None

    def parse(self, body: dict[str, Any], params: dict[str, str], query: Mapping[str, str]) -> MockRequest:
        deployment = params.get("deployment")
        if deployment is not None:
            version = query.get("api-version")
            if not version:
                raise BadRequest("Missing required query parameter: api-version")
            if not _VERSION.match(version):
                raise BadRequest(f"Unsupported api-version '{version}'")
            if version[:10] < "2024-09-01":
                for field in ("max_completion_tokens", "stream_options"):
                    if field in body:
                        raise BadRequest(f"Unrecognized request argument supplied: {field}")
            # The deployment picks the model; a `model` in the body is not required.
            body = {**body, "model": deployment}
        return super().parse(body, params, query)

    def render_json(self, plan: Plan, req: MockRequest) -> dict[str, Any]:
        doc = super().render_json(plan, req)
        doc["id"] = _ID
        doc["prompt_filter_results"] = _PROMPT_FILTERS
        for choice in doc["choices"]:
            choice["content_filter_results"] = _FILTERS
        return doc

    def render_stream(self, plan: Plan, req: MockRequest) -> list[bytes]:
        created = int(time.time())

        def chunk(
            delta: dict[str, Any], finish: str | None = None, filters: dict[str, Any] | None = None
        ) -> bytes:
            choice: dict[str, Any] = {
                "content_filter_results": filters or {},
                "delta": delta,
                "finish_reason": finish,
                "index": 0,
                "logprobs": None,
            }
            return self.sse(
                {
                    "choices": [choice],
                    "created": created,
                    "id": _ID,
                    "model": req.model,
                    "object": "chat.completion.chunk",
                    "system_fingerprint": "fp_mock",
                }
            )

        events = [
            self.sse(
                {
                    "choices": [],
                    "created": 0,
                    "id": "",
                    "model": "",
                    "object": "",
                    "prompt_filter_results": _PROMPT_FILTERS,
                }
            )
        ]
        events.append(chunk({"content": "", "refusal": None, "role": "assistant"}))
        for piece in split_text(plan.text):
            events.append(chunk({"content": piece}, filters=_FILTERS))
        for i, call in enumerate(plan.tool_calls):
            events.append(
                chunk(
                    {
                        "tool_calls": [
                            {
                                "index": i,
                                "id": call.id,
                                "type": "function",
                                "function": {"name": call.name, "arguments": ""},
                            }
                        ]
                    }
                )
            )
            for start in range(0, len(call.arguments), 8):
                events.append(
                    chunk(
                        {
                            "tool_calls": [
                                {"index": i, "function": {"arguments": call.arguments[start : start + 8]}}
                            ]
                        }
                    )
                )
        events.append(chunk({}, plan.finish_reason))
        if req.include_usage:
            events.append(
                self.sse(
                    {
                        "choices": [],
                        "created": created,
                        "id": _ID,
                        "model": req.model,
                        "object": "chat.completion.chunk",
                        "system_fingerprint": "fp_mock",
                        "usage": self._usage(plan),
                    }
                )
            )
        events.append(b"data: [DONE]\n\n")
        return events

    def render_error(self, status: int, message: str) -> dict[str, Any]:
        if status == 400:
            return {
                "error": {"message": message, "type": "invalid_request_error", "param": None, "code": None}
            }
        if status == 401:
            return {
                "error": {
                    "code": "401",
                    "message": "Access denied due to invalid "
                    "subscription key or wrong API endpoint. Make sure to provide a "
                    "valid key for an active subscription and use a correct regional "
                    "API endpoint for your resource.",
                }
            }
        if status == 404:
            return {"error": {"code": "DeploymentNotFound", "message": message}}
        if status == 429:
            return {"error": {"code": "429", "message": f"{message}. Please retry after 1 second."}}
        return {"error": {"code": "InternalServerError", "message": message}}


DIALECT = AzureOpenAIDialect
