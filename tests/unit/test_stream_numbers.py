"""Stream events are walked like JSON answers: integral numbers outside the ones the
gateway reads are scanned as their value, and strings where the gateway expects numbers
(`usage`, `created`) are scanned like any other (event_slots.chunk_slots)."""

from __future__ import annotations

import orjson
import pytest

from extproc.guarded_stream import response_stream
from extproc.guards.config import ResponseGuardConfig
from extproc.guards.pipeline import ResponseGuards

CARD = 4111111111111111


def guards(action: str) -> ResponseGuards:
    config = ResponseGuardConfig.model_validate({"regex": {"action": action, "builtins": ["CREDIT_CARD"]}})
    return ResponseGuards(config, "r")


def event(**extra) -> dict:
    return {
        "id": "c",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "m",
        "choices": [{"index": 0, "delta": {"content": "hi"}, "finish_reason": None}],
        **extra,
    }


async def streamed(action: str, ev: dict) -> list:
    rs = response_stream("r", guards(action), False, {})
    out = await rs.feed(b"data: " + orjson.dumps(ev) + b"\n\ndata: [DONE]\n\n", True)
    return [orjson.loads(e.removeprefix(b"data: ")) for e in out.split(b"\n\n") if e.startswith(b"data: {")]


@pytest.mark.parametrize(
    "ev",
    [
        event(x_event=CARD),
        event(x_event={"nested": [CARD]}),
        event(usage={"prompt_tokens": 1, "completion_tokens": 1, "note": "4111 1111 1111 1111"}),
        event(created="4111 1111 1111 1111"),
        {
            **event(),
            "choices": [{"index": 0, "delta": {"content": "hi", "x_num": CARD}, "finish_reason": None}],
        },
    ],
    ids=["top-level number", "nested number", "string in usage", "string created", "number in a delta"],
)
async def test_a_card_in_an_event_field_is_masked_or_rejected(ev):
    masked = orjson.dumps(await streamed("MASK", ev))
    assert b"4111" not in masked and b"<CREDIT_CARD>" in masked
    rejected = await streamed("REJECT", ev)
    assert b"4111" not in orjson.dumps(rejected)
    assert rejected[-1]["error"]["code"] == "content_policy_violation"


async def test_the_numbers_the_gateway_reads_pass_as_numbers():
    ev = event(
        usage={"prompt_tokens": 4111111111111111, "completion_tokens": 2, "total_tokens": 3}, created=CARD
    )
    (out,) = await streamed("MASK", ev)
    assert out["usage"]["prompt_tokens"] == CARD and out["created"] == CARD


async def test_a_card_as_a_number_inside_a_nested_delta_object_is_masked():
    ev = {
        **event(),
        "choices": [
            {
                "index": 0,
                "delta": {
                    "extra": {"n": CARD, "list": [CARD]},
                    "thinking_blocks": [{"index": 0, "type": "thinking"}],
                },
                "finish_reason": None,
            }
        ],
    }
    (out,) = await streamed("MASK", ev)
    delta = out["choices"][0]["delta"]
    assert delta["extra"] == {"n": "<CREDIT_CARD>", "list": ["<CREDIT_CARD>"]}
    assert delta["thinking_blocks"][0]["index"] == 0  # a name, left alone


async def test_an_event_of_more_text_fields_than_the_gateway_follows_ends_the_stream():
    # Each nested text string gets its own guard until the choice finishes: thousands of
    # them in one event would cost time and memory for the rest of the stream.
    from extproc.stream_fields import MAX_TEXT_FIELDS

    nested = [{"text": f"part {i}"} for i in range(MAX_TEXT_FIELDS + 1)]
    ev = {**event(), "choices": [{"index": 0, "delta": {"x": nested}, "finish_reason": None}]}
    out = await streamed("MASK", ev)
    assert out[-1]["error"]["code"] == "unguardable_response"
    assert not any("part 1" in orjson.dumps(o).decode() for o in out)


async def _streamed_arguments(action: str, args: str, step: int) -> str:
    """A tool call's arguments streamed `step` characters an event: what a client joins
    (and the error code, if the stream was ended)."""
    env = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m"}
    start = {"index": 0, "id": "call_1", "type": "function", "function": {"name": "pay", "arguments": ""}}
    events = [{**env, "choices": [{"index": 0, "delta": {"tool_calls": [start]}, "finish_reason": None}]}]
    for i in range(0, len(args), step):
        piece = {"index": 0, "function": {"arguments": args[i : i + step]}}
        events.append(
            {**env, "choices": [{"index": 0, "delta": {"tool_calls": [piece]}, "finish_reason": None}]}
        )
    events.append({**env, "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]})
    raw = b"".join(b"data: " + orjson.dumps(e) + b"\n\n" for e in events) + b"data: [DONE]\n\n"
    out = await response_stream("r", guards(action), False, {}).feed(raw, True)
    joined = ""
    for e in out.split(b"\n\n"):
        if e.startswith(b"data: {"):
            doc = orjson.loads(e.removeprefix(b"data: "))
            for choice in doc.get("choices") or []:
                for call in (choice.get("delta") or {}).get("tool_calls") or []:
                    joined += (call.get("function") or {}).get("arguments") or ""
            if "error" in doc:
                joined += f" <error {doc['error']['code']}>"
    return joined


@pytest.mark.parametrize("step", [1, 3, 200])
@pytest.mark.parametrize(
    "args, masked",
    [
        ('{"card": 4.111111111111111e15}', '{"card": "<CREDIT_CARD>"}'),
        ('{"card": 41111111111111110e-1, "x": 1.5e3}', '{"card": "<CREDIT_CARD>", "x": 1.5e3}'),
        (
            '{"n": 4111111111111111.0, "y": 2.0}',
            '{"n": "<CREDIT_CARD>", "y": 2.0}',
        ),  # was '"<CREDIT_CARD>".0'
        (
            '{"s": "4.111111111111111e15 as text", "t": 1e2}',
            '{"s": "4.111111111111111e15 as text", "t": 1e2}',
        ),
    ],
)
async def test_streamed_arguments_read_a_number_as_its_integer(args, masked, step):
    # Requests and JSON answers read `4.111111111111111e15` as the card it stands for; a
    # streamed tool call read it as written, so it reached the client.
    assert await _streamed_arguments("MASK", args, step) == masked
    if "<CREDIT_CARD>" in masked:
        rejected = await _streamed_arguments("REJECT", args, step)
        assert "4.111" not in rejected and "41111" not in rejected
        assert rejected.endswith("<error content_policy_violation>")
