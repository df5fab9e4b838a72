"""deploy/kubernetes: the base and each overlay render with kustomize, pass the Kubernetes
1.37 schemas, and agree with the bootstrap each pod renders from its gateway config (socket,
paths, ports, probes, drain, secrets). No cluster here: `kubectl kustomize` runs offline."""

from __future__ import annotations

import copy
import functools
import re
import shlex
import subprocess
import sys
import tempfile
import tomllib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import kubernetes_validate
import pytest
import yaml

from extproc.cli import build_parser
from extproc.devstack import envoy_binary
from extproc.render.loader import render_file
from extproc.runtime.bootstrap import build_config, processor_sockets
from tests.harness import ROOT

KUBE = ROOT / "deploy" / "kubernetes"
TARGETS = ["base", "overlays/dev", "overlays/production"]
REPLICAS = {"base": 2, "overlays/dev": 1, "overlays/production": 3}


@dataclass
class Rendered:
    docs: list[dict[str, Any]]
    pod: dict[str, Any]  # the gateway Deployment's pod spec
    containers: dict[str, dict[str, Any]]  # init containers and containers, by name
    config: dict[str, Any]  # the gateway config from the ConfigMap
    bootstrap: dict[str, Any]  # what `aigw render` makes of it


def _find(docs: list[dict], kind: str, name: str | None = None) -> list[dict]:
    return [d for d in docs if d["kind"] == kind and name in (None, d["metadata"]["name"])]


def _mounts(container: dict) -> dict[str, dict]:
    return {m["name"]: m for m in container.get("volumeMounts", [])}


def _volumes(pod: dict) -> dict[str, dict]:
    return {v["name"]: v for v in pod["volumes"]}


def _ports(container: dict) -> dict[str, int]:
    return {p["name"]: p["containerPort"] for p in container.get("ports", [])}


def _opt(args: list[str], flag: str) -> str:
    return args[args.index(flag) + 1]


def _secret_sources(volume: dict) -> list[dict]:
    """The Secrets a volume shows, as projected sources ({name, items?}): a plain secret
    volume is one source, a projected volume lists its own."""
    if "secret" in volume:
        plain = volume["secret"]
        return [{"name": plain["secretName"], **({"items": plain["items"]} if "items" in plain else {})}]
    return [src["secret"] for src in volume.get("projected", {}).get("sources", []) if "secret" in src]


def _secret_item(volume: dict, path: str) -> tuple[str, str]:
    """(Secret, key) of the file a volume shows at `path`, picked by an `items` entry."""
    (found,) = [
        (src["name"], item["key"])
        for src in _secret_sources(volume)
        for item in src.get("items", [])
        if item["path"] == path
    ]
    return found


def _file_source(pod: dict, container: dict, file: str) -> tuple[str, str]:
    """(Secret, key) behind a file a container reads, through its mount (never a subPath)."""
    path = PurePosixPath(file)
    (mount,) = [m for m in _mounts(container).values() if m["mountPath"] == str(path.parent)]
    assert mount.get("readOnly") and "subPath" not in mount, mount
    return _secret_item(_volumes(pod)[mount["name"]], path.name)


@functools.cache
def _rendered(target: str) -> Rendered:
    kubectl = Path(sys.executable).parent / "kubectl"
    out = subprocess.run(
        [str(kubectl), "kustomize", str(KUBE / target)], capture_output=True, text=True, check=False
    )
    assert out.returncode == 0, out.stderr
    docs = [d for d in yaml.safe_load_all(out.stdout) if d]
    (deployment,) = _find(docs, "Deployment", "aigw")
    pod = deployment["spec"]["template"]["spec"]
    containers = {c["name"]: c for c in pod.get("initContainers", []) + pod["containers"]}
    config_map = _volumes(pod)["config"]["configMap"]["name"]
    (cm,) = _find(docs, "ConfigMap", config_map)
    render_args = containers["render"]["args"]
    key = PurePosixPath(render_args[1]).name
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / key
        path.write_text(cm["data"][key])
        bootstrap = render_file(path)
    return Rendered(docs, pod, containers, yaml.safe_load(cm["data"][key]), bootstrap)


@pytest.fixture(params=TARGETS)
def target(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def r(target: str) -> Rendered:
    return _rendered(target)


def _hcm(bootstrap: dict) -> dict:
    return bootstrap["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]


def _listener(bootstrap: dict) -> dict:
    return bootstrap["static_resources"]["listeners"][0]["address"]["socket_address"]


def _routes(bootstrap: dict) -> list[dict]:
    return [rt for vh in _hcm(bootstrap)["route_config"]["virtual_hosts"] for rt in vh["routes"]]


def test_every_object_passes_the_kubernetes_schemas(r: Rendered, target: str) -> None:
    kinds = {d["kind"] for d in r.docs}
    assert {"Deployment", "Service", "ConfigMap", "PodDisruptionBudget"} <= kinds
    assert ("HorizontalPodAutoscaler" in kinds) == (target != "overlays/dev")
    for doc in r.docs:
        kubernetes_validate.validate(doc, "1.37.0", strict=True)  # raises on any problem


def test_the_schema_check_can_fail() -> None:
    bad = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "x"}, "spec": {"portz": []}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, "1.37.0", strict=True)


def test_socket_is_in_an_empty_dir_both_containers_mount(r: Rendered) -> None:
    sockets = processor_sockets(r.bootstrap)
    assert len(sockets) == 1, "one processor process per pod (gateway.processor.workers: 1)"
    socket_dir = str(PurePosixPath(sockets[0]).parent)
    for name in ("processor", "envoy"):
        (volume,) = [v for v, m in _mounts(r.containers[name]).items() if m["mountPath"] == socket_dir]
        assert volume == "socket" and "emptyDir" in _volumes(r.pod)[volume]
        assert not _mounts(r.containers[name])[volume].get("readOnly"), (
            "the socket is created and connected to"
        )
    args = build_parser().parse_args(r.containers["processor"]["args"])
    assert args.socket is None, "the processor takes its socket from the bootstrap Envoy reads"


def test_both_containers_read_the_bootstrap_the_init_container_renders(r: Rendered) -> None:
    render = build_parser().parse_args(r.containers["render"]["args"])
    assert render.command == "render"
    out, config = PurePosixPath(render.output), PurePosixPath(render.config)
    init_mounts = _mounts(r.containers["render"])
    assert init_mounts["bootstrap"]["mountPath"] == str(out.parent) and not init_mounts["bootstrap"].get(
        "readOnly"
    )
    assert init_mounts["config"]["mountPath"] == str(config.parent)
    assert "emptyDir" in _volumes(r.pod)["bootstrap"]
    serve = build_parser().parse_args(r.containers["processor"]["args"])
    assert serve.command == "serve" and serve.bootstrap == str(out)
    assert _opt(r.containers["envoy"]["args"], "-c") == str(out)
    for name in ("processor", "envoy"):
        mount = _mounts(r.containers[name])["bootstrap"]
        assert mount["mountPath"] == str(out.parent) and mount.get("readOnly")
    # Native sidecar: rendered first, then the processor, which outlives Envoy on shutdown.
    assert [c["name"] for c in r.pod["initContainers"]] == ["render", "processor"]
    assert r.containers["processor"]["restartPolicy"] == "Always"
    assert "startupProbe" in r.containers["processor"], "Envoy starts once the processor serves"


def test_gateway_config_passes_the_processor_and_envoy(r: Rendered) -> None:
    gw = build_config(r.bootstrap, resolve_secrets=False)
    assert gw.routes and gw.backends
    envoy_args = list(r.containers["envoy"]["args"])
    assert envoy_args[0] == "envoy"
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "envoy.yaml"
        path.write_text(yaml.safe_dump(r.bootstrap))
        envoy_args[envoy_args.index("-c") + 1] = str(path)
        run = subprocess.run(
            [envoy_binary(), "--mode", "validate", *envoy_args[1:]], capture_output=True, text=True
        )
    assert run.returncode == 0, run.stdout + run.stderr


def test_ports_match_the_bootstrap_and_the_service(r: Rendered) -> None:
    listener = _listener(r.bootstrap)
    envoy_ports = _ports(r.containers["envoy"])
    assert listener["address"] == "0.0.0.0" and envoy_ports == {"http": listener["port_value"]}
    (service,) = _find(r.docs, "Service", "aigw")
    (port,) = service["spec"]["ports"]
    assert envoy_ports[port["targetPort"]] == listener["port_value"]
    # The admin API stays on loopback: only the preStop hook inside the pod uses it.
    admin = r.bootstrap["admin"]["address"]["socket_address"]
    assert admin["address"] == "127.0.0.1" and admin["port_value"] not in envoy_ports.values()
    serve = build_parser().parse_args(r.containers["processor"]["args"])
    assert serve.metrics_host == "0.0.0.0"
    assert _ports(r.containers["processor"]) == {"metrics": serve.metrics_port}
    annotations = _find(r.docs, "Deployment", "aigw")[0]["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert int(annotations["prometheus.io/port"]) == serve.metrics_port
    assert annotations["prometheus.io/path"] == "/metrics"


def test_probes_point_at_ports_that_exist(r: Rendered) -> None:
    workloads = [d["spec"]["template"]["spec"] for d in _find(r.docs, "Deployment")]
    probed = 0
    for spec in workloads:
        for c in spec.get("initContainers", []) + spec["containers"]:
            for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
                if kind not in c or "exec" in c[kind]:  # exec: Redis's PING (test_redis_...)
                    continue
                probe = c[kind]
                port = (probe.get("httpGet") or probe.get("tcpSocket") or probe.get("grpc"))["port"]
                assert port in _ports(c) or port in _ports(c).values(), f"{c['name']} {kind}: port {port}"
                probed += 1
    assert probed >= 5
    # Envoy's probes hit a route Envoy answers itself (200, without the processor).
    direct = {rt["match"].get("path"): rt.get("direct_response") for rt in _routes(r.bootstrap)}
    for kind in ("readinessProbe", "livenessProbe"):
        path = r.containers["envoy"][kind]["httpGet"]["path"]
        assert (direct.get(path) or {}).get("status") == 200, f"envoy {kind}: {path} is no direct 200 route"


def test_prestop_drains_through_the_admin_port_and_waits_out_streams(r: Rendered) -> None:
    script = r.containers["envoy"]["lifecycle"]["preStop"]["exec"]["command"][-1]
    admin = r.bootstrap["admin"]["address"]["socket_address"]
    assert f"/dev/tcp/127.0.0.1/{admin['port_value']}" in script
    assert "/drain_listeners?graceful" in script
    assert f"http.{_hcm(r.bootstrap)['stat_prefix']}.downstream_rq_active: 0" in script
    drain = int(_opt(r.containers["envoy"]["args"], "--drain-time-s"))
    assert f"sleep {drain}\n" in script, "the listener stays open for the drain time"
    idle = max(float(rt["route"]["idle_timeout"].rstrip("s")) for rt in _routes(r.bootstrap) if "route" in rt)
    assert r.pod["terminationGracePeriodSeconds"] > idle + drain


def test_provider_keys_come_from_the_secret_mount(r: Rendered, target: str) -> None:
    def refs(node: Any) -> list[dict]:
        if isinstance(node, dict):
            own = [node["secretRef"]] if isinstance(node.get("secretRef"), dict) else []
            return own + [x for v in node.values() for x in refs(v)]
        return [x for v in node for x in refs(v)] if isinstance(node, list) else []

    files = [PurePosixPath(ref["file"]) for ref in refs(r.config)]
    assert files and len(files) == len(refs(r.config)), "provider keys come from files, not env or inline"
    mount = _mounts(r.containers["processor"])["provider-keys"]
    assert mount.get("readOnly") and "subPath" not in mount, "a subPath mount would not follow rotation"
    assert {str(f.parent) for f in files} == {mount["mountPath"]}
    # Every key of one Secret (production projects the Redis password beside them: items).
    (secret_name,) = [
        s["name"] for s in _secret_sources(_volumes(r.pod)["provider-keys"]) if "items" not in s
    ]
    generated = _find(r.docs, "Secret", secret_name)
    if target == "overlays/dev":
        assert {f.name for f in files} <= set(generated[0]["data"])
    else:
        assert not generated and secret_name == "aigw-provider-keys", "real keys are created by hand"


def test_images_are_pinned_and_envoy_matches_compose(r: Rendered) -> None:
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())["services"]
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    # Envoy and Redis pinned as in compose.yaml; the rest is the image built from ./Dockerfile.
    expected = {"envoy": compose["envoy"]["image"], "redis": compose["redis"]["image"]}
    for spec in [d["spec"]["template"]["spec"] for d in _find(r.docs, "Deployment")]:
        for c in spec.get("initContainers", []) + spec["containers"]:
            repo, _, tag = c["image"].rpartition(":")
            assert repo and "/" not in tag and tag != "latest", f"{c['name']}: {c['image']} is not pinned"
            assert c["image"] == expected.get(c["name"], f"aigw-extproc:{version}"), c["name"]


def test_replicas_autoscaling_and_selectors(r: Rendered, target: str) -> None:
    (deployment,) = _find(r.docs, "Deployment", "aigw")
    assert deployment["spec"]["replicas"] == REPLICAS[target]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    (service,) = _find(r.docs, "Service", "aigw")
    (pdb,) = _find(r.docs, "PodDisruptionBudget")
    assert service["spec"]["selector"].items() <= labels.items()
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    for hpa in _find(r.docs, "HorizontalPodAutoscaler"):
        assert hpa["spec"]["scaleTargetRef"] == {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "name": "aigw",
        }
        assert hpa["spec"]["minReplicas"] == REPLICAS[target] <= hpa["spec"]["maxReplicas"]
        (metric,) = hpa["spec"]["metrics"]
        assert metric["resource"]["name"] == "cpu"


def test_pods_run_as_non_root_with_read_only_filesystems(r: Rendered) -> None:
    # Envoy and the processor share uid 101 (the socket); Redis runs as the image's 999.
    assert r.pod["securityContext"]["runAsUser"] == 101
    for spec in [d["spec"]["template"]["spec"] for d in _find(r.docs, "Deployment")]:
        assert spec["securityContext"]["runAsNonRoot"] and spec["securityContext"]["runAsUser"] in (101, 999)
        for c in spec.get("initContainers", []) + spec["containers"]:
            ctx = c["securityContext"]
            assert ctx["readOnlyRootFilesystem"] and ctx["allowPrivilegeEscalation"] is False, c["name"]
            assert c["resources"]["requests"] and c["resources"]["limits"]["memory"], c["name"]


def test_dev_gateway_points_at_the_mock_service() -> None:
    r = _rendered("overlays/dev")
    (backend,) = r.config["backends"]
    endpoint = backend["ai"]["endpoint"]
    (service,) = _find(r.docs, "Service", endpoint["host"])
    (port,) = service["spec"]["ports"]
    (mock,) = _find(r.docs, "Deployment", "aigw-mock")
    (container,) = mock["spec"]["template"]["spec"]["containers"]
    args = build_parser().parse_args(container["args"])
    assert args.command == "mock" and args.host == "0.0.0.0"
    assert port["port"] == endpoint["port"] and _ports(container)[port["targetPort"]] == args.port
    assert service["spec"]["selector"].items() <= mock["spec"]["template"]["metadata"]["labels"].items()


# Production: Redis beside the gateway (overlays/production/redis.yaml, gateway.yaml).


def _redis(r: Rendered) -> tuple[dict, dict]:
    """The Redis Deployment's pod spec and its one container."""
    (deployment,) = _find(r.docs, "Deployment", "aigw-redis")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    return pod, container


def _redis_server_args(container: dict) -> list[str]:
    """redis-server's arguments from the container's `exec redis-server ... <<EOF` script."""
    words = shlex.split(container["command"][-1].split("<<")[0].replace("\\\n", " "))
    assert words[:2] == ["exec", "redis-server"], words
    return words[2:]


def _options(args: list[str]) -> dict[str, str]:
    assert len(args) % 2 == 0 and all(a.startswith("--") for a in args[::2]), args
    return dict(zip(args[::2], args[1::2], strict=True))


def _pod_labels(r: Rendered, deployment: str) -> dict[str, str]:
    return _find(r.docs, "Deployment", deployment)[0]["spec"]["template"]["metadata"]["labels"]


def _selects(selector: dict, labels: dict) -> bool:
    """A label selector (`matchLabels`) or a Service's plain selector, non-empty, matches."""
    wanted = selector.get("matchLabels", selector)
    return bool(wanted) and wanted.items() <= labels.items()


def test_production_runs_one_redis_as_a_cache_like_compose() -> None:
    r = _rendered("overlays/production")
    (deployment,) = _find(r.docs, "Deployment", "aigw-redis")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}, "two at once would split the counters"
    pod, redis = _redis(r)
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())["services"]["redis"]
    assert redis["image"] == compose["image"] and redis["image"].rpartition(":")[2] == "7.0.15"
    args = _redis_server_args(redis)
    assert args[-1] == "-", "the rest of the config (requirepass) comes from stdin"
    options = _options(args[:-1])
    assert compose["command"][0] == "redis-server"
    assert _options(compose["command"][1:]).items() <= options.items()  # --save "" --appendonly no
    assert options["--save"] == "" and options["--appendonly"] == "no"
    assert _ports(redis) == {"redis": int(options["--port"])}
    (data,) = [m for m in _mounts(redis).values() if m["mountPath"] == options["--dir"]]
    assert not data.get("readOnly") and "emptyDir" in _volumes(pod)[data["name"]]
    # The password is in neither the command line nor the environment.
    assert "--requirepass" not in options and "env" not in redis and "envFrom" not in redis
    assert redis["securityContext"]["readOnlyRootFilesystem"] and pod["securityContext"]["runAsUser"] != 0


def test_gateway_reaches_redis_through_its_service() -> None:
    r = _rendered("overlays/production")
    address = r.bootstrap["node"]["metadata"]["aigw"]["sharedState"]["redis"]["address"]
    assert address == r.config["gateway"]["sharedState"]["redis"]["address"] == "aigw-redis:6379"
    host, _, port = address.rpartition(":")
    (service,) = _find(r.docs, "Service", host)
    (service_port,) = service["spec"]["ports"]
    assert service_port["port"] == int(port)
    _, redis = _redis(r)
    assert _ports(redis)[service_port["targetPort"]] == int(
        _options(_redis_server_args(redis)[:-1])["--port"]
    )
    assert _selects(service["spec"]["selector"], _pod_labels(r, "aigw-redis"))
    assert not _selects(service["spec"]["selector"], _pod_labels(r, "aigw"))


def test_redis_password_is_one_secret_key_on_both_sides() -> None:
    r = _rendered("overlays/production")
    ref = r.bootstrap["node"]["metadata"]["aigw"]["sharedState"]["redis"]["passwordRef"]
    assert list(ref) == ["file"]
    gateway_side = _file_source(r.pod, r.containers["processor"], ref["file"])
    pod, redis = _redis(r)
    (password_file,) = re.findall(r"^requirepass \$\(cat (\S+)\)$", redis["command"][-1], re.M)
    assert _file_source(pod, redis, password_file) == gateway_side == ("aigw-redis", "password")
    probe = redis["readinessProbe"]["exec"]["command"][-1]
    assert f'REDISCLI_AUTH="$(cat {password_file})" redis-cli -p 6379 ping' in probe, "PING authenticates"
    # Created by hand as the two documented commands say, never generated into the manifests.
    assert not _find(r.docs, "Secret")
    create = "create secret generic aigw-redis --from-literal=password="
    assert create in (KUBE / "overlays/production/kustomization.yaml").read_text()
    assert create in (KUBE / "README.md").read_text()


def test_only_gateway_pods_reach_redis() -> None:
    r = _rendered("overlays/production")
    gateway, redis_labels = _pod_labels(r, "aigw"), _pod_labels(r, "aigw-redis")
    (policy,) = _find(r.docs, "NetworkPolicy", "aigw-redis")
    spec = policy["spec"]
    assert _selects(spec["podSelector"], redis_labels) and not _selects(spec["podSelector"], gateway)
    assert sorted(spec["policyTypes"]) == ["Egress", "Ingress"] and spec["egress"] == []
    (rule,) = spec["ingress"]
    (peer,) = rule["from"]
    assert list(peer) == ["podSelector"], "no namespaceSelector: this namespace's gateway pods only"
    assert _selects(peer["podSelector"], gateway) and not _selects(peer["podSelector"], redis_labels)
    (port,) = rule["ports"]
    _, redis = _redis(r)
    assert _ports(redis)[port["port"]] == 6379 and port["protocol"] == "TCP"


def test_production_bootstrap_shares_state_and_limits_the_chat_route() -> None:
    r = _rendered("overlays/production")
    aigw = r.bootstrap["node"]["metadata"]["aigw"]
    assert aigw["sharedState"]["redis"]["timeout"] == 0.1
    assert aigw["sharedState"]["cooldowns"]["failMode"] == "open"
    assert aigw["rateLimits"] == {
        "chat:requests": {"unit": "requests", "amount": 600, "window": 60, "failMode": "open"},
        "chat:tokens": {"unit": "tokens", "amount": 1_000_000, "window": 3600, "failMode": "closed"},
    }
    filters = {f["name"]: f["typed_config"] for f in _hcm(r.bootstrap)["http_filters"]}
    # One filter; a closed budget makes it refuse when the service cannot be asked.
    assert filters["aigw.ratelimit"]["failure_mode_deny"] is True
    # The processor serves the rate-limit service on the socket the pod already shares.
    service = filters["aigw.ratelimit"]["rate_limit_service"]["grpc_service"]["envoy_grpc"]
    assert service["cluster_name"] == "extproc"
    gw = build_config(r.bootstrap, resolve_secrets=False)
    assert gw.shared_state is not None and set(gw.limits) == {"chat:requests", "chat:tokens"}
    for other in ("base", "overlays/dev"):
        bootstrap = _rendered(other).bootstrap
        assert "sharedState" not in bootstrap.get("node", {}).get("metadata", {}).get("aigw", {})
        assert not [f for f in _hcm(bootstrap)["http_filters"] if f["name"].startswith("aigw.ratelimit")]


def test_production_config_is_the_base_plus_shared_state() -> None:
    production = copy.deepcopy(_rendered("overlays/production").config)
    del production["gateway"]["sharedState"]
    (chat,) = [rt for rt in production["routes"] if rt["name"] == "chat"]
    assert chat.pop("rateLimit")["scope"] == "global" and chat.pop("tokenBudget")
    assert production == _rendered("base").config, "overlays/production/gateway.yaml drifted from the base"
