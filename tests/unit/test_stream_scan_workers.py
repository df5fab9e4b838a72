"""A guarded stream's large steps are scanned on the scan workers, not on the event loop
that serves every stream (RegexStage.scan_step): same masks as a scan on the loop, the
route's scan budget, and a clear error, never unscanned text, when no worker can scan."""

from __future__ import annotations

import asyncio
import threading

import orjson
import pytest

from extproc.guarded_stream import GuardedStream, response_stream
from extproc.guards import regex_stage, scan_pool
from extproc.guards.config import ResponseGuardConfig
from extproc.guards.pipeline import ResponseGuards
from extproc.guards.scan_jobs import JobResult, run_job
from extproc.guards.stream_guard import StreamTextGuard

PII = {"regex": {"action": "MASK", "builtins": ["PHONE_NUMBER", "EMAIL_ADDRESS", "CREDIT_CARD"]}}
PHONE = "(212) 555-0198"
# A large delta dense with digits, the text Presidio is slowest on, with a phone number.
DENSE = " ".join(f"{i:04d}-{i * 7 % 10000:04d}" for i in range(300)) + f" call {PHONE} now."


def chunk(content: str, finish: str | None = None) -> bytes:
    event = {
        "id": "c",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "m",
        "choices": [{"index": 0, "delta": {"content": content}, "finish_reason": finish}],
    }
    return b"data: " + orjson.dumps(event) + b"\n\n"


def content_of(out: bytes) -> tuple[str, list[dict]]:
    text, errors = "", []
    for line in out.split(b"\n\n"):
        if not line.startswith(b"data: {"):
            continue
        event = orjson.loads(line[6:])
        if "error" in event:
            errors.append(event["error"])
        for choice in event.get("choices") or []:
            text += choice.get("delta", {}).get("content") or ""
    return text, errors


class Recording:
    """The scan runner, recording what it is sent; `status` fakes a job's end."""

    def __init__(self, status: str = "ok", unavailable: bool = False) -> None:
        self.calls: list[tuple[list[str], list[str] | None, float]] = []
        self.status = status
        self.unavailable = unavailable

    async def scan(self, key, config, texts, budget, hints=None, urgent=False):
        assert urgent, "a stream step goes before requests' jobs"
        self.calls.append((texts, hints, budget))
        if self.unavailable:
            raise scan_pool.ScanUnavailable("no worker")
        if self.status != "ok":
            return JobResult(self.status, [], budget)
        return await scan_pool.ThreadRunner().scan(key, config, texts, budget, hints)


@pytest.fixture
def runner(monkeypatch):
    recording = Recording()
    monkeypatch.setattr(scan_pool, "runner", lambda: recording)
    return recording


def guarded(config=PII):
    return ResponseGuards(ResponseGuardConfig.model_validate(config), "r")


async def streamed(guards, *contents: str) -> tuple[str, list[dict]]:
    rs = response_stream("r", guards, False, {})
    out = b""
    for i, text in enumerate(contents):
        last = i == len(contents) - 1
        out += await rs.feed(chunk(text, "stop" if last else None), last)
    return content_of(out)


async def test_a_large_digit_dense_delta_is_scanned_on_a_worker(runner):
    text, errors = await streamed(guarded(), "Here: ", DENSE, " Bye.")
    assert not errors
    assert runner.calls, "the large step was scanned on the event loop"
    texts, hints, budget = runner.calls[0]
    assert hints is not None and len(texts[0]) > regex_stage._STREAM_INLINE_CHARS
    assert budget == pytest.approx(guarded().regex.budget.max_seconds, abs=0.5)
    assert PHONE not in text and "<PHONE_NUMBER>" in text
    # The same masks as the whole text scanned at once.
    masked, _ = guarded().scanner.mask("Here: " + DENSE + " Bye.")
    assert text == masked


async def test_ordinary_deltas_stay_on_the_loop(runner):
    words = f"Call me at {PHONE} or write to jane@example.com today. ".split(" ")
    text, errors = await streamed(guarded(), *[w + " " for w in words])
    assert not errors and runner.calls == []
    assert "<PHONE_NUMBER>" in text and "<EMAIL_ADDRESS>" in text


async def test_a_large_delta_without_anything_for_presidio_stays_on_the_loop(runner):
    prose = "The quick brown fox jumps over the lazy dog. " * 30  # ~1.4 KB, no digit, no '@'
    text, _ = await streamed(guarded(), prose)
    assert runner.calls == [] and text == prose


async def test_a_worker_scan_past_the_budget_ends_the_stream_with_an_error(monkeypatch):
    runner = Recording(status="timeout")
    monkeypatch.setattr(scan_pool, "runner", lambda: runner)
    text, errors = await streamed(guarded(), "Here: ", DENSE, " Bye.")
    assert errors and errors[0]["code"] == "guard_budget_exceeded"
    assert "0001-0007" not in text  # nothing of the unscanned step went out


async def test_no_scan_worker_is_a_guard_unavailable_error_not_a_pass(monkeypatch):
    runner = Recording(unavailable=True)
    monkeypatch.setattr(scan_pool, "runner", lambda: runner)
    text, errors = await streamed(guarded(), "Here: ", DENSE)
    assert errors and errors[0]["code"] == "guard_unavailable"
    assert PHONE not in text and "0001-0007" not in text


async def test_the_budget_is_the_streams_not_each_steps(monkeypatch):
    runner = Recording()
    monkeypatch.setattr(scan_pool, "runner", lambda: runner)
    guards = guarded({**PII, "scanBudget": {"maxSeconds": 1}})
    rs = response_stream("r", guards, False, {})
    assert isinstance(rs, GuardedStream)
    rs.scan_seconds = 0.75  # already spent by earlier steps of this stream
    await rs.feed(chunk(DENSE), False)
    assert runner.calls and runner.calls[0][2] == pytest.approx(0.25)


def test_feed_and_feed_with_release_the_same_text():
    """The state machine is one generator driven two ways: on this thread, or with its
    scan awaited elsewhere. Both release the same text for the same pieces."""
    guards = guarded()
    text = f"Numbers 12 34 and {PHONE}, mail jane@example.com; card 4111 1111 1111 1111. " * 3

    def here(step: int) -> str:
        g = StreamTextGuard(guards.scanner, guards.holdback, 256, reject=False)
        return "".join(g.feed(text[i : i + step])[0] for i in range(0, len(text), step)) + g.finish()[0]

    async def elsewhere(step: int) -> str:
        g = StreamTextGuard(guards.scanner, guards.holdback, 256, reject=False)

        async def scan(t: str, hint: str):
            await asyncio.sleep(0)
            return guards.scanner.scan(t, presidio_hint=hint)

        out = [(await g.feed_with(text[i : i + step], scan))[0] for i in range(0, len(text), step)]
        return "".join(out) + (await g.finish_with(scan))[0]

    for step in (1, 7, 64, 1000):
        assert here(step) == asyncio.run(elsewhere(step)) == guards.scanner.mask(text)[0]


def test_a_job_with_hints_returns_the_scanners_findings():
    guards = guarded()
    text = f"old context {PHONE} new part with jane@example.com"
    hint = "new part with jane@example.com"
    result = run_job(guards.regex.key, guards.scanner.config, [text], 5.0, threading.Event(), [hint])
    assert result.status == "ok"
    ((masked, found),) = result.outputs
    expected = guards.scanner.scan(text, presidio_hint=hint)
    assert masked == "" and found == [(f.entity, f.start, f.end, f.score) for f in expected]
