"""The moderation client against a real local aiohttp server speaking OpenAI's API."""

from __future__ import annotations

import asyncio
import json
import logging
import socket

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from pydantic import ValidationError

from extproc.config_model import ConfigModel
from extproc.guards import moderation
from extproc.guards.http_client import SharedSession
from extproc.guards.moderation import (
    ModerationConfig,
    ModerationResult,
    OpenAIModerator,
    build_moderator,
)
from extproc.secrets import SecretError

TOKEN = "sk-test-not-a-real-key"


def result(flagged: bool, **hits: bool) -> dict:
    cats = {"harassment": False, "hate": False, "self-harm": False, "violence": False}
    cats.update({k.replace("_", "-"): v for k, v in hits.items()})
    return {
        "flagged": flagged,
        "categories": cats,
        "category_scores": {k: (0.9 if v else 0.01) for k, v in cats.items()},
    }


class FakeOpenAI:
    def __init__(self) -> None:
        self.calls: list[dict] = []
        self.answer: object = None  # None: one unflagged result per input
        self.status = 200
        self.hang = False
        self.location: str | None = None
        self.release = asyncio.Event()
        self.url = ""  # set by the fixture once the server listens

    async def handle(self, request: web.Request) -> web.Response:
        doc = json.loads(await request.read())
        self.calls.append(
            {"path": request.path, "json": doc, "headers": {k.lower(): v for k, v in request.headers.items()}}
        )
        if self.hang:
            await asyncio.wait_for(self.release.wait(), 5)
        answer = self.answer
        if answer is None:
            answer = {"id": "modr-1", "model": doc["model"], "results": [result(False) for _ in doc["input"]]}
        body = answer if isinstance(answer, bytes) else json.dumps(answer).encode()
        headers = {"Location": self.location} if self.location else None
        return web.Response(status=self.status, body=body, content_type="application/json", headers=headers)


async def _clean(request: web.Request) -> web.Response:
    doc = json.loads(await request.read())
    return web.json_response({"results": [result(False) for _ in doc["input"]]})


@pytest.fixture
async def fake():
    api = FakeOpenAI()
    app = web.Application()
    app.router.add_post("/v1/moderations", api.handle)
    app.router.add_post("/elsewhere", _clean)
    server = TestServer(app)
    await server.start_server()
    api.url = f"http://127.0.0.1:{server.port}/v1/moderations"
    yield api
    api.release.set()
    await server.close()


@pytest.fixture
async def session():
    s = SharedSession()
    yield s
    await s.close()


@pytest.fixture(autouse=True)
def api_key(monkeypatch):
    monkeypatch.setenv("TEST_MODERATION_KEY", TOKEN)


def moderator(session, url: str, **extra):
    doc = {
        "openAIModeration": {
            "url": url,
            "timeoutSeconds": 3,
            "authToken": {"secretRef": {"env": "TEST_MODERATION_KEY"}},
            **extra,
        }
    }
    return build_moderator(ModerationConfig.model_validate(doc), session)


async def test_not_flagged_posts_the_openai_request(fake, session):
    got = await moderator(session, fake.url).check(["hello", "how are you?"])
    assert got == ModerationResult(flagged=False, categories=[], failed=False)
    (call,) = fake.calls
    assert call["json"] == {"model": "omni-moderation-latest", "input": ["hello", "how are you?"]}
    assert call["headers"]["content-type"] == "application/json"


async def test_auth_header_carries_the_secret(fake, session):
    await moderator(session, fake.url).check(["hi"])
    assert fake.calls[0]["headers"]["authorization"] == f"Bearer {TOKEN}"


async def test_model_is_configurable(fake, session):
    await moderator(session, fake.url, model="text-moderation-stable").check(["hi"])
    assert fake.calls[0]["json"]["model"] == "text-moderation-stable"


async def test_flagged_reports_the_flagged_categories(fake, session):
    fake.answer = {
        "results": [
            result(False),
            result(True, violence=True, hate=True),
            result(True, self_harm=True, violence=True),
        ]
    }
    got = await moderator(session, fake.url).check(["a", "b", "c"])
    assert got == ModerationResult(flagged=True, categories=["hate", "self-harm", "violence"])


async def test_blank_texts_are_not_sent(fake, session):
    m = moderator(session, fake.url)
    assert await m.check([]) == ModerationResult(flagged=False)
    assert await m.check(["", "  \n"]) == ModerationResult(flagged=False)
    assert fake.calls == []
    await m.check(["", "real"])
    assert fake.calls[0]["json"]["input"] == ["real"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# Failure mode -> what the log says about it.
FAILURES = {
    "500": "answered HTTP 500",
    "list-categories": "'categories' is not an object",
    "429": "answered HTTP 429",
    "not-json": "not JSON",
    "no-results": "one result per input",
    "too-few": "one result per input",
    "no-flagged": "boolean 'flagged'",
    "bad-categories": "'categories' is not an object",
    "timeout": "timed out",
    "refused": "unreachable",
    "redirect": "answered HTTP 307",
}


def arrange(fake, mode: str) -> str:
    url = fake.url
    if mode in ("500", "429"):
        fake.status = int(mode)
    elif mode == "not-json":
        fake.answer = b"<html>oops</html>"
    elif mode == "no-results":
        fake.answer = {"error": {"message": "bad"}}
    elif mode == "too-few":
        fake.answer = {"results": [result(False)]}
    elif mode == "no-flagged":
        fake.answer = {"results": [{"categories": {}}, {"categories": {}}]}
    elif mode == "bad-categories":
        fake.answer = {"results": [{"flagged": True, "categories": ["hate"]}] * 2}
    elif mode == "list-categories":
        fake.answer = {"results": [{"flagged": False, "categories": []}] * 2}
    elif mode == "timeout":
        fake.hang = True
    elif mode == "refused":
        url = f"http://127.0.0.1:{free_port()}/v1/moderations"
    elif mode == "redirect":  # to an answer that would pass: following it must not happen
        fake.status, fake.location = 307, "/elsewhere"
    return url


@pytest.mark.parametrize("mode", FAILURES)
async def test_failures_fail_closed(fake, session, mode, caplog):
    url = arrange(fake, mode)
    with caplog.at_level(logging.WARNING, "aigw.guards.moderation"):
        got = await moderator(session, url, timeoutSeconds=0.2).check(["first", "second"])
    assert got == ModerationResult(flagged=True, categories=[], failed=True)
    (record,) = caplog.records
    assert record.getMessage().startswith("moderation check failed: ")
    assert FAILURES[mode] in record.getMessage()
    assert TOKEN not in caplog.text and "first" not in caplog.text


@pytest.mark.parametrize("mode", FAILURES)
async def test_failures_fail_open(fake, session, mode):
    url = arrange(fake, mode)
    got = await moderator(session, url, timeoutSeconds=0.2, failOpen=True).check(["a", "b"])
    assert got == ModerationResult(flagged=False, categories=[], failed=True)


def test_config_accepts_the_documented_shape():
    cfg = ModerationConfig.model_validate(
        {"openAIModeration": {"authToken": {"secretRef": {"env": "TEST_MODERATION_KEY"}}}}
    )
    p = cfg.open_ai_moderation
    assert p is not None
    assert (p.model, p.url, p.timeout_seconds, p.fail_open) == (
        "omni-moderation-latest",
        "https://api.openai.com/v1/moderations",
        3.0,
        False,
    )
    assert isinstance(build_moderator(cfg), OpenAIModerator)


@pytest.mark.parametrize(
    "doc, field, text",
    [
        ({}, "", "exactly one moderation service: 'openAIModeration'"),
        ({"azureContentSafety": {}}, "azureContentSafety", "Extra inputs"),
        ({"openAIModeration": {}}, "openAIModeration.authToken", "Field required"),
        (
            {"openAIModeration": {"authToken": {"secretRef": {"env": "K"}}, "url": "ftp://x/y"}},
            "openAIModeration.url",
            "http or https",
        ),
        (
            {"openAIModeration": {"authToken": {"secretRef": {"env": "K"}}, "timeoutSeconds": -3}},
            "openAIModeration.timeoutSeconds",
            "greater than 0",
        ),
        (
            {"openAIModeration": {"authToken": {"secretRef": {"env": "K", "inline": "v"}}}},
            "openAIModeration.authToken.secretRef",
            "exactly one",
        ),
    ],
)
def test_config_errors_name_the_field(doc, field, text):
    with pytest.raises(ValidationError) as info:
        ModerationConfig.model_validate(doc)
    (err,) = info.value.errors()
    assert ".".join(map(str, err["loc"])) == field
    assert text in err["msg"]


def test_missing_secret_stops_start_up(monkeypatch):
    monkeypatch.delenv("TEST_MODERATION_KEY")
    cfg = ModerationConfig.model_validate(
        {"openAIModeration": {"authToken": {"secretRef": {"env": "TEST_MODERATION_KEY"}}}}
    )
    with pytest.raises(SecretError, match="TEST_MODERATION_KEY"):
        build_moderator(cfg)


async def test_a_new_service_is_a_class_and_a_config_field(monkeypatch):
    class EchoConfig(ConfigModel):
        word: str

    class Echo:
        def __init__(self, config: EchoConfig, session: SharedSession) -> None:
            self.word = config.word

        async def check(self, texts: list[str]) -> ModerationResult:
            hit = any(self.word in t for t in texts)
            return ModerationResult(flagged=hit, categories=["echo"] if hit else [])

    monkeypatch.setitem(moderation._REGISTRY, "echo", Echo)

    class Extended(ModerationConfig):
        echo: EchoConfig | None = None

    m = build_moderator(Extended.model_validate({"echo": {"word": "bad"}}))
    assert await m.check(["a bad day"]) == ModerationResult(flagged=True, categories=["echo"])
    with pytest.raises(ValidationError, match="exactly one moderation service"):
        Extended.model_validate(
            {"echo": {"word": "x"}, "openAIModeration": {"authToken": {"secretRef": {"env": "K"}}}}
        )
