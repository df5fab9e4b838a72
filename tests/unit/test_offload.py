"""extproc/offload.py: a large request is parsed and translated on the large-request
thread, with the same result as on the loop, while the loop's other tasks go on."""

from __future__ import annotations

import contextvars
import threading

import pytest

from extproc import canonical, offload
from extproc.guards.config import RequestGuardConfig, ResponseGuardConfig
from extproc.guards.pipeline import RequestGuards, ResponseGuards
from extproc.route_filter import RouteStream
from extproc.settings import ProcessorSettings
from extproc.upstream_filter import UpstreamStream
from tests import filter_fakes as F
from tests.loop_turns import turns_while

SETTINGS = ProcessorSettings()
ANTHROPIC_HOST = F.host_metadata({"name": "ant", "provider": "anthropic"})
_who: contextvars.ContextVar[str] = contextvars.ContextVar("who", default="")


def many_messages(n: int) -> dict:
    roles = ("user", "assistant")
    return {"model": "m", "messages": [{"role": roles[i % 2], "content": f"hi {i}"} for i in range(n)]}


@pytest.fixture
def parse_threads(monkeypatch):
    """The threads parse_request ran on (as the two filters call it)."""
    threads: list[int] = []
    real = canonical.parse_request

    def spy(body: bytes) -> dict:
        threads.append(threading.get_ident())
        return real(body)

    for module in ("extproc.route_filter", "extproc.upstream_filter"):
        monkeypatch.setattr(f"{module}.parse_request", spy)
    return threads


async def test_small_work_runs_here_and_large_work_on_the_thread_with_context():
    _who.set("caller")

    def where() -> tuple[int, str]:
        return threading.get_ident(), _who.get()

    assert await offload.run(offload.LARGE_BODY, where) == (threading.get_ident(), "caller")
    thread, who = await offload.run(offload.LARGE_BODY + 1, where)
    assert thread != threading.get_ident() and who == "caller"


async def test_an_error_on_the_thread_reaches_the_caller():
    with pytest.raises(canonical.GatewayError) as err:
        await offload.run(offload.LARGE_BODY + 1, canonical.parse_request, b"[" * (offload.LARGE_BODY + 1))
    assert err.value.status == 400


async def test_route_filter_parses_a_large_body_on_the_thread_with_the_same_reply(parse_threads):
    async def reply(body: dict):
        stream = RouteStream(F.gateway(), SETTINGS)
        await stream.request_headers(F.request_headers(F.client_headers(), route_name="chat"))
        return await stream.request_body(F.request_body(body))

    small, large = many_messages(10), many_messages(20_000)
    assert len(F.request_body(large).request_body.body) > offload.LARGE_BODY
    small_reply = await reply(small)
    large_reply = await reply(large)
    assert parse_threads[0] == threading.get_ident() != parse_threads[1]
    assert small_reply.WhichOneof("response") == large_reply.WhichOneof("response") == "request_body"


async def test_upstream_filter_translates_a_large_body_on_the_thread(parse_threads):
    stream = UpstreamStream(F.gateway(), SETTINGS)
    await stream.request_headers(
        F.request_headers(F.client_headers(), upstream_host_metadata=ANTHROPIC_HOST, route_name="chat")
    )
    reply = await stream.request_body(F.request_body(many_messages(20_000)))
    assert parse_threads and parse_threads[0] != threading.get_ident()
    sent = F.new_body(reply)
    assert len(sent["messages"]) == 20_000 and sent["messages"][1] == {
        "role": "assistant",
        "content": [{"type": "text", "text": "hi 1"}],
    }
    assert F.set_headers(reply)[":path"] == "/v1/messages"


async def test_direct_mode_translates_a_large_body_on_the_thread_and_the_loop_runs_meanwhile():
    # A one-endpoint Anthropic route: parsing, checking and translating 60,000 messages
    # is pure Python, handed the GIL in slices: other tasks on the loop run in between.
    stream = RouteStream(F.gateway(direct=True), SETTINGS)
    headers = F.client_headers(F.ANTHROPIC_PATH)
    await stream.request_headers(F.request_headers(headers, route_name="anthropic", cluster_name="anthropic"))
    reply, turns = await turns_while(stream.request_body(F.request_body(many_messages(60_000))))
    assert reply.WhichOneof("response") == "request_body"
    assert len(F.new_body(reply)["messages"]) == 60_000
    assert turns > 1


# Custom patterns only: every text is cheap enough to scan inline (no Presidio).
_EMAIL_GUARD = {
    "regex": {
        "action": "MASK",
        "matches": [
            {"pattern": r"[a-z0-9]+@example\.com", "name": "MAIL"},
            {"pattern": "sk-[a-z]{8}", "name": "K"},
        ],
    }
}


def mailing(n: int) -> dict:
    return {
        "model": "m",
        "messages": [
            {"role": "user", "content": f"write to a{i}@example.com, key sk-abcdefgh"} for i in range(n)
        ],
    }


async def test_a_large_request_is_guarded_on_the_thread_with_the_same_masks():
    # 20,000 short texts, each cheap enough to scan inline: on the loop, all of them held
    # every other stream (100,000 took over a second); now the walk, the scans and the
    # write-back run on the large-request thread, and the masks are the same.
    guards = RequestGuards(RequestGuardConfig.model_validate(_EMAIL_GUARD), "r")
    here, there = mailing(20_000), mailing(20_000)
    assert await guards.apply(here, {}, 0)
    changed, turns = await turns_while(guards.apply(there, {}, offload.LARGE_BODY + 1))
    assert changed and here == there and turns > 1
    assert there["messages"][7]["content"] == "write to <MAIL>, key <K>"


async def test_a_large_answer_is_guarded_on_the_thread_with_the_same_masks():
    guards = ResponseGuards(ResponseGuardConfig.model_validate(_EMAIL_GUARD), "r")

    def answer() -> dict:
        messages = mailing(20_000)["messages"]
        return {
            "choices": [{"index": i, "message": {"role": "assistant", **m}} for i, m in enumerate(messages)]
        }

    here, there = answer(), answer()
    assert await guards.apply(here, {}, 0)
    changed, turns = await turns_while(guards.apply(there, {}, offload.LARGE_BODY + 1))
    assert changed and here == there and turns > 1


async def test_a_large_provider_answer_is_translated_on_the_thread(monkeypatch):
    # An Anthropic answer of 20,000 tool calls (~900 KB, under Envoy's 1 MiB buffer):
    # translating it is pure Python proportional to its blocks.
    from extproc.providers import anthropic

    threads: list[int] = []
    real = anthropic.Anthropic.translate_response

    def spy(self, *args, **kwargs):
        threads.append(threading.get_ident())
        return real(self, *args, **kwargs)

    monkeypatch.setattr(anthropic.Anthropic, "translate_response", spy)
    stream = RouteStream(F.gateway(direct=True), SETTINGS)
    headers = F.client_headers(F.ANTHROPIC_PATH)
    await stream.request_headers(F.request_headers(headers, route_name="anthropic", cluster_name="anthropic"))
    await stream.request_body(F.request_body(F.CANONICAL))
    await stream.response_headers(
        F.response_headers({":status": "200", "content-type": "application/json", "content-length": "1"})
    )
    answer = F.anthropic_message("", stop_reason="tool_use")
    answer["content"] = [
        {"type": "tool_use", "id": f"toolu_{i}", "name": "lookup", "input": {"q": i}} for i in range(20_000)
    ]
    body = F.response_body(answer)
    assert len(body.response_body.body) > offload.LARGE_BODY
    reply = await stream.response_body(body)
    out = F.new_body(reply)
    assert len(out["choices"][0]["message"]["tool_calls"]) == 20_000
    assert threads and threads[0] != threading.get_ident()


async def test_the_collector_is_paused_while_large_work_runs_and_restored_after():
    # Megabytes of parsing set off full collections one after another, each holding the
    # GIL (and so the loop): the collector waits until the large work is done.
    import gc

    def seen() -> bool:
        return gc.isenabled()

    def fails() -> None:
        raise ValueError("boom")

    assert gc.isenabled()
    assert await offload.run(offload.LARGE_BODY + 1, seen) is False
    assert gc.isenabled()
    with pytest.raises(ValueError):
        await offload.run(offload.LARGE_BODY + 1, fails)
    assert gc.isenabled()
    assert await offload.run(offload.LARGE_BODY, seen) is True  # small work: untouched
    gc.disable()
    try:  # paused by someone else: left paused
        assert await offload.run(offload.LARGE_BODY + 1, seen) is False
        assert not gc.isenabled()
    finally:
        gc.enable()
