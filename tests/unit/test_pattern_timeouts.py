"""A custom pattern that backtracks catastrophically on some text must not hold the
processor: it is stopped after its time (guards/regex_guard.py, `PatternTimeout`) and the
text is refused as one the guard cannot vouch for, never passed on unscanned.

With Python's `re`, `([A-Za-z0-9]+[._-]?)+@corp\\.example` (an ordinary-looking "internal
address" pattern) took 3.5 s on 25 characters of a client's text, and `(\\w+\\s?)+:` 93 s on
18 words, on the event loop that serves every stream."""

import asyncio
import re
import threading

import orjson
import pytest
import regex
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from extproc.errors import GatewayError
from extproc.guards import regex_guard, scan_pool
from extproc.guards.config import RequestGuardConfig, ResponseGuardConfig
from extproc.guards.holdback import Holdback
from extproc.guards.pipeline import RequestGuards, ResponseGuards
from extproc.guards.regex_guard import PatternTimeout, RegexGuardConfig, TextScanner
from extproc.guards.scan_jobs import run_job
from tests.provider_helpers import chunks_of
from tests.unit.test_scan_budget import CountingRunner  # the thread runner, recording each job

# `regex` gives up on these quickly; Python's `re` runs for minutes.
FAMOUS = [
    (r"([A-Za-z0-9]+[._-]?)+@corp\.example", "a" * 30 + "!"),
    (r"(\w+\s?)+:", "word " * 24 + "!"),
]
# These backtrack in `regex` too: only the time limit stops them.
EXPONENTIAL = r"(a|aa)+$"
HOSTILE = "a" * 60 + "!"


def finishes(fn, seconds: float = 60.0):
    """Run `fn` on a thread; its result, or fail when it has not finished in `seconds`
    (without the time limit the thread would run for hours)."""
    out: dict = {}

    def go() -> None:
        try:
            out["value"] = fn()
        except BaseException as exc:  # handed to the test
            out["error"] = exc

    t = threading.Thread(target=go, daemon=True)
    t.start()
    t.join(seconds)
    assert not t.is_alive(), "the scan is still running"
    if "error" in out:
        raise out["error"]
    return out["value"]


def scanner(pattern: str, **extra) -> TextScanner:
    cfg = {"action": "MASK", "matches": [{"pattern": pattern, "name": "X"}], **extra}
    return TextScanner(RegexGuardConfig.model_validate(cfg))


def request_guards(pattern: str, action: str = "MASK", **extra) -> RequestGuards:
    return RequestGuards(
        RequestGuardConfig.model_validate(
            {"regex": {"action": action, "matches": [{"pattern": pattern, "name": "X"}]}, **extra}
        ),
        "r",
    )


def response_guards() -> ResponseGuards:
    cfg = {"regex": {"matches": [{"pattern": EXPONENTIAL, "name": "X"}]}}
    return ResponseGuards(ResponseGuardConfig.model_validate(cfg), "r")


def chat(*texts: str) -> dict:
    return {"model": "m", "messages": [{"role": "user", "content": t} for t in texts]}


# ---- the scanner -------------------------------------------------------------------------------


@pytest.mark.parametrize(("pattern", "text"), FAMOUS)
def test_patterns_that_stall_re_are_scanned_at_once(pattern, text):
    assert finishes(lambda: scanner(pattern).mask(text)) == (text, [])


def test_a_pattern_past_its_time_raises_instead_of_running_on():
    with pytest.raises(PatternTimeout) as err:
        finishes(lambda: scanner(EXPONENTIAL).mask(HOSTILE))
    assert err.value.name == "X"


def test_the_same_pattern_on_ordinary_text_still_masks():
    masked, findings = scanner(EXPONENTIAL).mask("say aaaa")
    assert masked == "say <X>" and [(f.entity, f.start, f.end) for f in findings] == [("X", 4, 8)]


PATTERNS = [
    r"\bEMP-\d{6}\b",
    r"project\s+(falcon|eagle)",
    r"[A-Z]{2}\d{6}",
    r"\w+@corp\.example",
    r"(?:ab|a)+c",
    r"\d{3}(-\d{2})?",
]


@given(
    st.sampled_from(PATTERNS),
    st.text(alphabet="aAbcEMP-0123456789 @.\u00e9\u0663\n_", max_size=80),
    st.booleans(),
)
def test_custom_patterns_find_what_re_finds(pattern, text, case_sensitive):
    """The `regex` module in its `re`-compatible mode: the same matches as `re`."""
    flags = 0 if case_sensitive else re.IGNORECASE
    want = [m.span() for m in re.finditer(pattern, text, flags) if m.end() > m.start()]
    got = [(f.start, f.end) for f in scanner(pattern, caseSensitive=case_sensitive).scan(text)]
    # The scanner merges overlapping matches and also matches detection views; on this
    # alphabet (no confusables but the Arabic-Indic digit) spans of the original agree.
    if "\u0663" not in text:
        assert got == want


def test_a_pattern_the_timed_matcher_cannot_compile_is_a_config_error_naming_it(monkeypatch):
    def refuse(pattern, flags=0, *a, **kw):
        raise regex.error("unsupported here")

    monkeypatch.setattr(regex, "compile", refuse)
    with pytest.raises(ValidationError) as err:
        RegexGuardConfig.model_validate({"matches": [{"pattern": "abc", "name": "X"}]})
    assert "matches.0.pattern" in str(err.value)
    assert "unsupported here" in str(err.value)


# ---- requests, responses, workers --------------------------------------------------------------


@pytest.fixture
def threads(monkeypatch):
    monkeypatch.setattr(scan_pool, "runner", lambda: scan_pool.ThreadRunner())


async def test_a_request_the_pattern_cannot_finish_is_refused_with_413(threads):
    req = chat("hello", HOSTILE)
    with pytest.raises(GatewayError) as err:
        await request_guards(EXPONENTIAL).apply(req, {})
    assert (err.value.status, err.value.code) == (413, "guard_budget_exceeded")
    assert "in time" in err.value.message and HOSTILE not in err.value.message
    assert req["messages"][1]["content"] == HOSTILE  # refused, not half-masked


async def test_a_reject_route_answers_its_custom_response(threads):
    guards = request_guards(EXPONENTIAL, "REJECT", customResponse={"message": "no", "statusCode": 422})
    with pytest.raises(GatewayError) as err:
        await guards.apply(chat(HOSTILE), {})
    assert (err.value.status, err.value.message, err.value.code) == (422, "no", "guard_budget_exceeded")


async def test_a_long_text_on_a_worker_is_refused_too(threads):
    """A text too long for the loop goes to a scan worker; the limit holds there as well."""
    with pytest.raises(GatewayError) as err:
        await request_guards(EXPONENTIAL).apply(chat("x" * 3000 + " " + HOSTILE), {})
    assert (err.value.status, err.value.code) == (413, "guard_budget_exceeded")


async def test_running_out_of_the_loops_time_sends_the_texts_to_a_worker(monkeypatch):
    """The loop's limit counts every thread's CPU, so a busy process can run it out on an
    ordinary text: that text, and the request's later ones, are then scanned on a worker
    (with its own limit), not refused."""
    recording = CountingRunner()
    monkeypatch.setattr(scan_pool, "runner", lambda: recording)
    guards = request_guards(r"ORD-\d{3}")
    monkeypatch.setattr(regex_guard, "_PATTERN_SECONDS_PER_CHAR", 0.0)
    assert guards.regex is not None
    guards.regex.scanner._pattern_base = 0.0  # every pattern call on the loop runs out
    req = chat("first ORD-123", "second ORD-456", "third, no order")
    assert await guards.apply(req, {})
    assert [m["content"] for m in req["messages"]] == ["first <X>", "second <X>", "third, no order"]
    assert [t for job in recording.jobs for t in job] == [
        "first ORD-123",
        "second ORD-456",
        "third, no order",
    ]


async def test_a_stream_step_out_of_the_loops_time_goes_to_a_worker(monkeypatch):
    recording = CountingRunner()
    monkeypatch.setattr(scan_pool, "runner", lambda: recording)
    cfg = {"regex": {"matches": [{"pattern": r"ORD-\d{3}", "name": "ORD"}]}}
    guards = ResponseGuards(ResponseGuardConfig.model_validate(cfg), "r")
    monkeypatch.setattr(regex_guard, "_PATTERN_SECONDS_PER_CHAR", 0.0)
    assert guards.regex is not None
    guards.regex.scanner._pattern_base = 0.0
    from extproc.guarded_stream import response_stream

    out = await response_stream("r", guards, False, {}).feed(
        stream_of(["your order ", "ORD-123 ships"]), True
    )
    assert b"ORD-123" not in out and b"<ORD>" in out
    assert recording.jobs  # the steps went to the worker


def test_a_worker_job_reports_the_timeout():
    cfg = RegexGuardConfig.model_validate({"matches": [{"pattern": EXPONENTIAL, "name": "X"}]})
    done = finishes(lambda: run_job(cfg.model_dump_json(), cfg, [HOSTILE], 60, threading.Event()))
    assert (done.status, done.outputs, done.pattern) == ("pattern_timeout", [], "X")


async def test_a_json_response_the_pattern_cannot_finish_is_withheld_with_502(threads):
    guards = response_guards()
    completion = {"choices": [{"index": 0, "message": {"role": "assistant", "content": HOSTILE}}]}
    with pytest.raises(GatewayError) as err:
        await guards.apply(completion, {})
    assert (err.value.status, err.value.code) == (502, "guard_budget_exceeded")


# ---- streams -----------------------------------------------------------------------------------


def stream_of(deltas: list[str], extra: dict | None = None) -> bytes:
    env = {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m"}
    events = [
        dict(env, choices=[{"index": 0, "delta": {"content": d}, "finish_reason": None}]) for d in deltas
    ]
    if extra is not None:
        events.append(dict(env, **extra))
    events.append(dict(env, choices=[{"index": 0, "delta": {}, "finish_reason": "stop"}]))
    return b"".join(b"data: " + orjson.dumps(e) + b"\n\n" for e in events) + b"data: [DONE]\n\n"


def streamed(body: bytes) -> bytes:
    from extproc.guarded_stream import response_stream

    guards = response_guards()
    rs = response_stream("r", guards, False, {})
    return finishes(lambda: asyncio.run(rs.feed(body, True)))


def error_of(out: bytes) -> dict:
    errors = [c["error"] for c in chunks_of(out) if isinstance(c, dict) and "error" in c]
    assert errors, out
    return errors[-1]


@pytest.mark.usefixtures("threads")
def test_a_stream_the_pattern_cannot_finish_ends_with_an_error_event():
    out = streamed(stream_of(["Here: ", "a" * 30, "a" * 30 + "!", " done"]))
    assert error_of(out)["code"] == "guard_budget_exceeded"
    assert b"a" * 40 not in out  # the text it could not check was never sent


@pytest.mark.usefixtures("threads")
def test_an_event_field_the_pattern_cannot_finish_ends_the_stream_too():
    out = streamed(stream_of(["hi"], extra={"choices": [], "note": HOSTILE}))
    assert error_of(out)["code"] == "guard_budget_exceeded"
    assert HOSTILE.encode() not in out


def test_the_holdback_gives_up_like_the_scan_when_the_pattern_cannot_decide_in_time():
    """Whether a stream's tail could still become a match is the pattern's partial match:
    past its time, the stream guard cannot release the tail, and ends the stream (above)."""
    hb = Holdback(scanner(EXPONENTIAL), 256)
    with pytest.raises(PatternTimeout):
        finishes(lambda: hb.start("Here it comes: " + "a" * 60 + "! and more", 0))
