"""Streaming end to end: guards across chunk boundaries for every provider's stream, the
usage chunk, token metrics equal to what the mock reported, and usage in the access log."""

import json

import httpx
import openai
import orjson
import pytest

from extproc.mock import engine
from extproc.mock.dialects import discover
from tests.bootstraps import add_route
from tests.harness import Stack, load_bootstrap

pytestmark = pytest.mark.e2e

KEY = "sk-k"
PROVIDERS = {
    "openai": {"provider": "openai", "model": "gpt-4o-mini"},
    "anthropic": {"provider": "anthropic", "model": "claude-3-5-haiku-latest"},
    "gemini": {"provider": "gemini", "model": "gemini-2.0-flash"},
    "azure": {"provider": "azure-openai", "model": "gpt-4o"},
    "vertex": {"provider": "vertex-ai", "model": "gemini-2.0-flash", "project": "p"},
    "mistral": {"provider": "mistral", "model": "mistral-small-latest"},
}
GUARD = {
    "promptGuard": {
        "response": {
            "regex": {
                "action": "MASK",
                "builtins": ["CREDIT_CARD", "EMAIL", "PHONE_NUMBER", "SSN"],
                "matches": [{"pattern": r"ORD-\d{3}-\d{2}", "name": "ORDER"}],
            }
        }
    }
}
REJECT = {
    "promptGuard": {
        "response": {
            "customResponse": {"message": "That answer is not allowed"},
            "regex": {"action": "REJECT", "builtins": ["CREDIT_CARD"]},
        }
    }
}
PII_TEXT = (
    "Sure. Call (212) 555-0198 or mail jane.doe@example.com; the card 4111 1111 1111 1111 "
    "and SSN 536-90-4399 are on file for order ORD-123-45. Thanks!"
)
MASKED = (
    "Sure. Call <PHONE_NUMBER> or mail <EMAIL>; the card <CREDIT_CARD> "
    "and SSN <SSN> are on file for order <ORDER>. Thanks!"
)
SECRETS = ["(212) 555-0198", "212", "jane.doe", "example.com", "4111", "536-90", "4399", "ORD-123"]


@pytest.fixture(scope="module")
def stack():
    doc = load_bootstrap("mock.yaml")
    for name, settings in PROVIDERS.items():
        add_route(
            doc,
            name,
            f"/{name}/v1/chat/completions",
            [{"name": name, "auth": {"secretRef": {"inline": KEY}}, **settings}],
            policy=GUARD,
        )
        add_route(
            doc,
            f"{name}-plain",
            f"/{name}-plain/v1/chat/completions",
            [{"name": f"{name}-plain", "auth": {"secretRef": {"inline": KEY}}, **settings}],
            policy={"promptTokenEstimate": True},
        )
    add_route(
        doc,
        "reject",
        "/reject/v1/chat/completions",
        [{"name": "reject", "auth": {"secretRef": {"inline": KEY}}, **PROVIDERS["openai"]}],
        policy=REJECT,
    )
    s = Stack(doc).start()
    yield s
    s.stop()


def client(stack, prefix):
    return openai.OpenAI(base_url=f"{stack.url}/{prefix}/v1", api_key="c", max_retries=0, timeout=20)


def raw_stream(stack, prefix, headers=None, **body) -> bytes:
    payload = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "hi"}], **body}
    with httpx.stream(
        "POST",
        f"{stack.url}/{prefix}/v1/chat/completions",
        json=payload,
        headers={"authorization": "Bearer c", **(headers or {})},
        timeout=20,
    ) as r:
        assert r.status_code == 200
        return b"".join(r.iter_raw())


def sse_json(raw: bytes) -> list:
    out = []
    for block in raw.split(b"\n\n"):
        for line in block.split(b"\n"):
            if line.startswith(b"data: "):
                data = line[6:]
                out.append("[DONE]" if data == b"[DONE]" else json.loads(data))
    return out


@pytest.mark.parametrize("provider", list(PROVIDERS))
@pytest.mark.parametrize(
    "split", ["x-mock-chunk-bytes:3", "x-mock-chunk-bytes:17", "x-mock-split:40,41,97,150,151,152,300"]
)
def test_pii_split_across_chunks_is_masked_for_every_provider(stack, provider, split):
    name, value = split.split(":")
    headers = {"x-mock-content": PII_TEXT, name: value, "x-mock-chunk-delay-ms": "1"}
    raw = raw_stream(stack, provider, headers)
    chunks = sse_json(raw)
    # Every string the client gets but ids (not numbers: `created` may hold 4399).
    strings = orjson.dumps([_strings(c) for c in chunks]).decode()
    for secret in SECRETS:
        assert secret not in strings, f"{secret} reached the client"
    text = "".join(
        c["choices"][0]["delta"].get("content") or ""
        for c in chunks
        if isinstance(c, dict) and c.get("choices")
    )
    assert text == MASKED
    assert chunks[-1] == "[DONE]"


def _strings(value):
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        # Not ids: random, they may hold "212" as well as any number.
        return [s for k, v in value.items() for s in [k, *(_strings(v) if k != "id" else [])]]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


@pytest.mark.parametrize("provider", ["openai", "anthropic", "gemini"])
def test_sdk_stream_is_masked(stack, provider):
    stream = client(stack, provider).chat.completions.create(
        model="m",
        stream=True,
        messages=[{"role": "user", "content": "hi"}],
        extra_headers={"x-mock-content": PII_TEXT, "x-mock-chunk-bytes": "5"},
    )
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == MASKED


def test_reject_mid_stream_ends_with_error_then_done(stack):
    raw = raw_stream(
        stack,
        "reject",
        {"x-mock-content": "Fine so far. Your card is 4111 1111 1111 1111 ok", "x-mock-chunk-bytes": "4"},
    )
    assert b"4111" not in raw
    chunks = sse_json(raw)
    assert chunks[-1] == "[DONE]"
    assert chunks[-2]["error"]["message"] == "That answer is not allowed"
    assert chunks[-2]["error"]["code"] == "content_policy_violation"
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks[:-2] if c.get("choices"))
    assert text.startswith("Fine so far.") and "4111" not in text
    with pytest.raises(openai.APIError):
        for _ in client(stack, "reject").chat.completions.create(
            model="m",
            stream=True,
            messages=[{"role": "user", "content": "hi"}],
            extra_headers={"x-mock-content": "card 4111 1111 1111 1111"},
        ):
            pass


def test_usage_chunk_only_when_the_client_asked(stack):
    without = sse_json(raw_stream(stack, "openai-plain"))
    assert not [c for c in without if isinstance(c, dict) and c.get("usage")]
    sent = stack.mocks["openai-plain"].requests[-1]["body"]
    assert sent["stream_options"] == {"include_usage": True}, "the gateway asks the provider anyway"
    with_usage = sse_json(raw_stream(stack, "openai-plain", stream_options={"include_usage": True}))
    usage_chunks = [c for c in with_usage if isinstance(c, dict) and c.get("usage")]
    assert len(usage_chunks) == 1 and usage_chunks[0]["choices"] == []


def _mock_usage(stack, backend) -> tuple[int, int]:
    """Tokens the mock reported for every request it answered, recomputed from what it
    received (the mock's own engine and dialect), independently of the gateway."""
    dialects = {d.name: d for d in discover()}
    prompt = completion = 0
    for rec in stack.mocks[backend].requests:
        d = dialects[rec["dialect"]]
        params = d.match("POST", rec["path"])
        assert params is not None
        req = d.parse(rec["body"], params, rec["query"])
        forced = rec["headers"].get("x-mock-content")
        plan = engine.plan(req, forced)
        prompt += plan.prompt_tokens
        completion += plan.completion_tokens
    return prompt, completion


@pytest.mark.parametrize("provider", list(PROVIDERS))
def test_token_counters_equal_what_the_mock_reported(stack, provider):
    route = f"{provider}-plain"
    c = client(stack, route)

    def counted(kind):
        return stack.metric("aigw_tokens_total", route=route, gen_ai_token_type=kind)

    def requests():
        return stack.metric("aigw_requests_total", route=route, status="200")

    before = {k: counted(k) for k in ("input", "output", "total")}
    before_requests = requests()
    before_ttft = stack.metric("gen_ai_server_time_to_first_token_seconds_count", route=route)
    for i in range(3):
        c.chat.completions.create(model="m", messages=[{"role": "user", "content": f"count me {i}"}])
        list(
            c.chat.completions.create(
                model="m", stream=True, messages=[{"role": "user", "content": f"stream me please {i}"}]
            )
        )
    list(
        c.chat.completions.create(
            model="m",
            stream=True,
            stream_options={"include_usage": True},
            messages=[{"role": "user", "content": "with usage"}],
        )
    )
    prompt, completion = _mock_usage(stack, route)
    assert prompt > 0 and completion > 0

    from tests.harness import wait_for

    wait_for(lambda: requests() - before_requests == 7, 5, "all 7 requests to be recorded")
    assert counted("input") - before["input"] == prompt
    assert counted("output") - before["output"] == completion
    assert counted("total") - before["total"] == prompt + completion
    assert stack.metric("gen_ai_server_time_to_first_token_seconds_count", route=route) - before_ttft == 4
    labels = [k for k in stack.metrics() if k.startswith("aigw_tokens_total{") and f'route="{route}"' in k]
    assert all(
        f'gen_ai_provider_name="{PROVIDERS[provider]["provider"]}"' in k and f'backend="{route}"' in k
        for k in labels
    )


def test_usage_and_estimate_in_envoy_access_log(stack):
    raw = client(stack, "openai-plain").chat.completions.with_raw_response.create(
        model="gpt-4o",
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "How many tokens is this?"},
        ],
    )
    usage = raw.parse().usage
    line = stack.access_log(raw.headers["x-request-id"])
    assert line["route"] == "openai-plain" and line["provider"] == "openai"
    assert int(line["input_tokens"]) == usage.prompt_tokens
    assert int(line["output_tokens"]) == usage.completion_tokens
    assert int(line["total_tokens"]) == usage.total_tokens
    from extproc.tokens import estimate_prompt_tokens

    assert int(line["prompt_tokens_estimate"]) == estimate_prompt_tokens(
        {
            "model": "gpt-4o",
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "How many tokens is this?"},
            ],
        }
    )


def test_stream_cut_short_still_counts_what_was_seen(stack):
    route = "openai-plain"
    before = stack.metric("aigw_tokens_total", route=route, gen_ai_token_type="output")
    seen = []
    with pytest.raises((openai.APIError, httpx.HTTPError)):
        for chunk in client(stack, route).chat.completions.create(
            model="m",
            stream=True,
            messages=[{"role": "user", "content": "go on"}],
            extra_headers={
                "x-mock-reset": "mid",
                "x-mock-chunk-bytes": "100",
                "x-mock-chunk-delay-ms": "30",
                "x-mock-content": "one two three four five six seven eight nine ten",
            },
        ):
            seen += [chunk.choices[0].delta.content or ""] if chunk.choices else []
    assert "".join(seen), "the stream was cut after some text reached the client"
    from tests.harness import wait_for

    wait_for(
        lambda: stack.metric("aigw_tokens_total", route=route, gen_ai_token_type="output") > before,
        5,
        "the cut-short stream's tokens to be counted",
    )


# ---- a value split around another field (interleaved thinking), through the real stack ----

RAW: dict[str, bytes] = {}


def _aev(kind, **data) -> bytes:
    return f"event: {kind}\ndata: ".encode() + orjson.dumps({"type": kind, **data}) + b"\n\n"


def _ablock(i, kind, *deltas) -> bytes:
    start = {"type": kind, kind: ""}
    return (
        _aev("content_block_start", index=i, content_block=start)
        + b"".join(_aev("content_block_delta", index=i, delta=d) for d in deltas)
        + _aev("content_block_stop", index=i)
    )


def _thinking(i, text, sig) -> bytes:
    return _ablock(
        i,
        "thinking",
        {"type": "thinking_delta", "thinking": text},
        {"type": "signature_delta", "signature": sig},
    )


def _text(i, text) -> bytes:
    return _ablock(i, "text", {"type": "text_delta", "text": text})


RAW["anthropic"] = (
    _aev(
        "message_start",
        message={
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "model": "claude",
            "content": [],
            "usage": {"input_tokens": 5, "output_tokens": 1},
        },
    )
    + _text(0, "Your card is 4111 1111")
    + _thinking(1, "checking", "sig1")
    + _text(2, " 1111 1111 and mail jane.doe")
    + _thinking(3, "ok", "sig2")
    + _text(4, "@example.com, thanks.")
    + _aev("message_delta", delta={"stop_reason": "end_turn"}, usage={"output_tokens": 20})
    + _aev("message_stop")
)


def _gev(parts, finish=None) -> bytes:
    cand = {"content": {"role": "model", "parts": parts}, "index": 0}
    if finish:
        cand["finishReason"] = finish
    return b"data: " + orjson.dumps({"candidates": [cand], "modelVersion": "gemini-2.0-flash"}) + b"\n\n"


RAW["gemini"] = (
    _gev([{"text": "Your card is 4111 1111"}])
    + _gev([{"text": "hmm", "thought": True}])
    + _gev([{"text": " 1111 1111 and mail jane.doe"}])
    + _gev([{"text": "so", "thought": True}])
    + _gev([{"text": "@example.com, thanks."}], "STOP")
)


@pytest.fixture(scope="module")
def raw_stack():
    """Envoy and the processor in front of an upstream that answers a scripted stream
    (`x-mock-raw: <provider>` picks it)."""
    from aiohttp import web

    async def answer(request: web.Request) -> web.StreamResponse:
        await request.read()
        resp = web.StreamResponse(status=200, headers={"content-type": "text/event-stream"})
        await resp.prepare(request)
        await resp.write(RAW[request.headers["x-mock-raw"]])
        await resp.write_eof()
        return resp

    doc = load_bootstrap("mock.yaml")
    for name in RAW:
        for suffix, policy in (("", GUARD), ("-reject", REJECT)):
            add_route(
                doc,
                f"raw-{name}{suffix}",
                f"/raw-{name}{suffix}/v1/chat/completions",
                [{"name": f"raw-{name}{suffix}", "auth": {"secretRef": {"inline": KEY}}, **PROVIDERS[name]}],
                policy=policy,
            )
    s = Stack(doc)
    for mock in s.mocks.values():

        async def start(mock=mock):
            app = web.Application()
            app.router.add_route("*", "/{tail:.*}", answer)
            mock._runner = web.AppRunner(app, access_log=None)
            await mock._runner.setup()
            await web.TCPSite(mock._runner, "127.0.0.1", mock.port).start()

        mock._start = start  # type: ignore[method-assign]  # a scripted answer in place of the mock
    s.start()
    yield s
    s.stop()


@pytest.mark.parametrize("provider", list(RAW))
def test_a_value_split_around_thinking_is_masked_or_rejected(raw_stack, provider):
    # Anthropic interleaved thinking / Gemini thought parts between two pieces of the
    # answer: the client joins the answer's pieces, so the card and the address are whole
    # in what it reads, and the guard must see them whole too.
    raw = raw_stream(raw_stack, f"raw-{provider}", {"x-mock-raw": provider})
    chunks = sse_json(raw)
    content = "".join(
        c["choices"][0]["delta"].get("content") or ""
        for c in chunks
        if isinstance(c, dict) and c.get("choices")
    )
    assert b"4111" not in raw and b"jane.doe" not in raw and b"example.com" not in raw
    assert content == "Your card is <CREDIT_CARD> and mail <EMAIL>, thanks."
    assert chunks[-1] == "[DONE]"
    raw = raw_stream(raw_stack, f"raw-{provider}-reject", {"x-mock-raw": provider})
    chunks = sse_json(raw)
    assert b"4111" not in raw
    assert chunks[-2]["error"]["code"] == "content_policy_violation" and chunks[-1] == "[DONE]"
