"""The golden harness: every translation pair under tests/golden/, for every provider.

Layout of tests/golden/<provider>/ (the directory name is the registry name, e.g.
`azure-openai`); every case is named by its expected file, `<kind>_<case>.out.json`:

- `request_<case>.in.json` -> `.out.json`: `translate_request`. The input is not mutated
  and a second translation (a retry) gives the same body; the provider's mock dialect
  (extproc/mock/dialects, found by the provider's own request path) accepts the body.
- `request_shared_<name>.out.json`: the same, with the input tests/golden/requests/
  <name>.json, a canonical request every provider translates. A registered provider
  without that file fails `test_every_provider_expects_the_shared_requests`. `openai` and
  `openai-compatible` are exempt: they speak the canonical schema, so their golden would
  be the input itself; instead the shared requests must come back from them unchanged.
- `response_<case>.in.json` -> `.out.json`: `translate_response`, compared after
  `normalise` (generated ids, timestamps); the provider's answer is not mutated, and the
  official SDK parses the translation and dumps it back unchanged.
- `stream_<case>.sse` -> `.out.json`: the provider stream through the StreamTranscoder,
  normalised; a valid OpenAI stream whose chunks the SDK round-trips. The same chunks
  come out however the bytes are cut: random cuts (Hypothesis) for every stream, and
  every single cut plus one byte at a time for streams up to BYTE_BOUNDARY_LIMIT bytes.
- `error_<case>.in.json` -> `.out.json`: `translate_error`, with the upstream status
  and the status the client gets from cases.json.
- `errors.json`: a table of error cases, `[{"name"?, "status", "body", "expected_status",
  "expected"}]`; a string body is sent as is, any other as JSON.

`cases.json` (required) says how to build the provider and which model to translate for:

    {"settings": {...endpoint metadata...}, "model": "m",        # the provider's base
     "response": {"model": "m2", "normalise": false},            # optional, per kind
     "cases": {"request_tools": {"model": "m3", "settings": {...}}}}

A case's settings are the base settings updated with its kind's and then its own (one
level deep); the model and `normalise` come from the most specific layer naming them. A
case may also give `input` (another file in the directory, to translate one input under
other settings), `mock: false` (with a `note` saying why), and for error files `status`
and `expected_status`. `note` is free text anywhere. Unknown keys, cases.json entries
without a golden, and files no case reads fail `test_golden_layout_is_complete`, as does a
provider directory without request, response and stream goldens and some error case.

UPDATE_GOLDEN=1 rewrites every expected file (and errors.json entry) that differs, for
every provider; review the diff. Without it a mismatch fails with a unified diff.
"""

from __future__ import annotations

import copy
import functools
from typing import Any
from urllib.parse import parse_qsl

import openai.types.chat as oai
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from extproc.mock.dialects import discover
from extproc.providers import PROVIDERS
from tests.hypothesis_profiles import examples
from tests.provider_helpers import (
    GOLDEN,
    SHARED,
    ErrorRow,
    GoldenCase,
    assert_valid_openai_stream,
    check_error_row,
    check_golden,
    chunks_of,
    goldens,
    make_provider,
    normalise,
    read_golden,
    transcode,
)

GOLDENS = goldens()
REQUESTS = GOLDENS.of("request")
RESPONSES = GOLDENS.of("response")
STREAMS = GOLDENS.of("stream")
ERRORS = GOLDENS.of("error")
# Providers whose translation is the canonical request itself (see the docstring).
PASSTHROUGH = ("openai", "openai-compatible")
SHARED_REQUESTS = sorted(p.stem for p in SHARED.glob("*.json"))
# Every-cut checks are quadratic in the stream's length; all goldens today are far below.
BYTE_BOUNDARY_LIMIT = 8192
SYSTEM_ROLES = ("system", "developer")


def by_id(cases: list[GoldenCase]) -> Any:
    return pytest.mark.parametrize("case", cases, ids=[c.id for c in cases])


def wire(doc: Any) -> Any:
    """A body as the provider receives it (JSON on the wire)."""
    return orjson.loads(orjson.dumps(doc))


# ---- the layout itself -------------------------------------------------------------------


def test_golden_layout_is_complete() -> None:
    assert not GOLDENS.problems, "\n".join(GOLDENS.problems)
    providers = {p.name for p in GOLDEN.iterdir() if p.is_dir() and p != SHARED}
    for kind in ("request", "response", "stream"):
        assert {c.provider for c in GOLDENS.of(kind)} == providers, kind
    assert {c.provider for c in ERRORS} | {r.provider for r in GOLDENS.error_rows} == providers
    assert SHARED_REQUESTS, "tests/golden/requests/ holds the shared canonical requests"


def test_every_provider_expects_the_shared_requests() -> None:
    missing = [
        f"tests/golden/{provider}/request_shared_{name}.out.json"
        for provider in sorted(set(PROVIDERS) - set(PASSTHROUGH))
        for name in SHARED_REQUESTS
        if not (GOLDEN / provider / f"request_shared_{name}.out.json").exists()
    ]
    assert missing == [], "create them with UPDATE_GOLDEN=1 and review each"


@pytest.mark.parametrize("name", SHARED_REQUESTS)
@pytest.mark.parametrize("provider", PASSTHROUGH)
def test_passthrough_providers_send_shared_requests_unchanged(provider: str, name: str) -> None:
    assert provider in PROVIDERS
    canonical = read_golden(SHARED / f"{name}.json")
    before = copy.deepcopy(canonical)
    p = make_provider({"provider": provider, "auth": {"secretRef": {"inline": "k"}}})
    assert p.translate_request(canonical, canonical["model"]) == before
    assert canonical == before


# ---- requests ------------------------------------------------------------------------------


@by_id(REQUESTS)
def test_request_golden(case: GoldenCase) -> None:
    canonical = read_golden(case.input)
    before = copy.deepcopy(canonical)
    provider = case.make()
    body = provider.translate_request(canonical, case.model)
    assert canonical == before, "translate_request must not mutate its input (retries reuse it)"
    assert provider.translate_request(canonical, case.model) == body, "a retry must send the same body"
    check_golden(case.expected, body)


@by_id([c for c in REQUESTS if c.mock])
def test_mock_accepts_request_golden(case: GoldenCase) -> None:
    """The mock, written from the provider's API reference, takes what we send."""
    canonical = read_golden(case.input)
    provider = case.make()
    stream = bool(canonical.get("stream"))
    route, _, query = provider.request_path(case.model, stream).partition("?")
    dialect = next((d for d in discover([case.provider]) if d.match("POST", route) is not None), None)
    assert dialect is not None, f"no mock dialect for {case.provider} serves POST {route}"
    params = dialect.match("POST", route) or {}
    mreq = dialect.parse(
        wire(provider.translate_request(canonical, case.model)), params, dict(parse_qsl(query))
    )
    assert (mreq.model, mreq.stream) == (case.model, stream)
    starts_with_system = canonical["messages"][0]["role"] in SYSTEM_ROLES
    assert (mreq.turns[0][0] in SYSTEM_ROLES) == starts_with_system


# ---- responses -----------------------------------------------------------------------------


@by_id(RESPONSES)
def test_response_golden(case: GoldenCase) -> None:
    body = read_golden(case.input)
    before = copy.deepcopy(body)
    out = case.make().translate_response(body, case.model)
    assert body == before, "translate_response must not mutate the provider's answer"
    assert oai.ChatCompletion.model_validate(out).model_dump(exclude_unset=True) == out
    check_golden(case.expected, normalise(out) if case.normalise else out)


# ---- streams -------------------------------------------------------------------------------


@functools.cache
def whole_stream(case: GoldenCase) -> list[Any]:
    return stream_chunks(case, read_golden(case.input))


def stream_chunks(case: GoldenCase, stream: bytes, cuts: list[int] | None = None) -> list[Any]:
    chunks = chunks_of(transcode(case.make(), case.model, stream, cuts))
    return normalise(chunks) if case.normalise else chunks


@by_id(STREAMS)
def test_stream_golden(case: GoldenCase) -> None:
    chunks = stream_chunks(case, read_golden(case.input))
    assert_valid_openai_stream(chunks)
    for chunk in chunks[:-1]:
        if "error" not in chunk:
            assert oai.ChatCompletionChunk.model_validate(chunk).model_dump(exclude_unset=True) == chunk
    check_golden(case.expected, chunks)


@by_id(STREAMS)
@settings(max_examples=examples(150), deadline=None)
@given(data=st.data())
def test_stream_chunking_does_not_matter(case: GoldenCase, data: st.DataObject) -> None:
    stream = read_golden(case.input)
    cuts = data.draw(st.lists(st.integers(1, len(stream) - 1), max_size=40))
    assert stream_chunks(case, stream, cuts) == whole_stream(case)


@by_id([c for c in STREAMS if c.input.stat().st_size <= BYTE_BOUNDARY_LIMIT])
def test_stream_every_byte_boundary(case: GoldenCase) -> None:
    # Single cuts land inside every event, line ending and multi-byte character.
    stream = read_golden(case.input)
    whole = whole_stream(case)
    for cut in range(1, len(stream)):
        assert stream_chunks(case, stream, [cut]) == whole, f"cut at {cut}"
    assert stream_chunks(case, stream, list(range(1, len(stream)))) == whole, "one byte at a time"


# ---- errors --------------------------------------------------------------------------------


def error_body(body: Any) -> bytes:
    return body.encode() if isinstance(body, str) else orjson.dumps(body)


@by_id(ERRORS)
def test_error_golden(case: GoldenCase) -> None:
    status, doc = case.make().translate_error(case.status or 0, error_body(read_golden(case.input)))
    check_golden(case.expected, doc)
    assert status == case.expected_status, f"{case.provider}/cases.json: expected_status of {case.name}"


@pytest.mark.parametrize("row", GOLDENS.error_rows, ids=[r.id for r in GOLDENS.error_rows])
def test_error_table(row: ErrorRow) -> None:
    status, doc = row.make().translate_error(row.row["status"], error_body(row.row["body"]))
    check_error_row(row, status, doc)
