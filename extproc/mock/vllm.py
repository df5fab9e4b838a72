"""A mock vLLM-style model server: one OpenAI-compatible server standing for one GPU.

It answers `POST /v1/chat/completions` like the OpenAI mock (same parser and response
shapes, deterministic text from the prompt), but under load like a model server: a
bounded running batch, a FIFO wait queue, a pace per output token, a simulated KV cache
and LoRA adapters loaded on demand (see `_vllm_scheduler.py`). `GET /metrics` reports
the live figures under vLLM's Prometheus names, which is what an inference router scrapes
to pick the least-loaded server.

Answer length: `max_tokens` when the request sets it (finish_reason "length", as vLLM with
`ignore_eos`), else `--output-tokens` words (finish_reason "stop"); tool calls and
`x-mock-content` answers keep the OpenAI mock's length. Service time: `prefill_ms` +
`per_token_ms` x output tokens; a stream writes each token at that pace.

Admin: GET /_mock/requests lists one record per request: path, model, stream, token
counts, `status` (None while running or after the client went away) and wall-clock
`received` / `started` / `finished` times, started being when generation began (after the
wait for a running slot and any adapter load). DELETE /_mock/requests clears it; GET
/_mock/health; POST /_mock/behavior takes any of {"perTokenMs", "prefillMs", "maxRunning",
"outputTokens", "adapterLoadMs", "fail"}, where fail is "status:<code>" (answer that
error), "reset" (drop the connection) or null. Also served: GET /metrics, /health and
/v1/models, as vLLM does.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import time
from typing import Any

import orjson
from aiohttp import web

from . import engine
from ._vllm_scheduler import Scheduler, render_metrics
from .dialects.base import BadRequest
from .dialects.openai import OpenAIDialect
from .vllm_config import VllmConfig

# POST /_mock/behavior name -> (config field, type, smallest value allowed)
_KNOBS: dict[str, tuple[str, type, float]] = {
    "perTokenMs": ("per_token_ms", float, 0),
    "prefillMs": ("prefill_ms", float, 0),
    "maxRunning": ("max_running", int, 1),
    "outputTokens": ("output_tokens", int, 1),
    "adapterLoadMs": ("adapter_load_ms", float, 0),
}


class UnknownModel(Exception):
    pass


class VllmMock:
    """The server's state: configuration, scheduler, request log and injected failure."""

    def __init__(self, config: VllmConfig | None = None) -> None:
        self.config = config or VllmConfig()
        self.scheduler = Scheduler(self.config)
        self.dialect = OpenAIDialect()
        self.received: list[dict[str, Any]] = []
        # None, "reset", or "status:<code>".
        self.fail: str | None = None
        self.prompt_tokens = 0
        self.generation_tokens = 0
        self._ids = itertools.count(1)

    def adapter_for(self, model: str) -> str | None:
        """None for the base model, the adapter name otherwise; UnknownModel if not served."""
        if model == self.config.model:
            return None
        if self.config.adapters is None or model in self.config.adapters:
            return model
        raise UnknownModel(model)

    def plan(self, req: engine.MockRequest, forced: str | None) -> engine.Plan:
        result = engine.plan(req, forced)
        if result.tool_calls or forced is not None:
            return result
        n = req.max_tokens if req.max_tokens is not None else self.config.output_tokens
        # The prompt-derived answer, its words repeated or cut to exactly n tokens.
        words = result.text.split() or ["mock"]
        text = " ".join(itertools.islice(itertools.cycle(words), n))
        finish = "length" if req.max_tokens is not None else "stop"
        return dataclasses.replace(result, text=text, completion_tokens=n, finish_reason=finish)

    def set_behavior(self, doc: Any) -> None:
        if not isinstance(doc, dict):
            raise ValueError("the behavior must be a JSON object")
        unknown = set(doc) - {*_KNOBS, "fail"}
        if unknown:
            raise ValueError(f"unknown behavior fields: {', '.join(sorted(unknown))}")
        changes: dict[str, Any] = {}
        for key, (name, kind, least) in _KNOBS.items():
            if key in doc:
                value = doc[key]
                if isinstance(value, bool) or not isinstance(value, (int, float)) or value < least:
                    raise ValueError(f"{key} must be a number >= {least}")
                if kind is int and value != int(value):
                    raise ValueError(f"{key} must be an integer")
                changes[name] = kind(value)
        if "fail" in doc:
            _check_fail(doc["fail"])
            self.fail = doc["fail"]
        for name, value in changes.items():
            setattr(self.config, name, value)
        self.scheduler.schedule()  # a larger maxRunning admits waiting requests now


def _check_fail(fail: Any) -> None:
    if fail is None or fail == "reset":
        return
    if isinstance(fail, str) and fail.startswith("status:") and fail[7:].isdigit():
        if 400 <= int(fail[7:]) <= 599:
            return
    raise ValueError('fail must be "status:<400-599>", "reset" or null')


MOCK: web.AppKey[VllmMock] = web.AppKey("vllm_mock", VllmMock)


def build_app(mock: VllmMock | None = None) -> web.Application:
    mock = mock or VllmMock()
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app[MOCK] = mock

    async def requests_list(request: web.Request) -> web.Response:
        return _json(mock.received, 200)

    async def requests_clear(request: web.Request) -> web.Response:
        mock.received.clear()
        return _json({"cleared": True}, 200)

    async def set_behavior(request: web.Request) -> web.Response:
        try:
            mock.set_behavior(await request.json())
        except ValueError as exc:  # orjson and json decode errors are ValueErrors too
            return _json({"error": str(exc)}, 400)
        return _json({"ok": True}, 200)

    async def health(request: web.Request) -> web.Response:
        return _json({"ok": True}, 200)

    async def metrics(request: web.Request) -> web.Response:
        text = render_metrics(mock.scheduler, mock.prompt_tokens, mock.generation_tokens)
        return web.Response(text=text, content_type="text/plain", headers={"x-mock": "vllm"})

    async def models(request: web.Request) -> web.Response:
        return _json(_model_list(mock), 200)

    async def chat(request: web.Request) -> web.StreamResponse:
        return await _chat(mock, request)

    app.router.add_get("/_mock/requests", requests_list)
    app.router.add_delete("/_mock/requests", requests_clear)
    app.router.add_post("/_mock/behavior", set_behavior)
    app.router.add_get("/_mock/health", health)
    app.router.add_get("/health", health)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/v1/models", models)
    app.router.add_post("/v1/chat/completions", chat)
    return app


async def _chat(mock: VllmMock, request: web.Request) -> web.StreamResponse:
    raw = await request.read()
    try:
        body = orjson.loads(raw) if raw else None
    except orjson.JSONDecodeError:
        body = None
    record: dict[str, Any] = {
        "id": next(mock._ids),
        "path": request.path,
        "model": body.get("model") if isinstance(body, dict) else None,
        "stream": isinstance(body, dict) and body.get("stream") is True,
        "received": time.time(),
        "started": None,
        "finished": None,
        "status": None,
    }
    mock.received.append(record)
    del mock.received[:-1000]
    try:
        resp = await _answer(mock, request, body, record)
        record["status"] = resp.status
        return resp
    finally:
        record["finished"] = time.time()


async def _answer(
    mock: VllmMock, request: web.Request, body: Any, record: dict[str, Any]
) -> web.StreamResponse:
    dialect = mock.dialect
    if mock.fail == "reset":
        if request.transport is not None:
            request.transport.abort()
        return web.Response(status=500)
    if mock.fail is not None:
        status = int(mock.fail.removeprefix("status:"))
        return _json(dialect.render_error(status, f"mock failure {status}"), status)
    if not isinstance(body, dict):
        return _json(dialect.render_error(400, "mock: the body must be a JSON object"), 400)
    try:
        req = dialect.parse(body, {}, request.query)
        adapter = mock.adapter_for(req.model)
        if req.max_tokens is not None and (not isinstance(req.max_tokens, int) or req.max_tokens < 1):
            raise BadRequest("max_tokens must be a positive integer")
    except BadRequest as exc:
        return _json(dialect.render_error(400, str(exc)), 400)
    except UnknownModel as exc:
        return _json(dialect.render_error(404, f"The model `{exc}` does not exist."), 404)
    result = mock.plan(req, request.headers.get("x-mock-content"))
    record["prompt_tokens"] = result.prompt_tokens
    record["completion_tokens"] = result.completion_tokens
    async with mock.scheduler.slot(adapter, result.prompt_tokens + result.completion_tokens):
        record["started"] = time.time()
        if req.stream:
            resp = await _stream(mock, request, result, req)
        else:
            await asyncio.sleep(_service_ms(mock.config, result.completion_tokens) / 1000)
            resp = _json(dialect.render_json(result, req), 200)
    mock.prompt_tokens += result.prompt_tokens
    mock.generation_tokens += result.completion_tokens
    return resp


def _service_ms(config: VllmConfig, tokens: int) -> float:
    return config.prefill_ms + config.per_token_ms * tokens


async def _stream(
    mock: VllmMock, request: web.Request, result: engine.Plan, req: engine.MockRequest
) -> web.StreamResponse:
    events = mock.dialect.render_stream(result, req)
    # The role chunk, the token chunks, then the finish chunk, the usage chunk if asked, [DONE].
    tail = 3 if req.include_usage else 2
    head, tokens, rest = events[:1], events[1:-tail], events[-tail:]
    resp = web.StreamResponse(
        status=200, headers={"content-type": "text/event-stream", "cache-control": "no-cache"}
    )
    await resp.prepare(request)
    await asyncio.sleep(mock.config.prefill_ms / 1000)
    for event in head:
        await resp.write(event)
    # Read the pace per token so a behavior change applies to streams already running.
    for event in tokens:
        await asyncio.sleep(mock.config.per_token_ms * result.completion_tokens / len(tokens) / 1000)
        await resp.write(event)
    if not tokens:
        await asyncio.sleep(mock.config.per_token_ms * result.completion_tokens / 1000)
    for event in rest:
        await resp.write(event)
    await resp.write_eof()
    return resp


def _model_list(mock: VllmMock) -> dict[str, Any]:
    base = mock.config.model
    names = mock.config.adapters if mock.config.adapters is not None else mock.scheduler.loaded_adapters()
    data = [{"id": base, "object": "model", "owned_by": "vllm", "root": base, "parent": None}]
    data += [{"id": n, "object": "model", "owned_by": "vllm", "root": n, "parent": base} for n in names]
    return {"object": "list", "data": data}


def _json(doc: Any, status: int) -> web.Response:
    return web.Response(body=orjson.dumps(doc), status=status, content_type="application/json")


def run(host: str, port: int, config: VllmConfig) -> None:
    # A client that gives up (a gateway timeout, a killed benchmark) leaves the queue or frees
    # its slot, as vLLM aborts a request whose connection closed.
    web.run_app(
        build_app(VllmMock(config)),
        host=host,
        port=port,
        print=None,
        access_log=None,
        handler_cancellation=True,
    )
