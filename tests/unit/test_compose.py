"""compose.yaml cannot run here (no Docker engine); check what can be checked without it."""

import re
import subprocess

import pytest
import yaml

from extproc.cli import build_parser
from extproc.devstack import envoy_binary
from extproc.runtime.bootstrap import build_config, processor_socket
from tests.harness import ROOT


@pytest.fixture(scope="module")
def compose():
    return yaml.safe_load((ROOT / "compose.yaml").read_text())


def _host_path(volume: str) -> str | None:
    src = volume.split(":")[0]
    return src if src.startswith(".") or src.startswith("/") else None


def test_services_and_images(compose):
    services = compose["services"]
    assert set(services) == {"envoy", "processor", "mock", "redis", "prometheus", "grafana"}
    assert re.fullmatch(r"envoyproxy/envoy:v1\.40\.\d+", services["envoy"]["image"])
    assert re.fullmatch(r"prom/prometheus:v3\.\d+\.\d+", services["prometheus"]["image"])
    assert re.fullmatch(r"grafana/grafana:1\d\.\d+\.\d+", services["grafana"]["image"])
    # The same major as Debian's redis-server the tests run against.
    assert re.fullmatch(r"redis:7\.\d+\.\d+", services["redis"]["image"])
    for name in ("processor", "mock"):
        build = services[name]["build"]
        assert (ROOT / build["context"] / build["dockerfile"]).is_file()
    assert "8080:8080" in services["envoy"]["ports"]
    assert any(p.split(":")[-1] == "3000" for p in services["grafana"]["ports"])


def test_every_image_is_pinned_to_a_version(compose):
    images = {name: s["image"] for name, s in compose["services"].items() if "image" in s}
    assert set(images) == {"envoy", "prometheus", "grafana", "redis"}
    for name, image in images.items():
        repo, _, tag = image.rpartition(":")
        assert repo and "/" not in tag, f"{name}: {image} has no tag"
        assert tag != "latest" and re.fullmatch(r"v?\d+\.\d+\.\d+", tag), f"{name}: {image} is not pinned"


def test_every_mounted_path_exists(compose):
    mounted = set()
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            path = _host_path(volume)
            if path:
                assert (ROOT / path).exists(), f"{volume} names a missing path"
                mounted.add(name)
    # Config comes from the repo for every service that is not built from it.
    assert {"envoy", "processor", "prometheus", "grafana"} <= mounted


def test_processor_metrics_are_reachable_from_other_containers(compose):
    processor = compose["services"]["processor"]
    args = build_parser().parse_args(processor["command"])
    assert args.command == "serve" and args.bootstrap == "/etc/envoy/envoy.yaml"
    assert args.metrics_host == "0.0.0.0" and args.metrics_port == 9464


def test_socket_is_shared_where_the_bootstrap_expects_it(compose):
    services = compose["services"]
    bootstrap_mount = next(v for v in services["envoy"]["volumes"] if v.endswith("/etc/envoy/envoy.yaml:ro"))
    host_path = _host_path(bootstrap_mount)
    assert host_path is not None, bootstrap_mount
    doc = yaml.safe_load((ROOT / host_path).read_text())
    socket = processor_socket(doc)
    assert socket is not None, "the bootstrap names a processor socket"
    socket_dir = socket.rsplit("/", 1)[0]
    named = [v for v in compose["volumes"]]
    for name in ("envoy", "processor"):
        mounts = {v.split(":")[1]: v.split(":")[0] for v in services[name]["volumes"]}
        assert mounts.get(socket_dir) in named, f"{name} must mount the socket volume at {socket_dir}"
    assert bootstrap_mount in services["processor"]["volumes"], "processor and Envoy read one bootstrap"


def test_dockerfile_installs_the_package_with_pinned_constraints():
    text = (ROOT / "Dockerfile").read_text()
    assert "constraints.txt" in text and "COPY extproc" in text
    assert re.search(r"ENTRYPOINT \[\"aigw\"\]", text)


def test_compose_bootstrap_is_valid_and_in_step_with_mock_yaml():
    compose_doc = yaml.safe_load((ROOT / "envoy" / "compose.yaml").read_text())
    mock_doc = yaml.safe_load((ROOT / "envoy" / "mock.yaml").read_text())
    build_config(compose_doc)

    # Only the container-specific values may differ.
    def scrub(doc):
        text = yaml.safe_dump(doc)
        for a, b in (
            ("0.0.0.0", "127.0.0.1"),
            ("/run/aigw/", "/tmp/aigw/"),
            ("STRICT_DNS", "STATIC"),
            ("address: mock", "address: 127.0.0.1"),
        ):
            text = text.replace(a, b)
        return text

    assert scrub(compose_doc) == scrub(mock_doc)
    run = subprocess.run(
        [envoy_binary(), "--mode", "validate", "-c", str(ROOT / "envoy" / "compose.yaml")],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stdout + run.stderr


@pytest.mark.parametrize("name", ["mock.yaml", "openai.yaml"])
def test_shipped_bootstraps_pass_envoy_validation(name):
    run = subprocess.run(
        [envoy_binary(), "--mode", "validate", "-c", str(ROOT / "envoy" / name)],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stdout + run.stderr
