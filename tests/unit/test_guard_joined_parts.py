"""A message's text parts are read as the one text a model reads: a card or email split
across two parts (`"card 4111 1111"`, `" 1111 1111"`) used to pass a REJECT route, each
part being scanned alone. Now REJECT refuses it and MASK masks it in the parts themselves
(each label in the part where its value starts), keeping every part and its other keys;
the webhook and moderation see the joined text too."""

import asyncio
import copy
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from extproc.errors import GatewayError
from extproc.guards.config import RequestGuardConfig, ResponseGuardConfig
from extproc.guards.moderation import ModerationResult
from extproc.guards.pipeline import RequestGuards, ResponseGuards
from extproc.guards.slot_writers import JoinedTextSlot
from extproc.guards.webhook import Verdict

IMAGE = {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}
CACHED = {"type": "ephemeral"}


def guards(action: str) -> RequestGuards:
    config = {"regex": {"action": action, "builtins": ["CREDIT_CARD", "EMAIL"]}}
    return RequestGuards(RequestGuardConfig.model_validate(config), "r")


def split_card_request() -> dict:
    return {
        "model": "m",
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "charge card 4111 1111", "cache_control": CACHED},
                    IMAGE,
                    {"type": "text", "text": " 1111 1111 and mail jane"},
                    {"type": "text", "text": ".doe@example.com today"},
                ],
            }
        ],
    }


def test_a_value_split_across_parts_is_refused_on_a_reject_route():
    with pytest.raises(GatewayError) as raised:
        asyncio.run(guards("REJECT").apply(split_card_request(), {}))
    assert raised.value.code == "content_policy_violation"


def test_a_value_split_across_parts_is_masked_in_the_parts_themselves():
    req = split_card_request()
    assert asyncio.run(guards("MASK").apply(req, {}))
    parts = req["messages"][0]["content"]
    assert parts == [
        {"type": "text", "text": "charge card <CREDIT_CARD>", "cache_control": CACHED},
        IMAGE,
        {"type": "text", "text": " and mail <EMAIL>"},
        {"type": "text", "text": " today"},
    ]


def test_values_inside_one_part_are_masked_in_place_as_before():
    req: dict[str, Any] = {
        "model": "m",
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "a: 4111 1111 1111 1111."},
                    {"type": "text", "text": " b: bob@example.com"},
                ],
            }
        ],
    }
    assert asyncio.run(guards("MASK").apply(req, {}))
    assert [p["text"] for p in req["messages"][0]["content"]] == ["a: <CREDIT_CARD>.", " b: <EMAIL>"]


def test_an_answer_s_refusal_parts_are_joined_too():
    response = ResponseGuards(
        ResponseGuardConfig.model_validate({"regex": {"action": "REJECT", "builtins": ["CREDIT_CARD"]}}), "r"
    )
    completion = {
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": [
                        {"type": "text", "text": "it is 4111 1111"},
                        {"type": "refusal", "refusal": " 1111 1111"},
                    ],
                },
            }
        ]
    }
    with pytest.raises(GatewayError):
        asyncio.run(response.apply(completion, {}))


def test_the_webhook_sees_one_message_and_its_mask_goes_back_into_the_parts():
    g = RequestGuards(RequestGuardConfig.model_validate({"webhook": {"url": "http://127.0.0.1:9"}}), "r")
    sent: list[dict] = []

    async def check_request(messages, headers):
        sent.extend(messages)
        masked = [{**m, "content": m["content"].replace("4111 1111 1111 1111", "[card]")} for m in messages]
        return Verdict("mask", messages=masked)

    assert g.webhook is not None
    g.webhook.check_request = check_request  # type: ignore[method-assign]  # a fake webhook
    req = split_card_request()
    assert asyncio.run(g.apply(req, {}))
    # the conversation (after the short tokens: the image's URL) is one message
    assert sent == [
        {"role": "user", "content": "https://example.com/a.png"},
        {"role": "user", "content": "charge card 4111 1111 1111 1111 and mail jane.doe@example.com today"},
    ]
    parts = req["messages"][0]["content"]
    assert [p.get("text") for p in parts] == [
        "charge card [card]",
        None,
        " and mail jane",
        ".doe@example.com today",
    ]
    assert parts[0]["cache_control"] == CACHED


def test_moderation_judges_the_joined_text():
    config = {
        "moderation": {
            "openAIModeration": {"url": "http://127.0.0.1:9", "authToken": {"secretRef": {"inline": "k"}}}
        }
    }
    g = RequestGuards(RequestGuardConfig.model_validate(config), "r")
    seen: list[str] = []

    async def check(texts):
        seen.extend(texts)
        return ModerationResult(flagged=any("plan violence" in t for t in texts))

    assert g.moderator is not None
    g.moderator.check = check  # type: ignore[method-assign]  # a fake moderator
    req = {
        "model": "m",
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": t} for t in ("plan vio", "lence")]}
        ],
    }
    with pytest.raises(GatewayError):
        asyncio.run(g.apply(req, {}))
    assert seen == ["plan violence"]


# ---- the splice, for any parts and spans ----------------------------------------------------
pieces_st = st.lists(st.text(alphabet="ab12 ", max_size=6), min_size=2, max_size=5)


@given(pieces_st, st.data())
def test_set_found_writes_what_masking_the_joined_text_writes(pieces, data):
    parts = [{"type": "text", "text": p} for p in pieces]
    slot = JoinedTextSlot([(p, "text") for p in parts], "user")
    joined = slot.text
    cuts = sorted(data.draw(st.lists(st.integers(0, len(joined)), max_size=6)))
    spans = [(cuts[i], cuts[i + 1], f"<{i}>") for i in range(0, len(cuts) - 1, 2)]
    want: list[str] = []
    pos = 0
    for start, end, label in spans:
        want += (joined[pos:start], label)
        pos = end
    want.append(joined[pos:])
    slot.set_found(spans)
    assert "".join(p["text"] for p in parts) == "".join(want) == slot.text
    ends = [sum(len(x) for x in pieces[: i + 1]) for i in range(len(pieces))]
    for start, _, label in spans:  # each label in the part where its span starts
        owner = next((i for i, end in enumerate(ends) if start < end), len(pieces) - 1)
        assert label in parts[owner]["text"]


@given(pieces_st, st.text(alphabet="ab12 <>", max_size=20))
def test_set_writes_any_new_joined_text(pieces, new):
    parts = [{"type": "text", "text": p} for p in pieces]
    slot = JoinedTextSlot([(p, "text") for p in copy.deepcopy(parts)], "user")
    slot.set(new)
    assert "".join(part["text"] for part, _ in slot.pieces) == new == slot.text
