"""`aigw up` (what `scripts/run` runs): the local stack from one bootstrap. A mock for
every backend on loopback, a local redis-server when the config shares state through a
loopback Redis nobody runs, the processor and Envoy; Ctrl-C stops them all. The processes
themselves are started as devstack.py starts them for the benchmark and the tests.
"""

from __future__ import annotations

import signal
import socket
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from . import wire
from .devstack import Envoy, ManagedProcess, MockProcess, Processor

if TYPE_CHECKING:
    from .runtime.gateway import GatewayRuntime
    from .shared_state.local_redis import LocalRedis


# ---- reading a bootstrap ----------------------------------------------------------------


def loopback_backends(doc: dict[str, Any]) -> dict[int, list[str]]:
    """Gateway endpoints on 127.0.0.1: port -> provider names. These need a mock."""
    ports: dict[int, list[str]] = {}
    for cluster in (doc.get("static_resources") or {}).get("clusters") or []:
        for locality in (cluster.get("load_assignment") or {}).get("endpoints") or []:
            for lb in locality.get("lb_endpoints") or []:
                aigw = ((lb.get("metadata") or {}).get("filter_metadata") or {}).get(wire.NAMESPACE)
                sa = ((lb.get("endpoint") or {}).get("address") or {}).get("socket_address") or {}
                if aigw and sa.get("address") in ("127.0.0.1", "localhost"):
                    ports.setdefault(int(sa["port_value"]), []).append(aigw.get("provider", "openai"))
    return ports


def listener_port(doc: dict[str, Any]) -> int:
    listener = doc["static_resources"]["listeners"][0]
    return int(listener["address"]["socket_address"]["port_value"])


def admin_port(doc: dict[str, Any]) -> int:
    return int(doc["admin"]["address"]["socket_address"]["port_value"])


def load_yaml(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())


# ---- `aigw up`: the local stack ----------------------------------------------------------


def _banner(port: int, mocked: bool, run_dir: Path) -> str:
    base = f"http://127.0.0.1:{port}"
    backend = "the built-in mock provider" if mocked else "the providers in the bootstrap"
    return f"""
AI gateway ready on {base}  (Envoy -> processor -> {backend})

Try it with curl:
  curl -s {base}/v1/chat/completions \\
    -H 'content-type: application/json' -H 'authorization: Bearer any-key' \\
    -d '{{"model": "gpt-4o-mini", "messages": [{{"role": "user", "content": "Hello!"}}]}}'

Or with the OpenAI SDK (pip install openai):
  from openai import OpenAI
  client = OpenAI(base_url="{base}/v1", api_key="any-key")
  print(client.chat.completions.create(model="gpt-4o-mini",
        messages=[{{"role": "user", "content": "Hello!"}}]).choices[0].message.content)
  for chunk in client.chat.completions.create(model="gpt-4o-mini", stream=True,
        messages=[{{"role": "user", "content": "Stream please"}}]):
      print(chunk.choices[0].delta.content or "" if chunk.choices else "", end="")

Logs: {run_dir}/envoy.log (access log), {run_dir}/processor.log
Ctrl-C stops everything.
"""


def _local_redis(gw: GatewayRuntime) -> LocalRedis | None:
    """A redis-server for a config that shares state through a loopback Redis nobody runs."""
    if gw.shared_state is None:
        return None
    from .shared_state.local_redis import start_if_absent

    return start_if_absent(gw.shared_state.settings.redis.address)


def up(bootstrap: Path, run_dir: Path) -> int:
    """Start mocks for loopback backends, the processor and Envoy; stop all on Ctrl-C."""
    from .runtime.bootstrap import ConfigError, load_bootstrap

    try:
        gw = load_bootstrap(bootstrap)
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    doc = load_yaml(bootstrap)
    sockets = [Path(p) for p in gw.processor_sockets]
    if not sockets:
        print("the bootstrap has no pipe endpoint for the processor", file=sys.stderr)
        return 2
    port = listener_port(doc)
    with socket.socket() as s:
        if s.connect_ex(("127.0.0.1", port)) == 0:
            print(f"port {port} is already in use: is another gateway running?", file=sys.stderr)
            return 1
    run_dir.mkdir(parents=True, exist_ok=True)
    started: list[ManagedProcess] = []
    stop_requested = False

    def request_stop(signum, frame):
        nonlocal stop_requested
        stop_requested = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    local_redis = None
    try:
        local_redis = _local_redis(gw)
        mocks = loopback_backends(doc)
        for mock_port, providers in mocks.items():
            started.append(
                MockProcess(mock_port, sorted(set(providers)), run_dir / f"mock-{mock_port}.log").start()
            )
        started.append(Processor(bootstrap, sockets, run_dir / "processor.log", log_format="text").start())
        started.append(Envoy(bootstrap, run_dir / "envoy.log", admin_port(doc)).start())
        print(_banner(port, bool(mocks), run_dir), flush=True)
        while not stop_requested:
            for p in started:
                p.alive()
            time.sleep(0.3)
        print("\nstopping ...", flush=True)
        return 0
    except (RuntimeError, TimeoutError) as exc:
        print(f"failed to start: {exc}", file=sys.stderr)
        return 1
    finally:
        for p in reversed(started):
            p.stop()
        if local_redis is not None:
            local_redis.close()
