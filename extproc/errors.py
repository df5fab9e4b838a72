"""OpenAI-style errors: the one shape every client-visible failure takes.

`{"error": {"message", "type", "code", "param"}}` is what the official SDKs parse, so
every rejection the gateway makes, and every provider error it translates, ends up here.
"""

from __future__ import annotations

from typing import Any

import orjson

# The error `type` OpenAI uses for each status family; clients branch on it.
_TYPE_BY_STATUS = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    408: "timeout_error",
    409: "conflict_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
}


def error_type_for(status: int) -> str:
    if status in _TYPE_BY_STATUS:
        return _TYPE_BY_STATUS[status]
    return "invalid_request_error" if 400 <= status < 500 else "server_error"


def error_dict(
    status: int, message: str, *, code: str | None, type_: str | None = None, param: str | None = None
) -> dict[str, Any]:
    """The error object every client-visible failure is built with (and nothing else builds one)."""
    return {
        "error": {"message": message, "type": type_ or error_type_for(status), "param": param, "code": code}
    }


def error_body(
    message: str, *, status: int, code: str | None = None, type_: str | None = None, param: str | None = None
) -> bytes:
    return orjson.dumps(error_dict(status, message, code=code, type_=type_, param=param))


class GatewayError(Exception):
    """A request the gateway refuses or cannot complete; becomes an HTTP error response."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        type_: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.type = type_ or error_type_for(status)
        self.param = param
        self.headers = headers or {}

    def body(self) -> bytes:
        return error_body(self.message, status=self.status, code=self.code, type_=self.type, param=self.param)


def bad_request(message: str, *, code: str, param: str | None = None) -> GatewayError:
    return GatewayError(400, message, code=code, param=param)


def unguardable_response() -> GatewayError:
    """A provider's answer the response guards cannot read: withheld, never passed on
    unguarded."""
    return GatewayError(
        502, "the provider's response could not be checked by the gateway", code="unguardable_response"
    )


def empty_response(who: str) -> GatewayError:
    """A provider's success with no body: no chat completion to pass on."""
    return GatewayError(502, f"{who} returned an empty response", code="upstream_invalid_response")


def unwritable_response() -> GatewayError:
    """A provider's JSON answer the gateway read and changed but cannot write back: orjson
    reads 1024 levels of nesting and writes 254 (requests are held to 200 at the edge,
    canonical.py; an answer can only be refused)."""
    return GatewayError(
        502, "the provider's response could not be processed by the gateway", code="upstream_invalid_response"
    )
