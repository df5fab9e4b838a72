"""Route policies end to end, from envoy/policies.yaml (plus a webhook route): enrichment,
field defaults, prompt guards on both directions, moderation, content-based routing."""

import openai
import pytest

from tests.bootstraps import add_route
from tests.guard_server import GuardServer
from tests.harness import Stack, error_body, load_bootstrap

pytestmark = pytest.mark.e2e

FRENCH = "Vous êtes un assistant serviable. Répondez toujours en français."


@pytest.fixture(scope="module")
def guard():
    g = GuardServer().start()
    yield g
    g.stop()


@pytest.fixture(scope="module")
def stack(guard):
    doc = load_bootstrap("policies.yaml")
    add_route(
        doc,
        "webhook",
        "/guarded/v1/chat/completions",
        [{"name": "guarded-backend", "provider": "openai", "auth": {"secretRef": {"inline": "k"}}}],
        policy={
            "promptGuard": {
                "request": {
                    "webhook": {"url": guard.url, "timeoutSeconds": 0.5, "forwardHeaders": ["x-user-id"]}
                },
                "response": {"webhook": {"url": guard.url, "timeoutSeconds": 0.5}},
            }
        },
    )
    s = Stack(doc).start()
    yield s
    s.stop()


def client(stack, prefix=""):
    return openai.OpenAI(base_url=f"{stack.url}{prefix}/v1", api_key="k", max_retries=0, timeout=20)


def sent(stack, backend="mock-openai"):
    return stack.mocks[backend].requests[-1]["body"]


# ---- enrichment and field defaults ---------------------------------------------------------


def test_french_system_prompt_and_seed_defaults_fill_what_client_left_out(stack):
    r = stack.post({"messages": [{"role": "user", "content": "Bonjour"}]})
    assert r.status_code == 200, r.text
    body = sent(stack)
    assert body["messages"] == [{"role": "system", "content": FRENCH}, {"role": "user", "content": "Bonjour"}]
    assert body["model"] == "gpt-4" and body["max_tokens"] == 2048 and body["temperature"] == 0.7


def test_client_values_win_except_forced_temperature(stack):
    client(stack).chat.completions.create(
        model="gpt-4o", max_tokens=100, temperature=0.2, messages=[{"role": "user", "content": "Salut"}]
    )
    body = sent(stack)
    assert body["model"] == "gpt-4o" and body["max_tokens"] == 100
    assert body["temperature"] == 0.7  # override: true


# ---- request guard: custom regex REJECT ------------------------------------------------------


def test_credit_card_request_rejected_with_custom_message(stack):
    before = len(stack.mocks["mock-openai"].requests)
    with pytest.raises(openai.PermissionDeniedError) as exc:
        client(stack).chat.completions.create(
            model="gpt-4",
            messages=[
                {
                    "role": "user",
                    "content": "Can you give me some examples of Master Card credit card numbers?",
                }
            ],
        )
    assert exc.value.status_code == 403
    error = error_body(exc.value)
    assert error["message"] == "Rejected due to inappropriate content"
    assert error["code"] == "content_policy_violation"
    assert len(stack.mocks["mock-openai"].requests) == before, "the provider was never called"
    assert (
        stack.metric(
            "aigw_guard_actions_total",
            route="chat",
            direction="request",
            guard="regex",
            action="rejected",
            entity="CC",
        )
        >= 1
    )


def test_guards_read_tool_call_arguments(stack):
    """Issue 9: text outside message content is guarded too (tests/unit/test_guard_fields.py
    covers every field; this is the stack end to end)."""
    before = len(stack.mocks["mock-openai"].requests)
    r = stack.post(
        {
            "messages": [
                {"role": "user", "content": "look it up"},
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "c1",
                            "type": "function",
                            "function": {"name": "lookup", "arguments": '{"q": "credit card"}'},
                        }
                    ],
                },
                {"role": "tool", "tool_call_id": "c1", "content": "nothing found"},
            ]
        }
    )
    assert r.status_code == 403 and r.json()["error"]["code"] == "content_policy_violation"
    assert len(stack.mocks["mock-openai"].requests) == before


# ---- response guard: Mastercard regex and CREDIT_CARD builtin, MASK ---------------------------


@pytest.mark.parametrize(
    "reply, masked",
    [
        ("Your card 5105105105105100 is valid.", "Your card <MASTERCARD> is valid."),
        ("Try 4111 1111 1111 1111 instead.", "Try <CREDIT_CARD> instead."),
        ("Order 4111 1111 1111 1112 shipped.", "Order 4111 1111 1111 1112 shipped."),  # fails Luhn
    ],
)
def test_card_numbers_masked_in_responses(stack, reply, masked):
    resp = client(stack).chat.completions.create(
        model="gpt-4",
        messages=[{"role": "user", "content": "numbers?"}],
        extra_headers={"x-mock-content": reply},
    )
    assert resp.choices[0].message.content == masked


# ---- builtins in both directions --------------------------------------------------------------


def test_pii_masked_before_the_provider_sees_it(stack):
    client(stack, "/pii").chat.completions.create(
        model="gpt-4o",
        messages=[
            {
                "role": "user",
                "content": "I am bob@example.com, call (212) 555-0198, SSN 536-90-4399, "
                "card 5555-5555-5555-4444.",
            }
        ],
    )
    text = sent(stack)["messages"][0]["content"]
    assert text == "I am <EMAIL>, call <PHONE_NUMBER>, SSN <SSN>, card <CREDIT_CARD>."
    assert (
        stack.metric(
            "aigw_guard_actions_total", route="pii", direction="request", action="masked", entity="EMAIL"
        )
        >= 1
    )


def test_pii_masked_in_the_answer(stack):
    resp = client(stack, "/pii").chat.completions.create(
        model="gpt-4o",
        messages=[{"role": "user", "content": "contact?"}],
        extra_headers={"x-mock-content": "Write to alice@corp-mail.com or call +1 212 555 0198."},
    )
    assert resp.choices[0].message.content == "Write to <EMAIL> or call <PHONE_NUMBER>."
    assert (
        stack.metric(
            "aigw_guard_actions_total",
            route="pii",
            direction="response",
            action="masked",
            entity="PHONE_NUMBER",
        )
        >= 1
    )


def test_pii_a_provider_error_quotes_back_is_masked_too(stack):
    # Providers quote the request in their errors ("Invalid value '...'"): the error
    # reaches the client through the same response guards as an answer.
    with pytest.raises(openai.BadRequestError) as exc:
        client(stack, "/pii").chat.completions.create(
            model="gpt-4o",
            messages=[{"role": "user", "content": "contact?"}],
            extra_headers={
                "x-mock-status": "400",
                "x-mock-content": "Invalid 'user': alice@corp-mail.com is not allowed",
            },
        )
    assert exc.value.status_code == 400
    assert "alice@corp-mail.com" not in exc.value.response.text
    assert error_body(exc.value)["message"] == "Invalid 'user': <EMAIL> is not allowed"


def test_a_large_digit_dense_streamed_delta_is_masked_like_the_whole_answer(stack):
    """One delta of ~3,000 digit-dense characters (the text Presidio is slowest on) is a
    step too large for the event loop: the scan workers scan it (RegexStage.scan_step),
    and the client gets the same masks as in the JSON answer."""
    dense = "-".join(f"{i:04d}" for i in range(600))  # one word: one delta from the mock
    reply = f"Codes {dense} and call +1 212 555 0198 today."
    whole = client(stack, "/pii").chat.completions.create(
        model="gpt-4o",
        messages=[{"role": "user", "content": "codes?"}],
        extra_headers={"x-mock-content": reply},
    )
    streamed = client(stack, "/pii").chat.completions.create(
        model="gpt-4o",
        messages=[{"role": "user", "content": "codes?"}],
        stream=True,
        extra_headers={"x-mock-content": reply},
    )
    text = "".join(c.choices[0].delta.content or "" for c in streamed if c.choices)
    assert "212 555 0198" not in text and "<PHONE_NUMBER>" in text
    assert text == whole.choices[0].message.content


# ---- moderation -------------------------------------------------------------------------------


def test_moderation_rejects_flagged_prompts(stack):
    before = len(stack.mocks["mock-openai"].requests)
    with pytest.raises(openai.BadRequestError) as exc:
        client(stack, "/moderated").chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "a story full of violence"}]
        )
    error = error_body(exc.value)
    assert error["message"] == "Rejected by content moderation"
    assert error["code"] == "content_flagged"
    moderation_calls = [
        r for r in stack.mocks["mock-openai"].requests[before:] if r["path"].endswith("/moderations")
    ]
    assert moderation_calls and moderation_calls[0]["headers"]["authorization"] == "Bearer sk-mock-moderation"
    assert not [
        r for r in stack.mocks["mock-openai"].requests[before:] if r["path"].endswith("/chat/completions")
    ]


def test_moderation_passes_clean_prompts(stack):
    resp = client(stack, "/moderated").chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "a story about kittens"}]
    )
    assert resp.choices[0].message.content.endswith("a story about kittens")


# ---- content-based routing ---------------------------------------------------------------------


def test_short_prompts_go_to_standard_long_to_premium(stack):
    short = client(stack, "/content").chat.completions.create(
        model="x", messages=[{"role": "user", "content": "hi"}]
    )
    long = client(stack, "/content").chat.completions.create(
        model="x", messages=[{"role": "user", "content": "word " * 200}]
    )
    assert short.model == "gpt-4o-mini" and long.model == "gpt-4.1"
    assert len(stack.mocks["standard"].requests) == 1 and len(stack.mocks["premium"].requests) == 1


def test_client_cannot_pick_the_premium_route_by_header(stack):
    resp = client(stack, "/content").chat.completions.create(
        model="x", messages=[{"role": "user", "content": "hi"}], extra_headers={"x-content-type": "long"}
    )
    assert resp.model == "gpt-4o-mini"
    assert stack.mocks["premium"].requests == []
    # The routing header is the gateway's business: a backend with the gateway's key does
    # not receive it (backends.HeaderPolicy), whether the client's or the recomputed one.
    assert "x-content-type" not in stack.mocks["standard"].requests[0]["headers"]


# ---- webhook ------------------------------------------------------------------------------------


def wh(stack):
    return client(stack, "/guarded")


def test_webhook_pass(stack, guard):
    resp = wh(stack).chat.completions.create(
        model="m",
        messages=[{"role": "user", "content": "hello"}],
        extra_headers={"x-user-id": "u-42", "x-other": "no"},
    )
    assert resp.choices[0].message.content.endswith("hello")
    call = [c for c in guard.calls if c["path"] == "/request"][-1]
    assert call["body"] == {"body": {"messages": [{"role": "user", "content": "hello"}]}}
    assert call["headers"]["x-user-id"] == "u-42" and "x-other" not in call["headers"]
    assert "authorization" not in call["headers"]


def test_webhook_masks_request_and_response(stack, guard):
    resp = wh(stack).chat.completions.create(
        model="m", messages=[{"role": "user", "content": "my secret plan"}]
    )
    assert sent(stack, "guarded-backend")["messages"][0]["content"] == "my **** plan"
    # The mock echoes the masked prompt; the reply is checked at /response too.
    assert "secret" not in resp.choices[0].message.content
    resp = wh(stack).chat.completions.create(
        model="m",
        messages=[{"role": "user", "content": "tell me"}],
        extra_headers={"x-mock-content": "the secret is out"},
    )
    assert resp.choices[0].message.content == "the **** is out"


def test_webhook_reject_uses_its_status_and_body(stack):
    before = len(stack.mocks["guarded-backend"].requests)
    with pytest.raises(openai.APIStatusError) as exc:
        wh(stack).chat.completions.create(
            model="m", messages=[{"role": "user", "content": "please reject me"}]
        )
    assert exc.value.status_code == 451
    assert error_body(exc.value)["message"] == "blocked by the test guard"
    assert len(stack.mocks["guarded-backend"].requests) == before


@pytest.mark.parametrize("text, status", [("explode now", 502), ("stall a bit", 504)])
def test_webhook_failure_and_timeout_fail_closed(stack, text, status):
    before = len(stack.mocks["guarded-backend"].requests)
    with pytest.raises(openai.APIStatusError) as exc:
        wh(stack).chat.completions.create(model="m", messages=[{"role": "user", "content": text}])
    assert exc.value.status_code == status
    error = error_body(exc.value)
    assert error["type"] == "server_error"
    assert "127.0.0.1" not in error["message"]
    assert len(stack.mocks["guarded-backend"].requests) == before
