"""The guardrail webhook client against a real local aiohttp server."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import time
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from pydantic import ValidationError

from extproc.guards.http_client import SharedSession
from extproc.guards.webhook import (
    FAILURE_MESSAGE,
    TIMEOUT_MESSAGE,
    Verdict,
    WebhookConfig,
    WebhookGuard,
)
from extproc.secrets import SecretError

MESSAGES = [
    {"role": "system", "content": "be brief"},
    {"role": "user", "content": "my ssn is 123-45-6789", "name": "bob"},
]
CHOICES = [
    {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "call me at 555-0100"}}
]


class FakeWebhook:
    """Records every call and answers with whatever the test set."""

    def __init__(self) -> None:
        self.calls: list[dict] = []
        self.answer: object = {"action": {}}
        self.status = 200
        self.hang = False
        self.location: str | None = None
        self.release = asyncio.Event()
        self.base = ""  # set by the fixture once the server listens
        self.port = 0

    async def handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        assert request.transport is not None
        self.calls.append(
            {
                "path": request.path,
                "json": json.loads(raw),
                "peer": request.transport.get_extra_info("peername"),
                "headers": {k.lower(): v for k, v in request.headers.items()},
            }
        )
        if self.hang:
            await asyncio.wait_for(self.release.wait(), 5)
        body = self.answer if isinstance(self.answer, bytes) else json.dumps(self.answer).encode()
        headers = {"Location": self.location} if self.location else None
        return web.Response(status=self.status, body=body, content_type="application/json", headers=headers)


async def _pass(_: web.Request) -> web.Response:
    return web.json_response({"action": {}})


@pytest.fixture
async def fake():
    hook = FakeWebhook()
    app = web.Application()
    app.router.add_post("/request", hook.handle)
    app.router.add_post("/response", hook.handle)
    # Where a redirect points: a pass, so following one would show as a pass.
    app.router.add_route("*", "/elsewhere", _pass)
    server = TestServer(app)
    await server.start_server()
    assert server.port is not None
    hook.base = f"http://127.0.0.1:{server.port}"
    hook.port = server.port
    yield hook
    hook.release.set()
    await server.close()


@pytest.fixture
async def session():
    s = SharedSession()
    yield s
    await s.close()


def guard(session: SharedSession, url: str, **extra) -> WebhookGuard:
    return WebhookGuard(WebhookConfig.model_validate({"url": url, **extra}), session)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_request_posts_exactly_the_contract(fake, session):
    fake.answer = {"action": {"reason": "clean"}}
    messages: list[dict[str, Any]] = [*MESSAGES, {"role": "assistant", "content": None, "tool_calls": []}]
    verdict = await guard(session, fake.base).check_request(messages, {})
    assert verdict == Verdict("pass", reason="clean")
    (call,) = fake.calls
    assert call["path"] == "/request"
    assert call["headers"]["content-type"] == "application/json"
    assert call["json"] == {
        "body": {
            "messages": [
                {"role": "system", "content": "be brief"},
                {"role": "user", "content": "my ssn is 123-45-6789"},
                {"role": "assistant", "content": ""},
            ]
        }
    }


async def test_response_posts_exactly_the_contract(fake, session):
    verdict = await guard(session, fake.base).check_response(CHOICES, {})
    assert verdict == Verdict("pass")
    (call,) = fake.calls
    assert call["path"] == "/response"
    assert call["json"] == {
        "body": {"choices": [{"message": {"role": "assistant", "content": "call me at 555-0100"}}]}
    }


async def test_base_path_is_kept_and_host_form_works(fake, session):
    g = WebhookGuard(
        WebhookConfig.model_validate({"host": {"host": "127.0.0.1", "port": fake.port}}), session
    )
    assert (await g.check_request(MESSAGES, {})).action == "pass"
    assert fake.calls[0]["path"] == "/request"
    cfg = WebhookConfig.model_validate({"url": "https://guard.internal:8000/v1/guard/"})
    assert cfg.base_url() == "https://guard.internal:8000/v1/guard"
    assert WebhookConfig.model_validate({"host": {"host": "::1", "port": 80}}).base_url() == "http://[::1]:80"


async def test_connections_are_pooled_and_session_recreated_after_close(fake, session):
    g = guard(session, fake.base)
    for _ in range(3):
        await g.check_request(MESSAGES, {})
    assert len({c["peer"] for c in fake.calls}) == 1  # one kept-alive connection
    await session.close()
    assert (await g.check_request(MESSAGES, {})).action == "pass"
    assert fake.calls[-1]["peer"] != fake.calls[0]["peer"]


async def test_mask_request(fake, session):
    masked = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "my ssn is <SSN>"}]
    fake.answer = {"action": {"body": {"messages": masked}, "reason": "pii"}}
    verdict = await guard(session, fake.base).check_request(MESSAGES, {})
    assert verdict == Verdict("mask", messages=masked, reason="pii")


async def test_mask_response(fake, session):
    masked = [{"message": {"role": "assistant", "content": "call me at <PHONE>"}}]
    fake.answer = {"action": {"body": {"choices": masked}}}
    verdict = await guard(session, fake.base).check_response(CHOICES, {})
    assert verdict == Verdict("mask", choices=masked)


@pytest.mark.parametrize("phase", ["request", "response"])
async def test_reject_propagates_status_and_body(fake, session, phase):
    fake.answer = {"action": {"body": "no PII please", "status_code": 422, "reason": "ssn"}}
    g = guard(session, fake.base)
    verdict = await (g.check_request(MESSAGES, {}) if phase == "request" else g.check_response(CHOICES, {}))
    assert verdict == Verdict("reject", status=422, message="no PII please", reason="ssn")
    assert fake.calls[0]["path"] == f"/{phase}"


@pytest.mark.parametrize(
    "answer",
    [
        b"not json",
        b"[]",
        {"verdict": "pass"},
        {"action": "pass"},
        {"action": {"reason": 7}},
        {"action": {"body": "nope"}},  # reject without status_code
        {"action": {"body": "nope", "status_code": "403"}},
        {"action": {"body": "nope", "status_code": True}},
        {"action": {"body": "nope", "status_code": 200}},  # not an error status
        {"action": {"body": "nope", "status_code": 600}},
        {"action": {"body": {"text": "x"}, "status_code": 403}},
        {"action": {"body": {"choices": [{"message": {"role": "user", "content": "x"}}]}}},
        {"action": {"body": {"messages": [{"role": "user"}, {"role": "user", "content": "x"}]}}},
        {"action": {"body": {"messages": [{"role": "user", "content": 5}] * 2}}},
    ],
)
async def test_malformed_answers_fail_closed(fake, session, answer):
    fake.answer = answer
    verdict = await guard(session, fake.base).check_request(MESSAGES, {})
    assert (verdict.action, verdict.status, verdict.message, verdict.failed) == (
        "reject",
        502,
        FAILURE_MESSAGE,
        True,
    )


@pytest.mark.parametrize("returned", [0, 1, 3])
async def test_mask_with_wrong_message_count_fails(fake, session, returned):
    fake.answer = {"action": {"body": {"messages": [{"role": "user", "content": "x"}] * returned}}}
    verdict = await guard(session, fake.base).check_request(MESSAGES, {})
    assert (verdict.action, verdict.status, verdict.failed) == ("reject", 502, True)


@pytest.mark.parametrize(
    "choice",
    [
        "text",
        {"text": "x"},
        {"message": {"role": "assistant"}},
        {"message": {"role": "assistant", "content": None}},
        {"message": "x"},
    ],
)
async def test_malformed_masked_choices_fail_closed(fake, session, choice):
    fake.answer = {"action": {"body": {"choices": [choice]}}}
    verdict = await guard(session, fake.base).check_response(CHOICES, {})
    assert (verdict.action, verdict.status, verdict.failed) == ("reject", 502, True)


async def test_masked_choices_keep_only_the_contract_fields(fake, session):
    fake.answer = {
        "action": {
            "body": {"choices": [{"index": 0, "message": {"role": "assistant", "content": "ok", "extra": 1}}]}
        }
    }
    verdict = await guard(session, fake.base).check_response(CHOICES, {})
    assert verdict.choices == [{"message": {"role": "assistant", "content": "ok"}}]


async def test_mask_with_wrong_choice_count_fails(fake, session):
    fake.answer = {"action": {"body": {"choices": [{"message": {"role": "a", "content": ""}}] * 2}}}
    verdict = await guard(session, fake.base).check_response(CHOICES, {})
    assert (verdict.action, verdict.status, verdict.failed) == ("reject", 502, True)


@pytest.mark.parametrize("status", [500, 404, 302])
async def test_error_answer_fails_closed_without_echoing_it(fake, session, status, caplog):
    fake.status = status
    fake.answer = b'{"detail": "db password rejected at 10.0.0.7"}'
    fake.location = "/elsewhere"  # a redirect is not followed: it could carry the content away
    with caplog.at_level(logging.WARNING, "aigw.guards.webhook"):
        verdict = await guard(session, fake.base).check_request(MESSAGES, {})
    assert verdict == Verdict(
        "reject", status=502, message=FAILURE_MESSAGE, reason=f"answered HTTP {status}", failed=True
    )
    assert verdict.message is not None
    assert str(fake.port) not in verdict.message and "10.0.0.7" not in verdict.message
    assert f"answered HTTP {status}" in caplog.text
    assert "123-45-6789" not in caplog.text and "be brief" not in caplog.text


async def test_timeout_is_504(fake, session):
    fake.hang = True
    started = time.monotonic()
    verdict = await guard(session, fake.base, timeoutSeconds=0.2).check_request(MESSAGES, {})
    assert time.monotonic() - started < 1.5
    assert (verdict.action, verdict.status, verdict.message, verdict.failed) == (
        "reject",
        504,
        TIMEOUT_MESSAGE,
        True,
    )


async def test_connection_refused_is_502(session):
    verdict = await guard(session, f"http://127.0.0.1:{free_port()}").check_request(MESSAGES, {})
    assert (verdict.action, verdict.status, verdict.message, verdict.failed) == (
        "reject",
        502,
        FAILURE_MESSAGE,
        True,
    )
    assert verdict.reason is not None
    assert verdict.reason.startswith("unreachable")


@pytest.mark.parametrize("mode", ["500", "timeout", "refused", "malformed", "bad-count"])
async def test_fail_open_passes_and_marks_failed(fake, session, mode):
    url = fake.base
    if mode == "500":
        fake.status = 500
    elif mode == "timeout":
        fake.hang = True
    elif mode == "refused":
        url = f"http://127.0.0.1:{free_port()}"
    elif mode == "malformed":
        fake.answer = b"{"
    else:
        fake.answer = {"action": {"body": {"messages": []}}}
    g = guard(session, url, failOpen=True, timeoutSeconds=0.2)
    verdict = await g.check_request(MESSAGES, {})
    assert (verdict.action, verdict.failed, verdict.status, verdict.messages) == ("pass", True, None, None)


async def test_fail_open_still_honours_a_real_reject(fake, session):
    fake.answer = {"action": {"body": "blocked", "status_code": 403}}
    verdict = await guard(session, fake.base, failOpen=True).check_request(MESSAGES, {})
    assert (verdict.action, verdict.status, verdict.failed) == ("reject", 403, False)


async def test_forwards_listed_headers_only(fake, session):
    g = guard(session, fake.base, forwardHeaders=["X-User-Id", "x-tenant-*", "content-*"])
    incoming = {
        "x-user-id": "u1",
        "X-Tenant-Id": "t1",
        "x-tenant-region": "eu",
        "x-user-idx": "no",
        "x-tenant": "no",
        "authorization": "Bearer client-key",
        "content-language": "fr",
        "content-length": "99999",
        ":path": "/v1/chat",
    }
    assert (await g.check_request(MESSAGES, incoming)).action == "pass"
    got = fake.calls[0]["headers"]
    assert got["x-user-id"] == "u1"
    assert got["x-tenant-id"] == "t1" and got["x-tenant-region"] == "eu"
    assert got["content-language"] == "fr"
    for absent in ("x-user-idx", "x-tenant", "authorization", ":path"):
        assert absent not in got
    assert got["content-length"] != "99999"  # framing headers are never copied


async def test_static_secret_header_wins_over_client(fake, session, monkeypatch):
    monkeypatch.setenv("HOOK_TOKEN", "Bearer hook-secret")
    g = guard(
        session,
        fake.base,
        forwardHeaders=["authorization"],
        headers={"Authorization": {"secretRef": {"env": "HOOK_TOKEN"}}},
    )
    await g.check_request(MESSAGES, {"authorization": "Bearer client-key"})
    assert fake.calls[0]["headers"]["authorization"] == "Bearer hook-secret"


def test_missing_header_secret_stops_start_up(monkeypatch):
    monkeypatch.delenv("HOOK_TOKEN", raising=False)
    cfg = WebhookConfig.model_validate(
        {"url": "http://guard:1", "headers": {"x-key": {"secretRef": {"env": "HOOK_TOKEN"}}}}
    )
    with pytest.raises(SecretError, match="HOOK_TOKEN"):
        WebhookGuard(cfg)


async def test_list_content_is_a_caller_error(session):
    g = guard(session, "http://127.0.0.1:1")
    with pytest.raises(TypeError):
        await g.check_request([{"role": "user", "content": [{"type": "text", "text": "x"}]}], {})


@pytest.mark.parametrize(
    "doc, field, text",
    [
        ({"url": "http://a:1", "host": {"host": "a", "port": 1}}, None, "exactly one of 'host' or 'url'"),
        ({}, None, "exactly one of 'host' or 'url'"),
        ({"url": "ftp://guard:21"}, "url", "scheme must be http or https"),
        ({"url": "guard.internal:8000"}, "url", "scheme must be http or https"),
        ({"url": "http://user:pw@guard:1"}, "url", "credentials"),
        ({"url": "http://guard:1/?x=1"}, "url", "query"),
        ({"url": "http://guard:1", "timeoutSeconds": -1}, "timeoutSeconds", "greater than 0"),
        ({"url": "http://guard:1", "timeoutSeconds": 0}, "timeoutSeconds", "greater than 0"),
        ({"url": "http://guard:1", "timeout": "2s"}, "timeout", "Extra inputs"),
        ({"url": "http://guard:1", "forwardHeaders": ["*"]}, "forwardHeaders", "not a header name"),
        ({"url": "http://guard:1", "forwardHeaders": ["x-*-id"]}, "forwardHeaders", "not a header"),
        ({"url": "http://guard:1", "forwardHeaders": ["bad name"]}, "forwardHeaders", "not a header"),
        (
            {"url": "http://guard:1", "forwardHeaders": ["Content-Length"]},
            "forwardHeaders",
            "cannot be forwarded",
        ),
        (
            {"url": "http://guard:1", "headers": {"host": {"secretRef": {"inline": "x"}}}},
            "headers",
            "cannot be set",
        ),
        ({"host": {"host": "http://guard", "port": 80}}, "host.host", "host name or IP"),
        ({"host": {"host": "guard", "port": 0}}, "host.port", "greater than 0"),
    ],
)
def test_config_errors_name_the_field(doc, field, text):
    with pytest.raises(ValidationError) as info:
        WebhookConfig.model_validate(doc)
    (err,) = info.value.errors()
    assert ".".join(map(str, err["loc"])) == (field or "")
    assert text in err["msg"]


def test_forward_headers_are_case_insensitive_and_config_is_camel_case():
    cfg = WebhookConfig.model_validate(
        {
            "url": "http://g:1",
            "forwardHeaders": ["X-User-Id", "X-T-*"],
            "failOpen": True,
            "timeoutSeconds": 0.5,
        }
    )
    assert cfg.forward_headers == ("x-user-id", "x-t-*")
    assert (cfg.fail_open, cfg.timeout_seconds) == (True, 0.5)
