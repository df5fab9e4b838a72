"""extproc/tokens.py: prompt-token estimates, exact for ordinary prompts, bounded in cost
for huge ones, and off the event loop when they are costly."""

from __future__ import annotations

import random
import threading
from typing import Any

import pytest

from extproc import tokens
from tests.loop_turns import turns_while

_WORDS = (
    "the gateway answers every request with care and speed while guards read each word "
    "numbers like 4111 and 2024-05-01 appear too, as do names such as Ada Lovelace"
).split()


def prose(chars: int, seed: int = 1) -> str:
    rng = random.Random(seed)
    out: list[str] = []
    size = 0
    while size < chars:
        word = rng.choice(_WORDS)
        out.append(word)
        size += len(word) + 1
    return " ".join(out)[:chars]


def by_recipe(req: dict[str, Any]) -> int:
    """OpenAI's counting recipe, spelled out with tiktoken directly."""
    enc = tokens.encoding_for(req["model"])

    def n(text: str) -> int:
        return len(enc.encode(text, disallowed_special=()))

    total = 3
    for m in req["messages"]:
        total += 3 + n(m["role"]) + n(m["content"] if isinstance(m["content"], str) else "")
        if m.get("name"):
            total += 1 + n(m["name"])
        for call in m.get("tool_calls") or ():
            total += n(call["function"]["name"] + call["function"]["arguments"])
    return total


class CountingEncoding:
    """An encoding that notes how many characters it was given, and on which threads."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.chars = 0
        self.threads: set[int] = set()

    def encode(self, text: str, **kw: Any) -> list[int]:
        self.chars += len(text)
        self.threads.add(threading.get_ident())
        return self.real.encode(text, **kw)


@pytest.fixture
def counting(monkeypatch):
    real = tokens.encoding_for("gpt-4o")
    spy = CountingEncoding(real)
    monkeypatch.setitem(tokens._encodings, "o200k_base", spy)
    return spy


def test_an_ordinary_prompt_is_counted_exactly_by_the_recipe():
    req = {
        "model": "gpt-4o",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "How many tokens is this?", "name": "ada"},
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [{"function": {"name": "lookup", "arguments": '{"q": "tokens"}'}}],
            },
        ],
    }
    assert tokens.estimate_prompt_tokens(req) == by_recipe(req)


def test_content_parts_count_their_text():
    content = [{"type": "text", "text": "hello there"}]
    parts = {"model": "gpt-4o", "messages": [{"role": "user", "content": content}]}
    plain = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hello there"}]}
    assert tokens.estimate_prompt_tokens(parts) == tokens.estimate_prompt_tokens(plain)


@pytest.mark.parametrize("messages", [1, 16])
def test_a_huge_prompt_costs_a_bounded_count_and_stays_close(counting, messages):
    # 4 MB of prompt: tokenized whole it would take a second or more of CPU.
    size = 4 * 1024 * 1024 // messages
    req = {
        "model": "gpt-4o",
        "messages": [{"role": "user", "content": prose(size, seed=i)} for i in range(messages)],
    }
    estimate = tokens.estimate_prompt_tokens(req)
    assert counting.chars <= tokens._ESTIMATE_CHARS + 64
    counting.chars = 0
    exact = by_recipe(req)
    assert abs(estimate - exact) / exact < 0.02


def test_many_small_messages_are_sampled_too(counting):
    req = {
        "model": "gpt-4o",
        "messages": [{"role": "user", "content": prose(40, seed=i)} for i in range(20_000)],
    }
    estimate = tokens.estimate_prompt_tokens(req)
    assert counting.chars <= tokens._ESTIMATE_CHARS + 64
    exact = by_recipe(req)
    assert abs(estimate - exact) / exact < 0.05


def test_output_text_is_counted_within_the_same_bound(counting):
    text = prose(3 * 1024 * 1024)
    estimate = tokens.count_tokens(text, "gpt-4o")
    assert counting.chars <= tokens._ESTIMATE_CHARS
    exact = len(counting.real.encode(text, disallowed_special=()))
    assert abs(estimate - exact) / exact < 0.02


async def test_a_large_count_runs_on_a_thread_and_a_small_one_inline(counting):
    small = tokens.prompt_of({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]})
    large = tokens.prompt_of({"model": "gpt-4o", "messages": [{"role": "user", "content": prose(100_000)}]})
    assert await tokens.count_prompt_async(small) == tokens.count_prompt(small)
    assert counting.threads == {threading.get_ident()}
    counting.threads.clear()
    assert await tokens.count_prompt_async(large) == tokens.count_prompt(large)
    assert threading.get_ident() in counting.threads  # the direct call above
    assert len(counting.threads) == 2  # and the async one, elsewhere


def test_a_vocabulary_not_loaded_yet_is_never_cheap(monkeypatch):
    monkeypatch.delitem(tokens._encodings, "cl100k_base", raising=False)
    assert not tokens.cheap("cl100k_base", 10)
    tokens.encoding_for("gpt-4")  # cl100k_base
    assert tokens.cheap("cl100k_base", 10)
    assert not tokens.cheap("cl100k_base", tokens._INLINE_CHARS + 1)


async def test_the_event_loop_keeps_running_while_a_large_count_runs():
    # tiktoken releases the GIL while it encodes: the loop's other tasks run meanwhile.
    tokens.encoding_for("gpt-4o")
    text = prose(tokens._ESTIMATE_CHARS)
    _, turns = await turns_while(tokens.count_tokens_async(text, "gpt-4o"))
    assert turns > 1
