"""The upstream filter: runs once per attempt, after Envoy has picked the host.

Everything provider-specific about the request happens here, for the host this attempt
goes to: the body is translated, the path rewritten, the client's credential removed and
the backend's set. A retry or a failover to another host is a new attempt, and is
translated again for that host from the canonical body the route-level filter left. Of
the response it reads only the headers: the status (a 429 cools the backend down) and
which backend answered, which it reports to the route-level filter. That filter
translates the answer the client gets (response_translation.py).
"""

from __future__ import annotations

import logging
import time
from typing import Any

import orjson
from envoy.service.ext_proc.v3 import external_processor_pb2 as pb

from . import messages as msg
from . import metrics, offload
from . import wire as H
from .backend_health import retry_after_seconds
from .backends import ACCOUNT_HEADERS, CLIENT_ONLY_HEADERS, CREDENTIAL_HEADERS, Backend, client_key
from .canonical import empty_body, parse_request, wants_stream
from .errors import GatewayError, bad_request
from .logs import access_log
from .providers.base import ProviderError
from .runtime.gateway import GatewayRuntime
from .settings import ProcessorSettings

log = logging.getLogger("aigw.upstream")

_HOST_ATTRS = "envoy.filters.http.ext_proc"


class UpstreamStream:
    """State for one attempt's upstream gRPC stream."""

    __slots__ = (
        "attempt",
        "backend",
        "client_key",
        "direct",
        "done",
        "gw",
        "model",
        "request_id",
        "settings",
        "started",
        "status",
        "stream",
    )

    def __init__(
        self, gw: GatewayRuntime, settings: ProcessorSettings, direct: Backend | None = None
    ) -> None:
        """`direct`: the backend of a one-endpoint cluster, when the route-level filter
        runs this attempt itself (route_filter.py) instead of an upstream filter."""
        self.gw = gw
        self.settings = settings
        self.direct = direct
        self.backend: Backend | None = direct
        self.client_key: str | None = None
        self.model = ""
        self.stream = False
        self.status = 0
        self.started = time.monotonic()
        self.attempt = "1"
        self.request_id = ""
        self.done = False  # see RouteStream.done

    # ---- request --------------------------------------------------------------------
    async def request_headers(
        self, req: pb.ProcessingRequest, hdrs: dict[str, str] | None = None
    ) -> pb.ProcessingResponse:
        """`hdrs`: the headers already read (the route-level filter running the attempt)."""
        if hdrs is None:
            hdrs = msg.headers_of(req.request_headers.headers)
        rejected = self._identify(req, hdrs)
        if rejected is not None:
            return rejected
        if req.request_headers.end_of_stream:
            return self._reject(empty_body())
        assert self.backend is not None  # _identify found it, or answered
        # Only what this backend may receive travels on (backends.HeaderPolicy).
        return msg.request_headers(remove=self.backend.header_policy.dropped(hdrs))

    def _identify(self, req: pb.ProcessingRequest, hdrs: dict[str, str]) -> pb.ProcessingResponse | None:
        """Find the backend Envoy picked for this attempt (headers phase: it must be SEND,
        see config/wiring.py, or header changes made with the body would be lost)."""
        self.request_id = hdrs.get(H.REQUEST_ID, "")
        self.attempt = hdrs.get(H.ENVOY_ATTEMPT, "1")
        self.client_key = client_key(hdrs)
        if self.direct is not None:
            return None
        fields = {}
        attrs = req.attributes.get(_HOST_ATTRS)
        if attrs is not None:
            fields = {k: v.string_value for k, v in attrs.fields.items()}
        address = fields.get("upstream.address", "")
        self.backend = self.gw.backend_for_host(fields.get(H.UPSTREAM_HOST_METADATA, ""))
        if self.backend is None:
            # Envoy picked a host this processor has no settings for: Envoy and the
            # processor run different bootstraps. Never forward such a request as is.
            log.error(
                "no backend configured for upstream host",
                extra={"fields": {"request_id": self.request_id, "address": address}},
            )
            return self._reject(
                GatewayError(
                    500,
                    "the gateway has no configuration for the selected backend",
                    code="backend_not_configured",
                )
            )
        return None

    async def request_body(self, req: pb.ProcessingRequest) -> pb.ProcessingResponse:
        body = req.request_body.body
        return await offload.run(len(body), self._parse_and_translate, body)

    def _parse_and_translate(self, body: bytes) -> pb.ProcessingResponse:
        try:
            canonical = parse_request(body)
        except GatewayError as err:
            return self._reject(err)
        return self.translate(canonical)

    def translate(self, canonical: dict[str, Any]) -> pb.ProcessingResponse:
        """The request for this attempt's backend: body, path and credential."""
        backend = self.backend
        assert backend is not None
        provider = backend.provider
        try:
            model = backend.settings.model or canonical.get("model")
            if not model:
                raise bad_request(
                    "'model' is required: the selected backend has no configured model",
                    code="model_required",
                    param="model",
                )
            self.model = model
            self.stream = wants_stream(canonical)
            body = orjson.dumps(provider.translate_request(canonical, model))
            path = provider.request_path(model, self.stream)
        except GatewayError as err:
            return self._reject(err)
        except (ProviderError, ValueError) as err:
            return self._reject(
                bad_request(
                    f"the request cannot be sent to {provider.name}: {err}",
                    code="untranslatable_request",
                    param=getattr(err, "param", None),
                )
            )
        except (TypeError, KeyError, AttributeError, IndexError) as err:
            # A value of a shape the translator did not expect, which the canonical checks
            # let through: the client's request, so a 400, not a 500. Logged, since a
            # translator should name the field itself.
            log.warning(
                "request a translator could not read",
                extra={
                    "fields": {
                        "request_id": self.request_id,
                        "provider": provider.name,
                        "error": f"{type(err).__name__}: {err}"[:200],
                    }
                },
            )
            return self._reject(
                bad_request(
                    f"the request cannot be sent to {provider.name}: "
                    "a field has a value of an unexpected shape",
                    code="untranslatable_request",
                )
            )
        set_headers = {":path": path, "content-length": str(len(body)), "content-type": "application/json"}
        set_headers.update(backend.headers)
        credential = backend.credential(self.client_key)
        if credential is not None:
            set_headers[credential.header] = credential.value
        strip = CREDENTIAL_HEADERS + CLIENT_ONLY_HEADERS + (() if backend.passthrough else ACCOUNT_HEADERS)
        remove = [h for h in strip if h not in set_headers]
        if self.settings.debug_bodies:
            log.debug(
                "upstream request body",
                extra={
                    "fields": {"request_id": self.request_id, "backend": backend.name, "body": body.decode()}
                },
            )
        return msg.request_body(set_headers=set_headers, remove=remove, body=body)

    # ---- response -------------------------------------------------------------------
    async def response_headers(self, req: pb.ProcessingRequest) -> pb.ProcessingResponse:
        """The upstream filter's reply: which backend answered, for the route-level filter
        (which removes these headers, and translates the answer if it is the last
        attempt's: response_translation.py). A retried attempt's answer never reaches the
        client, so this filter never reads one."""
        backend = self.backend
        assert backend is not None
        report = {H.BACKEND: backend.name, H.PROVIDER: backend.provider.name, H.ATTEMPT: self.attempt}
        if self.answered(msg.headers_of(req.response_headers.headers)):
            # Out of rotation now, not at the next health check: the processor's health
            # endpoint then keeps it out until the cooldown ends.
            report[H.IMMEDIATE_HC_FAIL] = "true"
        self.done = True
        return msg.response_headers(set_headers=report)

    async def response_body(self, req: pb.ProcessingRequest) -> pb.ProcessingResponse:
        """Never asked for (the filter's response body mode is NONE and this filter sets no
        override); a bootstrap that sends one anyway gets it passed on unchanged, for the
        route-level filter to translate, rather than an unanswered message."""
        return msg.response_body()

    def answered(self, hdrs: dict[str, str]) -> bool:
        """Record the provider's status; a 429 (or a 503 with Retry-After) cools the
        backend down. True when a cooldown was recorded."""
        backend = self.backend
        assert backend is not None
        self.status = int(hdrs.get(":status", "0") or 0)
        if self.status == 429 or (self.status == 503 and ("retry-after" in hdrs or "retry-after-ms" in hdrs)):
            return self._cool_down(backend, hdrs)
        return False

    def _cool_down(self, backend: Backend, hdrs: dict[str, str]) -> bool:
        """The provider asked us to back off: keep this backend out of rotation (Envoy's
        health checker asks the processor) for Retry-After, or the configured default.
        Not for passthrough backends: there the limit is the client's own key's, and one
        client's 429 must not take the backend away from everyone else. True when a
        cooldown was recorded."""
        if backend.passthrough:
            return False
        s = backend.settings
        wait = retry_after_seconds(hdrs)
        seconds = min(wait if wait is not None else s.cooldown_seconds, s.max_cooldown_seconds)
        if seconds > 0:
            left = self.gw.health.cool_down(backend.name, seconds)
            log.info(
                "backend cooling down",
                extra={
                    "fields": {
                        "request_id": self.request_id,
                        "backend": backend.name,
                        "status": self.status,
                        "retry_after": hdrs.get("retry-after"),
                        "cooldown_s": round(left, 2),
                    }
                },
            )
            return True
        return False

    # ---- end ------------------------------------------------------------------------
    def _reject(self, err: GatewayError) -> pb.ProcessingResponse:
        self.status = err.status
        self.done = True
        return msg.error_reply(err)

    def close(self, outcome: str) -> None:
        if outcome == "cancelled" and self.done:
            outcome = "complete"
        backend = self.backend
        if backend is not None:
            metrics.child(
                metrics.ATTEMPTS,
                backend.provider.name,
                backend.name,
                str(self.status or 0),
                "false" if self.attempt == "1" else "true",
            ).inc()
        if self.direct is not None:
            return  # the route-level filter's request line says all of it
        access_log.info(
            "attempt",
            extra={
                "fields": {
                    "request_id": self.request_id,
                    "backend": backend.name if backend else "-",
                    "provider": backend.provider.name if backend else "-",
                    "model": self.model or "-",
                    "attempt": self.attempt,
                    "status": self.status,
                    "duration_ms": round((time.monotonic() - self.started) * 1000, 2),
                    "outcome": outcome,
                }
            },
        )
