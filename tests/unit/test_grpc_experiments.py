"""The processor runs gRPC with its older server listener and without fork support,
unless the operator says otherwise (extproc/__init__.py; figures in README "Benchmark")."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


def _probe(name: str, env_value: str | None) -> str:
    """`name` in a fresh process's environment once it has imported extproc, when the
    operator set it to `env_value` (None: not set)."""
    env = {k: v for k, v in os.environ.items() if k != name}
    if env_value is not None:
        env[name] = env_value
    code = f"import extproc, os; print(repr(os.environ.get({name!r})))"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return out.stdout.strip()


def test_the_event_engine_listener_is_off_by_default():
    assert _probe("GRPC_EXPERIMENTS", None) == "'-event_engine_listener'"


@pytest.mark.parametrize("value", ["", "event_engine_listener", "-some_other"])
def test_the_operators_setting_wins(value):
    assert _probe("GRPC_EXPERIMENTS", value) == repr(value)


def test_fork_support_is_off_unless_the_operator_says_otherwise():
    assert _probe("GRPC_ENABLE_FORK_SUPPORT", None) == "'false'"
    assert _probe("GRPC_ENABLE_FORK_SUPPORT", "true") == "'true'"


def test_the_scan_workers_forkserver_never_imports_grpc():
    """Fork support is off (extproc/__init__.py): what the forkserver preloads, and so
    every scan worker it forks, must not have started gRPC."""
    code = (
        "import sys, extproc.guards.scan_pool, extproc.guards.presidio_engine\n"
        "print(sorted(m for m in sys.modules if m == 'grpc' or m.startswith('grpc.')))"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert run.stdout.strip() == "[]"


def test_grpc_knows_the_experiment():
    """A name gRPC does not know is only logged (`Unknown experiment`), so a grpcio
    upgrade that drops it would silently undo the setting: fail here instead."""
    code = (
        "import extproc, asyncio, grpc\n"
        "async def main():\n"
        "    server = grpc.aio.server()\n"
        "    server.add_insecure_port('127.0.0.1:0')\n"
        "    await server.start()\n"
        "    await server.stop(0)\n"
        "asyncio.run(main())\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "GRPC_EXPERIMENTS"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "Unknown experiment" not in out.stderr
    bogus = subprocess.run(
        [sys.executable, "-c", code],
        env={**env, "GRPC_EXPERIMENTS": "-no_such_experiment"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "Unknown experiment: no_such_experiment" in bogus.stderr  # the check can fail
