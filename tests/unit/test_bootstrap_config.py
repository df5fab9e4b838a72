"""Start-up validation of the gateway settings in an Envoy bootstrap."""

import copy
import subprocess
import sys

import pytest
import yaml
from envoy.config.core.v3 import base_pb2
from google.protobuf import struct_pb2, text_format

from extproc.runtime.bootstrap import ConfigError, build_config
from extproc.secrets import Secret, SecretRef
from tests.bootstraps import add_route, cluster, routes
from tests.harness import ROOT, load_bootstrap


@pytest.fixture
def doc():
    return load_bootstrap("mock.yaml")


def llm_metadata(doc):
    return cluster(doc, "llm")["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["metadata"][
        "filter_metadata"
    ]["aigw"]


def problems(doc) -> list[str]:
    with pytest.raises(ConfigError) as exc:
        build_config(doc)
    return exc.value.problems


def test_shipped_bootstrap_is_valid(doc):
    gw = build_config(doc)
    assert list(gw.routes) == ["chat"]
    [backend] = gw.backends
    assert backend.name == "mock-openai" and backend.provider.name == "openai"
    assert gw.routes["chat"].policy.max_request_bytes == 4194304
    assert gw.routes["chat"].model_always_set is False


def test_unknown_provider_names_endpoint_and_field(doc):
    llm_metadata(doc)["provider"] = "openia"
    [p] = problems(doc)
    assert "cluster 'llm' endpoint endpoints[0].lb_endpoints[0] (127.0.0.1:18081)" in p
    assert "field 'provider'" in p and "openia" in p and "openai-compatible" in p


def test_misspelt_field_is_an_error(doc):
    llm_metadata(doc)["modle"] = "gpt-4o"
    [p] = problems(doc)
    assert "field 'modle'" in p and "Extra inputs are not permitted" in p


def test_wrong_type_names_the_nested_field(doc):
    llm_metadata(doc)["auth"] = {"secretRef": {"env": 42}}
    [p] = problems(doc)
    assert "field 'auth.secretRef.env'" in p


def test_missing_env_secret_stops_start_up(doc, monkeypatch):
    monkeypatch.delenv("AIGW_NOT_SET", raising=False)
    llm_metadata(doc)["auth"] = {"secretRef": {"env": "AIGW_NOT_SET"}}
    [p] = problems(doc)
    assert "field 'auth.secretRef'" in p and "AIGW_NOT_SET is not set" in p


def test_missing_secret_file_stops_start_up(doc, tmp_path):
    llm_metadata(doc)["auth"] = {"secretRef": {"file": str(tmp_path / "nope")}}
    [p] = problems(doc)
    assert "cannot read secret file" in p


def test_secret_and_passthrough_are_exclusive(doc):
    llm_metadata(doc)["auth"] = {"secretRef": {"inline": "x"}, "passthrough": True}
    [p] = problems(doc)
    assert "field 'auth'" in p and "either 'secretRef' or 'passthrough: true'" in p


def test_public_provider_requires_auth(doc):
    del llm_metadata(doc)["auth"]
    [p] = problems(doc)
    assert "field 'auth': required for provider 'openai'" in p


def test_self_hosted_may_run_without_auth(doc):
    llm_metadata(doc).update(provider="openai-compatible")
    del llm_metadata(doc)["auth"]
    assert build_config(doc).backends[0].credential("client") is None


def test_cluster_of_several_endpoints_without_upstream_filter_is_refused(doc):
    del cluster(doc, "llm")["typed_extension_protocol_options"]
    eps = cluster(doc, "llm")["load_assignment"]["endpoints"][0]["lb_endpoints"]
    second = copy.deepcopy(eps[0])
    second["metadata"]["filter_metadata"]["aigw"]["name"] = "mock-openai-2"
    eps.append(second)
    [p] = problems(doc)
    assert "cluster 'llm'" in p and "no upstream ext_proc filter" in p


def route_filter(doc):
    hcm = doc["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    return next(f for f in hcm["http_filters"] if "ext_proc" in f["name"])["typed_config"]


def test_one_endpoint_cluster_without_upstream_filter_needs_the_route_filter_wired_for_it(doc):
    del cluster(doc, "llm")["typed_extension_protocol_options"]
    found = problems(doc)
    assert any("request_attributes must include xds.cluster_name" in p for p in found), found
    assert any("mutation_rules must be {allow_all_routing: true}" in p for p in found), found
    route_filter(doc)["request_attributes"].append("xds.cluster_name")
    route_filter(doc)["mutation_rules"] = {"allow_all_routing": True}
    gw = build_config(doc)
    direct = gw.direct_backend("llm")
    assert direct is not None and direct.name == "mock-openai"
    assert gw.direct_backend("extproc") is None


def test_one_endpoint_cluster_is_refused_beside_content_routing():
    doc = load_bootstrap("policies.yaml")
    for c in doc["static_resources"]["clusters"]:
        if c["name"] != "extproc":
            c.pop("typed_extension_protocol_options", None)
    route_filter(doc)["request_attributes"].append("xds.cluster_name")
    route_filter(doc)["mutation_rules"] = {"allow_all_routing": True}
    assert any("route by content" in p for p in problems(doc))


def test_endpoint_without_metadata_behind_the_filter_is_refused(doc):
    eps = cluster(doc, "llm")["load_assignment"]["endpoints"][0]["lb_endpoints"]
    eps.append({"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 1}}}})
    [p] = problems(doc)
    assert "lb_endpoints[1]" in p and "no 'aigw' metadata" in p


def test_fail_open_filters_are_refused(doc):
    hcm = doc["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    hcm["http_filters"][0]["typed_config"]["failure_mode_allow"] = True
    up = cluster(doc, "llm")["typed_extension_protocol_options"]
    up = next(iter(up.values()))["http_filters"][0]["typed_config"]
    up["failure_mode_allow"] = True
    ps = problems(doc)
    assert len(ps) == 2 and all("failure_mode_allow must be false" in p for p in ps)


def test_missing_route_filter_is_refused(doc):
    hcm = doc["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    hcm["http_filters"] = hcm["http_filters"][1:]
    [p] = problems(doc)
    assert "no route-level ext_proc filter" in p


def test_upstream_filter_needs_host_metadata_attribute(doc):
    up = next(iter(cluster(doc, "llm")["typed_extension_protocol_options"].values()))
    up["http_filters"][0]["typed_config"]["request_attributes"] = []
    [p] = problems(doc)
    assert "xds.upstream_host_metadata" in p


def test_gateway_route_needs_a_unique_name(doc):
    del routes(doc)[0]["name"]
    [p] = problems(doc)
    assert "routes[0]" in p and "needs a 'name'" in p
    doc = load_bootstrap("mock.yaml")
    add_route(doc, "chat", "/other", [{"provider": "openai-compatible"}])
    assert any("used twice" in p for p in problems(doc))


def test_bad_route_policy_names_route_and_field(doc):
    routes(doc)[0]["metadata"]["filter_metadata"]["aigw"]["maxRequestBytes"] = -1
    [p] = problems(doc)
    assert p.startswith("route 'chat': field 'maxRequestBytes'")


def test_all_problems_are_reported_together(doc):
    llm_metadata(doc)["provider"] = "nope"
    routes(doc)[0]["metadata"]["filter_metadata"]["aigw"]["typo"] = 1
    assert len(problems(doc)) == 2


def test_model_always_set_when_every_backend_has_a_model(doc):
    llm_metadata(doc)["model"] = "gpt-4o"
    assert build_config(doc).routes["chat"].model_always_set is True


def _text_metadata(aigw: dict) -> str:
    md = base_pb2.Metadata()
    s = struct_pb2.Struct()
    s.update(aigw)
    md.filter_metadata["aigw"].CopyFrom(s)
    return text_format.MessageToString(md, as_one_line=True)


def test_backend_lookup_by_name_from_envoy_text_metadata(doc):
    llm_metadata(doc)["name"] = "primary"
    extra = copy.deepcopy(cluster(doc, "llm")["load_assignment"]["endpoints"][0]["lb_endpoints"][0])
    extra["endpoint"]["address"]["socket_address"]["port_value"] = 18082
    extra["metadata"]["filter_metadata"]["aigw"] = {
        "name": "compat",
        "provider": "openai-compatible",
        "path": "/x",
        "cooldownSeconds": 1.5,
    }
    cluster(doc, "llm")["load_assignment"]["endpoints"][0]["lb_endpoints"].append(extra)
    gw = build_config(doc)
    # Envoy may hand numbers over as doubles or even strings: the name decides.
    text = _text_metadata(
        {"name": "compat", "provider": "openai-compatible", "path": "/x", "cooldownSeconds": "1.5"}
    )
    compat = gw.backend_for_host(text)
    assert compat is not None and compat.name == "compat"
    assert gw.backend_for_host(text) is gw.backend_for_host(text)
    primary = gw.backend_for_host(_text_metadata({"name": "primary", "provider": "openai"}))
    assert primary is not None and primary.name == "primary"
    # Unknown names, a different provider under a known name, junk: no backend.
    assert gw.backend_for_host(_text_metadata({"name": "nope", "provider": "openai"})) is None
    assert gw.backend_for_host(_text_metadata({"name": "compat", "provider": "openai"})) is None
    assert gw.backend_for_host("") is None
    assert gw.backend_for_host("not { valid") is None


def test_endpoint_names_are_required(doc):
    del llm_metadata(doc)["name"]
    [p] = problems(doc)
    assert "field 'name': required" in p


def test_inline_secret_never_appears_in_repr():
    ref = SecretRef(inline="sk-super-secret")
    assert "sk-super-secret" not in repr(ref) and "sk-super-secret" not in str(ref)
    assert "sk-super-secret" not in repr(Secret(ref))


def test_file_secret_follows_rotation(tmp_path, monkeypatch):
    import extproc.secrets as secrets

    monkeypatch.setattr(secrets, "_FILE_RECHECK_SECONDS", 0.0)
    f = tmp_path / "key"
    f.write_text("one\n")
    secret = Secret(SecretRef(file=str(f)))
    assert secret.value == "one"
    import os

    f.write_text("two\n")
    os.utime(f, (1, 1))  # a different mtime, as a Kubernetes secret update gives
    assert secret.value == "two"


def test_check_command_exits_2_naming_the_problem(tmp_path, doc):
    llm_metadata(doc)["provider"] = "openia"
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(doc))
    run = subprocess.run(
        [sys.executable, "-m", "extproc", "check", "--bootstrap", str(bad)],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert run.returncode == 2
    assert "cluster 'llm'" in run.stderr and "openia" in run.stderr
    ok = subprocess.run(
        [
            sys.executable,
            "-m",
            "extproc",
            "serve",
            "--bootstrap",
            str(bad),
            "--socket",
            str(tmp_path / "s.sock"),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert ok.returncode == 2 and "openia" in ok.stderr


@pytest.mark.parametrize("which", ["route", "upstream"])
def test_skipping_the_request_headers_phase_is_refused(doc, which):
    """SKIP would let bodiless requests through the route filter, and would lose the
    upstream filter's header changes (credential swap) since Envoy forwards headers early."""
    if which == "route":
        hcm = doc["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
        mode = hcm["http_filters"][0]["typed_config"]["processing_mode"]
    else:
        up = next(iter(cluster(doc, "llm")["typed_extension_protocol_options"].values()))
        mode = up["http_filters"][0]["typed_config"]["processing_mode"]
    mode["request_header_mode"] = "SKIP"
    [p] = problems(doc)
    assert "request_header_mode must be SEND" in p


def test_route_to_ai_backend_cannot_disable_the_route_filter(doc):
    routes(doc)[0]["typed_per_filter_config"] = {
        "envoy.filters.http.ext_proc": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.ext_proc.v3.ExtProcPerRoute",
            "disabled": True,
        }
    }
    [p] = problems(doc)
    assert "route 'chat'" in p and "bypass" in p


@pytest.mark.parametrize(
    "breakers, warned",
    [
        (None, True),  # Envoy's default: 3 retries in flight
        ({"thresholds": [{"priority": "DEFAULT", "max_retries": 3}]}, True),
        ({"thresholds": [{"priority": "HIGH", "retry_budget": {}}]}, True),  # not the routes' priority
        (
            {"thresholds": [{"priority": "DEFAULT", "retry_budget": {"budget_percent": {"value": 100.0}}}]},
            False,
        ),
        ({"thresholds": [{"max_retries": {"value": 64}}]}, False),
    ],
)
def test_a_failover_cluster_left_at_three_retries_in_flight_is_warned_about(breakers, warned, caplog):
    doc = load_bootstrap("failover.yaml")
    llm = cluster(doc, "llm")
    llm.pop("circuit_breakers", None)
    if breakers is not None:
        llm["circuit_breakers"] = breakers
    with caplog.at_level("WARNING", logger="aigw.config"):
        build_config(doc)
    said = [r.getMessage() for r in caplog.records if "retries in flight" in r.getMessage()]
    assert bool(said) is warned, said
    if warned:
        assert "cluster 'llm'" in said[0] and "retry_budget" in said[0]


@pytest.mark.parametrize("name, why", [("llm", "LLM streams"), ("extproc", "ext_proc streams")])
def test_a_cluster_left_at_1024_requests_in_flight_is_warned_about(name, why, caplog):
    doc = load_bootstrap("failover.yaml")
    cluster(doc, name).pop("circuit_breakers")
    with caplog.at_level("WARNING", logger="aigw.config"):
        build_config(doc)
    said = [r.getMessage() for r in caplog.records if "requests in flight" in r.getMessage()]
    assert len(said) == 1 and f"cluster '{name}'" in said[0] and why in said[0] and "max_requests" in said[0]


def test_the_shipped_bootstraps_need_no_circuit_breaker_warning(caplog):
    with caplog.at_level("WARNING", logger="aigw.config"):
        for name in ("mock.yaml", "failover.yaml", "policies.yaml", "openai.yaml"):
            try:
                build_config(load_bootstrap(name))
            except ConfigError:
                pass  # openai.yaml needs a real key in the environment; its clusters were read
    assert not [r for r in caplog.records if "in flight" in r.getMessage()]
