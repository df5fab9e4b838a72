"""The route-level filter's response half: the answer the client gets.

It translates the answer from the dialect of the backend that gave it (the one this
stream sent to itself, or the last attempt's, as the upstream filter reports it), reads
JSON answers for usage and the response guards, hands streams to the stream guard, and
keeps the gateway's internal headers and secrets from reaching the client.
`RouteStream` (route_filter.py) is this class plus the request half.
"""

from __future__ import annotations

from typing import Any

import orjson
from envoy.service.ext_proc.v3 import external_processor_pb2 as pb

from . import messages as msg
from . import offload, redaction, tokens
from . import wire as H
from .accounting import Accounting, StreamEstimate, answer_text
from .canonical import parse_request
from .errors import GatewayError, empty_response, unguardable_response, unwritable_response
from .guarded_stream import response_stream
from .guards.pipeline import ResponseGuards
from .response_limits import declared_too_large, json_body_mode, read_too_large
from .response_stream import ResponseStream
from .response_translation import ResponseTranslation
from .runtime.gateway import GatewayRuntime, RouteRuntime
from .upstream_filter import UpstreamStream


def _prompt_of_body(raw: bytes) -> tokens.Prompt:
    return tokens.prompt_of(parse_request(raw))


class RouteResponse:
    """The response phases of one request's route-level stream, and how a request ends
    early. It owns the response's state (its slots) and reads the request half's
    (annotated below, set by `RouteStream`)."""

    __slots__ = ("attempt_body", "attempts", "done", "read_json", "rejected", "response", "translation")

    # The request half's state, which this half reads.
    gw: GatewayRuntime
    route: RouteRuntime
    request_id: str
    acct: Accounting
    attempt: UpstreamStream | None
    strip_usage: bool
    headers: dict[str, str]
    canonical: dict[str, Any] | None
    request_raw: bytes | None

    def __init__(self) -> None:
        self.attempts = 0
        self.rejected: GatewayError | None = None
        # Set once the last message this stream will get has been answered; a stream that
        # closes before that was cut short (client gone, upstream reset).
        self.done = False
        self.response: ResponseStream | None = None
        self.read_json = False
        # The answer's translation from the backend's dialect, and whether it reads the
        # response body (to translate it).
        self.translation: ResponseTranslation | None = None
        self.attempt_body = False

    @property
    def _response_guards(self) -> ResponseGuards | None:
        guards = self.route.guards
        return guards.response if guards is not None else None

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
            guards = self._response_guards
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
            # A large answer (up to Envoy's buffer, 1 MiB by default) is translated off the
            # event loop (offload.py).
            translated = await offload.run(len(req.response_body.body), translation.body, req)
            if translated.HasField("immediate_response"):  # e.g. too large to translate
                return self._attempt_replied(translated)
            data = translated.response_body.response.body_mutation.body
            if not (self.response is not None or self.read_json):
                # An error, translated (and redacted): the response guards read it too.
                self.acct.status = translation.status
                return await self._guarded_error(translated, req.response_body.body)
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
                estimate = self.acct.take_stream(self.response, self.canonical)
                if estimate is not None:  # a stream without a usage chunk
                    self.acct.take_estimate(*await estimate.counts_async())
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

    async def _guarded_error(self, translated: pb.ProcessingResponse, raw: bytes) -> pb.ProcessingResponse:
        """A provider's error answer, translated, on a route with response guards: guarded
        like an answer (providers quote the request's text in their errors). One the guards
        cannot read is withheld."""
        guards = self._response_guards
        if guards is None:
            return translated
        reply = translated.response_body.response
        body = reply.body_mutation.body if reply.HasField("body_mutation") else raw
        try:
            error = orjson.loads(body)
        except orjson.JSONDecodeError:
            error = None
        try:
            if not isinstance(error, dict):
                raise unguardable_response()
            if not await guards.apply_error(error, len(body)):
                return translated
            out = orjson.dumps(error)
        except GatewayError as err:
            return self._replace_response(err)
        except TypeError:  # nested too deep to write (orjson's JSONEncodeError is one)
            return self._replace_response(unwritable_response())
        reply.body_mutation.body = out
        msg.set_headers(reply.header_mutation, {"content-length": str(len(out))})
        return translated

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
            if not raw.strip() and 200 <= self.acct.status < 300:
                # Nothing at all (a chunked answer with no bytes): no chat completion.
                return self._replace_response(empty_response(self.acct.provider or "the provider"))
            if self._response_guards is not None:
                # Nothing the guards can read, so nothing may pass unguarded.
                return self._replace_response(unguardable_response())
            if redacted:
                return msg.response_body(set_headers={"content-length": str(len(raw))}, body=raw)
            return msg.response_body()
        self.acct.take_usage(completion.get("usage"))
        self.acct.response_model = str(completion.get("model") or "")
        if self.acct.total_tokens is None and 200 <= self.acct.status < 300:
            await self._estimate_answer(completion)
        changed = False
        guards = self._response_guards
        if guards is not None:
            try:
                changed = await guards.apply(completion, self.headers, len(raw))
            except GatewayError as err:
                return self._replace_response(err)
        if not changed and not redacted and guards is None:
            return msg.with_metadata(msg.response_body(), self.acct.dynamic_metadata())
        try:
            # Guarded, the client gets what the guards read, written once: an answer that
            # repeats a key (`"content": "<secret>", "content": "hi"`) reaches a client
            # whose JSON parser keeps the first value otherwise.
            out = orjson.dumps(completion) if changed or guards is not None else raw
        except TypeError:  # nested too deep to write (orjson's JSONEncodeError is one)
            return self._replace_response(unwritable_response())
        return msg.with_metadata(
            msg.response_body(set_headers={"content-length": str(len(out))}, body=out),
            self.acct.dynamic_metadata(),
        )

    async def _estimate_answer(self, completion: dict[str, Any]) -> None:
        """An answer that reports no usage (some self-hosted servers send none) is counted
        from its prompt and its text, as a stream without a usage chunk is: its metrics
        and its token budget are charged, marked as estimated."""
        canonical, raw = self.canonical, self.request_raw
        if canonical is not None:
            prompt = tokens.prompt_of(canonical)
        elif raw is not None:
            try:  # read again, off the loop when large (offload.py)
                prompt = await offload.run(len(raw), _prompt_of_body, raw)
            except GatewayError:  # (it was read once: cannot happen)
                return
        else:
            return
        estimate = StreamEstimate(prompt, answer_text(completion), self.acct.request_model)
        self.acct.take_estimate(*await estimate.counts_async())

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
