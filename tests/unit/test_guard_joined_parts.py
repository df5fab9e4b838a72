"""A message's text parts are read as the one text a model reads: a card or email split
across two parts (`"card 4111 1111"`, `" 1111 1111"`) used to pass a REJECT route, each
part being scanned alone. Now each part is still scanned alone, and the text around each
boundary joined: REJECT refuses a split value and MASK masks it in the parts themselves
(each label in the part where its value starts), keeping every part and its other keys.
Moderation also reads the joined text; the webhook keeps one message per part."""

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
from extproc.guards.slot_writers import SEAM_WINDOW, MessageParts, splice_spans
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


def test_the_webhook_keeps_one_message_per_part_and_masks_each_in_place():
    g = RequestGuards(RequestGuardConfig.model_validate({"webhook": {"url": "http://127.0.0.1:9"}}), "r")
    sent: list[dict] = []

    async def check_request(messages, headers):
        sent.extend(messages)
        masked = [{**m, "content": m["content"].replace("@example.com", "@[domain]")} for m in messages]
        return Verdict("mask", messages=masked)

    assert g.webhook is not None
    g.webhook.check_request = check_request  # type: ignore[method-assign]  # a fake webhook
    req = split_card_request()
    assert asyncio.run(g.apply(req, {}))
    # the short tokens first (the image's URL), then one message per part, as before
    assert [m["content"] for m in sent] == [
        "https://example.com/a.png",
        "charge card 4111 1111",
        " 1111 1111 and mail jane",
        ".doe@example.com today",
    ]
    parts = req["messages"][0]["content"]
    assert [p.get("text") for p in parts] == [
        "charge card 4111 1111",
        None,
        " 1111 1111 and mail jane",
        ".doe@[domain] today",
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
    assert seen == ["plan vio", "lence", "plan violence"]  # each part, then the joined text


# ---- what the joined reading must not break (helper-38's review) ---------------------------
NATURAL = [
    (["Email me at jane@corp.com", "Thanks!"], "Email me at <EMAIL>"),
    (["card 4111111111111111", "0 fees"], "card <CREDIT_CARD>"),
    (["see bob@example.org", "X marks it"], "see <EMAIL>"),
]


@pytest.mark.parametrize("texts, first", NATURAL)
def test_a_value_inside_one_part_is_found_whatever_its_neighbour_starts_with(texts, first):
    """Glued to the next part, `jane@corp.comThanks!` is no email and
    `41111111111111110` no card: each part is still read alone."""
    req: dict[str, Any] = {
        "model": "m",
        "messages": [{"role": "user", "content": [{"type": "text", "text": t} for t in texts]}],
    }
    assert asyncio.run(guards("MASK").apply(req, {}))
    assert req["messages"][0]["content"][0]["text"] == first
    with pytest.raises(GatewayError):
        asyncio.run(
            guards("REJECT").apply(
                {
                    "model": "m",
                    "messages": [{"role": "user", "content": [{"type": "text", "text": t} for t in texts]}],
                },
                {},
            )
        )


def test_a_custom_pattern_with_word_boundaries_still_matches_in_its_own_part():
    config = {"regex": {"action": "REJECT", "matches": [{"name": "P", "pattern": r"\bPROJECT-X\b"}]}}
    g = RequestGuards(RequestGuardConfig.model_validate(config), "r")
    req = {
        "model": "m",
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": t} for t in ("see", "PROJECT-X")]}
        ],
    }
    with pytest.raises(GatewayError):
        asyncio.run(g.apply(req, {}))


A, C = {"type": "text", "text": "card 4111 1111"}, {"type": "text", "text": " 1111 1111"}
DECOYS = {
    "an empty text part with a refusal key": [A, {"type": "text", "text": "", "refusal": "x"}, C],
    "a refusal key on a text part": [{**A, "refusal": "x"}, C],
    "a text key on a refusal part": [A, {"type": "refusal", "refusal": "", "text": "x"}, C],
    "a text key on an image part": [
        A,
        {"type": "image_url", "image_url": {"url": "https://e.x/i.png"}, "text": "x"},
        C,
    ],
}


@pytest.mark.parametrize("case", sorted(DECOYS))
def test_text_the_translators_never_send_does_not_break_up_a_split_value(case):
    req = {"model": "m", "messages": [{"role": "user", "content": copy.deepcopy(DECOYS[case])}]}
    with pytest.raises(GatewayError):
        asyncio.run(guards("REJECT").apply(req, {}))


def test_a_breakpoint_on_a_part_a_mask_empties_moves_to_the_part_before():
    req: dict[str, Any] = {
        "model": "m",
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "card 4111 1111"},
                    {"type": "text", "text": " 1111 1111", "cache_control": CACHED},
                    {"type": "text", "text": " thanks"},
                ],
            }
        ],
    }
    assert asyncio.run(guards("MASK").apply(req, {}))
    assert req["messages"][0]["content"] == [
        {"type": "text", "text": "card <CREDIT_CARD>", "cache_control": CACHED},
        {"type": "text", "text": "", "cache_control": CACHED},
        {"type": "text", "text": " thanks"},
    ]


def test_a_value_across_three_short_parts_is_found():
    texts = ["4111", " 1111 ", "1111", " 1111"]
    req: dict[str, Any] = {
        "model": "m",
        "messages": [{"role": "user", "content": [{"type": "text", "text": t} for t in texts]}],
    }
    assert asyncio.run(guards("MASK").apply(req, {}))
    assert [p["text"] for p in req["messages"][0]["content"]] == ["<CREDIT_CARD>", "", "", ""]


def test_only_the_text_near_a_boundary_is_read_again():
    """A long part is not scanned twice: a seam is at most a window on each side."""
    pieces = [
        ({"type": "text", "text": "a" * 50_000}, "text"),
        ({"type": "text", "text": "b" * 50_000}, "text"),
    ]
    seams = MessageParts(pieces, "user").seam_slots()
    assert [len(s.text) for s in seams] == [2 * SEAM_WINDOW]


def test_a_seam_counts_only_findings_across_a_boundary():
    pieces = [
        ({"type": "text", "text": "x" * 10 + " 555 0143 2222"}, "text"),
        ({"type": "text", "text": "ok"}, "text"),
    ]
    (seam,) = MessageParts(pieces, "user").seam_slots(window=8)
    from extproc.guards.regex_guard import Finding

    inside, across = Finding("P", 0, 4, 1.0), Finding("P", 6, 10, 1.0)
    assert seam.keep([inside, across]) == [across]


def test_a_quadratic_write_back_is_gone():
    """Many findings in long parts are written back in one pass (this took seconds)."""
    texts = ["1234 " * 40_000, "5678 " * 40_000]
    spans = [(i, i + 4, "<N>") for i in range(0, 400_000, 5)]
    out = splice_spans(texts, spans)
    assert out == ["<N> " * 40_000, "<N> " * 40_000]


# ---- the splice, for any parts and spans ----------------------------------------------------
pieces_st = st.lists(st.text(alphabet="ab12 ", max_size=6), min_size=2, max_size=5)


@given(pieces_st, st.data())
def test_splice_writes_what_masking_the_joined_text_writes(pieces, data):
    joined = "".join(pieces)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(joined)), max_size=6)))
    spans = [(cuts[i], cuts[i + 1], f"<{i}>") for i in range(0, len(cuts) - 1, 2)]
    want: list[str] = []
    pos = 0
    for start, end, label in spans:
        want += (joined[pos:start], label)
        pos = end
    want.append(joined[pos:])
    out = splice_spans(pieces, spans)
    assert "".join(out) == "".join(want)
    assert len(out) == len(pieces)
    ends = [sum(len(x) for x in pieces[: i + 1]) for i in range(len(pieces))]
    for start, _, label in spans:  # each label in the part where its span starts
        owner = next((i for i, end in enumerate(ends) if start < end), len(pieces) - 1)
        assert label in out[owner]
