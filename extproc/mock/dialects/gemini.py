"""Google's Gemini API (`models.generateContent` / `models.streamGenerateContent`), as the
public API reference documents it.

Like the real API, the mock rejects fields Google's protos do not have (Google's JSON
parser fails a request naming an unknown field, in camelCase or snake_case alike), roles
other than `user` / `model`, empty `contents` or `parts`, and function declarations whose
OBJECT parameters have no properties. Streaming answers only with `alt=sse`: without it
the real API returns one JSON array at the end, which this mock does not imitate (400).
SSE events end with CRLF, as Google's servers send them.

Thinking: `generationConfig.thinkingConfig` is checked against each model family's limits
as Google documents them (a budget out of range, `thinkingBudget: 0` on a model that cannot
stop thinking, `thinkingLevel` on a 2.5 model or a level the model lacks, budget and level
together: 400). When it asks for thoughts (`includeThoughts` and thinking not off), the
answer starts with a deterministic thought part, reports `thoughtsTokenCount`, and signs
its first function call (`thoughtSignature`). The field lists and the thinking checks are
in _gemini_checks.py.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from ..engine import MockRequest, MockTool, Plan, count_tokens, split_text
from ._gemini_checks import (
    CONTENT_FIELDS,
    DECLARATION_FIELDS,
    GENERATION_FIELDS,
    PART_DATA,
    PART_FIELDS,
    REQUEST_FIELDS,
    TOOL_FIELDS,
    check_fields,
    check_schema,
    thoughts_for,
)
from .base import BadRequest, Dialect

GRPC_STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


@dataclass
class GeminiMockRequest(MockRequest):
    candidate_count: int = 1
    # The thought summary to answer with first (thinkingConfig asked for thoughts), or None.
    thoughts: str | None = None


class GeminiDialect(Dialect):
    name = "gemini"
    serves = ("gemini",)
    priority = 50
    _path = re.compile(
        r"/v1(?:alpha|beta)?/models/(?P<model>[^/:]+)"
        r":(?P<action>generateContent|streamGenerateContent)"
    )
    # Proto3 JSON leaves out zero values; the Gemini API still writes candidate index 0.
    _write_index_zero = True

    def match(self, method: str, path: str) -> dict[str, str] | None:
        m = self._path.fullmatch(path)
        if method != "POST" or m is None:
            return None
        return {"model": m["model"], "action": m["action"]}

    def credential(self, headers: Mapping[str, str], query: Mapping[str, str]) -> str | None:
        return headers.get("x-goog-api-key") or query.get("key") or None

    # ---- request ---------------------------------------------------------------------
    def parse(self, body: dict[str, Any], params: dict[str, str], query: Mapping[str, str]) -> MockRequest:
        stream = params["action"] == "streamGenerateContent"
        if stream and query.get("alt") != "sse":
            raise BadRequest("mock: streamGenerateContent is only served with alt=sse")
        body = check_fields(body, REQUEST_FIELDS, "")
        contents = body.get("contents")
        if not isinstance(contents, list) or not contents:
            raise BadRequest("* GenerateContentRequest.contents: contents is not specified")
        turns: list[tuple[str, str]] = []
        system = body.get("systemInstruction")
        if system is not None:
            parts = self._parts(
                check_fields(system, CONTENT_FIELDS, "system_instruction"), "system_instruction"
            )
            turns.append(("system", "\n".join(p.get("text", "") for p in parts)))
        for i, content in enumerate(contents):
            content = check_fields(content, CONTENT_FIELDS, f"contents[{i}]")
            role = content.get("role", "user")
            if role not in ("user", "model"):
                raise BadRequest("Please use a valid role: user, model.")
            turns.extend(self._turns(role, self._parts(content, f"contents[{i}]")))
        tools = self._tools(body.get("tools") or [])
        config = check_fields(body.get("generationConfig") or {}, GENERATION_FIELDS, "generation_config")
        if "responseSchema" in config:
            check_schema(config["responseSchema"], "generation_config.response_schema")
        mode = (body.get("toolConfig") or {}).get("functionCallingConfig") or {}
        allowed = mode.get("allowedFunctionNames") or []
        choice = {"NONE": "none", "ANY": allowed[0] if len(allowed) == 1 else "required"}.get(
            mode.get("mode", "AUTO")
        )
        return GeminiMockRequest(
            model=params["model"],
            stream=stream,
            turns=turns,
            tools=tools,
            tool_choice=choice,
            max_tokens=config.get("maxOutputTokens"),
            include_usage=True,
            candidate_count=int(config.get("candidateCount") or 1),
            thoughts=thoughts_for(params["model"], config.get("thinkingConfig")),
        )

    @staticmethod
    def _parts(content: dict[str, Any], where: str) -> list[dict[str, Any]]:
        parts = content.get("parts")
        if not isinstance(parts, list) or not parts:
            raise BadRequest(f"* GenerateContentRequest.{where}.parts: contents.parts must not be empty.")
        out = []
        for j, part in enumerate(parts):
            part = check_fields(part, PART_FIELDS, f"{where}.parts[{j}]")
            if not PART_DATA & set(part):
                raise BadRequest(
                    f"* GenerateContentRequest.{where}.parts[{j}].data: required oneof "
                    "field 'data' must have one initialized field"
                )
            out.append(part)
        return out

    @staticmethod
    def _turns(role: str, parts: list[dict[str, Any]]) -> list[tuple[str, str]]:
        turns = []
        for part in parts:
            if "functionResponse" in part:
                resp = part["functionResponse"]
                if not resp.get("name"):
                    raise BadRequest("* function_response.name: Name cannot be empty.")
                turns.append(("tool", orjson.dumps(resp.get("response")).decode()))
        text = "\n".join(p["text"] for p in parts if isinstance(p.get("text"), str))
        if text or not turns:
            turns.append(("assistant" if role == "model" else "user", text))
        return turns

    @staticmethod
    def _tools(tools: list[Any]) -> list[MockTool]:
        out = []
        for i, tool in enumerate(tools):
            tool = check_fields(tool, TOOL_FIELDS, f"tools[{i}]")
            for j, decl in enumerate(tool.get("functionDeclarations") or ()):
                where = f"tools[{i}].function_declarations[{j}]"
                decl = check_fields(decl, DECLARATION_FIELDS, where)
                if not decl.get("name"):
                    raise BadRequest(f"* GenerateContentRequest.{where}.name: Name cannot be empty.")
                params = decl.get("parameters")
                if params is not None:
                    params = check_schema(params, f"{where}.parameters")
                    if str(params.get("type", "")).upper() == "OBJECT" and not params.get("properties"):
                        raise BadRequest(
                            f"* GenerateContentRequest.{where}.parameters.properties: "
                            "should be non-empty for OBJECT type"
                        )
                out.append(MockTool(decl["name"], params or {}))
        return out

    # ---- response --------------------------------------------------------------------
    def _candidate(self, index: int, parts: list[dict[str, Any]], finish: str | None) -> dict[str, Any]:
        cand: dict[str, Any] = {"content": {"parts": parts, "role": "model"}}
        if finish:
            cand["finishReason"] = finish
        if index or self._write_index_zero:
            cand["index"] = index
        return cand

    def _usage(self, prompt: int, completion: int | None, thoughts: int = 0) -> dict[str, Any]:
        usage: dict[str, Any] = {"promptTokenCount": prompt}
        if completion is not None:
            usage["candidatesTokenCount"] = completion
        if thoughts:
            usage["thoughtsTokenCount"] = thoughts
        usage["totalTokenCount"] = prompt + (completion or 0) + thoughts
        usage["promptTokensDetails"] = [{"modality": "TEXT", "tokenCount": prompt}]
        return usage

    def _envelope(
        self, candidates: list[dict[str, Any]], usage: dict[str, Any] | None, req: MockRequest, plan: Plan
    ) -> dict[str, Any]:
        doc: dict[str, Any] = {"candidates": candidates}
        if usage is not None:
            doc["usageMetadata"] = usage
        doc["modelVersion"] = req.model
        doc["responseId"] = hashlib.sha1(f"{req.model}{plan.text}".encode()).hexdigest()[:23]
        return doc

    @staticmethod
    def _finish(plan: Plan) -> str:
        return "MAX_TOKENS" if plan.finish_reason == "length" else "STOP"  # calls end in STOP

    @staticmethod
    def _call_parts(plan: Plan, req: MockRequest) -> list[dict[str, Any]]:
        parts: list[dict[str, Any]] = [
            {"functionCall": {"name": c.name, "args": orjson.loads(c.arguments)}} for c in plan.tool_calls
        ]
        if parts and getattr(req, "thoughts", None):
            # A thinking model signs its first call; the client must send the signature back.
            signature = base64.b64encode(f"mock-signature:{plan.tool_calls[0].name}".encode()).decode()
            parts[0]["thoughtSignature"] = signature
        return parts

    def render_json(self, plan: Plan, req: MockRequest) -> dict[str, Any]:
        n = getattr(req, "candidate_count", 1)
        thoughts = getattr(req, "thoughts", None)
        parts = [{"text": thoughts, "thought": True}] if thoughts else []
        parts += [{"text": plan.text}] if plan.text or not plan.tool_calls else []
        parts += self._call_parts(plan, req)
        cands = [self._candidate(i, parts, self._finish(plan)) for i in range(n)]
        thought_tokens = count_tokens(thoughts or "") * n
        usage = self._usage(plan.prompt_tokens, plan.completion_tokens * n, thought_tokens)
        return self._envelope(cands, usage, req, plan)

    def render_stream(self, plan: Plan, req: MockRequest) -> list[bytes]:
        n = getattr(req, "candidate_count", 1)
        thoughts = getattr(req, "thoughts", None)
        pieces = split_text(plan.text) or ([""] if not plan.tool_calls else [])
        # One event per word of thought, then per word of answer, then (for tool calls) one
        # event carrying every whole call.
        steps: list[list[dict[str, Any]]] = [
            [{"text": p, "thought": True}] for p in split_text(thoughts or "")
        ]
        steps += [[{"text": p}] for p in pieces]
        if plan.tool_calls:
            steps.append(self._call_parts(plan, req))
        events, said, thought = [], 0, 0
        for k, parts in enumerate(steps):
            last = k == len(steps) - 1
            words = sum(len(p["text"].split()) for p in parts if "text" in p)
            if parts[0].get("thought"):
                thought += words
            else:
                said += words
            completion = plan.completion_tokens if last else said
            cands = [self._candidate(i, parts, self._finish(plan) if last else None) for i in range(n)]
            usage = self._stream_usage(plan.prompt_tokens, completion * n, last, thought * n)
            events.append(self._event(self._envelope(cands, usage, req, plan)))
        return events

    def _stream_usage(
        self, prompt: int, completion: int, last: bool, thoughts: int = 0
    ) -> dict[str, Any] | None:
        # The Gemini API repeats cumulative usage on every event.
        return self._usage(prompt, completion, thoughts)

    @staticmethod
    def _event(doc: dict[str, Any]) -> bytes:
        return b"data: " + orjson.dumps(doc) + b"\r\n\r\n"

    def render_error(self, status: int, message: str) -> dict[str, Any]:
        return {"error": {"code": status, "message": message, "status": GRPC_STATUS.get(status, "UNKNOWN")}}


DIALECT = GeminiDialect
