"""The mock provider's HTTP server.

Control, per request by header or per server by `POST /_mock/behavior` (JSON with the
same names in camelCase; headers win):

  x-mock-status: 429            answer with this error status instead (with x-mock-content:
                                that text as the error's message, as a provider quoting
                                the request does)
  x-mock-retry-after: 2         ... with this Retry-After (seconds)
  x-mock-times: 3               the failure applies to the next N requests only (behavior API)
  x-mock-reset: before|mid      drop the connection before answering, or mid-stream
  x-mock-first-byte-delay-ms    wait before the status line
  x-mock-chunk-delay-ms         wait between stream writes
  x-mock-content: text          answer with exactly this text (x-mock-content-b64 for any bytes)
  x-mock-split: 5,17,30         cut the SSE byte stream at these offsets (one write each)
  x-mock-chunk-bytes: 7         cut the SSE byte stream every N bytes
  x-mock-auth: any|none|<key>   which credential is accepted (default: any non-empty one)
  x-mock-empty-body: 1          an error status with no body at all
  x-mock-echo-key: whole|masked|part   answer 401 quoting the credential received, like
                                providers that reject a key: in the error message, in
                                `www-authenticate` and in `x-mock-key-echo` (masked:
                                OpenAI's `sk-proj-****abcd`; part: 12 characters from
                                its middle)

Admin: GET /_mock/requests lists what was received (path, query, headers, JSON body);
DELETE /_mock/requests clears it; POST /_mock/behavior sets defaults; GET /_mock/health.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import logging
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

import orjson
from aiohttp import web

from . import engine
from .dialects import discover
from .dialects.base import BadRequest, Dialect

log = logging.getLogger("aigw.mock")


@dataclass
class Behavior:
    status: int | None = None
    retry_after: float | None = None
    times: int | None = None
    reset: str | None = None
    first_byte_delay_ms: int = 0
    chunk_delay_ms: int = 0
    content: str | None = None
    split: list[int] | None = None
    chunk_bytes: int | None = None
    auth: str = "any"
    echo_key: str | None = None

    _NAMES: ClassVar[dict[str, str]] = {
        "status": "status",
        "retryAfter": "retry_after",
        "times": "times",
        "reset": "reset",
        "firstByteDelayMs": "first_byte_delay_ms",
        "chunkDelayMs": "chunk_delay_ms",
        "content": "content",
        "split": "split",
        "chunkBytes": "chunk_bytes",
        "auth": "auth",
        "echoKey": "echo_key",
    }

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Behavior:
        unknown = set(doc) - set(cls._NAMES)
        if unknown:
            raise ValueError(f"unknown behavior fields: {', '.join(sorted(unknown))}")
        return cls(**{cls._NAMES[k]: v for k, v in doc.items()})

    def with_headers(self, headers) -> Behavior:
        b = Behavior(**{f.name: getattr(self, f.name) for f in fields(self)})
        h = headers.get
        if h("x-mock-status"):
            b.status = int(h("x-mock-status"))
        if h("x-mock-retry-after"):
            b.retry_after = float(h("x-mock-retry-after"))
        if h("x-mock-reset"):
            b.reset = h("x-mock-reset")
        if h("x-mock-first-byte-delay-ms"):
            b.first_byte_delay_ms = int(h("x-mock-first-byte-delay-ms"))
        if h("x-mock-chunk-delay-ms"):
            b.chunk_delay_ms = int(h("x-mock-chunk-delay-ms"))
        if h("x-mock-content") is not None:
            b.content = h("x-mock-content")
        if h("x-mock-content-b64"):
            b.content = base64.b64decode(h("x-mock-content-b64")).decode("utf-8")
        if h("x-mock-split"):
            b.split = [int(x) for x in h("x-mock-split").split(",") if x.strip()]
        if h("x-mock-chunk-bytes"):
            b.chunk_bytes = int(h("x-mock-chunk-bytes"))
        if h("x-mock-auth"):
            b.auth = h("x-mock-auth")
        if h("x-mock-echo-key"):
            b.echo_key = h("x-mock-echo-key")
        return b


@dataclass
class MockState:
    dialects: list[Dialect] = field(default_factory=discover)
    behavior: Behavior = field(default_factory=Behavior)
    received: list[dict[str, Any]] = field(default_factory=list)
    failures_left: int | None = None


def cut(data: bytes, behavior: Behavior, events: list[bytes]) -> list[bytes]:
    """The byte stream as the writes the mock will make."""
    if behavior.split:
        offsets = sorted({o for o in behavior.split if 0 < o < len(data)})
        bounds = [0, *offsets, len(data)]
        return [data[a:b] for a, b in itertools.pairwise(bounds)]
    if behavior.chunk_bytes:
        n = behavior.chunk_bytes
        return [data[i : i + n] for i in range(0, len(data), n)]
    return events


STATE: web.AppKey[MockState] = web.AppKey("state", object)  # type: ignore[arg-type]


def build_app(state: MockState | None = None) -> web.Application:
    state = state or MockState()
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app[STATE] = state

    async def requests_list(request: web.Request) -> web.Response:
        return web.json_response(state.received, dumps=lambda d: orjson.dumps(d).decode())

    async def requests_clear(request: web.Request) -> web.Response:
        state.received.clear()
        return web.json_response({"cleared": True})

    async def set_behavior(request: web.Request) -> web.Response:
        try:
            state.behavior = Behavior.from_json(await request.json())
        except (ValueError, TypeError) as exc:
            return web.json_response({"error": str(exc)}, status=400)
        state.failures_left = state.behavior.times
        return web.json_response({"ok": True})

    async def health(request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    async def provider(request: web.Request) -> web.StreamResponse:
        return await _serve_provider(state, request)

    app.router.add_get("/_mock/requests", requests_list)
    app.router.add_delete("/_mock/requests", requests_clear)
    app.router.add_post("/_mock/behavior", set_behavior)
    app.router.add_get("/_mock/health", health)
    app.router.add_route("*", "/{tail:.*}", provider)
    return app


async def _serve_provider(state: MockState, request: web.Request) -> web.StreamResponse:
    raw = await request.read()
    try:
        body = orjson.loads(raw) if raw else None
    except orjson.JSONDecodeError:
        body = None
    for dialect in state.dialects:
        params = dialect.match(request.method, request.path)
        if params is not None:
            break
    else:
        return web.json_response(
            {"error": {"message": f"mock: no provider serves {request.method} {request.path}"}}, status=404
        )
    state.received.append(
        {
            "dialect": dialect.name,
            "method": request.method,
            "path": request.path,
            "query": dict(request.query),
            "headers": {k.lower(): v for k, v in request.headers.items()},
            "body": body if body is not None else raw.decode("utf-8", "replace"),
        }
    )
    del state.received[:-1000]
    behavior = state.behavior.with_headers(request.headers)

    if behavior.first_byte_delay_ms:
        await asyncio.sleep(behavior.first_byte_delay_ms / 1000)
    if behavior.reset == "before":
        _drop(request)
        return web.Response(status=500)

    status = behavior.status
    if status and state.failures_left is not None and request.headers.get("x-mock-status") is None:
        if state.failures_left <= 0:
            status = None
        else:
            state.failures_left -= 1
    if status:
        headers = {}
        if behavior.retry_after is not None:
            headers["retry-after"] = (
                str(int(behavior.retry_after))
                if float(behavior.retry_after).is_integer()
                else str(behavior.retry_after)
            )
        if request.headers.get("x-mock-empty-body"):
            return web.Response(status=status, headers=headers)
        message = behavior.content if behavior.content is not None else f"mock failure {status}"
        return _json(dialect.render_error(status, message), status, headers)

    cred = dialect.credential(request.headers, request.query)
    if behavior.echo_key:
        return _echo_key(dialect, cred or "", behavior.echo_key)
    if behavior.auth != "none" and (not cred or (behavior.auth != "any" and cred != behavior.auth)):
        return _json(dialect.render_error(401, "mock: missing or invalid API key"), 401)
    if not isinstance(body, dict):
        return _json(dialect.render_error(400, "mock: the body must be a JSON object"), 400)
    try:
        mreq = dialect.parse(body, params, request.query)
    except BadRequest as exc:
        return _json(dialect.render_error(400, str(exc)), 400)

    result = engine.plan(mreq, behavior.content)
    if not mreq.stream:
        return _json(dialect.render_json(result, mreq), 200)

    events = dialect.render_stream(result, mreq)
    writes = cut(b"".join(events), behavior, events)
    resp = web.StreamResponse(
        status=200, headers={"content-type": "text/event-stream", "cache-control": "no-cache"}
    )
    await resp.prepare(request)
    for i, piece in enumerate(writes):
        if behavior.reset == "mid" and i >= max(1, len(writes) // 2):
            _drop(request)
            return resp
        await resp.write(piece)
        if behavior.chunk_delay_ms:
            await asyncio.sleep(behavior.chunk_delay_ms / 1000)
    await resp.write_eof()
    return resp


def _json(doc: dict[str, Any], status: int, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        body=orjson.dumps(doc), status=status, headers=headers, content_type="application/json"
    )


def _echo_key(dialect: Dialect, cred: str, how: str) -> web.Response:
    """A 401 quoting the key, as real providers do when they reject one."""
    if how == "masked":  # OpenAI's style: the prefix, stars, the last four
        shown = cred[:8] + "*" * max(4, len(cred) - 12) + cred[-4:]
    elif how == "part":
        third = len(cred) // 3
        shown = cred[third : third + 12]
    else:
        shown = cred
    headers = {
        "www-authenticate": f'Bearer realm="mock", error="invalid_token", '
        f'error_description="the key {shown} is not valid"',
        "x-mock-key-echo": shown,
    }
    return _json(
        dialect.render_error(
            401, f"Incorrect API key provided: {shown}. You can find your API key in your account settings."
        ),
        401,
        headers,
    )


def _drop(request: web.Request) -> None:
    transport = request.transport
    if transport is not None:
        transport.abort()


def run(host: str, port: int, providers: list[str] | None = None) -> None:
    state = MockState(dialects=discover(providers))
    web.run_app(build_app(state), host=host, port=port, print=None, access_log=None)
