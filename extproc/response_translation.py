"""One attempt's response turned canonical for the client: the provider's error in the
OpenAI error shape, its answer (JSON or SSE) translated from the provider's dialect, and
the gateway's own secrets out of the headers the provider sent.

The route-level filter runs it for the response the client gets, whichever of the two
filter positions translated the request: with one filter per request (a one-host
backend) it knows the backend already; with an upstream filter per attempt, that filter
reports the backend that answered in a response header, and only the last attempt's
response ever reaches the client. Reading the answer once, at the route level, keeps the
answer's bytes (every streamed chunk, too) off the upstream filter's gRPC stream.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
from envoy.config.core.v3 import base_pb2
from envoy.service.ext_proc.v3 import external_processor_pb2 as pb

from . import messages as msg
from . import redaction
from .backends import Backend
from .errors import GatewayError, empty_response, unwritable_response
from .providers.base import ProviderError, error_dict, openai_style_error
from .response_limits import declared_too_large, json_body_mode, read_too_large
from .stream_transcoder import StreamTranscoder
from .wire import PREFIX

log = logging.getLogger("aigw.response")


class ResponseTranslation:
    """The response of one attempt to `backend`, for a request for `model`."""

    __slots__ = (
        "backend",
        "done",
        "failure",
        "max_bytes",
        "model",
        "request_id",
        "status",
        "transcoder",
        "translate_json",
    )

    def __init__(self, backend: Backend, model: str, request_id: str, max_bytes: int) -> None:
        self.backend = backend
        self.model = model
        self.request_id = request_id
        # The largest JSON body that can be read whole (response_limits.py).
        self.max_bytes = max_bytes
        self.status = 0
        self.transcoder: StreamTranscoder | None = None
        self.translate_json = False
        self.done = False
        # The error code, when an answer (not a provider error) could not be translated
        # and the client gets an error instead.
        self.failure: str | None = None

    def headers(self, req: pb.ProcessingRequest, hdrs: dict[str, str]) -> pb.ProcessingResponse:
        """The reply to the response headers: the body mode this translation needs (a
        `mode_override` when it reads the body), or a replaced response."""
        resp = self._headers(req, hdrs)
        # Providers may quote the credential in a header (`www-authenticate`): the
        # gateway's own secrets never reach a client (redaction.py). (A local reply made
        # here carries none of the provider's headers.)
        if resp.WhichOneof("response") == "response_headers":
            _redact_headers(req.response_headers.headers, resp.response_headers.response.header_mutation)
        return resp

    def _headers(self, req: pb.ProcessingRequest, hdrs: dict[str, str]) -> pb.ProcessingResponse:
        provider = self.backend.provider
        self.status = int(hdrs.get(":status", "0") or 0)
        if self.status < 200 or 300 <= self.status < 400:
            # A redirect (or an informational status) is no chat completion, and passed on
            # it would send the client to wherever the provider pointed, its body unread
            # by any guard.
            self.failure = "upstream_invalid_response"
            return self._reject(
                GatewayError(
                    502,
                    f"{provider.name} answered with status {self.status}, not a chat completion",
                    code=self.failure,
                )
            )
        if req.response_headers.end_of_stream:
            self.done = True
            if self.status >= 400:
                # An error without a body still reaches the client as an OpenAI-style error.
                status, doc = self._translate_whole(b"")
                out = orjson.dumps(redaction.current().redact_value(doc)[0])
                headers = {"content-type": "application/json", "content-length": str(len(out))}
                if status != self.status:  # e.g. Anthropic's 529 is an OpenAI-style 503
                    headers[":status"] = str(status)
                    self.status = status
                return msg.replace_response(headers, out)
            # A success without a body (a 200, a 204) holds no chat completion: passed on,
            # the client would get an empty answer where it expects one.
            empty = empty_response(provider.name)
            self.failure = empty.code
            return self._reject(empty)
        streamed = hdrs.get("content-type", "").startswith("text/event-stream")
        if self.status < 400 and provider.canonical_responses:
            self.done = True
            return msg.response_headers()
        if self.status < 400 and streamed:
            self.transcoder = StreamTranscoder(provider.stream_translator(self.model))
            return msg.response_headers(remove=["content-length"], body_mode=msg.STREAMED)
        # Read whole: errors to normalise them to the OpenAI error shape, answers to
        # translate them. One that cannot fit is refused unread (response_limits.py).
        too_big = declared_too_large(hdrs, self.max_bytes)
        if too_big is not None:
            return self._reject(too_big)
        self.translate_json = True
        return msg.response_headers(body_mode=json_body_mode(hdrs))

    def body(self, req: pb.ProcessingRequest) -> pb.ProcessingResponse:
        body = req.response_body
        self.done = body.end_of_stream
        if self.transcoder is not None:
            return msg.streamed_body(self.transcoder.feed(body.body, body.end_of_stream))
        if not self.translate_json:
            return msg.response_body()
        too_big = read_too_large(body.body, body.end_of_stream, self.max_bytes)
        if too_big is not None:
            # Larger than Envoy's buffer (response_limits.py): the client gets a clear
            # error, and the rest of the answer is never read.
            return self._reject(too_big)
        status, doc = self._translate_whole(body.body)
        if self.status >= 400:
            # Providers quote the credential they were sent when they reject it.
            doc = redaction.current().redact_value(doc)[0]
        try:
            out = orjson.dumps(doc)
        except TypeError:  # nested too deep to write (orjson's JSONEncodeError is one)
            self.failure = "upstream_invalid_response"
            return self._reject(unwritable_response())
        set_headers = {"content-length": str(len(out)), "content-type": "application/json"}
        if status != self.status:
            set_headers[":status"] = str(status)
            self.status = status
        return msg.response_body(set_headers=set_headers, body=out)

    def _translate_whole(self, body: bytes) -> tuple[int, dict[str, Any]]:
        backend = self.backend
        provider = backend.provider
        if self.status >= 400:
            try:
                return provider.translate_error(self.status, body)
            except Exception:  # an odd error body must not hide the provider's status
                log.warning(
                    "untranslatable provider error",
                    extra={"fields": {"request_id": self.request_id, "backend": backend.name}},
                )
                return self.status, openai_style_error(self.status, body, provider.name)
        try:
            return self.status, provider.translate_response(orjson.loads(body), self.model)
        except (
            orjson.JSONDecodeError,
            ProviderError,
            ValueError,
            KeyError,
            TypeError,
            AttributeError,
        ) as exc:
            log.warning(
                "untranslatable provider response",
                extra={
                    "fields": {
                        "request_id": self.request_id,
                        "backend": backend.name,
                        "error": redaction.current().redact(str(exc)),
                    }
                },
            )
            self.failure = "upstream_invalid_response"
            return 502, error_dict(
                502,
                f"{provider.name} returned a response the gateway could not translate",
                code=self.failure,
            )

    def _reject(self, err: GatewayError) -> pb.ProcessingResponse:
        self.status = err.status
        self.done = True
        return msg.error_reply(err)


def _redact_headers(header_map: Any, mutation: pb.HeaderMutation) -> None:
    """Add to `mutation` the response headers that quote a secret, redacted. Every value
    is read (a header may repeat); a header with a secret in any value is rewritten whole."""
    # Internal headers are removed, not redacted: a set would bring one back to the client.
    pairs = [
        (h.key, h.raw_value.decode("utf-8", "replace") if h.raw_value else h.value)
        for h in header_map.headers
        if not h.key.startswith((":", PREFIX))
    ]
    for name, values in redaction.current().redact_headers(pairs).items():
        for i, value in enumerate(values):
            mutation.set_headers.append(
                base_pb2.HeaderValueOption(
                    header=base_pb2.HeaderValue(key=name, raw_value=value.encode()),
                    append_action=base_pb2.HeaderValueOption.APPEND_IF_EXISTS_OR_ADD
                    if i
                    else base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD,
                )
            )
