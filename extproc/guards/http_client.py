"""Outbound HTTP for the guard clients: one pooled aiohttp session, and secret-backed headers.

A guard call sits on every request's critical path, so connections to the webhook or the
moderation service are kept alive and reused rather than opened per call. The session is
created lazily because an aiohttp session belongs to the event loop it was created on, and
guards are built at start-up, before (or outside) the loop that serves requests.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

import aiohttp
import orjson

from ..config_model import ConfigModel
from ..secrets import SecretRef

USER_AGENT = "aigw-extproc"

# An RFC 9110 field name (a "token").
HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")


class SecretValue(ConfigModel):
    """A header value kept out of config files: `{secretRef: {env: WEBHOOK_TOKEN}}`."""

    secret_ref: SecretRef


class SharedSession:
    """Hands out one `ClientSession` per event loop, creating it on first use."""

    def __init__(self, *, limit: int = 100) -> None:
        self._limit = limit
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def get(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        if self._session is None or self._session.closed or self._loop is not loop:
            # A session from another loop cannot be used (or even closed) from this one;
            # that only happens in tests that run one loop per test.
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._limit, ttl_dns_cache=60),
                headers={"User-Agent": USER_AGENT},
                # Guards must reach the configured endpoint itself; an ambient HTTP_PROXY
                # must not silently reroute content to a third party.
                trust_env=False,
            )
            self._loop = loop
        return self._session

    async def close(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None
        self._loop = None


class CallFailed(Exception):
    """A guard call got no usable answer. `kind` is safe to log: no address, no content."""

    def __init__(self, kind: str, *, timeout: bool = False) -> None:
        super().__init__(kind)
        self.kind = kind
        self.timeout = timeout


async def post_json(
    session: SharedSession, url: str, payload: Any, headers: dict[str, str], timeout: aiohttp.ClientTimeout
) -> Any:
    """POSTs JSON and returns the decoded 2xx answer; raises `CallFailed` otherwise."""
    try:
        async with session.get().post(
            url,
            data=orjson.dumps(payload),
            headers={**headers, "Content-Type": "application/json"},
            # A redirect is a misconfiguration, and following one could carry the content
            # (and our credential) somewhere nobody configured.
            timeout=timeout,
            allow_redirects=False,
        ) as resp:
            if not 200 <= resp.status < 300:
                raise CallFailed(f"answered HTTP {resp.status}")
            raw = await resp.read()
    except TimeoutError:  # aiohttp's timeouts subclass it
        raise CallFailed("timed out", timeout=True) from None
    except aiohttp.ClientError as exc:  # str(exc) names the address: the type is enough
        raise CallFailed(f"unreachable ({type(exc).__name__})") from None
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise CallFailed("answer is not JSON") from None


# The process-wide pool the guards use unless handed another (tests hand their own).
shared_session = SharedSession()
