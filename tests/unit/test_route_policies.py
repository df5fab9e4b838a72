"""Route policy models: enrichment, field defaults, content routing, and start-up errors."""

import pytest
from pydantic import ValidationError

from extproc.config.policy import RoutePolicy
from extproc.policies.content_routing import ContentRouting
from extproc.policies.enrichment import PromptEnrichment
from extproc.policies.field_defaults import FieldDefault, apply_all
from extproc.runtime.bootstrap import ConfigError, build_config
from tests.bootstraps import routes
from tests.harness import load_bootstrap


def req(**kw):
    return {"model": "m", "messages": [{"role": "user", "content": "hello"}], **kw}


def test_enrichment_wraps_client_messages_and_normalises_roles():
    e = PromptEnrichment.model_validate(
        {
            "prepend": [{"role": "SYSTEM", "content": "Parse the unstructured text into CSV format."}],
            "append": [{"role": "user", "content": "Answer in one line."}],
        }
    )
    r = req()
    e.apply(r)
    assert r["messages"] == [
        {"role": "system", "content": "Parse the unstructured text into CSV format."},
        {"role": "user", "content": "hello"},
        {"role": "user", "content": "Answer in one line."},
    ]


def test_enrichment_rejects_unknown_roles():
    with pytest.raises(ValidationError, match="must be one of"):
        PromptEnrichment.model_validate({"prepend": [{"role": "wizard", "content": "x"}]})


@pytest.mark.parametrize(
    "override, client, expected",
    [(False, None, 2048), (False, 100, 100), (True, 100, 2048), (True, None, 2048)],
)
def test_field_default_override_semantics(override, client, expected):
    r = req() if client is None else req(max_tokens=client)
    FieldDefault(path="max_tokens", value=2048, override=override).apply(r)
    assert r["max_tokens"] == expected


def test_dotted_paths_create_objects_and_keep_siblings():
    r = req(stream_options={"other": 1})
    assert FieldDefault(path="stream_options.include_usage", value=True).apply(r)
    assert r["stream_options"] == {"other": 1, "include_usage": True}
    r = req()
    apply_all((FieldDefault(path="metadata.tier.name", value="gold"),), r)
    assert r["metadata"] == {"tier": {"name": "gold"}}


def test_default_does_not_replace_a_client_scalar_where_an_object_is_needed():
    r = req(stream_options=True)
    assert not FieldDefault(path="stream_options.include_usage", value=True).apply(r)
    assert r["stream_options"] is True
    assert FieldDefault(path="stream_options.include_usage", value=True, override=True).apply(r)
    assert r["stream_options"] == {"include_usage": True}


@pytest.mark.parametrize("path", ["", ".x", "a..b", "messages", "messages.0"])
def test_bad_default_paths(path):
    with pytest.raises(ValidationError):
        FieldDefault(path=path, value=1)


def test_defaults_that_break_every_request_are_refused_at_start_up():
    with pytest.raises(ValidationError, match="invalid request"):
        RoutePolicy.model_validate({"fieldDefaults": [{"path": "temperature", "value": "hot"}]})


def test_content_routing_buckets_and_sources():
    cr = ContentRouting.model_validate(
        {
            "headers": [
                {
                    "name": "X-Content-Type",
                    "source": "firstMessageLength",
                    "buckets": [{"upTo": 10, "value": "short"}, {"value": "long"}],
                },
                {"name": "x-requested-model", "source": "model"},
                {"name": "x-prompt-length", "source": "promptLength"},
                {"name": "x-has-tools", "source": "hasTools"},
            ]
        }
    )
    assert cr.compute(req()) == {
        "x-content-type": "short",
        "x-requested-model": "m",
        "x-prompt-length": "5",
        "x-has-tools": "false",
    }
    long = req(messages=[{"role": "user", "content": "x" * 11}], tools=[{}])
    assert cr.compute(long)["x-content-type"] == "long"
    assert cr.compute(long)["x-has-tools"] == "true"


@pytest.mark.parametrize(
    "header",
    [
        {"name": "x-aigw-backend", "source": "model"},
        {"name": ":path", "source": "model"},
        {"name": "x", "source": "model", "buckets": [{"upTo": 1, "value": "a"}]},
        {"name": "x", "source": "promptLength", "buckets": [{"value": "a"}, {"upTo": 3, "value": "b"}]},
        {
            "name": "x",
            "source": "promptLength",
            "buckets": [{"upTo": 9, "value": "a"}, {"upTo": 3, "value": "b"}],
        },
        {"name": "x", "source": "nonsense"},
    ],
)
def test_bad_routing_headers(header):
    with pytest.raises(ValidationError):
        ContentRouting.model_validate({"headers": [header]})


def _with_policy(policy: dict):
    doc = load_bootstrap("mock.yaml")
    routes(doc)[0]["metadata"]["filter_metadata"]["aigw"] = policy
    return doc


@pytest.mark.parametrize(
    "policy, field, text",
    [
        (
            {"promptGuard": {"request": {"regex": {"matches": [{"pattern": "a(b", "name": "X"}]}}}},
            "promptGuard.request.regex.matches[0].pattern",
            "invalid regular expression",
        ),
        (
            {"promptGuard": {"response": {"regex": {"builtins": ["CREDITCARD"]}}}},
            "promptGuard.response.regex.builtins",
            "CREDITCARD",
        ),
        (
            {
                "promptGuard": {
                    "request": {"customResponse": {"statusCode": 200}, "regex": {"builtins": ["EMAIL"]}}
                }
            },
            "promptGuard.request.customResponse.statusCode",
            "greater than or equal to 400",
        ),
        ({"promptGuard": {"request": {}}}, "promptGuard.request", "at least one"),
        (
            {"promptGuard": {"request": {"webhook": {"url": "ftp://x"}}}},
            "promptGuard.request.webhook.url",
            "",
        ),
    ],
)
def test_bad_guard_config_names_route_and_field(policy, field, text):
    with pytest.raises(ConfigError) as exc:
        build_config(_with_policy(policy))
    [problem] = exc.value.problems
    assert problem.startswith(f"route 'chat': field '{field}'"), problem
    assert text in problem


def test_missing_moderation_secret_names_the_route(monkeypatch):
    monkeypatch.delenv("AIGW_NO_SUCH_KEY", raising=False)
    doc = _with_policy(
        {
            "promptGuard": {
                "request": {
                    "moderation": {
                        "openAIModeration": {"authToken": {"secretRef": {"env": "AIGW_NO_SUCH_KEY"}}}
                    }
                }
            }
        }
    )
    with pytest.raises(ConfigError) as exc:
        build_config(doc)
    [problem] = exc.value.problems
    assert problem.startswith("route 'chat'") and "AIGW_NO_SUCH_KEY" in problem


def test_model_default_satisfies_model_requirement():
    gw = build_config(_with_policy({"fieldDefaults": [{"path": "model", "value": "gpt-4"}]}))
    assert gw.routes["chat"].model_always_set
