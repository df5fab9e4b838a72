"""OpenAI and OpenAI-compatible backends: path, auth and model as each is configured."""

import os

import pytest

from tests.bootstraps import add_route
from tests.harness import Stack, load_bootstrap

pytestmark = pytest.mark.e2e

USER = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    secret_file = tmp_path_factory.mktemp("secrets") / "vllm-key"
    secret_file.write_text("file-secret-789\n")
    os.environ["AIGW_TEST_OPENAI_KEY"] = "env-secret-123"
    doc = load_bootstrap("mock.yaml")
    add_route(
        doc,
        "vllm",
        "/vllm/v1/chat/completions",
        [
            {
                "name": "vllm",
                "provider": "openai-compatible",
                "model": "meta-llama/Llama-3.1-8B",
                "path": "/serve/v1/chat/completions",
                "authority": "vllm.internal",
                "auth": {"secretRef": {"file": str(secret_file)}, "header": "X-Model-Key", "prefix": ""},
                "dropFields": ["user"],
            }
        ],
    )
    add_route(
        doc,
        "ollama",
        "/ollama/v1/chat/completions",
        [{"name": "ollama", "provider": "openai-compatible", "path": "/v1/chat/completions"}],
    )
    add_route(
        doc,
        "byok",
        "/byok/v1/chat/completions",
        [{"name": "byok", "provider": "openai", "auth": {"passthrough": True}}],
    )
    add_route(
        doc,
        "envkey",
        "/envkey/v1/chat/completions",
        [
            {
                "name": "envkey",
                "provider": "openai",
                "model": "gpt-4.1-mini",
                "auth": {"secretRef": {"env": "AIGW_TEST_OPENAI_KEY"}},
                "organization": "org-42",
            }
        ],
    )
    add_route(
        doc,
        "cooling",
        "/cooling/v1/chat/completions",
        [{"name": "cooling", "provider": "openai", "auth": {"secretRef": {"inline": "k"}}}],
    )
    s = Stack(doc)
    s.mocks["ollama"].baseline(auth="none")
    # This server takes its key in a custom header the mock does not parse; the test
    # checks the header itself.
    s.mocks["vllm"].baseline(auth="none")
    s.start()
    yield s
    s.stop()


def client(stack, prefix: str, key: str = "client-key"):
    import openai

    return openai.OpenAI(base_url=f"{stack.url}/{prefix}/v1", api_key=key, max_retries=0, timeout=20)


def test_self_hosted_path_header_auth_and_model_override(stack):
    resp = client(stack, "vllm").chat.completions.create(
        model="whatever-the-client-says", messages=USER, user="u-1"
    )
    assert resp.model == "meta-llama/Llama-3.1-8B"
    [seen] = stack.mocks["vllm"].requests
    assert seen["path"] == "/serve/v1/chat/completions"
    assert seen["headers"]["x-model-key"] == "file-secret-789"
    assert "authorization" not in seen["headers"], "the client's key must not reach the provider"
    assert seen["headers"]["host"] == "vllm.internal"
    assert seen["body"]["model"] == "meta-llama/Llama-3.1-8B"
    assert "user" not in seen["body"]


def test_backend_model_lets_client_omit_model(stack):
    r = stack.post({"messages": USER}, path="/vllm/v1/chat/completions")
    assert r.status_code == 200, r.text
    assert stack.mocks["vllm"].requests[0]["body"]["model"] == "meta-llama/Llama-3.1-8B"


def test_self_hosted_without_auth_sends_no_credential(stack):
    resp = client(stack, "ollama", key="client-key-should-not-leak").chat.completions.create(
        model="llama3.2", messages=USER
    )
    assert resp.model == "llama3.2"
    [seen] = stack.mocks["ollama"].requests
    assert seen["path"] == "/v1/chat/completions"
    for h in ("authorization", "api-key", "x-api-key", "x-goog-api-key"):
        assert h not in seen["headers"]


def test_passthrough_keeps_the_client_credential(stack):
    client(stack, "byok", key="sk-user-own-key").chat.completions.create(model="gpt-4o", messages=USER)
    [seen] = stack.mocks["byok"].requests
    assert seen["headers"]["authorization"] == "Bearer sk-user-own-key"


def test_passthrough_without_client_credential_is_rejected_by_provider(stack):
    r = stack.post(
        {"model": "gpt-4o", "messages": USER}, path="/byok/v1/chat/completions", headers={"authorization": ""}
    )
    assert r.status_code == 401
    assert r.json()["error"]["message"]


def test_env_secret_and_organization_header(stack):
    client(stack, "envkey", key="client-key").chat.completions.create(model="gpt-4o", messages=USER)
    [seen] = stack.mocks["envkey"].requests
    assert seen["headers"]["authorization"] == "Bearer env-secret-123"
    assert seen["headers"]["openai-organization"] == "org-42"
    assert seen["body"]["model"] == "gpt-4.1-mini"


@pytest.mark.parametrize("header", ["api-key", "x-api-key", "x-goog-api-key"])
def test_client_credential_in_any_header_is_removed(stack, header):
    r = stack.post(
        {"model": "gpt-4o", "messages": USER},
        path="/envkey/v1/chat/completions",
        headers={header: "client-key-elsewhere"},
    )
    assert r.status_code == 200
    seen = stack.mocks["envkey"].requests[0]["headers"]
    assert header not in seen
    assert seen["authorization"] == "Bearer env-secret-123"


def test_client_only_and_account_headers_do_not_reach_the_provider(stack):
    r = stack.post(
        {"model": "gpt-4o", "messages": USER},
        path="/envkey/v1/chat/completions",
        headers={
            "accept-encoding": "gzip, br",
            "cookie": "session=1",
            "proxy-authorization": "x",
            "openai-organization": "org-chosen-by-client",
            "openai-project": "p",
        },
    )
    assert r.status_code == 200
    seen = stack.mocks["envkey"].requests[0]["headers"]
    for h in ("accept-encoding", "cookie", "proxy-authorization", "openai-project"):
        assert h not in seen, h
    # The backend's own organization, not the client's.
    assert seen["openai-organization"] == "org-42"


def test_passthrough_keeps_the_clients_account_headers(stack):
    r = stack.post(
        {"model": "gpt-4o", "messages": USER},
        path="/byok/v1/chat/completions",
        headers={"openai-organization": "org-of-the-client"},
    )
    assert r.status_code == 200
    assert stack.mocks["byok"].requests[0]["headers"]["openai-organization"] == "org-of-the-client"


def test_error_without_a_body_is_still_an_openai_error_and_cools_down(stack):
    r = stack.post(
        {"model": "gpt-4o", "messages": USER},
        path="/cooling/v1/chat/completions",
        headers={"x-mock-status": "429", "x-mock-empty-body": "1", "x-mock-retry-after": "30"},
    )
    assert r.status_code == 429
    assert r.json()["error"]["type"] == "rate_limit_error"
    calls = len(stack.mocks["cooling"].requests)
    # The backend now waits out its Retry-After: the gateway answers by itself.
    again = stack.post({"model": "gpt-4o", "messages": USER}, path="/cooling/v1/chat/completions")
    assert again.status_code == 429 and int(again.headers["retry-after"]) <= 30
    assert len(stack.mocks["cooling"].requests) == calls


def test_passthrough_429_does_not_cool_the_backend_for_everyone(stack):
    r = stack.post(
        {"model": "gpt-4o", "messages": USER},
        path="/byok/v1/chat/completions",
        headers={"x-mock-status": "429", "x-mock-retry-after": "30"},
    )
    assert r.status_code == 429
    assert (
        stack.post({"model": "gpt-4o", "messages": USER}, path="/byok/v1/chat/completions").status_code == 200
    )
