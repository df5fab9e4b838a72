"""The route-level filter: runs once per request, before Envoy picks a backend.

It owns the client-facing contract: the request is a well-formed OpenAI chat-completions
request (or the client gets a clear 4xx), route policies apply to the canonical request
and response, and internal headers never cross the gateway's edge in either direction.
"""

from __future__ import annotations

import logging
import time

from envoy.service.ext_proc.v3 import external_processor_pb2 as pb

from . import headers as H
from . import messages as msg
import orjson

from .canonical import check_content_type, parse_request
from .policies.field_defaults import apply_all
from .config.gateway import GatewayConfig, RouteConfig
from .errors import GatewayError, bad_request
from .logs import access_log
from .settings import ProcessorSettings

log = logging.getLogger("aigw.route")


class RouteStream:
    """State for one request's route-level gRPC stream."""

    __slots__ = ("gw", "settings", "route", "started", "request_id", "status", "backend",
                 "provider", "attempts", "model", "stream", "limit", "rejected", "done",
                 "headers", "guard_response")

    def __init__(self, gw: GatewayConfig, settings: ProcessorSettings) -> None:
        self.gw = gw
        self.settings = settings
        self.route: RouteConfig = gw.default_route
        self.started = time.monotonic()
        self.request_id = ""
        self.status = 0
        self.backend = ""
        self.provider = ""
        self.attempts = 0
        self.model = ""
        self.stream = False
        self.limit = settings.max_request_bytes
        self.rejected: GatewayError | None = None
        # Set once the last message this stream will get has been answered; a stream that
        # closes before that was cut short (client gone, upstream reset).
        self.done = False
        self.headers: dict[str, str] = {}
        self.guard_response = False

    # ---- request --------------------------------------------------------------------
    async def request_headers(self, req: pb.ProcessingRequest) -> pb.ProcessingResponse:
        attrs = req.attributes.get("envoy.filters.http.ext_proc")
        if attrs is not None:
            name = attrs.fields.get("xds.route_name")
            if name is not None:
                self.route = self.gw.route(name.string_value)
        policy = self.route.policy
        if policy.max_request_bytes:
            self.limit = policy.max_request_bytes
        hdrs = msg.headers_of(req.request_headers.headers)
        self.headers = hdrs
        self.request_id = hdrs.get(H.REQUEST_ID, "")
        try:
            self._check_headers(hdrs, req.request_headers.end_of_stream)
        except GatewayError as err:
            return self._reject(err)
        spoofed = [k for k in hdrs if k.startswith(H.PREFIX)]
        return msg.request_headers(remove=spoofed)

    def _check_headers(self, hdrs: dict[str, str], end_of_stream: bool) -> None:
        method = hdrs.get(":method", "")
        if method != "POST":
            raise GatewayError(405, f"method {method} is not allowed: chat completions take POST",
                               code="method_not_allowed", headers={"allow": "POST"})
        check_content_type(hdrs.get("content-type"))
        length = hdrs.get("content-length")
        if length is not None and length.isdigit() and int(length) > self.limit:
            raise _too_large(int(length), self.limit)
        if end_of_stream:
            raise bad_request("the request body is empty: expected a JSON object",
                              code="invalid_json")

    async def request_body(self, req: pb.ProcessingRequest) -> pb.ProcessingResponse:
        body = req.request_body.body
        if len(body) > self.limit:
            return self._reject(_too_large(len(body), self.limit))
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
                raise bad_request("'model' is required: this route has no backend model to fall "
                                  "back on", code="model_required", param="model")
            self._check_cooling()
        except GatewayError as err:
            return self._reject(err)
        self.model = model or ""
        self.stream = canonical.get("stream") is True
        if self.settings.debug_bodies:
            log.debug("request body", extra={"fields": {"request_id": self.request_id,
                                                        "body": body.decode("utf-8", "replace")}})
        if not changed and routing is None:
            return msg.request_body()
        set_headers: dict[str, str] = dict(routing or {})
        new_body = None
        if changed:
            new_body = orjson.dumps(canonical)
            set_headers["content-length"] = str(len(new_body))
        # Clearing the route cache makes Envoy match routes again, now with these headers.
        return msg.request_body(set_headers=set_headers, body=new_body,
                                clear_route_cache=routing is not None)

    def _check_cooling(self) -> None:
        if self.route.backends:
            cooling = self.gw.all_cooling(self.route.backends)
            if cooling is not None:
                raise GatewayError(429, "every backend of this route is rate limited; retry "
                                        f"after {cooling} s", code="rate_limit_exceeded",
                                   headers={"retry-after": str(cooling)})

    # ---- response -------------------------------------------------------------------
    async def response_headers(self, req: pb.ProcessingRequest) -> pb.ProcessingResponse:
        hdrs = msg.headers_of(req.response_headers.headers)
        self.status = int(hdrs.get(":status", "0") or 0)
        self.backend = hdrs.get(H.BACKEND, "")
        self.provider = hdrs.get(H.PROVIDER, "")
        attempt = hdrs.get(H.ATTEMPT, "")
        self.attempts = int(attempt) if attempt.isdigit() else (1 if self.backend else 0)
        internal = [k for k in hdrs if k.startswith(H.PREFIX)]
        guards = self.route.guards
        if (guards is not None and guards.response is not None and 200 <= self.status < 300
                and not req.response_headers.end_of_stream):
            self.guard_response = True
            return msg.response_headers(remove=internal, body_mode=msg.BUFFERED)
        self.done = True
        return msg.response_headers(remove=internal)

    async def response_body(self, req: pb.ProcessingRequest) -> pb.ProcessingResponse:
        self.done = req.response_body.end_of_stream
        if not self.guard_response:
            return msg.response_body()
        try:
            completion = orjson.loads(req.response_body.body)
        except orjson.JSONDecodeError:
            # Not JSON: nothing the guards can read, so nothing may pass unguarded.
            return self._replace_response(GatewayError(
                502, "the provider's response could not be checked by the gateway",
                code="unguardable_response"))
        try:
            changed = await self.route.guards.response.apply(completion, self.headers)
        except GatewayError as err:
            return self._replace_response(err)
        if not changed:
            return msg.response_body()
        out = orjson.dumps(completion)
        return msg.response_body(set_headers={"content-length": str(len(out))}, body=out)

    def _replace_response(self, err: GatewayError) -> pb.ProcessingResponse:
        """Withhold the provider's answer: the client gets the error instead."""
        self.rejected = err
        self.status = err.status
        body = err.body()
        return msg.response_body(set_headers={":status": str(err.status),
                                              "content-type": "application/json",
                                              "content-length": str(len(body))}, body=body)

    # ---- end ------------------------------------------------------------------------
    def _reject(self, err: GatewayError) -> pb.ProcessingResponse:
        self.rejected = err
        self.status = err.status
        self.done = True
        return msg.error_reply(err)

    def close(self, outcome: str) -> None:
        if outcome == "cancelled" and self.done:
            outcome = "complete"  # Envoy closes the stream once it needs nothing more
        fields = {
            "request_id": self.request_id,
            "route": self.route.name or "-",
            "backend": self.backend or "-",
            "provider": self.provider or "-",
            "model": self.model or "-",
            "stream": self.stream,
            "status": self.status,
            "attempts": self.attempts,
            "duration_ms": round((time.monotonic() - self.started) * 1000, 2),
            "outcome": outcome,
        }
        if self.rejected is not None:
            fields["error_code"] = self.rejected.code
        access_log.info("request", extra={"fields": fields})


def _too_large(size: int, limit: int) -> GatewayError:
    return GatewayError(413, f"the request body is {size} bytes; this route accepts at most "
                             f"{limit} bytes", code="request_too_large")
