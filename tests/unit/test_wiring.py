"""Bootstrap wirings that would let a request reach an AI provider around the gateway:
each must stop the processor at start-up."""

import copy

import pytest

from extproc.config.bootstrap import ConfigError, build_config
from tests.bootstraps import cluster, routes
from tests.harness import load_bootstrap

PER_ROUTE = "type.googleapis.com/envoy.extensions.filters.http.ext_proc.v3.ExtProcPerRoute"


def hcm(doc):
    return doc["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]


def route_filter(doc):
    return hcm(doc)["http_filters"][0]


def upstream_filter(doc):
    return next(iter(cluster(doc, "llm")["typed_extension_protocol_options"].values()))["http_filters"][0]


def refused(doc, *words):
    with pytest.raises(ConfigError) as exc:
        build_config(doc)
    text = "\n".join(exc.value.problems)
    for w in words:
        assert w in text, text
    return text


def edit(fn):
    doc = load_bootstrap("mock.yaml")
    fn(doc)
    return doc


def test_the_shipped_wiring_is_accepted():
    build_config(load_bootstrap("mock.yaml"))


@pytest.mark.parametrize("which", [route_filter, upstream_filter])
@pytest.mark.parametrize("field, value", [
    ("observability_mode", True), ("allowed_override_modes", [{"response_body_mode": "NONE"}]),
    ("disable_immediate_response", True), ("route_cache_action", "RETAIN"),
    ("http_service", {"http_service": {}})])
def test_weakening_filter_fields_are_refused(which, field, value):
    doc = edit(lambda d: which(d)["typed_config"].__setitem__(field, value))
    refused(doc, field, "not allowed")


@pytest.mark.parametrize("rules", [None, {"disallow_all": True},
                                   {"allow_all_routing": True, "disallow_expression": {"regex": "authorization"}}])
def test_upstream_mutation_rules_must_allow_the_credential_swap(rules):
    def change(d):
        cfg = upstream_filter(d)["typed_config"]
        cfg.pop("mutation_rules")
        if rules is not None:
            cfg["mutation_rules"] = rules
    refused(edit(change), "mutation_rules must be exactly")


@pytest.mark.parametrize("key, value", [("response_header_mode", "SKIP"), ("response_body_mode", "STREAMED"),
                                        ("request_body_mode", "STREAMED")])
def test_processing_modes_are_fixed(key, value):
    refused(edit(lambda d: route_filter(d)["typed_config"]["processing_mode"].__setitem__(key, value)),
            f"processing_mode.{key}")


def test_failure_mode_allow_must_be_false_not_merely_falsy_looking():
    refused(edit(lambda d: route_filter(d)["typed_config"].__setitem__("failure_mode_allow", "false")),
            "failure_mode_allow must be false")


def test_a_disabled_http_filter_entry_is_refused():
    refused(edit(lambda d: route_filter(d).__setitem__("disabled", True)), "disabled", "not allowed")


@pytest.mark.parametrize("config", [
    {"@type": PER_ROUTE, "disabled": True},
    {"@type": PER_ROUTE, "overrides": {"processing_mode": {"request_header_mode": "SKIP"}}},
    {"@type": PER_ROUTE, "overrides": {"failure_mode_allow": True, "grpc_service": {"envoy_grpc": {"cluster_name": "x"}}}},
    {"@type": "type.googleapis.com/envoy.config.route.v3.FilterConfig", "disabled": True},
    {"@type": "type.googleapis.com/envoy.config.route.v3.FilterConfig",
     "config": {"@type": PER_ROUTE, "disabled": True}},
])
@pytest.mark.parametrize("level", ["route", "virtual_host", "route_config"])
def test_per_route_overrides_of_ext_proc_are_refused_whatever_their_key(config, level):
    def change(d):
        rc = hcm(d)["route_config"]
        target = {"route": rc["virtual_hosts"][0]["routes"][0], "virtual_host": rc["virtual_hosts"][0],
                  "route_config": rc}[level]
        target["typed_per_filter_config"] = {"some.renamed.filter": copy.deepcopy(config)}
    refused(edit(change), "switches off or changes an ext_proc filter")


def test_disabling_the_filter_on_a_non_ai_route_is_fine():
    build_config(load_bootstrap("mock.yaml"))  # the not-found route does exactly that


@pytest.mark.parametrize("action", [{"cluster_header": "x-cluster"}, {"cluster_specifier_plugin": {}},
                                    {"weighted_clusters": {"cluster_header": "x-c", "clusters": []}}])
def test_routes_that_pick_clusters_dynamically_are_refused(action):
    def change(d):
        routes(d)[0]["route"] = {**action, "timeout": "0s"}
    refused(edit(change), "lets a request choose any cluster")


def test_mirroring_to_an_ai_cluster_is_refused():
    def change(d):
        nf = routes(d)[-1]
        del nf["direct_response"]
        nf["route"] = {"cluster": "extproc", "request_mirror_policies": [{"cluster": "llm"}]}
    refused(edit(change), "request_mirror_policies[0].cluster", "AI cluster 'llm'")


def test_a_tcp_proxy_to_an_ai_cluster_is_refused():
    def change(d):
        d["static_resources"]["listeners"].append({"name": "raw", "address": {"socket_address": {
            "address": "127.0.0.1", "port_value": 9999}}, "filter_chains": [{"filters": [{
                "name": "envoy.filters.network.tcp_proxy", "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
                    "stat_prefix": "raw", "cluster": "llm"}}]}]})
    refused(edit(change), "listeners[1]", "outside a route the gateway validated")


def test_default_filter_chain_is_checked_too():
    def change(d):
        listener = d["static_resources"]["listeners"][0]
        chain = copy.deepcopy(listener["filter_chains"][0])
        chain["filters"][0]["typed_config"]["http_filters"] = chain["filters"][0]["typed_config"]["http_filters"][1:]
        listener["default_filter_chain"] = chain
    refused(edit(change), "default_filter_chain", "no route-level ext_proc filter")


def test_rds_and_dynamic_resources_are_refused():
    def rds(d):
        cfg = hcm(d)
        cfg["rds"] = {"route_config_name": "x", "config_source": {"path_config_source": {"path": "/tmp/r.yaml"}}}
    refused(edit(rds), "RDS")
    refused(edit(lambda d: d.__setitem__("dynamic_resources", {"lds_config": {}})), "dynamic_resources")
