"""Builders for ext_proc ProcessingResponse messages, so handlers read as intent."""

from __future__ import annotations

from collections.abc import Iterable

from envoy.config.core.v3 import base_pb2
from envoy.extensions.filters.http.ext_proc.v3 import processing_mode_pb2
from envoy.service.ext_proc.v3 import external_processor_pb2 as pb
from envoy.type.v3 import http_status_pb2

from . import wire
from .errors import GatewayError

_OVERWRITE = base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD
BUFFERED = processing_mode_pb2.ProcessingMode.BUFFERED
STREAMED = processing_mode_pb2.ProcessingMode.STREAMED


def header_mutation(
    set_headers: dict[str, str] | None = None, remove: Iterable[str] = ()
) -> pb.HeaderMutation:
    return pb.HeaderMutation(
        set_headers=[
            base_pb2.HeaderValueOption(
                header=base_pb2.HeaderValue(key=k, raw_value=v.encode()), append_action=_OVERWRITE
            )
            for k, v in (set_headers or {}).items()
        ],
        remove_headers=list(remove),
    )


def common(
    set_headers: dict[str, str] | None = None,
    remove: Iterable[str] = (),
    body: bytes | None = None,
    clear_route_cache: bool = False,
) -> pb.CommonResponse:
    resp = pb.CommonResponse(clear_route_cache=clear_route_cache)
    if set_headers or remove:
        resp.header_mutation.CopyFrom(header_mutation(set_headers, remove))
    if body is not None:
        resp.body_mutation.body = body
    return resp


def request_headers(**kw) -> pb.ProcessingResponse:
    return pb.ProcessingResponse(request_headers=pb.HeadersResponse(response=common(**kw)))


def request_body(**kw) -> pb.ProcessingResponse:
    return pb.ProcessingResponse(request_body=pb.BodyResponse(response=common(**kw)))


def response_headers(*, body_mode: int | None = None, **kw) -> pb.ProcessingResponse:
    """Continue the response headers; `body_mode` overrides the response body mode for this
    response only (the filter needs `allow_mode_override: true`)."""
    resp = pb.ProcessingResponse(response_headers=pb.HeadersResponse(response=common(**kw)))
    if body_mode is not None:
        resp.mode_override.response_body_mode = body_mode
    return resp


def replace_response(set_headers: dict[str, str], body: bytes) -> pb.ProcessingResponse:
    """Answer a headers-only response (end_of_stream on the headers) with a body."""
    resp = pb.ProcessingResponse(
        response_headers=pb.HeadersResponse(response=common(set_headers=set_headers, body=body))
    )
    resp.response_headers.response.status = pb.CommonResponse.CONTINUE_AND_REPLACE
    return resp


def response_body(**kw) -> pb.ProcessingResponse:
    return pb.ProcessingResponse(response_body=pb.BodyResponse(response=common(**kw)))


def streamed_body(body: bytes) -> pb.ProcessingResponse:
    """A STREAMED response-body chunk replaced by `body` (which may be empty)."""
    return pb.ProcessingResponse(
        response_body=pb.BodyResponse(response=pb.CommonResponse(body_mutation=pb.BodyMutation(body=body)))
    )


def immediate(
    status: int, body: bytes, headers: dict[str, str] | None = None, details: str = wire.REPLY_DETAILS
) -> pb.ProcessingResponse:
    """A local reply. `details` starting with `aigw` lets the bootstrap's local_reply_config
    tell the gateway's own replies (already JSON) from Envoy's."""
    all_headers = {"content-type": "application/json"}
    if headers:
        all_headers.update(headers)
    return pb.ProcessingResponse(
        immediate_response=pb.ImmediateResponse(
            status=http_status_pb2.HttpStatus(code=status),
            body=body,
            headers=header_mutation(all_headers),
            details=details,
        )
    )


def error_reply(err: GatewayError) -> pb.ProcessingResponse:
    return immediate(
        err.status, err.body(), err.headers or None, details=f"{wire.REPLY_DETAILS}_{err.code or 'error'}"
    )


def with_metadata(resp: pb.ProcessingResponse, metadata) -> pb.ProcessingResponse:
    """Attach dynamic metadata ({namespace: {...}}, a dict or a Struct) for Envoy's later
    filters and access log. The filter's metadata_options.receiving_namespaces must allow
    the namespace."""
    if metadata is not None:
        if isinstance(metadata, dict):
            resp.dynamic_metadata.update(metadata)
        else:
            resp.dynamic_metadata.CopyFrom(metadata)
    return resp


def headers_of(header_map) -> dict[str, str]:
    """Envoy's HeaderMap as a dict. Values arrive in `raw_value` (bytes)."""
    return {
        h.key: (h.raw_value.decode("utf-8", "replace") if h.raw_value else h.value)
        for h in header_map.headers
    }
