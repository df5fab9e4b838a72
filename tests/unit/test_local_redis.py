"""`aigw up` (scripts/run) and the tests get a real redis-server on loopback when a
config shares state through one nobody runs."""

from __future__ import annotations

import socket

import pytest

from extproc.config.shared_state import RedisSettings, SharedState
from extproc.devstack import free_port
from extproc.local_stack import _local_redis
from extproc.runtime.gateway import GatewayRuntime, SharedStateRuntime
from extproc.shared_state.local_redis import LocalRedis, LocalRedisError


def _gateway(address: str) -> GatewayRuntime:
    gw = GatewayRuntime({}, {}, {})
    gw.shared_state = SharedStateRuntime(SharedState(redis=RedisSettings(address=address)))
    return gw


def _ping(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
        s.sendall(b"PING\r\n")
        return s.recv(16)


def test_a_loopback_redis_nobody_runs_is_started_and_stopped():
    port = free_port()
    server = _local_redis(_gateway(f"127.0.0.1:{port}"))
    assert server is not None
    try:
        assert _ping(port) == b"+PONG\r\n"
    finally:
        server.close()
    with pytest.raises(OSError):
        _ping(port)


def test_a_running_redis_or_a_remote_one_is_left_alone():
    with LocalRedis(free_port()) as running:
        assert _local_redis(_gateway(running.address)) is None
    assert _local_redis(_gateway("redis.internal:6379")) is None
    assert _local_redis(GatewayRuntime({}, {}, {})) is None


def test_local_redis_can_be_killed_paused_and_restarted_on_its_port():
    server = LocalRedis(free_port()).start()
    try:
        server.kill()
        with pytest.raises(OSError):
            _ping(server.port)
        server.start()
        assert _ping(server.port) == b"+PONG\r\n"
        server.pause()
        with socket.create_connection(("127.0.0.1", server.port), timeout=2) as s:
            s.settimeout(0.3)
            s.sendall(b"PING\r\n")
            with pytest.raises(TimeoutError):
                s.recv(16)
        server.resume()
        assert _ping(server.port) == b"+PONG\r\n"
    finally:
        server.close()


def test_a_missing_binary_is_a_clear_error(monkeypatch):
    monkeypatch.setattr("extproc.shared_state.local_redis.redis_server_binary", lambda: None)
    with pytest.raises(LocalRedisError, match="redis-server is not installed"):
        LocalRedis(free_port()).start()
