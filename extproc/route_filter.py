"""The route-level filter: runs once per request, before Envoy picks a backend.

It owns the client-facing contract: the request is a well-formed OpenAI chat-completions
request (or the client gets a clear 4xx), route policies apply to the canonical request
and response, token usage is accounted, and internal headers never cross the gateway's
edge in either direction.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import orjson
from envoy.service.ext_proc.v3 import external_processor_pb2 as pb

from . import messages as msg
from . import redaction
from . import wire as H
from .accounting import Accounting
from .canonical import parse_request, wants_stream
from .errors import GatewayError, bad_request
from .guarded_stream import response_stream
from .inference.picker import EndpointPicker
from .logs import access_log
from .policies.field_defaults import apply_all
from .response_limits import declared_too_large, json_body_mode, read_too_large
from .response_stream import ResponseStream
from .response_translation import ResponseTranslation
from .route_request import ask_for_stream_usage, check_cooling, check_headers, pick_endpoints, too_large
from .runtime.gateway import GatewayRuntime, RouteRuntime
from .settings import ProcessorSettings
from .upstream_filter import UpstreamStream

log = logging.getLogger("aigw.route")


class RouteStream:
    """State for one request's route-level gRPC stream."""

    __slots__ = (
        "acct",
        "attempt",
        "attempt_body",
        "attempts",
        "canonical",
        "done",
        "gw",
        "headers",
        "limit",
        "picked",
        "read_json",
        "rejected",
        "request_id",
        "response",
        "route",
        "settings",
        "strip_usage",
        "translation",
    )

    def __init__(self, gw: GatewayRuntime, settings: ProcessorSettings) -> None:
        self.gw = gw
        self.settings = settings
        self.route: RouteRuntime = gw.default_route
        self.request_id = ""
        self.attempts = 0
        self.limit = settings.max_request_bytes
        self.rejected: GatewayError | None = None
        # Set once the last message this stream will get has been answered; a stream that
        # closes before that was cut short (client gone, upstream reset).
        self.done = False
        self.headers: dict[str, str] = {}
        self.acct = Accounting("")
        # The gateway asked the provider for stream usage the client did not ask for.
        self.strip_usage = False
        self.response: ResponseStream | None = None
        self.read_json = False
        # The inference pool server this request was sent to first (for in-flight counts).
        self.picked: tuple[EndpointPicker, str] | None = None
        # Kept only when a cut-short stream may need a prompt-token estimate.
        self.canonical: dict[str, Any] | None = None
        # The attempt, when the route sends to a one-endpoint cluster without an upstream
        # filter: this stream then translates for that backend too (one gRPC stream per
        # request instead of two), reusing the upstream filter's code for it.
        self.attempt: UpstreamStream | None = None
        # The answer's translation from the backend's dialect, and whether it reads the
        # response body (to translate it).
        self.translation: ResponseTranslation | None = None
        self.attempt_body = False

    # ---- request --------------------------------------------------------------------
    async def request_headers(self, req: pb.ProcessingRequest) -> pb.ProcessingResponse:
        attrs = req.attributes.get("envoy.filters.http.ext_proc")
        direct = None
        if attrs is not None:
            name = attrs.fields.get(H.ROUTE_NAME)
            if name is not None:
                self.route = self.gw.route(name.string_value)
            cluster = attrs.fields.get(H.CLUSTER_NAME)
            if cluster is not None:
                direct = self.gw.direct_backend(cluster.string_value)
        self.acct.route = self.route.name
        policy = self.route.policy
        if policy.max_request_bytes:
            self.limit = policy.max_request_bytes
        hdrs = msg.headers_of(req.request_headers.headers)
        self.headers = hdrs
        self.request_id = hdrs.get(H.REQUEST_ID, "")
        try:
            check_headers(hdrs, req.request_headers.end_of_stream, self.limit)
        except GatewayError as err:
            return self._reject(err)
        # Internal headers, and the endpoint picker's: only the gateway names the servers.
        spoofed = [k for k in hdrs if k.startswith(H.PREFIX) or k == H.DESTINATION_ENDPOINT]
        resp = msg.request_headers(remove=spoofed)
        if direct is not None:
            self.attempt = UpstreamStream(self.gw, self.settings, direct=direct)
            self.acct.backend, self.acct.provider = direct.name, direct.provider.name
            self.attempts = 1
            own = await self.attempt.request_headers(req, hdrs)
            if own.HasField("immediate_response"):
                self.done = True
                return own
            resp.request_headers.response.header_mutation.MergeFrom(
                own.request_headers.response.header_mutation
            )
        return resp

    async def request_body(self, req: pb.ProcessingRequest) -> pb.ProcessingResponse:
        body = req.request_body.body
        if len(body) > self.limit:
            return self._reject(too_large(len(body), self.limit))
        policy = self.route.policy
        guards = self.route.guards
        try:
            canonical = parse_request(body)
            # Guards see what the client sent, not the route's own additions.
            changed = False
            if guards is not None and guards.request is not None:
                changed = await guards.request.apply(canonical, self.headers)
            routing = policy.content_routing.compute(canonical) if policy.content_routing else None
            if policy.prompt_enrichment is not None:
                policy.prompt_enrichment.apply(canonical)
                changed = True
            if policy.field_defaults:
                changed |= apply_all(policy.field_defaults, canonical)
            model = canonical.get("model")
            if not model and not self.route.model_always_set:
                raise bad_request(
                    "'model' is required: this route has no backend model to fall back on",
                    code="model_required",
                    param="model",
                )
            check_cooling(self.gw, self.route)
            destination = None
            inference = self.route.inference
            if inference is not None:
                destination, first, model_changed = pick_endpoints(inference, canonical)
                self.picked = (inference.picker, first)
                changed |= model_changed
        except GatewayError as err:
            return self._reject(err)
        self.acct.request_model = model or ""
        self.acct.stream = wants_stream(canonical)
        if self.acct.stream:
            self.strip_usage = ask_for_stream_usage(canonical)
            changed |= self.strip_usage
            self.canonical = canonical
        if self.settings.debug_bodies:
            log.debug(
                "request body",
                extra={"fields": {"request_id": self.request_id, "body": body.decode("utf-8", "replace")}},
            )
        metadata = None
        if policy.prompt_token_estimate:
            from .tokens import estimate_prompt_tokens

            metadata = {H.NAMESPACE: {"prompt_tokens_estimate": estimate_prompt_tokens(canonical)}}
        if self.attempt is not None:
            # No routing headers here: content routing and one-endpoint clusters are never
            # mixed (runtime/bootstrap.py), so this is the backend the request goes to.
            out = self.attempt.translate(canonical)
            if out.HasField("immediate_response"):
                return self._attempt_replied(out)
            return msg.with_metadata(out, metadata)
        set_headers: dict[str, str] = dict(routing or {})
        if destination is not None:
            set_headers[H.DESTINATION_ENDPOINT] = destination
        new_body = None
        if changed:
            new_body = orjson.dumps(canonical)
            set_headers["content-length"] = str(len(new_body))
        if not set_headers and metadata is None:
            return msg.request_body()
        # Clearing the route cache makes Envoy match routes again, now with these headers.
        return msg.with_metadata(
            msg.request_body(set_headers=set_headers, body=new_body, clear_route_cache=routing is not None),
            metadata,
        )

    # ---- response -------------------------------------------------------------------
    async def response_headers(self, req: pb.ProcessingRequest) -> pb.ProcessingResponse:
        hdrs = msg.headers_of(req.response_headers.headers)
        if self.attempt is None:
            self._note_attempt(hdrs)
        try:
            translation = self._translation_for(hdrs)
        except GatewayError as err:
            return self._reject(err)
        if translation is None:
            return self._response_headers(req, hdrs)
        return self._translated_response_headers(req, hdrs, translation)

    def _translation_for(self, hdrs: dict[str, str]) -> ResponseTranslation | None:
        """The translation of the answer the client gets: for the backend this stream
        sends to itself, or for the one the upstream filter reports as the last attempt's.
        None for a reply made by Envoy or by a filter, which is OpenAI-shaped already."""
        if self.attempt is not None:
            self.attempt.answered(hdrs)  # the status, and a cooldown on a 429
            backend, model = self.attempt.backend, self.attempt.model
            assert backend is not None  # a one-endpoint cluster's backend
        else:
            name = hdrs.get(H.BACKEND)
            if name is None:
                return None
            found = self.gw.backend_named(name)
            # The provider must be the backend's own, as for host metadata: a cluster
            # without an upstream filter could otherwise pick the dialect of its answer.
            if found is None or hdrs.get(H.PROVIDER) != found.provider.name:
                # Workers started from different bootstraps (a rolling change): never pass
                # an answer on untranslated.
                raise GatewayError(
                    500,
                    "the gateway has no configuration for the backend that answered",
                    code="backend_not_configured",
                )
            backend, model = found, found.settings.model or self.acct.request_model
        self.translation = ResponseTranslation(backend, model, self.request_id, self.gw.max_response_bytes)
        return self.translation

    def _translated_response_headers(
        self, req: pb.ProcessingRequest, hdrs: dict[str, str], translation: ResponseTranslation
    ) -> pb.ProcessingResponse:
        """The translation's view first (error and stream translation, what it redacts),
        then this filter's, in one reply."""
        own = translation.headers(req, hdrs)
        if own.HasField("immediate_response"):  # e.g. an answer too large to translate
            return self._attempt_replied(own)
        mine = self._response_headers(req, hdrs)
        if mine.HasField("immediate_response"):
            return mine
        if own.response_headers.response.status == pb.CommonResponse.CONTINUE_AND_REPLACE:
            self.done = True  # a bodiless provider error, answered with a translated body
            self.acct.status = translation.status
            # Internal headers never cross the edge, whoever set them.
            own.response_headers.response.header_mutation.remove_headers.extend(
                k for k in hdrs if k.startswith(H.PREFIX)
            )
            return own
        self.attempt_body = own.HasField("mode_override")
        if self.attempt_body and self.acct.status >= 400:
            self.done = False  # the error body is translated before the client gets it
        mine.response_headers.response.header_mutation.MergeFrom(
            own.response_headers.response.header_mutation
        )
        if self.attempt_body and not mine.HasField("mode_override"):
            mine.mode_override.CopyFrom(own.mode_override)
        return mine

    def _response_headers(self, req: pb.ProcessingRequest, hdrs: dict[str, str]) -> pb.ProcessingResponse:
        acct = self.acct
        acct.status = int(hdrs.get(":status", "0") or 0)
        internal = [k for k in hdrs if k.startswith(H.PREFIX)]
        if 200 <= acct.status < 300 and not req.response_headers.end_of_stream:
            guards = self.route.guards.response if self.route.guards is not None else None
            if hdrs.get("content-type", "").startswith("text/event-stream"):
                self.response = response_stream(self.route.name, guards, self.strip_usage, self.headers)
                return msg.response_headers(remove=[*internal, "content-length"], body_mode=msg.STREAMED)
            # JSON: read for usage (and the response guards); see response_limits.py.
            too_big = declared_too_large(hdrs, self.gw.max_response_bytes)
            if too_big is not None:
                return self._reject(too_big)
            self.read_json = True
            return msg.response_headers(remove=internal, body_mode=json_body_mode(hdrs))
        self.done = True
        return msg.response_headers(remove=internal)

    async def response_body(self, req: pb.ProcessingRequest) -> pb.ProcessingResponse:
        body = req.response_body
        self.done = body.end_of_stream
        data = body.body
        translated = None
        if self.attempt_body:
            # The provider's bytes are turned canonical first.
            translation = self.translation
            assert translation is not None  # attempt_body is only set with one
            translated = translation.body(req)
            if translated.HasField("immediate_response"):  # e.g. too large to translate
                return self._attempt_replied(translated)
            data = translated.response_body.response.body_mutation.body
            if not (self.response is not None or self.read_json):
                # An error, translated (and redacted): nothing more to do.
                self.acct.status = translation.status
                return translated
            if translation.failure is not None:
                # An answer that could not be translated is an error for the client: no
                # guard or usage reads it, and the log says what the client got.
                self.acct.status = translation.status
                self.rejected = GatewayError(translation.status, "", code=translation.failure)
                return translated
        if self.response is not None:
            out = await self.response.feed(data, body.end_of_stream)
            if self.response.terminated and self.rejected is None:
                self.rejected = GatewayError(200, "stream ended by a guard", code="guard_terminated")
            resp = msg.streamed_body(out)
            if body.end_of_stream:
                self._stream_done()
                return msg.with_metadata(resp, self.acct.dynamic_metadata())
            return resp
        if not self.read_json:
            return msg.response_body()
        mine = await self._json_body(data, body.end_of_stream)
        if translated is None or mine.HasField("immediate_response"):
            return mine
        # The attempt's header changes first (content type, a translated status), then this
        # filter's (a later set of the same header wins).
        headers = translated.response_body.response.header_mutation
        headers.MergeFrom(mine.response_body.response.header_mutation)
        mine.response_body.response.header_mutation.CopyFrom(headers)
        if not mine.response_body.response.HasField("body_mutation"):
            # Nothing of this filter's changed the translated body: send that one.
            mine.response_body.response.body_mutation.CopyFrom(
                translated.response_body.response.body_mutation
            )
        return mine

    async def _json_body(self, raw: bytes, whole: bool) -> pb.ProcessingResponse:
        too_big = read_too_large(raw, whole, self.gw.max_response_bytes)
        if too_big is not None:
            # More than Envoy's buffer holds (response_limits.py): the client gets a clear
            # error, and the rest of the answer is never read.
            return self._reject(too_big)
        # The gateway's own secrets never reach a client, whatever the provider echoed.
        clean = await redaction.redact_body(raw)
        redacted, raw = clean is not raw, clean
        try:
            completion = orjson.loads(raw)
        except orjson.JSONDecodeError:
            completion = None
        if not isinstance(completion, dict):
            if self.route.guards is not None and self.route.guards.response is not None:
                # Nothing the guards can read, so nothing may pass unguarded.
                return self._replace_response(
                    GatewayError(
                        502,
                        "the provider's response could not be checked by the gateway",
                        code="unguardable_response",
                    )
                )
            if redacted:
                return msg.response_body(set_headers={"content-length": str(len(raw))}, body=raw)
            return msg.response_body()
        self.acct.take_usage(completion.get("usage"))
        self.acct.response_model = str(completion.get("model") or "")
        changed = False
        guards = self.route.guards.response if self.route.guards is not None else None
        if guards is not None:
            try:
                changed = await guards.apply(completion, self.headers)
            except GatewayError as err:
                return self._replace_response(err)
        if not changed and not redacted:
            return msg.with_metadata(msg.response_body(), self.acct.dynamic_metadata())
        out = orjson.dumps(completion) if changed else raw
        return msg.with_metadata(
            msg.response_body(set_headers={"content-length": str(len(out))}, body=out),
            self.acct.dynamic_metadata(),
        )

    def _stream_done(self) -> None:
        if self.response is not None:
            self.acct.take_stream(self.response, self.canonical)

    def _note_attempt(self, hdrs: dict[str, str]) -> None:
        """Which backend answered, and on which attempt, as the upstream filter reported."""
        acct = self.acct
        acct.backend = hdrs.get(H.BACKEND, "")
        acct.provider = hdrs.get(H.PROVIDER, "")
        attempt = hdrs.get(H.ATTEMPT, "")
        self.attempts = int(attempt) if attempt.isdigit() else (1 if acct.backend else 0)

    def _replace_response(self, err: GatewayError) -> pb.ProcessingResponse:
        """Withhold the provider's answer: the client gets the error instead."""
        self.rejected = err
        self.acct.status = err.status
        body = err.body()
        return msg.response_body(
            set_headers={
                ":status": str(err.status),
                "content-type": "application/json",
                "content-length": str(len(body)),
            },
            body=body,
        )

    # ---- end ------------------------------------------------------------------------
    def _attempt_replied(self, out: pb.ProcessingResponse) -> pb.ProcessingResponse:
        """The attempt this stream runs answered the client itself (an immediate reply):
        record it as this request's outcome and pass it on."""
        reply = out.immediate_response
        self.rejected = GatewayError(reply.status.code, "", code=reply.details.removeprefix("aigw_"))
        self.acct.status = reply.status.code
        self.done = True
        return out

    def _reject(self, err: GatewayError) -> pb.ProcessingResponse:
        self.rejected = err
        self.acct.status = err.status
        self.done = True
        return msg.error_reply(err)

    def close(self, outcome: str) -> None:
        if outcome == "cancelled" and self.done:
            outcome = "complete"  # Envoy closes the stream once it needs nothing more
        elif outcome == "complete" and self.response is not None and not self.done:
            # Envoy ended the stream before its end: the provider reset, or the client left.
            outcome = "cut_short"
        if self.attempt is not None:
            self.attempt.close(outcome)
        if self.picked is not None:
            picker, endpoint = self.picked
            picker.finished(endpoint)
            self.picked = None
        acct = self.acct
        if self.response is not None and not self.done:
            self._stream_done()  # cut short: still record what was seen
        acct.record()
        fields = {
            "request_id": self.request_id,
            "route": self.route.name or "-",
            "backend": acct.backend or "-",
            "provider": acct.provider or "-",
            "model": acct.request_model or "-",
            "stream": acct.stream,
            "status": acct.status,
            "attempts": self.attempts,
            "input_tokens": acct.input_tokens,
            "output_tokens": acct.output_tokens,
            "duration_ms": round((time.monotonic() - acct.started) * 1000, 2),
            "outcome": outcome,
        }
        if self.rejected is not None:
            fields["error_code"] = self.rejected.code
        access_log.info("request", extra={"fields": fields})
