"""The gateway's own secrets never reach a client: extproc.redaction.

A leak is any run of FRAGMENT characters of a secret that reaches MASKED_TAIL characters
past its well-known prefix, or a masked echo showing its last characters. Every test
below checks the output with `leaks`, which looks for exactly that, independently of the
redactor's own search.
"""

from __future__ import annotations

import asyncio
import base64
import os
import random
import string
import time

import orjson
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from extproc import redaction
from extproc import secrets as secret_store
from extproc.guarded_stream import response_stream
from extproc.redaction import MARK, Redactor
from extproc.redaction_patterns import FRAGMENT
from extproc.secrets import Secret, SecretRef
from extproc.sse import SSEEvent
from tests.hypothesis_profiles import examples

_ALPHABET = string.ascii_letters + string.digits + "-_"
_rng = random.Random(7)


def key(prefix: str = "sk-proj-", n: int = 48) -> str:
    return prefix + "".join(_rng.choice(_ALPHABET) for _ in range(n))


OPENAI = key("sk-proj-", 156)
ANTHROPIC = key("sk-ant-api03-", 95)
GEMINI = "AIza" + "".join(_rng.choice(_ALPHABET) for _ in range(35))
KEYS = [OPENAI, ANTHROPIC, GEMINI]
PUBLIC = {OPENAI: len("sk-proj-"), ANTHROPIC: len("sk-ant-api03-"), GEMINI: 0}


def leaks(secret: str, text: str) -> list[str]:
    """Every run of FRAGMENT characters of `secret` (past its public prefix) in `text`, and
    a mask followed by its last four characters."""
    public = PUBLIC.get(secret, 0)
    found = [
        secret[i : i + FRAGMENT]
        for i in range(max(0, public - FRAGMENT + 4), len(secret) - FRAGMENT + 1)
        if secret[i : i + FRAGMENT] in text
    ]
    for mask in ("**", "...", "…"):
        if mask + secret[-4:] in text:
            found.append(mask + secret[-4:])
    return found


@pytest.fixture(scope="module")
def r() -> Redactor:
    return Redactor(KEYS)


@pytest.fixture(scope="module")
def held():
    """The keys as secrets the processor holds (registered while referenced)."""
    secrets = [Secret(SecretRef(inline=k)) for k in KEYS]
    yield secrets
    del secrets


# ---- the forms providers echo ------------------------------------------------------------


@pytest.mark.parametrize("secret", KEYS)
def test_whole_key(r, secret):
    text = f"Incorrect API key provided: {secret}. You can find your API key at https://x."
    out = r.redact(text)
    assert not leaks(secret, out)
    assert out == f"Incorrect API key provided: {MARK}. You can find your API key at https://x."


@pytest.mark.parametrize("secret", KEYS)
@pytest.mark.parametrize("mask", ["*" * 28, "****", "...", "…", "xxxxxxxx", "••••"])
def test_openai_style_masked_echo(r, secret, mask):
    """`sk-proj-****…abcd`: the prefix, a mask and the last four characters."""
    shown = secret[:8] + mask + secret[-4:]
    out = r.redact(f"Incorrect API key provided: {shown}. Bye")
    assert out == f"Incorrect API key provided: {MARK}. Bye"


@pytest.mark.parametrize("secret", KEYS)
def test_head_then_mask(r, secret):
    out = r.redact(f"key {secret[: PUBLIC[secret] + 6]}**** rejected")
    assert not leaks(secret, out) and secret[PUBLIC[secret] : PUBLIC[secret] + 6] not in out


@pytest.mark.parametrize("start", [4, 9, 40, 90, len(OPENAI) - FRAGMENT])
def test_any_interior_run_of_fragment_length(r, start):
    part = OPENAI[start : start + FRAGMENT]
    out = r.redact(f"the key ends in ({part}) apparently")
    assert out == f"the key ends in ({MARK}) apparently"


def test_shorter_runs_and_the_public_prefix_alone_are_not_secrets(r):
    """Seven characters, or `sk-proj-` / `sk-ant-api03-` alone, tell nothing: a model
    explaining key formats is not mangled."""
    text = (
        f"OpenAI keys start with sk-proj- and Anthropic's with sk-ant-api03-; "
        f"yours has {OPENAI[40:47]} in it; sk-proj-ab is not a key"
    )
    assert r.redact(text) is text


def test_ordinary_text_is_untouched_and_not_copied(r):
    text = orjson.dumps(
        {
            "choices": [
                {
                    "message": {
                        "content": "The quick brown fox jumps over the lazy dog... **bold** xxx 1234567890"
                    }
                }
            ],
            "id": "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT",
        }
    ).decode()
    assert r.redact(text) is text
    raw = text.encode()
    assert r.redact_body(raw) is raw


def test_key_in_a_url_and_json_escaped(r):
    slashy = "abc/def+ghi=jklmnopqrstu"
    rr = Redactor([slashy])
    for form in ("abc%2Fdef%2Bghi%3Djklmnopqrstu", "abc\\/def+ghi=jklmnopqrstu"):
        out = rr.redact(f"url ?key={form} end")
        assert "jklmnop" not in out and MARK in out


@pytest.mark.parametrize("lead", ["", "u", "us", "user:"])
def test_key_base64_in_a_basic_header(r, lead):
    encoded = base64.b64encode(f"{lead}{ANTHROPIC}".encode()).decode()
    out = r.redact(f"Basic {encoded}")
    # Only the 4-character groups that mix the key with what surrounds it may remain.
    remaining = out.replace("Basic ", "").split(MARK)
    assert all(len(piece) <= 8 for piece in remaining), out


def test_secret_that_is_base64_also_leaks_decoded():
    basic = base64.b64encode(b"service-account:Zx9yQ8wP7vR6").decode()
    out = Redactor([basic]).redact("denied for service-account:Zx9yQ8wP7vR6")
    assert "Zx9yQ8wP" not in out


def test_short_secrets_are_not_redacted():
    r = Redactor(["k", "abc1234"])
    assert not r
    assert r.redact("k abc1234") == "k abc1234"


# ---- JSON, headers, events ---------------------------------------------------------------


def test_json_body_stays_valid_json(r):
    body = orjson.dumps(
        {
            "error": {
                "message": f"bad key {OPENAI}",
                "type": "invalid_request_error",
                "param": None,
                "code": "invalid_api_key",
            },
            OPENAI: [ANTHROPIC, 1, None],
        }
    )
    out = r.redact_body(body)
    doc = orjson.loads(out)
    assert doc["error"]["message"] == f"bad key {MARK}"
    assert doc[MARK] == [MARK, 1, None]
    assert not any(leaks(k, out.decode()) for k in KEYS)


def test_non_json_body_redacted_as_text(r):
    out = r.redact_body(f"<html>401: {GEMINI}</html>".encode())
    assert out == f"<html>401: {MARK}</html>".encode()


def test_headers_every_value_of_a_repeated_header(r):
    pairs = [
        ("content-type", "application/json"),
        ("www-authenticate", 'Basic realm="x"'),
        (
            "www-authenticate",
            f'Bearer error="invalid_token", error_description="key {OPENAI[:8]}****{OPENAI[-4:]}"',
        ),
        ("x-echo", f"{ANTHROPIC}"),
        ("x-request-id", "req_8f3a9c0d1e2b4a5f6789"),
    ]
    fixed = r.redact_headers(pairs)
    assert set(fixed) == {"www-authenticate", "x-echo"}
    assert fixed["www-authenticate"] == [
        'Basic realm="x"',
        f'Bearer error="invalid_token", error_description="key {MARK}"',
    ]
    assert fixed["x-echo"] == [MARK]
    assert r.redact_headers(pairs[:1] + pairs[-1:]) == {}


def test_event_fields(r):
    ev = SSEEvent(
        data=orjson.dumps({"error": {"message": f"key {OPENAI}"}}).decode(),
        event="error",
        id=ANTHROPIC,
        comments=[f"debug {GEMINI}"],
    )
    out = r.redact_event(ev)
    assert orjson.loads(out.data) == {"error": {"message": f"key {MARK}"}}
    assert out.id == MARK and out.comments == [f"debug {MARK}"] and out.event == "error"
    plain = SSEEvent(data='{"a":1}')
    assert r.redact_event(plain) is plain


# ---- properties ----------------------------------------------------------------------------

_text = st.text(alphabet=string.ascii_letters + string.digits + " .,:;-_*\"'{}[]()/\n…", max_size=300)


@settings(max_examples=examples(300), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(before=_text, after=_text, which=st.sampled_from(KEYS), data=st.data())
@example(before="", after="", which=OPENAI, data=None)
def test_no_planted_fragment_survives(r, before, after, which, data):
    """Any run of at least FRAGMENT characters of a key, planted anywhere in any text,
    is gone afterwards, and nothing else of the text changed."""
    if data is None:
        start, end = 0, len(which)
    else:
        start = data.draw(st.integers(0, len(which) - FRAGMENT))
        end = data.draw(st.integers(start + FRAGMENT, len(which)))
    if end < PUBLIC[which] + 4:  # all in the public prefix: not a secret
        return
    text = before + which[start:end] + after
    out = r.redact(text)
    assert not leaks(which, out), (text, out)
    assert MARK in out
    # Around it, the text is kept (a mask's widening reaches at most _MASK_REACH back).
    assert out.startswith(before[: max(0, len(before) - redaction._MASK_REACH)])


def _stream(events: list[bytes]) -> bytes:
    return b"".join(events)


def _sse(content: str) -> bytes:
    chunk = {
        "id": "c",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "m",
        "choices": [{"index": 0, "delta": {"content": content}, "finish_reason": None}],
    }
    return b"data: " + orjson.dumps(chunk) + b"\n\n"


@settings(
    max_examples=examples(150), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(cuts=st.lists(st.integers(min_value=1, max_value=2000), max_size=12))
def test_stream_cut_anywhere(held, cuts):
    """The route filter's stream view redacts per whole event: wherever Envoy cuts the
    bytes, no part of the key reaches the client."""
    if True:
        body = (
            _sse("Here is the key: ")
            + _sse(f"{OPENAI} and again {OPENAI[10:30]}")
            + _sse(" done")
            + b"data: [DONE]\n\n"
        )
        bounds = sorted({c for c in cuts if c < len(body)})
        pieces = [body[a:b] for a, b in zip([0, *bounds], [*bounds, len(body)], strict=False)]
        rs = response_stream("r", None, False, {})

        async def run() -> bytes:
            out = b""
            for i, piece in enumerate(pieces):
                out += await rs.feed(piece, i == len(pieces) - 1)
            return out

        out = asyncio.run(run()).decode()
        assert not leaks(OPENAI, out)
        assert out.count(MARK) == 2 and out.endswith("data: [DONE]\n\n")


# ---- the registry: every secret the processor holds, rotation included -------------------------


def test_current_follows_rotation(tmp_path, monkeypatch):
    monkeypatch.setattr("extproc.secrets._FILE_RECHECK_SECONDS", 0.0)
    path = tmp_path / "key"
    old, new = key("sk-", 40), key("sk-", 40)
    path.write_text(old + "\n")
    secret = Secret(SecretRef(file=str(path)))
    assert redaction.current().redact(old) == MARK
    time.sleep(0.01)
    path.write_text(new + "\n")
    os.utime(path, (time.time() + 5, time.time() + 5))
    assert secret.value == new
    # Both: an answer to a request sent with the old key may still arrive.
    assert redaction.current().redact(f"{old} {new}") == f"{MARK} {MARK}"


def test_generation_moves_and_redactor_is_reused():
    first = redaction.current()
    assert redaction.current() is first
    gen = secret_store.generation()
    s = Secret(SecretRef(inline=key("tok-", 30)))
    assert secret_store.generation() == gen + 1
    assert redaction.current() is not first
    del s


def test_short_secret_warned_about_when_loaded_without_its_value(caplog):
    with caplog.at_level("WARNING", logger="aigw.config"):
        s = Secret(SecretRef(inline="tiny-k"))
        other = Secret(SecretRef(inline=key("x-", 20)))
    warnings = [rec for rec in caplog.records if "too short" in rec.getMessage()]
    assert len(warnings) == 1
    assert warnings[0].fields == {"secret": "inline", "min_length": 8}
    assert "tiny-k" not in caplog.text
    assert redaction.current().redact("tiny-k") == "tiny-k"
    del s, other


async def test_large_body_scanned_off_the_loop(held, monkeypatch):
    calls = []
    real = asyncio.to_thread

    async def spy(fn, *args):
        calls.append(fn)
        return await real(fn, *args)

    monkeypatch.setattr(redaction.asyncio, "to_thread", spy)
    body = orjson.dumps({"data": "A" * 200_000, "echo": OPENAI})
    out = await redaction.redact_body(body)
    assert orjson.loads(out)["echo"] == MARK and len(calls) == 1
    small = orjson.dumps({"echo": OPENAI})
    assert orjson.loads(await redaction.redact_body(small))["echo"] == MARK and len(calls) == 1


@pytest.mark.parametrize(
    "text", ["x" * 300_000, "*" * 300_000, "X" * 150_000 + "#" * 150_000, "..." * 100_000, "…" * 300_000]
)
def test_long_mask_runs_cost_one_pass(text):
    """Masks followed by a key's tail are looked for once per mask run: a 300 KB run of
    `x` used to be tried at every third position, each try scanning the rest of the run
    (quadratic: 100 KB took a minute on the event loop). A huge margin, not a benchmark:
    scripts/bench_redaction.py has the figures."""
    r = Redactor(["sk-proj-AbCdEfGhIjKlMnOpQrStUvWxYz0123456789"])
    started = time.monotonic()
    assert r.redact(text) is text
    echoed = r.redact(text + "6789 tail")
    assert echoed.endswith("[REDACTED] tail") and "6789" not in echoed
    assert time.monotonic() - started < 5


def test_a_tail_after_a_mask_whose_last_characters_are_the_keys():
    r = Redactor(["sk-proj-AbCdEfGhIjKlMnOpQrStUvWxYz01234567xx"])
    assert "567xx" not in r.redact("key: sk-proj-xxxxxxxxxxxxxxxxxxxxxxxxxxxx4567xx.")


@given(st.text(alphabet="xX#*•●.…ab -_0123456789", max_size=60))
@settings(max_examples=examples(300))
@example("ab.x.X#")
@example("x#X")
@example("a…b")
@example("*●")
def test_the_mask_prefilter_never_hides_a_mask(text):
    """`may_hold_mask` only skips texts the mask pattern finds nothing in."""
    if list(redaction._MASK_RUN.finditer(text)):
        assert redaction.may_hold_mask(text)


def test_a_masked_echo_is_still_found_after_the_prefilter():
    r = Redactor(["sk-proj-abcdefghijklmnopqrstuvwxyz123456"])
    for mask in ("****", "xxXX", "##x", "...", "…", "•●"):
        assert r.redact(f"Incorrect API key provided: {mask}3456.") == f"Incorrect API key provided: {MARK}."
