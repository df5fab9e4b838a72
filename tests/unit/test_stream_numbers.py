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
