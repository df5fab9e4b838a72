"""The regex guard's scan budget, where scans run (never heavy work on the event loop), and
what happens to the scans of a request whose stream is gone (guards/scan_pool.py,
RegexStage in guards/regex_stage.py)."""

import asyncio
import random
import threading
import time

import pytest
from pydantic import ValidationError

from extproc.errors import GatewayError
from extproc.guards import regex_stage, scan_pool
from extproc.guards.config import RequestGuardConfig, ResponseGuardConfig, ScanBudget
from extproc.guards.pipeline import RequestGuards, ResponseGuards
from extproc.guards.regex_guard import RegexGuardConfig
from extproc.guards.scan_jobs import JobResult, run_job

BUILTINS = {"action": "MASK", "builtins": ["CREDIT_CARD", "EMAIL", "PHONE_NUMBER", "SSN"]}


def hostile(n: int, seed: int = 1) -> str:
    """Digit groups and phone separators: the text phonenumbers is slowest on."""
    rnd = random.Random(seed)
    out: list[str] = []
    size = 0
    while size < n:
        part = "".join(rnd.choice("0123456789") for _ in range(rnd.randint(1, 5)))
        part += rnd.choice([" ", "-", ".", " ", "(", ")", "+", " - "])
        out.append(part)
        size += len(part)
    return "".join(out)[:n]


def chat(*texts: str) -> dict:
    return {"model": "m", "messages": [{"role": "user", "content": t} for t in texts]}


def request_guards(regex=None, budget=None, **extra) -> RequestGuards:
    cfg = {"regex": regex or BUILTINS, **extra}
    if budget is not None:
        cfg["scanBudget"] = budget
    return RequestGuards(RequestGuardConfig.model_validate(cfg), "r")


class CountingRunner:
    """Records what goes to the scan workers; runs it in a thread like the fallback."""

    def __init__(self) -> None:
        self.jobs: list[list[str]] = []

    async def scan(self, key, config, texts, budget, hints=None, urgent=False):
        self.jobs.append(list(texts))
        return await scan_pool.ThreadRunner().scan(key, config, texts, budget, hints, urgent)


@pytest.fixture
def runner(monkeypatch):
    r = CountingRunner()
    monkeypatch.setattr(scan_pool, "runner", lambda: r)
    return r


# ---- config ------------------------------------------------------------------------------------


def test_budget_defaults_and_camel_case_fields():
    assert RequestGuardConfig.model_validate({"regex": BUILTINS}).scan_budget == ScanBudget(
        max_chars=1024 * 1024, max_seconds=5.0
    )
    cfg = ResponseGuardConfig.model_validate(
        {"regex": BUILTINS, "scanBudget": {"maxChars": 10, "maxSeconds": 0.5}}
    )
    assert cfg.scan_budget == ScanBudget(max_chars=10, max_seconds=0.5)


@pytest.mark.parametrize(
    "budget, field",
    [
        ({"maxChars": 0}, "maxChars"),
        ({"maxSeconds": 0}, "maxSeconds"),
        ({"maxSeconds": -1}, "maxSeconds"),
        ({"chars": 5}, "chars"),
    ],
)
def test_bad_budget_is_a_config_error_naming_the_field(budget, field):
    with pytest.raises(ValidationError) as err:
        RequestGuardConfig.model_validate({"regex": BUILTINS, "scanBudget": budget})
    assert field in str(err.value)


# ---- the character budget ----------------------------------------------------------------------


async def test_mask_route_over_the_character_budget_fails_closed_with_413(runner):
    guards = request_guards(budget={"maxChars": 100})
    req = chat("a" * 60, "jane@example.com " + "b" * 30)
    with pytest.raises(GatewayError) as err:
        await guards.apply(req, {})
    assert (err.value.status, err.value.code) == (413, "guard_budget_exceeded")
    assert "100" in err.value.message
    assert runner.jobs == []  # refused before any scanning
    assert req["messages"][1]["content"].startswith("jane@example.com")  # nothing half-masked


async def test_reject_route_over_the_budget_rejects_with_its_custom_response(runner):
    guards = request_guards(
        regex={**BUILTINS, "action": "REJECT"},
        budget={"maxChars": 10},
        customResponse={"message": "no", "statusCode": 451},
    )
    with pytest.raises(GatewayError) as err:
        await guards.apply(chat("hello there, long text"), {})
    assert (err.value.status, err.value.message, err.value.code) == (451, "no", "guard_budget_exceeded")


async def test_response_over_the_budget_is_withheld_with_502(runner):
    guards = ResponseGuards(
        ResponseGuardConfig.model_validate({"regex": BUILTINS, "scanBudget": {"maxChars": 10}}), "r"
    )
    completion = {
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "call 212-555-0198 now"}}]
    }
    with pytest.raises(GatewayError) as err:
        await guards.apply(completion, {})
    assert (err.value.status, err.value.code) == (502, "guard_budget_exceeded")


async def test_text_within_the_budget_is_masked_as_before(runner):
    guards = request_guards(budget={"maxChars": 10_000})
    req = chat("no digits here", "call 212-555-0198", "mail jane@example.com", "card 4111 1111 1111 1111")
    assert await guards.apply(req, {})
    assert [m["content"] for m in req["messages"]] == [
        "no digits here",
        "call <PHONE_NUMBER>",
        "mail <EMAIL>",
        "card <CREDIT_CARD>",
    ]


# ---- the time budget ---------------------------------------------------------------------------


async def test_time_budget_stops_the_scan_and_fails_closed(runner):
    """Unbudgeted, this text takes tens of seconds to scan; the job stops at its deadline."""
    guards = request_guards(budget={"maxSeconds": 0.3})
    started = time.monotonic()
    with pytest.raises(GatewayError) as err:
        await guards.apply(chat(hostile(100_000)), {})
    assert (err.value.status, err.value.code) == (413, "guard_budget_exceeded")
    assert "0.3 s" in err.value.message
    assert time.monotonic() - started < 10


async def test_time_budget_is_shared_by_every_job_of_a_request(runner, monkeypatch):
    monkeypatch.setattr(regex_stage, "_JOB_CHARS", 2000)
    guards = request_guards(budget={"maxSeconds": 0.5})
    with pytest.raises(GatewayError) as err:
        await guards.apply(chat(*[hostile(2000, seed) for seed in range(60)]), {})
    assert err.value.code == "guard_budget_exceeded"
    # Each job got only what was left of the budget: far fewer jobs ran than were due.
    assert 1 <= len(runner.jobs) < 60


def test_run_job_reports_timeout_and_cancellation():
    cfg = RegexGuardConfig.model_validate(BUILTINS)
    key = cfg.model_dump_json()
    done = run_job(key, cfg, ["call 212-555-0198"], 5.0, threading.Event())
    assert done.status == "ok" and done.outputs[0][0] == "call <PHONE_NUMBER>"
    assert run_job(key, cfg, [hostile(50_000)], 0.1, threading.Event()).status == "timeout"
    gone = threading.Event()
    gone.set()
    assert run_job(key, cfg, [hostile(50_000)], 60, gone) == JobResult(
        "cancelled",
        [],
        pytest.approx(0, abs=1),  # type: ignore[arg-type]  # compares the elapsed seconds loosely
    )


# ---- nothing heavy on the event loop -----------------------------------------------------------


async def test_only_cheap_texts_are_scanned_on_the_loop(runner):
    guards = request_guards()
    req = chat(
        "plain prose without any digit",
        "call 212-555-0198",
        "x" * 5000,
        "ｍａｉｌ ｊ＠ｅｘａｍｐｌｅ．ｃｏｍ",
    )
    await guards.apply(req, {})
    sent = [t for job in runner.jobs for t in job]
    # Digits, a long text, and an '@' that only normalisation reveals go to the workers.
    assert sent == ["call 212-555-0198", "x" * 5000, "ｍａｉｌ ｊ＠ｅｘａｍｐｌｅ．ｃｏｍ"]
    assert req["messages"][0]["content"] == "plain prose without any digit"


async def test_small_texts_share_jobs(runner):
    guards = request_guards()
    await guards.apply(chat(*[f"order {i} shipped" for i in range(200)]), {})
    assert 1 <= len(runner.jobs) <= 2
    assert sum(len(j) for j in runner.jobs) == 200


# ---- cancellation, in the process pool -------------------------------------------------------


@pytest.fixture(scope="module")
def cfg():
    return RegexGuardConfig.model_validate(BUILTINS)


async def test_process_pool_scans_cancels_and_never_runs_queued_jobs(cfg):
    key = cfg.model_dump_json()
    pool = scan_pool.ScanPool({key: cfg}, workers=1)
    pool.start()
    try:
        await asyncio.wait_for(pool.wait_ready(), 120)
        result = await pool.scan(key, cfg, ["call 212-555-0198"], 5)
        assert result.status == "ok" and result.outputs[0][0] == "call <PHONE_NUMBER>"

        executor = pool._executor
        assert executor is not None
        submitted = []
        real_submit = executor.submit

        def counting_submit(fn, *args):
            submitted.append(args[2])
            return real_submit(fn, *args)

        executor.submit = counting_submit  # type: ignore[method-assign, assignment]  # count submissions

        running = asyncio.create_task(pool.scan(key, cfg, [hostile(200_000)], 120))
        queued = asyncio.create_task(pool.scan(key, cfg, ["queued 212-555-0198"], 120))
        for _ in range(200):
            if submitted:
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.2)
        # The stream of both is gone: the queued job is never handed to a worker, the
        # running one stops at its next checkpoint and frees the worker.
        queued.cancel()
        running.cancel()
        stopped = time.monotonic()
        await asyncio.gather(running, queued, return_exceptions=True)
        after = await pool.scan(key, cfg, ["after 212-555-0198"], 60)
        assert after.status == "ok"
        assert time.monotonic() - stopped < 15  # the full scan would take minutes
        assert submitted == [[hostile(200_000)], ["after 212-555-0198"]]
    finally:
        await pool.close()


async def test_a_pool_that_failed_to_start_fails_closed(cfg, monkeypatch):
    key = cfg.model_dump_json()
    pool = scan_pool.ScanPool({key: cfg}, workers=1)

    def broken():
        raise OSError("no processes for you")

    monkeypatch.setattr(pool, "_new_executor", broken)
    pool.start()
    with pytest.raises(scan_pool.ScanUnavailable):
        await pool.scan(key, cfg, ["x 1"], 5)
    monkeypatch.setattr(scan_pool, "runner", lambda: pool)
    guards = request_guards()
    with pytest.raises(GatewayError) as err:
        await guards.apply(chat("call 212-555-0198"), {})
    assert (err.value.status, err.value.code) == (503, "guard_unavailable")


async def test_a_dead_worker_fails_its_request_closed_and_the_pool_recovers(cfg):
    key = cfg.model_dump_json()
    pool = scan_pool.ScanPool({key: cfg}, workers=1)
    pool.start()
    try:
        await asyncio.wait_for(pool.wait_ready(), 120)
        running = asyncio.create_task(pool.scan(key, cfg, [hostile(200_000)], 120))
        await asyncio.sleep(0.5)
        assert pool._executor is not None
        for process in list(pool._executor._processes.values()):
            process.kill()  # the OOM killer, say
        with pytest.raises(scan_pool.ScanUnavailable):
            await asyncio.wait_for(running, 60)
        again = await asyncio.wait_for(pool.scan(key, cfg, ["call 212-555-0198"], 10), 120)
        assert again.status == "ok" and again.outputs[0][0] == "call <PHONE_NUMBER>"
    finally:
        await pool.close()
