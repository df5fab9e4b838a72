"""Builders for ext_proc ProcessingResponse messages, so handlers read as intent."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from envoy.config.core.v3 import base_pb2
from envoy.extensions.filters.http.ext_proc.v3 import processing_mode_pb2
from envoy.service.ext_proc.v3 import external_processor_pb2 as pb

from . import wire
from .errors import GatewayError

_OVERWRITE = base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD
BUFFERED = processing_mode_pb2.ProcessingMode.BUFFERED
STREAMED = processing_mode_pb2.ProcessingMode.STREAMED


def _fill(
    resp: pb.CommonResponse,
    set_headers: dict[str, str] | None = None,
    remove: Iterable[str] = (),
    body: bytes | None = None,
    clear_route_cache: bool = False,
) -> None:
    """Fill `resp` in place: building sub-messages and copying them into their parent
    costs about twice as much in upb (every reply goes through here). An empty `resp` is
    still marked present: a reply whose oneof is unset is a protocol error to Envoy."""
    resp.SetInParent()
    _mutate(resp.header_mutation, set_headers, remove)
    if body is not None:
        resp.body_mutation.body = body
    if clear_route_cache:
        resp.clear_route_cache = True


def set_headers(mutation: pb.HeaderMutation, headers: dict[str, str]) -> None:
    """Add header sets to a reply's mutation (overwriting, and after any earlier set of
    the same header, which Envoy then overrides)."""
    _mutate(mutation, headers)


def _mutate(
    mutation: pb.HeaderMutation, set_headers: dict[str, str] | None, remove: Iterable[str] = ()
) -> None:
    """Headers set (overwriting) and removed, written into `mutation` in place."""
    if set_headers:
        add = mutation.set_headers.add
        for k, v in set_headers.items():
            add(header=base_pb2.HeaderValue(key=k, raw_value=v.encode()), append_action=_OVERWRITE)
    if remove:
        mutation.remove_headers.extend(remove)


def request_headers(**kw) -> pb.ProcessingResponse:
    resp = pb.ProcessingResponse()
    _fill(resp.request_headers.response, **kw)
    return resp


def request_body(**kw) -> pb.ProcessingResponse:
    resp = pb.ProcessingResponse()
    _fill(resp.request_body.response, **kw)
    return resp


def response_headers(*, body_mode: int | None = None, **kw) -> pb.ProcessingResponse:
    """Continue the response headers; `body_mode` overrides the response body mode for this
    response only (the filter needs `allow_mode_override: true`)."""
    resp = pb.ProcessingResponse()
    _fill(resp.response_headers.response, **kw)
    if body_mode is not None:
        resp.mode_override.response_body_mode = body_mode
    return resp


def replace_response(set_headers: dict[str, str], body: bytes) -> pb.ProcessingResponse:
    """Answer a headers-only response (end_of_stream on the headers) with a body."""
    resp = pb.ProcessingResponse()
    common = resp.response_headers.response
    _fill(common, set_headers=set_headers, body=body)
    common.status = pb.CommonResponse.CONTINUE_AND_REPLACE
    return resp


def response_body(**kw) -> pb.ProcessingResponse:
    resp = pb.ProcessingResponse()
    _fill(resp.response_body.response, **kw)
    return resp


def streamed_body(body: bytes) -> pb.ProcessingResponse:
    """A STREAMED response-body chunk replaced by `body` (which may be empty)."""
    resp = pb.ProcessingResponse()
    resp.response_body.response.body_mutation.body = body
    return resp


def immediate(
    status: int, body: bytes, headers: dict[str, str] | None = None, details: str = wire.REPLY_DETAILS
) -> pb.ProcessingResponse:
    """A local reply. `details` starting with `aigw` lets the bootstrap's local_reply_config
    tell the gateway's own replies (already JSON) from Envoy's."""
    all_headers = {"content-type": "application/json"}
    if headers:
        all_headers.update(headers)
    resp = pb.ProcessingResponse()
    reply = resp.immediate_response
    reply.status.code = status
    reply.body = body
    reply.details = details
    _mutate(reply.headers, all_headers)
    return resp


def error_reply(err: GatewayError) -> pb.ProcessingResponse:
    return immediate(
        err.status, err.body(), err.headers or None, details=f"{wire.REPLY_DETAILS}_{err.code or 'error'}"
    )


def with_metadata(
    resp: pb.ProcessingResponse, metadata: dict[str, dict[str, Any]] | None
) -> pb.ProcessingResponse:
    """Attach dynamic metadata ({namespace: {...}}) for Envoy's later filters and access
    log. The filter's metadata_options.receiving_namespaces must allow the namespace."""
    if metadata is not None:
        resp.dynamic_metadata.update(metadata)
    return resp


def headers_of(header_map) -> dict[str, str]:
    """Envoy's HeaderMap as a dict. Values arrive in `raw_value` (bytes)."""
    return {h.key: h.raw_value.decode("utf-8", "replace") or h.value for h in header_map.headers}
