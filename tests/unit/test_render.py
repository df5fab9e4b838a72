"""`aigw validate` / `aigw render`: the compact gateway config and its Envoy bootstrap."""

import subprocess
import sys

import pytest
import yaml

from extproc.devstack import envoy_binary
from extproc.providers.azure_openai import AzureOpenAISettings
from extproc.render.loader import render_file
from extproc.runtime.bootstrap import build_config
from tests.harness import ROOT
from tests.render_helpers import config_problems as problems
from tests.render_helpers import write_config as write

EXAMPLES = sorted((ROOT / "envoy" / "examples").glob("*.yaml"))


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_every_example_renders_to_a_bootstrap_envoy_and_the_processor_accept(path, tmp_path):
    out = tmp_path / "bootstrap.yaml"
    run = subprocess.run(
        [sys.executable, "-m", "extproc", "render", str(path), "-o", str(out)],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert run.returncode == 0, run.stderr
    assert out.read_text().startswith("# Rendered by `aigw render")
    doc = yaml.safe_load(out.read_text())
    gw = build_config(doc)
    assert gw.backends and gw.routes
    check = subprocess.run(
        [envoy_binary(), "--mode", "validate", "-c", str(out)], capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout[-2000:] + check.stderr[-2000:]


def test_validate_reports_file_line_and_field(tmp_path):
    ps = problems(
        tmp_path,
        """\
        backends:
        - name: openai
          ai:
            provider: openai
            modle: gpt-4o
            auth: {secretRef: {env: X}}
        routes:
        - name: chat
          matches: [{path: {type: Exakt, value: /v1}}]
          backendRefs: [{name: openai}]
          timeouts: {request: 5 minutes}
        """,
    )
    text = "\n".join(ps)
    assert f"{tmp_path / 'gw.yaml'}:5: backends[0].ai.modle: unknown field 'modle'" in text
    assert ":9: routes[0].matches[0].path.type:" in text
    assert ":11: routes[0].timeouts.request:" in text and "not a duration" in text


def test_unknown_backend_reference(tmp_path):
    [p] = problems(
        tmp_path,
        """\
        backends: [{name: a, ai: {provider: openai, auth: {passthrough: true}}}]
        routes: [{name: chat, backendRefs: [{name: b}]}]
        """,
    )
    assert "backendRef 'b' names no backend" in p


def test_group_providers_need_names_and_unique_names(tmp_path):
    [p] = problems(
        tmp_path,
        """\
        backends:
        - name: g
          ai:
            priorityGroups:
            - providers: [{provider: openai, auth: {passthrough: true}}]
        routes: [{name: chat, backendRefs: [{name: g}]}]
        """,
    )
    assert ":5: backends[0].ai.priorityGroups[0]" in p and "needs a 'name'" in p


def test_provider_without_public_host_needs_an_endpoint(tmp_path):
    [p] = problems(
        tmp_path,
        """\
        backends: [{name: vllm, ai: {provider: openai-compatible}}]
        routes: [{name: chat, backendRefs: [{name: vllm}]}]
        """,
    )
    assert "has no public host: set 'endpoint'" in p


def test_policy_target_conflict_is_an_error(tmp_path):
    [p] = problems(
        tmp_path,
        """\
        backends: [{name: a, ai: {provider: openai, auth: {passthrough: true}}}]
        routes: [{name: chat, backendRefs: [{name: a}], policies: {maxRequestBytes: 10}}]
        policies: [{name: p, targetRefs: [{name: chat}], ai: {maxRequestBytes: 20}}]
        """,
    )
    assert "policies[0].targetRefs[0].name" in p and "has its own policies" in p


def test_bad_policy_inside_route_names_the_line(tmp_path):
    ps = problems(
        tmp_path,
        """\
        backends: [{name: a, ai: {provider: openai, auth: {passthrough: true}}}]
        routes:
        - name: chat
          backendRefs: [{name: a}]
          policies:
            promptGuard:
              request:
                regex: {builtins: [CREDITCARD]}
        """,
    )
    assert any(
        ":8: routes[0].policies.promptGuard.request.regex.builtins" in p and "CREDITCARD" in p for p in ps
    )


def _cluster(doc, name):
    return next(c for c in doc["static_resources"]["clusters"] if c["name"] == name)


def test_public_providers_get_dns_tls_and_a_matching_host(tmp_path):
    doc = render_file(
        write(
            tmp_path,
            """\
        backends:
        - name: mixed
          ai:
            priorityGroups:
            - providers:
              - {name: o, provider: openai, model: gpt-4o, auth: {secretRef: {inline: k}}}
              - {name: a, provider: anthropic, model: claude, auth: {secretRef: {inline: k}}}
            - providers:
              - {name: local, provider: openai-compatible, endpoint: {host: 127.0.0.1, port: 8000}}
        routes: [{name: chat, backendRefs: [{name: mixed}]}]
        """,
        )
    )
    c = _cluster(doc, "mixed")
    assert c["type"] == "STRICT_DNS"
    eps = [lb for loc in c["load_assignment"]["endpoints"] for lb in loc["lb_endpoints"]]
    addrs = [lb["endpoint"]["address"]["socket_address"] for lb in eps]
    assert [(a["address"], a["port_value"]) for a in addrs] == [
        ("api.openai.com", 443),
        ("api.anthropic.com", 443),
        ("127.0.0.1", 8000),
    ]
    matches = {m["name"]: m for m in c["transport_socket_matches"]}
    assert matches["tls-api.openai.com"]["transport_socket"]["typed_config"]["sni"] == "api.openai.com"
    assert matches["health-checks"]["match"] == {"aigw_hc": "plain"}
    assert c["health_checks"][0]["transport_socket_match_criteria"] == {"aigw_hc": "plain"}
    assert eps[1]["metadata"]["filter_metadata"]["envoy.transport_socket_match"] == {
        "aigw_tls": "api.anthropic.com"
    }
    assert "envoy.transport_socket_match" not in eps[2]["metadata"]["filter_metadata"]  # plain HTTP
    assert [lb["endpoint"]["health_check_config"]["hostname"] for lb in eps] == ["o", "a", "local"]
    assert c["common_lb_config"] == {"healthy_panic_threshold": {"value": 0}, "update_merge_window": "0s"}


def test_routes_render_gateway_api_matches_and_filters(tmp_path):
    doc = render_file(
        write(
            tmp_path,
            """\
        backends:
        - {name: a, ai: {provider: openai, auth: {passthrough: true}}}
        - {name: b, ai: {provider: openai, auth: {passthrough: true}}}
        - {name: docs, static: {host: 127.0.0.1, port: 3000}}
        routes:
        - name: split
          matches:
          - path: {type: RegularExpression, value: "^/v[12]/chat/completions$"}
            headers: [{name: x-env, value: "pr.*", type: RegularExpression}]
            queryParams: [{name: q, value: "1"}]
          - {path: {value: /alt}}
          backendRefs: [{name: a, weight: 80}, {name: b, weight: 20}]
          timeouts: {request: 90s, idle: 30s}
          filters:
          - type: RequestHeaderModifier
            requestHeaderModifier: {set: [{name: x-team, value: ml}], remove: [x-debug]}
        - name: docs
          matches: [{path: {value: /docs}}]
          backendRefs: [{name: docs}]
          filters: [{type: URLRewrite, urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /}}}]
        """,
        )
    )
    routes = doc["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"][
        "route_config"
    ]["virtual_hosts"][0]["routes"]
    split, alt, docs, fallback = routes
    assert (split["name"], alt["name"]) == ("split", "split.2")
    assert split["match"]["safe_regex"] == {"regex": "^/v[12]/chat/completions$"}
    assert split["match"]["headers"][0]["string_match"] == {"safe_regex": {"regex": "pr.*"}}
    assert split["match"]["query_parameters"][0] == {"name": "q", "string_match": {"exact": "1"}}
    assert split["route"]["weighted_clusters"]["clusters"] == [
        {"name": "a", "weight": 80},
        {"name": "b", "weight": 20},
    ]
    assert (split["route"]["timeout"], split["route"]["idle_timeout"]) == ("90s", "30s")
    assert split["request_headers_to_remove"] == ["x-debug"]
    assert split["metadata"]["filter_metadata"]["aigw"] == {"maxRequestBytes": 4194304}
    assert docs["route"]["prefix_rewrite"] == "/"
    assert docs["typed_per_filter_config"]["envoy.filters.http.ext_proc"]["disabled"] is True
    assert fallback["name"] == "not-found"


def test_cli_exit_codes(tmp_path):
    bad = write(tmp_path, "routes: []\n")
    run = subprocess.run(
        [sys.executable, "-m", "extproc", "validate", str(bad)], capture_output=True, text=True, cwd=ROOT
    )
    assert run.returncode == 2 and "routes" in run.stderr
    run = subprocess.run(
        [sys.executable, "-m", "extproc", "validate", str(EXAMPLES[0])],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert run.returncode == 0 and run.stdout.startswith("ok:")


def test_readme_quick_start_shows_the_rendered_route(tmp_path):
    """The README shows one route as gateway config and as the bootstrap it renders to."""
    readme = (ROOT / "README.md").read_text()
    config = readme.split("<!-- gateway-config -->")[1].split("```yaml")[1].split("```")[0]
    shown = yaml.safe_load(readme.split("<!-- rendered-route -->")[1].split("```yaml")[1].split("```")[0])
    doc = render_file(write(tmp_path, config))
    routes = doc["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"][
        "route_config"
    ]["virtual_hosts"][0]["routes"]
    assert routes[0] == shown[0]


# ---- what review found -----------------------------------------------------------------------

BASE = """\
backends:
- {name: y, ai: {provider: openai, model: "n", auth: {secretRef: {inline: k}}}}
routes:
- name: chat
  matches: [{path: {value: /v1}, headers: [{name: x-beta, value: "y"}]}]
  backendRefs: [{name: y}]
"""


def test_yaml_booleans_envoy_would_misread_are_quoted(tmp_path):
    out = tmp_path / "out.yaml"
    run = subprocess.run(
        [sys.executable, "-m", "extproc", "render", str(write(tmp_path, BASE)), "-o", str(out)],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert run.returncode == 0, run.stderr
    check = subprocess.run(
        [envoy_binary(), "--mode", "validate", "-c", str(out)], capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout[-1500:]
    assert 'name: "y"' in out.read_text()


def test_retries_cover_groups_of_unequal_size(tmp_path):
    doc = render_file(
        write(
            tmp_path,
            """\
        backends:
        - name: g
          ai:
            priorityGroups:
            - providers: [{name: a, provider: openai, auth: {passthrough: true}}]
            - providers:
              - {name: b, provider: openai, auth: {passthrough: true}}
              - {name: c, provider: anthropic, auth: {passthrough: true}}
        routes: [{name: chat, backendRefs: [{name: g}]}]
        """,
        )
    )
    retry = doc["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"][
        "route_config"
    ]["virtual_hosts"][0]["routes"][0]["route"]["retry_policy"]
    # Two attempts per group (the largest group's size), two groups.
    assert retry["num_retries"] == 3
    assert retry["retry_priority"]["typed_config"]["update_frequency"] == 2


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_every_gateway_cluster_lifts_envoys_circuit_breaker_defaults(path):
    """Envoy's default circuit breaker allows 3 retries and 1024 requests in flight per
    cluster: under load, the requests past the third that need their retry (a failover, a
    dead pool server) would get the failure, and past ~500 concurrent LLM streams the
    processor's cluster was full. Every cluster the gateway depends on lifts them."""
    doc = render_file(path)
    ai = [
        c
        for c in doc["static_resources"]["clusters"]
        if any(
            "aigw" in (lb.get("metadata") or {}).get("filter_metadata", {})
            for locality in c.get("load_assignment", {}).get("endpoints", [])
            for lb in locality["lb_endpoints"]
        )
    ]
    assert ai
    for cluster in ai:
        (threshold,) = cluster["circuit_breakers"]["thresholds"]
        assert threshold["priority"] == "DEFAULT"
        assert threshold["retry_budget"]["budget_percent"]["value"] == 100.0
        assert threshold["max_requests"] > 1024  # LLM streams stay open for their whole answer
    # The processor's cluster: one or two ext_proc streams per request in flight.
    (processor,) = [c for c in doc["static_resources"]["clusters"] if c["name"] == "extproc"]
    (threshold,) = processor["circuit_breakers"]["thresholds"]
    assert threshold["max_requests"] > 1024 and threshold["max_pending_requests"] > 1024


def test_durations_are_plain_seconds(tmp_path):
    doc = render_file(
        write(
            tmp_path,
            BASE.replace(
                "backendRefs: [{name: y}]",
                "backendRefs: [{name: y}]\n  timeouts: {request: 1234567s, idle: 300h}",
            ),
        )
    )
    action = doc["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"][
        "route_config"
    ]["virtual_hosts"][0]["routes"][0]["route"]
    assert (action["timeout"], action["idle_timeout"]) == ("1234567s", "1080000s")


@pytest.mark.parametrize(
    "change, text",
    [
        (
            ("backendRefs: [{name: y}]", "backendRefs: [{name: y}]\n  timeouts: {request: -5}"),
            "greater than or equal to 0",
        ),
        (("routes:", "gateway: {processor: {timeout: 0}}\nroutes:"), "greater than 0"),
        (("name: y, ai", "name: extproc, ai"), "processor's own cluster"),
        (("value: /v1}", "value: /v1(?=x)}"), ""),
        (("{path: {value: /v1}", "{path: {type: RegularExpression, value: '^/v1(?=x)'}"), "RE2"),
        (
            (
                "backendRefs: [{name: y}]",
                "backendRefs: [{name: y}]\n"
                "  filters: [{type: RequestHeaderModifier, requestHeaderModifier: {remove: [host]}}]",
            ),
            "cannot be modified",
        ),
        (
            (
                "backendRefs: [{name: y}]",
                "backendRefs: [{name: y}]\n"
                "  filters:\n"
                "  - {type: URLRewrite, urlRewrite: {hostname: a}}\n"
                "  - {type: URLRewrite, urlRewrite: {hostname: b}}",
            ),
            "at most one filter of each type",
        ),
        (
            (
                '{name: y, ai: {provider: openai, model: "n", auth: {secretRef: {inline: k}}}}',
                '{name: y, ai: {provider: openai, model: "n", auth: {secretRef: {inline: k}}, '
                "endpoint: {host: 10.0.0.1, port: 443}}}",
            ),
            "needs 'sni'",
        ),
    ],
)
def test_configs_envoy_would_refuse_are_refused_first(tmp_path, change, text):
    old, new = change
    text_in = BASE.replace(old, new)
    if text_in == BASE:
        pytest.skip("change did not apply")
    ps = problems(tmp_path, text_in)
    assert any(text in p for p in ps), ps


def test_cross_reference_errors_name_their_line(tmp_path):
    ps = problems(
        tmp_path,
        """\
        backends:
        - {name: a, ai: {provider: openai, auth: {passthrough: true}}}
        - {name: docs, static: {host: 127.0.0.1, port: 80}}
        - {name: az, ai: {provider: azure-openai, auth: {passthrough: true}}}
        routes:
        - {name: r, backendRefs: [{name: a}, {name: docs}]}
        - {name: s, backendRefs: [{name: nope}]}
        - {name: t, backendRefs: [{name: docs}], policies: {maxRequestBytes: 10}}
        policies:
        - {name: p, targetRefs: [{name: t}], ai: {maxRequestBytes: 5}}
        """,
    )
    text = "\n".join(ps)
    assert ":4: backends[2].ai: provider 'az' (azure-openai) has no public host" in text
    assert ":6: routes[0].backendRefs: cannot mix AI and static" in text
    assert ":7: routes[1].backendRefs[0].name: backendRef 'nope' names no backend" in text
    assert ":8: routes[2].policies: a route to a static backend" in text
    assert ":10: policies[0].targetRefs[0].name:" in text


def test_content_routing_header_routes_must_recompute_the_header(tmp_path):
    [p] = problems(
        tmp_path,
        """\
        backends:
        - {name: a, ai: {provider: openai, auth: {passthrough: true}}}
        - {name: b, ai: {provider: openai, auth: {passthrough: true}}}
        routes:
        - name: premium
          matches: [{path: {value: /v1}, headers: [{name: x-content-type, value: long}]}]
          backendRefs: [{name: b}]
        - name: classify
          matches: [{path: {value: /v1}}]
          backendRefs: [{name: a}]
          policies:
            contentRouting:
              headers:
              - name: x-content-type
                source: firstMessageLength
                buckets: [{upTo: 10, value: short}, {value: long}]
        """,
    )
    assert ":6: routes[0].matches[0].headers[0].name:" in p and "could choose it" in p


def test_duplicate_keys_and_unknown_providers_are_clear(tmp_path):
    [p] = problems(tmp_path, "routes: []\nroutes: []\n")
    assert ":2:" in p and "given twice" in p
    ps = problems(
        tmp_path,
        "backends: [{name: a, ai: {provider: openia}}]\nroutes: [{name: r, backendRefs: [{name: a}]}]\n",
    )
    assert any("unknown provider 'openia'; known:" in p and ":1:" in p for p in ps), ps


def test_unquoted_dates_stay_text_and_null_defaults_render(tmp_path):
    doc = render_file(
        write(
            tmp_path,
            """\
        backends:
        - name: az
          ai:
            provider: azure-openai
            apiVersion: 2024-10-21
            auth: {passthrough: true}
            endpoint: {host: x.openai.azure.com, port: 443}
        routes:
        - name: r
          backendRefs: [{name: az}]
          policies: {fieldDefaults: [{path: stop, value: null, override: true}]}
        """,
        )
    )
    gw = build_config(doc, resolve_secrets=False)
    settings = gw.backends[0].settings
    assert isinstance(settings, AzureOpenAISettings)
    assert settings.api_version == "2024-10-21"
    assert gw.routes["r"].policy.field_defaults[0].value is None
    md = gw.backends[0].settings
    assert md.authority == "x.openai.azure.com"


def test_custom_vertex_endpoint_gets_its_own_host(tmp_path):
    doc = render_file(
        write(
            tmp_path,
            """\
        backends:
        - name: v
          ai:
            provider: vertex-ai
            project: p
            auth: {passthrough: true}
            endpoint: {host: vertex.corp.example, port: 443}
        routes: [{name: r, backendRefs: [{name: v}]}]
        """,
        )
    )
    assert build_config(doc, resolve_secrets=False).backends[0].settings.authority == "vertex.corp.example"


def test_listener_buffer_fits_the_largest_route_limit_and_xff_is_not_trusted(tmp_path):
    doc = render_file(write(tmp_path, BASE + "  policies: {maxRequestBytes: 20000000}\n"))
    listener = doc["static_resources"]["listeners"][0]
    assert listener["per_connection_buffer_limit_bytes"] == 40000000
    hcm = listener["filter_chains"][0]["filters"][0]["typed_config"]
    assert hcm["use_remote_address"] is True and hcm["xff_num_trusted_hops"] == 0


def test_rendered_bootstraps_carry_the_crash_workaround_and_normalise_paths(tmp_path):
    doc = render_file(write(tmp_path, BASE))
    # Envoy 1.40 crashes without it (README, "Operations notes"); the only layer, so the
    # admin endpoint cannot switch it back on.
    assert doc["layered_runtime"] == {
        "layers": [
            {
                "name": "static",
                "static_layer": {"envoy.reloadable_features.grpc_side_stream_flow_control": False},
            }
        ]
    }
    hcm = doc["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    assert hcm["normalize_path"] is True and hcm["merge_slashes"] is True
    assert hcm["path_with_escaped_slashes_action"] == "REJECT_REQUEST"
    # What normalize_path refuses gets an OpenAI-style 400, not a generic gateway error.
    mapper = next(
        m for m in hcm["local_reply_config"]["mappers"] if "path_normalization_failed" in str(m["filter"])
    )
    error = mapper["body_format_override"]["json_format"]["error"]
    assert error["code"] == "invalid_path" and error["type"] == "invalid_request_error"
    assert "%" not in error["message"]  # Envoy would read it as a format operator


def test_backend_request_timeout_is_the_per_try_timeout(tmp_path):
    doc = render_file(
        write(
            tmp_path,
            """\
        backends: [{name: a, ai: {provider: openai, auth: {passthrough: true}}}]
        routes: [{name: chat, backendRefs: [{name: a}], timeouts: {request: 120s, backendRequest: 30s}}]
        """,
        )
    )
    [chat] = doc["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"][
        "route_config"
    ]["virtual_hosts"][0]["routes"]
    assert chat["route"]["retry_policy"] == {"num_retries": 0, "per_try_timeout": "30s"}
    [p] = problems(
        tmp_path,
        """\
        backends: [{name: a, ai: {provider: openai, auth: {passthrough: true}}}]
        routes: [{name: chat, backendRefs: [{name: a}], timeouts: {request: 10s, backendRequest: 30s}}]
        """,
    )
    assert "backendRequest must not be longer than request" in p


def _upstream_filtered(doc) -> dict[str, bool]:
    return {
        c["name"]: "http_filters" in next(iter(c.get("typed_extension_protocol_options", {}).values()), {})
        for c in doc["static_resources"]["clusters"]
        if c["name"] != "extproc"
    }


def test_single_host_backends_are_translated_at_the_route_unless_a_route_rewrites_their_url(tmp_path):
    doc = render_file(
        write(
            tmp_path,
            """\
        backends:
        - {name: a, ai: {provider: openai, auth: {passthrough: true}}}
        - {name: b, ai: {provider: anthropic, auth: {passthrough: true}}}
        - name: c
          ai: {priorityGroups: [{providers: [{name: c1, provider: openai, auth: {passthrough: true}}]},
                                {providers: [{name: c2, provider: openai, auth: {passthrough: true}}]}]}
        routes:
        - {name: a, matches: [{path: {value: /a}}], backendRefs: [{name: a}]}
        - name: b
          matches: [{path: {value: /b}}]
          backendRefs: [{name: b}]
          filters: [{type: URLRewrite, urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /}}}]
        - {name: c, matches: [{path: {value: /c}}], backendRefs: [{name: c}]}
        """,
        )
    )
    # a: one host, the route-level filter runs its attempt; b: its route rewrites the URL
    # after that filter, so it keeps the upstream filter; c: priority groups.
    assert _upstream_filtered(doc) == {"a": False, "b": True, "c": True}
    route_filter = next(
        f
        for f in doc["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"][
            "http_filters"
        ]
        if "ext_proc" in f["name"]
    )["typed_config"]
    assert "xds.cluster_name" in route_filter["request_attributes"]
    assert route_filter["mutation_rules"] == {"allow_all_routing": True, "allow_envoy": True}
