"""No planted value survives in a guarded position (issue 9, item 3).

Random canonical requests, JSON responses and streams are generated; one string position
is picked at random among *all* of them (values, object keys, strings and numbers inside
tool-call arguments, names, unknown fields, numbers anywhere), a card number or email is
planted there (a card sometimes as a bare JSON number: inside arguments, and in requests
and JSON answers anywhere), and the guards run. Only the positions this file lists as not
guarded (`exempt`: ids, the model, binary payloads, the numbers the gateway reads) are
skipped. With MASK the value must be gone from every string the provider or client would
get (JSON inside strings decoded, arguments still valid JSON); with REJECT the guard must
refuse. The list of exemptions is written here, apart from the code's own, so a position
the walker forgot fails the test.
"""

import asyncio
import base64
import copy
import itertools
import json
from typing import Any

import orjson
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from extproc.canonical import validate_request
from extproc.errors import GatewayError
from extproc.guarded_stream import response_stream
from extproc.guards.config import RequestGuardConfig, ResponseGuardConfig
from extproc.guards.pipeline import RequestGuards, ResponseGuards
from tests.hypothesis_profiles import examples
from tests.provider_helpers import chunks_of

POLICY = {"builtins": ["CREDIT_CARD", "EMAIL"]}
REQ_MASK = RequestGuards(RequestGuardConfig.model_validate({"regex": {**POLICY, "action": "MASK"}}), "r")
REQ_REJECT = RequestGuards(RequestGuardConfig.model_validate({"regex": {**POLICY, "action": "REJECT"}}), "r")
RESP_MASK = ResponseGuards(ResponseGuardConfig.model_validate({"regex": {**POLICY, "action": "MASK"}}), "r")
RESP_REJECT = ResponseGuards(
    ResponseGuardConfig.model_validate({"regex": {**POLICY, "action": "REJECT"}}), "r"
)

EMAILS = ["bob@example.com", "alice.smith+news@mail.example.org"]
CARDS = ["4111 1111 1111 1111", "5555-5555-5555-4444", "4012888888881881"]
WORDS = ["alpha", "bravo", "delta", "note", "ok", "the", "city", "plan", "Über", "naïve", "zeta"]
B64 = base64.b64encode(b"\x89PNG" + bytes(range(97, 123)) * 8).decode()  # no long digit runs
SETTINGS = settings(
    max_examples=examples(300),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


class Args:
    """Tool-call arguments while generating: a JSON value, serialised after planting."""

    def __init__(self, value):
        self.value = value

    def __getitem__(self, key):
        return self.value

    def __setitem__(self, key, value):
        self.value = value


# ---- generation ---------------------------------------------------------------------------

words = st.lists(st.sampled_from(WORDS), min_size=1, max_size=4).map(" ".join)
word = st.sampled_from(WORDS)
ident = st.text("abcdefghijklmnopqrstuvwxyz", min_size=4, max_size=10).map(lambda s: "call_" + s)
json_value = st.recursive(
    st.one_of(words, st.integers(-50, 50), st.booleans(), st.none()),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(word, inner, max_size=3),
    max_leaves=6,
)
args_value = st.dictionaries(word, json_value, max_size=3).map(Args)


@st.composite
def schema(draw):
    props = {}
    for name in draw(st.lists(word, max_size=3, unique=True)):
        prop = {"type": "string", "description": draw(words)}
        if draw(st.booleans()):
            prop["enum"] = draw(st.lists(words, min_size=1, max_size=3))
        if draw(st.booleans()):
            prop["default"] = draw(words)
        if draw(st.booleans()):
            prop["maxLength"] = draw(st.integers(1, 500))
        props[name] = prop
    return {"type": "object", "properties": props, "required": list(props)[:1]}


@st.composite
def tool_def(draw):
    return {
        "type": "function",
        "function": {"name": draw(word), "description": draw(words), "parameters": draw(schema())},
    }


@st.composite
def user_content(draw):
    if draw(st.booleans()):
        return draw(words)
    parts = [{"type": "text", "text": draw(words)}]
    for kind in draw(st.lists(st.sampled_from(["image", "data", "audio", "file", "other"]), max_size=3)):
        if kind == "image":
            parts.append(
                {
                    "type": "image_url",
                    "image_url": {"url": "https://img.example.org/" + draw(word), "detail": "low"},
                }
            )
        elif kind == "data":
            parts.append({"type": "image_url", "image_url": {"url": "data:image/png;base64," + B64}})
        elif kind == "audio":
            parts.append({"type": "input_audio", "input_audio": {"data": B64, "format": "wav"}})
        elif kind == "file":
            parts.append({"type": "file", "file": {"file_id": "file-" + draw(word), "filename": draw(word)}})
        else:
            parts.append({"type": "input_text", "input_text": draw(words)})
    return parts


@st.composite
def messages(draw):
    out = []
    if draw(st.booleans()):
        out.append({"role": draw(st.sampled_from(["system", "developer"])), "content": draw(words)})
    for _ in range(draw(st.integers(1, 2))):
        user = {"role": "user", "content": draw(user_content())}
        if draw(st.booleans()):
            user["name"] = draw(word)
        out.append(user)
        assistant = {"role": "assistant", "content": draw(st.one_of(st.none(), words))}
        calls = [
            {
                "id": draw(ident),
                "type": "function",
                "function": {"name": draw(word), "arguments": draw(args_value)},
            }
            for _ in range(draw(st.integers(0, 2)))
        ]
        if calls:
            assistant["tool_calls"] = calls
        elif draw(st.booleans()):
            assistant["function_call"] = {"name": draw(word), "arguments": draw(args_value)}
        if draw(st.booleans()):
            assistant["refusal"] = draw(words)
        if draw(st.booleans()):
            assistant["audio"] = {"id": "audio_" + draw(word)}
        out.append(assistant)
        for c in calls:
            out.append({"role": "tool", "tool_call_id": c["id"], "content": draw(words)})
    return out


@st.composite
def requests(draw):
    req = {"model": "gpt-4o", "messages": draw(messages())}
    optional = {
        "tools": st.lists(tool_def(), min_size=1, max_size=2),
        "functions": st.lists(tool_def().map(lambda t: t["function"]), min_size=1, max_size=2),
        "tool_choice": st.one_of(
            st.just("auto"), word.map(lambda n: {"type": "function", "function": {"name": n}})
        ),
        "function_call": st.one_of(st.just("none"), word.map(lambda n: {"name": n})),
        "stop": st.one_of(words, st.lists(words, max_size=3)),
        "user": words,
        "metadata": st.dictionaries(word, words, max_size=3),
        "prediction": st.one_of(
            words, st.lists(words.map(lambda t: {"type": "text", "text": t}), max_size=2)
        ).map(lambda c: {"type": "content", "content": c}),
        "response_format": schema().map(
            lambda s: {
                "type": "json_schema",
                "json_schema": {"name": "out", "description": "the answer", "schema": s},
            }
        ),
        "x_extension": json_value,
    }
    for key in draw(st.lists(st.sampled_from(sorted(optional)), unique=True)):
        req[key] = draw(optional[key])
    return req


@st.composite
def completions(draw):
    choices = []
    for i in range(draw(st.integers(1, 2))):
        msg = {"role": "assistant", "content": draw(st.one_of(st.none(), words))}
        calls = [
            {
                "id": draw(ident),
                "type": "function",
                "function": {"name": draw(word), "arguments": draw(args_value)},
            }
            for _ in range(draw(st.integers(0, 2)))
        ]
        if calls:
            msg["tool_calls"] = calls
        if draw(st.booleans()):
            msg["refusal"] = draw(words)
        if draw(st.booleans()):
            msg["annotations"] = [
                {
                    "type": "url_citation",
                    "url_citation": {
                        "url": "https://ref.example.org/" + draw(word),
                        "title": draw(words),
                        "start_index": 0,
                        "end_index": 2,
                    },
                }
            ]
        if draw(st.booleans()):
            msg["audio"] = {"id": "audio_" + draw(word), "data": B64, "transcript": draw(words)}
        choice = {"index": i, "message": msg, "finish_reason": "tool_calls" if calls else "stop"}
        if draw(st.booleans()):
            choice["x_choice_note"] = draw(json_value)
        choices.append(choice)
    doc = {
        "id": "chatcmpl-" + draw(word),
        "object": "chat.completion",
        "created": 1,
        "model": "gpt-4o",
        "system_fingerprint": "fp_" + draw(word),
        "choices": choices,
        "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7},
    }
    if draw(st.booleans()):
        doc["x_provider"] = draw(json_value)
    return doc


# ---- positions and planting ----------------------------------------------------------------


def positions(root) -> list[tuple]:
    """Every key, string and (inside arguments) scalar position:
    (holder, key, is_key, path, inside arguments)."""
    out: list[tuple] = []
    stack: list[tuple[Any, Any, tuple[Any, ...], bool]] = [(root, k, (k,), False) for k in _keys(root)]
    while stack:
        holder, key, path, in_args = stack.pop()
        if isinstance(holder, dict):
            out.append((holder, key, True, path, in_args))
        value = holder[key]
        if isinstance(value, Args):
            stack.append((value, None, (*path, "<args>"), True))
        elif isinstance(value, (dict, list)):
            stack += [(value, k, (*path, k), in_args) for k in _keys(value)]
        elif isinstance(value, str) or in_args or _number(value):
            out.append((holder, key, False, path, in_args))
    return out


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _keys(node):
    return list(node) if isinstance(node, dict) else range(len(node))


def exempt(path: tuple, is_key: bool, value, number: bool = False) -> bool:
    """Positions the gateway documents as not guarded (README: Security model). `number`:
    a bare number is planted (strings at the same positions are guarded)."""
    if is_key:
        return False
    last = path[-1]
    tail = [p for p in path if p != "<args>"]
    if number and "<args>" not in path:  # numbers the gateway reads: an answer's counters
        if path[0] in ("usage", "created") or last == "expires_at":
            return True
        if len(path) == 3 and path[0] == "choices" and last == "index":
            return True
    if path[0] in ("model", "id", "system_fingerprint") and len(path) == 1:
        return True
    if last in ("tool_call_id", "role", "file_id") or (
        last == "id" and len(tail) >= 2 and tail[-2] == "audio"
    ):
        return True
    if last == "id" and len(tail) >= 3 and tail[-3] == "tool_calls":
        return True
    if isinstance(value, str) and (value == B64 or value.endswith(B64)):
        return True
    return False


def plant(doc, draw, key_ok=lambda path, in_args: True, numbers=lambda path: True):
    """Put a card or email at one random non-exempt position; the value planted. A card
    may go in as a bare JSON number: inside arguments, and where `numbers(path)`."""
    spots = [
        p
        for p in positions(doc)
        if not exempt(p[3], p[2], None if p[2] else p[0][p[1]]) and (not p[2] or key_ok(p[3], p[4]))
    ]
    holder, key, is_key, path, in_args = draw(st.sampled_from(spots))
    pii = draw(st.sampled_from(EMAILS + CARDS))
    as_number = (in_args or (numbers(path) and not exempt(path, is_key, holder[key], number=True))) and draw(
        st.booleans()
    )
    if not is_key and pii in CARDS and as_number:
        holder[key] = int(pii.replace(" ", "").replace("-", ""))  # a bare JSON number
        return pii
    text = draw(st.sampled_from(["", "see ", "alpha "])) + pii + draw(st.sampled_from(["", " now", "."]))
    if is_key:
        items = list(holder.items())
        holder.clear()
        holder.update((text if k == key else k, v) for k, v in items)
    else:
        holder[key] = text
    return pii


def finalise(node, escape_at: bool):
    """Arguments become JSON text (with `@` written as `\\u0040` when asked)."""
    if isinstance(node, Args):
        text = json.dumps(node.value, ensure_ascii=False)
        return text.replace("@", "\\u0040") if escape_at else text
    if isinstance(node, dict):
        return {k: finalise(v, escape_at) for k, v in node.items()}
    if isinstance(node, list):
        return [finalise(v, escape_at) for v in node]
    return node


def all_strings(node) -> list[str]:
    out, stack = [], [node]
    while stack:
        v = stack.pop()
        if isinstance(v, dict):
            out += [k for k in v if isinstance(k, str)]
            stack += list(v.values())
        elif isinstance(v, list):
            stack += v
        elif isinstance(v, str):
            out.append(v)
            if v[:1] in "{[":
                try:
                    stack.append(json.loads(v))
                except ValueError:
                    pass
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            out.append(str(v))
    return out


def survives(pii: str, doc) -> bool:
    compact = pii.replace(" ", "").replace("-", "")
    return any(
        pii in s or (pii in CARDS and compact in s.replace(" ", "").replace("-", ""))
        for s in all_strings(doc)
    )


def arguments_are_json(doc) -> None:
    for s in _arguments(doc):
        json.loads(s)


def _arguments(node):
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "arguments" and isinstance(v, str):
                yield v
            else:
                yield from _arguments(v)
    elif isinstance(node, list):
        for v in node:
            yield from _arguments(v)


def run(coro):
    return asyncio.run(coro)


# ---- requests and JSON responses -------------------------------------------------------------


@SETTINGS
@given(data=st.data())
def test_no_planted_value_survives_in_a_request(data):
    raw = data.draw(requests())
    pii = plant(raw, data.draw)
    req = finalise(raw, data.draw(st.booleans()))
    try:
        validate_request(copy.deepcopy(req))
    except GatewayError:
        assume(False)  # planting made it something the gateway refuses anyway
    rejected = copy.deepcopy(req)
    run(REQ_MASK.apply(req, {}))
    assert not survives(pii, req), pii
    arguments_are_json(req)
    try:
        run(REQ_REJECT.apply(rejected, {}))
    except GatewayError as exc:
        assert exc.code == "content_policy_violation"
    else:
        raise AssertionError(f"REJECT let {pii!r} through")


@settings(max_examples=examples(50), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=requests(), responses=completions())
def test_nothing_planted_nothing_rejected(raw, responses):
    """The generators' own text is clean: a rejection above is caused by the plant."""
    run(REQ_REJECT.apply(finalise(raw, False), {}))
    run(RESP_REJECT.apply(finalise(responses, False), {}))


@SETTINGS
@given(data=st.data())
def test_no_planted_value_survives_in_a_json_response(data):
    raw = data.draw(completions())
    pii = plant(raw, data.draw)
    doc = finalise(raw, data.draw(st.booleans()))
    rejected = copy.deepcopy(doc)
    try:
        run(RESP_MASK.apply(doc, {}))
    except GatewayError as exc:  # planting broke the shape: the client gets an error instead
        assert exc.code == "unguardable_response"
        return
    assert not survives(pii, doc), pii
    arguments_are_json(doc)
    try:
        run(RESP_REJECT.apply(rejected, {}))
    except GatewayError:
        pass
    else:
        raise AssertionError(f"REJECT let {pii!r} through")


# ---- streams ------------------------------------------------------------------------------


@st.composite
def stream_plans(draw):
    calls = [
        {"id": draw(ident), "name": draw(word), "arguments": draw(args_value)}
        for _ in range(draw(st.integers(0, 2)))
    ]
    plan = {"content": draw(words), "tool_calls": calls}
    if draw(st.booleans()):
        plan["x_text"] = draw(words)  # an unknown streamed text field of the delta
    if draw(st.booleans()):
        plan["reasoning_content"] = draw(words)
    if draw(st.booleans()):
        plan["thinking"] = draw(words)  # streamed as thinking_blocks[0].thinking (nested)
    if draw(st.booleans()):
        plan["x_event"] = draw(json_value)  # an unknown field of the event
    return plan


def pieces(text: str, draw) -> list[str]:
    cuts = sorted(set(draw(st.lists(st.integers(1, max(1, len(text) - 1)), max_size=6))))
    bounds = [0, *[c for c in cuts if c < len(text)], len(text)]
    return [text[a:b] for a, b in itertools.pairwise(bounds) if b > a]


def render(plan: dict, draw) -> bytes:
    env = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "m"}

    def ev(delta, finish=None, **extra):
        return (
            b"data: "
            + orjson.dumps(
                {**env, **extra, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
            )
            + b"\n\n"
        )

    # Every field's pieces, and each tool call's start and argument pieces, in order
    # within their own queue; the queues interleave at random (a value split around
    # another field or another call must still be found).
    queues = [[ev({"content": p}) for p in pieces(plan["content"], draw)]]
    if "x_text" in plan:
        queues.append([ev({"x_text": p}) for p in pieces(plan["x_text"], draw)])
    if "reasoning_content" in plan:
        queues.append([ev({"reasoning_content": p}) for p in pieces(plan["reasoning_content"], draw)])
    if "thinking" in plan:
        queues.append(
            [
                ev({"thinking_blocks": [{"type": "thinking", "thinking": p}]})
                for p in pieces(plan["thinking"], draw)
            ]
        )
    if "x_event" in plan:
        # An event of its own with an empty delta: a text piece here would change the
        # streamed content the client reads (a space inside a planted value).
        queues.append([ev({}, x_event=plan["x_event"])])
    for i, call in enumerate(plan["tool_calls"]):
        start = {
            "index": i,
            "id": call["id"],
            "type": "function",
            "function": {"name": call["name"], "arguments": ""},
        }
        queues.append(
            [ev({"tool_calls": [start]})]
            + [
                ev({"tool_calls": [{"index": i, "function": {"arguments": p}}]})
                for p in pieces(call["arguments"], draw)
            ]
        )
    out = [ev({"role": "assistant", "content": ""})]
    queues = [q for q in queues if q]
    while queues:
        q = queues[draw(st.integers(0, len(queues) - 1))]
        out.append(q.pop(0))
        queues = [q for q in queues if q]
    out.append(ev({}, "tool_calls" if plan["tool_calls"] else "stop"))
    return b"".join(out) + b"data: [DONE]\n\n"


def feed(data: bytes, guards, cuts) -> bytes:
    rs = response_stream("r", guards, False, {})
    bounds = [0, *sorted({c for c in cuts if 0 < c < len(data)}), len(data)]

    async def go():
        return b"".join(
            [
                await rs.feed(data[a:b], i == len(bounds) - 2)
                for i, (a, b) in enumerate(itertools.pairwise(bounds))
            ]
        )

    return run(go())


def received(out: bytes) -> dict:
    """What a client ends up with: streamed fields joined, tool calls accumulated, and
    every other event string."""
    got: dict[str, Any] = {
        "content": "",
        "x_text": "",
        "reasoning_content": "",
        "thinking": "",
        "calls": {},
        "other": [],
    }
    for c in chunks_of(out):
        if not isinstance(c, dict):
            continue
        got["other"].append({k: v for k, v in c.items() if k != "choices"})
        for choice in c.get("choices") or []:
            delta = choice["delta"]
            got["content"] += delta.get("content") or ""
            got["x_text"] += delta.get("x_text") or ""
            got["reasoning_content"] += delta.get("reasoning_content") or ""
            got["thinking"] += "".join(b.get("thinking", "") for b in delta.get("thinking_blocks") or [])
            for tc in delta.get("tool_calls") or []:
                entry = got["calls"].setdefault(tc["index"], {"name": "", "arguments": ""})
                entry["name"] += tc.get("function", {}).get("name", "")
                entry["arguments"] += tc.get("function", {}).get("arguments", "")
    return got


@SETTINGS
@given(data=st.data())
def test_no_planted_value_survives_in_a_stream(data):
    raw = data.draw(stream_plans())
    # A plan's own keys are not JSON keys; those inside arguments and the event's are.
    pii = plant(
        raw,
        data.draw,
        key_ok=lambda path, in_args: in_args or (path[0] == "x_event" and len(path) > 1),
        # Bare numbers in the event's own fields; streamed text fields are text.
        numbers=lambda path: path[0] == "x_event",
    )
    plan = finalise(raw, data.draw(st.booleans()))
    stream = render(plan, data.draw)
    cuts = data.draw(st.lists(st.integers(1, len(stream) - 1), max_size=8))
    out = feed(stream, RESP_MASK, cuts)
    got = received(out)
    assert not survives(pii, got), pii
    for call in got["calls"].values():
        json.loads(call["arguments"])
    assert chunks_of(out)[-1] == "[DONE]"
    out = feed(stream, RESP_REJECT, cuts)
    chunks = chunks_of(out)
    assert not survives(pii, received(out)), pii
    assert chunks[-2]["error"]["code"] == "content_policy_violation" and chunks[-1] == "[DONE]"
