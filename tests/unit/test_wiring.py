"""Bootstrap wirings that would let a request reach an AI provider around the gateway:
each must stop the processor at start-up."""

import copy

import pytest

from extproc.runtime.bootstrap import ConfigError, build_config
from tests.bootstraps import cluster, routes
from tests.harness import ROOT, load_bootstrap

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
@pytest.mark.parametrize(
    "field, value",
    [
        ("observability_mode", True),
        ("allowed_override_modes", [{"response_body_mode": "NONE"}]),
        ("disable_immediate_response", True),
        ("route_cache_action", "RETAIN"),
        ("http_service", {"http_service": {}}),
    ],
)
def test_weakening_filter_fields_are_refused(which, field, value):
    doc = edit(lambda d: which(d)["typed_config"].__setitem__(field, value))
    refused(doc, field, "not allowed")


@pytest.mark.parametrize(
    "rules",
    [
        None,
        {"disallow_all": True},
        {"allow_all_routing": True, "disallow_expression": {"regex": "authorization"}},
    ],
)
def test_upstream_mutation_rules_must_allow_the_credential_swap(rules):
    def change(d):
        cfg = upstream_filter(d)["typed_config"]
        cfg.pop("mutation_rules")
        if rules is not None:
            cfg["mutation_rules"] = rules

    refused(edit(change), "mutation_rules must be exactly")


@pytest.mark.parametrize(
    "key, value",
    [("response_header_mode", "SKIP"), ("response_body_mode", "STREAMED"), ("request_body_mode", "STREAMED")],
)
def test_processing_modes_are_fixed(key, value):
    refused(
        edit(lambda d: route_filter(d)["typed_config"]["processing_mode"].__setitem__(key, value)),
        f"processing_mode.{key}",
    )


def test_failure_mode_allow_must_be_false_not_merely_falsy_looking():
    refused(
        edit(lambda d: route_filter(d)["typed_config"].__setitem__("failure_mode_allow", "false")),
        "failure_mode_allow must be false",
    )


def test_a_disabled_http_filter_entry_is_refused():
    refused(edit(lambda d: route_filter(d).__setitem__("disabled", True)), "disabled", "not allowed")


@pytest.mark.parametrize(
    "config",
    [
        {"@type": PER_ROUTE, "disabled": True},
        {"@type": PER_ROUTE, "overrides": {"processing_mode": {"request_header_mode": "SKIP"}}},
        {
            "@type": PER_ROUTE,
            "overrides": {"failure_mode_allow": True, "grpc_service": {"envoy_grpc": {"cluster_name": "x"}}},
        },
        {"@type": "type.googleapis.com/envoy.config.route.v3.FilterConfig", "disabled": True},
        {
            "@type": "type.googleapis.com/envoy.config.route.v3.FilterConfig",
            "config": {"@type": PER_ROUTE, "disabled": True},
        },
    ],
)
@pytest.mark.parametrize("level", ["route", "virtual_host", "route_config"])
def test_per_route_overrides_of_ext_proc_are_refused_whatever_their_key(config, level):
    def change(d):
        rc = hcm(d)["route_config"]
        target = {
            "route": rc["virtual_hosts"][0]["routes"][0],
            "virtual_host": rc["virtual_hosts"][0],
            "route_config": rc,
        }[level]
        target["typed_per_filter_config"] = {"some.renamed.filter": copy.deepcopy(config)}

    refused(edit(change), "switches off or changes an ext_proc filter")


def test_disabling_the_filter_on_a_non_ai_route_is_fine():
    build_config(load_bootstrap("mock.yaml"))  # the not-found route does exactly that


@pytest.mark.parametrize(
    "action",
    [
        {"cluster_header": "x-cluster"},
        {"cluster_specifier_plugin": {}},
        {"weighted_clusters": {"cluster_header": "x-c", "clusters": []}},
    ],
)
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
        d["static_resources"]["listeners"].append(
            {
                "name": "raw",
                "address": {"socket_address": {"address": "127.0.0.1", "port_value": 9999}},
                "filter_chains": [
                    {
                        "filters": [
                            {
                                "name": "envoy.filters.network.tcp_proxy",
                                "typed_config": {
                                    "@type": (
                                        "type.googleapis.com/envoy.extensions.filters.network."
                                        "tcp_proxy.v3.TcpProxy"
                                    ),
                                    "stat_prefix": "raw",
                                    "cluster": "llm",
                                },
                            }
                        ]
                    }
                ],
            }
        )

    refused(edit(change), "listeners[1]", "outside a route the gateway validated")


def test_default_filter_chain_is_checked_too():
    def change(d):
        listener = d["static_resources"]["listeners"][0]
        chain = copy.deepcopy(listener["filter_chains"][0])
        chain["filters"][0]["typed_config"]["http_filters"] = chain["filters"][0]["typed_config"][
            "http_filters"
        ][1:]
        listener["default_filter_chain"] = chain

    refused(edit(change), "default_filter_chain", "no route-level ext_proc filter")


def test_rds_and_dynamic_resources_are_refused():
    def rds(d):
        cfg = hcm(d)
        cfg["rds"] = {
            "route_config_name": "x",
            "config_source": {"path_config_source": {"path": "/tmp/r.yaml"}},
        }

    refused(edit(rds), "RDS")
    refused(edit(lambda d: d.__setitem__("dynamic_resources", {"lds_config": {}})), "dynamic_resources")


# ---- the Envoy 1.40 crash workaround and path normalisation (README, "Operations notes") ----

FLAG = "envoy.reloadable_features.grpc_side_stream_flow_control"
SHIPPED = sorted(p.name for p in (ROOT / "envoy").glob("*.yaml"))


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_bootstrap_carries_the_crash_workaround_and_path_handling(name):
    doc = load_bootstrap(name)
    assert doc["layered_runtime"] == {"layers": [{"name": "static", "static_layer": {FLAG: False}}]}
    for listener in doc["static_resources"]["listeners"]:
        cfg = listener["filter_chains"][0]["filters"][0]["typed_config"]
        assert (cfg["normalize_path"], cfg["merge_slashes"], cfg["path_with_escaped_slashes_action"]) == (
            True,
            True,
            "REJECT_REQUEST",
        )
    build_config(doc, resolve_secrets=False)


def _layers(d):
    return d["layered_runtime"]["layers"]


@pytest.mark.parametrize(
    "change",
    [
        lambda d: d.pop("layered_runtime"),
        lambda d: _layers(d)[0]["static_layer"].pop(FLAG),
        lambda d: _layers(d)[0]["static_layer"].__setitem__(FLAG, True),
        lambda d: _layers(d)[0]["static_layer"].__setitem__(FLAG, "false"),  # a string is not false
        lambda d: _layers(d).append({"name": "later", "static_layer": {FLAG: True}}),
    ],
    ids=["no-runtime", "flag-missing", "flag-true", "flag-string", "overridden-later"],
)
def test_a_bootstrap_without_the_crash_workaround_is_refused(change):
    text = refused(edit(change), "layered_runtime", FLAG, "false")
    assert "Operations notes" in text


@pytest.mark.parametrize(
    "layer",
    [
        {"name": "admin", "admin_layer": {}},
        {"name": "rtds", "rtds_layer": {"name": "x", "rtds_config": {}}},
        {"name": "disk", "disk_layer": {"symlink_root": "/srv/runtime"}},
    ],
)
def test_a_runtime_layer_after_the_workaround_that_could_undo_it_is_refused(layer):
    refused(edit(lambda d: _layers(d).append(layer)), layer["name"], "switch it back on")
    # Before the static layer it cannot override it.
    build_config(edit(lambda d: _layers(d).insert(0, layer)))


def test_the_workaround_may_be_written_as_nested_keys():
    def nested(d):
        _layers(d)[0]["static_layer"] = {
            "envoy": {"reloadable_features": {"grpc_side_stream_flow_control": False}},
            "other.key": 1,
        }

    build_config(edit(nested))


@pytest.mark.parametrize(
    "field, value",
    [
        ("normalize_path", None),
        ("normalize_path", False),
        ("merge_slashes", None),
        ("path_with_escaped_slashes_action", None),
        ("path_with_escaped_slashes_action", "KEEP_UNCHANGED"),
        ("path_with_escaped_slashes_action", "UNESCAPE_AND_FORWARD"),
    ],
)
def test_connection_managers_without_path_normalisation_are_refused(field, value):
    def change(d):
        if value is None:
            hcm(d).pop(field)
        else:
            hcm(d)[field] = value

    text = refused(edit(change), "listener 'gateway'", field)
    assert "/v1//chat/completions" in text


def test_unescape_and_redirect_is_accepted_too():
    build_config(
        edit(lambda d: hcm(d).__setitem__("path_with_escaped_slashes_action", "UNESCAPE_AND_REDIRECT"))
    )


def test_bootstraps_without_ai_backends_need_neither():
    doc = load_bootstrap("mock.yaml")
    doc.pop("layered_runtime")
    hcm(doc).pop("normalize_path")
    static = doc["static_resources"]
    static["clusters"] = [c for c in static["clusters"] if c["name"] == "extproc"]
    routes(doc)[:] = [r for r in routes(doc) if r["name"] == "not-found"]
    build_config(doc)
