"""ProcessingRequest builders and reply readers for driving the ext_proc stream state
machines (RouteStream, UpstreamStream) directly: no Envoy, no gRPC. Each message is what
Envoy would send with the shipped bootstraps' processing modes and request attributes."""

from __future__ import annotations

from typing import Any

import orjson
from envoy.config.core.v3 import base_pb2
from envoy.service.ext_proc.v3 import external_processor_pb2 as pb
from google.protobuf import json_format, struct_pb2, text_format

from extproc.runtime.bootstrap import build_config
from extproc.runtime.gateway import GatewayRuntime
from tests.bootstraps import add_route, translate_at_route
from tests.harness import load_bootstrap

OPENAI_KEY = "sk-mock-gateway-key"  # mock.yaml's `mock-openai` backend
ANTHROPIC_KEY = "sk-ant-unit-test-secret-0123456789"
ANTHROPIC = {
    "name": "ant",
    "provider": "anthropic",
    "model": "claude-3-5-haiku-latest",
    "auth": {"secretRef": {"inline": ANTHROPIC_KEY}},
}
CHAT_PATH = "/v1/chat/completions"
ANTHROPIC_PATH = "/anthropic/v1/chat/completions"
CANONICAL = {
    "model": "gpt-4o-mini",
    "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
}


def gateway(direct: bool = False) -> GatewayRuntime:
    """mock.yaml (route `chat` -> cluster `llm`: backend `mock-openai`) plus route and
    cluster `anthropic` (backend `ant`). `direct`: one-endpoint clusters lose their
    upstream filter and the route-level filter translates for them."""
    doc = load_bootstrap("mock.yaml")
    add_route(doc, "anthropic", ANTHROPIC_PATH, [ANTHROPIC])
    if direct:
        translate_at_route(doc)
    return build_config(doc)


def header_map(headers: dict[str, str]) -> base_pb2.HeaderMap:
    return base_pb2.HeaderMap(
        headers=[base_pb2.HeaderValue(key=k, raw_value=v.encode()) for k, v in headers.items()]
    )


def client_headers(path: str = CHAT_PATH, **extra: str) -> dict[str, str]:
    hdrs = {
        ":method": "POST",
        ":path": path,
        ":authority": "gw",
        ":scheme": "http",
        "content-type": "application/json",
        "x-request-id": "req-1",
        "authorization": "Bearer client-key",
    }
    hdrs.update({k.replace("_", "-"): v for k, v in extra.items()})
    return hdrs


def _attrs(req: pb.ProcessingRequest, fields: dict[str, str]) -> None:
    if fields:
        req.attributes["envoy.filters.http.ext_proc"].CopyFrom(
            struct_pb2.Struct(fields={k: struct_pb2.Value(string_value=v) for k, v in fields.items()})
        )


def host_metadata(aigw: dict[str, Any]) -> str:
    """The `xds.upstream_host_metadata` attribute: envoy.config.core.v3.Metadata as text."""
    md = base_pb2.Metadata()
    json_format.ParseDict(aigw, md.filter_metadata["aigw"])
    return text_format.MessageToString(md)


def request_headers(
    headers: dict[str, str], end_of_stream: bool = False, **attributes: str
) -> pb.ProcessingRequest:
    """`attributes`: route_name=, cluster_name=, upstream_host_metadata= (xds.*)."""
    req = pb.ProcessingRequest(
        request_headers=pb.HttpHeaders(headers=header_map(headers), end_of_stream=end_of_stream)
    )
    _attrs(req, {f"xds.{k}": v for k, v in attributes.items()})
    return req


def request_body(body: bytes | dict) -> pb.ProcessingRequest:
    raw = orjson.dumps(body) if isinstance(body, dict) else body
    return pb.ProcessingRequest(request_body=pb.HttpBody(body=raw, end_of_stream=True))


def response_headers(headers: dict[str, str], end_of_stream: bool = False) -> pb.ProcessingRequest:
    return pb.ProcessingRequest(
        response_headers=pb.HttpHeaders(headers=header_map(headers), end_of_stream=end_of_stream)
    )


def response_body(body: bytes | dict, end_of_stream: bool = True) -> pb.ProcessingRequest:
    raw = orjson.dumps(body) if isinstance(body, dict) else body
    return pb.ProcessingRequest(response_body=pb.HttpBody(body=raw, end_of_stream=end_of_stream))


def anthropic_message(
    text: str, *, id: str = "msg_1", stop_reason: str = "end_turn", tokens: tuple[int, int] = (12, 3)
) -> dict[str, Any]:
    """An Anthropic Messages answer: `text`, and (input, output) `tokens` used."""
    return {
        "id": id,
        "type": "message",
        "role": "assistant",
        "model": "claude-3-5-haiku-latest",
        "content": [{"type": "text", "text": text}],
        "stop_reason": stop_reason,
        "usage": {"input_tokens": tokens[0], "output_tokens": tokens[1]},
    }


# An Anthropic stream: "Hello world", input 9 and output 4 tokens.
ANTHROPIC_SSE = b"".join(
    b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"
    for kind, data in [
        (
            "message_start",
            {
                "type": "message_start",
                "message": {
                    "id": "msg_s",
                    "type": "message",
                    "role": "assistant",
                    "model": "claude-3-5-haiku-latest",
                    "content": [],
                    "usage": {"input_tokens": 9, "output_tokens": 1},
                },
            },
        ),
        (
            "content_block_start",
            {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        ),
        (
            "content_block_delta",
            {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hello"}},
        ),
        (
            "content_block_delta",
            {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": " world"}},
        ),
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        (
            "message_delta",
            {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 4}},
        ),
        ("message_stop", {"type": "message_stop"}),
    ]
)


def sse_chunks(raw: bytes) -> list[dict]:
    """The chunks of an OpenAI stream, which must end with `data: [DONE]`."""
    events = [e for e in raw.split(b"\n\n") if e]
    assert events[-1] == b"data: [DONE]"
    return [orjson.loads(e.removeprefix(b"data: ")) for e in events[:-1]]


# ---- reading replies ------------------------------------------------------------------
def common(resp: pb.ProcessingResponse) -> pb.CommonResponse:
    return getattr(resp, resp.WhichOneof("response")).response


def set_headers(resp: pb.ProcessingResponse) -> dict[str, str]:
    return {h.header.key: h.header.raw_value.decode() for h in common(resp).header_mutation.set_headers}


def removed(resp: pb.ProcessingResponse) -> list[str]:
    return list(common(resp).header_mutation.remove_headers)


def new_body(resp: pb.ProcessingResponse) -> dict:
    return orjson.loads(common(resp).body_mutation.body)


def immediate(resp: pb.ProcessingResponse) -> tuple[int, dict, dict[str, str]]:
    """(status, JSON body, headers) of an immediate_response; fails on any other reply."""
    assert resp.WhichOneof("response") == "immediate_response", resp
    ir = resp.immediate_response
    headers = {h.header.key: h.header.raw_value.decode() for h in ir.headers.set_headers}
    return ir.status.code, orjson.loads(ir.body), headers
