"""Inference routing without Envoy: the pool and model config, what the renderer writes for
a pool, and the route-level filter picking servers (extproc/config/inference.py,
render/inference.py, runtime/inference.py, route_request.pick_endpoints)."""

from __future__ import annotations

import collections
import textwrap

import pytest
import yaml
from pydantic import ValidationError

from extproc import wire
from extproc.config.inference import InferencePoolConfig, InferenceRouting, split_endpoint
from extproc.inference.metrics_scrape import ServerMetrics
from extproc.route_filter import RouteStream
from extproc.runtime.bootstrap import build_config
from extproc.runtime.inference import resolve
from extproc.settings import ProcessorSettings
from tests import filter_fakes as F
from tests.render_helpers import config_problems as problems
from tests.render_helpers import render_config

A, B, C = "127.0.0.1:18101", "127.0.0.1:18102", "127.0.0.1:18103"
CONFIG = f"""\
gateway: {{listen: {{port: 18080}}}}
inferencePools:
- name: vllm
  endpoints: ["{A}", "{B}", "{C}"]
  scrapeInterval: 100ms
  queueThreshold: 4
inferenceModels:
- modelName: support
  poolRef: vllm
  criticality: Sheddable
  targetModels: [{{name: lora-a, weight: 3}}, {{name: lora-b, weight: 1}}]
- modelName: base-model
  poolRef: vllm
  criticality: Critical
routes:
- name: inference
  backendRefs: [{{name: vllm, kind: InferencePool}}]
"""


def backend(name: str) -> str:
    """A `backends:` list with one self-hosted backend of that name."""
    ai = "{provider: openai-compatible, endpoint: {host: 10.0.0.9, port: 80}}"
    return f"backends:\n- name: {name}\n  ai: {ai}\n"


def render(tmp_path, text: str = CONFIG) -> dict:
    return render_config(tmp_path, text)


# ---- config ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "port", "expected"),
    [
        ("10.0.0.1:8000", None, ("10.0.0.1", 8000)),
        ("10.0.0.1", 8000, ("10.0.0.1", 8000)),
        ("vllm.svc:9000", 8000, ("vllm.svc", 9000)),
        ("[fd00::1]:8000", None, ("fd00::1", 8000)),
        ("fd00::1", 8000, ("fd00::1", 8000)),
    ],
)
def test_endpoints_parse(text, port, expected):
    assert split_endpoint(text, port) == expected


@pytest.mark.parametrize(
    ("endpoints", "extra", "message"),
    [
        (["10.0.0.1"], {}, "no port"),
        (["10.0.0.1:http"], {}, "must be a number"),
        (["10.0.0.1:70000"], {}, "out of range"),
        (["10.0.0.1:80", "10.0.0.1:80"], {}, "listed twice"),
        ([], {}, "at least 1"),
        (["10.0.0.1:80"], {"kvCacheThreshold": 1.5}, "less than or equal to 1"),
        (["10.0.0.1:80"], {"scrapeInterval": "soon"}, "not a duration"),
    ],
)
def test_bad_pools_are_refused_naming_the_problem(endpoints, extra, message):
    with pytest.raises(ValidationError, match=message):
        InferencePoolConfig.model_validate({"name": "p", "endpoints": endpoints, **extra})


def test_a_model_declared_twice_for_a_pool_is_refused():
    pool = {"name": "p", "endpoints": ["10.0.0.1:80"]}
    with pytest.raises(ValidationError, match="declared twice"):
        InferenceRouting.model_validate({"pool": pool, "models": [{"modelName": "m"}, {"modelName": "m"}]})


def test_resolve_names_to_addresses_as_envoy_does():
    assert resolve([("127.0.0.1", 80), ("localhost", 81), ("::1", 82)]) == [
        "127.0.0.1:80",
        "127.0.0.1:81",
        "[::1]:82",
    ]


@pytest.mark.parametrize(
    ("snippet", "message"),
    [
        ("- modelName: x\n  poolRef: nope\n", "'nope' names no inference pool"),
        ("- modelName: x\n", "required: the inference pool"),
        ("- {modelName: support, poolRef: vllm}\n", "declared twice"),
    ],
)
def test_model_references_are_checked(tmp_path, snippet, message):
    text = CONFIG.replace("routes:\n", textwrap.indent(snippet, "") + "routes:\n")
    assert any(message in p for p in problems(tmp_path, text))


def test_route_to_a_pool_takes_no_other_backend(tmp_path):
    text = CONFIG.replace(
        "backendRefs: [{name: vllm, kind: InferencePool}]",
        "backendRefs: [{name: vllm}, {name: other}]",
    ) + backend("other")
    assert any("that one backendRef" in p for p in problems(tmp_path, text))


def test_kind_must_match(tmp_path):
    text = CONFIG.replace("kind: InferencePool", "kind: Backend")
    assert any("'vllm' is a InferencePool" in p for p in problems(tmp_path, text))


def test_pool_name_clash_with_a_backend(tmp_path):
    text = CONFIG + backend("vllm")
    assert any("already names a backend" in p for p in problems(tmp_path, text))


# ---- rendering ---------------------------------------------------------------------------------


def test_pool_renders_as_an_override_host_cluster_with_the_picker_contract(tmp_path):
    doc = render(tmp_path)
    cluster = next(c for c in doc["static_resources"]["clusters"] if c["name"] == "vllm")
    policy = cluster["load_balancing_policy"]["policies"][0]["typed_extension_config"]
    assert policy["name"] == "envoy.load_balancing_policies.override_host"
    assert policy["typed_config"]["override_host_sources"] == [{"header": wire.DESTINATION_ENDPOINT}]
    hosts = [
        f"{lb['endpoint']['address']['socket_address']['address']}:"
        f"{lb['endpoint']['address']['socket_address']['port_value']}"
        for lb in cluster["load_assignment"]["endpoints"][0]["lb_endpoints"]
    ]
    assert hosts == [A, B, C]
    # each server keeps the upstream filter (per-attempt accounting, header allow-list)
    options = cluster["typed_extension_protocol_options"][wire.HTTP_OPTIONS]
    assert options["http_filters"][0]["name"] == "envoy.filters.http.ext_proc"
    route = next(
        r
        for vh in doc["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"][
            "route_config"
        ]["virtual_hosts"]
        for r in vh["routes"]
        if r["name"] == "inference"
    )
    assert route["route"]["retry_policy"] == {
        "retry_on": "connect-failure,refused-stream,reset,5xx",
        "num_retries": 2,
    }
    inference = route["metadata"]["filter_metadata"]["aigw"]["inference"]
    assert inference["pool"]["endpoints"] == [A, B, C] and inference["pool"]["queueThreshold"] == 4
    assert [m["modelName"] for m in inference["models"]] == ["support", "base-model"]


# ---- the route-level filter picks --------------------------------------------------------------


@pytest.fixture
def gw(tmp_path):
    doc = yaml.safe_load(yaml.safe_dump(render(tmp_path)))
    return build_config(doc)


def load(gw, waiting: dict[str, int], kv: float = 0.1) -> None:
    picker = gw.pickers["vllm"]
    for endpoint, n in waiting.items():
        picker.record_success(endpoint, ServerMetrics(waiting=n, running=1, kv_usage=kv))


async def send(gw, model: str, headers: dict[str, str] | None = None):
    stream = RouteStream(gw, ProcessorSettings())
    first = await stream.request_headers(
        F.request_headers(headers or F.client_headers(), route_name="inference")
    )
    reply = await stream.request_body(
        F.request_body({"model": model, "messages": [{"role": "user", "content": "hi"}]})
    )
    return stream, first, reply


async def test_least_loaded_server_is_named_first_and_the_rest_follow(gw):
    load(gw, {A: 3, B: 0, C: 1})
    stream, _, reply = await send(gw, "base-model")
    assert F.set_headers(reply)[wire.DESTINATION_ENDPOINT] == f"{B},{C},{A}"
    assert gw.pickers["vllm"].snapshot()[1].in_flight == 1
    stream.close("complete")
    assert gw.pickers["vllm"].snapshot()[1].in_flight == 0


async def test_target_models_replace_the_model_by_weight(gw):
    load(gw, {A: 0, B: 0, C: 0})
    seen: collections.Counter[str] = collections.Counter()
    for _ in range(400):
        stream, _, reply = await send(gw, "support")
        seen[F.new_body(reply)["model"]] += 1
        stream.close("complete")
    assert set(seen) == {"lora-a", "lora-b"}
    assert 2 < seen["lora-a"] / seen["lora-b"] < 4.5  # 3:1 by weight


async def test_unknown_model_is_a_404(gw):
    _, _, reply = await send(gw, "gpt-4o")
    status, body, _ = F.immediate(reply)
    assert status == 404 and body["error"]["code"] == "model_not_found" and body["error"]["param"] == "model"


async def test_sheddable_request_to_a_saturated_pool_gets_a_429_critical_does_not(gw):
    load(gw, {A: 9, B: 9, C: 9})
    _, _, reply = await send(gw, "support")
    status, body, headers = F.immediate(reply)
    assert status == 429 and body["error"]["code"] == "pool_saturated" and headers["retry-after"] == "1"
    stream, _, reply = await send(gw, "base-model")
    assert wire.DESTINATION_ENDPOINT in F.set_headers(reply)
    stream.close("complete")


async def test_a_client_cannot_name_the_servers_itself(gw):
    load(gw, {A: 0, B: 5, C: 5})
    headers = F.client_headers(**{"x-gateway-destination-endpoint": B})
    stream, first, reply = await send(gw, "base-model", headers)
    assert wire.DESTINATION_ENDPOINT in F.removed(first)
    assert F.set_headers(reply)[wire.DESTINATION_ENDPOINT].startswith(A)
    stream.close("complete")
