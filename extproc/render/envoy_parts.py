"""Building blocks of a rendered bootstrap: the pieces every gateway bootstrap shares
(JSON local replies, the access log, the ext_proc filters, TLS), used by envoy.py."""

from __future__ import annotations

from typing import Any

from .. import wire
from ..errors import error_dict

OVERWRITE = "OVERWRITE_IF_EXISTS_OR_ADD"
APPEND = "APPEND_IF_EXISTS_OR_ADD"


def duration(seconds: float) -> str:
    """A protobuf Duration: plain decimal seconds ("%g" would write 1.08e+06s)."""
    text = f"{seconds:.9f}".rstrip("0").rstrip(".")
    return f"{text or '0'}s"


def _cel(expr: str) -> dict:
    return {
        "extension_filter": {
            "name": "envoy.access_loggers.extension_filters.cel",
            "typed_config": {"@type": wire.CEL_FILTER_TYPE, "expression": expr},
        }
    }


def _json_error(message: str, type_: str, code: str) -> dict:
    return {
        "json_format": error_dict(0, message, code=code, type_=type_),
        "content_type": "application/json",
    }


NOT_OURS = (
    f"!response.code_details.startsWith('{wire.REPLY_DETAILS}') && response.code_details != 'direct_response'"
)


def _envoy_reply_with_status(status: int) -> dict[str, Any]:
    """Envoy's own reply (not the processor's, not a direct response) with this status."""
    return {
        "and_filter": {
            "filters": [
                {
                    "status_code_filter": {
                        "comparison": {
                            "op": "EQ",
                            "value": {"default_value": status, "runtime_key": "aigw.unused"},
                        }
                    }
                },
                _cel(NOT_OURS),
            ]
        }
    }


def local_reply_config() -> dict:
    """Every reply Envoy makes itself becomes an OpenAI-style JSON error; the processor's
    own replies (details starting with "aigw") and direct responses are left alone."""
    return {
        "mappers": [
            {
                "filter": _cel("response.code_details.startsWith('ext_proc_error')"),
                "status_code": 503,
                "body_format_override": _json_error(
                    "the AI gateway processor is unavailable", "server_error", "gateway_unavailable"
                ),
            },
            # Global limits (the processor's rate-limit service): a token budget says so.
            {
                "filter": _cel(
                    "response.code_details == 'request_rate_limited' && "
                    f"response.headers['{wire.LIMITED_BY}'] == 'tokens'"
                ),
                "body_format_override": _json_error(
                    "token budget exceeded for this key; it resets when its window ends (see retry-after)",
                    "rate_limit_error",
                    "token_budget_exceeded",
                ),
            },
            # A fail-closed global limit whose counters (Redis) could not be read in time.
            {
                "filter": _cel("response.code_details == 'rate_limiter_error'"),
                "body_format_override": _json_error(
                    "the gateway could not check this request's rate limit or token budget; try again",
                    "server_error",
                    "rate_limit_unavailable",
                ),
            },
            {
                "filter": _envoy_reply_with_status(429),
                "body_format_override": _json_error(
                    "rate limit exceeded", "rate_limit_error", "rate_limit_exceeded"
                ),
            },
            {
                "filter": _envoy_reply_with_status(413),
                "body_format_override": _json_error(
                    "the request body is too large", "invalid_request_error", "request_too_large"
                ),
            },
            # normalize_path refused it: escaped slashes, a NUL, a fragment.
            {
                "filter": _cel("response.code_details == 'path_normalization_failed'"),
                "body_format_override": _json_error(
                    # No '%' in here: Envoy would read it as a format operator.
                    "the request path is not valid: escaped slashes, NUL bytes and fragments are refused",
                    "invalid_request_error",
                    "invalid_path",
                ),
            },
            {
                "filter": _cel(NOT_OURS),
                "body_format_override": _json_error(
                    "%LOCAL_REPLY_BODY%", "server_error", "gateway_error_%RESPONSE_CODE%"
                ),
            },
        ]
    }


def access_log() -> list[dict]:
    fmt = {
        "time": "%START_TIME%",
        "request_id": "%REQ(X-REQUEST-ID)%",
        "route": "%ROUTE_NAME%",
        "method": "%REQ(:METHOD)%",
        "path": "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%",
        "status": "%RESPONSE_CODE%",
        "flags": "%RESPONSE_FLAGS%",
        "details": "%RESPONSE_CODE_DETAILS%",
        "upstream": "%UPSTREAM_HOST%",
        "attempts": "%UPSTREAM_REQUEST_ATTEMPT_COUNT%",
        "duration_ms": "%DURATION%",
    }
    for key in (
        "provider",
        "backend",
        "response_model",
        "input_tokens",
        "output_tokens",
        "total_tokens",
        "reasoning_tokens",
        "prompt_tokens_estimate",
    ):
        fmt[key] = f"%DYNAMIC_METADATA({wire.NAMESPACE}:{key})%"
    return [
        {
            "name": "envoy.access_loggers.stdout",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog",
                "log_format": {"json_format": fmt},
            },
        }
    ]


def ext_proc_filter(phase: str, timeout: float, attributes: list[str], **extra: Any) -> dict:
    return {
        "name": "envoy.filters.http.ext_proc",
        "typed_config": {
            "@type": wire.EXT_PROC_TYPE,
            "grpc_service": {
                "envoy_grpc": {"cluster_name": "extproc"},
                "timeout": duration(timeout),
                "initial_metadata": [{"key": wire.PHASE, "value": phase}],
            },
            "failure_mode_allow": False,
            "allow_mode_override": True,
            "request_attributes": attributes,
            "message_timeout": duration(timeout),
            **extra,
            # SEND for request headers in both positions: see config/wiring.py.
            "processing_mode": {
                "request_header_mode": "SEND",
                "request_body_mode": "BUFFERED",
                "response_header_mode": "SEND",
                "response_body_mode": "NONE",
                "request_trailer_mode": "SKIP",
                "response_trailer_mode": "SKIP",
            },
        },
    }


# Envoy's default circuit breaker lets 1024 requests (and connections, and pending
# requests) be in flight per cluster. For the processor's cluster those are ext_proc
# streams: two per request with an upstream filter, open for an LLM stream's whole answer,
# so about 500 concurrent streams got Envoy's 503. The gateway's limits are its rate
# limits and budgets; Envoy's are lifted.
UNCAPPED = 1_000_000


def circuit_breakers(retry_budget: bool) -> dict[str, Any]:
    """No cap on requests in flight; with `retry_budget`, one retry in flight per request
    in flight (Envoy's default of 3 per cluster lost requests that needed a failover)."""
    threshold: dict[str, Any] = {
        "priority": "DEFAULT",
        "max_connections": UNCAPPED,
        "max_pending_requests": UNCAPPED,
        "max_requests": UNCAPPED,
    }
    if retry_budget:
        threshold["retry_budget"] = {"budget_percent": {"value": 100.0}, "min_retry_concurrency": 16}
    return {"thresholds": [threshold]}


def socket_address(host: str, port: int) -> dict:
    return {"socket_address": {"address": host, "port_value": port}}


def upstream_tls(sni: str) -> dict:
    return {
        "name": "envoy.transport_sockets.tls",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
            "sni": sni,
            "common_tls_context": {
                "validation_context": {
                    "trusted_ca": {"filename": "/etc/ssl/certs/ca-certificates.crt"},
                    "match_typed_subject_alt_names": [{"san_type": "DNS", "matcher": {"exact": sni}}],
                }
            },
        },
    }


RAW_BUFFER = {
    "name": "envoy.transport_sockets.raw_buffer",
    "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.transport_sockets.raw_buffer.v3.RawBuffer"
    },
}
