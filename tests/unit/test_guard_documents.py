"""Text documents sent as base64 media (`file.file_data`, `image_url.url`): the guards read
them decoded, and write masks back encoded. They used to be skipped as binary, so a
`text/plain` file carried a card number past a REJECT guard to Gemini, which reads it."""

import asyncio
import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from extproc.errors import GatewayError
from extproc.guards.config import RequestGuardConfig
from extproc.guards.pipeline import RequestGuards
from extproc.guards.text_documents import text_document
from extproc.guards.webhook import Verdict

CARD, EMAIL = "4111 1111 1111 1111", "bob@example.com"


def b64(text: str | bytes) -> str:
    return base64.b64encode(text.encode() if isinstance(text, str) else text).decode()


def guards(action: str) -> RequestGuards:
    config = {"regex": {"action": action, "builtins": ["CREDIT_CARD", "EMAIL"]}}
    return RequestGuards(RequestGuardConfig.model_validate(config), "r")


def with_part(part: dict) -> dict:
    return {
        "model": "gemini-2.5-flash",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "read"}, part]}],
    }


def file_part(file_data: str, **extra: str) -> dict:
    return {"type": "file", "file": {"file_data": file_data, **extra}}


TEXT_FILES = [
    pytest.param(file_part("data:text/plain;base64," + b64(f"card: {CARD}\n")), id="text/plain file"),
    pytest.param(
        file_part("data:text/csv;charset=UTF-8;base64," + b64(f"name,card\nbob,{CARD}\n")), id="csv, utf-8"
    ),
    pytest.param(file_part("data:application/json;base64," + b64(f'{{"card": "{CARD}"}}')), id="json"),
    pytest.param(file_part("data:application/ld+json;base64," + b64(f'{{"c": "{CARD}"}}')), id="+json"),
    pytest.param(file_part("data:text/plain;base64," + b64(CARD)), id="short (under 64 characters)"),
    pytest.param(file_part(b64(f"card {CARD}"), filename="notes.txt"), id="bare base64, .txt filename"),
    pytest.param(
        file_part("data:text/plain;base64,\n" + b64("x " * 40 + CARD).replace("A", "A\n")), id="wrapped"
    ),
    pytest.param(
        file_part("data:text/plain;base64," + b64(f"card {CARD}").replace("+", "-").replace("/", "_")),
        id="url-safe",
    ),
    pytest.param(
        {"type": "image_url", "image_url": {"url": "data:text/plain;base64," + b64(f"card {CARD}")}},
        id="image_url",
    ),
    pytest.param(
        {"type": "image_url", "image_url": "data:text/markdown;base64," + b64(f"# {CARD}")},
        id="image_url string",
    ),
    pytest.param(
        file_part("data:text/plain;base64," + b64(("\ufeff" + f"card {CARD}").encode())), id="utf-8 BOM"
    ),
    *(
        pytest.param(file_part(b64(f"card: {CARD}"), filename=name), id=f"bare base64, {name}")
        for name in ("customer.yaml", "app.log", "data.jsonl", "main.go", "tool.rb", ".env", "Makefile")
    ),
    *(
        pytest.param(file_part(f"data:{media};base64," + b64(f"card: {CARD}")), id=media)
        for media in (
            "application/x-ndjson",
            "application/x-ruby",
            "application/typescript",
            "message/rfc822",
        )
    ),
    pytest.param(
        file_part("data:application/octet-stream;base64," + b64(f"card {CARD}"), filename="notes.txt"),
        id="untyped data URL, .txt filename",
    ),
    pytest.param(file_part("data:text/plain;base64," + b64(f"card {CARD}!").rstrip("=")), id="unpadded"),
    pytest.param(file_part("DATA:Text/Plain;BASE64," + b64(f"card {CARD}")), id="upper case"),
]


@pytest.mark.parametrize("part", TEXT_FILES)
def test_a_text_document_is_rejected_by_a_reject_guard(part):
    with pytest.raises(GatewayError) as err:
        asyncio.run(guards("REJECT").apply(with_part(part), {}))
    assert err.value.status == 403 and CARD not in err.value.message


@pytest.mark.parametrize("part", TEXT_FILES)
def test_a_text_document_is_masked_and_encoded_back(part):
    req = with_part(part)
    assert asyncio.run(guards("MASK").apply(req, {}))
    sent = req["messages"][0]["content"][1]
    value = sent["file"]["file_data"] if "file" in sent else sent["image_url"]
    value = value["url"] if isinstance(value, dict) else value
    found = text_document(value, sent.get("file", {}).get("filename"))
    assert found is not None
    header, text = found
    assert "<CREDIT_CARD>" in text and CARD not in text and "4111" not in text
    assert value.startswith(header)  # the same data-URL header (and media type) as sent


@pytest.mark.parametrize(
    "file_data, why",
    [
        ("data:text/plain;charset=utf-16;base64," + b64(CARD.encode("utf-16")), "charset is utf-16"),
        ("data:text/plain;base64," + b64(CARD.encode("utf-16")), "not UTF-8"),
        ("data:text/plain;base64," + b64(b"\xff\xfe" + bytes(70)), "not UTF-8"),
        ("data:text/plain;base64,***not base64***", "not valid base64"),
        # A decoder that stopped at the first padding would read only "hello!!".
        ("data:text/plain;base64," + b64("hello!!") + b64(f"card {CARD}"), "not valid base64"),
    ],
)
def test_a_text_document_the_guards_cannot_read_is_refused_not_passed(file_data, why):
    with pytest.raises(GatewayError) as err:
        asyncio.run(guards("MASK").apply(with_part(file_part(file_data)), {}))
    assert err.value.status == 400 and err.value.code == "unguardable_request" and why in err.value.message


@pytest.mark.parametrize(
    "part",
    [
        pytest.param(file_part("data:image/png;base64," + b64(f"card {CARD} " * 8)), id="png"),
        pytest.param(file_part("data:application/pdf;base64," + b64(f"%PDF {CARD} " * 8)), id="pdf"),
        pytest.param(file_part(b64(f"card {CARD} " * 8), filename="scan.pdf"), id="bare, .pdf"),
        pytest.param(
            file_part("data:application/pdf;base64," + b64(f"%PDF {CARD} " * 8), filename="notes.txt"),
            id="pdf named .txt (its type says binary)",
        ),
        pytest.param(
            {"type": "input_audio", "input_audio": {"data": b64(f"{CARD} " * 8), "format": "wav"}}, id="audio"
        ),
    ],
)
def test_media_the_guards_cannot_read_stays_as_it_was(part):
    """Binary media are still bytes, not text (the README's table): never decoded."""
    req = with_part(part)
    before = repr(req)
    assert not asyncio.run(guards("REJECT").apply(req, {}))
    assert repr(req) == before


def test_the_webhook_reads_a_text_document_and_its_masks_are_encoded_back():
    g = RequestGuards(RequestGuardConfig.model_validate({"webhook": {"url": "http://127.0.0.1:9"}}), "r")
    sent = []

    async def check_request(messages, headers):
        sent.extend(messages)
        return Verdict(
            "mask",
            messages=[{"role": m["role"], "content": m["content"].replace(EMAIL, "***")} for m in messages],
        )

    assert g.webhook is not None
    g.webhook.check_request = check_request  # type: ignore[method-assign]  # a fake webhook
    req = with_part(file_part("data:text/plain;base64," + b64(f"mail {EMAIL}")))
    assert asyncio.run(g.apply(req, {}))
    assert {"role": "user", "content": f"mail {EMAIL}"} in sent
    assert req["messages"][0]["content"][1]["file"]["file_data"] == "data:text/plain;base64," + b64(
        "mail ***"
    )


@given(
    st.text(), st.sampled_from(["text/plain", "text/csv;charset=utf-8", "application/json", "text/x-python"])
)
def test_any_text_round_trips_through_a_data_url(text, media):
    header = f"data:{media};base64,"
    assert text_document(header + b64(text)) == (header, text.removeprefix("\ufeff"))


def test_an_unreadable_text_document_in_an_answer_is_a_502_not_a_400():
    from extproc.guards.config import ResponseGuardConfig
    from extproc.guards.pipeline import ResponseGuards

    guards = ResponseGuards(
        ResponseGuardConfig.model_validate({"regex": {"action": "MASK", "builtins": ["EMAIL"]}}), "r"
    )
    part = file_part("data:text/plain;charset=utf-16;base64," + b64("x".encode("utf-16")))
    answer = {"choices": [{"index": 0, "message": {"role": "assistant", "content": [part]}}]}
    with pytest.raises(GatewayError) as err:
        asyncio.run(guards.apply(answer, {}))
    assert err.value.status == 502 and err.value.code == "unguardable_response"
