"""`aigw validate` / `aigw render`: the compact gateway config and its Envoy bootstrap."""

import subprocess
import sys
import textwrap

import pytest
import yaml

from extproc.config.bootstrap import build_config
from extproc.devstack import envoy_binary
from extproc.render.loader import GatewayConfigError, render_file
from tests.harness import ROOT

EXAMPLES = sorted((ROOT / "envoy" / "examples").glob("*.yaml"))


def write(tmp_path, text: str):
    path = tmp_path / "gw.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def problems(tmp_path, text: str) -> list[str]:
    with pytest.raises(GatewayConfigError) as exc:
        render_file(write(tmp_path, text))
    return exc.value.problems


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_every_example_renders_to_a_bootstrap_envoy_and_the_processor_accept(path, tmp_path):
    out = tmp_path / "bootstrap.yaml"
    run = subprocess.run([sys.executable, "-m", "extproc", "render", str(path), "-o", str(out)],
                         capture_output=True, text=True, cwd=ROOT)
    assert run.returncode == 0, run.stderr
    assert out.read_text().startswith("# Rendered by `aigw render")
    doc = yaml.safe_load(out.read_text())
    gw = build_config(doc)
    assert gw.backends and gw.routes
    check = subprocess.run([envoy_binary(), "--mode", "validate", "-c", str(out)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout[-2000:] + check.stderr[-2000:]


def test_validate_reports_file_line_and_field(tmp_path):
    ps = problems(tmp_path, """\
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
        """)
    text = "\n".join(ps)
    assert f"{tmp_path / 'gw.yaml'}:5: backends[0].ai.modle: unknown field 'modle'" in text
    assert ":9: routes[0].matches[0].path.type:" in text
    assert ":11: routes[0].timeouts.request:" in text and "not a duration" in text


def test_unknown_backend_reference(tmp_path):
    [p] = problems(tmp_path, """\
        backends: [{name: a, ai: {provider: openai, auth: {passthrough: true}}}]
        routes: [{name: chat, backendRefs: [{name: b}]}]
        """)
    assert "backendRef 'b' names no backend" in p


def test_group_providers_need_names_and_unique_names(tmp_path):
    [p] = problems(tmp_path, """\
        backends:
        - name: g
          ai:
            priorityGroups:
            - providers: [{provider: openai, auth: {passthrough: true}}]
        routes: [{name: chat, backendRefs: [{name: g}]}]
        """)
    assert ":5: backends[0].ai.priorityGroups[0]" in p and "needs a 'name'" in p


def test_provider_without_public_host_needs_an_endpoint(tmp_path):
    [p] = problems(tmp_path, """\
        backends: [{name: vllm, ai: {provider: openai-compatible}}]
        routes: [{name: chat, backendRefs: [{name: vllm}]}]
        """)
    assert "has no public host: set 'endpoint'" in p


def test_policy_target_conflict_is_an_error(tmp_path):
    [p] = problems(tmp_path, """\
        backends: [{name: a, ai: {provider: openai, auth: {passthrough: true}}}]
        routes: [{name: chat, backendRefs: [{name: a}], policies: {maxRequestBytes: 10}}]
        policies: [{name: p, targetRefs: [{name: chat}], ai: {maxRequestBytes: 20}}]
        """)
    assert "targeted by policy 'p'" in p


def test_bad_policy_inside_route_names_the_line(tmp_path):
    ps = problems(tmp_path, """\
        backends: [{name: a, ai: {provider: openai, auth: {passthrough: true}}}]
        routes:
        - name: chat
          backendRefs: [{name: a}]
          policies:
            promptGuard:
              request:
                regex: {builtins: [CREDITCARD]}
        """)
    assert any(":8: routes[0].policies.promptGuard.request.regex.builtins" in p and "CREDITCARD" in p for p in ps)


def _cluster(doc, name):
    return next(c for c in doc["static_resources"]["clusters"] if c["name"] == name)


def test_public_providers_get_dns_tls_and_a_matching_host(tmp_path):
    doc = render_file(write(tmp_path, """\
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
        """))
    c = _cluster(doc, "mixed")
    assert c["type"] == "STRICT_DNS"
    eps = [lb for loc in c["load_assignment"]["endpoints"] for lb in loc["lb_endpoints"]]
    addrs = [lb["endpoint"]["address"]["socket_address"] for lb in eps]
    assert [(a["address"], a["port_value"]) for a in addrs] == [
        ("api.openai.com", 443), ("api.anthropic.com", 443), ("127.0.0.1", 8000)]
    matches = {m["name"]: m for m in c["transport_socket_matches"]}
    assert matches["tls-api.openai.com"]["transport_socket"]["typed_config"]["sni"] == "api.openai.com"
    assert matches["health-checks"]["match"] == {"aigw_hc": "plain"}
    assert c["health_checks"][0]["transport_socket_match_criteria"] == {"aigw_hc": "plain"}
    assert eps[1]["metadata"]["filter_metadata"]["envoy.transport_socket_match"] == {"aigw_tls": "api.anthropic.com"}
    assert "envoy.transport_socket_match" not in eps[2]["metadata"]["filter_metadata"]  # plain HTTP
    assert [lb["endpoint"]["health_check_config"]["hostname"] for lb in eps] == ["o", "a", "local"]
    assert c["common_lb_config"] == {"healthy_panic_threshold": {"value": 0}}


def test_routes_render_gateway_api_matches_and_filters(tmp_path):
    doc = render_file(write(tmp_path, """\
        backends:
        - {name: a, ai: {provider: openai, auth: {passthrough: true}}}
        - {name: b, ai: {provider: openai, auth: {passthrough: true}}}
        - {name: docs, static: {host: 127.0.0.1, port: 3000}}
        routes:
        - name: split
          matches:
          - {path: {type: RegularExpression, value: "^/v[12]/chat/completions$"}, headers: [{name: x-env, value: "pr.*", type: RegularExpression}], queryParams: [{name: q, value: "1"}]}
          - {path: {value: /alt}}
          backendRefs: [{name: a, weight: 80}, {name: b, weight: 20}]
          timeouts: {request: 90s, idle: 30s}
          filters:
          - {type: RequestHeaderModifier, requestHeaderModifier: {set: [{name: x-team, value: ml}], remove: [x-debug]}}
        - name: docs
          matches: [{path: {value: /docs}}]
          backendRefs: [{name: docs}]
          filters: [{type: URLRewrite, urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /}}}]
        """))
    routes = doc["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]["route_config"]["virtual_hosts"][0]["routes"]
    split, alt, docs, fallback = routes
    assert (split["name"], alt["name"]) == ("split", "split.2")
    assert split["match"]["safe_regex"] == {"regex": "^/v[12]/chat/completions$"}
    assert split["match"]["headers"][0]["string_match"] == {"safe_regex": {"regex": "pr.*"}}
    assert split["match"]["query_parameters"][0] == {"name": "q", "string_match": {"exact": "1"}}
    assert split["route"]["weighted_clusters"]["clusters"] == [{"name": "a", "weight": 80}, {"name": "b", "weight": 20}]
    assert (split["route"]["timeout"], split["route"]["idle_timeout"]) == ("90s", "30s")
    assert split["request_headers_to_remove"] == ["x-debug"]
    assert split["metadata"]["filter_metadata"]["aigw"] == {"maxRequestBytes": 4194304}
    assert docs["route"]["prefix_rewrite"] == "/"
    assert docs["typed_per_filter_config"]["envoy.filters.http.ext_proc"]["disabled"] is True
    assert fallback["name"] == "not-found"


def test_cli_exit_codes(tmp_path):
    bad = write(tmp_path, "routes: []\n")
    run = subprocess.run([sys.executable, "-m", "extproc", "validate", str(bad)], capture_output=True,
                         text=True, cwd=ROOT)
    assert run.returncode == 2 and "routes" in run.stderr
    run = subprocess.run([sys.executable, "-m", "extproc", "validate", str(EXAMPLES[0])],
                         capture_output=True, text=True, cwd=ROOT)
    assert run.returncode == 0 and run.stdout.startswith("ok:")


def test_readme_quick_start_shows_the_rendered_route(tmp_path):
    """The README shows one route as gateway config and as the bootstrap it renders to."""
    readme = (ROOT / "README.md").read_text()
    config = readme.split("<!-- gateway-config -->")[1].split("```yaml")[1].split("```")[0]
    shown = yaml.safe_load(readme.split("<!-- rendered-route -->")[1].split("```yaml")[1].split("```")[0])
    doc = render_file(write(tmp_path, config))
    routes = doc["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]["route_config"]["virtual_hosts"][0]["routes"]
    assert routes[0] == shown[0]
