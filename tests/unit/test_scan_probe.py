"""A request the scan workers could never scan within its budget is refused from a sample
(guards/scan_probe.py, RegexStage._probe), instead of holding a worker for the whole of
`scanBudget.maxSeconds`; a request its budget covers is scanned as before."""

import logging

import pytest
from hypothesis import given
from hypothesis import strategies as st

from extproc.errors import GatewayError
from extproc.guards import scan_pool, scan_probe
from extproc.guards.config import RequestGuardConfig, ResponseGuardConfig
from extproc.guards.pipeline import RequestGuards, ResponseGuards
from tests.unit.test_scan_budget import hostile as digit_groups  # the text Presidio is slowest on

BUILTINS = {"action": "MASK", "builtins": ["CREDIT_CARD", "EMAIL", "PHONE_NUMBER", "SSN"]}


PROSE = "The quarterly review went well and the team shipped the new onboarding flow on time. "


def chat(*texts: str) -> dict:
    return {"model": "m", "messages": [{"role": "user", "content": t} for t in texts]}


class TimedRunner:
    """Runs jobs in a thread like the fallback, and records each job's texts and seconds."""

    def __init__(self) -> None:
        self.jobs: list[tuple[list[str], float]] = []

    async def scan(self, key, config, texts, budget, hints=None, urgent=False):
        outcome = await scan_pool.ThreadRunner().scan(key, config, texts, budget, hints, urgent)
        self.jobs.append((list(texts), outcome.elapsed))
        return outcome

    def seconds(self) -> float:
        return sum(s for _, s in self.jobs)


@pytest.fixture
def runner(monkeypatch):
    r = TimedRunner()
    monkeypatch.setattr(scan_pool, "runner", lambda: r)
    return r


def guards(budget: float, action: str = "MASK", **extra) -> RequestGuards:
    return RequestGuards(
        RequestGuardConfig.model_validate(
            {"regex": {**BUILTINS, "action": action}, "scanBudget": {"maxSeconds": budget}, **extra}
        ),
        "r",
    )


# ---- the sample --------------------------------------------------------------------------------


def test_too_little_text_is_not_sampled():
    assert scan_probe.sample(["x" * (scan_probe._FROM_CHARS - 1)]) is None
    assert scan_probe.sample([]) is None


def test_the_sample_is_spread_over_every_text_and_stands_for_all_of_them():
    texts = [chr(ord("a") + i) * 10_000 for i in range(8)]
    sample = scan_probe.sample(texts)
    assert sample is not None and sample.of_chars == 80_000
    pieces = sample.text.split("\n\n")
    assert len(pieces) == scan_probe._PIECES
    # Two pieces from each of the eight equal texts, in order: none skipped, none crossed.
    assert [p[0] for p in pieces] == [c for c in "abcdefgh" for _ in range(2)]
    assert all(len(set(p)) == 1 and len(p) == scan_probe._PIECE_CHARS for p in pieces)
    assert sample.scale(0.1) == pytest.approx(0.1 * 80_000 / len(sample.text))


@given(st.lists(st.integers(min_value=0, max_value=20_000), min_size=1, max_size=30))
def test_every_piece_is_a_slice_of_one_text(sizes):
    texts = [f"{i:02d}" * (n // 2) for i, n in enumerate(sizes)]
    sample = scan_probe.sample(texts)
    if sum(map(len, texts)) < scan_probe._FROM_CHARS:
        assert sample is None
        return
    assert sample is not None
    for piece in sample.text.split("\n\n"):
        assert 0 < len(piece) <= scan_probe._PIECE_CHARS
        assert any(piece in t for t in texts)


# ---- refusing from the sample ------------------------------------------------------------------


async def test_text_far_over_the_budget_is_refused_after_the_sample_alone(runner, caplog):
    """~30 s of scanning for a 2 s budget: one sample job, then 413, long before the deadline."""
    req = chat(*[digit_groups(4000, seed) for seed in range(60)])
    before = [m["content"] for m in req["messages"]]
    with caplog.at_level(logging.WARNING, logger="aigw.guards"):
        with pytest.raises(GatewayError) as err:
            await guards(2.0).apply(req, {})
    assert (err.value.status, err.value.code) == (413, "guard_budget_exceeded")
    assert "2 s" in err.value.message
    assert len(runner.jobs) == 1 and len(runner.jobs[0][0][0]) < 5000  # only the sample ran
    assert [m["content"] for m in req["messages"]] == before  # nothing half-masked
    record = next(r for r in caplog.records if r.getMessage() == "guard scan budget exceeded")
    assert record.fields["estimated_seconds"] > 3.0


async def test_one_large_text_over_the_budget_is_refused_from_the_sample(runner):
    with pytest.raises(GatewayError) as err:
        await guards(1.0).apply(chat(digit_groups(200_000)), {})
    assert err.value.code == "guard_budget_exceeded"
    assert [len(texts[0]) < 5000 for texts, _ in runner.jobs] == [True]  # the sample alone
    assert runner.seconds() < 1.0  # it finished within the budget: the estimate refused


async def test_a_reject_route_answers_its_custom_response(runner):
    guards_ = guards(1.0, action="REJECT", customResponse={"message": "too much", "statusCode": 422})
    with pytest.raises(GatewayError) as err:
        await guards_.apply(chat(digit_groups(200_000)), {})
    assert (err.value.status, err.value.message, err.value.code) == (422, "too much", "guard_budget_exceeded")
    assert [len(texts[0]) < 5000 for texts, _ in runner.jobs] == [True]  # the sample alone


async def test_a_response_far_over_the_budget_is_withheld_with_502(runner):
    response = ResponseGuards(
        ResponseGuardConfig.model_validate({"regex": BUILTINS, "scanBudget": {"maxSeconds": 1}}), "r"
    )
    completion = {
        "choices": [{"index": 0, "message": {"role": "assistant", "content": digit_groups(200_000)}}]
    }
    with pytest.raises(GatewayError) as err:
        await response.apply(completion, {})
    assert (err.value.status, err.value.code) == (502, "guard_budget_exceeded")
    assert [len(texts[0]) < 5000 for texts, _ in runner.jobs] == [True]  # the sample alone


async def test_text_within_the_budget_is_sampled_then_scanned_and_masked(runner):
    """Mostly prose with PII here and there: the sample finds it cheap, and every text is
    then scanned and masked as before."""
    texts = [PROSE * 60 + f" call 212-555-{i:04d} or mail user{i}@example.com" for i in range(12)]
    req = chat(*texts)
    assert await guards(5.0).apply(req, {})
    assert len(runner.jobs) >= 2  # the sample, then the scan
    assert all(m["content"].endswith("call <PHONE_NUMBER> or mail <EMAIL>") for m in req["messages"])


async def test_costly_text_within_the_margin_is_left_to_the_deadline(runner, monkeypatch):
    """An estimate over the budget but within its margin does not refuse: the scan runs,
    and its deadline decides (here it has time enough)."""
    monkeypatch.setattr(scan_probe, "MARGIN", 1e9)
    req = chat(*[digit_groups(4000, seed) for seed in range(10)])
    assert await guards(60.0).apply(req, {}) in (True, False)
    assert len(runner.jobs) >= 2
    assert sum(len(texts) for texts, _ in runner.jobs[1:]) == 10  # every text was scanned


async def test_small_requests_are_not_sampled(runner):
    req = chat("call 212-555-0198", digit_groups(3000))
    await guards(5.0).apply(req, {})
    assert req["messages"][0]["content"] == "call <PHONE_NUMBER>"
    sent = [t for texts, _ in runner.jobs for t in texts]
    assert sent == ["call 212-555-0198", digit_groups(3000)]  # the texts themselves, no sample
