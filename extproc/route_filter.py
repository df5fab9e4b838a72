"""The route-level filter: runs once per request, before Envoy picks a backend.

It owns the client-facing contract: the request is a well-formed OpenAI chat-completions
request (or the client gets a clear 4xx), route policies apply to the canonical request
and response, token usage is accounted, and internal headers never cross the gateway's
edge in either direction.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Coroutine
from typing import Any

import orjson
from envoy.service.ext_proc.v3 import external_processor_pb2 as pb

from . import messages as msg
from . import offload, tokens
from . import wire as H
from .accounting import Accounting, StreamEstimate
from .canonical import parse_request, wants_stream
from .errors import GatewayError, bad_request
from .inference.picker import EndpointPicker
from .logs import access_log
from .policies.field_defaults import apply_all
from .route_request import (
    ask_for_stream_usage,
    check_cooling,
    check_headers,
    check_output_guardable,
    pick_endpoints,
    too_large,
)
from .route_response import RouteResponse
from .runtime.gateway import GatewayRuntime, RouteRuntime
from .settings import ProcessorSettings
from .shared_state.client_key import Entries, client_entries
from .upstream_filter import UpstreamStream

log = logging.getLogger("aigw.route")

# Closes finishing in the background (a cut-short stream's token count on a thread): held
# here until done, since the loop keeps only weak references to its tasks.
_closing: set[asyncio.Task[None]] = set()


def _later(closing: Coroutine[Any, Any, None]) -> None:
    task = asyncio.get_running_loop().create_task(closing)
    _closing.add(task)
    task.add_done_callback(_closing.discard)


async def closes_finished() -> None:
    """Wait for closes still finishing in the background (at shutdown: their log lines)."""
    while _closing:
        await asyncio.gather(*_closing, return_exceptions=True)


class RouteStream(RouteResponse):
    """State for one request's route-level gRPC stream; its response phases are
    `RouteResponse`'s (route_response.py)."""

    __slots__ = (
        "acct",
        "attempt",
        "canonical",
        "charged_client",
        "forwarded",
        "gw",
        "headers",
        "limit",
        "picked",
        "request_id",
        "request_raw",
        "route",
        "settings",
        "strip_usage",
    )

    def __init__(self, gw: GatewayRuntime, settings: ProcessorSettings) -> None:
        super().__init__()
        self.gw = gw
        self.settings = settings
        self.route: RouteRuntime = gw.default_route
        self.request_id = ""
        self.limit = settings.max_request_bytes
        self.headers: dict[str, str] = {}
        self.acct = Accounting("")
        # The gateway asked the provider for stream usage the client did not ask for.
        self.strip_usage = False
        # The inference pool server this request was sent to first (for in-flight counts).
        self.picked: tuple[EndpointPicker, str] | None = None
        # Kept only when a cut-short stream may need a prompt-token estimate.
        self.canonical: dict[str, Any] | None = None
        # Otherwise the client's body, for a prompt estimate if the answer reports no
        # usage: bytes cost less to hold than the parsed request, and are rarely read.
        self.request_raw: bytes | None = None
        # On a route with a token budget: the client it is charged to, as the budget check
        # named it (None: not charged).
        self.charged_client: Entries | None = None
        # The request went on to the provider (nothing refused it here).
        self.forwarded = False
        # The attempt, when the route sends to a one-endpoint cluster without an upstream
        # filter: this stream then translates for that backend too (one gRPC stream per
        # request instead of two), reusing the upstream filter's code for it.
        self.attempt: UpstreamStream | None = None

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
        if policy.token_charge is not None:
            self.charged_client = client_entries(policy.token_charge.key, req)
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
            canonical = await offload.run(len(body), parse_request, body)
            # Guards see what the client sent, not the route's own additions.
            changed = False
            if guards is not None and guards.request is not None:
                changed = await guards.request.apply(canonical, self.headers, len(body))
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
            check_output_guardable(canonical, self.route)
            check_cooling(self.gw, self.route)
            destination = None
            inference = self.route.inference
            if inference is not None:
                destination, first, model_changed = pick_endpoints(inference, canonical)
                self.picked = (inference.picker, first)
                changed |= model_changed
        except GatewayError as err:
            return self._reject(err)
        self.forwarded = True  # unless the attempt's translation refuses it (then done)
        self.acct.request_model = model or ""
        self.acct.stream = wants_stream(canonical)
        if self.acct.stream:
            self.strip_usage = ask_for_stream_usage(canonical)
            changed |= self.strip_usage
            self.canonical = canonical
        elif self.charged_client is not None:
            self.canonical = canonical  # for the estimate if the client leaves before the answer
        else:
            self.request_raw = body
        if self.settings.debug_bodies:
            log.debug(
                "request body",
                extra={"fields": {"request_id": self.request_id, "body": body.decode("utf-8", "replace")}},
            )
        metadata = None
        if policy.prompt_token_estimate:
            estimate = await tokens.count_prompt_async(tokens.prompt_of(canonical))
            metadata = {H.NAMESPACE: {"prompt_tokens_estimate": estimate}}
        if self.attempt is not None:
            # No routing headers here: content routing and one-endpoint clusters are never
            # mixed (runtime/bootstrap_routes.py), so this is the backend the request goes to.
            out = await offload.run(len(body), self.attempt.translate, canonical)
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

    # ---- end ------------------------------------------------------------------------
    def close(self, outcome: str) -> None:
        ended = time.monotonic()
        if outcome == "cancelled" and self.done:
            outcome = "complete"  # Envoy closes the stream once it needs nothing more
        elif self.response is not None and not self.done and outcome in ("complete", "cancelled"):
            # Envoy ended the stream before its end: the provider reset, or the client left.
            # (grpc.aio reads that as the stream's end, grpclib cancels the handler.)
            outcome = "cut_short"
        if self.attempt is not None:
            self.attempt.close(outcome)
        if self.picked is not None:
            picker, endpoint = self.picked
            picker.finished(endpoint)
            self.picked = None
        # Cut short: still record what was seen, counting tokens off the event loop when
        # that is costly (a large prompt, or a vocabulary still to be loaded).
        estimate = self._unreported()
        if estimate is not None:
            if not estimate.cheap():
                _later(self._close_after(estimate, outcome, ended))
                return
            self.acct.take_estimate(*estimate.counts())
        self._record(outcome, ended)

    def _unreported(self) -> StreamEstimate | None:
        """The tokens to estimate for a request that ended before the provider reported
        its usage: a stream cut short (its prompt and what the client got), or, on a
        budgeted route, a request whose client left before the answer (its prompt: the
        provider read it, and the budget is charged for it)."""
        if self.done:
            return None
        if self.response is not None:
            return self.acct.take_stream(self.response, self.canonical)
        if (
            self.forwarded
            and self.charged_client is not None
            and self.canonical is not None
            and self.acct.status < 400  # (a provider error being read when it left: no charge)
        ):
            return StreamEstimate(tokens.prompt_of(self.canonical), "", self.acct.request_model)
        return None

    async def _close_after(self, estimate: StreamEstimate, outcome: str, ended: float) -> None:
        try:
            self.acct.take_estimate(*await estimate.counts_async())
        except Exception:  # still recorded and logged below, without its tokens
            log.exception("counting a cut-short stream's tokens failed")
        finally:  # (a shutdown cancelling the count included)
            self._record(outcome, ended)

    def _record(self, outcome: str, ended: float) -> None:
        acct = self.acct
        acct.record(ended)
        self._charge()
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
            "duration_ms": round((ended - acct.started) * 1000, 2),
            "outcome": outcome,
        }
        if self.rejected is not None:
            fields["error_code"] = self.rejected.code
        access_log.info("request", extra={"fields": fields})

    def _charge(self) -> None:
        """Charge the request's tokens (reported or estimated) to its token budget, in the
        background: the request is over, nothing waits on Redis."""
        charge = self.route.policy.token_charge
        charger = self.gw.token_charger
        total = self.acct.total_tokens
        if charge is None or charger is None or self.charged_client is None or not total:
            return
        _later(charger.charge(charge.limit, self.charged_client, total))
